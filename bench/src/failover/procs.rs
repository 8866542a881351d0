//! The processes the failover figures drive: child processes of this binary (`mgha init`,
//! `join`, `run`, `witness`) and an etcd, their admin API, the two-node cluster with its arbiter,
//! and the publisher that runs through every series.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mgha_sync::failover::FailoverMode;
use serde_json::{json, Value};

use super::*;
use mgha_node::{token, NodeConfig};
use mgha_tests::etcd::Etcd;
use mgha_tests::process::ChildGuard;

/// An answer of the admin API that is not a success. Callers branch on its `code` (the API's
/// error code), never on the message.
#[derive(Debug)]
pub(crate) struct Refused {
    what: String,
    pub status: u16,
    pub code: String,
    pub answer: Value,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} {}", self.what, self.status, self.answer)
    }
}

impl std::error::Error for Refused {}

/// The API error code of `e`, when the API refused the request (not when it did not answer).
pub(crate) fn refused_code(e: &anyhow::Error) -> Option<&str> {
    e.downcast_ref::<Refused>().map(|r| r.code.as_str())
}

/// Runs `mgha ARGS` to completion; its standard output.
pub(crate) fn mgha(exe: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(exe)
        .args(args)
        .env("MGHA_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running mgha {args:?}"))?;
    if !out.status.success() {
        bail!("mgha {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().with_context(|| format!("{} is not UTF-8", p.display()))
}

/// `n` distinct free loopback addresses (all held until all are chosen).
pub(crate) fn free_addrs(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let held = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    Ok(held.iter().map(|l| l.local_addr()).collect::<std::io::Result<Vec<_>>>()?)
}

/// The last lines of a log file, for an error message.
pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Polls `done` every 20 ms until it holds; an error naming `what` after [`WAIT`].
pub(super) fn wait_until(what: &str, mut done: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while !done()? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Most clients that publish through one [`Api`] (and its clones) at once.
const API_CLIENTS_MAX: usize = 64;

/// A node's admin API, as the publisher and the measurement reach it.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) name: String,
    pub(super) base: String,
    pub(super) token: String,
    pub(super) agent: ureq::Agent,
}

impl Api {
    pub(crate) fn of(name: &str, dir: &Path) -> anyhow::Result<Api> {
        let config = NodeConfig::load(dir)?;
        let token = token::read(dir)?;
        // A synchronous publish waits up to `sync_timeout_ms` (5 s) for a standby. Clones of the
        // agent share its pool: it keeps one idle connection per concurrent client, so that
        // every client's requests reuse one keep-alive connection (the default keeps 3, and the
        // others then opened a new connection per request).
        let agent = ureq::Agent::config_builder()
            .proxy(None)
            .max_idle_connections(API_CLIENTS_MAX)
            .max_idle_connections_per_host(API_CLIENTS_MAX)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        Ok(Api { name: name.into(), base: format!("http://{}", config.require_admin()?), token, agent })
    }

    /// POSTs a JSON body; the JSON answer, or a [`Refused`] error when the API refuses it.
    pub(crate) fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let mut resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .send_json(body)
            .with_context(|| format!("POST {path} on {}", self.name))?;
        let status = resp.status();
        let answer: Value = resp.body_mut().with_config().limit(1 << 30).read_json().unwrap_or(Value::Null);
        if !status.is_success() {
            let code = answer["error"]["code"].as_str().unwrap_or("unreadable").to_string();
            return Err(Refused {
                what: format!("POST {path} on {}", self.name),
                status: status.as_u16(),
                code,
                answer,
            }
            .into());
        }
        Ok(answer)
    }

    pub(crate) fn get(&self, path: &str) -> anyhow::Result<Value> {
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .call()
            .with_context(|| format!("GET {path} on {}", self.name))?;
        let status = resp.status();
        let body: Value = resp.body_mut().with_config().limit(1 << 30).read_json().unwrap_or(Value::Null);
        if status != 200 {
            bail!("GET {path} on {}: {status} {body}", self.name);
        }
        Ok(body)
    }

    /// `GET /v1/status`, or None while the daemon does not answer.
    pub(crate) fn status(&self) -> Option<Value> {
        self.get("/v1/status").ok()
    }

    /// How long the node's lease still runs, when it answers and is Active.
    pub(super) fn lease_left(&self) -> Option<u64> {
        self.status()?["failover"]["lease_left_ms"].as_u64()
    }

    /// Publishes one host; `Ok` once acknowledged, else the error code (or "unreachable").
    pub(crate) fn publish_host(&self, name: &str, i: usize) -> Result<(), String> {
        let body = json!({"changes": [{"op": "put", "type": "host", "name": name,
            "fields": {"ipv4-address": format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)}}]});
        let mut resp = match self
            .agent
            .post(format!("{}/v1/publish", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .send_json(body)
        {
            Ok(r) => r,
            Err(_) => return Err("unreachable".into()),
        };
        if resp.status() == 201 {
            // Read to its end: an answer left unread keeps its connection out of the pool, and
            // the next publish would open (and the daemon accept) a new one.
            return resp.body_mut().read_to_vec().map(drop).map_err(|_| "unreadable".to_string());
        }
        let err: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        Err(err["error"]["code"].as_str().unwrap_or("unreadable").to_string())
    }

    /// The names of every host on the node.
    pub(super) fn hosts(&self) -> anyhow::Result<HashSet<String>> {
        let list = self.get(&format!("/v1/objects?type=host&limit={LIST_MAX}"))?;
        let objects = list["objects"].as_array().context("no objects in the listing")?;
        if objects.len() >= LIST_MAX {
            bail!("{} holds {LIST_MAX} hosts or more: the listing is cut", self.name);
        }
        Ok(objects.iter().filter_map(|o| o["name"].as_str().map(String::from)).collect())
    }

    /// Merges every open collision branch; how many branches and revisions.
    pub(super) fn merge_open_branches(&self) -> anyhow::Result<(usize, usize)> {
        let list = self.get("/v1/collisions")?;
        let (mut branches, mut revisions) = (0, 0);
        for b in list["collisions"].as_array().into_iter().flatten().filter(|b| b["status"] == "open") {
            let id = b["id"].as_u64().context("a branch without an id")?;
            let mut resp = self
                .agent
                .post(format!("{}/v1/collisions/{id}/resolve", self.base))
                .header("authorization", format!("Bearer {}", self.token))
                .send_json(json!({"merge": {}}))
                .with_context(|| format!("resolving branch {id} on {}", self.name))?;
            if resp.status() != 200 {
                let body: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
                bail!("merging branch {id} on {}: {body}", self.name);
            }
            branches += 1;
            revisions += b["revisions"].as_u64().unwrap_or(0) as usize;
        }
        Ok((branches, revisions))
    }
}

/// A data node: its directory, its API and, while it runs, its daemon.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(super) dir: PathBuf,
    pub(super) exe: PathBuf,
    pub(crate) api: Api,
    pub(super) daemon: Option<ChildGuard>,
    /// When the running daemon was started.
    pub(super) started: Option<Instant>,
}

impl Node {
    pub(crate) fn new(exe: &Path, dir: PathBuf, name: &str) -> anyhow::Result<Node> {
        let api = Api::of(name, &dir)?;
        Ok(Node { name: name.into(), dir, exe: exe.to_path_buf(), api, daemon: None, started: None })
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.with_extension("log")
    }

    /// Starts `mgha run` and waits until it answers.
    pub(crate) fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let child = Command::new(&self.exe)
            .args(["run", "-d", path_str(&self.dir)?])
            .env("MGHA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.started = Some(Instant::now());
        let daemon = self.daemon.insert(ChildGuard::new(child));
        let deadline = Instant::now() + WAIT;
        while self.api.status().is_none() {
            if let Some(status) = daemon.exited() {
                bail!("{} exited while starting ({status}):\n{}", self.name, tail(&self.log_path()));
            }
            if Instant::now() > deadline {
                bail!("{} did not answer within {WAIT:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The process id of the running daemon.
    pub(crate) fn pid(&mut self) -> Option<u32> {
        self.daemon.as_mut().map(|d| d.child().id())
    }

    /// How long the daemon has been running (zero when it does not).
    pub(super) fn up_for(&self) -> Duration {
        self.started.filter(|_| self.daemon.is_some()).map_or(Duration::ZERO, |t| t.elapsed())
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
        }
    }

    pub(crate) fn terminate(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.terminate(Duration::from_secs(20));
        }
    }

    /// Changes the node's mgha.toml (the node must not run).
    pub(crate) fn configure(&self, change: impl FnOnce(&mut NodeConfig)) -> anyhow::Result<()> {
        let mut config = NodeConfig::load(&self.dir)?;
        change(&mut config);
        std::fs::write(NodeConfig::path(&self.dir), config.to_toml()?)
            .with_context(|| format!("writing {}", NodeConfig::path(&self.dir).display()))
    }

    pub(crate) fn listen(&self) -> anyhow::Result<String> {
        NodeConfig::load(&self.dir)?.listen.context("the node has no 'listen'")
    }

    pub(crate) fn join_key(&self) -> anyhow::Result<String> {
        Ok(mgha(&self.exe, &["join-key", "-d", path_str(&self.dir)?, "--expires", "10m"])?.trim().to_string())
    }
}

/// Two data nodes and their arbiter; dropped in field order, so the daemons go first.
pub(super) struct Cluster {
    pub(super) nodes: Vec<Node>,
    pub(super) witness: Option<ChildGuard>,
    pub(super) etcd: Option<Etcd>,
    pub(super) dir: PathBuf,
}

impl Cluster {
    /// `a` (the Primary, Active) and `b` (Standby), configured for `mode`, both running, `b`
    /// synchronized and `a` holding the arbiter's lease.
    pub(super) fn start(ctx: &Ctx, dir: &Path, mode: Mode, sync_standbys: usize) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let exe = &ctx.exe;
        let a_dir = dir.join("a");
        mgha(exe, &["init", "-d", path_str(&a_dir)?, "--name", "a"])?;
        let mut a = Node::new(exe, a_dir, "a")?;
        a.start()?;
        let b_dir = dir.join("b");
        let key = a.join_key()?;
        mgha(exe, &["join", "-d", path_str(&b_dir)?, "--name", "b", "--peer", &a.listen()?, "--key", &key])?;
        let b = Node::new(exe, b_dir, "b")?;
        let mut c = Cluster { nodes: Vec::new(), witness: None, etcd: None, dir: dir.to_path_buf() };
        let timing = ctx.timing;
        let arbiter: Box<dyn Fn(&mut NodeConfig)> = match mode {
            Mode::Etcd => {
                let etcd = Etcd::launch(&ctx.etcd_bin, &dir.join("etcd")).context("starting etcd")?;
                let endpoint = format!("http://{}", etcd.client);
                c.etcd = Some(etcd);
                Box::new(move |cfg: &mut NodeConfig| {
                    cfg.failover = FailoverMode::Etcd;
                    cfg.etcd_endpoints = vec![endpoint.clone()];
                })
            }
            Mode::Quorum => {
                let q = free_addrs(3)?;
                let members = vec![format!("a={}", q[0]), format!("b={}", q[1]), format!("witness={}", q[2])];
                let key = a.join_key()?;
                let wdir = dir.join("witness");
                let log = std::fs::File::create(dir.join("witness.log"))?;
                let child = Command::new(exe)
                    .args(["witness", "-d", path_str(&wdir)?, "--listen", &q[2].to_string()])
                    .args(["--members", &members.join(",")])
                    .args(["--join", &a.listen()?, "--key", &key])
                    .args(["--heartbeat-ms", &timing.heartbeat_ms.to_string()])
                    .args(["--failover-after-ms", &timing.failover_after_ms.to_string()])
                    .env("MGHA_LOG", "info")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .context("starting the witness")?;
                let witness = c.witness.insert(ChildGuard::new(child));
                // The witness enrolls with `a` (which must run for that), then waits for voters.
                wait_until("the witness to enroll", || {
                    if let Some(status) = witness.exited() {
                        bail!("the witness exited with {status}:\n{}", tail(&dir.join("witness.log")));
                    }
                    Ok(wdir.join("tls").join("node.pem").exists())
                })?;
                Box::new(move |cfg: &mut NodeConfig| {
                    cfg.failover = FailoverMode::Quorum;
                    let me = if cfg.name.as_deref() == Some("a") { q[0] } else { q[1] };
                    cfg.quorum_listen = Some(me.to_string());
                    cfg.quorum_members = members.clone();
                })
            }
        };
        a.terminate();
        for n in [&a, &b] {
            n.configure(|cfg| {
                arbiter(cfg);
                cfg.heartbeat_ms = timing.heartbeat_ms;
                cfg.failover_after_ms = timing.failover_after_ms;
                cfg.max_lag_revisions = timing.max_lag_revisions;
                cfg.sync_standbys = sync_standbys;
            })?;
        }
        c.nodes = vec![a, b];
        for i in 0..2 {
            c.nodes[i].start().with_context(|| c.logs())?;
        }
        wait_until("a to hold the arbiter's lease", || Ok(c.nodes[0].api.lease_left().is_some_and(|l| l > 0)))
            .with_context(|| c.logs())?;
        c.settle(&mut Phase::default())?;
        Ok(c)
    }

    /// The last lines each process logged, for an error message.
    pub(super) fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!("--- {}\n{}\n", n.name, tail(&n.log_path())));
        }
        if self.witness.is_some() {
            out.push_str(&format!("--- witness\n{}\n", tail(&self.dir.join("witness.log"))));
        }
        if self.etcd.is_some() {
            out.push_str(&format!("--- etcd\n{}\n", tail(&self.dir.join("etcd").join("etcd.log"))));
        }
        out
    }

    /// Waits until exactly one node is Active holding its lease and the other a connected
    /// Standby synchronized at its head, merging the collision branches the Active keeps on the
    /// way (what a killed Active published that the other never received). The Active's index.
    pub(super) fn settle(&self, out: &mut Phase) -> anyhow::Result<usize> {
        let started = Instant::now();
        let mut last_error = None;
        loop {
            let status: Vec<Option<Value>> = self.nodes.iter().map(|n| n.api.status()).collect();
            let role = |i: usize| status[i].as_ref().and_then(|s| s["node"]["role"].as_str().map(String::from));
            let roles = [role(0), role(1)];
            let actives: Vec<usize> = (0..2).filter(|&i| roles[i].as_deref() == Some("active")).collect();
            if let (&[x], Some(s)) = (actives.as_slice(), actives.first().and_then(|&x| status[x].as_ref())) {
                let other = &self.nodes[1 - x].name;
                let peer = s["peers"].as_array().into_iter().flatten().find(|p| p["name"] == other.as_str());
                let synchronized = peer
                    .is_some_and(|p| p["status"] == "synchronized" && p["connected"] == true && p["head"] == s["head"]);
                let leased = s["failover"]["lease_left_ms"].as_u64().is_some_and(|l| l > 0);
                if synchronized && leased && roles[1 - x].as_deref() == Some("standby") {
                    return Ok(x);
                }
                if s["collisions_open"].as_u64().unwrap_or(0) > 0 {
                    match self.nodes[x].api.merge_open_branches() {
                        Ok((b, r)) => {
                            out.branches += b;
                            out.branch_revisions += r;
                        }
                        Err(e) => last_error = Some(e),
                    }
                }
            }
            if started.elapsed() > WAIT {
                let why = last_error.map(|e| format!(" (last error: {e:#})")).unwrap_or_default();
                bail!("no Active with a synchronized Standby within {WAIT:?}: roles {roles:?}{why}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Publishes one host at a time on whichever node takes it, trying the other when one is
/// read-only, busy or down; remembers every acknowledged name.
pub(super) struct Publisher {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) acked: Arc<Mutex<Vec<String>>>,
    pub(super) failed: Arc<Mutex<Option<String>>>,
    pub(super) thread: JoinHandle<()>,
}

impl Publisher {
    pub(super) fn start(nodes: Vec<Api>) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(None));
        let (stopped, acks, fail) = (stop.clone(), acked.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            // A fresh name for every attempt: an attempt cut off by a kill may have committed
            // without an answer, and must not turn the retry into a publish of nothing.
            let mut i = 0;
            while !stopped.load(Ordering::SeqCst) {
                let mut done = false;
                for n in &nodes {
                    i += 1;
                    let name = format!("pub-{i}");
                    match n.publish_host(&name, i) {
                        Ok(()) => {
                            lock(&acks).push(name);
                            done = true;
                            break;
                        }
                        Err(code) if RETRIED.contains(&code.as_str()) => {}
                        Err(code) => {
                            *lock(&fail) = Some(format!("publishing {name} on {}: unexpected error {code}", n.name));
                            return;
                        }
                    }
                }
                std::thread::sleep(if done { PUBLISH_EVERY } else { Duration::from_millis(5) });
            }
        });
        Publisher { stop, acked, failed, thread }
    }

    /// The names acknowledged so far.
    pub(super) fn acked(&self) -> Vec<String> {
        lock(&self.acked).clone()
    }

    /// Waits for one more acknowledged publish.
    pub(super) fn wait_for_more(&self) -> anyhow::Result<()> {
        let before = lock(&self.acked).len();
        wait_until("the publisher to get a publish acknowledged", || {
            if let Some(e) = lock(&self.failed).clone() {
                bail!("{e}");
            }
            Ok(lock(&self.acked).len() > before)
        })
    }

    /// Stops publishing; the acknowledged names.
    pub(super) fn stop(self) -> anyhow::Result<Vec<String>> {
        self.stop.store(true, Ordering::SeqCst);
        if self.thread.join().is_err() {
            bail!("the publisher panicked");
        }
        if let Some(e) = lock(&self.failed).clone() {
            bail!("{e}");
        }
        let acked = lock(&self.acked).clone();
        Ok(acked)
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
