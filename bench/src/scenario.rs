//! The measurements, in the order they run: the disk floor, publish latency and throughput,
//! building a small and a large store and diffing a 10,000-change revision in each, opening both
//! in a fresh process, and backing the large one up, verifying and restoring it.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use mgha_core::backup::{restore_backup, verify_backup, write_backup};
use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::limits::STORE_CACHE_BYTES;
use mgha_core::store::record;
use mgha_core::store::STORE_FILE;
use mgha_core::NodeState;

use super::machine::Machine;
use super::pg::PgFigure;
use super::probe;
use super::report::{Goal, Report, Row, Unit};
use super::workload::{fsync_floor, host_json_bytes, hosts, percentile_ms};
use super::Scale;

/// Goals. PostgreSQL's figures come from `--pg` (bench/pg_anchor.sh), never from constants: they
/// hold only for the machine and the minutes they were measured in, so the goals against them
/// are ratios to the same run's figure.
const PUBLISH_P50_OVER_PG_MAX: f64 = 0.8;
const PUBLISH_P50_OVER_FLOOR_MAX: f64 = 1.2;
const NEW_OVER_PG_MIN: f64 = 4.0;
const UPDATED_OVER_PG_MIN: f64 = 3.0;
const SCATTERED_OVER_PG_MIN: f64 = 1.5;
/// Updates scattered over the large store, as a share of updates on the small one.
const SCATTERED_SHARE_PERCENT_MIN: f64 = 50.0;
const BULK_OVER_PG_MIN: f64 = 3.0;
const STORE_SIZE_OVER_PG_MAX: f64 = 1.0;
const DIFF_MS_MAX: f64 = 100.0;
const OPEN_MS_MAX: f64 = 1_000.0;
/// Resident memory after opening a 100 times larger store may grow by at most this factor.
const RSS_GROWTH_MAX: f64 = 2.0;
/// Reading the whole store may take the page cache (mgha_core::limits::STORE_CACHE_BYTES) and
/// as much again for everything else, whatever the store's size.
const CHECK_PEAK_MIB_MAX: f64 = 2.0 * STORE_CACHE_BYTES as f64 / MIB;
/// Verifying what is read (the seal of each record) may cost at most this share of a get or a
/// publish.
const VERIFY_SHARE_PERCENT_MAX: f64 = 5.0;

const AUTHOR: &str = "bench";
const MIB: f64 = 1024.0 * 1024.0;

pub fn run(scratch: &Path, scale: Scale, quick: bool) -> anyhow::Result<Report> {
    let started = Instant::now();
    let log = |what: &str| eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
    let mut machine = Machine::probe(scratch);
    let mut rows = Vec::new();

    log("disk: fsync floor");
    let floor_p50 = disk_floor(scratch, scale, &mut rows)?;
    log("publish: latency and throughput");
    publish(&scratch.join("publish"), scale, floor_p50, &mut rows)?;

    log(&format!("building the {}-object store", scale.small_objects));
    let small = build(&scratch.join("small"), scale.small_objects, scale, false)?;
    log(&format!("building the {}-object store", scale.large_objects));
    let large = build(&scratch.join("large"), scale.large_objects, scale, true)?;
    build_rows(&large, scale, &mut rows);
    space_rows(&large.dir, &mut rows)?;
    let scattered_rate = large.scattered_rate;

    log("open, memory and diff, in a fresh process");
    let small_probe = probe::measure(&small.dir)?;
    let large_probe = probe::measure(&large.dir)?;
    for (probe, built) in [(&small_probe, &small), (&large_probe, &large)] {
        ensure!(probe.objects == built.objects as u64, "the probe saw {} objects", probe.objects);
        let changes = scale.diff_changes.min(built.objects);
        ensure!(probe.diff_objects == changes, "the diff lists {} objects, not {changes}", probe.diff_objects);
    }
    diff_rows(&small_probe, &large_probe, scale, &mut rows);
    open_rows(&small_probe, &large_probe, scale, &mut rows);

    log("backup, verify and restore of the large store");
    backup(scratch, &large.dir, scale, scattered_rate, &mut rows)?;
    log("done");
    machine.finish();

    Ok(Report {
        machine,
        quick,
        scratch: scratch.display().to_string(),
        host_json_bytes: host_json_bytes(),
        elapsed_s: started.elapsed().as_secs_f64(),
        rows,
        pg_source: None,
    })
}

/// The figures of `--scenario store`: publishes, the large store's build, size (by table), open,
/// diff and gets by name; no small store, backup or cluster.
pub fn store(scratch: &Path, scale: Scale, quick: bool) -> anyhow::Result<Report> {
    let started = Instant::now();
    let log = |what: &str| eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
    let mut report = empty(scratch, quick);
    let rows = &mut report.rows;
    log("disk: fsync floor");
    let floor_p50 = disk_floor(scratch, scale, rows)?;
    log("publish: latency and throughput");
    publish(&scratch.join("publish"), scale, floor_p50, rows)?;
    log(&format!("building the {}-object store", scale.large_objects));
    let large = build(&scratch.join("large"), scale.large_objects, scale, true)?;
    build_rows(&large, scale, rows);
    space_rows(&large.dir, rows)?;
    log("open and diff, in a fresh process");
    let probe = probe::measure(&large.dir)?;
    ensure!(probe.objects == large.objects as u64, "the probe saw {} objects", probe.objects);
    let changes = scale.diff_changes.min(large.objects);
    ensure!(probe.diff_objects == changes, "the diff lists {} objects, not {changes}", probe.diff_objects);
    rows.push(diff_large_row(&probe, scale));
    rows.push(open_large_row(&probe, scale));
    log("gets by name");
    let engine = mgha_sync::open_engine(&large.dir, EngineOptions::default())?;
    read_rows(&engine, scale, large.scattered_rate, rows)?;
    drop(engine);
    log("done");
    report.machine.finish();
    report.elapsed_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The large store's bytes by table (redb's statistics): entries, and what their keys and
/// values, the B-tree's own bytes and the pages' unused tails take.
fn space_rows(dir: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let engine = mgha_sync::open_engine(dir, EngineOptions::default())?;
    let space = engine.store().space()?;
    drop(engine);
    for t in &space.tables {
        let key = match t.table.as_str() {
            "objects" => "store.table.objects",
            "names" => "store.table.names",
            "refs" => "store.table.refs",
            "revisions" => "store.table.revisions",
            "undo" => "store.table.undo",
            _ => "store.table.meta",
        };
        let figure = format!(
            "table {}: {} entries; keys and values {:.1}, B-tree {:.1}, unused {:.1} MiB",
            t.table,
            t.entries,
            t.stored_bytes as f64 / MIB,
            t.metadata_bytes as f64 / MIB,
            t.fragmented_bytes as f64 / MIB
        );
        rows.push(Row::new(key, figure, t.total_bytes() as f64 / MIB, Unit::MiB));
    }
    let tables: u64 = space.tables.iter().map(|t| t.total_bytes()).sum();
    rows.push(Row::new(
        "store.other",
        "pages of no table (redb's allocator and table directory) and free pages",
        space.file_bytes.saturating_sub(tables) as f64 / MIB,
        Unit::MiB,
    ));
    rows.push(Row::new(
        "store.unallocated",
        "of which free pages, not allocated",
        space.file_bytes.saturating_sub(space.allocated_bytes) as f64 / MIB,
        Unit::MiB,
    ));
    Ok(())
}

/// A report with the disk floor only, for `--scenario api`.
pub fn disk_only(scratch: &Path, scale: Scale, quick: bool) -> anyhow::Result<Report> {
    let mut report = empty(scratch, quick);
    disk_floor(scratch, scale, &mut report.rows)?;
    Ok(report)
}

/// A report without rows, for a run that measures other figures only (`--scenario plugins`).
pub fn empty(scratch: &Path, quick: bool) -> Report {
    Report {
        machine: Machine::probe(scratch),
        quick,
        scratch: scratch.display().to_string(),
        host_json_bytes: host_json_bytes(),
        elapsed_s: 0.0,
        rows: Vec::new(),
        pg_source: None,
    }
}

/// The disk's floor for one durable write; returns its p50 in ms.
fn disk_floor(scratch: &Path, scale: Scale, rows: &mut Vec<Row>) -> anyhow::Result<f64> {
    let data = fsync_floor(scratch, scale.fsync_rounds, false).context("measuring the fdatasync floor")?;
    let full = fsync_floor(scratch, scale.fsync_rounds, true).context("measuring the fsync floor")?;
    let p50 = percentile_ms(&data, 50.0);
    rows.push(Row::new("disk.fdatasync.p50", "disk floor p50: 4 KiB append + fdatasync", p50, Unit::Milliseconds));
    let p99 = percentile_ms(&data, 99.0);
    rows.push(Row::new("disk.fdatasync.p99", "disk floor p99: 4 KiB append + fdatasync", p99, Unit::Milliseconds));
    let full_p50 = percentile_ms(&full, 50.0);
    rows.push(
        Row::new("disk.fsync.p50", "disk p50: 4 KiB append + fsync", full_p50, Unit::Milliseconds)
            .pg(PgFigure::FsyncP50),
    );
    Ok(p50)
}

/// Durable publishes through `Engine::publish`: one object at a time (latency), then batches of
/// new objects and batches of updates (throughput).
fn publish(dir: &Path, scale: Scale, floor_p50: f64, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let engine = mgha_sync::create_engine(dir, &NodeState::new_primary("bench"), EngineOptions::default())?;
    let warmup = (scale.latency_publishes / 10).max(5) as u64;
    let mut next = 0u64;
    for _ in 0..warmup {
        engine.publish(AUTHOR, &hosts([next], 0))?;
        next += 1;
    }

    let singles: Vec<_> = (0..scale.latency_publishes as u64).map(|k| hosts([next + k], 0)).collect();
    next += singles.len() as u64;
    let mut samples = Vec::with_capacity(singles.len());
    let count = singles.len();
    let t = Instant::now();
    for cs in singles {
        let one = Instant::now();
        engine.publish_owned(AUTHOR, cs)?;
        samples.push(one.elapsed());
    }
    let single_rate = count as f64 / t.elapsed().as_secs_f64();
    let p50 = percentile_ms(&samples, 50.0);
    let p99 = percentile_ms(&samples, 99.0);

    let batch = scale.batch_objects as u64;
    let created_from = next;
    let inserts: Vec<_> =
        (0..scale.batch_revisions as u64).map(|r| hosts(next + r * batch..next + (r + 1) * batch, 0)).collect();
    let insert_rate = publish_all(&engine, inserts, scale.batch_objects)?;
    let updates: Vec<_> = (0..scale.batch_revisions as u64)
        .map(|r| hosts(created_from + r * batch..created_from + (r + 1) * batch, 1))
        .collect();
    let update_rate = publish_all(&engine, updates, scale.batch_objects)?;

    rows.push(
        Row::new("publish.p50", "publish latency p50, 1 object/revision", p50, Unit::Milliseconds)
            .pg(PgFigure::CommitP50)
            .pg_goal(Goal::AtMost(PUBLISH_P50_OVER_PG_MAX)),
    );
    rows.push(
        Row::new("publish.p50_over_floor", "publish latency p50 / disk floor p50", p50 / floor_p50, Unit::Times)
            .goal(Goal::AtMost(PUBLISH_P50_OVER_FLOOR_MAX)),
    );
    rows.push(
        Row::new("publish.p99", "publish latency p99, 1 object/revision", p99, Unit::Milliseconds)
            .pg(PgFigure::CommitP99),
    );
    rows.push(Row::new("publish.rate.1", "publish throughput, 1 object/revision", single_rate, Unit::ObjectsPerSecond));
    rows.push(
        Row::new(
            "publish.rate.100",
            format!("publish throughput, {batch} new objects/revision"),
            insert_rate,
            Unit::ObjectsPerSecond,
        )
        .pg(PgFigure::Upsert100Rate)
        .pg_goal(Goal::AtLeast(NEW_OVER_PG_MIN)),
    );
    rows.push(
        Row::new(
            "publish.rate.100_updates",
            format!("publish throughput, {batch} updated objects/revision"),
            update_rate,
            Unit::ObjectsPerSecond,
        )
        .pg(PgFigure::Upsert100Rate)
        .pg_goal(Goal::AtLeast(UPDATED_OVER_PG_MIN)),
    );
    Ok(())
}

/// Publishes every changeset, each given up as the daemon and the C ABI give up what they
/// parsed (`Engine::publish_owned`); returns objects per second.
fn publish_all(engine: &Engine, changesets: Vec<mgha_core::ChangeSet>, per_revision: usize) -> anyhow::Result<f64> {
    let count = changesets.len();
    let t = Instant::now();
    for cs in changesets {
        engine.publish_owned(AUTHOR, cs)?;
    }
    Ok((count * per_revision) as f64 / t.elapsed().as_secs_f64())
}

/// A store built for the diff, open and backup figures.
struct Built {
    dir: PathBuf,
    objects: usize,
    build_rate: f64,
    /// Objects/s of revisions updating objects spread over the whole store, when measured.
    scattered_rate: Option<f64>,
    file_bytes: u64,
}

/// Builds a store of `objects` hosts in large revisions, optionally times revisions of updates
/// scattered over it, then publishes one revision changing `scale.diff_changes` objects spread
/// over the whole store, for the probe to diff.
fn build(dir: &Path, objects: usize, scale: Scale, scattered: bool) -> anyhow::Result<Built> {
    let engine = mgha_sync::create_engine(dir, &NodeState::new_primary("bench"), EngineOptions::default())?;
    let mut publishing = Duration::ZERO;
    let per_revision = scale.build_objects_per_revision.min(objects);
    for start in (0..objects).step_by(per_revision) {
        let cs = hosts(start as u64..(start + per_revision).min(objects) as u64, 0);
        let t = Instant::now();
        engine.publish_owned(AUTHOR, cs)?;
        publishing += t.elapsed();
    }
    let build_rate = objects as f64 / publishing.as_secs_f64();
    let scattered_rate = match scattered {
        true => Some(scattered_updates(&engine, objects, scale)?),
        false => None,
    };
    let changes = scale.diff_changes.min(objects);
    let stride = (objects / changes) as u64;
    engine.publish(AUTHOR, &hosts((0..changes as u64).map(|k| k * stride), 1))?;
    drop(engine);
    let file_bytes = std::fs::metadata(dir.join(STORE_FILE))?.len();
    Ok(Built { dir: dir.to_path_buf(), objects, build_rate, scattered_rate, file_bytes })
}

/// Revisions of `scale.batch_objects` updates each, one object every `objects / batch` of the
/// store, so that no two share a page: the worst case for a copy-on-write B-tree.
fn scattered_updates(engine: &Engine, objects: usize, scale: Scale) -> anyhow::Result<f64> {
    let batch = scale.batch_objects.min(objects) as u64;
    let stride = objects as u64 / batch;
    let changesets: Vec<_> =
        (0..scale.scattered_revisions as u64).map(|r| hosts((0..batch).map(|k| k * stride + r % stride), 2)).collect();
    publish_all(engine, changesets, batch as usize)
}

fn build_rows(large: &Built, scale: Scale, rows: &mut Vec<Row>) {
    if let Some(rate) = large.scattered_rate {
        rows.push(
            Row::new(
                "publish.rate.100_scattered",
                format!(
                    "publish throughput, {} updates/revision scattered over {} objects",
                    scale.batch_objects, large.objects
                ),
                rate,
                Unit::ObjectsPerSecond,
            )
            .pg(PgFigure::Upsert100Rate)
            .pg_goal(Goal::AtLeast(SCATTERED_OVER_PG_MIN)),
        );
        // Against the same updates on the small store, when this run measured them.
        if let Some(small) = rows.iter().find(|r| r.key == "publish.rate.100_updates").map(|r| r.value) {
            rows.push(
                Row::new(
                    "publish.rate.100_scattered_share",
                    "  scattered updates / updates on the small store",
                    100.0 * rate / small,
                    Unit::Percent,
                )
                .goal(Goal::AtLeast(SCATTERED_SHARE_PERCENT_MIN)),
            );
        }
    }
    rows.push(
        Row::new(
            "build.large",
            format!("build: {} objects in revisions of {}", large.objects, scale.build_objects_per_revision),
            large.build_rate,
            Unit::ObjectsPerSecond,
        )
        .pg(PgFigure::BulkLoadRate)
        .pg_goal(Goal::AtLeast(BULK_OVER_PG_MIN)),
    );
    rows.push(
        Row::new(
            "store.large.size",
            format!("store file, {} objects", large.objects),
            large.file_bytes as f64 / MIB,
            Unit::MiB,
        )
        .pg(PgFigure::DatabaseSize)
        .pg_goal(Goal::AtMost(STORE_SIZE_OVER_PG_MAX)),
    );
}

/// The diff over the large store, against its goal (every run that builds the large store).
fn diff_large_row(large: &probe::ProbeResult, scale: Scale) -> Row {
    let (changes, n) = (scale.diff_changes.min(scale.large_objects), scale.large_objects);
    Row::new("diff.large", format!("diff of {changes} changes, {n}-object store"), large.diff_ms, Unit::Milliseconds)
        .goal(Goal::AtMost(DIFF_MS_MAX))
}

/// The open of the large store, against its goal.
fn open_large_row(large: &probe::ProbeResult, scale: Scale) -> Row {
    Row::new("open.large", format!("open, {}-object store", scale.large_objects), large.open_ms, Unit::Milliseconds)
        .goal(Goal::AtMost(OPEN_MS_MAX))
}

fn diff_rows(small: &probe::ProbeResult, large: &probe::ProbeResult, scale: Scale, rows: &mut Vec<Row>) {
    let changes = scale.diff_changes;
    let n_small = scale.small_objects;
    rows.push(
        Row::new(
            "diff.small",
            format!("diff of {changes} changes, {n_small}-object store"),
            small.diff_ms,
            Unit::Milliseconds,
        )
        .goal(Goal::AtMost(DIFF_MS_MAX)),
    );
    rows.push(diff_large_row(large, scale));
    rows.push(
        Row::new(
            "diff.large_over_small",
            "diff time, large store / small store",
            large.diff_ms / small.diff_ms,
            Unit::Times,
        )
        .goal(Goal::Between(0.5, 1.5)),
    );
}

fn open_rows(small: &probe::ProbeResult, large: &probe::ProbeResult, scale: Scale, rows: &mut Vec<Row>) {
    let (n_small, n_large) = (scale.small_objects, scale.large_objects);
    let mib = |kib: u64| kib as f64 / 1024.0;
    rows.push(Row::new("open.small", format!("open, {n_small}-object store"), small.open_ms, Unit::Milliseconds));
    rows.push(open_large_row(large, scale));
    rows.push(Row::new(
        "rss.small",
        format!("RSS after open, {n_small}-object store"),
        mib(small.rss_open_kib),
        Unit::MiB,
    ));
    rows.push(Row::new(
        "rss.large",
        format!("RSS after open, {n_large}-object store"),
        mib(large.rss_open_kib),
        Unit::MiB,
    ));
    rows.push(
        Row::new(
            "rss.large_over_small",
            "RSS after open, large store / small store",
            large.rss_open_kib as f64 / small.rss_open_kib as f64,
            Unit::Times,
        )
        .goal(Goal::AtMost(RSS_GROWTH_MAX)),
    );
    rows.push(
        Row::new(
            "rss.large.check_peak",
            format!("peak RSS after reading all {n_large} objects (full check)"),
            mib(large.hwm_check_kib),
            Unit::MiB,
        )
        .goal(Goal::AtMost(CHECK_PEAK_MIB_MAX)),
    );
}

/// The background scrub's own speed over the large store, without its pacing (the daemon holds
/// it to `SCRUB_BYTES_PER_SEC_MAX`), and the full check that also recomputes the state hash.
fn scrub_rows(engine: &Engine, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let t = Instant::now();
    let scrubbed = engine.store().scrub_all(mgha_core::limits::SCRUB_BATCH_RECORDS)?;
    let scrub_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let checked = engine.store().check()?;
    let check_s = t.elapsed().as_secs_f64();
    ensure!(checked.objects + checked.revisions == scrubbed.records, "scrub and check disagree");
    rows.push(Row::new(
        "scrub.records",
        "scrub, unpaced: records verified",
        scrubbed.records as f64 / scrub_s,
        Unit::ObjectsPerSecond,
    ));
    rows.push(Row::new(
        "scrub.bytes",
        "scrub, unpaced: bytes verified",
        scrubbed.bytes as f64 / 1e6 / scrub_s,
        Unit::MBPerSecond,
    ));
    rows.push(Row::new("check.full", "full check (state hash recomputed)", check_s * 1e3, Unit::Milliseconds));
    Ok(())
}

/// Gets by name spread over the large store, and what verifying them costs: each get checks the
/// seal of the object it reads (a blake3 of the record) and that the name index reached the
/// object named. The seal checks alone are timed over the same records in the same run, and
/// their share of a get reported. A scattered update publish checks two seals per object it
/// replaces (the lookup by name and the version it replaces), whose share of the scattered
/// publish rate is reported too.
fn read_rows(engine: &Engine, scale: Scale, scattered_rate: Option<f64>, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let n = scale.gets.min(scale.large_objects).max(1);
    let stride = (scale.large_objects / n).max(1);
    let names: Vec<String> = (0..n).map(|k| format!("host-{:08}", k * stride)).collect();
    let store = engine.store();
    let t = Instant::now();
    let mut objects = Vec::with_capacity(n);
    for name in &names {
        objects.push(store.get("host", name)?);
    }
    let get_s = t.elapsed().as_secs_f64();
    let records: Vec<Vec<u8>> = objects.iter().map(|o| record::seal(&o.encode())).collect();
    let t = Instant::now();
    let mut payload_bytes = 0usize;
    for r in &records {
        payload_bytes += std::hint::black_box(record::unseal(r, String::new)?.0.len());
    }
    let unseal_s = t.elapsed().as_secs_f64();
    ensure!(payload_bytes > 0, "no record verified");
    rows.push(Row::new(
        "get.rate",
        format!("get by name, {n} objects spread over {} objects", scale.large_objects),
        n as f64 / get_s,
        Unit::ObjectsPerSecond,
    ));
    rows.push(
        Row::new("get.verify_share", "get: share of the seal check", 100.0 * unseal_s / get_s, Unit::Percent)
            .goal(Goal::AtMost(VERIFY_SHARE_PERCENT_MAX)),
    );
    if let Some(rate) = scattered_rate {
        let per_object_s = 1.0 / rate;
        let checks_s = 2.0 * unseal_s / n as f64;
        rows.push(
            Row::new(
                "publish.verify_share",
                format!("publish, {} scattered updates/revision: share of the seal checks", scale.batch_objects),
                100.0 * checks_s / per_object_s,
                Unit::Percent,
            )
            .goal(Goal::AtMost(VERIFY_SHARE_PERCENT_MAX)),
        );
    }
    Ok(())
}

/// Backup of the large store to a file (flushed to disk), then verify and restore of that file.
fn backup(
    scratch: &Path,
    store_dir: &Path,
    scale: Scale,
    scattered_rate: Option<f64>,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let path = scratch.join("large.mghabak");
    let engine = mgha_sync::open_engine(store_dir, EngineOptions::default())?;
    let t = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
    let written = write_backup(&engine.store(), &mut out, &mut |_| {})?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let write_s = t.elapsed().as_secs_f64();
    scrub_rows(&engine, rows)?;
    read_rows(&engine, scale, scattered_rate, rows)?;
    drop(engine);

    let t = Instant::now();
    let verified = verify_backup(&path, &mut BufReader::with_capacity(1 << 20, File::open(&path)?), &mut |_| {})?;
    let verify_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut input = BufReader::with_capacity(1 << 20, File::open(&path)?);
    let restored = restore_backup(&path, &mut input, &scratch.join("restored"), &mut |_| {})?;
    let restore_s = t.elapsed().as_secs_f64();
    ensure!(verified.bytes == written.bytes && restored.bytes == written.bytes, "backup sizes disagree");
    ensure!(restored.header.objects == scale.large_objects as u64, "restored {} objects", restored.header.objects);

    let mb = written.bytes as f64 / 1e6;
    let n = scale.large_objects;
    rows.push(Row::new("backup.size", format!("backup file, {n} objects"), written.bytes as f64 / MIB, Unit::MiB));
    rows.push(Row::new("backup.write", "backup write (to file, fsynced)", mb / write_s, Unit::MBPerSecond));
    rows.push(Row::new("backup.verify", "backup verify", mb / verify_s, Unit::MBPerSecond));
    rows.push(Row::new("backup.restore", "backup restore (into a new store)", mb / restore_s, Unit::MBPerSecond));
    rows.push(
        Row::new("backup.restore.objects", "  restore, objects", n as f64 / restore_s, Unit::ObjectsPerSecond)
            .pg(PgFigure::BulkLoadRate)
            .pg_goal(Goal::AtLeast(BULK_OVER_PG_MIN)),
    );
    Ok(())
}
