//! Clusters of the failover examples (`examples/c/failover.c`, `examples/cpp/failover.cpp`):
//! one embedded engine per process, spoken to through the line protocol the examples document,
//! with automatic failover by a quorum (of data nodes, or two and `mgha witness`) or by etcd; a
//! publisher that follows whichever process is Active; and the SIGKILL rounds the failover tests
//! run. Every process is killed when the cluster drops, and its temp dir removed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mgha_tests::etcd::Etcd;
use mgha_tests::process::ChildGuard;
use serde_json::Value;

/// The engines' heartbeat, and the witness's.
pub const HEARTBEAT_MS: u64 = 100;
/// A Standby takes over once the Active has not renewed for this long.
pub const FAILOVER_AFTER_MS: u64 = 1000;
/// How long a takeover may take before a test fails: ten times what it should take
/// (`FAILOVER_AFTER_MS` plus a second), for a loaded machine.
pub const TAKEOVER_DEADLINE: Duration = Duration::from_millis(10 * (FAILOVER_AFTER_MS + 1000));
/// How long a cluster may take to settle (one Active, every Standby synchronized with it).
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// Why a command got no `ok`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The engine refused: `err STATUS_NAME message`.
    Refused { status: String, message: String },
    /// The process is not running (killed, or not started again yet), or it broke the protocol.
    Gone,
}

/// The pipes of a running example process.
struct Io {
    child: ChildGuard,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// One node: an example process holding its engine, started again after each kill.
pub struct Process {
    pub name: String,
    exe: PathBuf,
    config: PathBuf,
    log: PathBuf,
    /// The running process, for a kill that must not wait for the command in flight.
    pid: AtomicU32,
    io: Mutex<Option<Io>>,
}

impl Process {
    /// Starts the example with `args`; returns once it printed `ready`.
    fn spawn(&self, args: &[&str]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let mut child = Command::new(&self.exe)
            .args(args)
            .env("LD_LIBRARY_PATH", super::lib_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.exe.display()));
        let (stdin, stdout) = (child.stdin.take().expect("stdin"), child.stdout.take().expect("stdout"));
        self.pid.store(child.id(), Ordering::SeqCst);
        let mut io = Io { child: ChildGuard::new(child), stdin, stdout: BufReader::new(stdout) };
        let answered = Arc::new(AtomicBool::new(false));
        let watchdog = self.watchdog(answered.clone());
        let mut first = String::new();
        let _ = io.stdout.read_line(&mut first);
        // Before the guard can reap the process (and its pid be reused): the watchdog stands down.
        answered.store(true, Ordering::SeqCst);
        let _ = watchdog.join();
        if first.trim_end() != "ready" {
            // The guard reaps it: its pid must not be signalled later.
            self.pid.store(0, Ordering::SeqCst);
            drop(io);
            panic!("{} {args:?} did not start: {first}\n{}", self.name, self.log());
        }
        *self.io.lock().unwrap_or_else(|p| p.into_inner()) = Some(io);
    }

    /// A process that never prints its first line would block the test for good: this kills it
    /// after `SETTLE_DEADLINE` unless `answered` is set first. The process is not reaped before
    /// `answered` is set, so the pid is still its own.
    fn watchdog(&self, answered: Arc<AtomicBool>) -> JoinHandle<()> {
        let pid = libc::pid_t::try_from(self.pid.load(Ordering::SeqCst)).expect("a pid fits pid_t");
        std::thread::spawn(move || {
            let until = Instant::now() + SETTLE_DEADLINE;
            while !answered.load(Ordering::SeqCst) {
                if Instant::now() >= until {
                    // SAFETY: kill(2) takes no pointers; the pid is an unreaped child (above).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    }

    /// Opens the node again (`run CONFIG`), after a kill.
    pub fn restart(&self) {
        let config = self.config.display().to_string();
        self.spawn(&["run", &config]);
    }

    /// Sends one command and returns what follows `ok `.
    pub fn request(&self, line: &str) -> Result<String, Failure> {
        let mut guard = self.io.lock().unwrap_or_else(|p| p.into_inner());
        let io = guard.as_mut().ok_or(Failure::Gone)?;
        let mut answer = String::new();
        let sent = writeln!(io.stdin, "{line}").and_then(|()| io.stdin.flush());
        if sent.is_err() || io.stdout.read_line(&mut answer).unwrap_or(0) == 0 {
            return Err(Failure::Gone);
        }
        let answer = answer.trim_end();
        if answer == "ok" {
            return Ok(String::new());
        }
        if let Some(rest) = answer.strip_prefix("ok ") {
            return Ok(rest.to_string());
        }
        let rest = answer.strip_prefix("err ").ok_or(Failure::Gone)?;
        let (status, message) = rest.split_once(' ').unwrap_or((rest, ""));
        Err(Failure::Refused { status: status.into(), message: message.into() })
    }

    /// A command whose answer is JSON.
    pub fn json(&self, line: &str) -> Option<Value> {
        self.request(line).ok().and_then(|text| serde_json::from_str(&text).ok())
    }

    /// SIGKILL, then reaps the process. The signal goes first, without the pipe's lock, which a
    /// command in flight holds until the process is gone.
    pub fn kill(&self) {
        let pid = self.pid.swap(0, Ordering::SeqCst);
        if pid != 0 {
            let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
            // SAFETY: kill(2) takes no pointers; the pid is our own child, not yet reaped (the
            // guard below reaps it), so it cannot name another process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(mut io) = self.io.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = io.child.kill();
        }
    }

    /// `active` or `standby` (from the example's `role`), when the process answers.
    pub fn role(&self) -> Option<String> {
        let answer = self.request("role").ok()?;
        answer.split_whitespace().next().map(String::from)
    }

    /// What the process wrote on stderr, over all its starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The third vote of a cluster.
#[derive(Clone, Debug)]
pub enum Arbiter {
    /// A Raft group of the data nodes alone (three or more).
    Quorum,
    /// A Raft group of the data nodes and `mgha witness` (this binary).
    QuorumWithWitness(PathBuf),
    /// A leader lease in a real etcd.
    Etcd,
}

/// Data-node processes and their arbiter; dropped in field order: the engines first.
pub struct Cluster {
    pub nodes: Vec<Arc<Process>>,
    witness: Option<ChildGuard>,
    _etcd: Option<Etcd>,
    dir: tempfile::TempDir,
}

/// Free loopback ports, all bound at once so none repeats.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("bound").port()).collect()
}

fn toml_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", "))
}

/// Polls `check` every 20 ms until it holds; fails the test after `deadline` with `what`.
pub fn wait_until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !check() {
        assert!(Instant::now() < until, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Cluster {
    /// Data nodes `names` running `exe`, the first the Primary, with automatic failover by
    /// `arbiter`, `sync_standbys = 1` and short timings.
    pub fn start(exe: &Path, names: &[&str], arbiter: Arbiter) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(2 * names.len() + 1);
        let quorum: Vec<String> =
            names.iter().enumerate().map(|(i, n)| format!("{n}=127.0.0.1:{}", ports[2 * i + 1])).collect();
        let witness_addr = format!("127.0.0.1:{}", ports[2 * names.len()]);
        let mut voters = quorum.clone();
        if matches!(arbiter, Arbiter::QuorumWithWitness(_)) {
            voters.push(format!("witness={witness_addr}"));
        }
        let etcd = matches!(arbiter, Arbiter::Etcd).then(Etcd::start);
        let nodes: Vec<Arc<Process>> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut config = format!(
                    "data_dir = {:?}\nname = \"{name}\"\nlisten = \"127.0.0.1:{}\"\n\
                     heartbeat_ms = {HEARTBEAT_MS}\npeer_timeout_ms = 1000\nchangeover_timeout_ms = 3000\n\
                     failover_after_ms = {FAILOVER_AFTER_MS}\nsync_standbys = 1\nsync_timeout_ms = 3000\n",
                    dir.path().join(name).display().to_string(),
                    ports[2 * i]
                );
                match &etcd {
                    Some(etcd) => config
                        .push_str(&format!("failover = \"etcd\"\netcd_endpoints = {}\n", toml_list(&[etcd.url()]))),
                    None => config.push_str(&format!(
                        "failover = \"quorum\"\nquorum_listen = \"127.0.0.1:{}\"\nquorum_members = {}\n",
                        ports[2 * i + 1],
                        toml_list(&voters)
                    )),
                }
                let path = dir.path().join(format!("{name}.toml"));
                std::fs::write(&path, config).expect("writes the config");
                Arc::new(Process {
                    name: name.to_string(),
                    exe: exe.to_path_buf(),
                    config: path,
                    log: dir.path().join(format!("{name}.log")),
                    pid: AtomicU32::new(0),
                    io: Mutex::new(None),
                })
            })
            .collect();
        let primary = nodes[0].clone();
        primary.spawn(&["init", &primary.config.display().to_string()]);
        let peer = primary.request("peer").expect("the Primary's peer address");
        for node in &nodes[1..] {
            let key = primary.request("join-key").expect("a join key");
            node.spawn(&["join", &node.config.display().to_string(), &peer, &key]);
        }
        let mut cluster = Cluster { nodes, witness: None, _etcd: etcd, dir };
        if let Arbiter::QuorumWithWitness(mgha) = arbiter {
            let key = primary.request("join-key").expect("a join key");
            let wdir = cluster.dir.path().join("witness");
            let log = std::fs::File::create(cluster.dir.path().join("witness.log")).expect("witness log");
            let child = Command::new(&mgha)
                .args(["witness", "-d", &wdir.display().to_string(), "--listen", &witness_addr])
                .args(["--members", &voters.join(","), "--join", &peer, "--key", &key])
                .args(["--heartbeat-ms", &HEARTBEAT_MS.to_string()])
                .args(["--failover-after-ms", &FAILOVER_AFTER_MS.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {} witness: {e}", mgha.display()));
            cluster.witness = Some(ChildGuard::new(child));
        }
        cluster
    }

    /// Waits until one node is the Active holding the arbiter's lease and every other is its
    /// synchronized Standby, merging the collision branch a killed Active may leave (a publish
    /// it committed but no Standby acknowledged, so never acknowledged to the client). Returns
    /// the Active's index.
    pub fn settle(&self, round: usize) -> usize {
        let started = Instant::now();
        loop {
            if let Some(active) = self.settled() {
                return active;
            }
            assert!(started.elapsed() < SETTLE_DEADLINE, "round {round}: no settled cluster\n{}", self.describe());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn settled(&self) -> Option<usize> {
        let roles: Vec<Option<String>> = self.nodes.iter().map(|n| n.role()).collect();
        let active = roles.iter().position(|r| r.as_deref() == Some("active"))?;
        if roles.iter().enumerate().any(|(i, r)| i != active && r.as_deref() != Some("standby")) {
            return None;
        }
        let node = &self.nodes[active];
        let status = node.json("status")?;
        if status["failover"]["lease_left_ms"].as_u64().is_none_or(|l| l == 0) {
            return None;
        }
        let mut all_synchronized = true;
        for other in self.nodes.iter().filter(|n| n.name != node.name) {
            let peer = status["peers"].as_array()?.iter().find(|p| p["name"] == other.name.as_str())?;
            match peer["status"].as_str() {
                Some("synchronized") if peer["connected"] == true && peer["head"] == status["head"] => {}
                Some("collision") => {
                    self.merge_open_branches(node);
                    all_synchronized = false;
                }
                _ => all_synchronized = false,
            }
        }
        all_synchronized.then_some(active)
    }

    fn merge_open_branches(&self, active: &Process) {
        let branches = active.json("collisions").unwrap_or(Value::Null);
        for branch in branches.as_array().into_iter().flatten().filter(|b| b["status"] == "open") {
            if let Some(id) = branch["id"].as_u64() {
                let merged = active.request(&format!("merge {id}"));
                eprintln!("merged collision branch {id} of {}: {merged:?}", branch["node"]);
            }
        }
    }

    /// Roles, statuses and logs of every process, for a failure message.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!(
                "--- {}: {:?}\n{}\n{}\n",
                n.name,
                n.role(),
                n.request("status").unwrap_or_default(),
                n.log()
            ));
        }
        let witness = std::fs::read_to_string(self.dir.path().join("witness.log")).unwrap_or_default();
        let lines: Vec<&str> = witness.lines().collect();
        out.push_str(&format!("--- witness\n{}\n", lines[lines.len().saturating_sub(30)..].join("\n")));
        out
    }
}

/// One acknowledged publish: `ok SEQ` from `node`.
#[derive(Clone, Debug)]
pub struct Ack {
    pub name: String,
    pub node: usize,
    pub at: Instant,
}

/// Publishes a new host without pause through whichever process takes it, and keeps every
/// acknowledged name.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    pub fn start(nodes: Vec<Arc<Process>>) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let (stop2, paused2, acks2) = (stop.clone(), paused.clone(), acks.clone());
        let thread = std::thread::spawn(move || {
            let (mut at, mut n) = (0, 0u64);
            while !stop2.load(Ordering::SeqCst) {
                if paused2.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                n += 1;
                let name = format!("p-{n}");
                match nodes[at].request(&format!("publish {name}")) {
                    Ok(_) => {
                        acks2.lock().unwrap_or_else(|p| p.into_inner()).push(Ack { name, node: at, at: Instant::now() })
                    }
                    // Read-only, too few Standbys, or gone: try the next process.
                    Err(_) => {
                        at = (at + 1) % nodes.len();
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        });
        Publisher { stop, paused, acks, thread: Some(thread) }
    }

    /// Holds the next publish back (the one in flight completes), or lets them go again.
    pub fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
    }

    /// Whether a node `which` accepts acknowledged a publish after `since`.
    pub fn acked(&self, since: Instant, which: impl Fn(usize) -> bool) -> Option<Instant> {
        let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        acks.iter().rev().take_while(|a| a.at > since).filter(|a| which(a.node)).map(|a| a.at).min()
    }

    pub fn stop(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the publisher does not panic");
        }
        std::mem::take(&mut *self.acks.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Also on a failed assertion: the thread holds the processes, which are killed only once the
/// last holder lets go.
impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `rounds` times: SIGKILL the Active while the publisher runs; another process takes over
/// (with three data nodes it acknowledges a publish; with two, whose `sync_standbys = 1` needs
/// the old Active back first, it holds the lease); the killed process starts again and rejoins
/// as a Standby. Then checks that no acknowledged publish was lost and every node converged.
/// Prints the measured takeover times.
pub fn fail_over_repeatedly(c: &Cluster, rounds: usize, label: &str) {
    c.settle(0);
    let publisher = Publisher::start(c.nodes.clone());
    let mut takeovers = Vec::new();
    for round in 0..rounds {
        let active = c.settle(round);
        let before = Instant::now();
        wait_until("a publish before the kill", TAKEOVER_DEADLINE, || {
            publisher.acked(before, |n| n == active).is_some()
        });
        // With two data nodes no publish can be acknowledged between the kill and the restart,
        // and one sent to the new Active would hold its process for `sync_timeout_ms`, hiding
        // the moment it took over: the publisher waits meanwhile (after the publish in flight).
        let two = c.nodes.len() < 3;
        publisher.pause(two);
        c.nodes[active].kill();
        let killed = Instant::now();
        let took = if !two {
            let mut took = None;
            wait_until("another process to take publishes", TAKEOVER_DEADLINE, || {
                took = publisher.acked(killed, |n| n != active);
                took.is_some()
            });
            took.map(|t| t - killed).unwrap_or_default()
        } else {
            let other = &c.nodes[1 - active];
            wait_until("the other process to hold the lease", TAKEOVER_DEADLINE, || {
                other.json("status").is_some_and(|s| s["failover"]["lease_left_ms"].as_u64().is_some_and(|l| l > 0))
            });
            killed.elapsed()
        };
        eprintln!("{label} round {round}: killed {}, takeover after {took:?}", c.nodes[active].name);
        takeovers.push(took);
        c.nodes[active].restart();
        publisher.pause(false);
        if two {
            wait_until("publishes through the new Active", SETTLE_DEADLINE, || {
                publisher.acked(killed, |n| n != active).is_some()
            });
        }
    }
    let active = c.settle(rounds);
    let acks = publisher.stop();
    let missing: Vec<&str> = acks
        .iter()
        .filter(|a| c.nodes[active].request(&format!("get {}", a.name)).is_err())
        .map(|a| a.name.as_str())
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost on the final Active: {missing:?}\n{}", c.describe());
    let heads: Vec<Value> =
        c.nodes.iter().map(|n| n.json("status").map(|s| s["head"].clone()).unwrap_or(Value::Null)).collect();
    assert!(heads.iter().all(|h| *h == heads[0] && !h.is_null()), "the nodes did not converge: {heads:?}");
    takeovers.sort();
    eprintln!(
        "{label}: {rounds} SIGKILL failovers, {} acknowledged publishes, none lost, {} nodes at head {}; \
         takeover p50 {:?}, max {:?}",
        acks.len(),
        c.nodes.len(),
        heads[0]["seq"],
        takeovers[takeovers.len() / 2],
        takeovers[takeovers.len() - 1]
    );
}
