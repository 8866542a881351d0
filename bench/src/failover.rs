//! Automatic failover figures (`mgha bench --scenario failover`): two data nodes and their
//! arbiter as real processes of this binary, as an operator runs them (`mgha init`, `mgha join`,
//! `mgha run`, and `mgha witness` in quorum mode or a real etcd in etcd mode), with the product's
//! timing (a heartbeat every second, failover after five). For each mode:
//!
//! - **failover time** (`sync_standbys = 0`): SIGKILL of the Active, then a publish attempted on
//!   the other node every 10 ms; the time from the kill to the first one accepted. The killed
//!   node is restarted, and the next run waits until one node is Active holding its lease and
//!   the other a synchronized Standby of it (merging the collision branch a killed Active may
//!   leave, as an administrator would) that has run for the failover timeout (a Standby does not
//!   campaign before it has watched the arbiter that long), then kills at a random point of the
//!   heartbeat.
//! - **acknowledged publishes lost**, asynchronous and with `sync_standbys = 1`: a publisher
//!   publishes one host at a time on whichever node takes it, pausing 2 ms after each
//!   acknowledgement, throughout the runs, and remembers each acknowledged name. At each
//!   takeover the new Active's hosts are listed (acknowledged publishes not there are the ones
//!   only the old Active had: they come back as its collision branch), and after the runs the
//!   final Active's (acknowledged publishes missing there are lost). With two data nodes and
//!   `sync_standbys = 1` the new Active takes publishes only once the old one is back as its
//!   Standby, so the synchronous runs time the move of the role (SIGKILL to the other node
//!   holding the lease) and restart the killed node right then.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mgha_sync::failover::FailoverTiming;

pub(crate) mod procs;

use super::report::{Goal, Row, Unit};
use super::workload::percentile_ms;
use procs::{Cluster, Publisher};

/// How long a daemon may take to answer, a takeover to happen or a pair to settle before the
/// measurement gives up.
const WAIT: Duration = Duration::from_secs(120);
/// How often the failover measurement tries a publish on the Standby.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// The publisher's pause after each acknowledged publish: a few hundred publishes/s, and a few
/// tens of thousands of hosts per series, well within one listing.
const PUBLISH_EVERY: Duration = Duration::from_millis(2);
/// The goal: a failover within the configured timeout and one second.
const GOAL_MARGIN_MS: u64 = 1_000;
/// Publish errors that mean "not here, not now": the publisher tries the other node.
const RETRIED: [&str; 4] = ["read-only", "busy", "unreachable", "peer"];
/// Largest host listing the API returns (`limit` of `GET /v1/objects`).
const LIST_MAX: usize = 100_000;

/// The arbiters measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Quorum,
    Etcd,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Quorum => "quorum",
            Mode::Etcd => "etcd",
        }
    }
}

/// Runs both modes (etcd only when this binary has the etcd arbiter and `etcd_bin` runs) with
/// `runs` failovers per measurement, and adds their rows.
pub fn run(scratch: &Path, runs: usize, etcd_bin: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let exe = super::mgha_exe();
    let timing = FailoverTiming::default();
    let started = Instant::now();
    let mut modes = vec![Mode::Quorum];
    match etcd_unavailable(etcd_bin) {
        None => modes.push(Mode::Etcd),
        Some(why) => eprintln!("[failover] etcd rows skipped: {why}"),
    }
    for mode in modes {
        let ctx =
            Ctx { exe: exe.clone(), scratch: scratch.to_path_buf(), etcd_bin: etcd_bin.to_path_buf(), timing, started };
        match measure(&ctx, mode, runs) {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => {
                eprintln!("[failover] {} mode failed: {e:#}", mode.name());
                rows.push(
                    Row::new(
                        leak(format!("failover.{}.error", mode.name())),
                        format!("failover, {}: the measurement failed (error above)", mode.name()),
                        f64::NAN,
                        Unit::Count,
                    )
                    .goal(Goal::AtMost(0.0)),
                );
            }
        }
    }
    Ok(())
}

/// Why the etcd mode cannot run here, if it cannot.
fn etcd_unavailable(etcd_bin: &Path) -> Option<String> {
    // Without the cargo feature the arbiter refuses at once, before any I/O; with it, a connection
    // to a closed port fails some other way or is still trying when the timeout ends.
    let built_without = tokio::runtime::Builder::new_current_thread().enable_all().build().ok().and_then(|rt| {
        rt.block_on(async {
            let connect = mgha_failover::etcd_arbiter(
                vec!["http://127.0.0.1:9".into()],
                "/mgha-bench-probe".into(),
                mgha_core::Uid(uuid::Uuid::nil()),
                FailoverTiming::default(),
            );
            match tokio::time::timeout(Duration::from_millis(500), connect).await {
                Ok(Err(e)) if e.to_string().contains("without etcd support") => Some(e.to_string()),
                _ => None,
            }
        })
    });
    if let Some(why) = built_without {
        return Some(why);
    }
    match Command::new(etcd_bin).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("`{} --version` exited with {s}", etcd_bin.display())),
        Err(e) => Some(format!(
            "cannot run `{}` ({e}); install etcd (Debian: etcd-server) or pass --etcd-bin",
            etcd_bin.display()
        )),
    }
}

/// A row key built at run time (the report keeps `&'static str` keys; a run makes a few dozen).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// What every measurement needs.
struct Ctx {
    exe: PathBuf,
    scratch: PathBuf,
    etcd_bin: PathBuf,
    timing: FailoverTiming,
    started: Instant,
}

impl Ctx {
    fn log(&self, what: &str) {
        eprintln!("[failover {:>6.1} s] {what}", self.started.elapsed().as_secs_f64());
    }
}

/// The figures of one mode.
fn measure(ctx: &Ctx, mode: Mode, runs: usize) -> anyhow::Result<Vec<Row>> {
    let m = mode.name();
    let asynchronous = phase(ctx, mode, false, runs).with_context(|| format!("{m}, sync_standbys = 0"))?;
    let synchronous = phase(ctx, mode, true, runs).with_context(|| format!("{m}, sync_standbys = 1"))?;
    let goal = Goal::AtMost((ctx.timing.failover_after_ms + GOAL_MARGIN_MS) as f64);
    let t = &asynchronous.times;
    let n = runs as f64;
    let mut rows = vec![
        Row::new(
            leak(format!("failover.{m}.p50")),
            format!("failover, {m}: SIGKILL of the Active to first publish on the other node, p50"),
            percentile_ms(t, 50.0),
            Unit::Milliseconds,
        ),
        Row::new(
            leak(format!("failover.{m}.p99")),
            format!("failover, {m}: p99"),
            percentile_ms(t, 99.0),
            Unit::Milliseconds,
        )
        .goal(goal),
        Row::new(
            leak(format!("failover.{m}.max")),
            format!("failover, {m}: max"),
            percentile_ms(t, 100.0),
            Unit::Milliseconds,
        )
        .goal(goal),
    ];
    for (p, sync) in [(&asynchronous, "async"), (&synchronous, "sync")] {
        let label = if sync == "sync" { "sync_standbys = 1" } else { "sync_standbys = 0" };
        let mut at_takeover = Row::new(
            leak(format!("failover.{m}.{sync}.missing_at_takeover")),
            format!("  {label}: acknowledged publishes not on the new Active at takeover, per failover"),
            p.missing_at_takeover as f64 / n,
            Unit::Count,
        );
        let mut lost = Row::new(
            leak(format!("failover.{m}.{sync}.lost")),
            format!("  {label}: acknowledged publishes lost (after merging branches), per failover"),
            p.lost as f64 / n,
            Unit::Count,
        );
        if sync == "sync" {
            rows.push(Row::new(
                leak(format!("failover.{m}.sync.role_p50")),
                format!("  {label}: SIGKILL of the Active to the other holding the lease, p50"),
                percentile_ms(&p.times, 50.0),
                Unit::Milliseconds,
            ));
            at_takeover = at_takeover.goal(Goal::AtMost(0.0));
            lost = lost.goal(Goal::AtMost(0.0));
        }
        rows.push(at_takeover);
        rows.push(lost);
        rows.push(Row::new(
            leak(format!("failover.{m}.{sync}.branch_revisions")),
            format!("  {label}: collision branch revisions merged, per failover"),
            p.branch_revisions as f64 / n,
            Unit::Count,
        ));
        ctx.log(&format!(
            "{m}, {label}: {} acknowledged publishes, {} not on the new Active at takeover, {} lost; \
             {} collision branches ({} revisions) merged",
            p.acked, p.missing_at_takeover, p.lost, p.branches, p.branch_revisions
        ));
    }
    Ok(rows)
}

/// What one series of failovers measured.
#[derive(Default)]
struct Phase {
    /// Per failover: to the first publish (asynchronous) or to the lease (synchronous).
    times: Vec<Duration>,
    /// Acknowledged publishes (publisher and probes).
    acked: usize,
    missing_at_takeover: usize,
    lost: usize,
    branches: usize,
    branch_revisions: usize,
}

/// `runs` failovers of a fresh cluster of `mode`, under a publisher.
fn phase(ctx: &Ctx, mode: Mode, sync: bool, runs: usize) -> anyhow::Result<Phase> {
    let label = format!("{}, sync_standbys = {}", mode.name(), u8::from(sync));
    ctx.log(&format!("{label}: starting two nodes and the arbiter"));
    let dir = ctx.scratch.join(format!("failover-{}-{}", mode.name(), if sync { "sync" } else { "async" }));
    let mut c = Cluster::start(ctx, &dir, mode, usize::from(sync))?;
    let publisher = Publisher::start(c.nodes.iter().map(|n| n.api.clone()).collect());
    let mut out = Phase::default();
    let mut probes = Vec::new();
    let warm = Duration::from_millis(ctx.timing.failover_after_ms);
    let result = (|| -> anyhow::Result<()> {
        for round in 0..runs {
            // A Standby campaigns only once it has watched the arbiter for a whole failover
            // timeout: kill the Active of a settled pair, not one whose Standby just restarted
            // (two failures in a row, which fail over later).
            let active = loop {
                let x = c.settle(&mut out)?;
                let up = c.nodes[1 - x].up_for();
                if up >= warm {
                    break x;
                }
                std::thread::sleep(warm - up);
            };
            let other = 1 - active;
            // Then a kill at a random point of the heartbeat, so that the time since the last
            // renewal (which the takeover counts from) is sampled evenly, not in step with the
            // restarts.
            std::thread::sleep(Duration::from_millis(rand::random::<u64>() % ctx.timing.heartbeat_ms.max(1)));
            publisher.wait_for_more()?;
            c.nodes[active].kill();
            let killed = Instant::now();
            let api = c.nodes[other].api.clone();
            if sync {
                // The new Active publishes only once the old one is back as its Standby: the
                // role moving is what this series can time.
                while api.lease_left().is_none_or(|l| l == 0) {
                    if killed.elapsed() > WAIT {
                        bail!("round {round}: {} did not take the lease\n{}", api.name, c.logs());
                    }
                    std::thread::sleep(PROBE_EVERY);
                }
            } else {
                let mut i = 0;
                loop {
                    i += 1;
                    let name = format!("probe-{round}-{i}");
                    match api.publish_host(&name, i) {
                        Ok(()) => {
                            probes.push(name);
                            break;
                        }
                        Err(code) if RETRIED.contains(&code.as_str()) => {}
                        Err(code) => bail!("round {round}: publishing on {}: {code}", api.name),
                    }
                    if killed.elapsed() > WAIT {
                        bail!("round {round}: no publish taken by {} within {WAIT:?}\n{}", api.name, c.logs());
                    }
                    std::thread::sleep(PROBE_EVERY);
                }
            }
            let took = killed.elapsed();
            out.times.push(took);
            // Acknowledged until now, then what the new Active holds: everything it acknowledged
            // itself is in the listing, so what is missing only the old Active had.
            let acked = publisher.acked();
            let on_new = api.hosts()?;
            let missing = acked.iter().filter(|n| !on_new.contains(*n)).count();
            out.missing_at_takeover += missing;
            c.nodes[active].start()?;
            ctx.log(&format!(
                "{label}: run {}/{runs}: {} -> {} in {:.0} ms; {missing} acknowledged publishes not on {} yet",
                round + 1,
                c.nodes[active].name,
                api.name,
                took.as_secs_f64() * 1e3,
                api.name
            ));
        }
        c.settle(&mut out)?;
        publisher.wait_for_more()?;
        Ok(())
    })();
    let acked = publisher.stop();
    result?;
    let acked = acked?;
    let active = c.settle(&mut out)?;
    let hosts = c.nodes[active].api.hosts()?;
    out.acked = acked.len() + probes.len();
    out.lost = acked.iter().chain(&probes).filter(|n| !hosts.contains(*n)).count();
    Ok(out)
}
