//! Helpers of the cluster tests: the built `mgha` binary run as an operator would, nodes in temp
//! dirs on free loopback ports, and daemons that a guard kills with SIGKILL when a test ends or
//! fails, so no process outlives its test.

#![allow(dead_code)]

pub mod publisher;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mgha_tests::proxy::FaultProxy;
use serde_json::Value;

/// How long a daemon may take to answer, or a cluster to converge, before a test fails.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn mgha(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mgha"))
        .args(args)
        .env("MGHA_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("mgha runs")
}

pub fn ok(args: &[&str]) -> String {
    let out = mgha(args);
    assert!(out.status.success(), "mgha {args:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn ok_json(args: &[&str]) -> Value {
    let text = ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("mgha {args:?} printed no JSON ({e}): {text}"))
}

/// Runs a command that must fail with `code`; returns its stderr.
pub fn fails(args: &[&str], code: i32) -> String {
    let out = mgha(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "mgha {args:?}: {stderr}");
    stderr
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `n` distinct free loopback addresses (all held until all are chosen), on ports below the
/// kernel's ephemeral range: a port the kernel hands out (`bind(0)`) is also the source port of
/// the next outgoing connection of any process, which can take it between this choice and the
/// daemon's start, so a daemon would fail with "address in use".
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768);
    const LOW: u16 = 10_000;
    let span = u32::from(ephemeral_low.saturating_sub(LOW));
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    if span >= 1_000 {
        // A start that differs between processes and calls, so that concurrent tests seldom try
        // the same ports; each one is bound (held) before it is chosen.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let mut next = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % span;
        for _ in 0..span {
            if held.len() == n {
                break;
            }
            next = (next + 7_919) % span;
            if let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, LOW + next as u16)) {
                held.push(l);
            }
        }
    }
    while held.len() < n {
        held.push(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind"));
    }
    held.iter().map(|l| l.local_addr().expect("addr")).collect()
}

/// A changeset of `n` hosts named `{prefix}-{i}`, as JSON text.
pub fn hosts(prefix: &str, n: usize) -> String {
    let changes: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({"op": "put", "type": "host", "name": format!("{prefix}-{i}"),
                "fields": {"ipv4-address": format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)}})
        })
        .collect();
    serde_json::json!({"message": prefix, "changes": changes}).to_string()
}

/// A test's temp dir, where its nodes and changeset files live.
pub struct Scratch {
    tmp: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { tmp: tempfile::tempdir().expect("tempdir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes a file and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// `mgha init` of a Primary named `name`, with fixed free ports.
    pub fn init(&self, name: &str) -> Node {
        let dir = self.path(name);
        let addrs = free_addrs(2);
        ok(&[
            "init",
            "-d",
            s(&dir),
            "--name",
            name,
            "--admin",
            &addrs[0].to_string(),
            "--listen",
            &addrs[1].to_string(),
        ]);
        Node::new(dir, name)
    }

    /// `mgha join` of a Secondary named `name` through `primary`, with a fresh key.
    pub fn join(&self, primary: &Node, name: &str) -> Node {
        let key = primary.join_key("10m");
        let dir = self.path(name);
        ok(&["join", "-d", s(&dir), "--name", name, "--peer", &primary.listen(), "--key", &key]);
        Node::new(dir, name)
    }

    /// `mgha init` of a Primary whose peers reach it only through a fault proxy: it advertises
    /// the proxy's address.
    pub fn init_behind_proxy(&self, name: &str) -> (Node, FaultProxy) {
        let dir = self.path(name);
        let addrs = free_addrs(2);
        let proxy = FaultProxy::start(addrs[1]).expect("proxy");
        let (admin, listen, advertise) = (addrs[0].to_string(), addrs[1].to_string(), proxy.addr().to_string());
        ok(&["init", "-d", s(&dir), "--name", name, "--admin", &admin, "--listen", &listen, "--advertise", &advertise]);
        (Node::new(dir, name), proxy)
    }

    /// `mgha join` of a Secondary whose peers reach it only through a fault proxy.
    pub fn join_behind_proxy(&self, primary: &Node, name: &str) -> (Node, FaultProxy) {
        let key = primary.join_key("10m");
        let dir = self.path(name);
        let listen = free_addrs(1)[0];
        let proxy = FaultProxy::start(listen).expect("proxy");
        let (listen, advertise) = (listen.to_string(), proxy.addr().to_string());
        let peer = primary.advertised();
        ok(&[
            "join",
            "-d",
            s(&dir),
            "--name",
            name,
            "--peer",
            &peer,
            "--key",
            &key,
            "--listen",
            &listen,
            "--advertise",
            &advertise,
        ]);
        (Node::new(dir, name), proxy)
    }

    /// A running Primary `a` and Secondary `b`, each with fast timers and reached by the other
    /// only through its fault proxy: the pair a test cuts apart to make them diverge.
    pub fn pair_behind_proxies(&self) -> (Node, FaultProxy, Node, FaultProxy) {
        let (mut a, pa) = self.init_behind_proxy("a");
        a.fast_timers();
        a.start();
        let (mut b, pb) = self.join_behind_proxy(&a, "b");
        b.fast_timers();
        b.start();
        (a, pa, b, pb)
    }
}

/// A node's data directory and, while it runs, its daemon.
pub struct Node {
    pub dir: PathBuf,
    pub name: String,
    pub daemon: Option<Daemon>,
}

impl Node {
    pub fn new(dir: PathBuf, name: &str) -> Node {
        Node { dir, name: name.into(), daemon: None }
    }

    pub fn d(&self) -> &str {
        s(&self.dir)
    }

    fn config_value(&self, key: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join("mgha.toml")).expect("config");
        let line = text.lines().find(|l| l.starts_with(&format!("{key} ="))).expect("key in config");
        line.split_once('=').expect("key = value").1.trim().trim_matches('"').to_string()
    }

    /// The peer address (`listen` in mgha.toml).
    pub fn listen(&self) -> String {
        self.config_value("listen")
    }

    /// The address peers dial: `advertise` when set, else `listen`.
    pub fn advertised(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("mgha.toml")).expect("config");
        if text.lines().any(|l| l.starts_with("advertise =")) {
            self.config_value("advertise")
        } else {
            self.listen()
        }
    }

    /// Short heartbeats and timeouts (the node must not run), so that peers notice a loss and
    /// a changeover gives up within a test's patience.
    pub fn fast_timers(&self) {
        self.set_config("heartbeat_ms", "100");
        self.set_config("peer_timeout_ms", "1000");
        self.set_config("changeover_timeout_ms", "1500");
    }

    pub fn admin(&self) -> String {
        self.config_value("admin")
    }

    /// Sets `key = value` in mgha.toml, replacing the key's line or adding one (the node must
    /// not run).
    pub fn put_config(&self, key: &str, value: &str) {
        let path = self.dir.join("mgha.toml");
        let text = std::fs::read_to_string(&path).expect("config");
        if text.lines().any(|l| l.starts_with(&format!("{key} ="))) {
            return self.set_config(key, value);
        }
        std::fs::write(&path, format!("{text}{key} = {value}\n")).expect("write config");
    }

    /// Replaces a `key = value` line of mgha.toml (the node must not run).
    pub fn set_config(&self, key: &str, value: &str) {
        let path = self.dir.join("mgha.toml");
        let text = std::fs::read_to_string(&path).expect("config");
        let mut found = false;
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} =")) {
                    found = true;
                    format!("{key} = {value}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert!(found, "{key} is in {}", path.display());
        std::fs::write(&path, lines.join("\n") + "\n").expect("write config");
    }

    /// `--offline` while this node's daemon is not running: commands then work on its store.
    fn offline(&self) -> Option<&'static str> {
        self.daemon.is_none().then_some("--offline")
    }

    /// A one-time join key from `mgha join-key`.
    pub fn join_key(&self, expires: &str) -> String {
        let mut args = vec!["join-key", "-d", self.d(), "--expires", expires];
        args.extend(self.offline());
        ok(&args).trim().to_string()
    }

    /// `mgha status --json`.
    pub fn status(&self) -> Value {
        let mut args = vec!["status", "-d", self.d(), "--json"];
        args.extend(self.offline());
        ok_json(&args)
    }

    /// The daemon's status over HTTP, or `None` while it does not answer.
    pub fn http_status(&self) -> Option<Value> {
        self.http_json("/v1/status")
    }

    /// The JSON answer of `GET path` on the daemon's admin API, or `None` while it does not
    /// answer or answers other than 200.
    pub fn http_json(&self, path: &str) -> Option<Value> {
        let token = std::fs::read_to_string(self.dir.join("admin.token")).ok()?;
        let mut resp = http_agent()
            .get(format!("http://{}{path}", self.admin()))
            .header("authorization", format!("Bearer {}", token.trim()))
            .call()
            .ok()?;
        if resp.status() != 200 {
            return None;
        }
        resp.body_mut().read_json().ok()
    }

    /// The daemon's Prometheus metrics.
    pub fn metrics(&self) -> String {
        let token = std::fs::read_to_string(self.dir.join("admin.token")).expect("token");
        let agent = ureq::Agent::config_builder().proxy(None).build().new_agent();
        agent
            .get(format!("http://{}/metrics", self.admin()))
            .header("authorization", format!("Bearer {}", token.trim()))
            .call()
            .expect("metrics")
            .body_mut()
            .read_to_string()
            .expect("text")
    }

    /// Spawns `mgha run` without waiting for it to answer.
    pub fn spawn(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.with_extension("log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_mgha"))
            .args(["run", "-d", self.d()])
            .env("MGHA_LOG", "info,openraft=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("daemon starts");
        self.daemon = Some(Daemon { child });
    }

    /// Starts `mgha run` and waits until it answers.
    pub fn start(&mut self) {
        self.spawn();
        let deadline = Instant::now() + WAIT;
        while self.http_status().is_none() {
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(|d| d.child.try_wait()) {
                panic!("{} exited while starting: {status}\n{}", self.name, self.log());
            }
            assert!(Instant::now() < deadline, "{} did not answer in time", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.daemon.take().expect("running").terminate()
    }

    /// SIGKILL, at once.
    pub fn kill(&mut self) {
        drop(self.daemon.take());
    }

    /// Sends `signal` to the running daemon: `STOP` freezes it with its connections open (it
    /// neither answers nor votes), `CONT` resumes it.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let daemon = self.daemon.as_ref().expect("running");
        let pid = rustix::process::Pid::from_raw(daemon.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, signal).expect("signal");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }
}

/// A running daemon, killed with SIGKILL on drop unless it was stopped.
pub struct Daemon {
    pub child: Child,
}

impl Daemon {
    /// SIGTERM, then the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "daemon ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls until `done` holds, failing the test with `what` after [`WAIT`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every follower's head (seq, id, state hash) equals the leader's.
pub fn wait_converged(leader: &Node, followers: &[&Node]) {
    wait_until("the followers to reach the leader's head", || {
        let Some(lead) = leader.http_status() else { return false };
        followers.iter().all(|f| f.http_status().is_some_and(|s| s["head"] == lead["head"]))
    });
}

/// Node `name`, initialized as a cluster's first and started with fast timers.
pub fn start_one(scratch: &Scratch, name: &str) -> Node {
    let mut node = scratch.init(name);
    node.fast_timers();
    node.start();
    node
}

/// Nodes `a` (the Primary) and `b`, started with fast timers, `b` synchronized.
pub fn start_pair(scratch: &Scratch) -> (Node, Node) {
    let a = start_one(scratch, "a");
    let mut b = scratch.join(&a, "b");
    b.fast_timers();
    b.start();
    wait_peers_synchronized(&a, &["b"]);
    (a, b)
}

/// Waits until the leader reports every one of `peers` synchronized at its head.
pub fn wait_peers_synchronized(leader: &Node, peers: &[&str]) {
    wait_until("the peers to be reported synchronized", || {
        leader.http_status().is_some_and(|s| peers_synchronized(&s, peers))
    });
}

/// Whether the status `s` of a leader reports every one of `peers` connected and synchronized
/// at its head.
pub fn peers_synchronized(s: &Value, peers: &[&str]) -> bool {
    peers.iter().all(|name| {
        s["peers"].as_array().into_iter().flatten().any(|p| {
            p["name"] == *name && p["status"] == "synchronized" && p["head"] == s["head"] && p["connected"] == true
        })
    })
}

/// An HTTP client for a daemon's admin API: no proxy, every status an answer (not an error),
/// and no call longer than 10 s.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}
