//! Cluster figures: replication lag from a commit on the Active to the durable apply on a
//! Standby, bytes on the wire per revision, a full sync of a large store (each side in its own
//! process, so its peak memory is its own) next to a raw loopback copy of the same bytes, planned
//! and forced changeover times, and merge throughput.

use mgha_sync::EngineExt;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::model::{Object, Uid};
use mgha_core::revision::Head;
use mgha_sync::cluster::{init_primary, issue_join_key, join_secondary};
use mgha_sync::pki::TlsFiles;
use mgha_sync::{SyncConfig, SyncRuntime};
use mgha_tests::proxy::FaultProxy;

use super::pg::PgFigure;
use super::report::{Goal, Row, Unit};
use super::workload::{hosts, percentile_ms};

/// Goals against PostgreSQL are ratios to its figure of the same run (`--pg`).
const LAG_P99_OVER_PG_MAX: f64 = 0.8;
const WIRE_BYTES_MAX: f64 = 215.0;
const WIRE_BYTES_OVER_PG_MAX: f64 = 0.4;
/// A full sync of the large store against pg_basebackup of PostgreSQL's copy of it.
const FULL_SYNC_OVER_PG_MAX: f64 = 1.0;
const RSS_MIB_MAX: f64 = 256.0;
const CHANGEOVER_P99_MS_MAX: f64 = 500.0;
const MERGE_MS_MAX: f64 = 2_000.0;
/// Catch-up of 10,000 one-object revisions (docs/BENCHMARKS.md).
const CATCH_UP_MS_MAX: f64 = 1_000.0;

/// Sizes of the cluster measurements.
#[derive(Clone, Copy, Debug)]
pub struct ClusterScale {
    pub lag_revisions: usize,
    pub wire_revisions: usize,
    pub full_sync_objects: usize,
    pub changeovers: usize,
    pub merge_objects: usize,
    pub catch_up_revisions: usize,
    /// One-object revisions timed over the delayed link (`--scenario wan`), each at least a
    /// one-way delay.
    pub wan_lag_revisions: usize,
}

impl ClusterScale {
    pub fn full() -> ClusterScale {
        ClusterScale {
            lag_revisions: 2_000,
            wire_revisions: 2_000,
            full_sync_objects: 1_000_000,
            changeovers: 20,
            merge_objects: 100_000,
            catch_up_revisions: 10_000,
            wan_lag_revisions: 200,
        }
    }
    pub fn quick() -> ClusterScale {
        ClusterScale {
            lag_revisions: 20,
            wire_revisions: 20,
            full_sync_objects: 10_000,
            changeovers: 3,
            merge_objects: 1_000,
            catch_up_revisions: 100,
            wan_lag_revisions: 20,
        }
    }
}

fn free_addr() -> anyhow::Result<String> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string())
}

fn sync_config(listen: &str, advertise: Option<String>) -> SyncConfig {
    SyncConfig {
        listen: listen.into(),
        advertise,
        heartbeat_ms: 200,
        peer_timeout_ms: 5_000,
        reconnect_ms: 20,
        ..Default::default()
    }
}

/// Two nodes in this process over real TCP and TLS on loopback.
pub(super) struct Pair {
    pub a: Arc<Engine>,
    pub b: Arc<Engine>,
    ra: SyncRuntime,
    rb: SyncRuntime,
    b_listen: String,
    /// What the Standby advertises: a return route of the proxy, when proxied.
    b_advertise: Option<String>,
}

/// A pair, with the Active's peer port behind the test kit's fault proxy when `proxied` (which
/// counts the bytes each way and can delay them): the Active advertises the proxy, and the
/// Standby a return route of it, so their one link crosses the proxy whichever of them dials it.
pub(super) async fn pair(dir: &Path, proxied: bool) -> anyhow::Result<(Pair, Option<FaultProxy>)> {
    let a_listen = free_addr()?;
    let proxy = if proxied { Some(FaultProxy::start(a_listen.parse()?)?) } else { None };
    let advertise = proxy.as_ref().map(|p| p.addr().to_string());
    let a = Arc::new(init_primary(&dir.join("a"), "a", &a_listen, EngineOptions::default())?);
    let ra =
        SyncRuntime::start(a.clone(), TlsFiles::new(&dir.join("a")), sync_config(&a_listen, advertise.clone())).await?;
    let key = issue_join_key(&a, 60_000)?.to_string();
    let b_listen = free_addr()?;
    let peer = advertise.unwrap_or_else(|| a_listen.clone());
    let b = Arc::new(join_secondary(&dir.join("b"), "b", &peer, &key, &b_listen, EngineOptions::default()).await?);
    let b_advertise = match &proxy {
        Some(p) => Some(p.add_return_route(b_listen.parse()?)?.to_string()),
        None => None,
    };
    let rb = SyncRuntime::start(b.clone(), TlsFiles::new(&dir.join("b")), sync_config(&b_listen, b_advertise.clone()))
        .await?;
    let p = Pair { a, b, ra, rb, b_listen, b_advertise };
    p.converge(Duration::from_secs(30)).await?;
    Ok((p, proxy))
}

impl Pair {
    pub async fn converge(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while self.a.store().head()? != self.b.store().head()? {
            if Instant::now() > deadline {
                bail!("the standby did not converge within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }
    pub async fn stop(self) {
        self.ra.shutdown().await;
        self.rb.shutdown().await;
    }
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Publishes `revisions` revisions of `per_revision` new hosts on the Active, one at a time,
/// and returns for each the time from its commit on the Active to its durable apply on the
/// Standby (each side's head watch).
pub(super) async fn lags(p: &Pair, revisions: usize, per_revision: usize) -> anyhow::Result<Vec<Duration>> {
    // When each head appeared on each side, recorded by the head watches.
    let seen: Arc<Mutex<HashMap<(u8, u64), Instant>>> = Arc::default();
    let mut watchers = Vec::new();
    for (side, engine) in [(0u8, p.a.clone()), (1u8, p.b.clone())] {
        let mut rx = engine.sync().subscribe();
        let seen = seen.clone();
        watchers.push(tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let seq = rx.borrow_and_update().seq;
                seen.lock().unwrap_or_else(|e| e.into_inner()).insert((side, seq), Instant::now());
            }
        }));
    }
    let mut lags = Vec::with_capacity(revisions);
    let first_host = p.a.store().count()?;
    for i in 0..revisions as u64 {
        let (a, first) = (p.a.clone(), first_host + i * per_revision as u64);
        let cs = hosts(first..first + per_revision as u64, 1);
        let rev = tokio::task::spawn_blocking(move || a.publish("bench", &cs)).await??;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = {
                let s = seen.lock().unwrap_or_else(|e| e.into_inner());
                (s.get(&(0, rev.seq)).copied(), s.get(&(1, rev.seq)).copied())
            };
            if let (Some(ta), Some(tb)) = t {
                lags.push(tb.saturating_duration_since(ta));
                break;
            }
            if Instant::now() > deadline {
                bail!("revision {} did not reach the standby", rev.seq);
            }
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
    }
    for w in watchers {
        w.abort();
    }
    Ok(lags)
}

/// Replication lag and bytes on the wire.
pub fn replication(scratch: &Path, scale: ClusterScale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        for per_revision in [1usize, 100] {
            let dir = scratch.join(format!("lag-{per_revision}"));
            let (p, _) = pair(&dir, false).await?;
            let lags = lags(&p, scale.lag_revisions, per_revision).await?;
            let (p50, p99) = (percentile_ms(&lags, 50.0), percentile_ms(&lags, 99.0));
            let key50: &'static str = if per_revision == 1 { "sync_lag_1_p50" } else { "sync_lag_100_p50" };
            let key99: &'static str = if per_revision == 1 { "sync_lag_1_p99" } else { "sync_lag_100_p99" };
            let mut r50 =
                Row::new(key50, format!("replication lag, {per_revision} obj/rev, p50"), p50, Unit::Milliseconds);
            let mut r99 =
                Row::new(key99, format!("replication lag, {per_revision} obj/rev, p99"), p99, Unit::Milliseconds);
            if per_revision == 1 {
                r50 = r50.pg(PgFigure::LagP50);
                r99 = r99.pg(PgFigure::LagP99).pg_goal(Goal::AtMost(LAG_P99_OVER_PG_MAX));
            }
            rows.push(r50);
            rows.push(r99);
            p.stop().await;
        }

        let (p, proxy) = pair(&scratch.join("wire"), true).await?;
        let proxy = proxy.context("the counting proxy")?;
        // (towards the Active, from it)
        let before = proxy.bytes_forwarded();
        let mut change_bytes = 0usize;
        for i in 0..scale.wire_revisions as u64 {
            let a = p.a.clone();
            let rev = tokio::task::spawn_blocking(move || a.publish("bench", &hosts([1_000_000 + i], 1))).await??;
            change_bytes +=
                rev.changes.iter().filter_map(|c| c.after.as_ref()).map(Object::encode).map(|b| b.len()).sum::<usize>();
            p.converge(Duration::from_secs(10)).await?;
        }
        let n = scale.wire_revisions as f64;
        let after = proxy.bytes_forwarded();
        let wire = (after.1 - before.1) as f64 / n;
        let acks = (after.0 - before.0) as f64 / n;
        let encoded = change_bytes as f64 / n;
        rows.push(Row::new(
            "encoded_change_bytes",
            "encoded change (canonical object), 1-host revision",
            encoded,
            Unit::Bytes,
        ));
        rows.push(
            Row::new(
                "wire_bytes_per_revision",
                "bytes Active -> Standby per 1-host revision (with TLS)",
                wire,
                Unit::Bytes,
            )
            .goal(Goal::AtMost(WIRE_BYTES_MAX))
            .pg(PgFigure::WalBytesPerInsert)
            .pg_goal(Goal::AtMost(WIRE_BYTES_OVER_PG_MAX)),
        );
        rows.push(Row::new(
            "wire_ack_bytes_per_revision",
            "bytes Standby -> Active per revision (ack, with TLS)",
            acks,
            Unit::Bytes,
        ));
        p.stop().await;
        Ok(())
    })
}

/// Planned changeover (idle and under 100 publishes/s) and forced changeover times.
pub fn changeover(scratch: &Path, scale: ClusterScale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let (p, _) = pair(&scratch.join("changeover"), false).await?;
        for loaded in [false, true] {
            let stop = Arc::new(AtomicBool::new(false));
            let load = loaded.then(|| {
                let (engines, stop) = (vec![p.a.clone(), p.b.clone()], stop.clone());
                std::thread::spawn(move || {
                    let mut i = 2_000_000u64;
                    while !stop.load(Ordering::SeqCst) {
                        for e in &engines {
                            if e.publish("load", &hosts([i], 1)).is_ok() {
                                break;
                            }
                        }
                        i += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
            });
            let mut times = Vec::new();
            for _ in 0..scale.changeovers {
                let a_active = p.a.role().0 == mgha_core::Role::Active;
                let (from, to) = if a_active { (&p.ra, "b") } else { (&p.rb, "a") };
                tokio::time::sleep(Duration::from_millis(50)).await;
                let t = Instant::now();
                from.changeover(to).await.with_context(|| format!("changeover to {to}"))?;
                times.push(t.elapsed());
            }
            stop.store(true, Ordering::SeqCst);
            if let Some(h) = load {
                let _ = h.join();
            }
            let what = if loaded { "under 100 publishes/s" } else { "idle" };
            let (k50, k99): (&'static str, &'static str) = if loaded {
                ("changeover_load_p50", "changeover_load_p99")
            } else {
                ("changeover_idle_p50", "changeover_idle_p99")
            };
            rows.push(Row::new(
                k50,
                format!("planned changeover, {what}, p50"),
                percentile_ms(&times, 50.0),
                Unit::Milliseconds,
            ));
            rows.push(
                Row::new(
                    k99,
                    format!("planned changeover, {what}, p99"),
                    percentile_ms(&times, 99.0),
                    Unit::Milliseconds,
                )
                .goal(Goal::AtMost(CHANGEOVER_P99_MS_MAX)),
            );
        }
        // Forced: from the order to the first publish accepted on the new Active.
        let standby = if p.a.role().0 == mgha_core::Role::Standby { (&p.ra, &p.a) } else { (&p.rb, &p.b) };
        let t = Instant::now();
        standby.0.force_changeover()?;
        let engine = standby.1.clone();
        tokio::task::spawn_blocking(move || engine.publish("bench", &hosts([3_000_000], 1))).await??;
        rows.push(Row::new(
            "changeover_forced",
            "forced changeover, to first publish",
            t.elapsed().as_secs_f64() * 1e3,
            Unit::Milliseconds,
        ));
        p.stop().await;
        Ok(())
    })
}

/// Three-way merge of many diverged objects.
pub fn merge(scale: ClusterScale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    use mgha_core::merge::{merge_states, resolve, Resolution, Side};
    let schemas = mgha_core::model::Schemas::builtin();
    let group = |uid: Uid, members: &[&str], comment: &str| -> Object {
        let mut fields = mgha_core::model::Fields::new();
        fields.insert("members".into(), serde_json::json!(members));
        fields.insert("comments".into(), comment.into());
        Object { type_name: "group".into(), uid, name: format!("g-{uid}"), fields }
    };
    let m: Vec<String> = (0..8).map(|i| Uid(uuid::Uuid::from_u128(i)).to_string()).collect();
    let inputs: Vec<_> = (0..scale.merge_objects)
        .map(|i| {
            let uid = Uid(uuid::Uuid::from_u128(1_000_000 + i as u128));
            let base = group(uid, &[&m[0], &m[1], &m[2]], "base");
            let active = group(uid, &[&m[0], &m[1], &m[3]], "active");
            let branch = group(uid, &[&m[1], &m[2], &m[4]], if i % 10 == 0 { "branch" } else { "base" });
            (uid, Some(base), Some(active), Some(branch))
        })
        .collect();
    let t = Instant::now();
    let outcome = merge_states(&schemas, inputs);
    let resolved = resolve(&outcome, &Resolution::Prefer(Side::Active)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if resolved.len() != scale.merge_objects {
        bail!("the merge resolved {} of {} objects", resolved.len(), scale.merge_objects);
    }
    rows.push(
        Row::new(
            "merge_diverged",
            format!("merge of {} diverged objects", scale.merge_objects),
            ms,
            Unit::Milliseconds,
        )
        .goal(Goal::AtMost(MERGE_MS_MAX * scale.merge_objects as f64 / 100_000.0)),
    );
    Ok(())
}

/// Catch-up: a Standby stopped while one-object revisions are published on the Active, timed
/// from its restart until it has the Active's head (it applies what it receives in runs, one
/// durable commit per run).
pub fn catch_up(scratch: &Path, scale: ClusterScale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let n = scale.catch_up_revisions;
    let ms = runtime()?.block_on(catch_up_ms(&scratch.join("catchup"), n, None))?;
    rows.push(catch_up_row(n, ms));
    Ok(())
}

/// The goal of a catch-up of `n` one-object revisions, on loopback or over a delayed link.
pub(super) fn catch_up_goal(n: usize) -> Goal {
    Goal::AtMost(CATCH_UP_MS_MAX * n as f64 / 10_000.0)
}

/// The row of a catch-up of `n` one-object revisions that took `ms` on loopback.
pub(super) fn catch_up_row(n: usize, ms: f64) -> Row {
    Row::new("catch_up_ms", format!("catch-up of {n} one-object revisions (restart to head)"), ms, Unit::Milliseconds)
        .goal(catch_up_goal(n))
}

/// The catch-up of `n` one-object revisions, in milliseconds: on loopback, or with `delay_ms`
/// added each way by the fault proxy in front of the Active (set before the Standby restarts,
/// so its reconnection pays the round trips too).
pub(super) async fn catch_up_ms(dir: &Path, n: usize, delay_ms: Option<u64>) -> anyhow::Result<f64> {
    let (p, proxy) = pair(dir, delay_ms.is_some()).await?;
    // One revision both have first: a Standby still at revision 0 is never synchronized, and
    // gets a full sync instead of the revisions it missed.
    let first = p.a.clone();
    tokio::task::spawn_blocking(move || first.publish("bench", &hosts([1_999_999], 1))).await??;
    p.converge(Duration::from_secs(30)).await?;
    let Pair { a, b, ra, rb, b_listen, b_advertise } = p;
    rb.shutdown().await;
    let publisher = a.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // One revision per host, committed 1,000 revisions at a time: the backlog only has to
        // exist, and a durable commit each would spend seconds on it.
        for start in (0..n as u64).step_by(1_000) {
            let run: Vec<_> = (start..(start + 1_000).min(n as u64)).map(|i| hosts([2_000_000 + i], 1)).collect();
            publisher.publish_batch("bench", &run)?;
        }
        Ok(())
    })
    .await??;
    if let (Some(proxy), Some(ms)) = (&proxy, delay_ms) {
        proxy.set_delay_ms(ms);
    }
    let t = Instant::now();
    let rb = SyncRuntime::start(b.clone(), TlsFiles::new(&dir.join("b")), sync_config(&b_listen, b_advertise.clone()))
        .await?;
    let p = Pair { a, b, ra, rb, b_listen, b_advertise };
    p.converge(Duration::from_secs(600)).await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    p.stop().await;
    Ok(ms)
}

/// A full sync of a large store, each side in its own process, next to a raw loopback copy.
pub fn full_sync(scratch: &Path, scale: ClusterScale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let built = build_store(&scratch.join("fullsync"), scale.full_sync_objects, 1)?;
    let Synced { ms: sync_ms, follow, serve } = sync_new_member(&built, 0, None)?;
    let bytes = built.bytes;
    let objects = scale.full_sync_objects as f64;
    let mb = bytes as f64 / 1e6;
    rows.push(full_sync_row(scale.full_sync_objects, sync_ms));
    rows.push(Row::new(
        "full_sync_mb_s",
        "  full sync throughput (store file bytes)",
        mb / (sync_ms / 1e3),
        Unit::MBPerSecond,
    ));
    rows.push(Row::new(
        "full_sync_objects_s",
        "  full sync objects/s",
        objects / (sync_ms / 1e3),
        Unit::ObjectsPerSecond,
    ));
    rows.push(
        Row::new("raw_tcp_mb_s", "  raw loopback TCP copy of the same bytes", raw_copy_mb_s(bytes)?, Unit::MBPerSecond)
            .pg(PgFigure::LoopbackMBps),
    );
    for (key, what, v) in [
        ("full_sync_rss_active", "  peak memory, sending side", &serve),
        ("full_sync_rss_standby", "  peak memory, receiving side", &follow),
    ] {
        let mib = v["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0;
        rows.push(Row::new(key, what, mib, Unit::MiB).goal(Goal::AtMost(RSS_MIB_MAX)));
    }
    Ok(())
}

/// The row of a full sync of `objects` objects that took `ms` on loopback.
pub(super) fn full_sync_row(objects: usize, ms: f64) -> Row {
    Row::new(
        "full_sync_ms",
        format!("full sync of {objects} objects (process start to synchronized)"),
        ms,
        Unit::Milliseconds,
    )
    .pg(PgFigure::BasebackupTime)
    .pg_goal(Goal::AtMost(FULL_SYNC_OVER_PG_MAX))
}

/// A store of hosts built in revisions of 10,000, closed, to be served to new members.
pub(super) struct BuiltStore {
    dir: PathBuf,
    listen: String,
    head: Head,
    /// Its store file's size.
    pub bytes: u64,
    /// One join key per new member to come.
    keys: Vec<String>,
}

impl BuiltStore {
    /// The Active's own peer address (a proxy goes in front of it).
    pub fn listen(&self) -> &str {
        &self.listen
    }
}

/// Builds a Primary of `objects` hosts in `dir/a`, with `joiners` join keys.
pub(super) fn build_store(dir: &Path, objects: usize, joiners: usize) -> anyhow::Result<BuiltStore> {
    let a_dir = dir.join("a");
    let listen = free_addr()?;
    let engine = init_primary(&a_dir, "a", &listen, EngineOptions::default())?;
    let per = 10_000.min(objects);
    for start in (0..objects).step_by(per) {
        engine.publish("bench", &hosts(start as u64..(start + per).min(objects) as u64, 1))?;
    }
    let bytes = std::fs::metadata(a_dir.join(mgha_core::store::STORE_FILE))?.len();
    let keys =
        (0..joiners).map(|_| issue_join_key(&engine, 600_000).map(|k| k.to_string())).collect::<Result<_, _>>()?;
    Ok(BuiltStore { dir: dir.to_path_buf(), listen, head: engine.store().head()?, bytes, keys })
}

/// A full sync to a new member: how long it took, and each side's peak memory report.
pub(super) struct Synced {
    pub ms: f64,
    follow: serde_json::Value,
    serve: serde_json::Value,
}

/// Serves `store` from a process of its own, joins new member number `joiner` (with its key),
/// and times the member's own process from its start to the Active's head. With `via`, the
/// Active advertises that proxy's address, so the new member joins and follows through it.
pub(super) fn sync_new_member(store: &BuiltStore, joiner: usize, via: Option<&FaultProxy>) -> anyhow::Result<Synced> {
    let a_dir = store.dir.join("a");
    let exe = own_exe()?;
    let mut serve = Command::new(&exe);
    serve.arg("--probe-serve").arg(&a_dir).arg("--probe-addr").arg(&store.listen);
    if let Some(proxy) = via {
        serve.arg("--probe-advertise").arg(proxy.addr().to_string());
    }
    let mut serve = serve.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().context("starting the serving side")?;
    let mut serve_out = BufReader::new(serve.stdout.take().context("stdout")?);
    let mut ready = String::new();
    serve_out.read_line(&mut ready)?;
    let b_dir = store.dir.join(format!("b{joiner}"));
    let b_listen = free_addr()?;
    let peer = via.map_or_else(|| store.listen.clone(), |p| p.addr().to_string());
    let key = store.keys.get(joiner).context("no join key left")?;
    let name = format!("b{joiner}");
    runtime()?.block_on(join_secondary(&b_dir, &name, &peer, key, &b_listen, EngineOptions::default()))?;
    let t = Instant::now();
    let follow = Command::new(&exe)
        .arg("--probe-follow")
        .arg(&b_dir)
        .arg("--probe-addr")
        .arg(&b_listen)
        .arg("--probe-until")
        .arg(store.head.seq.to_string())
        .output()
        .context("running the following side")?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    drop(serve.stdin.take());
    if !follow.status.success() {
        let _ = serve.wait();
        bail!("the following side failed: {}", String::from_utf8_lossy(&follow.stderr));
    }
    let follow: serde_json::Value = serde_json::from_slice(&follow.stdout)?;
    let mut serve_json = String::new();
    serve_out.read_to_string(&mut serve_json)?;
    let _ = serve.wait();
    let serve: serde_json::Value = serde_json::from_str(serve_json.trim())?;
    Ok(Synced { ms, follow, serve })
}

/// This binary, to run the probes from. When the file was rebuilt while we run, Linux reports
/// the old path with " (deleted)"; the new file at the same path is the same program.
pub(super) fn own_exe() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    if exe.exists() {
        return Ok(exe);
    }
    let text = exe.to_string_lossy();
    let trimmed = std::path::PathBuf::from(text.trim_end_matches(" (deleted)"));
    if trimmed.exists() {
        return Ok(trimmed);
    }
    bail!("cannot find this program's binary at {}", exe.display())
}

fn raw_copy_mb_s(bytes: u64) -> anyhow::Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        std::io::copy(&mut s, &mut std::io::sink())
    });
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr)?;
    let buf = vec![0x5au8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n])?;
        left -= n as u64;
    }
    drop(s);
    reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
    Ok(bytes as f64 / 1e6 / t.elapsed().as_secs_f64())
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Hidden probe: serve `dir` as the Active until standard input closes, then print peak memory.
pub fn probe_serve(dir: &Path, addr: &str, advertise: Option<String>) -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let engine = Arc::new(mgha_sync::open_engine(dir, EngineOptions::default())?);
        let r = SyncRuntime::start(engine, TlsFiles::new(dir), sync_config(addr, advertise)).await?;
        println!("ready");
        std::io::stdout().flush()?;
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await?;
        r.shutdown().await;
        println!("{}", serde_json::json!({"peak_rss_kib": peak_rss_kib()}));
        Ok(())
    })
}

/// Hidden probe: follow the Active from `dir` until head `until`, then print peak memory.
pub fn probe_follow(dir: &Path, addr: &str, until: u64) -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let engine = Arc::new(mgha_sync::open_engine(dir, EngineOptions::default())?);
        let r = SyncRuntime::start(engine.clone(), TlsFiles::new(dir), sync_config(addr, None)).await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        while engine.store().head()?.seq < until {
            if Instant::now() > deadline {
                bail!("not synchronized in time");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        r.shutdown().await;
        println!("{}", serde_json::json!({"peak_rss_kib": peak_rss_kib()}));
        Ok(())
    })
}
