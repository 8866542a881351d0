//! Role commands: `changeover` (planned, or forced on a Standby after a confirmation), `promote`
//! (a Secondary becomes the Primary), and `collision show|diff|resolve` for the branches an old
//! Active left. A changeover needs the daemon (it holds the peer connections); the rest work on
//! a stopped node too, through the store.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;

use anyhow::{bail, Context};
use mgha_core::limits::CHANGESET_BYTES_MAX;
use mgha_core::merge::ResolutionFile;

use crate::api::*;
use crate::client::Backend;
use crate::output;
use crate::{ChangeoverArgs, CollisionArgs, CollisionCommand, CollisionDiffArgs, CollisionResolveArgs, ReadArgs};

/// `mgha changeover --to NAME` or `mgha changeover --force [--yes]`.
pub fn changeover(args: &ChangeoverArgs) -> anyhow::Result<()> {
    let remote = Backend::daemon(&args.read.node, "a changeover")?;
    let req = ChangeoverRequest { to: args.to.clone(), force: args.force };
    // Who was Active before a forced changeover, for the confirmation and the warning.
    let before: Option<StatusBody> = if args.force { Some(remote.get_json("/v1/status")?) } else { None };
    if let Some(status) = before.as_ref().filter(|s| s.node.role != "active") {
        if !args.yes {
            confirm_force(status)?;
        }
    }
    let done = remote.changeover(&req).with_context(|| match &args.to {
        Some(to) => format!("no changeover to '{to}'"),
        None => "no forced changeover".to_string(),
    })?;
    if args.read.json {
        output::json(&done)?;
    } else {
        outln!("{}", output::changeover(&done));
    }
    if done.forced {
        let old = before.and_then(|s| s.active).map_or_else(|| "the previous active".into(), |a| format!("'{a}'"));
        eprintln!(
            "warning: {old} was not asked. If it still runs, it takes publishes until it meets epoch {}; what it \
             published after the fork is then kept here as a collision branch (`mgha collision show --data-dir {}`)",
            output::epoch(done.epoch),
            args.read.node.describe()
        );
    }
    Ok(())
}

/// Asks on the terminal before a forced changeover; refuses without a terminal to ask on.
fn confirm_force(status: &StatusBody) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("a forced changeover needs confirmation and standard input is not a terminal; pass --yes");
    }
    let active = status.active.as_deref().map_or_else(|| "the current active".into(), |a| format!("'{a}'"));
    eprint!(
        "A forced changeover makes '{}' the active node at the next epoch without asking {active}.\n\
         If {active} still runs and takes publishes, they will collide with this node's: they are kept as a\n\
         collision branch for you to resolve (`mgha collision`). Force only when {active} is unreachable.\n\
         Force the changeover? [y/N] ",
        status.node.name
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("reading the answer")?;
    if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        bail!("forced changeover cancelled; nothing changed");
    }
    Ok(())
}

/// `mgha promote`.
pub fn promote(args: &ReadArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.node)?;
    let node = backend.promote().context("cannot promote this node to primary")?;
    if args.json {
        return output::json(&node);
    }
    outln!("node '{}' is the Primary of cluster {} now", node.name, node.cluster_id);
    outln!("it holds the cluster CA: it issues join keys (`mgha join-key --data-dir {}`)", args.node.describe());
    Ok(())
}

/// `mgha collision show|diff|resolve`.
pub fn collision(args: &CollisionArgs) -> anyhow::Result<()> {
    match &args.command {
        CollisionCommand::Show(a) => show(a),
        CollisionCommand::Diff(a) => diff(a),
        CollisionCommand::Resolve(a) => resolve(a),
    }
}

fn show(args: &ReadArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.node)?;
    let collisions = backend.collisions()?;
    if args.json {
        return output::json(&CollisionList { collisions });
    }
    if collisions.is_empty() {
        outln!("no collision branches on this node");
        return Ok(());
    }
    out!("{}", output::collisions(&collisions));
    let open: Vec<String> = collisions.iter().filter(|b| b.resolution.is_none()).map(|b| b.id.to_string()).collect();
    if let Some(first) = open.first() {
        let d = args.node.describe();
        outln!(
            "\n{} open: `mgha collision diff --data-dir {d} {first}` shows what each side changed; \
             `mgha collision resolve --data-dir {d} {first} --keep active|branch` or `--merge` settles it",
            open.join(", ")
        );
    }
    Ok(())
}

fn diff(args: &CollisionDiffArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.read.node)?;
    let d = backend.collision_diff(args.id).with_context(|| format!("collision branch {}", args.id))?;
    if args.read.json {
        return output::json(&d);
    }
    out!("{}", output::collision_diff(&d, args.uids));
    Ok(())
}

fn resolve(args: &CollisionResolveArgs) -> anyhow::Result<()> {
    let merge = if args.merge {
        let resolutions = args.resolutions.as_deref().map(read_resolutions).transpose()?;
        Some(MergeRequest { prefer: args.prefer.map(SideBody::from), resolutions })
    } else {
        None
    };
    let req = ResolveRequest { keep: args.keep.map(SideBody::from), merge };
    let author = super::write::author(args.author.as_deref());
    let backend = Backend::connect(&args.read.node)?;
    let done = backend
        .resolve_collision(args.id, &req, &author)
        .with_context(|| format!("collision branch {} is not resolved", args.id))?;
    if args.read.json {
        return output::json(&done);
    }
    outln!("{}", output::resolved(&done));
    Ok(())
}

/// Reads and checks a resolution file, so that a mistake in it is named with the file before
/// anything reaches the node.
fn read_resolutions(path: &Path) -> anyhow::Result<serde_json::Value> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut text = String::new();
    file.take(CHANGESET_BYTES_MAX as u64 + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if text.len() > CHANGESET_BYTES_MAX {
        bail!("{}: over the limit of {CHANGESET_BYTES_MAX} bytes", path.display());
    }
    ResolutionFile::from_json(&text)
        .map_err(|e| mgha_core::Error::InvalidArgument(e.to_string()))
        .with_context(|| format!("{}: not a resolution file (docs/roles.md)", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
}
