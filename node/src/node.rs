//! `Node`: one running node, the same for every front end. It owns the tokio runtime that
//! drives synchronization and failover, the engine, the sync runtime and the arbiter; the daemon
//! serves its admin API over it, libmgha wraps it in a C handle, and Python reaches it through
//! libmgha. Creating (`init`, `join`), opening, starting, changing over and shutting down happen
//! here, so no front end assembles a node of its own.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use mgha_core::engine::Engine;
use mgha_sync::cluster::{init_primary, join_secondary};
use mgha_sync::pki::TlsFiles;
use mgha_sync::SyncRuntime;
use tokio::runtime::{Handle, Runtime};

use crate::config::{ConfigError, NodeConfig};
use crate::contract::{JoinKeyBody, MemberRemovedBody, StatusBody};
use crate::domains::Domains;
use crate::error::{Error, Result};

/// How long shutdown waits for the sync runtime's tasks, and then for the runtime's blocking
/// work, before it leaves them behind.
pub const SHUTDOWN_TIMEOUT_MS: u64 = 5_000;

/// Validity of a join key when the caller names none.
pub const JOIN_KEY_TTL_MS_DEFAULT: u64 = 3_600_000;
/// Longest validity of a join key: whoever holds an unused key can join, so keys are short-lived.
pub const JOIN_KEY_TTL_MS_MAX: u64 = 30 * 86_400_000;

/// The threads of a node's tokio runtime. The front end chooses: the daemon takes one worker per
/// core, an embedded engine a few named ones that leave its host's signals alone.
#[derive(Clone, Copy, Debug)]
pub struct RuntimeOptions {
    /// Worker threads; `None`: one per core.
    pub worker_threads: Option<usize>,
    /// The name of every thread of the runtime (shown by `ps -T` and debuggers).
    pub thread_name: &'static str,
    /// Run first on every thread the runtime starts.
    pub on_thread_start: Option<fn()>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions { worker_threads: None, thread_name: "mgha", on_thread_start: None }
    }
}

/// A node: engine, synchronization and failover, with their runtime.
pub struct Node {
    /// `None` once shut down: the store is closed when the last holder lets go.
    engine: RwLock<Option<Arc<Engine>>>,
    config: NodeConfig,
    /// `None` once shut down. Blocking calls hold a read guard for their duration, so shutdown
    /// (which takes it for writing) waits for them.
    runtime: RwLock<Option<Runtime>>,
    handle: Handle,
    /// The peer synchronization runtime, when the node has peers. Shutdown takes it once no
    /// changeover uses it.
    sync: Arc<tokio::sync::RwLock<Option<SyncRuntime>>>,
    peer_addr: OnceLock<SocketAddr>,
    /// Set once the background scrub runs (`scrub.rs`): one per node, however often it starts.
    scrub: OnceLock<()>,
    /// The target of the changeover this node runs now, if any: one at a time.
    changeover: Arc<Mutex<Option<String>>>,
    /// The process that made the node: after `fork()` the child has none of its threads.
    pid: u32,
    /// This server's replicas of the cluster's domains other than the global one.
    domains: Arc<Domains>,
    /// Set once the task that keeps the replicas in line with the registry runs.
    reconciler: OnceLock<()>,
    /// With automatic failover: this server's arbiter backend, which hands every domain its own
    /// arbiter.
    arbiter: OnceLock<crate::arbiter::ServerArbiter>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({:?})", self.config.data_dir)
    }
}

impl Node {
    /// Creates a new cluster: a Primary, Active at epoch 1, with its cluster CA, in the config's
    /// `data_dir` (which must not hold a node yet). Not started: see [`Node::start`].
    pub fn init(mut config: NodeConfig, options: RuntimeOptions) -> Result<Node> {
        mgha_plugin_host::install();
        let runtime = build_runtime(options)?;
        let listen = claim_listen(&config)?;
        config.listen = Some(listen.clone());
        let engine = init_primary(
            config.data_dir()?,
            config.require_name()?,
            config.member_address(&listen),
            config.engine_options(),
        )?;
        Node::with(engine, config, runtime)
    }

    /// Joins the cluster of the node at `peer` (its peer address) with a one-time join `key`,
    /// creating a Secondary, Standby, in the config's `data_dir`. Not started.
    pub fn join(mut config: NodeConfig, peer: &str, key: &str, options: RuntimeOptions) -> Result<Node> {
        mgha_plugin_host::install();
        let runtime = build_runtime(options)?;
        let listen = claim_listen(&config)?;
        config.listen = Some(listen.clone());
        let dir = config.data_dir()?.to_path_buf();
        let name = config.require_name()?.to_string();
        let member = config.member_address(&listen).to_string();
        let (peer, key, engine_options) = (peer.to_string(), key.to_string(), config.engine_options());
        // On a runtime thread: the join talks to the peer, and the runtime's threads are the
        // ones set up for network writes (`RuntimeOptions::on_thread_start`).
        let join =
            runtime.spawn(async move { join_secondary(&dir, &name, &peer, &key, &member, engine_options).await });
        let engine =
            runtime.block_on(join).map_err(|e| mgha_core::Error::Peer(format!("the join task failed: {e}")))??;
        Node::with(engine, config, runtime)
    }

    /// Opens the node in the config's `data_dir`. When the config names the node, the name must
    /// be the store's. Not started.
    pub fn open(config: NodeConfig, options: RuntimeOptions) -> Result<Node> {
        mgha_plugin_host::install();
        let runtime = build_runtime(options)?;
        let engine = mgha_sync::open_engine(config.data_dir()?, config.engine_options())?;
        Node::with(engine, config, runtime)
    }

    fn with(engine: Engine, config: NodeConfig, runtime: Runtime) -> Result<Node> {
        let node = engine.node()?;
        if let Some(name) = config.name.as_deref().filter(|n| *n != node.name) {
            return Err(ConfigError::Invalid {
                path: None,
                key: Some("name".into()),
                line: None,
                message: format!(
                    "the config names node '{name}' but {} holds node '{}'",
                    engine.dir().display(),
                    node.name
                ),
            }
            .into());
        }
        config.check_quorum_voter(&node.name)?;
        let domains = Arc::new(Domains::new(engine.dir(), config.engine_options()));
        Ok(Node {
            domains,
            reconciler: OnceLock::new(),
            arbiter: OnceLock::new(),
            handle: runtime.handle().clone(),
            engine: RwLock::new(Some(Arc::new(engine))),
            config,
            runtime: RwLock::new(Some(runtime)),
            sync: Arc::default(),
            peer_addr: OnceLock::new(),
            scrub: OnceLock::new(),
            changeover: Arc::default(),
            pid: std::process::id(),
        })
    }

    /// Starts synchronization with the peers (when the config has `listen` and the node has
    /// certificates) and, with `failover = "quorum"` or `"etcd"`, the arbiter and the failover
    /// driver. A node restored from a backup has no certificates (backups hold data, not keys):
    /// it serves reads and writes locally, without peers.
    pub fn start(&self) -> Result<()> {
        self.block_on(self.start_async())?
    }

    /// [`Node::start`], from inside the node's own runtime (the daemon).
    pub async fn start_async(&self) -> Result<()> {
        let engine = self.engine()?;
        let node = engine.node()?;
        if self.scrub.set(()).is_ok() {
            crate::scrub::start(&self.handle, &engine, self.config.scrub_interval_ms);
        }
        let mut slot = self.sync.write().await;
        if slot.is_some() {
            return Ok(());
        }
        let Some(sync_config) = self.config.sync_config() else {
            tracing::info!(node = %node.name, role = %node.role, "no 'listen' in the config: running alone, without peers");
            drop(slot);
            return self.start_domains().await;
        };
        let files = TlsFiles::new(engine.dir());
        if !files.node_cert().exists() {
            tracing::info!(node = %node.name, "no certificates (a node restored from a backup): running alone, without peers");
            drop(slot);
            return self.start_domains().await;
        }
        let listen = sync_config.listen.clone();
        let runtime = SyncRuntime::start(engine.clone(), files, sync_config).await.map_err(|source| Error::Start {
            what: format!("peer synchronization on {listen}"),
            key: "listen",
            source: Box::new(source),
        })?;
        match crate::arbiter::start_server(&engine, &self.config).await {
            Ok(Some(arbiter)) => {
                runtime.enable_failover(arbiter.global(), self.config.failover, self.config.failover_timing());
                let _ = self.arbiter.set(arbiter);
                tracing::info!(
                    mode = %self.config.failover,
                    heartbeat_ms = self.config.heartbeat_ms,
                    failover_after_ms = self.config.failover_after_ms,
                    "automatic failover on"
                );
            }
            Ok(None) => {}
            Err(e) => {
                runtime.shutdown().await;
                return Err(e);
            }
        }
        let _ = self.peer_addr.set(runtime.local_addr());
        tracing::info!(
            node = %node.name,
            designation = %node.designation,
            role = %node.role,
            epoch = %mgha_core::roles::machine::epoch::display(node.epoch),
            listen = %runtime.local_addr(),
            sync_standbys = self.config.sync_standbys,
            "peer synchronization running"
        );
        *slot = Some(runtime);
        drop(slot);
        self.start_domains().await
    }

    /// The engine, or an error once the node was shut down.
    pub fn engine(&self) -> Result<Arc<Engine>> {
        self.engine.read().unwrap_or_else(|p| p.into_inner()).clone().ok_or_else(closed)
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The node's runtime, to spawn the front end's own tasks on (the daemon's admin server, the
    /// C ABI's event dispatcher).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The address the node listens on for peers, once started with peers.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr.get().copied()
    }

    /// Whether the node runs synchronization (it has `listen` and certificates, and started).
    pub async fn has_peers(&self) -> bool {
        self.sync.read().await.is_some()
    }

    /// Runs `future` on the node's runtime from a plain thread (a C or Python caller) and waits
    /// for it. Refused from inside an async runtime (it would block a worker), in a process
    /// forked after the node was made (the child has none of its threads), and after shutdown.
    pub fn block_on<F: Future>(&self, future: F) -> Result<F::Output> {
        self.check_process()?;
        if Handle::try_current().is_ok() {
            return Err(Error::Unusable(
                "a blocking node call was made from inside an async runtime; call it from a plain thread".into(),
            ));
        }
        let runtime = self.runtime.read().unwrap_or_else(|p| p.into_inner());
        let runtime = runtime.as_ref().ok_or_else(closed)?;
        Ok(runtime.block_on(future))
    }

    /// Refuses a call in a child process forked after the node was made: its runtime's threads
    /// exist only in the parent, so nothing it acknowledged would be replicated or even waited for.
    pub fn check_process(&self) -> Result<()> {
        if std::process::id() != self.pid {
            return Err(Error::Unusable(
                "this node was opened in the parent of this forked process; a child may only exec (or open \
                 a node of its own)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// A planned changeover to the member named `target` (asked of any node: a Standby forwards
    /// it to the Active). One at a time per node. Returns the new epoch, or a typed refusal
    /// within `changeover_timeout_ms` (plus the forwarding margin on a Standby): the retry and
    /// outcome rules are the core's [`SyncRuntime::changeover`].
    pub async fn changeover(&self, target: &str) -> Result<u64> {
        let _slot = self.changeover_slot(target)?;
        let sync = self.sync.read().await;
        let runtime = sync.as_ref().ok_or_else(no_peers)?;
        Ok(runtime.changeover(target).await?)
    }

    /// A forced changeover: this Standby becomes the Active at once. Returns the new epoch.
    pub async fn force_changeover(&self) -> Result<u64> {
        let _slot = self.changeover_slot("this node")?;
        let sync = self.sync.clone().read_owned().await;
        if sync.is_none() {
            return Err(no_peers());
        }
        // A durable write, and with an arbiter a wait on it: off the async workers.
        let forced = tokio::task::spawn_blocking(move || sync.as_ref().map(SyncRuntime::force_changeover));
        let epoch = forced.await.map_err(|e| Error::Unusable(format!("the changeover task failed: {e}")))?;
        Ok(epoch.ok_or_else(no_peers)??)
    }

    /// Takes the changeover slot for a changeover to `target`; while another holds it, busy,
    /// naming that one's target. The slot frees itself when the guard drops.
    fn changeover_slot(&self, target: &str) -> Result<ChangeoverSlot> {
        let mut slot = self.changeover.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = slot.as_ref() {
            return Err(mgha_core::Error::ChangeoverInProgress { target: running.clone() }.into());
        }
        *slot = Some(target.to_string());
        Ok(ChangeoverSlot(self.changeover.clone()))
    }

    /// The node's status: the JSON contract every front end returns.
    pub fn status(&self) -> Result<StatusBody> {
        self.domain_status(crate::domains::GLOBAL_DOMAIN)
    }

    /// Issues a one-time join key valid for `ttl_ms` (at most [`JOIN_KEY_TTL_MS_MAX`]). Only the
    /// Primary, which holds the cluster CA, issues keys.
    pub fn join_key(&self, ttl_ms: u64) -> Result<JoinKeyBody> {
        Ok(issue_join_key(self.engine()?.as_ref(), ttl_ms)?)
    }

    /// Removes the member named `name` from the cluster, on the Active (never the Active
    /// itself): its certificate is refused from then on by every node, and its name is free for
    /// a node that joins with a new key. A node running without peers records the removal, which
    /// reaches the others once it runs with them.
    pub async fn remove_member(&self, name: &str) -> Result<MemberRemovedBody> {
        let sync = self.sync.read().await;
        let removed = match sync.as_ref() {
            Some(runtime) => runtime.remove_member(name).await?,
            None => remove_member(self.engine()?.as_ref(), name)?,
        };
        Ok(MemberRemovedBody { name: removed.name, node_id: removed.node_id.to_string() })
    }

    /// Stops everything the node started (the failover driver, which lets go of the arbiter; the
    /// peer listener and connections; every other task of its runtime) and returns once they
    /// have stopped; then lets go of the store. Waits for blocking calls in progress. Call it from
    /// a plain thread; a second call does nothing. In a forked child it only lets go.
    pub fn shutdown(&self) {
        if self.check_process().is_err() {
            // The runtime's threads live in the parent: joining them here would hang.
            if let Some(runtime) = self.runtime.write().unwrap_or_else(|p| p.into_inner()).take() {
                std::mem::forget(runtime);
            }
            return;
        }
        let runtime = self.runtime.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(runtime) = runtime {
            let timeout = Duration::from_millis(SHUTDOWN_TIMEOUT_MS);
            let sync = runtime.block_on(async { self.sync.write().await.take() });
            if let Some(sync) = sync {
                // Inside the runtime: the timer needs it.
                if runtime.block_on(async move { tokio::time::timeout(timeout, sync.shutdown()).await }).is_err() {
                    tracing::warn!(timeout_ms = SHUTDOWN_TIMEOUT_MS, "peer synchronization did not stop in time");
                }
            }
            runtime.shutdown_timeout(timeout);
            tracing::info!("node stopped");
        }
        self.domains.clear();
        self.engine.write().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if Handle::try_current().is_ok() {
            // Dropped on an async worker: a runtime cannot be shut down there; let it go.
            if let Some(runtime) = self.runtime.write().unwrap_or_else(|p| p.into_inner()).take() {
                runtime.shutdown_background();
            }
            return;
        }
        self.shutdown();
    }
}

mod domains;
pub use domains::{DOMAIN_BACKUPS_DIR, DOMAIN_REPLICAS_DEFAULT};

/// Holds a node's changeover slot; frees it when dropped.
struct ChangeoverSlot(Arc<Mutex<Option<String>>>);

impl Drop for ChangeoverSlot {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Issues a join key valid for `ttl_ms` on the node of `engine` (it must hold the cluster CA):
/// the node's rule for every front end, the CLI on a stopped node included.
pub fn issue_join_key(engine: &Engine, ttl_ms: u64) -> mgha_core::Result<JoinKeyBody> {
    if ttl_ms == 0 || ttl_ms > JOIN_KEY_TTL_MS_MAX {
        return Err(mgha_core::Error::InvalidArgument(format!(
            "the key's validity, {ttl_ms} ms, is outside 1..={JOIN_KEY_TTL_MS_MAX} (30 days)"
        )));
    }
    let issued_ms = mgha_core::now_ms();
    let key = mgha_sync::cluster::issue_join_key(engine, ttl_ms)?;
    Ok(JoinKeyBody { key: key.to_string(), expires_ms: ttl_ms, expires_at_ms: issued_ms.saturating_add(ttl_ms) })
}

/// Removes a member on the node of `engine` while no peer runtime runs (a stopped node): the
/// node's rule for every front end. See [`Node::remove_member`].
pub fn remove_member(engine: &Engine, name: &str) -> mgha_core::Result<mgha_sync::wire::Member> {
    mgha_sync::membership::remove_member(engine, name)
}

fn closed() -> Error {
    Error::Closed
}

/// The refusal of a role change on a node that runs without peers (no `listen` in its config,
/// or no certificates).
fn no_peers() -> Error {
    mgha_core::Error::Changeover(mgha_core::ChangeoverError::NoPeers).into()
}

fn build_runtime(options: RuntimeOptions) -> Result<Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name(options.thread_name);
    if let Some(n) = options.worker_threads {
        builder.worker_threads(n.max(1));
    }
    if let Some(f) = options.on_thread_start {
        builder.on_thread_start(f);
    }
    Ok(builder.build()?)
}

/// The peer address a new node will listen on, bound once to refuse a taken port before a node
/// is created for it, with port 0 resolved to the port it got: members keep dialing the address
/// they first heard, so a node must never be known as `HOST:0`.
fn claim_listen(config: &NodeConfig) -> Result<String> {
    let listen = config.listen.as_deref().ok_or_else(|| ConfigError::Invalid {
        path: None,
        key: Some("listen".into()),
        line: None,
        message: "a new node needs a peer address".into(),
    })?;
    let bound = std::net::TcpListener::bind(listen).and_then(|l| l.local_addr()).map_err(|source| {
        mgha_core::Error::Listen { what: "peers (config key 'listen')", addr: listen.to_owned(), source }
    })?;
    Ok(bound.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgha_core::engine::EngineOptions;

    #[test]
    fn keys_are_issued_on_the_primary_only_and_within_limits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine =
            mgha_sync::cluster::init_primary(dir.path(), "a", "127.0.0.1:1", EngineOptions::default()).expect("init");
        let body = issue_join_key(&engine, 60_000).expect("issued");
        assert!(body.key.starts_with("mgha1."), "{}", body.key);
        assert_eq!(body.expires_ms, 60_000);
        assert!(body.expires_at_ms > mgha_core::now_ms());
        assert!(issue_join_key(&engine, 0).is_err());
        assert!(issue_join_key(&engine, JOIN_KEY_TTL_MS_MAX + 1).is_err());

        let plain = tempfile::tempdir().expect("tempdir");
        let node = mgha_core::NodeState::new_primary("p");
        let engine = mgha_sync::create_engine(plain.path(), &node, EngineOptions::default()).expect("create");
        let e = issue_join_key(&engine, 60_000).expect_err("no CA here");
        assert!(e.to_string().contains("cluster CA"), "{e}");
    }
}
