//! `mgha archive list|show`: the stores a full sync replaced on this node (a diverged history
//! kept as a backup, a damaged store set aside), listed and browsed read-only, every record
//! verified (the rules are `mgha_node::archive`, which the daemon's API calls too).

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::client::Backend;
use crate::output::{self, Table};
use crate::ReadArgs;

#[derive(Args, Debug, Clone)]
pub struct ArchiveArgs {
    #[command(subcommand)]
    pub command: ArchiveCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum ArchiveCommand {
    /// List the archived stores and backups in DIR/archive/: when, why (diverged or damaged),
    /// and their head, floor and revision count.
    List(ReadArgs),
    /// Browse one archive: its revisions (default), one revision, or a diff.
    Show(ShowArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ShowArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The archive's file name (`mgha archive list`).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Show this revision and its changes.
    #[arg(long, value_name = "REV", conflicts_with = "diff")]
    pub revision: Option<u64>,
    /// Show the differences between revisions A and B.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub diff: Option<Vec<u64>>,
    /// At most this many revisions in the list.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: usize,
    /// Only revisions older than this one in the list.
    #[arg(long, value_name = "REV")]
    pub before: Option<u64>,
    /// Show referenced objects by uid, as stored, instead of by type and name.
    #[arg(long)]
    pub uids: bool,
}

/// `mgha archive ...`.
pub fn archive(args: &ArchiveArgs) -> anyhow::Result<()> {
    match &args.command {
        ArchiveCommand::List(a) => list(a),
        ArchiveCommand::Show(a) => show(a),
    }
}

fn list(args: &ReadArgs) -> anyhow::Result<()> {
    let list = Backend::connect(&args.node)?.archives().context("cannot list the archive")?;
    if args.json {
        return output::json(&list);
    }
    if list.archives.is_empty() {
        outln!("no archived stores");
        return Ok(());
    }
    let mut t = Table::new(&["NAME", "ARCHIVED (UTC)", "WHY", "HEAD", "FLOOR", "REVISIONS", "SIZE"]);
    let seq = |h: &Option<crate::api::HeadBody>| h.as_ref().map_or("?".into(), |h| h.seq.to_string());
    for a in &list.archives {
        let reason = serde_json::to_value(a.reason).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        t.row(vec![
            a.name.clone(),
            a.archived_ms.map(output::time).unwrap_or_default(),
            reason,
            seq(&a.head),
            seq(&a.floor),
            a.revisions.map_or("?".into(), |n| n.to_string()),
            a.bytes.to_string(),
        ]);
    }
    t.print();
    for a in list.archives.iter().filter(|a| a.damage.is_some()) {
        outln!("{}: {}", a.name, output::printable(a.damage.as_deref().unwrap_or_default()));
    }
    Ok(())
}

fn show(args: &ShowArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.read.node)?;
    let name = &args.name;
    if let Some(seq) = args.revision {
        let r = backend.archive_revision(name, seq).with_context(|| format!("archive {name}: revision {seq}"))?;
        if args.read.json {
            return output::json(&r);
        }
        super::read::print_revision(&r, args.uids);
        return Ok(());
    }
    if let Some([from, to]) = args.diff.as_deref() {
        let d = backend.archive_diff(name, *from, *to).with_context(|| format!("archive {name}: diff"))?;
        if args.read.json {
            return output::json(&d);
        }
        out!("{}", output::diff(&d, args.uids));
        return Ok(());
    }
    let revisions =
        backend.archive_revisions(name, args.before, args.limit).with_context(|| format!("archive {name}"))?;
    if args.read.json {
        return output::json(&crate::api::RevisionList { revisions });
    }
    if revisions.is_empty() {
        outln!("no revisions in this archive");
        return Ok(());
    }
    out!("{}", output::revisions(&revisions));
    Ok(())
}
