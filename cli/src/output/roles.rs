//! What the CLI prints about roles: a changeover's outcome, collision branches, a branch's diff
//! against the Active with the conflicts a merge would leave, and a resolution.

use std::fmt::Write as _;

use serde_json::Value;

use super::{cut, epoch, object_changes, published, short, time, value, Refs, Table, CELL_CHARS_MAX};
use crate::api::*;

/// Widest a conflict's value gets in the conflicts table.
const CONFLICT_VALUE_CHARS_MAX: usize = 40;

/// The `collisions` line of `mgha status`.
pub fn open_collisions(open: usize) -> String {
    match open {
        0 => "none open".into(),
        1 => "1 open branch: `mgha collision show` lists it, `mgha collision resolve` settles it".into(),
        n => format!("{n} open branches: `mgha collision show` lists them, `mgha collision resolve` settles them"),
    }
}

/// One line about a changeover that happened.
pub fn changeover(c: &ChangeoverBody) -> String {
    format!(
        "{} changeover done in {:.2} s: '{}' is the active node now, epoch {}",
        if c.forced { "forced" } else { "planned" },
        c.took_ms as f64 / 1000.0,
        c.active,
        epoch(c.epoch)
    )
}

/// `mgha collision show`: one line per branch.
pub fn collisions(branches: &[CollisionBody]) -> String {
    let mut t = Table::new(&["ID", "FROM", "FORK", "REVISIONS", "BRANCH HEAD", "DETECTED (UTC)", "STATUS"]);
    for b in branches {
        t.row(vec![
            b.id.to_string(),
            cut(&b.node, 32),
            b.fork.seq.to_string(),
            b.revisions.to_string(),
            format!("{} ({})", b.head.seq, short(&b.head.id)),
            time(b.detected_ms),
            status(b),
        ]);
    }
    t.render()
}

/// A branch's status: open, or how and when it was resolved.
fn status(b: &CollisionBody) -> String {
    let Some(r) = &b.resolution else {
        return "open".into();
    };
    let how = match (r.how.as_str(), r.seq) {
        ("kept-active", _) => "kept the active's state".to_string(),
        ("took-branch", Some(seq)) => format!("took the branch as revision {seq}"),
        ("merged", Some(seq)) => format!("merged as revision {seq} ({} conflicts settled)", r.conflicts),
        (how, None) => format!("{} (nothing to publish)", how.replace('-', " ")),
        (how, Some(seq)) => format!("{how} (revision {seq})"),
    };
    match b.resolved_ms {
        Some(ms) => format!("resolved {}: {how}", time(ms)),
        None => format!("resolved: {how}"),
    }
}

/// `mgha collision diff ID`: both sides' changes since the fork, then the conflicts.
pub fn collision_diff(d: &CollisionDiffBody, uids: bool) -> String {
    let refs = Refs::new(&d.refs, uids);
    let mut out = String::new();
    let _ = writeln!(out, "collision branch {}, forked after revision {}", d.branch, d.fork);
    for (title, changes) in
        [("the branch changed", &d.branch_changes), ("the active changed since the fork", &d.active_changes)]
    {
        let _ = writeln!(out, "\n{title} ({} object{}):", changes.len(), plural(changes.len()));
        if changes.is_empty() {
            let _ = writeln!(out, "  nothing");
        }
        object_changes(&mut out, changes, &refs);
    }
    out.push('\n');
    out.push_str(&conflicts(&d.conflicts, &refs));
    out
}

/// The conflicts a merge would leave, as a table, with what to do about them.
pub fn conflicts(conflicts: &[ConflictBody], refs: &Refs) -> String {
    if conflicts.is_empty() {
        return "a merge leaves no conflicts: `--merge` publishes it as it is\n".into();
    }
    let mut out = format!("a merge leaves {} conflict{}:\n", conflicts.len(), plural(conflicts.len()));
    let mut t = Table::new(&["TYPE", "NAME", "UID", "FIELD", "BASE", "ACTIVE", "BRANCH"]);
    for c in conflicts {
        t.row(vec![
            c.type_name.clone(),
            cut(&c.name, CELL_CHARS_MAX / 2),
            c.uid.clone(),
            c.field.clone(),
            side_value(c.base.as_ref().map(|v| refs.named(v)).as_ref()),
            side_value(c.active.as_ref().map(|v| refs.named(v)).as_ref()),
            side_value(c.branch.as_ref().map(|v| refs.named(v)).as_ref()),
        ]);
    }
    out.push_str(&t.render());
    out.push_str("settle them with `--merge --prefer active|branch`, or per field with `--merge --resolutions FILE`\n");
    out
}

/// A conflict's value on one side; `(absent)` where the field (or object) is not there.
fn side_value(v: Option<&Value>) -> String {
    v.map_or_else(|| "(absent)".into(), |v| cut(&value(v), CONFLICT_VALUE_CHARS_MAX))
}

/// What `mgha collision resolve` did.
pub fn resolved(r: &ResolvedBody) -> String {
    let what = match r.how.as_str() {
        "kept-active" => "kept the active's state",
        "took-branch" => "took the branch's state",
        _ => "merged both sides",
    };
    let mut out = format!("collision branch {} resolved: {what}", r.branch);
    match &r.revision {
        Some(rev) => {
            let _ = write!(out, "\n{}", published(rev));
        }
        None if r.how == "kept-active" => out.push_str("; nothing was published, the branch stays on record"),
        None => out.push_str("; nothing was published: the state already was the result"),
    }
    if r.how == "merged" {
        let _ = write!(out, "\n{} conflict{} settled", r.conflicts_resolved, plural(r.conflicts_resolved));
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64) -> HeadBody {
        HeadBody { seq, id: format!("{seq:064x}"), state_hash: "0".repeat(64) }
    }

    #[test]
    fn branches_show_their_origin_and_resolution() {
        let mut b = CollisionBody {
            id: 3,
            node_id: "n".into(),
            node: "mgmt-a".into(),
            fork: head(14),
            head: head(16),
            revisions: 2,
            headers: vec![],
            detected_ms: 1_700_000_000_000,
            status: "open".into(),
            resolution: None,
            resolved_ms: None,
        };
        let text = collisions(std::slice::from_ref(&b));
        let line = text.lines().nth(1).expect("a row");
        assert!(line.starts_with("3") && line.contains("mgmt-a") && line.ends_with("open"), "{text}");
        b.resolution = Some(ResolutionBody { how: "merged".into(), seq: Some(20), conflicts: 1 });
        b.resolved_ms = Some(1_700_000_100_000);
        let text = collisions(&[b]);
        assert!(text.contains("merged as revision 20 (1 conflicts settled)"), "{text}");
    }

    #[test]
    fn conflicts_show_absent_sides() {
        let c = ConflictBody {
            type_name: "host".into(),
            uid: "u1".into(),
            name: "web1".into(),
            field: "ipv4-address".into(),
            base: Some("10.0.0.1".into()),
            active: Some("10.0.0.2".into()),
            branch: None,
        };
        let text = conflicts(&[c], &Refs::new(&Default::default(), false));
        assert!(text.starts_with("a merge leaves 1 conflict:"), "{text}");
        assert!(text.contains("10.0.0.1") && text.contains("10.0.0.2") && text.contains("(absent)"), "{text}");
        assert!(conflicts(&[], &Refs::new(&Default::default(), false)).contains("no conflicts"));
        assert_eq!(open_collisions(0), "none open");
        assert!(open_collisions(2).starts_with("2 open branches"));
    }
}
