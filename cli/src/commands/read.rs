//! Read commands: `status`, `get`, `list`, `revisions`, `revision`, `diff`. Each asks the
//! [`Backend`] once and prints a table, or with `--json` the API's body as is.

use anyhow::Context;

use crate::client::Backend;
use crate::output::{self, Table};
use crate::{DiffArgs, GetArgs, ListArgs, ReadArgs, RevisionArgs, RevisionsArgs};

/// `mgha status`.
pub fn status(args: &ReadArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.node)?;
    let s = backend.status()?;
    if args.json {
        return output::json(&s);
    }
    out!("{}", output::status(&s, &backend.describe()));
    Ok(())
}

/// `mgha check`: a damaged store fails with exit 9 and names the first damaged record.
pub fn check(args: &ReadArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.node)?;
    let report = backend.check()?;
    if args.json {
        return output::json(&report);
    }
    outln!(
        "store intact: {} objects and {} revisions verified; state hash {} recomputed at revision {}",
        report.objects,
        report.revisions,
        report.head.state_hash,
        report.head.seq
    );
    Ok(())
}

/// `mgha get TYPE UID-OR-NAME`.
pub fn get(args: &GetArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.read.node)?;
    let o = backend.get(&args.type_name, &args.key)?;
    if args.read.json {
        return output::json(&o);
    }
    out!("{}", output::object(&o));
    Ok(())
}

/// `mgha list [--type T]`.
pub fn list(args: &ListArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.read.node)?;
    let objects = backend.list(args.type_name.as_deref(), Some(args.limit))?;
    if args.read.json {
        return output::json(&crate::api::ObjectList { objects });
    }
    out!("{}", output::objects(&objects));
    if objects.len() == args.limit {
        eprintln!("(the first {} objects; --limit shows more)", args.limit);
    }
    Ok(())
}

/// `mgha revisions`.
pub fn revisions(args: &RevisionsArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.read.node)?;
    let revisions = backend.revisions(args.before, args.limit)?;
    if args.read.json {
        return output::json(&crate::api::RevisionList { revisions });
    }
    if revisions.is_empty() {
        outln!("no revisions yet");
        return Ok(());
    }
    out!("{}", output::revisions(&revisions));
    Ok(())
}

/// `mgha revision REV`: the header, then one line per change.
pub fn revision(args: &RevisionArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.read.node)?;
    let r = backend.revision(args.seq).with_context(|| format!("revision {}", args.seq))?;
    if args.read.json {
        return output::json(&r);
    }
    print_revision(&r, args.uids);
    Ok(())
}

/// A revision as `mgha revision` shows it: the header, then one line per change.
pub fn print_revision(r: &crate::api::RevisionBody, uids: bool) {
    let mut head = Table::keyed();
    head.row(vec!["revision".into(), r.seq.to_string()]);
    head.row(vec!["id".into(), r.id.clone()]);
    head.row(vec!["parent".into(), r.parent.clone()]);
    head.row(vec!["epoch".into(), r.epoch.to_string()]);
    head.row(vec!["author".into(), r.author.clone()]);
    head.row(vec!["time (UTC)".into(), output::time(r.time_ms)]);
    head.row(vec!["message".into(), r.message.clone()]);
    head.row(vec!["state hash".into(), r.state_hash.clone()]);
    head.print();
    outln!();
    let mut t = Table::new(&["OP", "TYPE", "NAME", "UID", "FIELDS"]);
    let refs = output::Refs::new(&r.refs, uids);
    for c in &r.changes {
        let name = c.after.as_ref().map_or("", |o| o.name.as_str());
        let fields = c.after.as_ref().map(|o| refs.fields(&o.fields)).unwrap_or_default();
        t.row(vec![c.op.clone(), c.type_name.clone(), name.into(), c.uid.clone(), fields]);
    }
    t.print();
}

/// `mgha diff FROM TO`.
pub fn diff(args: &DiffArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.read.node)?;
    let d = backend.diff(args.from, args.to)?;
    if args.read.json {
        return output::json(&d);
    }
    out!("{}", output::diff(&d, args.uids));
    Ok(())
}
