//! The many-domains figures (`--scenario domains`), with real processes: three servers on
//! loopback with automatic failover (`quorum`, the three of them voting) and `sync_standbys = 1`,
//! and `domains` domains each replicated on all three, their Actives spread a third on each.
//!
//! - **scale**: each domain filled with `objects` hosts; then, idle, each server's peak resident
//!   memory and its CPU over a few seconds;
//! - **start**: one server stopped and started again, to every one of its replicas synchronized
//!   with its domain's Active;
//! - **throughput**: 100-object revisions from 16 clients into one domain, then the same spread
//!   over 100 domains at once;
//! - **failover**: SIGKILL of the server holding a third of the Actives, the one that leads the
//!   arbiter's Raft group, while a publisher writes into every domain; the time until each of
//!   its domains has a new Active, the share of them one survivor took, how many of the other
//!   servers' domains moved, and acknowledged publishes lost;
//! - **rebalance**: the killed server back, `POST /v1/rebalance` spreading the Actives again under
//!   the same load, its time and publishes lost.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mgha_node::NodeConfig;
use mgha_sync::failover::{FailoverMode, FailoverTiming};
use serde_json::{json, Value};

use super::failover::procs::{free_addrs, mgha, path_str, refused_code, Api, Node};
use super::report::{Goal, Row, Unit};

/// How big the scenario is.
#[derive(Clone, Copy, Debug)]
pub struct DomainScale {
    pub domains: usize,
    pub objects: usize,
    /// Domains the spread throughput publishes into.
    pub spread: usize,
    /// Seconds each throughput measurement runs.
    pub throughput_s: u64,
    /// The failover heartbeat; the timeout is five of them.
    pub heartbeat_ms: u64,
}

impl DomainScale {
    pub fn full() -> DomainScale {
        DomainScale { domains: 1000, objects: 1000, spread: 100, throughput_s: 10, heartbeat_ms: 1000 }
    }

    pub fn quick() -> DomainScale {
        DomainScale { domains: 12, objects: 100, spread: 6, throughput_s: 2, heartbeat_ms: 1000 }
    }
}

/// Clients of the throughput measurements.
const CLIENTS: usize = 16;
/// Objects per revision in the throughput measurements.
const BATCH: usize = 100;
/// Seconds of idle over which CPU is measured.
const IDLE_S: u64 = 10;
/// Seconds left to settle between the last domain synchronized and the idle window: the fill's
/// last reports, acknowledgements and arbiter entries are not idle work.
const SETTLE_S: u64 = 3;
/// How long to wait for anything before the run fails.
const WAIT: Duration = Duration::from_secs(300);

/// Measures every row of the scenario into `rows`.
pub fn run(scratch: &Path, exe: &Path, scale: DomainScale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let started = Instant::now();
    let log = |what: &str| eprintln!("[domains {:>6.1} s] {what}", started.elapsed().as_secs_f64());
    let timing = FailoverTiming {
        heartbeat_ms: scale.heartbeat_ms,
        failover_after_ms: 5 * scale.heartbeat_ms,
        ..FailoverTiming::default()
    };
    log(&format!(
        "three servers with quorum failover (heartbeat {} ms, failover after {} ms)",
        timing.heartbeat_ms, timing.failover_after_ms
    ));
    let mut servers = start_servers(scratch, exe, timing)?;
    let names: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();

    log(&format!("{} domains on all three servers, Actives spread", scale.domains));
    let created = Instant::now();
    for i in 0..scale.domains {
        // Rotated so that each server is first (created Active) for a third of the domains.
        let on: Vec<String> = (0..3).map(|k| names[(i + k) % 3].clone()).collect();
        post(&servers[0].api, "/v1/domains", &json!({"name": domain(i), "on": on}))?;
    }
    let create_rate = scale.domains as f64 / created.elapsed().as_secs_f64();
    log(&format!("created at {create_rate:.0} domains/s; filling each with {} objects", scale.objects));
    let apis: Vec<Api> = servers.iter().map(|s| s.api.clone()).collect();
    wait_all_active(&apis, scale.domains)?;
    fill(&apis, scale)?;
    wait_synchronized(&apis, scale.domains)?;

    std::thread::sleep(Duration::from_secs(SETTLE_S));
    log("idle: memory and CPU");
    let mut rss = Vec::new();
    let mut resident = Vec::new();
    let mut cpu = Vec::new();
    for s in servers.iter_mut() {
        let pid = s.pid().context("a server does not run")?;
        cpu.push((pid, cpu_ticks(pid)?));
    }
    let idle = Instant::now();
    std::thread::sleep(Duration::from_secs(IDLE_S));
    let ticks_per_s = 100.0;
    for (pid, before) in &cpu {
        let used = (cpu_ticks(*pid)? - before) as f64 / ticks_per_s;
        rss.push(status_mib(*pid, "VmHWM")?);
        resident.push(status_mib(*pid, "VmRSS")?);
        measured(
            rows,
            Row::new(
                "domains_idle_cpu",
                format!("idle CPU of a server with {} domains, pid {pid}", scale.domains),
                100.0 * used / idle.elapsed().as_secs_f64(),
                Unit::Percent,
            )
            .goal(Goal::AtMost(2.0)),
        );
    }
    measured(
        rows,
        Row::new(
            "domains_peak_rss",
            format!("peak RSS of the largest server, {} domains x {} objects", scale.domains, scale.objects),
            rss.iter().cloned().fold(0.0, f64::max),
            Unit::MiB,
        )
        .goal(Goal::AtMost(512.0)),
    );
    // The peak above includes the fill; what a server keeps once idle tells the two apart.
    measured(
        rows,
        Row::new(
            "domains_idle_rss",
            format!("RSS at idle of the largest server, {} domains x {} objects", scale.domains, scale.objects),
            resident.iter().cloned().fold(0.0, f64::max),
            Unit::MiB,
        ),
    );

    log("restart of one server to all its domains synchronized");
    servers[2].terminate();
    let restart = Instant::now();
    servers[2].start()?;
    wait_synchronized(&apis, scale.domains)?;
    let synchronized_ms = restart.elapsed().as_secs_f64() * 1000.0;
    // The restarted server votes in the arbiter again: every Active holds its lease before the
    // throughput is measured.
    wait_all_active(&apis, scale.domains)?;
    measured(
        rows,
        Row::new(
            "domains_start_ms",
            format!("start of a server with {} domains to all synchronized", scale.domains),
            synchronized_ms,
            Unit::Milliseconds,
        )
        .goal(Goal::AtMost(5000.0)),
    );

    log("throughput: one domain, then spread");
    let actives = active_servers(&apis)?;
    let before = machine_ticks()?;
    let one = throughput(&apis, &actives, &[domain(0)], "one-", scale.throughput_s)?;
    let between = machine_ticks()?;
    let one_busy = busy_percent(before, between);
    let spread: Vec<String> = (0..scale.spread.min(scale.domains)).map(domain).collect();
    let many = throughput(&apis, &actives, &spread, "spread-", scale.throughput_s)?;
    let many_busy = busy_percent(between, machine_ticks()?);
    measured(
        rows,
        Row::new(
            "domains_publish_one",
            format!("{CLIENTS} clients, {BATCH} objects per revision, one domain"),
            one,
            Unit::ObjectsPerSecond,
        ),
    );
    measured(
        rows,
        Row::new(
            "domains_publish_spread",
            format!("{CLIENTS} clients, {BATCH} objects per revision, over {} domains", spread.len()),
            many,
            Unit::ObjectsPerSecond,
        )
        .goal(Goal::AtLeast(2.0 * one)),
    );
    // Whether spreading could gain at all here: the three servers and the bench's clients
    // share this machine's cores.
    let spread_what = format!("{} domains", spread.len());
    for (key, what, busy) in
        [("domains_busy_one", "one domain", one_busy), ("domains_busy_spread", spread_what.as_str(), many_busy)]
    {
        measured(
            rows,
            Row::new(
                key,
                format!("the machine's CPU busy while publishing into {what} (all cores, clients included)"),
                busy,
                Unit::Percent,
            ),
        );
    }

    // The worst case: the server that also leads the arbiter's Raft group, so that every
    // renewal waits for a new leader while its domains fail over.
    let victim = arbiter_leader(&apis[0], &names)?;
    log(&format!(
        "SIGKILL of the server with a third of the Actives, under load: {}, the arbiter's leader",
        names[victim]
    ));
    let load = Load::start(&apis, scale.domains.min(60));
    std::thread::sleep(Duration::from_millis(500));
    let before = active_servers(&apis)?;
    let lost_domains: Vec<String> = before.iter().filter(|(_, s)| **s == victim).map(|(d, _)| d.clone()).collect();
    let killed = Instant::now();
    servers[victim].kill();
    let survivors: Vec<Api> = apis.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, a)| a.clone()).collect();
    let mut taken: BTreeMap<String, f64> = BTreeMap::new();
    while taken.len() < lost_domains.len() {
        if killed.elapsed() > WAIT {
            bail!("{} of {} domains found no new Active", lost_domains.len() - taken.len(), lost_domains.len());
        }
        for api in &survivors {
            for d in list(api)? {
                let name = d["name"].as_str().unwrap_or_default().to_string();
                if d["role"] == "active" && lost_domains.contains(&name) && !taken.contains_key(&name) {
                    taken.insert(name, killed.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let worst = taken.values().cloned().fold(0.0, f64::max);
    measured(
        rows,
        Row::new(
            "domains_failover_ms",
            format!("SIGKILL of a server: the last of its {} domains with a new Active", lost_domains.len()),
            worst,
            Unit::Milliseconds,
        )
        .goal(Goal::AtMost((timing.failover_after_ms + 1000) as f64)),
    );
    // The other servers' Actives lost nothing but the arbiter's leader for a moment: each keeps
    // its domains (it may fence and take the role back, at a new epoch, if the election outlasts
    // its lease). Counted once more after a failover timeout, for moves that came late.
    let survivors_held: Vec<(&String, &usize)> = before.iter().filter(|(_, s)| **s != victim).collect();
    std::thread::sleep(Duration::from_millis(timing.failover_after_ms));
    let now = active_servers(&apis)?;
    let moved = survivors_held.iter().filter(|(d, s)| now.get(*d) != Some(s)).count();
    measured(
        rows,
        Row::new(
            "domains_failover_collateral",
            format!(
                "SIGKILL of a server: domains of the other servers whose Active moved ({} held there)",
                survivors_held.len()
            ),
            moved as f64,
            Unit::Count,
        )
        .goal(Goal::AtMost(0.0)),
    );
    // Where the killed server's domains went: an even spread leaves half to each survivor.
    let mut landed: BTreeMap<usize, usize> = BTreeMap::new();
    for d in &lost_domains {
        if let Some(server) = now.get(d) {
            *landed.entry(*server).or_default() += 1;
        }
    }
    let most = landed.values().copied().max().unwrap_or(0);
    measured(
        rows,
        Row::new(
            "domains_failover_most_on_one",
            format!("SIGKILL of a server: the share of its {} domains that one survivor took", lost_domains.len()),
            100.0 * most as f64 / lost_domains.len().max(1) as f64,
            Unit::Percent,
        ),
    );

    log("the killed server back; rebalance under load");
    servers[victim].start()?;
    // Under load the heads move between the three listings: each Standby's own word is asked.
    wait_following(&apis, scale.domains)?;
    let rebalanced = Instant::now();
    let plan = post(&apis[0], "/v1/rebalance", &json!({}))?;
    let rebalance_ms = rebalanced.elapsed().as_secs_f64() * 1000.0;
    let planned = plan["moves"].as_array().cloned().unwrap_or_default();
    let moves = planned.len();
    let refused: Vec<&Value> = planned.iter().filter(|m| !m["error"].is_null()).collect();
    if let Some(first) = refused.first() {
        log(&format!("{} of the {moves} changeovers were refused; the first: {first}", refused.len()));
    }
    let refused = refused.len();
    let acked = load.stop();
    wait_synchronized(&apis, scale.domains)?;
    let lost = lost_publishes(&apis, &acked)?;
    measured(
        rows,
        Row::new(
            "domains_rebalance_ms",
            format!("rebalance of {} domains ({moves} changeovers, {refused} refused), under load", scale.domains),
            rebalance_ms,
            Unit::Milliseconds,
        )
        .goal(Goal::AtMost(10_000.0)),
    );
    measured(
        rows,
        Row::new(
            "domains_lost",
            format!("acknowledged publishes lost over the SIGKILL and the rebalance ({} acknowledged)", acked.len()),
            lost as f64,
            Unit::Count,
        )
        .goal(Goal::AtMost(0.0)),
    );
    for s in servers.iter_mut() {
        s.terminate();
    }
    log("done");
    Ok(())
}

/// Keeps a row, and says it at once: a run that stops later still shows what it measured.
fn measured(rows: &mut Vec<Row>, row: Row) {
    eprintln!("  measured: {}: {}", row.figure, row.unit.format(row.value));
    rows.push(row);
}

fn domain(i: usize) -> String {
    format!("d{i:04}")
}

/// Starts a, b and c (a the Primary), each voting in the quorum, with `sync_standbys = 1`.
fn start_servers(scratch: &Path, exe: &Path, timing: FailoverTiming) -> anyhow::Result<Vec<Node>> {
    let names = ["a", "b", "c"];
    let quorum = free_addrs(3)?;
    let members: Vec<String> = names.iter().zip(&quorum).map(|(n, q)| format!("{n}={q}")).collect();
    let a_dir = scratch.join("domains-a");
    mgha(exe, &["init", "-d", path_str(&a_dir)?, "--name", "a"])?;
    let mut a = Node::new(exe, a_dir, "a")?;
    a.start()?;
    let mut servers = Vec::new();
    for name in &names[1..] {
        let dir = scratch.join(format!("domains-{name}"));
        let key = a.join_key()?;
        mgha(exe, &["join", "-d", path_str(&dir)?, "--name", name, "--peer", &a.listen()?, "--key", &key])?;
        servers.push(Node::new(exe, dir, name)?);
    }
    a.terminate();
    servers.insert(0, a);
    for (i, s) in servers.iter_mut().enumerate() {
        let (members, listen) = (members.clone(), quorum[i].to_string());
        s.configure(move |cfg: &mut NodeConfig| {
            cfg.failover = FailoverMode::Quorum;
            cfg.quorum_listen = Some(listen);
            cfg.quorum_members = members;
            cfg.sync_standbys = 1;
            // The heartbeat also paces the peers' pings: their timeout scales with it.
            cfg.heartbeat_ms = timing.heartbeat_ms;
            cfg.peer_timeout_ms = cfg.peer_timeout_ms.max(5 * timing.heartbeat_ms);
            cfg.failover_after_ms = timing.failover_after_ms;
        })?;
    }
    for s in servers.iter_mut() {
        s.start()?;
    }
    wait_until("the global domain to be synchronized, a holding the arbiter's lease", || {
        let s = servers[0].api.status().context("a does not answer")?;
        Ok(s["peers"].as_array().is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["status"] == "synchronized"))
            && s["failover"]["lease_left_ms"].as_u64().is_some_and(|l| l > 0))
    })?;
    Ok(servers)
}

fn wait_until(what: &str, mut done: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while !done()? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn post(api: &Api, path: &str, body: &Value) -> anyhow::Result<Value> {
    api.post(path, body)
}

/// The domain list of a server (`GET /v1/domains`), the global domain left out.
fn list(api: &Api) -> anyhow::Result<Vec<Value>> {
    let body = api.get("/v1/domains")?;
    Ok(body["domains"].as_array().cloned().unwrap_or_default().into_iter().filter(|d| d["global"] != true).collect())
}

/// The server whose arbiter member leads the Raft group, as `api`'s server sees it.
fn arbiter_leader(api: &Api, names: &[String]) -> anyhow::Result<usize> {
    let mut found = None;
    wait_until("the arbiter to name its leader", || {
        let s = api.get("/v1/status")?;
        let members = s["failover"]["arbiter"]["members"].as_array().cloned().unwrap_or_default();
        found = members
            .iter()
            .filter(|m| m["leader"] == true)
            .find_map(|m| names.iter().position(|n| m["name"].as_str() == Some(n.as_str())));
        Ok(found.is_some())
    })?;
    found.context("the arbiter named no leader")
}

/// Which server (index) holds each domain's Active.
fn active_servers(apis: &[Api]) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for (i, api) in apis.iter().enumerate() {
        let Ok(domains) = list(api) else { continue };
        for d in domains.into_iter().filter(|d| d["role"] == "active") {
            out.insert(d["name"].as_str().unwrap_or_default().to_string(), i);
        }
    }
    Ok(out)
}

/// Waits until every domain has its Active, holding its arbiter's lease. Where each Active is
/// is read again at every pass: a domain whose Active moved meanwhile (a failover while a
/// restarted server was still starting, say) is looked up where it is now, not waited for on
/// the server that held it before.
fn wait_all_active(apis: &[Api], domains: usize) -> anyhow::Result<()> {
    wait_until("every domain to have its Active", || Ok(active_servers(apis)?.len() == domains))?;
    let mut leased: BTreeSet<(String, usize)> = BTreeSet::new();
    wait_until("every Active to hold its lease", || {
        let mut all = true;
        for (d, server) in active_servers(apis)? {
            if leased.contains(&(d.clone(), server)) {
                continue;
            }
            let s = apis[server].get(&format!("/v1/domains/{d}/status"))?;
            if s["failover"]["lease_left_ms"].as_u64().is_some_and(|l| l > 0) {
                leased.insert((d, server));
            } else {
                all = false;
            }
        }
        Ok(all)
    })
}

/// Waits until every replica of every domain has its Active's head.
fn wait_synchronized(apis: &[Api], domains: usize) -> anyhow::Result<()> {
    wait_until("every replica to be synchronized", || {
        let mut heads: BTreeMap<String, Vec<Option<u64>>> = BTreeMap::new();
        for api in apis {
            let Ok(list) = list(api) else { return Ok(false) };
            for d in list {
                heads
                    .entry(d["name"].as_str().unwrap_or_default().to_string())
                    .or_default()
                    .push(d["head_seq"].as_u64());
            }
        }
        Ok(heads.len() == domains
            && heads.values().all(|h| h.len() == apis.len() && h.iter().all(|s| s.is_some() && *s == h[0])))
    })
}

/// Waits until every domain has a replica on every server and each Standby replica is connected
/// to its Active and synchronized with it, as the Standby reports: under load, when the heads
/// of three listings taken one after the other cannot agree.
fn wait_following(apis: &[Api], domains: usize) -> anyhow::Result<()> {
    wait_until("every standby to follow its active, synchronized", || {
        let mut replicas: BTreeMap<String, usize> = BTreeMap::new();
        for api in apis {
            let Ok(list) = list(api) else { return Ok(false) };
            for d in list {
                let following = d["peers"].as_array().is_some_and(|peers| {
                    peers
                        .iter()
                        .any(|p| p["role"] == "active" && p["status"] == "synchronized" && p["connected"] == true)
                });
                if d["role"] != "active" && !following {
                    return Ok(false);
                }
                *replicas.entry(d["name"].as_str().unwrap_or_default().to_string()).or_default() += 1;
            }
        }
        Ok(replicas.len() == domains && replicas.values().all(|n| *n == apis.len()))
    })
}

/// Publishes `objects` hosts into every domain on its Active, in revisions of [`BATCH`].
fn fill(apis: &[Api], scale: DomainScale) -> anyhow::Result<()> {
    let actives = active_servers(apis)?;
    let work: Vec<(String, usize)> = actives.into_iter().collect();
    let next = Mutex::new(work.into_iter());
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let Some((d, server)) = next.lock().unwrap_or_else(|p| p.into_inner()).next() else {
                            return Ok(());
                        };
                        let mut home = server;
                        for start in (0..scale.objects).step_by(BATCH) {
                            let n = BATCH.min(scale.objects - start);
                            home = publish_batch(apis, home, &d, "h", start, n)?;
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a filler panicked"))?)
    })
}

/// One revision of `n` hosts, `{prefix}{start}..`, in `domain`, on its Active: first on
/// `apis[home]`, where it was last seen; the server that took it.
///
/// An Active whose lease renewal is late under load refuses publishes until its next renewal,
/// and one that lost its lease is a Standby now (a failover under load): both answer
/// `read-only`. A client then tries every server, and again shortly, as one would.
fn publish_batch(
    apis: &[Api],
    home: usize,
    domain: &str,
    prefix: &str,
    start: usize,
    n: usize,
) -> anyhow::Result<usize> {
    let changes: Vec<Value> = (start..start + n)
        .map(|i| {
            json!({"op": "put", "type": "host", "name": format!("{prefix}{i}"),
                "fields": {"ipv4-address": format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)}})
        })
        .collect();
    let body = json!({"message": "fill", "changes": changes});
    let path = format!("/v1/domains/{domain}/publish");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let order = std::iter::once(home).chain((0..apis.len()).filter(|&i| i != home));
        let mut why = Vec::new();
        for server in order {
            match apis[server].post(&path, &body) {
                Ok(_) => return Ok(server),
                Err(e) if refused_code(&e) == Some("read-only") => why.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        if Instant::now() >= deadline {
            bail!("no server took a publish into {domain} within 30 s: {}", why.join("; "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Objects per second of [`CLIENTS`] clients publishing [`BATCH`]-object revisions round-robin
/// into `domains` (each on its Active) for `seconds`.
fn throughput(
    apis: &[Api],
    actives: &BTreeMap<String, usize>,
    domains: &[String],
    prefix: &str,
    seconds: u64,
) -> anyhow::Result<f64> {
    let stop = AtomicBool::new(false);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (stop, done) = (&stop, &done);
                s.spawn(move || -> anyhow::Result<()> {
                    let mut k = c;
                    while !stop.load(Ordering::Relaxed) {
                        let d = &domains[k % domains.len()];
                        let first = *actives.get(d).context("a domain without an Active")?;
                        publish_batch(apis, first, d, prefix, k * BATCH, BATCH)?;
                        done.fetch_add(BATCH, Ordering::Relaxed);
                        k += CLIENTS;
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a client panicked"))?)
    })?;
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// A publisher of one host at a time into each of the first domains, on whichever server takes
/// it; remembers what was acknowledged.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<(String, String)>>>,
}

impl Load {
    fn start(apis: &[Api], domains: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..4)
            .map(|t| {
                let (apis, stop) = (apis.to_vec(), stop.clone());
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let d = domain((t + 4 * i) % domains);
                        let name = format!("load-{t}-{i}");
                        for api in &apis {
                            let body = json!({"changes": [{"op": "put", "type": "host", "name": name,
                                "fields": {"ipv4-address": "10.9.9.9"}}]});
                            if api.post(&format!("/v1/domains/{d}/publish"), &body).is_ok() {
                                acked.push((d.clone(), name.clone()));
                                break;
                            }
                        }
                        i += 1;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    acked
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn stop(self) -> Vec<(String, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.into_iter().flat_map(|t| t.join().unwrap_or_default()).collect()
    }
}

/// Acknowledged publishes missing from their domain's Active.
fn lost_publishes(apis: &[Api], acked: &[(String, String)]) -> anyhow::Result<usize> {
    let actives = active_servers(apis)?;
    let mut lost = 0;
    let mut by_domain: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (d, n) in acked {
        by_domain.entry(d).or_default().push(n);
    }
    for (d, names) in by_domain {
        let server = *actives.get(d).context("a domain without an Active")?;
        let objects = apis[server].get(&format!("/v1/domains/{d}/objects?type=host&limit=100000"))?;
        let held: HashSet<&str> =
            objects["objects"].as_array().into_iter().flatten().filter_map(|o| o["name"].as_str()).collect();
        lost += names.iter().filter(|n| !held.contains(**n)).count();
    }
    Ok(lost)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("unreadable stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
}

/// The machine's CPU time so far, in ticks: (busy, all), from the first line of `/proc/stat`.
fn machine_ticks() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("an empty /proc/stat")?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is counted in user already).
    let all: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    Ok((all - idle, all))
}

/// Percent of all cores busy between two [`machine_ticks`].
fn busy_percent(before: (u64, u64), after: (u64, u64)) -> f64 {
    let all = after.1.saturating_sub(before.1).max(1);
    100.0 * after.0.saturating_sub(before.0) as f64 / all as f64
}

/// One memory figure of a process's status (`VmHWM` its peak, `VmRSS` now), in MiB.
fn status_mib(pid: u32, key: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = super::machine::status_kib(&status, key).with_context(|| format!("no {key}"))?;
    Ok(kib as f64 / 1024.0)
}
