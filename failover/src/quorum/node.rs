//! One Raft voter of the arbiter: openraft over the store of `store.rs` and the transport of
//! `net.rs`, the listener that serves the other voters, and client writes that go to the leader
//! (locally, or forwarded over the transport), each bounded by the call timeout. openraft stops
//! a voter for good when its storage fails (a full disk); [`keep_alive`] restarts it on the same
//! file, with its vote and log, once the storage can write again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mgha_core::{Error, Result, Uid};
use mgha_sync::failover::{ArbiterMember, FailoverTiming};
use mgha_sync::tls::MemberTls;
use openraft::error::Fatal;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

use super::net::{self, Handler, Network, Peers, Reply, Request, WriteReply};
use super::state::{Cmd, CmdKind, CmdResponse, TypeConfig};
use super::store::{self, Shared};
use super::{node_id, QuorumConfig};

/// The Raft timing derived from the failover heartbeat: Raft heartbeats several times per
/// failover heartbeat and re-elects a lost leader within about one.
pub fn raft_config(timing: &FailoverTiming) -> Result<Config> {
    let heartbeat_ms = (timing.heartbeat_ms / 8).clamp(50, 125);
    let config = Config {
        cluster_name: "mgha-arbiter".into(),
        heartbeat_interval: heartbeat_ms,
        election_timeout_min: 3 * heartbeat_ms,
        election_timeout_max: 6 * heartbeat_ms,
        install_snapshot_timeout: 1000,
        // The state is a few hundred bytes per domain (under 1 KiB with three replicas, pinned by
        // a test of `state.rs`): one chunk for a few domains, a few chunks at `DOMAINS_MAX`.
        snapshot_max_chunk_size: (net::FRAME_BYTES_MAX / 4) as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
        max_payload_entries: PAYLOAD_ENTRIES_MAX,
        max_in_snapshot_log_to_keep: 100,
        ..Default::default()
    };
    config.validate().map_err(|e| Error::InvalidArgument(format!("arbiter Raft timing: {e}")))
}

/// How long one arbiter call may take: well under a heartbeat, never under 200 ms.
pub fn call_timeout(timing: &FailoverTiming) -> Duration {
    Duration::from_millis((timing.heartbeat_ms / 2).max(200))
}

/// How often a voter whose storage failed tries whether it can write again.
const REVIVE_RETRY: Duration = Duration::from_secs(1);

/// The most commands one log entry carries, and the most entries one append sends: together,
/// with every command under [`CMD_BYTES_MAX`], an append stays under half a frame.
const BATCH_MAX: usize = 128;
const PAYLOAD_ENTRIES_MAX: u64 = 32;
/// An upper bound of one encoded command (a report's node name is at most
/// `mgha_core::limits::NAME_BYTES_MAX` bytes), pinned by a test of this module.
pub const CMD_BYTES_MAX: usize = 1024;
const _: () = assert!(BATCH_MAX * CMD_BYTES_MAX * PAYLOAD_ENTRIES_MAX as usize <= net::FRAME_BYTES_MAX);

/// What the listener and the arbiter share.
pub struct Core {
    pub id: u64,
    pub name: String,
    /// Replaced whole when Raft is restarted after a storage failure ([`keep_alive`]).
    raft: RwLock<Raft<TypeConfig>>,
    /// Where the Raft store lives, and Raft's configuration: to restart it.
    data_dir: PathBuf,
    config: Arc<Config>,
    pub peers: Arc<Peers>,
    pub shared: Arc<Shared>,
    /// Every voter, this one included, in configuration order: (id, name, address).
    pub voters: Vec<(u64, String, String)>,
    pub timing: FailoverTiming,
    pub call_timeout: Duration,
    last_commit: Mutex<Option<Instant>>,
    batcher: Batcher,
    pub status_cache: StatusCache,
}

/// The server-wide part of the arbiter's status (the voters' health, whether a majority
/// answers), kept for a while: every domain's driver asks for it, and a follower asks the
/// leader over the network.
#[derive(Default)]
pub struct StatusCache {
    last: tokio::sync::Mutex<Option<(Instant, Vec<ArbiterMember>, bool)>>,
}

impl StatusCache {
    /// The status at most `max_age` old, from `refresh` when the kept one is older. Callers that
    /// come while one refreshes wait for its answer rather than ask again.
    pub async fn get_or_refresh<F, Fut>(&self, max_age: Duration, refresh: F) -> (Vec<ArbiterMember>, bool)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = (Vec<ArbiterMember>, bool)>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, members, quorum)) = &*last {
            if at.elapsed() < max_age {
                return (members.clone(), *quorum);
            }
        }
        let (members, quorum) = refresh().await;
        *last = Some((Instant::now(), members.clone(), quorum));
        (members, quorum)
    }
}

/// A write waiting to be committed, and where its answer goes. A write without a command is a
/// read barrier: it is answered with the index of the entry it went with.
struct Queued {
    cmd: Option<Cmd>,
    deadline: tokio::time::Instant,
    reply: oneshot::Sender<Result<(CmdResponse, u64)>>,
}

/// Group commit of a voter's writes. While entries are being committed, the writes that arrive
/// wait; then all of them go at once, as one [`CmdKind::Batch`] entry per [`BATCH_MAX`]. The
/// failover drivers of a server's domains tick together, so a server with a thousand domains
/// commits a few entries per heartbeat rather than two per domain, and pays each Raft entry,
/// fsync and round trip once for all of them.
#[derive(Default)]
struct Batcher {
    queue: Mutex<Vec<Queued>>,
    wake: Notify,
}

impl Batcher {
    fn push(&self, queued: Queued) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push(queued);
        self.wake.notify_one();
    }

    /// Every write waiting whose caller still waits for it.
    fn take(&self) -> Vec<Queued> {
        let mut queued = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        let now = tokio::time::Instant::now();
        // A caller that gave up must not find its write committed after all.
        queued.retain(|q| !q.reply.is_closed() && q.deadline > now);
        queued
    }
}

/// Commits the batcher's writes until `stop`; a write left waiting then fails at once.
async fn run_batches(core: Arc<Core>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = core.batcher.wake.notified() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            drop(core.batcher.take());
            return;
        }
        let mut queued = core.batcher.take();
        let mut chunks = JoinSet::new();
        while !queued.is_empty() {
            let rest = queued.split_off(queued.len().min(BATCH_MAX));
            let chunk = std::mem::replace(&mut queued, rest);
            let core = core.clone();
            chunks.spawn(async move { core.commit_batch(chunk).await });
        }
        while chunks.join_next().await.is_some() {}
    }
}

/// A running voter.
pub struct Node {
    pub core: Arc<Core>,
    stop: watch::Sender<bool>,
    server: Mutex<Option<JoinHandle<()>>>,
    keeper: Mutex<Option<JoinHandle<()>>>,
    batcher: Mutex<Option<JoinHandle<()>>>,
}

impl Node {
    /// Opens the store, listens, starts Raft and initializes the group if it never was.
    pub async fn start(cfg: &QuorumConfig) -> Result<Node> {
        let tls = MemberTls::load(&cfg.tls)?;
        let (log, machine, shared) = store::open(&cfg.data_dir).await?;
        let listener = TcpListener::bind(&cfg.listen).await.map_err(|source| Error::Listen {
            what: "the arbiter's peers",
            addr: cfg.listen.clone(),
            source,
        })?;
        let id = node_id(&cfg.name);
        let voters: Vec<(u64, String, String)> =
            cfg.members.iter().map(|m| (node_id(&m.name), m.name.clone(), m.address.clone())).collect();
        let peers = Arc::new(Peers::new(tls.client.clone(), voters.iter().filter(|v| v.0 != id).cloned()));
        let config = Arc::new(raft_config(&cfg.timing)?);
        let raft = new_raft(id, &config, &peers, log, machine).await?;
        let core = Arc::new(Core {
            id,
            name: cfg.name.clone(),
            raft: RwLock::new(raft),
            data_dir: cfg.data_dir.clone(),
            config,
            peers,
            shared,
            voters,
            timing: cfg.timing,
            call_timeout: call_timeout(&cfg.timing),
            last_commit: Mutex::new(None),
            batcher: Batcher::default(),
            status_cache: StatusCache::default(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(net::serve(listener, tls.server.clone(), core.clone(), stop_rx.clone()));
        let keeper = tokio::spawn(keep_alive(core.clone(), stop_rx.clone()));
        let batcher = tokio::spawn(run_batches(core.clone(), stop_rx));
        let node = Node {
            core,
            stop,
            server: Mutex::new(Some(server)),
            keeper: Mutex::new(Some(keeper)),
            batcher: Mutex::new(Some(batcher)),
        };
        if let Err(e) = node.initialize().await {
            node.close().await;
            return Err(e);
        }
        Ok(node)
    }

    /// Every voter may initialize the group with the same membership; one that already holds a
    /// vote or a log (a restart, or a peer got there first) is simply not allowed to again.
    async fn initialize(&self) -> Result<()> {
        let raft = self.core.raft();
        let started = raft.is_initialized().await.map_err(|e| Error::Peer(format!("arbiter: {e}")))?;
        if started {
            return Ok(());
        }
        let members: std::collections::BTreeMap<u64, BasicNode> =
            self.core.voters.iter().map(|(id, _, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
        match raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(Error::Peer(format!("arbiter: cannot initialize the Raft group: {e}"))),
        }
    }

    /// Stops serving peers and shuts Raft down (the store closes with it).
    pub async fn close(&self) {
        self.stop.send_replace(true);
        // The keeper first: once it has returned, it restarts no Raft behind this close.
        for task in [&self.keeper, &self.batcher, &self.server] {
            let task = task.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(task) = task {
                let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            }
        }
        let _ = self.core.raft().shutdown().await;
    }
}

impl Drop for Node {
    /// A voter dropped without [`Node::close`] still stops: its listener at once, Raft soon after.
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let raft = self.core.raft();
            runtime.spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
    }
}

/// Starts a Raft instance of voter `id` over `log` and `machine`.
async fn new_raft(
    id: u64,
    config: &Arc<Config>,
    peers: &Arc<Peers>,
    log: store::LogStore,
    machine: store::StateMachine,
) -> Result<Raft<TypeConfig>> {
    let network = Network { peers: peers.clone(), backoff: Duration::from_millis(2 * config.heartbeat_interval) };
    Raft::new(id, config.clone(), network, log, machine)
        .await
        .map_err(|e| Error::Peer(format!("arbiter: cannot start Raft: {e}")))
}

/// Restarts the voter's Raft whenever it stopped on its own (openraft stops for good at a
/// storage error: a full disk, EIO), once the store can write again, until `stop`. Without
/// this the voter would stay down until the process restarts, and a cluster that lost another
/// voter meanwhile would have no majority.
async fn keep_alive(core: Arc<Core>, mut stop: watch::Receiver<bool>) {
    loop {
        let raft = core.raft();
        let Some(why) = stopped_by_itself(&raft, &mut stop).await else {
            return;
        };
        tracing::error!(
            member = %core.name, error = %why,
            "the arbiter's Raft stopped on a failure of its storage ({}); it restarts by itself once the storage can write",
            core.data_dir.join(store::RAFT_FILE).display()
        );
        // Joins its tasks, which drop the failed database handle.
        let _ = raft.shutdown().await;
        let mut tries = 0u64;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REVIVE_RETRY) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            match core.restart().await {
                Ok(()) => {
                    tracing::warn!(member = %core.name, "the arbiter's Raft restarted: its storage writes again (vote and log kept)");
                    break;
                }
                Err(e) => {
                    tries += 1;
                    // Once, then every minute or so: the cause does not change each second.
                    if tries % 60 == 1 {
                        tracing::warn!(member = %core.name, error = %e, "the arbiter's Raft cannot restart yet");
                    }
                }
            }
        }
    }
}

/// Waits until `raft` stops; why, unless it was asked to (`stop`).
async fn stopped_by_itself(raft: &Raft<TypeConfig>, stop: &mut watch::Receiver<bool>) -> Option<String> {
    let mut metrics = raft.metrics();
    loop {
        if *stop.borrow() {
            return None;
        }
        match &metrics.borrow_and_update().running_state {
            Ok(()) => {}
            Err(Fatal::Stopped) => return Some("it was stopped".into()),
            Err(fatal) => return Some(fatal.to_string()),
        }
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return (!*stop.borrow()).then(|| "its task ended".to_string());
                }
            }
            _ = stop.changed() => {}
        }
    }
}

impl Core {
    /// The voter's Raft instance now.
    pub fn raft(&self) -> Raft<TypeConfig> {
        self.raft.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reopens the store once it can write, and starts Raft on it again.
    async fn restart(&self) -> Result<()> {
        let (log, machine) = store::reopen(&self.data_dir, &self.shared).await?;
        let raft = new_raft(self.id, &self.config, &self.peers, log, machine).await?;
        *self.raft.write().unwrap_or_else(|p| p.into_inner()) = raft;
        Ok(())
    }

    /// Commits one command through the leader, before `deadline`; the answer and its log index.
    /// `domain` is the domain the command is about (`None`: the global domain). Commands that
    /// fall due together, from any of the server's domains, are committed as one log entry
    /// ([`Batcher`]).
    pub async fn write(
        &self,
        domain: Option<Uid>,
        kind: CmdKind,
        deadline: tokio::time::Instant,
    ) -> Result<(CmdResponse, u64)> {
        self.queue(Some(Cmd { op: rand::random(), domain, kind }), deadline).await
    }

    /// A read barrier: the log index of an entry committed after this call began, so that a read
    /// of this member's state once it applied that index sees every write committed before the
    /// call, through any member. Barriers ride on the entry of the writes that fall due with
    /// them, or share one empty entry: the looks of a thousand domains cost one entry, not one
    /// each.
    pub async fn barrier(&self, deadline: tokio::time::Instant) -> Result<u64> {
        Ok(self.queue(None, deadline).await?.1)
    }

    async fn queue(&self, cmd: Option<Cmd>, deadline: tokio::time::Instant) -> Result<(CmdResponse, u64)> {
        let (reply, answer) = oneshot::channel();
        self.batcher.push(Queued { cmd, deadline, reply });
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Peer("arbiter: the voter stopped before the write committed".into())),
            Err(_) => Err(self.timed_out("it waited behind other writes")),
        }
    }

    fn timed_out(&self, why: &str) -> Error {
        Error::Peer(format!(
            "arbiter: no majority of the {} voters committed the write within {} ms ({why})",
            self.voters.len(),
            self.call_timeout.as_millis()
        ))
    }

    /// Commits `cmd` (one command or a batch) through the leader, before `deadline`.
    async fn commit(&self, cmd: Cmd, deadline: tokio::time::Instant) -> Result<(CmdResponse, u64)> {
        let raft = self.raft();
        let mut metrics = raft.metrics();
        let mut last_error = String::from("no leader elected");
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(self.timed_out(&last_error));
            }
            let leader = metrics.borrow_and_update().current_leader;
            match leader {
                Some(l) if l == self.id => match tokio::time::timeout(left, raft.client_write(cmd.clone())).await {
                    Ok(Ok(r)) => return Ok(self.committed(r.data, r.log_id.index)),
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                        last_error = "leadership moved".into();
                    }
                    Ok(Err(e)) => return Err(Error::Peer(format!("arbiter: {e}"))),
                    Err(_) => last_error = "the leader could not reach a majority".into(),
                },
                Some(l) => match self.peers.by_id.get(&l) {
                    Some(peer) => match peer.client.call(&Request::Write(cmd.clone()), left).await {
                        Ok(Reply::Write(WriteReply::Done { answer, index })) => {
                            return Ok(self.committed(answer, index))
                        }
                        Ok(Reply::Write(WriteReply::NotLeader { .. })) => {
                            last_error = format!("{} is no longer the leader", peer.name);
                        }
                        Ok(Reply::Write(WriteReply::Failed(e))) => last_error = format!("leader {}: {e}", peer.name),
                        Ok(other) => last_error = format!("unexpected reply from {}: {other:?}", peer.name),
                        Err(e) => last_error = e,
                    },
                    None => last_error = format!("the leader {l} is not in this configuration"),
                },
                None => {}
            }
            // Wait for news of a leader, briefly (a Raft that stopped sends none).
            let pause = left.min(Duration::from_millis(20));
            if let Ok(Err(_)) = tokio::time::timeout(pause, metrics.changed()).await {
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// Commits `chunk` as one entry (a batch, unless it is a single write) and answers each
    /// caller: the batch's answers in order, all at the entry's index.
    async fn commit_batch(&self, chunk: Vec<Queued>) {
        let Some(deadline) = chunk.iter().map(|q| q.deadline).max() else {
            return;
        };
        if let [Queued { cmd: Some(_), .. }] = chunk.as_slice() {
            if let Some(Queued { cmd: Some(cmd), reply, .. }) = chunk.into_iter().next() {
                let _ = reply.send(self.commit(cmd, deadline).await);
            }
            return;
        }
        let mut cmds = Vec::with_capacity(chunk.len());
        let mut replies = Vec::with_capacity(chunk.len());
        for q in chunk {
            // Each reply with the position of its command's answer; a barrier has none.
            replies.push((q.reply, q.cmd.is_some().then_some(cmds.len())));
            cmds.extend(q.cmd);
        }
        let n = cmds.len();
        // Only barriers: an empty batch, which every version applies as nothing.
        let batch = Cmd { op: rand::random(), domain: None, kind: CmdKind::Batch { cmds } };
        match self.commit(batch, deadline).await {
            Ok((CmdResponse::Batch(answers), index)) if answers.len() == n => {
                for (reply, at) in replies {
                    let answer = at.map_or(CmdResponse::None, |i| answers[i].clone());
                    let _ = reply.send(Ok((answer, index)));
                }
            }
            Ok((other, _)) => {
                for (reply, _) in replies {
                    let _ = reply.send(Err(Error::Peer(format!("arbiter: unexpected answer to a batch: {other:?}"))));
                }
            }
            Err(e) => {
                let why = match &e {
                    Error::Peer(m) => m.clone(),
                    other => other.to_string(),
                };
                for (reply, _) in replies {
                    let _ = reply.send(Err(Error::Peer(why.clone())));
                }
            }
        }
    }

    fn committed(&self, answer: CmdResponse, index: u64) -> (CmdResponse, u64) {
        *self.last_commit.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        (answer, index)
    }

    /// When a write of ours last committed.
    pub fn last_commit(&self) -> Option<Instant> {
        *self.last_commit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A write forwarded by a peer: only the leader commits it.
    async fn local_write(&self, cmd: Cmd) -> WriteReply {
        match tokio::time::timeout(self.call_timeout, self.raft().client_write(cmd)).await {
            Ok(Ok(r)) => WriteReply::Done { answer: r.data, index: r.log_id.index },
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                WriteReply::NotLeader { leader: f.leader_id }
            }
            Ok(Err(e)) => WriteReply::Failed(e.to_string()),
            Err(_) => WriteReply::Failed("no majority committed the write in time".into()),
        }
    }

    /// Every voter as this one sees it: complete on the leader, which replicates to all.
    pub fn member_views(&self) -> Vec<ArbiterMember> {
        let metrics = self.raft().metrics().borrow().clone();
        let window = Duration::from_millis(self.timing.failover_after_ms);
        let role = |id: u64| if metrics.current_leader == Some(id) { "leader" } else { "follower" };
        self.voters
            .iter()
            .map(|(id, name, addr)| {
                if *id == self.id {
                    let state = match metrics.state {
                        ServerState::Leader => "leader",
                        ServerState::Follower => "follower",
                        ServerState::Candidate => "candidate",
                        ServerState::Learner => "learner",
                        ServerState::Shutdown => "shut down",
                    };
                    let index = |l: Option<openraft::LogId<u64>>| l.map_or("-".into(), |l| l.index.to_string());
                    let detail = format!(
                        "{state}, term {}, last log {}, applied {}, snapshot {}",
                        metrics.current_term,
                        metrics.last_log_index.map_or("-".into(), |i| i.to_string()),
                        index(metrics.last_applied),
                        index(metrics.snapshot),
                    );
                    let healthy = metrics.state != ServerState::Shutdown;
                    let leader = metrics.state == ServerState::Leader;
                    return ArbiterMember { name: name.clone(), address: addr.clone(), healthy, leader, detail };
                }
                let health = self.peers.by_id.get(id).map(|p| p.health()).unwrap_or_default();
                let recent = health.last_ok.is_some_and(|t| t.elapsed() < window);
                let mut detail = role(*id).to_string();
                if let Some(matched) = metrics.replication.as_ref().and_then(|r| r.get(id)) {
                    detail.push_str(&format!(", log {} matched", matched.map_or("-".into(), |l| l.index.to_string())));
                }
                match (&health.last_error, health.last_ok) {
                    (Some(e), _) => detail.push_str(&format!(", last error: {e}")),
                    (None, None) => detail.push_str(", no contact yet"),
                    (None, Some(t)) => detail.push_str(&format!(", last contact {} ms ago", t.elapsed().as_millis())),
                }
                let healthy = recent && health.last_error.is_none();
                let leader = metrics.current_leader == Some(*id);
                ArbiterMember { name: name.clone(), address: addr.clone(), healthy, leader, detail }
            })
            .collect()
    }

    fn contacted(&self, from: Option<u64>) {
        if let Some(peer) = from.and_then(|id| self.peers.by_id.get(&id)) {
            peer.contacted();
        }
    }
}

#[async_trait]
impl Handler for Core {
    async fn handle(&self, request: Request) -> Reply {
        match request {
            Request::AppendEntries(rpc) => {
                self.contacted(rpc.vote.leader_id().voted_for());
                Reply::AppendEntries(self.raft().append_entries(rpc).await)
            }
            Request::Vote(rpc) => {
                self.contacted(rpc.vote.leader_id().voted_for());
                Reply::Vote(self.raft().vote(rpc).await)
            }
            Request::InstallSnapshot(rpc) => {
                self.contacted(rpc.vote.leader_id().voted_for());
                Reply::InstallSnapshot(self.raft().install_snapshot(rpc).await)
            }
            Request::Write(cmd) => Reply::Write(self.local_write(cmd).await),
            Request::Status => Reply::Status(self.member_views()),
        }
    }
}
