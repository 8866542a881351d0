//! The PostgreSQL column: which figure of `bench/pg_anchor.sh`'s JSON line each row is compared
//! with, and reading that line. Without `--pg` the column says "not measured": a ratio to
//! PostgreSQL holds only when both sides ran on the same machine within minutes of each other.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// A PostgreSQL figure that a row is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgFigure {
    /// 4 KiB append write + fsync, p50 (the script's fsync floor).
    FsyncP50,
    /// One-row upsert transaction, synchronous_commit=on: p50 and p99.
    CommitP50,
    CommitP99,
    /// 100-row upsert transactions, one client, objects/s.
    Upsert100Rate,
    /// One-row upsert transactions from 16 clients, commits/s, and their p99.
    Commit16Rate,
    Commit16P99,
    /// Commit to visible on the hot standby: p50 and p99.
    LagP50,
    LagP99,
    /// WAL bytes per one-row insert.
    WalBytesPerInsert,
    /// Server-side bulk load (INSERT..SELECT), objects/s.
    BulkLoadRate,
    /// Database size after the bulk load.
    DatabaseSize,
    /// pg_basebackup of that database.
    BasebackupTime,
    /// Loopback TCP copy.
    LoopbackMBps,
}

impl PgFigure {
    /// Where the figure sits in the script's JSON, and the factor to the row's unit.
    fn path(self) -> (&'static [&'static str], f64) {
        const MIB: f64 = 1024.0 * 1024.0;
        match self {
            PgFigure::FsyncP50 => (&["fsync", "append_write_fsync", "p50_ms"], 1.0),
            PgFigure::CommitP50 => (&["pg", "single_latency_on", "p50_ms"], 1.0),
            PgFigure::CommitP99 => (&["pg", "single_latency_on", "p99_ms"], 1.0),
            PgFigure::Upsert100Rate => (&["pg", "tput_on_1", "objects_per_s"], 1.0),
            PgFigure::Commit16Rate => (&["pg", "tput_1row_16", "txn_per_s"], 1.0),
            PgFigure::Commit16P99 => (&["pg", "tput_1row_16", "txn_latency", "p99_ms"], 1.0),
            PgFigure::LagP50 => (&["pg", "lag_poll", "p50_ms"], 1.0),
            PgFigure::LagP99 => (&["pg", "lag_poll", "p99_ms"], 1.0),
            PgFigure::WalBytesPerInsert => (&["pg", "wal_per_change", "insert", "bytes_per_change"], 1.0),
            PgFigure::BulkLoadRate => (&["pg", "full_copy", "load_objects_per_s"], 1.0),
            PgFigure::DatabaseSize => (&["pg", "full_copy", "db_size_MB"], 1e6 / MIB),
            PgFigure::BasebackupTime => (&["pg", "full_copy", "basebackup_seconds"], 1e3),
            PgFigure::LoopbackMBps => (&["loopback", "MBps_median"], 1.0),
        }
    }

    /// The figure in the unit of the rows compared with it, when the JSON has it.
    pub fn value(self, anchor: &Value) -> Option<f64> {
        let (path, factor) = self.path();
        let v = path.iter().try_fold(anchor, |v, k| v.get(k))?.as_f64()?;
        Some(v * factor)
    }
}

/// The JSON line printed last by `pg_anchor.sh`, read from `file` (the whole output of the script
/// is accepted too: its last non-empty line is used).
pub fn load(file: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).context("the PostgreSQL figures file is empty")?;
    let v: Value = serde_json::from_str(line.trim())
        .with_context(|| format!("{}: the last line is not pg_anchor.sh's JSON", file.display()))?;
    anyhow::ensure!(v.get("pg").is_some(), "{}: no \"pg\" figures in the JSON", file.display());
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_read_and_converted() {
        let v: Value = serde_json::json!({
            "fsync": {"append_write_fsync": {"p50_ms": 0.2}},
            "pg": {"single_latency_on": {"p50_ms": 0.25, "p99_ms": 0.4},
                   "full_copy": {"db_size_MB": 1048.576, "basebackup_seconds": 0.77}}
        });
        assert_eq!(PgFigure::CommitP50.value(&v), Some(0.25));
        assert_eq!(PgFigure::BasebackupTime.value(&v), Some(770.0));
        let mib = PgFigure::DatabaseSize.value(&v).unwrap_or(0.0);
        assert!((mib - 1000.0).abs() < 1e-9, "{mib}");
        assert_eq!(PgFigure::LagP50.value(&v), None);
    }
}
