//! What the CLI prints: aligned tables and detail views for people, and the API's own JSON
//! bodies for scripts (`--json`), so that machine output is the documented API schema.

/// `println!` that does not panic when stdout is closed (`mgha list | head`): the rest of the
/// output is dropped and the command goes on, so a demo still stops its daemon. Control
/// characters other than line feed and tab are escaped on the way out (see [`terminal_safe`]).
macro_rules! outln {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "{}", $crate::output::terminal_safe(&format!($($arg)*)));
    }};
}

/// `print!` with the same behaviour as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), "{}", $crate::output::terminal_safe(&format!($($arg)*)));
    }};
}

mod plugins;
mod roles;

pub use plugins::*;
pub use roles::*;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::api::*;

/// Stored text as it may be shown: every control character (an escape sequence would drive the
/// terminal, a newline would forge a line) and every invisible or direction-changing character
/// is written as `\u{XXXX}`. Stored data reaches the screen only through this (tables, detail
/// views, diffs); validation refuses such characters in names and audit text, and this keeps
/// what came in before, or through a plugin's free-form field, harmless.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    escape(s, |c| c.is_control() || mgha_core::model::validate::is_invisible(c))
}

/// The last line of defence on the way to stdout: control characters other than line feed and
/// tab are escaped, whatever text they came in. JSON output holds none (serde_json escapes them).
pub fn terminal_safe(s: &str) -> std::borrow::Cow<'_, str> {
    escape(s, |c| c.is_control() && c != '\n' && c != '\t')
}

fn escape(s: &str, bad: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(&bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Widest a free-text cell gets in a table before it is cut.
const CELL_CHARS_MAX: usize = 60;

/// A table with an optional header row and columns padded to their widest cell.
#[derive(Debug)]
pub struct Table {
    header: Option<Vec<String>>,
    cols: usize,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: Some(header.iter().map(|h| h.to_string()).collect()), cols: header.len(), rows: Vec::new() }
    }

    /// A two-column table of names and values, without a header.
    pub fn keyed() -> Table {
        Table { header: None, cols: 2, rows: Vec::new() }
    }

    /// Adds a row; its cells are made [`printable`] here, so no table shows raw control text.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(|c| printable(&c).into_owned()).collect());
    }

    pub fn render(&self) -> String {
        let cols = self.cols;
        let mut widths = vec![0usize; cols];
        for row in self.header.iter().chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in self.header.iter().chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(cols) {
                if i + 1 == cols {
                    line.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        out!("{}", self.render());
    }
}

/// Prints a body as pretty JSON.
pub fn json<T: Serialize>(body: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(body)?);
    Ok(())
}

/// Cuts text to `max` characters, marking the cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The first 12 hex digits of a hash, as people compare them.
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// A value as compact JSON, strings without quotes.
pub fn value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm), so that
/// the CLI needs no calendar library for one timestamp format.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// What a damaged node's administrator does next, in words, from the node's `recovery`.
fn recovery_next(r: Option<&RecoveryBody>) -> String {
    match r {
        Some(RecoveryBody::Failover { to }) => format!(
            "automatic failover hands the role to the synchronized standby '{to}' (this node stops renewing \
             its lease), or run `mgha changeover --to {to}` now; this node then heals by a full sync"
        ),
        Some(RecoveryBody::Changeover { to }) => format!(
            "run `mgha changeover --to {to}` to hand the role to that synchronized standby; this node then heals \
             by a full sync from it"
        ),
        Some(RecoveryBody::NoStandby) => {
            "no standby is connected and synchronized to take the role: start one (or wait \
                                          until it is synchronized) and run `mgha changeover --to NAME`, or restore a \
                                          backup (`mgha restore --in FILE --data-dir NEW`)"
                .into()
        }
        Some(RecoveryBody::Heal) | None => "this standby heals by a full sync from the active".into(),
    }
}

/// `mgha status`: the node, then its peers as this node sees them.
pub fn status(s: &StatusBody, via: &str) -> String {
    let mut t = Table::keyed();
    t.rows = vec![
        vec!["node".into(), format!("{} ({})", s.node.name, s.node.node_id)],
        vec!["cluster".into(), s.node.cluster_id.clone()],
    ];
    // The domain, when it is not the cluster's first (an older daemon names none).
    if let Some(d) = s.domain.as_deref().filter(|d| *d != mgha_node::domains::GLOBAL_DOMAIN) {
        t.rows.push(vec!["domain".into(), d.to_string()]);
    }
    t.rows.extend([
        vec!["designation".into(), s.node.designation.clone()],
        vec!["role".into(), s.node.role.clone()],
        vec!["epoch".into(), epoch(s.node.epoch)],
        vec![
            "head".into(),
            format!("revision {}, id {}, state {}", s.head.seq, short(&s.head.id), short(&s.head.state_hash)),
        ],
        vec!["history".into(), history(s)],
        vec!["objects".into(), s.objects.to_string()],
        vec!["sessions".into(), s.sessions.to_string()],
        vec!["collisions".into(), open_collisions(s.collisions_open)],
        vec!["served by".into(), via.into()],
    ]);
    if let Some(d) = &s.damage {
        let what_now = recovery_next(s.recovery.as_ref());
        t.row(vec!["DAMAGED".into(), format!("{d}; {what_now}; `mgha check` lists it again (docs/storage.md)")]);
    }
    if let Some(a) = &s.archived {
        t.row(vec!["archived".into(), format!("the damaged store was set aside as {a}")]);
    }
    if let Some(f) = &s.store_fault {
        let state = if f.reopened { "reopened; writes are retried" } else { "closed; reopening is retried" };
        t.row(vec![
            "CANNOT WRITE".into(),
            format!("{}: {} (since {}, store {state})", f.kind, f.error, time(f.since_ms)),
        ]);
    }
    if s.node.role == "standby" {
        let follows = s.active.as_ref().map_or("no active node found yet".into(), |a| format!("the active node '{a}'"));
        t.row(vec!["follows".into(), follows]);
    }
    if let Some(f) = &s.failover {
        failover_rows(&mut t, f);
    }
    let mut out = t.render();
    if !s.peers.is_empty() {
        out.push('\n');
        out.push_str(&peers(&s.peers, mgha_core::now_ms()));
    }
    if let Some(arbiter) = s.failover.as_ref().and_then(|f| f.arbiter.as_ref()) {
        let mut m = Table::new(&["arbiter member", "address", "health", "detail"]);
        for member in &arbiter.members {
            let health = if member.healthy { "healthy" } else { "unreachable" };
            m.row(vec![member.name.clone(), member.address.clone(), health.into(), member.detail.clone()]);
        }
        out.push('\n');
        out.push_str(&m.render());
    }
    out
}

/// The automatic-failover rows of `mgha status`.
fn failover_rows(t: &mut Table, f: &mgha_sync::failover::FailoverStatus) {
    t.row(vec![
        "failover".into(),
        format!("{} (heartbeat {} ms, failover after {} ms)", f.mode, f.heartbeat_ms, f.failover_after_ms),
    ]);
    if let Some(a) = &f.arbiter {
        let holder = a.holder.map_or("none".into(), |h| format!("node {} at epoch {}", h.node_id, epoch(h.epoch)));
        let quorum = if a.has_quorum { "has a quorum" } else { "NO QUORUM" };
        t.row(vec!["arbiter".into(), format!("{} ({quorum}), holder: {holder}", a.kind)]);
    }
    if let Some(left) = f.lease_left_ms {
        let lease = if left == 0 { "expired: publishes refused".into() } else { format!("{left} ms left") };
        t.row(vec!["lease".into(), lease]);
    }
    if let Some(w) = &f.waiting {
        t.row(vec!["takes over".into(), format!("not now: {w}")]);
    }
    if let Some(e) = &f.last_error {
        t.row(vec!["arbiter error".into(), e.clone()]);
    }
}

/// The peers table of `mgha status`, with last contacts relative to `now_ms`.
pub fn peers(peers: &[PeerBody], now_ms: u64) -> String {
    let mut t = Table::new(&["PEER", "DESIGNATION", "ROLE", "EPOCH", "HEAD", "STATUS", "LAG", "LAST CONTACT"]);
    let mut sorted: Vec<&PeerBody> = peers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for p in sorted {
        let lag = if p.lag_revisions == 0 && p.lag_ms == 0 {
            "0".to_string()
        } else {
            format!("{} rev, {} ms", p.lag_revisions, p.lag_ms)
        };
        t.row(vec![
            p.name.clone(),
            p.designation.clone(),
            p.role.clone().unwrap_or_else(|| "?".into()),
            epoch(p.epoch),
            format!("{} ({})", p.head.seq, p.head.id.get(..8).unwrap_or(&p.head.id)),
            match &p.apply_error {
                Some(cause) => format!("{} ({cause})", sync_status(&p.status)),
                None => sync_status(&p.status),
            },
            lag,
            ago(now_ms, p.last_contact_ms),
        ]);
    }
    t.render()
}

/// An epoch as people read it: `round.tag` (the JSON has the raw ballot number).
pub fn epoch(e: u64) -> String {
    mgha_core::roles::machine::epoch::display(e)
}

/// A sync status as people read it: the API's `never-synchronized` is "never synchronized".
pub fn sync_status(wire: &str) -> String {
    wire.replace('-', " ")
}

/// How long ago `then_ms` was, as "0.3s ago", "12s ago", "5m ago"; "never" for 0.
pub fn ago(now_ms: u64, then_ms: u64) -> String {
    if then_ms == 0 {
        return "never".into();
    }
    let ms = now_ms.saturating_sub(then_ms);
    match ms {
        0..=9_999 => format!("{:.1}s ago", ms as f64 / 1000.0),
        10_000..=119_999 => format!("{}s ago", ms / 1000),
        120_000..=7_199_999 => format!("{}m ago", ms / 60_000),
        7_200_000..=172_799_999 => format!("{}h ago", ms / 3_600_000),
        _ => format!("{}d ago", ms / 86_400_000),
    }
}

/// A duration in the largest unit that divides it: "30s", "10m", "1h", "2d", else "1500 ms".
pub fn duration_ms(ms: u64) -> String {
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms > 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms} ms")
}

fn history(s: &StatusBody) -> String {
    match (s.head.seq, s.floor.seq) {
        (0, _) => "empty".into(),
        (head, 0) => format!("revisions 1..{head}"),
        (head, floor) => format!("revisions {}..{head} (1..{floor} purged)", floor + 1),
    }
}

/// `mgha revisions`.
pub fn revisions(revs: &[RevisionInfoBody]) -> String {
    let mut t = Table::new(&["REV", "TIME (UTC)", "AUTHOR", "CHANGES", "ID", "STATE", "MESSAGE"]);
    for r in revs {
        t.row(vec![
            r.seq.to_string(),
            time(r.time_ms),
            cut(&r.author, 24),
            r.changes.to_string(),
            short(&r.id).into(),
            short(&r.state_hash).into(),
            cut(&r.message, CELL_CHARS_MAX),
        ]);
    }
    t.render()
}

/// `mgha list`.
pub fn objects(objects: &[ObjectBody]) -> String {
    let mut t = Table::new(&["TYPE", "NAME", "UID", "FIELDS"]);
    for o in objects {
        let fields = o.fields.iter().map(|(k, v)| format!("{k}={}", value(v))).collect::<Vec<_>>().join(" ");
        t.row(vec![o.type_name.clone(), cut(&o.name, 40), o.uid.clone(), cut(&fields, CELL_CHARS_MAX)]);
    }
    t.render()
}

/// `mgha get`: the object's identity, then one line per field.
pub fn object(o: &ObjectBody) -> String {
    let mut t = Table::keyed();
    t.row(vec!["type".into(), o.type_name.clone()]);
    t.row(vec!["name".into(), o.name.clone()]);
    t.row(vec!["uid".into(), o.uid.clone()]);
    for (k, v) in &o.fields {
        t.row(vec![k.clone(), value(v)]);
    }
    t.render()
}

/// How referenced objects are shown: by type and name from a document's `refs` table (a uid it
/// does not name, of an object gone since, stays a uid), or by uid with `--uids`.
pub struct Refs<'a> {
    names: &'a BTreeMap<String, RefName>,
    uids: bool,
}

impl<'a> Refs<'a> {
    pub fn new(names: &'a BTreeMap<String, RefName>, uids: bool) -> Refs<'a> {
        Refs { names, uids }
    }

    /// `v` with every uid the table names replaced by `TYPE NAME`.
    pub fn named(&self, v: &Value) -> Value {
        if self.uids || self.names.is_empty() {
            return v.clone();
        }
        match v {
            Value::String(s) => match self.names.get(s) {
                Some(n) => Value::String(format!("{} {}", n.type_name, n.name)),
                None => v.clone(),
            },
            Value::Array(items) => Value::Array(items.iter().map(|i| self.named(i)).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, i)| (k.clone(), self.named(i))).collect()),
            other => other.clone(),
        }
    }

    /// An object's fields on one line, `KEY=VALUE` each, references named.
    pub fn fields(&self, fields: &serde_json::Map<String, Value>) -> String {
        let line = fields.iter().map(|(k, v)| format!("{k}={}", value(&self.named(v)))).collect::<Vec<_>>().join(" ");
        cut(&printable(&line), CELL_CHARS_MAX)
    }
}

/// `mgha diff`: one block per object, one line per field, references by type and name unless
/// `uids`.
pub fn diff(d: &DiffBody, uids: bool) -> String {
    let mut out = String::new();
    if d.objects.is_empty() {
        let _ = writeln!(out, "revisions {} and {} hold the same objects", d.from, d.to);
        return out;
    }
    let (added, removed, modified) = object_changes(&mut out, &d.objects, &Refs::new(&d.refs, uids));
    let _ = writeln!(out, "revisions {} -> {}: {added} added, {removed} removed, {modified} modified", d.from, d.to);
    out
}

/// Object diffs, one block per object and one line per field, appended to `out`; returns how
/// many objects were added, removed and modified.
pub fn object_changes(out: &mut String, objects: &[ObjectDiffBody], refs: &Refs) -> (usize, usize, usize) {
    let (mut added, mut removed, mut modified) = (0, 0, 0);
    for o in objects {
        let sign = match o.kind.as_str() {
            "added" => {
                added += 1;
                '+'
            }
            "removed" => {
                removed += 1;
                '-'
            }
            _ => {
                modified += 1;
                '~'
            }
        };
        let renamed = o.old_name.as_ref().map(|n| format!(" (was '{}')", printable(n))).unwrap_or_default();
        let _ = writeln!(out, "{sign} {} '{}'{renamed}  {}", printable(&o.type_name), printable(&o.name), o.uid);
        let width = o.fields.iter().map(|f| printable(&f.field).chars().count()).max().unwrap_or(0);
        for f in &o.fields {
            let f = FieldDiffBody {
                field: f.field.clone(),
                before: f.before.as_ref().map(|v| refs.named(v)),
                after: f.after.as_ref().map(|v| refs.named(v)),
            };
            let _ = writeln!(out, "    {:width$}  {}", printable(&f.field), printable(&field_change(&o.kind, &f)));
        }
    }
    (added, removed, modified)
}

/// How one field changed. An added or removed object shows its values; a changed list shows
/// the items that came and went, since lists of references are long and mostly unchanged.
fn field_change(kind: &str, f: &FieldDiffBody) -> String {
    match (&f.before, &f.after) {
        (Some(Value::Array(b)), Some(Value::Array(a))) => {
            let gone: Vec<String> = b.iter().filter(|x| !a.contains(x)).map(value).collect();
            let came: Vec<String> = a.iter().filter(|x| !b.contains(x)).map(value).collect();
            if gone.is_empty() && came.is_empty() {
                return "reordered".into();
            }
            let mut parts = Vec::new();
            if !came.is_empty() {
                parts.push(format!("+ {}", came.join(", ")));
            }
            if !gone.is_empty() {
                parts.push(format!("- {}", gone.join(", ")));
            }
            parts.join("  ")
        }
        (Some(b), Some(a)) => format!("{b} -> {a}"),
        (None, Some(a)) if kind == "added" => a.to_string(),
        (None, Some(a)) => format!("(absent) -> {a}"),
        (Some(b), None) if kind == "removed" => b.to_string(),
        (Some(b), None) => format!("{b} -> (absent)"),
        (None, None) => String::new(),
    }
}

/// One line about a new revision, for `apply`, `revert` and the demo.
pub fn published(r: &RevisionInfoBody) -> String {
    format!(
        "revision {} published: {} change{}, id {}, state {}",
        r.seq,
        r.changes,
        if r.changes == 1 { "" } else { "s" },
        short(&r.id),
        short(&r.state_hash)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_align() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["wide cell".into(), "x".into()]);
        assert_eq!(t.render(), "A          LONGER\nwide cell  x\n");
    }

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(time(1_700_000_000_123), "2023-11-14 22:13:20");
    }

    #[test]
    fn diff_shows_list_items_that_came_and_went() {
        let d = DiffBody {
            from: 1,
            to: 2,
            objects: vec![ObjectDiffBody {
                type_name: "group".into(),
                uid: "u".into(),
                name: "web".into(),
                old_name: None,
                kind: "modified".into(),
                fields: vec![FieldDiffBody {
                    field: "members".into(),
                    before: Some(serde_json::json!(["a", "b", "c"])),
                    after: Some(serde_json::json!(["a", "c", "d"])),
                }],
            }],
            refs: BTreeMap::from([("d".into(), RefName { type_name: "host".into(), name: "web4".into() })]),
        };
        let text = diff(&d, false);
        assert!(text.contains("~ group 'web'"), "{text}");
        assert!(text.contains("members  + host web4  - b"), "a named reference shows its type and name: {text}");
        assert!(text.contains("0 added, 0 removed, 1 modified"), "{text}");
        let text = diff(&d, true);
        assert!(text.contains("members  + d  - b"), "with --uids, the uid: {text}");
    }

    #[test]
    fn contacts_and_durations_read_as_people_say_them() {
        assert_eq!(ago(10_000, 0), "never");
        assert_eq!(ago(10_000, 9_700), "0.3s ago");
        assert_eq!(ago(100_000, 50_000), "50s ago");
        assert_eq!(ago(1_000_000, 700_000), "5m ago");
        assert_eq!(ago(5, 10), "0.0s ago", "a contact in the future (clock step) is now");
        assert_eq!(duration_ms(3_600_000), "1h");
        assert_eq!(duration_ms(30_000), "30s");
        assert_eq!(duration_ms(172_800_000), "2d");
        assert_eq!(duration_ms(1500), "1500 ms");
        assert_eq!(sync_status("never-synchronized"), "never synchronized");
    }

    #[test]
    fn stored_control_characters_never_reach_the_terminal_raw() {
        let evil = "\u{1b}[31mEVIL\u{1b}[0m\nfake line\u{202e}";
        let revs = revisions(&[serde_json::from_value(serde_json::json!({
            "seq": 1, "id": "ab", "parent": "00", "epoch": 1, "author": evil, "time_ms": 0,
            "message": evil, "state_hash": "cd", "changes": 1}))
        .expect("a revision body")]);
        assert!(!revs.contains('\u{1b}') && !revs.contains('\u{202e}'), "{revs:?}");
        assert_eq!(revs.lines().count(), 2, "one header and one row: {revs:?}");
        assert!(revs.contains("\\u{001b}[31mEVIL"), "{revs:?}");
        assert_eq!(terminal_safe("a\u{7}b\nc\td"), "a\\u{0007}b\nc\td");
    }

    #[test]
    fn long_text_is_cut() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
