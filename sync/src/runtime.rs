//! The tokio runtime of synchronization: the peer listener, the domains a server hosts (each with
//! its own engine and replication state), their dial loops, the routing of a link's streams to
//! their domain, and the wiring between sessions and the engine. Decisions live in
//! [`super::plan`]; this file only moves bytes and calls the engine.

use crate::EngineExt;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

pub use super::changeover::FORWARD_MARGIN_MS;
use super::conn::Registry;
use super::link::Links;
use super::membership::{is_removed, member_records, members, merge_members, set_own_record};
use super::pki::TlsFiles;
use super::plan::SyncStatus;
use super::tls::{member_server_name, MemberTls};
use super::wire::{read_msg, write_msg, Hello, Member, Msg, PROTOCOL_VERSION};
use super::{changeover, join, standby};
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

/// What a server shares among its domains: trust, configuration, the listener's shutdown, the
/// join rate limit, the links to its peers, and the domains it hosts.
pub(crate) struct Server {
    pub tls: MemberTls,
    pub files: TlsFiles,
    pub cfg: SyncConfig,
    pub shutdown: watch::Receiver<bool>,
    pub joins: Mutex<join::RateLimit>,
    pub advertised: String,
    /// This server's node id, and its cluster's id (the first domain's id).
    pub node_id: Uid,
    pub cluster_id: Uid,
    /// One live link per peer server, carrying every domain.
    pub links: Links,
    /// The domains hosted here, by domain id; the first domain's id is the cluster id.
    domains: Mutex<HashMap<Uid, Arc<Ctx>>>,
    /// The link tasks started so far (finished ones are pruned), ended by shutdown.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Server {
    /// Spawns a link task that shutdown ends.
    pub(crate) fn spawn_tracked(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        track(&self.tasks, task);
    }

    /// The context of domain `id`, if this server hosts it.
    pub(crate) fn domain(&self, id: Uid) -> Option<Arc<Ctx>> {
        self.domains.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    fn all_domains(&self) -> Vec<Arc<Ctx>> {
        self.domains.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// The first domain's engine: its store holds the cluster's member list (removals included).
    pub(crate) fn global(&self) -> Result<Arc<Engine>> {
        self.domain(self.cluster_id)
            .map(|c| c.engine.clone())
            .ok_or_else(|| Error::Peer("the sync runtime is shutting down".into()))
    }
}

fn track(tasks: &Mutex<Vec<tokio::task::AbortHandle>>, task: impl std::future::Future<Output = ()> + Send + 'static) {
    let handle = tokio::spawn(task).abort_handle();
    let mut tasks = tasks.lock().unwrap_or_else(|p| p.into_inner());
    tasks.retain(|t| !t.is_finished());
    tasks.push(handle);
}

/// What every session of one domain needs: its engine and its own replication state.
pub(crate) struct Ctx {
    pub server: Arc<Server>,
    /// This domain's id (the cluster id for the first domain).
    pub domain: Uid,
    pub engine: Arc<Engine>,
    /// Turns true when this domain is removed from the runtime or the runtime shuts down.
    pub shutdown: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    /// Members that already have a dial loop.
    dialing: Mutex<HashSet<Uid>>,
    /// The dial loops and sessions started so far (finished ones are pruned), so that shutdown
    /// can end those still running: none may dial again or follow after it.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The failover driver, which shutdown waits for: it lets go of the arbiter's hold.
    driver: Mutex<Option<JoinHandle<()>>>,
    /// Command channels of live sessions.
    pub registry: Registry,
    /// Set by the session that saw the target of a planned changeover take over; wakes
    /// the changeover that waits for it.
    pub promoted: watch::Sender<Option<(Uid, u64)>>,
    /// The one changeover this domain runs at a time.
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
    fn new(server: Arc<Server>, domain: Uid, engine: Arc<Engine>) -> Ctx {
        let (stop, shutdown) = watch::channel(false);
        Ctx {
            server,
            domain,
            engine,
            shutdown,
            stop,
            dialing: Mutex::new(HashSet::new()),
            tasks: Mutex::new(Vec::new()),
            driver: Mutex::new(None),
            registry: Registry::default(),
            promoted: watch::channel(None).0,
            changeover: changeover::Slot::default(),
            upstream: Mutex::new(None),
            arbiter: Mutex::new(None),
            damaged: Mutex::new(HashSet::new()),
            wake_dialers: tokio::sync::Notify::new(),
            members_version: Default::default(),
        }
    }

    /// Whether this is the first domain, whose member list is the cluster's.
    pub fn is_global(&self) -> bool {
        self.domain == self.server.cluster_id
    }

    /// Spawns a dial loop or session that shutdown (or the domain's removal) ends.
    pub(crate) fn spawn_tracked(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        track(&self.tasks, task);
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
        Duration::from_millis(self.server.cfg.changeover_timeout_ms.max(1))
    }

    /// Stops the failover driver and every task of this domain; returns once each ended.
    async fn stop(&self) {
        let _ = self.stop.send(true);
        let driver = self.driver.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(driver) = driver {
            let _ = driver.await;
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        abort_all(tasks).await;
    }
}

/// Aborts `tasks` and waits until each has ended (an aborted task ends at its next await).
async fn abort_all(tasks: Vec<tokio::task::AbortHandle>) {
    for task in &tasks {
        task.abort();
    }
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A running sync runtime; dropping it without [`SyncRuntime::shutdown`] leaves tasks running
/// until the tokio runtime ends.
pub struct SyncRuntime {
    shutdown: watch::Sender<bool>,
    local_addr: SocketAddr,
    listener_task: JoinHandle<()>,
    server: Arc<Server>,
}

impl std::fmt::Debug for SyncRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SyncRuntime({})", self.local_addr)
    }
}

/// Refuses an engine that cannot be replicated.
fn check_replicated(engine: &Engine) -> Result<()> {
    if engine.try_sync().is_none() {
        return Err(Error::InvalidArgument(
            "the engine was opened without replication state (open it with mgha_sync::open_engine)".into(),
        ));
    }
    Ok(())
}

/// Shows every member of the domain but this node as unreachable until it answers: all of them
/// when the domain starts (what an earlier run left in the peer table is stale), only those not
/// shown yet when its member list changed (`fresh` false).
fn show_members(engine: &Engine, me: Uid, fresh: bool) -> Result<()> {
    for m in members(&engine.store())? {
        if m.node_id != me && (fresh || !engine.sync().peers().iter().any(|p| p.node_id == m.node_id)) {
            engine.sync().update_peer(m.node_id, |p| {
                p.name = m.name.clone();
                p.listen = m.listen.clone();
                p.designation = m.designation;
                p.status = SyncStatus::Unreachable;
            });
        }
    }
    Ok(())
}

impl SyncRuntime {
    /// Binds the peer listener and starts serving and following the first domain (`global`).
    /// The engine must have been opened by [`crate::open_engine`] or [`crate::create_engine`].
    pub async fn start(engine: Arc<Engine>, files: TlsFiles, cfg: SyncConfig) -> Result<SyncRuntime> {
        check_replicated(&engine)?;
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
        show_members(&engine, node.node_id, true)?;
        let (tx, rx) = watch::channel(false);
        let server = Arc::new(Server {
            tls,
            files,
            joins: Mutex::new(join::RateLimit::new(cfg.joins_per_minute)),
            cfg,
            shutdown: rx,
            advertised,
            node_id: node.node_id,
            cluster_id: node.cluster_id,
            links: Links::default(),
            domains: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let ctx = Arc::new(Ctx::new(server.clone(), node.cluster_id, engine));
        server.domains.lock().unwrap_or_else(|p| p.into_inner()).insert(node.cluster_id, ctx.clone());
        ensure_dialers(&ctx)?;
        let listener_task = tokio::spawn(super::accept::accept_loop(server.clone(), listener));
        tracing::info!(%local_addr, "listening for peers");
        Ok(SyncRuntime { shutdown: tx, local_addr, listener_task, server })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The context of `domain`, or `NotFound`.
    fn ctx(&self, domain: Uid) -> Result<Arc<Ctx>> {
        self.server.domain(domain).ok_or_else(|| Error::NotFound(format!("domain {domain} is not hosted here")))
    }

    fn global(&self) -> Result<Arc<Ctx>> {
        self.ctx(self.server.cluster_id)
    }

    /// Starts replicating `domain` (a domain other than the first) with its replica `engine`:
    /// dials the members of its member list (set by the node library, see
    /// [`crate::membership::set_domain_members`]) and serves the streams that name it.
    /// The engine must have been opened by [`crate::open_engine`] or [`crate::create_engine`], its
    /// node state naming this server and cluster.
    pub fn add_domain(&self, domain: Uid, engine: Arc<Engine>) -> Result<()> {
        check_replicated(&engine)?;
        let node = engine.node()?;
        if node.node_id != self.server.node_id || node.cluster_id != self.server.cluster_id {
            return Err(Error::InvalidArgument(format!(
                "the replica of domain {domain} belongs to node {} of cluster {}, not to this server",
                node.node_id, node.cluster_id
            )));
        }
        if *self.server.shutdown.borrow() {
            return Err(Error::InvalidArgument("the sync runtime is shutting down".into()));
        }
        show_members(&engine, node.node_id, true)?;
        let ctx = {
            let mut domains = self.server.domains.lock().unwrap_or_else(|p| p.into_inner());
            if domains.contains_key(&domain) {
                return Err(Error::InvalidArgument(format!("domain {domain} is replicated here already")));
            }
            if domains.len() >= mgha_core::limits::DOMAINS_MAX {
                return Err(Error::InvalidArgument(format!(
                    "a server replicates at most {} domains",
                    mgha_core::limits::DOMAINS_MAX
                )));
            }
            let ctx = Arc::new(Ctx::new(self.server.clone(), domain, engine));
            domains.insert(domain, ctx.clone());
            ctx
        };
        ensure_dialers(&ctx)?;
        tracing::info!(%domain, "replicating domain");
        Ok(())
    }

    /// Stops replicating `domain` (never the first): its failover driver lets go of the
    /// arbiter, its dial loops and sessions end, and streams that name it are refused from now
    /// on. Its engine is left open, to its owner.
    pub async fn remove_domain(&self, domain: Uid) {
        if domain == self.server.cluster_id {
            return;
        }
        let ctx = self.server.domains.lock().unwrap_or_else(|p| p.into_inner()).remove(&domain);
        if let Some(ctx) = ctx {
            ctx.stop().await;
            tracing::info!(%domain, "domain no longer replicated here");
        }
    }

    /// The domain's member list was rewritten (by the node library): dials members that have no
    /// dial loop yet, and lets go of the sessions of members no longer in it (their dial loops
    /// end at their next turn).
    pub fn members_changed(&self, domain: Uid) -> Result<()> {
        let ctx = self.ctx(domain)?;
        show_members(&ctx.engine, self.server.node_id, false)?;
        forget_non_members(&ctx)?;
        ensure_dialers(&ctx)?;
        ctx.members_version.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ctx.wake_dialers.notify_waiters();
        Ok(())
    }

    /// The domains replicated here (the first one included).
    pub fn domains(&self) -> Vec<Uid> {
        self.server.all_domains().iter().map(|c| c.domain).collect()
    }

    /// Live links to peer servers: at most one per peer, whatever the number of domains.
    pub fn links(&self) -> usize {
        self.server.links.count()
    }

    /// Links this server set up (dialed or accepted) since it started.
    pub fn links_established(&self) -> u64 {
        self.server.links.established()
    }

    /// A planned changeover of the first domain; see [`SyncRuntime::changeover_in`].
    pub async fn changeover(&self, target: &str) -> Result<u64> {
        changeover::planned(&self.global()?, target).await
    }

    /// A planned changeover of `domain` to the member named `target`, asked of any of its
    /// replicas (a Standby forwards it to the Active it follows, waiting for one while it follows
    /// none). Returns the target's new epoch, or a [`mgha_core::ChangeoverError`] saying why not,
    /// within `changeover_timeout_ms` (plus [`FORWARD_MARGIN_MS`] on a Standby). One at a time per
    /// domain: another call meanwhile is refused with `InProgress`. Dropping the future does not
    /// stop the changeover, which runs to its end in a task of its own.
    pub async fn changeover_in(&self, domain: Uid, target: &str) -> Result<u64> {
        changeover::planned(&self.ctx(domain)?, target).await
    }

    /// Turns on automatic failover of the first domain; see [`SyncRuntime::enable_failover_in`].
    pub fn enable_failover(&self, arbiter: Arc<dyn Arbiter>, mode: FailoverMode, timing: FailoverTiming) {
        if let Ok(ctx) = self.global() {
            enable_failover(&ctx, arbiter, mode, timing);
        }
    }

    /// Turns on automatic failover of `domain`: from now on its Active publishes only under the
    /// arbiter's lease, a Standby takes over when the Active's hold goes stale, and planned
    /// changeovers hand the hold over through the arbiter. Call it right after the domain
    /// starts, before serving publishes.
    pub fn enable_failover_in(
        &self,
        domain: Uid,
        arbiter: Arc<dyn Arbiter>,
        mode: FailoverMode,
        timing: FailoverTiming,
    ) -> Result<()> {
        enable_failover(&self.ctx(domain)?, arbiter, mode, timing);
        Ok(())
    }

    /// Removes the member named `name` (on the Active only, never the Active itself): its
    /// certificate is refused from now on, its link is closed, and the removal reaches
    /// every other node with the member lists of the hellos. Returns its record as it was.
    pub async fn remove_member(&self, name: &str) -> Result<Member> {
        let ctx = self.global()?;
        let owned = name.to_owned();
        let removed = blocking(&ctx.engine, move |e| super::membership::remove_member(e, &owned)).await?;
        forget_removed(&ctx)?;
        ctx.members_version.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ctx.wake_dialers.notify_waiters();
        tracing::warn!(member = %removed.name, node = %removed.node_id, "member removed from the cluster");
        Ok(removed)
    }

    /// Asks the member named `server` whether its replica of `domain` references any of `uids`
    /// (objects of the global domain about to be deleted): for each one referenced, a few of
    /// the objects that do. Bounded by the handshake timeout.
    pub async fn ask_uses(&self, server: &str, domain: Uid, uids: Vec<Uid>) -> Result<Vec<(Uid, Vec<String>)>> {
        match self.ask(server, &Msg::AskUses { domain, uids }).await? {
            Msg::Uses { used } => Ok(used),
            other => Err(Error::Peer(format!("{server} answered {other:?}"))),
        }
    }

    /// Asks the member named `server`, for each of `domains` whose Active is its replica, which
    /// replicas could take the Active role now ([`eligible_replicas`] there). Domains not Active
    /// there are left out of the answer. Bounded by the handshake timeout.
    pub async fn ask_eligible(&self, server: &str, domains: Vec<Uid>) -> Result<Vec<(Uid, Vec<String>)>> {
        match self.ask(server, &Msg::AskEligible { domains }).await? {
            Msg::Eligible { domains } => Ok(domains),
            other => Err(Error::Peer(format!("{server} answered {other:?}"))),
        }
    }

    /// Opens a stream to the member named `server`, writes `question` and reads the one answer,
    /// within the handshake timeout. A refusal is an error naming the server and its reason.
    async fn ask(&self, server: &str, question: &Msg) -> Result<Msg> {
        let global = self.server.global()?;
        let member = members(&global.store())?
            .into_iter()
            .find(|m| m.name == server)
            .ok_or_else(|| Error::NotFound(format!("member '{server}'")))?;
        let within = Duration::from_millis(self.server.cfg.handshake_timeout_ms);
        let asked = async {
            let (_, mut stream) = super::link::open_stream(&self.server, member.node_id, &member.listen).await?;
            write_msg(&mut stream, question).await.map_err(|e| Error::Peer(e.to_string()))?;
            match read_msg(&mut stream).await.map_err(|e| Error::Peer(e.to_string()))? {
                Some(Msg::Refuse { reason }) => Err(Error::Peer(format!("{server} refused: {reason}"))),
                Some(answer) => Ok(answer),
                None => Err(Error::Peer(format!("{server} closed the stream without an answer"))),
            }
        };
        tokio::time::timeout(within, asked)
            .await
            .map_err(|_| Error::Peer(format!("{server} did not answer in time")))?
    }

    /// A forced changeover of the first domain: this Standby becomes Active. Returns the new
    /// epoch.
    pub fn force_changeover(&self) -> Result<u64> {
        changeover::force(&self.global()?)
    }

    /// A forced changeover of `domain`: this replica, a Standby, becomes its Active. Returns the
    /// new epoch.
    pub fn force_changeover_in(&self, domain: Uid) -> Result<u64> {
        changeover::force(&self.ctx(domain)?)
    }

    /// Stops listening, lets every failover driver release its arbiter, and ends every dial
    /// loop, session and link: when it returns, this runtime dials, follows and serves no more.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.listener_task.await;
        let domains: Vec<Arc<Ctx>> =
            self.server.domains.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, c)| c).collect();
        for ctx in &domains {
            let _ = ctx.stop.send(true);
        }
        for ctx in &domains {
            ctx.stop().await;
        }
        self.server.links.close_all();
        let tasks = std::mem::take(&mut *self.server.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        abort_all(tasks).await;
    }
}

/// The replicas of the domain `engine` holds that could take its Active role now, as this
/// server sees them: its own unless damaged, and each peer replica connected and synchronized.
/// Only a domain's Active sees every replica's status; a Standby sees its own and the Active's.
pub fn eligible_replicas(engine: &Engine) -> Vec<String> {
    let mut eligible = Vec::new();
    if let Ok(me) = engine.node() {
        if engine.damage().is_none() {
            eligible.push(me.name);
        }
    }
    for p in engine.sync().peers() {
        if p.connected && p.status == SyncStatus::Synchronized {
            eligible.push(p.name);
        }
    }
    eligible
}

fn enable_failover(ctx: &Arc<Ctx>, arbiter: Arc<dyn Arbiter>, mode: FailoverMode, timing: FailoverTiming) {
    ctx.engine.set_arbitrated();
    *ctx.arbiter.lock().unwrap_or_else(|p| p.into_inner()) = Some((arbiter.clone(), timing));
    let driver = tokio::spawn(crate::failover::driver::run(
        ctx.engine.clone(),
        ctx.domain,
        arbiter,
        mode,
        timing,
        ctx.shutdown.clone(),
    ));
    *ctx.driver.lock().unwrap_or_else(|p| p.into_inner()) = Some(driver);
}

/// Lets go of the sessions with servers that are no longer members of a domain other than the
/// first (its list was rewritten): their dial loops end at their next turn.
fn forget_non_members(ctx: &Arc<Ctx>) -> Result<()> {
    if ctx.is_global() {
        return forget_removed(ctx);
    }
    let current: HashSet<Uid> = members(&ctx.engine.store())?.iter().map(|m| m.node_id).collect();
    for p in ctx.engine.sync().peers() {
        if !current.contains(&p.node_id) {
            ctx.registry.forget(p.node_id);
            ctx.engine.sync().forget_peer(p.node_id);
        }
    }
    Ok(())
}

/// Lets go of every member that was removed: its connection (closing its command channel ends
/// the task that serves it), its dial loop (which ends by itself at its next turn) and its entry
/// in the status.
pub(crate) fn forget_removed(ctx: &Arc<Ctx>) -> Result<()> {
    if !ctx.is_global() {
        return Ok(());
    }
    for m in member_records(&ctx.engine.store())?.into_iter().filter(|m| m.removed) {
        for domain in ctx.server.all_domains() {
            if domain.registry.forget(m.node_id) {
                tracing::warn!(member = %m.name, domain = %domain.domain, "closed the session of a removed member");
            }
            domain.engine.sync().forget_peer(m.node_id);
        }
        ctx.server.links.drop_peer(m.node_id);
    }
    Ok(())
}

/// Called by a dial loop that found its member removed: a later member with the same node id
/// cannot exist, but the set stays exact.
pub(crate) fn stop_dialing(ctx: &Ctx, member: Uid) {
    ctx.dialing.lock().unwrap_or_else(|p| p.into_inner()).remove(&member);
}

/// Whether `member` is dialed no more: removed from the cluster (the first domain's list says
/// so), or, in another domain, no longer in its member list.
pub(crate) async fn left(ctx: &Arc<Ctx>, member: Uid) -> Result<bool> {
    let global = ctx.server.global()?;
    if blocking(&global, move |e| is_removed(&e.store(), member)).await? {
        return Ok(true);
    }
    if ctx.is_global() {
        return Ok(false);
    }
    blocking(&ctx.engine, move |e| Ok(!members(&e.store())?.iter().any(|m| m.node_id == member))).await
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
    let reconnect = Duration::from_millis(ctx.server.cfg.reconnect_ms.max(10));
    if active {
        return Duration::from_millis(ctx.server.cfg.heartbeat_ms.max(10));
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

/// Checks a peer's hello: protocol, cluster, domain, and that it speaks for the link's node.
pub(crate) fn check_hello(ctx: &Ctx, hello: &Hello, link_node: Uid) -> std::result::Result<(), String> {
    if hello.protocol != PROTOCOL_VERSION {
        return Err(format!("protocol version {}, this node speaks {PROTOCOL_VERSION}", hello.protocol));
    }
    if hello.cluster_id != ctx.server.cluster_id {
        return Err(format!("cluster {} is not this cluster", hello.cluster_id));
    }
    if hello.domain != ctx.domain {
        return Err(format!("a hello for domain {} on a session of domain {}", hello.domain, ctx.domain));
    }
    if hello.node_id != link_node {
        return Err(format!("hello claims node {} but the certificate is node {link_node}", hello.node_id));
    }
    if hello.node_id == ctx.server.node_id {
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
        domain: ctx.domain,
        node_id: node.node_id,
        name: node.name,
        designation: node.designation,
        role: node.role,
        epoch: node.epoch,
        head: store.head()?,
        listen: ctx.server.advertised.clone(),
        members: member_records(&store)?,
        damaged: ctx.engine.damage().is_some(),
    })
}

/// What a node that was removed from the cluster is told when it connects.
pub(crate) const REMOVED: &str = "this node was removed from the cluster; join again with a new key";

/// Records what a peer's hello says about the cluster (the member lists of the first domain
/// only: another domain's list is set by the node library) and about the peer.
pub(crate) async fn learn_members(ctx: &Arc<Ctx>, hello: &Hello) -> Result<()> {
    let incoming = hello.members.clone();
    let merged = if ctx.is_global() {
        blocking(&ctx.engine, move |e| merge_members(&e.store(), &incoming)).await
    } else {
        Ok(false)
    };
    match merged {
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
pub(crate) async fn connect_member(server: &Server, addr: &str) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let handshake = Duration::from_millis(server.cfg.handshake_timeout_ms);
    let tcp = tokio::time::timeout(handshake, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Peer(format!("connect to {addr} timed out")))??;
    let _ = tcp.set_nodelay(true);
    let connector = TlsConnector::from(server.tls.client.clone());
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
    if let Some(actions) = engine.role_event_at_once(&event) {
        return Ok(actions);
    }
    blocking(engine, move |e| e.role_event(event)).await
}
