//! Publishes through the admin API of a real daemon (`mgha init`, `mgha run`), as operators and
//! management servers make them: one host per `POST /v1/publish` over keep-alive connections,
//! from 1 and from 16 concurrent clients, with the daemon's CPU time per publish (HTTP, JSON and
//! commit included) read from /proc. Concurrent publishers share fsyncs (group commit), so the
//! 16-client rate is compared with the disk's serial fsync rate and PostgreSQL's 16-client
//! one-row commit rate. Then the CPU of replication: one client publishing one host per revision
//! to a daemon alone, then to the same daemon as the Active of two Standbys; the Active's extra
//! CPU per revision, per Standby, and each Standby's CPU per applied revision.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mgha_tests::process::ChildGuard;

use super::failover::procs::{mgha, path_str, tail, Api, Node};
use super::pg::PgFigure;
use super::report::{Goal, Row, Unit};
use super::workload::percentile_ms;

const CONCURRENT_RATE_MIN: f64 = 10_000.0;
const CONCURRENT_P99_MS_MAX: f64 = 5.0;
const CPU_US_PER_PUBLISH_MAX: f64 = 100.0;
const CPU_US_PER_REPLICATED_MAX: f64 = 100.0;
/// Standbys of the replication measurement.
const STANDBYS: usize = 2;
/// How long the cluster may take to synchronize (start, or the last revisions).
const SYNC_WAIT: Duration = Duration::from_secs(60);
/// Clients of the concurrent measurement.
pub const CLIENTS: usize = 16;

/// How long each measurement publishes.
#[derive(Clone, Copy, Debug)]
pub struct ApiScale {
    pub seconds: f64,
}

impl ApiScale {
    pub fn full() -> ApiScale {
        ApiScale { seconds: 5.0 }
    }

    pub fn quick() -> ApiScale {
        ApiScale { seconds: 0.3 }
    }
}

/// CPU time (user + system) of process `pid` so far, from /proc/PID/stat.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading the daemon's /proc stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("unexpected /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).context("unexpected /proc stat");
    // utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the name.
    let total = ticks(11)? + ticks(12)?;
    let hz = rustix::param::clock_ticks_per_second();
    Ok(Duration::from_secs_f64(total as f64 / hz as f64))
}

/// One timed run: `clients` threads publishing one new host each per request.
struct Run {
    publishes: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    daemon_cpu: Duration,
}

fn publish_for(api: &Api, pid: u32, clients: usize, seconds: f64, first: usize) -> anyhow::Result<Run> {
    let stop = Arc::new(AtomicBool::new(false));
    let cpu0 = cpu_time(pid)?;
    let t = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let api = api.clone();
            let stop = stop.clone();
            std::thread::spawn(move || -> Result<Vec<Duration>, String> {
                let mut lat = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // Names unique across clients and runs: every publish creates a host.
                    let n = first + c + i * CLIENTS;
                    let started = Instant::now();
                    api.publish_host(&format!("api-{n}"), n)?;
                    lat.push(started.elapsed());
                    i += 1;
                }
                Ok(lat)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for w in workers {
        match w.join() {
            Ok(Ok(l)) => latencies.extend(l),
            Ok(Err(code)) => bail!("a publish through the admin API failed: {code}"),
            Err(_) => bail!("a publishing client panicked"),
        }
    }
    let elapsed = t.elapsed();
    let daemon_cpu = cpu_time(pid)?.saturating_sub(cpu0);
    Ok(Run { publishes: latencies.len(), elapsed, latencies, daemon_cpu })
}

/// Measures the admin API publish rows with a daemon of `exe` in `scratch/api`.
pub fn run(scratch: &Path, exe: &Path, scale: ApiScale, fsync_p50_ms: f64, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let dir = scratch.join("api");
    mgha(exe, &["init", "-d", path_str(&dir)?, "--name", "api"])?;
    let log_path = scratch.join("api.log");
    let log = std::fs::File::create(&log_path)?;
    let child = Command::new(exe)
        .args(["run", "-d", path_str(&dir)?])
        .env("MGHA_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting the daemon")?;
    let pid = child.id();
    let mut daemon = ChildGuard::new(child);
    let api = Api::of("api", &dir)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.status().is_none() {
        if let Some(status) = daemon.exited() {
            bail!("the daemon exited while starting ({status}):\n{}", tail(&log_path));
        }
        if Instant::now() > deadline {
            bail!("the daemon did not answer within 60 s:\n{}", tail(&log_path));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Warm up the connections and the store.
    publish_for(&api, pid, CLIENTS, scale.seconds / 5.0, 0)?;
    let one = publish_for(&api, pid, 1, scale.seconds, 10_000_000)?;
    let many = publish_for(&api, pid, CLIENTS, scale.seconds, 20_000_000)?;
    let _ = daemon.terminate(Duration::from_secs(20));

    let rate = |r: &Run| r.publishes as f64 / r.elapsed.as_secs_f64();
    let cpu_us = |r: &Run| r.daemon_cpu.as_secs_f64() * 1e6 / r.publishes.max(1) as f64;
    rows.push(Row::new("api.publish.1.rate", "admin API: 1 client, 1-host publishes", rate(&one), Unit::PerSecond));
    rows.push(Row::new(
        "api.publish.1.p50",
        "admin API: 1 client, publish p50",
        percentile_ms(&one.latencies, 50.0),
        Unit::Milliseconds,
    ));
    rows.push(
        Row::new(
            "api.publish.16.rate",
            format!("admin API: {CLIENTS} clients, 1-host publishes (group commit)"),
            rate(&many),
            Unit::PerSecond,
        )
        .goal(Goal::AtLeast(CONCURRENT_RATE_MIN))
        .pg(PgFigure::Commit16Rate),
    );
    rows.push(
        Row::new(
            "api.publish.16.p99",
            format!("admin API: {CLIENTS} clients, publish p99"),
            percentile_ms(&many.latencies, 99.0),
            Unit::Milliseconds,
        )
        .goal(Goal::AtMost(CONCURRENT_P99_MS_MAX))
        .pg(PgFigure::Commit16P99),
    );
    rows.push(Row::new(
        "api.publish.16.over_fsync",
        format!("admin API: {CLIENTS}-client rate / serial fsync rate of the disk"),
        rate(&many) * fsync_p50_ms / 1e3,
        Unit::Times,
    ));
    rows.push(
        Row::new("api.publish.cpu.1", "admin API: daemon CPU per publish, 1 client", cpu_us(&one), Unit::Microseconds)
            .goal(Goal::AtMost(CPU_US_PER_PUBLISH_MAX)),
    );
    rows.push(Row::new(
        "api.publish.cpu.16",
        format!("admin API: daemon CPU per publish, {CLIENTS} clients"),
        cpu_us(&many),
        Unit::Microseconds,
    ));
    replication(scratch, exe, scale, rows)
}

/// Whether the Active (`nodes[0]`) sees every other node connected and synchronized at its head.
fn synchronized(nodes: &[Node]) -> bool {
    let Some(s) = nodes[0].api.status() else {
        return false;
    };
    let peers = s["peers"].as_array().cloned().unwrap_or_default();
    nodes[1..].iter().all(|n| {
        peers.iter().any(|p| {
            p["name"] == n.api.name.as_str()
                && p["status"] == "synchronized"
                && p["connected"] == true
                && p["head"] == s["head"]
        })
    })
}

fn wait_synchronized(nodes: &[Node], what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + SYNC_WAIT;
    while !synchronized(nodes) {
        if Instant::now() > deadline {
            let logs: Vec<String> =
                nodes.iter().map(|n| format!("--- {}\n{}", n.api.name, tail(&n.log_path()))).collect();
            bail!("the Standbys did not synchronize {what} within {SYNC_WAIT:?}:\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Measures the CPU of replication in `scratch/replication`: one client publishes to a daemon
/// for `scale.seconds` while it is alone, then again once [`STANDBYS`] Standbys have joined it;
/// the difference in the Active's CPU per revision is what replication costs it. Both runs are
/// on the same daemon and store, minutes apart at most, so that they differ only by the Standbys.
fn replication(scratch: &Path, exe: &Path, scale: ApiScale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let dir = scratch.join("replication");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let a_dir = dir.join("a");
    mgha(exe, &["init", "-d", path_str(&a_dir)?, "--name", "a"])?;
    let mut nodes = vec![Node::new(exe, a_dir, "a")?];
    nodes[0].start()?;
    let active = nodes[0].pid().context("the Active is not running")?;
    publish_for(&nodes[0].api, active, 1, scale.seconds / 5.0, 40_000_000)?;
    let alone = publish_for(&nodes[0].api, active, 1, scale.seconds, 50_000_000)?;
    let alone_us = alone.daemon_cpu.as_secs_f64() * 1e6 / alone.publishes.max(1) as f64;
    let listen = nodes[0].listen()?;
    for i in 0..STANDBYS {
        let name = format!("s{i}");
        let key = nodes[0].join_key()?;
        let d = dir.join(&name);
        mgha(exe, &["join", "-d", path_str(&d)?, "--name", &name, "--peer", &listen, "--key", &key])?;
        let mut n = Node::new(exe, d, &name)?;
        n.start()?;
        nodes.push(n);
    }
    wait_synchronized(&nodes, "after they joined")?;
    let pids =
        nodes.iter_mut().map(|n| n.pid().context("a daemon is not running")).collect::<anyhow::Result<Vec<u32>>>()?;
    let before = pids.iter().map(|&p| cpu_time(p)).collect::<anyhow::Result<Vec<Duration>>>()?;
    let run = publish_for(&nodes[0].api, pids[0], 1, scale.seconds, 30_000_000)?;
    // Every revision applied on every Standby before the CPU is read.
    wait_synchronized(&nodes, "with the last revision")?;
    let after = pids.iter().map(|&p| cpu_time(p)).collect::<anyhow::Result<Vec<Duration>>>()?;
    for n in &mut nodes {
        n.terminate();
    }
    let revisions = run.publishes.max(1) as f64;
    let us: Vec<f64> =
        before.iter().zip(&after).map(|(b, a)| a.saturating_sub(*b).as_secs_f64() * 1e6 / revisions).collect();
    rows.push(
        Row::new(
            "replication.cpu.active",
            format!("replication: Active CPU per 1-host revision per Standby ({STANDBYS} Standbys)"),
            ((us[0] - alone_us) / STANDBYS as f64).max(0.0),
            Unit::Microseconds,
        )
        .goal(Goal::AtMost(CPU_US_PER_REPLICATED_MAX)),
    );
    rows.push(
        Row::new(
            "replication.cpu.standby",
            "replication: Standby CPU per applied 1-host revision (the busiest)",
            us[1..].iter().copied().fold(0.0, f64::max),
            Unit::Microseconds,
        )
        .goal(Goal::AtMost(CPU_US_PER_REPLICATED_MAX)),
    );
    Ok(())
}
