//! Smoke test of `mgha-bench --quick`: every figure is measured and printed, as a table and as
//! JSON, and the scratch directory is removed. No timing is asserted: this runs anywhere.

use std::path::Path;
use std::process::Command;

/// Every row of the single-node figures, by its stable key and the start of its label in the table.
const ROWS: &[(&str, &str)] = &[
    ("disk.fdatasync.p50", "disk floor p50"),
    ("disk.fdatasync.p99", "disk floor p99"),
    ("disk.fsync.p50", "disk p50: 4 KiB append + fsync"),
    ("publish.p50", "publish latency p50"),
    ("publish.p50_over_floor", "publish latency p50 / disk floor p50"),
    ("publish.p99", "publish latency p99"),
    ("publish.rate.1", "publish throughput, 1 object/revision"),
    ("publish.rate.100", "publish throughput, 100 new objects/revision"),
    ("publish.rate.100_updates", "publish throughput, 100 updated objects/revision"),
    ("publish.rate.100_scattered", "publish throughput, 100 updates/revision scattered"),
    ("publish.rate.100_scattered_share", "  scattered updates / updates on the small store"),
    ("build.large", "build:"),
    ("store.large.size", "store file"),
    ("diff.small", "diff of 100 changes, 100-object store"),
    ("diff.large", "diff of 100 changes, 10000-object store"),
    ("diff.large_over_small", "diff time, large store / small store"),
    ("open.small", "open, 100-object store"),
    ("open.large", "open, 10000-object store"),
    ("rss.small", "RSS after open, 100-object store"),
    ("rss.large", "RSS after open, 10000-object store"),
    ("rss.large_over_small", "RSS after open, large store / small store"),
    ("rss.large.check_peak", "peak RSS after reading all"),
    ("backup.size", "backup file"),
    ("backup.write", "backup write"),
    ("backup.verify", "backup verify"),
    ("backup.restore", "backup restore"),
    ("backup.restore.objects", "  restore, objects"),
    ("scrub.records", "scrub, unpaced: records verified"),
    ("scrub.bytes", "scrub, unpaced: bytes verified"),
    ("check.full", "full check (state hash recomputed)"),
    ("get.rate", "get by name"),
    ("get.verify_share", "get: share of the seal check"),
    ("publish.verify_share", "publish, 100 scattered updates/revision: share of the seal checks"),
    ("api.publish.1.rate", "admin API: 1 client, 1-host publishes"),
    ("api.publish.1.p50", "admin API: 1 client, publish p50"),
    ("api.publish.16.rate", "admin API: 16 clients, 1-host publishes"),
    ("api.publish.16.p99", "admin API: 16 clients, publish p99"),
    ("api.publish.16.over_fsync", "admin API: 16-client rate / serial fsync rate"),
    ("api.publish.cpu.1", "admin API: daemon CPU per publish, 1 client"),
    ("api.publish.cpu.16", "admin API: daemon CPU per publish, 16 clients"),
    ("replication.cpu.active", "replication: Active CPU per 1-host revision per Standby"),
    ("replication.cpu.standby", "replication: Standby CPU per applied 1-host revision"),
];

fn bench(dir: &Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mgha-bench"))
        .args(["--quick", "--dir"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("runs mgha-bench");
    assert!(out.status.success(), "mgha-bench failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn assert_scratch_removed(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir).expect("lists the dir").collect();
    assert!(left.is_empty(), "the bench left {left:?} behind");
}

#[test]
fn quick_bench_prints_every_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = bench(dir.path(), &[]);
    for (_, label) in ROWS {
        assert!(table.lines().any(|l| l.starts_with(label)), "no row '{label}' in:\n{table}");
    }
    assert!(table.contains("goals met"), "no summary in:\n{table}");
    assert_scratch_removed(dir.path());
}

#[test]
fn quick_bench_json_has_every_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json: serde_json::Value = serde_json::from_str(&bench(dir.path(), &["--json"])).expect("valid JSON");
    let rows = json["rows"].as_array().expect("rows");
    for (key, _) in ROWS {
        let row = rows.iter().find(|r| r["key"] == *key).unwrap_or_else(|| panic!("no row {key}"));
        assert!(row["value"].as_f64().is_some(), "row {key} has no value");
    }
    // The cluster figures (bench/cluster.rs) follow; each must carry a value too.
    for row in rows {
        assert!(row["value"].as_f64().is_some(), "row without a value: {row}");
    }
    assert!(json["machine"]["cores"].as_u64().is_some());
    assert_scratch_removed(dir.path());
}

/// The rows of `--scenario wan`, by key and the start of their label.
const WAN_ROWS: &[(&str, &str)] = &[
    ("catch_up_ms", "catch-up of 100 one-object revisions (restart to head)"),
    ("wan_catch_up_ms", "catch-up of 100 one-object revisions, 40 ms round trip"),
    ("wan_lag_p50", "replication lag, 1 obj/rev, 40 ms round trip, p50"),
    ("wan_lag_p99", "replication lag, 1 obj/rev, 40 ms round trip, p99"),
    ("full_sync_ms", "full sync of 10000 objects (process start"),
    ("wan_full_sync_ms", "full sync of 10000 objects, 40 ms round trip"),
    ("wan_full_sync_over_loopback", "  full sync, round trip / loopback"),
];

#[test]
fn quick_wan_scenario_has_every_row_with_its_goal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json: serde_json::Value =
        serde_json::from_str(&bench(dir.path(), &["--scenario", "wan", "--json"])).expect("valid JSON");
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), WAN_ROWS.len(), "rows: {rows:?}");
    for (key, label) in WAN_ROWS {
        let row = rows.iter().find(|r| r["key"] == *key).unwrap_or_else(|| panic!("no row {key}"));
        assert!(row["figure"].as_str().is_some_and(|f| f.starts_with(label)), "row {key}: {row}");
        assert!(row["value"].as_f64().is_some_and(|v| v > 0.0), "row {key} has no value: {row}");
    }
    for key in ["catch_up_ms", "wan_catch_up_ms", "wan_lag_p50", "wan_full_sync_over_loopback"] {
        let row = rows.iter().find(|r| r["key"] == key).expect("row");
        assert!(!row["goal"].is_null(), "row {key} has no goal: {row}");
    }
    assert_scratch_removed(dir.path());
}

/// Without `--pg` the PostgreSQL column says so; with it, each compared row carries the figure
/// from the file, and a file that is not the script's JSON is refused before measuring.
#[test]
fn postgresql_column_comes_from_the_pg_file_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = bench(dir.path(), &["--no-cluster"]);
    let p50 = table.lines().find(|l| l.starts_with("publish latency p50, 1")).expect("publish.p50 row");
    assert!(p50.contains("not measured"), "no 'not measured' in: {p50}");
    // Its goal is a ratio to PostgreSQL's figure: without one it is neither met nor missed.
    assert!(p50.contains("<= 0.8 x PG") && p50.ends_with("needs --pg"), "{p50}");
    assert!(table.contains("more are ratios to PostgreSQL: pass --pg"), "{table}");

    let pg = dir.path().join("pg.txt");
    let anchor = serde_json::json!({
        "fsync": {"append_write_fsync": {"p50_ms": 0.5}},
        "pg": {"server_version": "15.0", "single_latency_on": {"p50_ms": 0.123, "p99_ms": 0.456},
               "tput_on_1": {"objects_per_s": 12345.0},
               "tput_1row_16": {"txn_per_s": 4321.0, "txn_latency": {"p99_ms": 7.5}}}
    });
    std::fs::write(&pg, format!("| table |\n{anchor}\n")).expect("writes the file");
    let run = tempfile::tempdir().expect("temp dir");
    let json: serde_json::Value =
        serde_json::from_str(&bench(run.path(), &["--no-cluster", "--json", "--pg", pg.to_str().expect("utf-8")]))
            .expect("valid JSON");
    let rows = json["rows"].as_array().expect("rows");
    let pg_of = |key: &str| rows.iter().find(|r| r["key"] == key).map(|r| r["postgresql"].clone());
    assert_eq!(pg_of("publish.p50"), Some(serde_json::json!(0.123)));
    assert_eq!(pg_of("publish.rate.100"), Some(serde_json::json!(12345.0)));
    assert_eq!(pg_of("api.publish.16.rate"), Some(serde_json::json!(4321.0)));
    // A figure the file does not have stays unmeasured rather than invented.
    assert_eq!(pg_of("build.large"), Some(serde_json::Value::Null));
    // Goals against PostgreSQL are judged on the ratio to the file's figure, and only then.
    let row = |key: &str| rows.iter().find(|r| r["key"] == key).cloned().expect("row");
    let rate = row("publish.rate.100");
    let vs = rate["vs_postgresql"].as_f64().expect("a ratio to PostgreSQL");
    assert!((vs - rate["value"].as_f64().expect("value") / 12345.0).abs() < 1e-9, "{rate}");
    assert_eq!(rate["met"], serde_json::json!(vs >= 4.0), "{rate}");
    assert_eq!(rate["goal_vs_postgresql"], serde_json::json!({"at_least": 4.0}), "{rate}");
    assert!(row("build.large")["met"].is_null(), "judged without PostgreSQL's figure");

    std::fs::write(&pg, "not json\n").expect("writes the file");
    let out = Command::new(env!("CARGO_BIN_EXE_mgha-bench"))
        .args(["--quick", "--no-cluster", "--dir"])
        .arg(run.path())
        .arg("--pg")
        .arg(&pg)
        .output()
        .expect("runs mgha-bench");
    assert!(!out.status.success(), "a bad --pg file was accepted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_anchor.sh"), "{}", String::from_utf8_lossy(&out.stderr));
}
