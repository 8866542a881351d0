//! The bench's result: one row per figure with its goal and reference, printed as an aligned
//! table or as a JSON document.

use serde_json::{json, Value};

use super::machine::Machine;
use super::pg::PgFigure;

/// What a figure should be.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
    /// Inclusive bounds.
    Between(f64, f64),
}

impl Goal {
    fn met(self, v: f64) -> bool {
        match self {
            Goal::AtLeast(g) => v >= g,
            Goal::AtMost(g) => v <= g,
            Goal::Between(lo, hi) => (lo..=hi).contains(&v),
        }
    }

    /// measured / goal, for the one-sided goals.
    fn ratio(self, v: f64) -> Option<f64> {
        match self {
            Goal::AtLeast(g) | Goal::AtMost(g) if g != 0.0 => Some(v / g),
            _ => None,
        }
    }

    fn text(self, unit: Unit) -> String {
        match self {
            Goal::AtLeast(g) => format!(">= {}", unit.format(g)),
            Goal::AtMost(g) => format!("<= {}", unit.format(g)),
            Goal::Between(lo, hi) => format!("{} .. {}", unit.format(lo), unit.format(hi)),
        }
    }

    /// As a bound on measured / PostgreSQL's figure.
    fn text_vs_pg(self) -> String {
        match self {
            Goal::AtLeast(g) => format!(">= {g} x PG"),
            Goal::AtMost(g) => format!("<= {g} x PG"),
            Goal::Between(lo, hi) => format!("{lo} .. {hi} x PG"),
        }
    }

    fn to_json(self) -> Value {
        match self {
            Goal::AtLeast(g) => json!({"at_least": g}),
            Goal::AtMost(g) => json!({"at_most": g}),
            Goal::Between(lo, hi) => json!({"between": [lo, hi]}),
        }
    }
}

/// The unit of a figure, which also decides how it is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    ObjectsPerSecond,
    /// Operations (publishes, commits) per second.
    PerSecond,
    Milliseconds,
    Microseconds,
    MiB,
    MBPerSecond,
    Times,
    Bytes,
    /// A plain number of events (publishes lost per failover), printed without a unit.
    Count,
    /// A share of another figure, in percent.
    Percent,
}

impl Unit {
    fn symbol(self) -> &'static str {
        match self {
            Unit::ObjectsPerSecond => "obj/s",
            Unit::PerSecond => "/s",
            Unit::Milliseconds => "ms",
            Unit::Microseconds => "µs",
            Unit::MiB => "MiB",
            Unit::MBPerSecond => "MB/s",
            Unit::Times => "x",
            Unit::Bytes => "B",
            Unit::Count => "",
            Unit::Percent => "%",
        }
    }

    pub fn format(self, v: f64) -> String {
        let n = match self {
            Unit::ObjectsPerSecond | Unit::PerSecond => thousands(v.round() as u64),
            Unit::Milliseconds if v < 10.0 => format!("{v:.3}"),
            Unit::Milliseconds => format!("{v:.1}"),
            Unit::Microseconds => format!("{v:.2}"),
            Unit::MiB | Unit::MBPerSecond => format!("{v:.1}"),
            Unit::Times => format!("{v:.2}"),
            Unit::Bytes => format!("{v:.0}"),
            Unit::Count => format!("{v:.2}"),
            Unit::Percent => format!("{v:.2}"),
        };
        if self.symbol().is_empty() {
            return n;
        }
        format!("{n} {}", self.symbol())
    }
}

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Row {
    /// Stable identifier, used by scripts and the smoke test.
    pub key: &'static str,
    pub figure: String,
    pub value: f64,
    pub unit: Unit,
    pub goal: Option<Goal>,
    /// The PostgreSQL figure this row is compared with ...
    pub pg: Option<PgFigure>,
    /// ... and its value from `--pg`, in the same unit; None when not measured.
    pub reference: Option<f64>,
    /// A goal on the row's figure over PostgreSQL's (the "vs PG" column): met or missed only
    /// when `--pg` gave that figure.
    pub pg_goal: Option<Goal>,
}

impl Row {
    pub fn new(key: &'static str, figure: impl Into<String>, value: f64, unit: Unit) -> Row {
        Row { key, figure: figure.into(), value, unit, goal: None, pg: None, reference: None, pg_goal: None }
    }

    pub fn goal(mut self, goal: Goal) -> Row {
        self.goal = Some(goal);
        self
    }

    /// Compares the row with a PostgreSQL figure of the same run (`--pg`).
    pub fn pg(mut self, figure: PgFigure) -> Row {
        self.pg = Some(figure);
        self
    }

    /// A goal on measured / PostgreSQL's figure of the same run; [`Row::pg`] names the figure.
    pub fn pg_goal(mut self, goal: Goal) -> Row {
        self.pg_goal = Some(goal);
        self
    }

    /// Measured over PostgreSQL's figure, when `--pg` gave it.
    pub fn vs_pg(&self) -> Option<f64> {
        self.reference.filter(|x| *x != 0.0).map(|x| self.value / x)
    }

    /// Whether every goal the row can be judged on is met: `None` when it has none, or only a
    /// goal against PostgreSQL and no PostgreSQL figure.
    pub fn met(&self) -> Option<bool> {
        let own = self.goal.map(|g| g.met(self.value));
        let against_pg = self.pg_goal.zip(self.vs_pg()).map(|(g, x)| g.met(x));
        match (own, against_pg) {
            (Some(a), Some(b)) => Some(a && b),
            (a, b) => a.or(b),
        }
    }

    /// A goal against PostgreSQL that this run cannot judge (no `--pg`).
    fn needs_pg(&self) -> bool {
        self.pg_goal.is_some() && self.vs_pg().is_none()
    }

    /// measured / goal: against PostgreSQL's goal when it can be judged, else the row's own.
    fn ratio(&self) -> Option<f64> {
        match (self.pg_goal, self.vs_pg()) {
            (Some(g), Some(x)) => g.ratio(x),
            _ => self.goal.and_then(|g| g.ratio(self.value)),
        }
    }

    fn goal_text(&self) -> Option<String> {
        let own = self.goal.map(|g| g.text(self.unit));
        let against_pg = self.pg_goal.map(|g| g.text_vs_pg());
        match (own, against_pg) {
            (Some(a), Some(b)) => Some(format!("{a}, {b}")),
            (a, b) => a.or(b),
        }
    }
}

/// Everything one run measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub machine: Machine,
    pub quick: bool,
    pub scratch: String,
    pub host_json_bytes: f64,
    pub elapsed_s: f64,
    pub rows: Vec<Row>,
    /// The file the PostgreSQL figures came from, when given.
    pub pg_source: Option<String>,
}

const HEADERS: [&str; 6] = ["figure", "measured", "goal", "ratio", "PostgreSQL", "vs PG"];

impl Report {
    /// Fills the PostgreSQL column from `pg_anchor.sh`'s JSON, read from `source`.
    pub fn fill_pg(&mut self, anchor: &Value, source: &str) {
        for r in &mut self.rows {
            r.reference = r.pg.and_then(|f| f.value(anchor));
        }
        // Sizes and load rates compare equal object counts only when the script loaded as many
        // rows as the large store holds: say how many it loaded.
        let loaded = anchor.pointer("/pg/full_copy/rows").and_then(Value::as_u64);
        let version = anchor.pointer("/pg/server_version").and_then(Value::as_str).unwrap_or("?");
        self.pg_source = Some(match loaded {
            Some(n) => format!("{source}, PostgreSQL {version}, bulk load of {n} rows"),
            None => format!("{source}, PostgreSQL {version}"),
        });
    }

    /// The human table, preceded by the machine it ran on.
    pub fn to_table(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        out.push_str(&format!(
            "mgha bench{}: {} x {}, {:.1} GiB, kernel {}\n",
            if self.quick { " --quick (1/100 scale: a smoke run, not a measurement)" } else { "" },
            m.cores,
            m.cpu,
            m.memory_gib,
            m.kernel,
        ));
        out.push_str(&format!(
            "disk: {} ({}) mounted on {}, scratch {}\n",
            m.device, m.filesystem, m.mount_point, self.scratch
        ));
        out.push_str(&format!("load average (1 min): {:.2} at start, {:.2} at end\n", m.load_start, m.load_end));
        if m.in_memory() {
            out.push_str("WARNING: the scratch directory is in memory; durability figures mean nothing here\n");
        }
        out.push_str(&format!("objects: hosts of {:.0} bytes of JSON each\n", self.host_json_bytes));
        match &self.pg_source {
            Some(src) => out.push_str(&format!("PostgreSQL column: {src} (pg_anchor.sh on this machine)\n\n")),
            None => out.push_str("PostgreSQL column: not measured (run bench/pg_anchor.sh and pass --pg FILE)\n\n"),
        }
        let cells: Vec<[String; 7]> = self.rows.iter().map(cells).collect();
        let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.len()).collect();
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut header: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
        header.push(String::new());
        out.push_str(&line(&header, &widths));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).chain([String::new()]).collect();
        out.push_str(&line(&rule, &widths));
        for row in &cells {
            out.push_str(&line(row, &widths));
        }
        let judged: Vec<bool> = self.rows.iter().filter_map(Row::met).collect();
        let met = judged.iter().filter(|m| **m).count();
        let unjudged = self.rows.iter().filter(|r| r.met().is_none() && r.needs_pg()).count();
        out.push_str(&format!("\n{met} of {} goals met", judged.len()));
        if unjudged > 0 {
            out.push_str(&format!(" ({unjudged} more are ratios to PostgreSQL: pass --pg)"));
        }
        out.push_str(&format!("; ran in {:.1} s\n", self.elapsed_s));
        out
    }

    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "key": r.key,
                    "figure": r.figure,
                    "value": r.value,
                    "unit": r.unit.symbol(),
                    "goal": r.goal.map(Goal::to_json),
                    "goal_vs_postgresql": r.pg_goal.map(Goal::to_json),
                    "ratio": r.ratio(),
                    "met": r.met(),
                    "postgresql": r.reference,
                    "vs_postgresql": r.vs_pg(),
                })
            })
            .collect();
        json!({
            "machine": self.machine,
            "quick": self.quick,
            "scratch": self.scratch,
            "host_json_bytes": self.host_json_bytes,
            "elapsed_s": self.elapsed_s,
            "rows": rows,
            "postgresql_source": self.pg_source,
        })
    }
}

fn cells(r: &Row) -> [String; 7] {
    let dash = || "-".to_string();
    let ratio = r.ratio().map_or_else(dash, |x| format!("{x:.2}"));
    let vs_ref = r.vs_pg().map_or_else(dash, |x| format!("{x:.2}"));
    let verdict = match r.met() {
        Some(true) => "ok",
        Some(false) => "MISSED",
        None if r.needs_pg() => "needs --pg",
        None => "",
    };
    [
        r.figure.clone(),
        r.unit.format(r.value),
        r.goal_text().unwrap_or_else(dash),
        ratio,
        match (r.reference, r.pg) {
            (Some(x), _) => r.unit.format(x),
            (None, Some(_)) => "not measured".to_string(),
            (None, None) => dash(),
        },
        vs_ref,
        verdict.to_string(),
    ]
}

/// One table line: the figure left-aligned, numbers right-aligned.
fn line(cells: &[String], widths: &[usize]) -> String {
    let mut s = String::new();
    for (i, c) in cells.iter().enumerate() {
        let w = widths.get(i).copied().unwrap_or(0);
        if i == 0 {
            s.push_str(&format!("{c:<w$}"));
        } else {
            s.push_str(&format!("  {c:>w$}"));
        }
    }
    s.truncate(s.trim_end().len());
    s.push('\n');
    s
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    // ASCII digits: every chunk is valid UTF-8.
    let groups: Vec<&str> = digits.as_bytes().rchunks(3).rev().map(|g| std::str::from_utf8(g).unwrap_or("?")).collect();
    groups.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn goals_are_met_at_their_bounds() {
        assert!(Goal::AtMost(1.5).met(1.5));
        assert!(!Goal::AtLeast(50_000.0).met(49_999.0));
        assert!(!Goal::Between(0.5, 1.5).met(1.6));
        assert_eq!(Goal::AtLeast(2.0).ratio(3.0), Some(1.5));
    }

    #[test]
    fn a_goal_against_postgresql_is_judged_only_with_its_figure() {
        let row = Row::new("r", "rate", 120_000.0, Unit::ObjectsPerSecond)
            .pg(PgFigure::Upsert100Rate)
            .pg_goal(Goal::AtLeast(4.0));
        assert_eq!(row.met(), None);
        assert!(row.needs_pg());
        let measured = Row { reference: Some(40_000.0), ..row.clone() };
        assert_eq!(measured.vs_pg(), Some(3.0));
        assert_eq!(measured.met(), Some(false));
        assert_eq!(measured.ratio(), Some(0.75));
        assert_eq!(Row { reference: Some(30_000.0), ..row.clone() }.met(), Some(true));
        // Both goals must hold when the row has its own as well.
        let both = Row { reference: Some(30_000.0), ..row.goal(Goal::AtLeast(200_000.0)) };
        assert_eq!(both.met(), Some(false));
        assert_eq!(both.goal_text().as_deref(), Some(">= 200,000 obj/s, >= 4 x PG"));
    }
}
