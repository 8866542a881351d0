//! Automatic failover with real processes, in both modes: a quorum of two data nodes and an
//! `mgha witness` (Raft over mutual TLS), and a real etcd. In each mode: SIGKILL of the Active
//! makes the Standby Active and the old one rejoins as Standby; an Active cut from the arbiter
//! refuses publishes before the new Active is elected (from both sides' status and logs); and
//! with `sync_standbys = 1` no acknowledged publish is lost across 20 failovers; a planned
//! changeover moves the arbiter's hold with the role. Under quorum failover a damaged Active
//! steps down to a healthy Standby and heals as one. Two data nodes
//! without a witness are refused at start. Each test has its own temp dir, free ports, proxies
//! where it cuts links, and guards that kill every process it started.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mgha_tests::etcd::Etcd;
use mgha_tests::process::ChildGuard;
use mgha_tests::proxy::FaultProxy;
use serde_json::Value;
use support::publisher::*;
use support::*;

const HEARTBEAT_MS: u64 = 250;
const FAILOVER_AFTER_MS: u64 = 2000;
const FAILOVERS: usize = 20;

/// One cluster at a time: each runs three processes and a Raft group or an etcd, and the
/// timing under test should not depend on how many other clusters share two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Quorum,
    Etcd,
}

/// Two data nodes and their arbiter; dropped in field order, so daemons go first.
struct Cluster {
    nodes: Vec<Node>,
    witness: Option<ChildGuard>,
    etcd: Option<Etcd>,
    /// The links a test can cut to isolate node `a` from the arbiter.
    cut_a: Vec<FaultProxy>,
    scratch: Scratch,
    /// Held for the cluster's life: see [`SERIAL`].
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// Heartbeats and timeouts short enough for a test.
fn fast(node: &Node) {
    node.set_config("heartbeat_ms", &HEARTBEAT_MS.to_string());
    node.set_config("peer_timeout_ms", "1000");
    node.set_config("changeover_timeout_ms", "3000");
    node.put_config("failover_after_ms", &FAILOVER_AFTER_MS.to_string());
}

fn toml_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", "))
}

impl Cluster {
    /// `a` (Primary, Active) and `b` (Standby) with the arbiter of `mode`; with `isolable`, `a`
    /// reaches the arbiter (and the arbiter reaches `a`) only through proxies in `cut_a`.
    fn start(mode: Mode, isolable: bool, sync_standbys: usize) -> Cluster {
        let serial = serial();
        let scratch = Scratch::new();
        let mut a = scratch.init("a");
        a.start();
        let b = scratch.join(&a, "b");
        let mut cluster =
            Cluster { nodes: Vec::new(), witness: None, etcd: None, cut_a: Vec::new(), scratch, _serial: serial };
        match mode {
            Mode::Etcd => {
                let etcd = Etcd::start();
                let a_endpoint = if isolable {
                    let proxy = FaultProxy::start(etcd.client.parse().expect("etcd address")).expect("proxy");
                    let url = format!("http://{}", proxy.addr());
                    cluster.cut_a.push(proxy);
                    url
                } else {
                    etcd.url()
                };
                a.terminate();
                for (n, endpoint) in [(&a, a_endpoint), (&b, etcd.url())] {
                    n.put_config("failover", "\"etcd\"");
                    n.put_config("etcd_endpoints", &toml_list(&[endpoint]));
                }
                cluster.etcd = Some(etcd);
            }
            Mode::Quorum => {
                let q = free_addrs(3);
                let (qa, qb, qw) = (q[0], q[1], q[2]);
                // Each voter's own view of the others' addresses: through a proxy wherever the
                // link touches `a`, when `a` must be isolable.
                let mut via = |target: std::net::SocketAddr| -> String {
                    if !isolable {
                        return target.to_string();
                    }
                    let proxy = FaultProxy::start(target).expect("proxy");
                    let addr = proxy.addr().to_string();
                    cluster.cut_a.push(proxy);
                    addr
                };
                let a_view = vec![format!("a={qa}"), format!("b={}", via(qb)), format!("witness={}", via(qw))];
                let b_view = vec![format!("a={}", via(qa)), format!("b={qb}"), format!("witness={qw}")];
                let w_view = [format!("a={}", via(qa)), format!("b={qb}"), format!("witness={qw}")];
                let key = a.join_key("10m");
                let wdir = cluster.scratch.path("witness");
                let log = std::fs::File::create(cluster.scratch.path("witness.log")).expect("witness log");
                let child = Command::new(env!("CARGO_BIN_EXE_mgha"))
                    .args(["witness", "-d", s(&wdir), "--listen", &qw.to_string(), "--members", &w_view.join(",")])
                    .args(["--join", &a.listen(), "--key", &key])
                    .args(["--heartbeat-ms", &HEARTBEAT_MS.to_string()])
                    .args(["--failover-after-ms", &FAILOVER_AFTER_MS.to_string()])
                    .env("MGHA_LOG", "info")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("witness starts");
                cluster.witness = Some(ChildGuard::new(child));
                // The witness enrolls with `a` (which must run for that), then waits for voters.
                wait_until("the witness to enroll", || wdir.join("tls").join("node.pem").exists());
                a.terminate();
                for (n, listen, view) in [(&a, qa, a_view), (&b, qb, b_view)] {
                    n.put_config("failover", "\"quorum\"");
                    n.put_config("quorum_listen", &format!("\"{listen}\""));
                    n.put_config("quorum_members", &toml_list(&view));
                }
            }
        }
        for n in [&a, &b] {
            fast(n);
            if sync_standbys > 0 {
                n.set_config("sync_standbys", &sync_standbys.to_string());
            }
        }
        a.start();
        let mut b = b;
        b.start();
        wait_peers_synchronized(&a, &["b"]);
        wait_until("a to hold the arbiter's lease", || lease_left(&a).is_some_and(|l| l > 0));
        // A changeover asked right at start would meet an arbiter still electing its own leader.
        for n in [&a, &b] {
            wait_until("the arbiter to have all its members", || {
                let s = n.http_status().unwrap_or(Value::Null);
                let members = s["failover"]["arbiter"]["members"].as_array().cloned().unwrap_or_default();
                s["failover"]["arbiter"]["has_quorum"] == true && members.iter().all(|m| m["healthy"] == true)
            });
        }
        cluster.nodes = vec![a, b];
        cluster
    }

    fn witness_log(&self) -> String {
        std::fs::read_to_string(self.scratch.path("witness.log")).unwrap_or_default()
    }

    /// Everything the processes logged, for a failure message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!("--- {}\n{}\n", n.name, tail(&n.log())));
        }
        out.push_str(&format!("--- witness\n{}\n", tail(&self.witness_log())));
        out
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// How long the Active's lease still runs, when the node answers and is Active.
fn lease_left(n: &Node) -> Option<u64> {
    n.http_status()?["failover"]["lease_left_ms"].as_u64()
}

fn role(n: &Node) -> Option<String> {
    n.http_status().map(|s| s["node"]["role"].as_str().unwrap_or("").to_string())
}

/// The value of `field=N` on the first log line that contains `what`.
fn logged_field(log: &str, what: &str, field: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains(what))?;
    let at = line.find(&format!(" {field}="))? + field.len() + 2;
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The time stamp of the first log line that contains `what`.
fn logged_at(log: &str, what: &str) -> Option<String> {
    log.lines().find(|l| l.contains(what)).and_then(|l| l.split_whitespace().next()).map(String::from)
}

/// Kills the Active; returns how long until the Standby took its first publish, and its name.
fn kill_and_wait_for_takeover(c: &mut Cluster, active: usize, round: usize) -> (Duration, String) {
    c.nodes[active].kill();
    let killed = Instant::now();
    let other = Api::of(&c.nodes[1 - active]);
    let mut i = 0;
    let deadline = killed + WAIT;
    loop {
        i += 1;
        let name = format!("takeover-{round}-{i}");
        if other.publish_host(&name, i).is_ok() {
            return (killed.elapsed(), name);
        }
        assert!(Instant::now() < deadline, "no takeover after {WAIT:?}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An Active cut from the arbiter past its lease, while its Standby was frozen and could not
/// take over, takes the role back at a new epoch once it reaches the arbiter again, and its
/// Standby follows it when it thaws. (That it does so at once, without waiting for its own hold
/// to turn stale, is the rule of `plan::standby_decision`, pinned by its unit test and run
/// under the invariants of `sync/tests/failover_sim.rs`.)
#[test]
fn quorum_a_fenced_active_takes_the_role_back_when_nobody_took_over() {
    use rustix::process::Signal;
    let c = Cluster::start(Mode::Quorum, true, 0);
    let a = Api::of(&c.nodes[0]);
    a.publish_host("before-cut", 1).expect("a publishes");
    wait_peers_synchronized(&c.nodes[0], &["b"]);
    let epoch = |n: &Node| n.http_status().and_then(|s| s["node"]["epoch"].as_u64());
    let before = epoch(&c.nodes[0]).expect("a's epoch");
    // b can neither campaign nor vote; cut from the witness too, a has no majority.
    c.nodes[1].signal(Signal::STOP);
    for p in &c.cut_a {
        p.partition();
    }
    wait_until("a to fence itself", || role(&c.nodes[0]).as_deref() == Some("standby"));
    assert_eq!(a.publish_host("fenced", 2).expect_err("a is fenced"), "read-only");
    for p in &c.cut_a {
        p.heal();
    }
    // With the witness, a has a majority again, and the arbiter still names it.
    let mut i = 0;
    wait_until("a to take publishes again", || {
        i += 1;
        a.publish_host(&format!("back-{i}"), i).is_ok()
    });
    let log = c.nodes[0].log();
    assert!(log.contains("took the role back"), "a did not take its own hold back\n{}", c.logs());
    assert!(!log.contains("automatic failover: the arbiter made this node active"), "{}", c.logs());
    assert!(epoch(&c.nodes[0]).expect("a's epoch") > before, "a new epoch fences the old one");
    c.nodes[1].signal(Signal::CONT);
    // As wait_peers_synchronized, but a timeout says what a and b were doing.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let s = c.nodes[0].http_status();
        if s.as_ref().is_some_and(|s| peers_synchronized(s, &["b"])) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b did not synchronize after it thawed; a's status: {s:?}; b's: {:?}\n{}",
            c.nodes[1].http_status(),
            c.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(role(&c.nodes[1]).as_deref(), Some("standby"), "{}", c.logs());
    assert_eq!(role(&c.nodes[0]).as_deref(), Some("active"), "{}", c.logs());
    let on_b = hosts_on(&c.nodes[1]);
    assert!(on_b.contains("before-cut") && on_b.contains(&format!("back-{i}")), "b follows a: {on_b:?}");
}

fn sigkill_fails_over_and_the_old_active_rejoins(mode: Mode) {
    let mut c = Cluster::start(mode, false, 0);
    Api::of(&c.nodes[0]).publish_host("before", 1).expect("a publishes");
    // Replicated before the kill (asynchronous publish): the rejoin below is then a clean
    // follow, not a collision (the 20-failover test covers those).
    wait_peers_synchronized(&c.nodes[0], &["b"]);
    let (took, first) = kill_and_wait_for_takeover(&mut c, 0, 0);
    eprintln!("{mode:?}: SIGKILL to the first publish on the new Active: {took:?}");
    assert_eq!(role(&c.nodes[1]).as_deref(), Some("active"));
    assert!(lease_left(&c.nodes[1]).is_some(), "b holds a lease");
    c.nodes[0].start();
    wait_until("a to rejoin as standby", || role(&c.nodes[0]).as_deref() == Some("standby"));
    wait_peers_synchronized(&c.nodes[1], &["a"]);
    let on_a = hosts_on(&c.nodes[0]);
    assert!(on_a.contains("before") && on_a.contains(&first), "a has both revisions: {on_a:?}");
    assert_eq!(role(&c.nodes[0]).as_deref(), Some("standby"), "a stays standby\n{}", c.logs());
    let err = Api::of(&c.nodes[0]).publish_host("on-a", 2).expect_err("a is standby");
    assert_eq!(err, "read-only");
}

fn cut_active_refuses_publishes_before_the_new_active_is_elected(mode: Mode) {
    let c = Cluster::start(mode, true, 0);
    let a = Api::of(&c.nodes[0]);
    a.publish_host("before-cut", 1).expect("a publishes");
    for p in &c.cut_a {
        p.partition();
    }
    let b = Api::of(&c.nodes[1]);
    let mut i = 0;
    wait_until("b to take publishes", || {
        i += 1;
        b.publish_host(&format!("after-cut-{i}"), i).is_ok()
    });
    // a's side: refusing publishes, fenced to standby, and its publishes stopped before b's began
    // (from both logs: a's `refusing_since_ms`, b's `at_ms`, one clock on one host).
    assert_eq!(a.publish_host("cut-off", 2).expect_err("a is fenced"), "read-only");
    wait_until("a to fence itself", || role(&c.nodes[0]).as_deref() == Some("standby"));
    let refusing = logged_field(&c.nodes[0].log(), "fenced", "refusing_since_ms")
        .unwrap_or_else(|| panic!("a logged no fence\n{}", c.logs()));
    let elected = logged_field(&c.nodes[1].log(), "the arbiter made this node active", "at_ms")
        .unwrap_or_else(|| panic!("b logged no takeover\n{}", c.logs()));
    assert!(refusing < elected, "a refused from {refusing}, b was elected at {elected}\n{}", c.logs());
    let s = c.nodes[0].http_status().expect("a answers");
    assert!(s["failover"]["lease_left_ms"].is_null(), "a standby has no lease: {s}");
    assert!(!s["failover"]["last_error"].is_null() || s["failover"]["arbiter"]["has_quorum"] == false, "{s}");
    // Healed, a follows b.
    for p in &c.cut_a {
        p.heal();
    }
    wait_peers_synchronized(&c.nodes[1], &["a"]);
    assert_eq!(role(&c.nodes[0]).as_deref(), Some("standby"));
}

fn no_acknowledged_publish_is_lost_across_failovers(mode: Mode) {
    let mut c = Cluster::start(mode, false, 1);
    let publisher = Publisher::start("f", vec![Api::of(&c.nodes[0]), Api::of(&c.nodes[1])]);
    let mut times = Vec::new();
    let mut merged = 0;
    for round in 0..FAILOVERS {
        let active = settle(&mut c, round, &mut merged);
        let before = publisher.count();
        wait_until("a publish before the kill", || publisher.count() > before);
        // With two data nodes and `sync_standbys = 1`, the new Active takes publishes only once
        // the old one is back as its Standby: wait for the role, then restart.
        c.nodes[active].kill();
        let killed = Instant::now();
        wait_until("the standby to take over", || lease_left(&c.nodes[1 - active]).is_some_and(|l| l > 0));
        times.push(killed.elapsed());
        c.nodes[active].start();
    }
    settle(&mut c, FAILOVERS, &mut merged);
    let acked = publisher.stop();
    assert_all_present(&acked, &[&c.nodes[0], &c.nodes[1]]);
    times.sort();
    eprintln!(
        "{mode:?}: {FAILOVERS} failovers, {} acknowledged publishes, none lost; SIGKILL to Active p50 {:?}, max {:?}; \
         {merged} collision branches merged",
        acked.len(),
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

/// Waits until one node is Active and the other a synchronized Standby of it, merging the
/// collision branch a killed Active may leave (a publish it committed but no standby
/// acknowledged, so never acknowledged to the client). Returns the Active's index.
fn settle(c: &mut Cluster, round: usize, merged: &mut usize) -> usize {
    let started = Instant::now();
    loop {
        let roles: Vec<Option<String>> = c.nodes.iter().map(role).collect();
        if let Some(x) = roles.iter().position(|r| r.as_deref() == Some("active")) {
            let status = c.nodes[x].http_status().unwrap_or(Value::Null);
            let other = &c.nodes[1 - x].name;
            let peer = status["peers"].as_array().into_iter().flatten().find(|p| p["name"] == other.as_str());
            match peer.map(|p| (p["status"].as_str().unwrap_or(""), p["connected"] == true, &p["head"])) {
                Some(("synchronized", true, head)) if *head == status["head"] && lease_left(&c.nodes[x]).is_some() => {
                    return x;
                }
                Some(("collision", _, _)) => {
                    let list = ok_json(&["collision", "show", "-d", c.nodes[x].d(), "--json"]);
                    for b in list["collisions"].as_array().into_iter().flatten().filter(|b| b["status"] == "open") {
                        ok(&["collision", "resolve", "-d", c.nodes[x].d(), &b["id"].to_string(), "--merge"]);
                        *merged += 1;
                    }
                }
                _ => {}
            }
        }
        assert!(started.elapsed() < WAIT, "round {round}: no synchronized pair: {roles:?}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `mgha changeover --to b` moves the arbiter's hold with the role: b renews at the new epoch,
/// a follows, and neither is fenced afterwards.
fn planned_changeover_goes_through_the_arbiter(mode: Mode) {
    let c = Cluster::start(mode, false, 0);
    ok(&["changeover", "-d", c.nodes[0].d(), "--to", "b"]);
    wait_until("b to hold the lease", || lease_left(&c.nodes[1]).is_some_and(|l| l > 0));
    assert_eq!(role(&c.nodes[0]).as_deref(), Some("standby"));
    let s = c.nodes[1].http_status().expect("b answers");
    let holder_epoch = s["failover"]["arbiter"]["holder"]["epoch"].as_u64();
    wait_until("the arbiter to name b at its epoch", || {
        let s = c.nodes[1].http_status().unwrap_or(Value::Null);
        s["failover"]["arbiter"]["holder"]["epoch"] == s["node"]["epoch"]
    });
    Api::of(&c.nodes[1]).publish_host("after-changeover", 1).expect("b publishes");
    // Two failover timeouts later, nobody was fenced or elected behind the changeover's back.
    std::thread::sleep(Duration::from_millis(2 * FAILOVER_AFTER_MS));
    assert_eq!(role(&c.nodes[1]).as_deref(), Some("active"), "{holder_epoch:?}\n{}", c.logs());
    assert!(!c.nodes[1].log().contains("fenced"), "{}", c.logs());
    assert!(!c.nodes[0].log().contains("the arbiter made this node active"), "{}", c.logs());
    wait_peers_synchronized(&c.nodes[1], &["a"]);
}

/// `mgha changeover --force` on the Standby while the Active runs: the arbiter moves the hold at
/// once, the old Active fences itself at its next heartbeat, and the forced node publishes only
/// after the old Active's lease surely ran out.
fn forced_changeover_goes_through_the_arbiter(mode: Mode) {
    let c = Cluster::start(mode, false, 0);
    ok(&["changeover", "-d", c.nodes[1].d(), "--force", "--yes"]);
    wait_until("b to hold the lease", || lease_left(&c.nodes[1]).is_some_and(|l| l > 0));
    wait_until("a to follow b", || role(&c.nodes[0]).as_deref() == Some("standby"));
    let fenced = logged_at(&c.nodes[0].log(), "fenced").unwrap_or_else(|| panic!("a logged no fence\n{}", c.logs()));
    let active = logged_at(&c.nodes[1].log(), "role changed role=active")
        .unwrap_or_else(|| panic!("b logged no role change\n{}", c.logs()));
    // b waits out a's whole lease after taking the hold; a fences at its next heartbeat.
    assert!(fenced < active, "a fenced at {fenced}, after b became active at {active}\n{}", c.logs());
    Api::of(&c.nodes[1]).publish_host("after-force", 1).expect("b publishes");
    wait_peers_synchronized(&c.nodes[1], &["a"]);
}

#[test]
fn quorum_forced_changeover_goes_through_the_arbiter() {
    forced_changeover_goes_through_the_arbiter(Mode::Quorum);
}

#[test]
fn etcd_forced_changeover_goes_through_the_arbiter() {
    forced_changeover_goes_through_the_arbiter(Mode::Etcd);
}

#[test]
fn quorum_planned_changeover_goes_through_the_arbiter() {
    planned_changeover_goes_through_the_arbiter(Mode::Quorum);
}

#[test]
fn etcd_planned_changeover_goes_through_the_arbiter() {
    planned_changeover_goes_through_the_arbiter(Mode::Etcd);
}

#[test]
fn quorum_sigkill_fails_over_and_the_old_active_rejoins() {
    sigkill_fails_over_and_the_old_active_rejoins(Mode::Quorum);
}

#[test]
fn quorum_cut_active_refuses_publishes_before_the_new_active_is_elected() {
    cut_active_refuses_publishes_before_the_new_active_is_elected(Mode::Quorum);
}

#[test]
fn quorum_no_acknowledged_publish_is_lost_across_twenty_failovers() {
    no_acknowledged_publish_is_lost_across_failovers(Mode::Quorum);
}

#[test]
fn etcd_sigkill_fails_over_and_the_old_active_rejoins() {
    sigkill_fails_over_and_the_old_active_rejoins(Mode::Etcd);
}

#[test]
fn etcd_cut_active_refuses_publishes_before_the_new_active_is_elected() {
    cut_active_refuses_publishes_before_the_new_active_is_elected(Mode::Etcd);
}

#[test]
fn etcd_no_acknowledged_publish_is_lost_across_twenty_failovers() {
    no_acknowledged_publish_is_lost_across_failovers(Mode::Etcd);
}

#[test]
fn two_data_nodes_without_a_witness_are_refused_at_start() {
    let scratch = Scratch::new();
    let a = scratch.init("a");
    let q = free_addrs(2);
    a.put_config("failover", "\"quorum\"");
    a.put_config("quorum_listen", &format!("\"{}\"", q[0]));
    a.put_config("quorum_members", &toml_list(&[format!("a={}", q[0]), format!("b={}", q[1])]));
    let out = mgha(&["run", "-d", a.d()]);
    assert!(!out.status.success(), "a started with two voters");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("add a witness"), "the reason names the way out: {err}");
}

/// Flips one bit at the end of every copy of `needle` in a stopped node's store file.
fn flip_everywhere(store: &std::path::Path, needle: &[u8]) {
    let mut bytes = std::fs::read(store).expect("read the store");
    let places: Vec<usize> =
        bytes.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect();
    assert!(!places.is_empty(), "the needle is in the store");
    for at in places {
        bytes[at + needle.len() - 1] ^= 0x01;
    }
    std::fs::write(store, &bytes).expect("write the store");
}

#[test]
fn quorum_a_damaged_active_steps_down_to_a_healthy_standby_and_heals() {
    let mut c = Cluster::start(Mode::Quorum, false, 0);
    let mark = r#"{"message": "to damage", "changes": [{"op": "put", "type": "host", "name": "mark",
        "fields": {"ipv4-address": "10.77.66.55"}}]}"#;
    ok(&["apply", "-d", c.nodes[0].d(), s(&c.scratch.file("mark.json", mark))]);
    Api::of(&c.nodes[0]).publish_host("before", 1).expect("a publishes");
    wait_peers_synchronized(&c.nodes[0], &["b"]);
    // b first, so that a keeps the role (with the witness) while it is away.
    c.nodes[1].terminate();
    c.nodes[0].terminate();
    flip_everywhere(&c.nodes[0].dir.join("mgha.redb"), b"10.77.66.55");
    c.nodes[0].start();
    wait_until("a to find its damage (the scrub's first pass)", || {
        c.nodes[0].http_status().is_some_and(|st| st["damage"].is_string())
    });
    // Alone, the damaged Active keeps the role and takes publishes; its status says what to do.
    wait_until("a to hold the lease again", || lease_left(&c.nodes[0]).is_some_and(|l| l > 0));
    Api::of(&c.nodes[0]).publish_host("during", 2).expect("a damaged active alone still publishes");
    let said = ok(&["status", "-d", c.nodes[0].d()]);
    assert!(said.contains("DAMAGED") && said.contains("no standby is connected and synchronized"), "{said}");
    let st = c.nodes[0].http_status().expect("a's status");
    assert_eq!(st["recovery"]["action"], "no_standby", "{st}");
    assert_eq!(role(&c.nodes[0]).as_deref(), Some("active"));

    // A healthy Standby back: a stops renewing, b is elected, and a heals as a Standby.
    c.nodes[1].start();
    wait_until("b to take over", || role(&c.nodes[1]).as_deref() == Some("active"));
    let log = c.nodes[0].log();
    assert!(log.contains("letting the lease lapse"), "a says why it steps down:\n{}", tail(&log));
    Api::of(&c.nodes[1]).publish_host("after", 3).expect("b publishes");
    wait_until("a to heal as a standby of b", || {
        c.nodes[0].http_status().is_some_and(|st| {
            st["node"]["role"] == "standby"
                && st.get("damage").is_none()
                && st["archived"].is_string()
                && Some(st["head"].clone()) == c.nodes[1].http_status().map(|s| s["head"].clone())
        })
    });
    for n in &c.nodes {
        let on = hosts_on(n);
        for h in ["mark", "before", "during", "after"] {
            assert!(on.iter().any(|x| x.starts_with(h)), "{} lacks the acknowledged {h}: {on:?}", n.name);
        }
    }
    ok(&["check", "-d", c.nodes[0].d()]);
}
