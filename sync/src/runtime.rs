//! The tokio runtime of synchronization: the peer listener, the dial loops of a Standby, and
//! the wiring between connections and the engine. Decisions live in [`super::plan`]; this file
//! only moves bytes and calls the engine.

use crate::EngineExt;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use super::changeover::FORWARD_MARGIN_MS;
use super::compress::Compressed;
use super::conn::{Counted, Registry};
use super::membership::{is_removed, member_records, members, merge_members, set_own_record};
use super::pki::{node_id_of, TlsFiles};
use super::plan::SyncStatus;
use super::tls::{member_server_name, MemberTls};
use super::wire::{read_msg_max, write_msg, Hello, Member, Msg, PROTOCOL_VERSION};
use super::wire::{FRAME_BYTES_MAX, UNAUTHENTICATED_FRAME_BYTES_MAX};
use super::{active, changeover, join, standby};
use crate::failover::{Arbiter, FailoverMode, FailoverTiming};
use mgha_core::engine::Engine;
use mgha_core::error::{Error, Result};
use mgha_core::model::Uid;
use mgha_core::node::Role;
use mgha_core::roles::{Action as RoleAction, Event as RoleEvent};

/// Timing and addresses of the sync runtime.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Where this node listens for peers (`HOST:PORT`).
    pub listen: String,
    /// The address other members are told to dial, when it differs from `listen` (NAT, a proxy).
    pub advertise: Option<String>,
    /// The Active pings each Standby this often.
    pub heartbeat_ms: u64,
    /// A connection with no frame for this long is dead.
    pub peer_timeout_ms: u64,
    /// Pause between dial attempts of a Standby.
    pub reconnect_ms: u64,
    /// TLS handshake and hello must finish within this.
    pub handshake_timeout_ms: u64,
    /// Most join requests served per minute.
    pub joins_per_minute: u32,
    /// How long a planned changeover may take before it is called off.
    pub changeover_timeout_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            listen: "127.0.0.1:0".into(),
            advertise: None,
            heartbeat_ms: 1000,
            peer_timeout_ms: 5000,
            reconnect_ms: 300,
            handshake_timeout_ms: 10_000,
            joins_per_minute: 30,
            changeover_timeout_ms: 5000,
        }
    }
}

/// What every connection task needs.
pub(crate) struct Ctx {
    pub engine: Arc<Engine>,
    pub tls: MemberTls,
    pub files: TlsFiles,
    pub cfg: SyncConfig,
    pub shutdown: watch::Receiver<bool>,
    pub joins: Mutex<join::RateLimit>,
    /// Members that already have a dial loop.
    dialing: Mutex<HashSet<Uid>>,
    /// The dial loops and incoming connections started so far (finished ones are pruned), so
    /// that shutdown can end those still running: none may dial again or follow after it.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The failover driver, which shutdown waits for: it lets go of the arbiter's hold.
    driver: Mutex<Option<JoinHandle<()>>>,
    pub advertised: String,
    /// Command channels of live connection tasks.
    pub registry: Registry,
    /// Set by the connection task that saw the target of a planned changeover take over; wakes
    /// the changeover that waits for it.
    pub promoted: watch::Sender<Option<(Uid, u64)>>,
    /// The one changeover this node runs at a time.
    pub changeover: changeover::Slot,
    /// The Active this Standby follows right now.
    pub upstream: Mutex<Option<Uid>>,
    /// With automatic failover: the arbiter that changeovers go through, and its timing.
    pub arbiter: Mutex<Option<(Arc<dyn Arbiter>, FailoverTiming)>>,
    /// Members whose last hello said their store is damaged: no changeover goes to them.
    pub damaged: Mutex<HashSet<Uid>>,
    /// Wakes the dial loops that wait: an Active we do not follow has just dialed us.
    pub wake_dialers: tokio::sync::Notify,
    /// Bumped when this node changes the member list (a removal): an Active then contacts
    /// every member once more, even those it serves, so that the new list reaches them with
    /// the hellos (a session in progress exchanges no hellos).
    pub members_version: std::sync::atomic::AtomicU64,
}

impl Ctx {
    /// Spawns a connection or dial task that shutdown ends.
    fn spawn_tracked(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task).abort_handle();
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    /// Records whether `peer` said its store is damaged.
    pub fn set_damaged(&self, peer: Uid, damaged: bool) {
        let mut set = self.damaged.lock().unwrap_or_else(|p| p.into_inner());
        if damaged {
            set.insert(peer);
        } else {
            set.remove(&peer);
        }
    }

    /// Whether `peer`'s last word was that its store is damaged.
    pub fn is_damaged(&self, peer: Uid) -> bool {
        self.damaged.lock().unwrap_or_else(|p| p.into_inner()).contains(&peer)
    }

    pub fn changeover_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.changeover_timeout_ms.max(1))
    }
}

/// A running sync runtime; dropping it without [`SyncRuntime::shutdown`] leaves tasks running
/// until the tokio runtime ends.
pub struct SyncRuntime {
    shutdown: watch::Sender<bool>,
    local_addr: SocketAddr,
    listener_task: JoinHandle<()>,
    ctx: Arc<Ctx>,
}

impl std::fmt::Debug for SyncRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SyncRuntime({})", self.local_addr)
    }
}

impl SyncRuntime {
    /// Binds the peer listener and starts serving and following.
    /// The engine must have been opened by [`crate::open_engine`] or [`crate::create_engine`].
    pub async fn start(engine: Arc<Engine>, files: TlsFiles, cfg: SyncConfig) -> Result<SyncRuntime> {
        if engine.try_sync().is_none() {
            return Err(Error::InvalidArgument(
                "the engine was opened without replication state (open it with mgha_sync::open_engine)".into(),
            ));
        }
        let tls = MemberTls::load(&files)?;
        let listener = TcpListener::bind(&cfg.listen).await.map_err(|source| Error::Listen {
            what: "peers",
            addr: cfg.listen.clone(),
            source,
        })?;
        let local_addr = listener.local_addr()?;
        let advertised = cfg.advertise.clone().unwrap_or_else(|| local_addr.to_string());
        let node = engine.node()?;
        let me = Member::new(node.node_id, &node.name, &advertised, node.designation, node.tag);
        set_own_record(&engine.store(), me)?;
        for m in members(&engine.store())? {
            if m.node_id != node.node_id {
                engine.sync().update_peer(m.node_id, |p| {
                    p.name = m.name.clone();
                    p.listen = m.listen.clone();
                    p.designation = m.designation;
                    p.status = SyncStatus::Unreachable;
                });
            }
        }
        let (tx, rx) = watch::channel(false);
        let ctx = Arc::new(Ctx {
            engine,
            tls,
            files,
            joins: Mutex::new(join::RateLimit::new(cfg.joins_per_minute)),
            cfg,
            shutdown: rx,
            dialing: Mutex::new(HashSet::new()),
            wake_dialers: tokio::sync::Notify::new(),
            members_version: Default::default(),
            tasks: Mutex::new(Vec::new()),
            driver: Mutex::new(None),
            advertised,
            registry: Registry::default(),
            promoted: watch::channel(None).0,
            changeover: changeover::Slot::default(),
            upstream: Mutex::new(None),
            arbiter: Mutex::new(None),
            damaged: Mutex::new(HashSet::new()),
        });
        ensure_dialers(&ctx)?;
        let listener_task = tokio::spawn(accept_loop(ctx.clone(), listener));
        tracing::info!(%local_addr, "listening for peers");
        Ok(SyncRuntime { shutdown: tx, local_addr, listener_task, ctx })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A planned changeover to the member named `target`, asked of any node (a Standby forwards
    /// it to the Active it follows, waiting for one while it follows none). Returns the target's
    /// new epoch, or a [`mgha_core::ChangeoverError`] saying why not, within `changeover_timeout_ms`
    /// (plus [`FORWARD_MARGIN_MS`] on a Standby). One at a time per node: another call meanwhile
    /// is refused with `InProgress`. Dropping the future does not stop the changeover, which
    /// runs to its end in a task of its own.
    pub async fn changeover(&self, target: &str) -> Result<u64> {
        changeover::planned(&self.ctx, target).await
    }

    /// Turns on automatic failover: from now on the Active publishes only under the arbiter's
    /// lease, a Standby takes over when the Active's hold goes stale, and planned changeovers
    /// hand the hold over through the arbiter. Call it right after [`SyncRuntime::start`],
    /// before serving publishes.
    pub fn enable_failover(&self, arbiter: Arc<dyn Arbiter>, mode: FailoverMode, timing: FailoverTiming) {
        self.ctx.engine.set_arbitrated();
        *self.ctx.arbiter.lock().unwrap_or_else(|p| p.into_inner()) = Some((arbiter.clone(), timing));
        let driver = tokio::spawn(crate::failover::driver::run(
            self.ctx.engine.clone(),
            arbiter,
            mode,
            timing,
            self.ctx.shutdown.clone(),
        ));
        *self.ctx.driver.lock().unwrap_or_else(|p| p.into_inner()) = Some(driver);
    }

    /// Removes the member named `name` (on the Active only, never the Active itself): its
    /// certificate is refused from now on, its connection is closed, and the removal reaches
    /// every other node with the member lists of the hellos. Returns its record as it was.
    pub async fn remove_member(&self, name: &str) -> Result<Member> {
        let owned = name.to_owned();
        let removed = blocking(&self.ctx.engine, move |e| super::membership::remove_member(e, &owned)).await?;
        forget_removed(&self.ctx)?;
        self.ctx.members_version.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.ctx.wake_dialers.notify_waiters();
        tracing::warn!(member = %removed.name, node = %removed.node_id, "member removed from the cluster");
        Ok(removed)
    }

    /// A forced changeover: this Standby becomes Active. Returns the new epoch.
    pub fn force_changeover(&self) -> Result<u64> {
        changeover::force(&self.ctx)
    }

    /// Stops listening, lets the failover driver release the arbiter, and ends every dial loop
    /// and connection: when it returns, this runtime dials, follows and serves no more.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.listener_task.await;
        let driver = self.ctx.driver.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(driver) = driver {
            let _ = driver.await;
        }
        let tasks = std::mem::take(&mut *self.ctx.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in &tasks {
            task.abort();
        }
        // An aborted task ends at its next await; wait until each has.
        while tasks.iter().any(|t| !t.is_finished()) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Lets go of every member that was removed: its connection (closing its command channel ends
/// the task that serves it), its dial loop (which ends by itself at its next turn) and its entry
/// in the status.
pub(crate) fn forget_removed(ctx: &Arc<Ctx>) -> Result<()> {
    for m in member_records(&ctx.engine.store())?.into_iter().filter(|m| m.removed) {
        if ctx.registry.forget(m.node_id) {
            tracing::warn!(member = %m.name, "closed the connection of a removed member");
        }
        ctx.engine.sync().forget_peer(m.node_id);
    }
    Ok(())
}

/// Called by a dial loop that found its member removed: a later member with the same node id
/// cannot exist, but the set stays exact.
pub(crate) fn stop_dialing(ctx: &Ctx, member: Uid) {
    ctx.dialing.lock().unwrap_or_else(|p| p.into_inner()).remove(&member);
}

/// A Standby contacts a peer that answered as a Standby this rarely: such a contact only
/// refreshes the peer's row in the status. A peer that becomes Active dials every member it does
/// not serve at once and then every heartbeat, and that wakes the dial loops (`wake_dialers`),
/// so a Standby finds a new Active without polling its fellow Standbys: an idle cluster keeps
/// one connection per Standby (to the Active) and opens almost no others.
const STANDBY_PEER_PROBE_MS: u64 = 30_000;

/// Whether a dial loop skips this round's contact: an Active has nothing to learn from a
/// Standby it serves right now (that connection shows the peer's head and liveness).
pub(crate) fn contact_needed(ctx: &Ctx, member: &Member, active: bool) -> bool {
    !(active && ctx.registry.get(member.node_id).is_some())
}

/// How long a dial loop waits before its next contact with `member`: the heartbeat on an
/// Active (to find Standbys that lost it, and a second Active to fence), the reconnect pause
/// while `member` did not answer or answered as something other than a Standby, and
/// [`STANDBY_PEER_PROBE_MS`] between two Standbys.
pub(crate) fn dial_pause(ctx: &Ctx, member: &Member, active: bool, answered: bool) -> Duration {
    let reconnect = Duration::from_millis(ctx.cfg.reconnect_ms.max(10));
    if active {
        return Duration::from_millis(ctx.cfg.heartbeat_ms.max(10));
    }
    let peer_is_standby =
        || ctx.engine.sync().peers().iter().any(|p| p.node_id == member.node_id && p.role == Some(Role::Standby));
    if answered && peer_is_standby() {
        return reconnect.max(Duration::from_millis(STANDBY_PEER_PROBE_MS));
    }
    reconnect
}

/// Starts a dial loop for every member that has none yet.
pub(crate) fn ensure_dialers(ctx: &Arc<Ctx>) -> Result<()> {
    let me = ctx.engine.node()?.node_id;
    let all = members(&ctx.engine.store())?;
    let mut dialing = ctx.dialing.lock().unwrap_or_else(|p| p.into_inner());
    for m in all {
        if m.node_id != me && dialing.insert(m.node_id) {
            ctx.spawn_tracked(standby::dial_loop(ctx.clone(), m));
        }
    }
    Ok(())
}

async fn accept_loop(ctx: Arc<Ctx>, listener: TcpListener) {
    let mut shutdown = ctx.shutdown.clone();
    let acceptor = TlsAcceptor::from(ctx.tls.server.clone());
    let open = Arc::new(tokio::sync::Semaphore::new(mgha_core::limits::PEER_CONNECTIONS_MAX));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, addr)) => {
                    // Over the cap the connection is closed at once, before any TLS work.
                    let Ok(permit) = open.clone().try_acquire_owned() else {
                        tracing::warn!(peer = %addr, "peer connection cap reached; closing");
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let ctx = ctx.clone();
                    let acceptor = acceptor.clone();
                    let task_ctx = ctx.clone();
                    task_ctx.spawn_tracked(async move {
                        let _permit = permit;
                        if let Err(e) = handle_incoming(ctx, acceptor, tcp).await {
                            tracing::info!(peer = %addr, error = %e, "peer connection refused or ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn handle_incoming(ctx: Arc<Ctx>, acceptor: TlsAcceptor, tcp: TcpStream) -> Result<()> {
    // One deadline for the TLS handshake and the first message together (docs/protocol.md).
    let handshake = tokio::time::Instant::now() + Duration::from_millis(ctx.cfg.handshake_timeout_ms);
    // Join attempts are limited per source address.
    let source = tcp.peer_addr().map(|a| a.ip()).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let mut tls = tokio::time::timeout_at(handshake, acceptor.accept(tcp))
        .await
        .map_err(|_| Error::Peer("TLS handshake timed out".into()))?
        .map_err(|e| Error::Peer(format!("TLS handshake: {e}")))?;
    // The certificate is known before any frame is read: a peer without one may send only a
    // small join request, refused from its length alone if larger.
    let peer_cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
    let first_max = if peer_cert.is_some() { FRAME_BYTES_MAX } else { UNAUTHENTICATED_FRAME_BYTES_MAX };
    let first = tokio::time::timeout_at(handshake, read_msg_max(&mut tls, first_max))
        .await
        .map_err(|_| Error::Peer("no hello in time".into()))?
        .map_err(|e| Error::Peer(e.to_string()))?;
    let Some(cert) = peer_cert else {
        // No certificate: only a join request is allowed.
        return match first {
            Some(Msg::JoinRequest(req)) => join::serve(&ctx, &mut tls, req, source).await,
            _ => {
                let _ =
                    write_msg(&mut tls, &Msg::Refuse { reason: "authenticate with a member certificate".into() }).await;
                Err(Error::Peer("unauthenticated peer sent something other than a join request".into()))
            }
        };
    };
    let node_id = node_id_of(&cert)?;
    if blocking(&ctx.engine, move |e| is_removed(&e.store(), node_id)).await? {
        let _ = write_msg(&mut tls, &Msg::Refuse { reason: REMOVED.into() }).await;
        return Err(Error::Peer(format!("node {node_id} was removed from the cluster; its certificate is refused")));
    }
    let Some(Msg::Hello(hello)) = first else {
        let _ = write_msg(&mut tls, &Msg::Refuse { reason: "expected hello".into() }).await;
        return Err(Error::Peer(format!("node {node_id} did not start with hello")));
    };
    if let Err(reason) = check_hello(&ctx, &hello, node_id) {
        let _ = write_msg(&mut tls, &Msg::Refuse { reason: reason.clone() }).await;
        return Err(Error::Peer(reason));
    }
    let ours = our_hello(&ctx)?;
    write_msg(&mut tls, &Msg::Hello(ours.clone())).await.map_err(|e| Error::Peer(e.to_string()))?;
    // From here on the session's frames travel as blocks (docs/protocol.md), counted as sent.
    let stream = Compressed::new(Counted::new(tls, ctx.engine.sync().traffic(hello.node_id)));
    learn_members(&ctx, &hello).await?;
    if ours.role == Role::Standby && hello.role == Role::Active {
        // An Active we do not follow: its dial loop may be waiting out a long pause.
        let following = *ctx.upstream.lock().unwrap_or_else(|p| p.into_inner()) == Some(hello.node_id);
        if !following {
            ctx.wake_dialers.notify_waiters();
        }
    }
    if ours.role == Role::Active && hello.role == Role::Standby {
        active::serve_standby(ctx, stream, hello).await
    } else {
        Ok(())
    }
}

/// Checks a peer's hello: protocol, cluster, and that it speaks for the certificate's node.
pub(crate) fn check_hello(ctx: &Ctx, hello: &Hello, cert_node: Uid) -> std::result::Result<(), String> {
    if hello.protocol != PROTOCOL_VERSION {
        return Err(format!("protocol version {}, this node speaks {PROTOCOL_VERSION}", hello.protocol));
    }
    let node = ctx.engine.node().map_err(|e| e.to_string())?;
    if hello.cluster_id != node.cluster_id {
        return Err(format!("cluster {} is not this cluster", hello.cluster_id));
    }
    if hello.node_id != cert_node {
        return Err(format!("hello claims node {} but the certificate is node {cert_node}", hello.node_id));
    }
    if hello.node_id == node.node_id {
        return Err("a node cannot connect to itself".into());
    }
    Ok(())
}

/// This node's hello.
pub(crate) fn our_hello(ctx: &Ctx) -> Result<Hello> {
    let node = ctx.engine.node()?;
    let store = ctx.engine.store();
    Ok(Hello {
        protocol: PROTOCOL_VERSION,
        cluster_id: node.cluster_id,
        node_id: node.node_id,
        name: node.name,
        designation: node.designation,
        role: node.role,
        epoch: node.epoch,
        head: store.head()?,
        listen: ctx.advertised.clone(),
        members: member_records(&store)?,
        damaged: ctx.engine.damage().is_some(),
    })
}

/// What a node that was removed from the cluster is told when it connects.
pub(crate) const REMOVED: &str = "this node was removed from the cluster; join again with a new key";

/// Records what a peer's hello says about the cluster.
pub(crate) async fn learn_members(ctx: &Arc<Ctx>, hello: &Hello) -> Result<()> {
    let incoming = hello.members.clone();
    match blocking(&ctx.engine, move |e| merge_members(&e.store(), &incoming)).await {
        Ok(true) => {
            ensure_dialers(ctx)?;
            forget_removed(ctx)?;
        }
        Ok(false) => {}
        // A store that cannot write (a full disk) learns the members at a later hello; the
        // session goes on, so that a Standby still follows and reports why it cannot apply.
        Err(e) if ctx.engine.store_fault().is_some() => {
            tracing::debug!(error = %e, "cannot record the members now: the store cannot write");
        }
        Err(e) => return Err(e),
    }
    ctx.set_damaged(hello.node_id, hello.damaged);
    ctx.engine.sync().update_peer(hello.node_id, |p| {
        p.name = hello.name.clone();
        p.listen = hello.listen.clone();
        p.designation = hello.designation;
        p.role = Some(hello.role);
        p.epoch = hello.epoch;
    });
    // Fencing: an Active that meets a higher epoch steps down before anything else happens.
    let seen = RoleEvent::PeerSeen { peer: hello.node_id, role: hello.role, epoch: hello.epoch };
    // When publishes stopped here: at the end of a lease that ran out before (automatic
    // failover), else now. Logged so that it lines up with the new Active's election, as the
    // failover driver's own fence does.
    let lease_until = ctx.engine.role_machine().lease_until_ms;
    let (now_mono, now) = (mgha_core::mono_ms(), mgha_core::now_ms());
    let refusing_since_ms = match lease_until {
        Some(until) if until < now_mono => now.saturating_sub(now_mono - until),
        _ => now,
    };
    for a in role_event(&ctx.engine, seen).await? {
        if let RoleAction::SteppedDown { epoch, .. } = a {
            ctx.engine.sync().set_active_hint(Some(hello.name.clone()));
            tracing::warn!(
                peer = %hello.name,
                epoch = %mgha_core::roles::machine::epoch::display(epoch),
                refusing_since_ms,
                "a higher epoch is active: fenced, stepped down to standby"
            );
        }
    }
    Ok(())
}

/// Connects to a member as a member (mutual TLS).
pub(crate) async fn connect_member(ctx: &Ctx, addr: &str) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let handshake = Duration::from_millis(ctx.cfg.handshake_timeout_ms);
    let tcp = tokio::time::timeout(handshake, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Peer(format!("connect to {addr} timed out")))??;
    let _ = tcp.set_nodelay(true);
    let connector = TlsConnector::from(ctx.tls.client.clone());
    tokio::time::timeout(handshake, connector.connect(member_server_name(), tcp))
        .await
        .map_err(|_| Error::Peer(format!("TLS handshake with {addr} timed out")))?
        .map_err(|e| Error::Peer(format!("TLS handshake with {addr}: {e}")))
}

/// Runs engine work that may write durably (a role record, the member list) on the blocking
/// pool: the async workers never wait on an fsync.
pub(crate) async fn blocking<T: Send + 'static>(
    engine: &Arc<Engine>,
    f: impl FnOnce(&Engine) -> Result<T> + Send + 'static,
) -> Result<T> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(format!("an engine task failed: {e}"))))?
}

/// Feeds the role machine from async code: the event may persist a new role and epoch.
pub(crate) async fn role_event(engine: &Arc<Engine>, event: RoleEvent) -> Result<Vec<RoleAction>> {
    blocking(engine, move |e| e.role_event(event)).await
}
