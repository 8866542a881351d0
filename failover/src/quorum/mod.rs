//! The quorum arbiter: a small Raft group (openraft) of the data nodes and, with two data nodes,
//! a data-less witness. Its replicated state is who holds the Active role at which epoch
//! (`state.rs`); every call is one Raft write committed by a majority, so a member cut off from
//! the majority gets an error, never a decision.
//!
//! - `state.rs`: the replicated state and its commands (pure).
//! - `store.rs`: the durable log, vote and state machine (redb, fsync on every write).
//! - `net.rs`: the mutual-TLS transport between voters.
//! - `node.rs`: one voter: Raft, its listener, writes through the leader.
//!
//! One Raft group arbitrates every domain of its servers: each command names its domain, and the
//! state keeps a holder, epochs and reports per domain ([`QuorumArbiter::for_domain`]).
//!
//! Staleness is timed by each observer's own monotonic clock: a holder is stale for a node once
//! that node has seen no change of (holder, renewal count) for `failover_after_ms`, counted from
//! when the node stored the log entry of the last change (it applies the change once committed).
//! An entry reaches a node only after the call that wrote it began, so no node sees a holder
//! stale sooner than `failover_after_ms` after the holder's last successful renewal began; and a
//! renewal that a killed leader sent but did not commit, committed by the next leader after the
//! election, counts from when it arrived, not from the election.

mod net;
mod node;
mod state;
mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mgha_core::{ChangeoverError, Error, Result, Uid};
use mgha_sync::failover::{Arbiter, ArbiterStatus, FailoverTiming, Holder, HolderState, Report};
use mgha_sync::pki::TlsFiles;

use node::Node;
use state::{describe, CmdKind, CmdResponse};
pub use store::RAFT_FILE;

/// One voter of the arbiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumPeer {
    pub name: String,
    /// Where it listens for the other voters, HOST:PORT.
    pub address: String,
}

/// How a member (a data node or the witness) takes part in the arbiter.
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    /// This member's name: a node's name, or the witness's.
    pub name: String,
    /// This member's Raft listen address, HOST:PORT.
    pub listen: String,
    /// Every voter, this one included.
    pub members: Vec<QuorumPeer>,
    /// The Raft vote, log and state persist here.
    pub data_dir: PathBuf,
    pub timing: FailoverTiming,
    /// The cluster CA and this member's certificate.
    pub tls: TlsFiles,
}

/// The Raft node id of a voter: stable, from its name alone.
pub fn node_id(name: &str) -> u64 {
    let hash = blake3::hash(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(bytes)
}

/// Parses `a=HOST:PORT,b=HOST:PORT,...` (the command line's `--members`).
pub fn parse_members(text: &str) -> Result<Vec<QuorumPeer>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| match item.split_once('=') {
            Some((name, address)) if !name.trim().is_empty() && !address.trim().is_empty() => {
                Ok(QuorumPeer { name: name.trim().into(), address: address.trim().into() })
            }
            _ => Err(Error::InvalidArgument(format!("arbiter member {item:?}: expected NAME=HOST:PORT"))),
        })
        .collect()
}

/// Whether `listen` is where the others dial `address`: the same, or a wildcard host on the
/// same port.
fn listens_at(listen: &str, address: &str) -> bool {
    if listen == address {
        return true;
    }
    let port = |s: &str| s.rsplit_once(':').map(|(h, p)| (h.trim_matches(['[', ']']).to_string(), p.to_string()));
    match (port(listen), port(address)) {
        (Some((host, p1)), Some((_, p2))) => p1 == p2 && matches!(host.as_str(), "0.0.0.0" | "::" | ""),
        _ => false,
    }
}

/// Refuses a configuration the arbiter cannot decide safely with.
pub fn check_config(cfg: &QuorumConfig, data_nodes: usize) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(format!("quorum arbiter: {m}")));
    cfg.timing.validate().map_err(|e| Error::InvalidArgument(format!("failover timing: {e}")))?;
    let voters = cfg.members.len();
    if voters < 3 {
        if voters == 2 || data_nodes == 2 {
            return bad("two data nodes cannot decide alone: add a witness (`mgha witness`) or a third node".into());
        }
        return bad(format!("it needs at least 3 voters (a majority must survive the loss of one), got {voters}"));
    }
    if data_nodes > voters {
        return bad(format!("{data_nodes} data nodes but only {voters} voters: every data node must be a voter"));
    }
    let mut names = std::collections::BTreeSet::new();
    let mut ids = std::collections::BTreeSet::new();
    let mut addresses = std::collections::BTreeSet::new();
    for m in &cfg.members {
        if m.name.is_empty() || m.address.is_empty() {
            return bad(format!("a member needs a name and an address ({m:?})"));
        }
        if !names.insert(m.name.as_str()) {
            return bad(format!("the name '{}' appears twice among the members", m.name));
        }
        if !addresses.insert(m.address.as_str()) {
            return bad(format!("the address {} appears twice among the members", m.address));
        }
        if !ids.insert(node_id(&m.name)) {
            return bad(format!("the names of '{}' and another member hash to the same Raft id; rename one", m.name));
        }
    }
    match cfg.members.iter().find(|m| m.name == cfg.name) {
        None => bad(format!("this member '{}' is not among the members", cfg.name)),
        Some(me) if !listens_at(&cfg.listen, &me.address) => bad(format!(
            "this member '{}' listens on {} but the members list gives its address as {}",
            cfg.name, cfg.listen, me.address
        )),
        Some(_) => {
            if voters.is_multiple_of(2) {
                tracing::warn!(voters, "an even number of arbiter voters tolerates no more failures than one fewer");
            }
            Ok(())
        }
    }
}

/// The quorum arbiter of a data node, for one domain. The handle [`QuorumArbiter::start`]
/// returns is the server's own and arbitrates the global domain; [`QuorumArbiter::for_domain`]
/// gives cheap handles for the server's other domains, all over the same Raft node.
pub struct QuorumArbiter {
    node: Arc<Node>,
    /// `None`: the global domain.
    domain: Option<Uid>,
    /// The holder and its renewal count at this handle's last observation: an acquire that
    /// expects that holder also expects no renewal since (see `CmdKind::Acquire`).
    observed: std::sync::Mutex<Option<(Option<Holder>, u64)>>,
    /// The report this handle last committed, and when that write began: `observe` writes a
    /// report only when it changed or is due again ([`report_due`]).
    reported: std::sync::Mutex<Option<(Report, Instant)>>,
    /// The highest log index of this handle's committed writes: `observe` reads the state only
    /// once this member applied it, so a node always sees its own writes.
    written: std::sync::atomic::AtomicU64,
    /// Whether `close` stops the Raft node: only the server's own handle does.
    owner: bool,
}

impl std::fmt::Debug for QuorumArbiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.domain {
            None => write!(f, "QuorumArbiter({})", self.node.core.name),
            Some(d) => write!(f, "QuorumArbiter({}, domain {d})", self.node.core.name),
        }
    }
}

impl QuorumArbiter {
    /// Joins (or forms) the Raft group of `cfg.members`; `data_nodes` is how many of them hold
    /// data (the others are witnesses).
    pub async fn start(cfg: QuorumConfig, data_nodes: usize) -> Result<QuorumArbiter> {
        check_config(&cfg, data_nodes)?;
        let node = Node::start(&cfg).await?;
        tracing::info!(name = %cfg.name, listen = %cfg.listen, voters = cfg.members.len(), "quorum arbiter started");
        Ok(QuorumArbiter::handle(Arc::new(node), None, true))
    }

    /// The arbiter of another domain of this server (not the global one, which is this handle):
    /// its own holder, epochs and reports, through the same Raft group. Closing it leaves the
    /// Raft node running; closing the handle of [`QuorumArbiter::start`] stops it for all.
    pub fn for_domain(&self, domain: Uid) -> Arc<dyn Arbiter> {
        Arc::new(QuorumArbiter::handle(self.node.clone(), Some(domain), false))
    }

    fn handle(node: Arc<Node>, domain: Option<Uid>, owner: bool) -> QuorumArbiter {
        QuorumArbiter {
            node,
            domain,
            owner,
            observed: Default::default(),
            reported: Default::default(),
            written: Default::default(),
        }
    }

    /// Drops the state of `domain` (a domain deleted from the cluster, whose drivers have
    /// stopped): its holder, epochs and reports. Domain ids are never reused, so the epochs of
    /// a deleted domain fence nothing any more; without this the state would keep every domain
    /// that ever existed.
    pub async fn forget_domain(&self, domain: Uid) -> Result<()> {
        let deadline = self.deadline();
        match self.node.core.write(Some(domain), CmdKind::Forget, deadline).await?.0 {
            CmdResponse::Forgotten(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The voters and their health, and whether a majority answers: the same for every domain
    /// of the server, so [`Arbiter::status`] asks once per heartbeat for all of them.
    async fn members(&self) -> (Vec<mgha_sync::failover::ArbiterMember>, bool) {
        let core = &self.node.core;
        let metrics = core.raft().metrics().borrow().clone();
        let mut members = core.member_views();
        // A follower hears only from the leader; the leader sees every voter.
        if let Some(peer) = metrics.current_leader.filter(|l| *l != core.id).and_then(|l| core.peers.by_id.get(&l)) {
            if let Ok(net::Reply::Status(view)) = peer.client.call(&net::Request::Status, core.call_timeout).await {
                for m in &mut members {
                    if m.name == core.name {
                        continue;
                    }
                    if let Some(seen) = view.iter().find(|v| v.name == m.name) {
                        m.healthy = seen.healthy;
                        m.leader = seen.leader;
                        m.detail = if m.name == peer.name {
                            seen.detail.clone()
                        } else {
                            format!("{} (as the leader {} sees it)", seen.detail, peer.name)
                        };
                    }
                }
            }
        }
        for m in members.iter_mut().filter(|m| m.name == core.name) {
            m.detail.push_str(" (this member)");
        }
        let window = Duration::from_millis(core.timing.failover_after_ms);
        let leader_acked = metrics.current_leader == Some(core.id)
            && metrics.millis_since_quorum_ack.is_some_and(|ms| ms < core.timing.failover_after_ms);
        let committed = core.last_commit().is_some_and(|t| t.elapsed() < window);
        (members, metrics.current_leader.is_some() && (committed || leader_acked))
    }

    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.node.core.call_timeout
    }

    async fn write(&self, kind: CmdKind) -> Result<(CmdResponse, u64, tokio::time::Instant)> {
        let deadline = self.deadline();
        let (answer, index) = self.node.core.write(self.domain, kind, deadline).await?;
        self.written.fetch_max(index, std::sync::atomic::Ordering::SeqCst);
        Ok((answer, index, deadline))
    }

    /// Commits `me` as this node's report when it is due ([`report_due`]); a failed write is
    /// due again at the next call. Otherwise takes a read barrier ([`node::Core::barrier`]), so that the look that follows
    /// sees every write committed before it, as the report's own write would have.
    async fn report(&self, me: &Report) -> Result<()> {
        if !Arbiter::report_due(self, me) {
            let index = self.node.core.barrier(self.deadline()).await?;
            self.written.fetch_max(index, std::sync::atomic::Ordering::SeqCst);
            return Ok(());
        }
        let began = Instant::now();
        match self.write(CmdKind::Report { report: me.clone() }).await?.0 {
            CmdResponse::Reported => {
                *self.reported.lock().unwrap_or_else(|p| p.into_inner()) = Some((me.clone(), began));
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }
}

/// Whether a node's report must be committed again: it changed since the last one committed
/// (`last`, with when that write began), or the last one is a third of the failover timeout old.
/// Observers count a report only while it arrived within the failover timeout (by their own
/// clock), so a node that reports nothing new still shows among the candidates, and an idle
/// domain costs its arbiter a renewal per heartbeat and a report every few, not a report at
/// every look.
pub fn report_due(last: Option<&(Report, Instant)>, me: &Report, now: Instant, timing: &FailoverTiming) -> bool {
    match last {
        Some((report, at)) => {
            report != me || now.duration_since(*at) >= Duration::from_millis(timing.failover_after_ms / 3)
        }
        None => true,
    }
}

fn unexpected(answer: CmdResponse) -> Error {
    Error::Peer(format!("arbiter: unexpected answer {answer:?}"))
}

#[async_trait]
impl Arbiter for QuorumArbiter {
    async fn renew(&self, holder: Holder) -> Result<()> {
        match self.write(CmdKind::Renew { holder }).await?.0 {
            CmdResponse::Renewed(true) => Ok(()),
            CmdResponse::Renewed(false) => Err(ChangeoverError::ArbiterRefused {
                reason: format!(
                    "the renewal of {}: the holder is now {}",
                    describe(Some(holder)),
                    describe(self.node.core.shared.holder(self.domain))
                ),
            }
            .into()),
            other => Err(unexpected(other)),
        }
    }

    async fn observe(&self, me: &Report) -> Result<HolderState> {
        self.report(me).await?;
        let core = &self.node.core;
        let index = self.written.load(std::sync::atomic::Ordering::SeqCst);
        if !core.shared.wait_applied(index, self.deadline()).await {
            return Err(Error::Peer(format!("arbiter: this member did not apply log {index} in time")));
        }
        let view = core.shared.domain_view(self.domain);
        let now = Instant::now();
        let window = Duration::from_millis(core.timing.failover_after_ms);
        let state = view.state;
        *self.observed.lock().unwrap_or_else(|p| p.into_inner()) = Some((state.holder, state.renewals));
        if !state.reports.contains_key(&me.node_id) {
            // The domain's state was forgotten since this node reported: report at the next look.
            *self.reported.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        let reports = state
            .reports
            .values()
            .filter(|r| {
                view.seen
                    .reports_at
                    .get(&r.report.node_id)
                    .is_some_and(|(index, at)| *index == r.index && now.duration_since(*at) < window)
            })
            .map(|r| r.report.clone())
            .collect();
        let held_for = now.duration_since(view.seen.holder_at);
        let stale = state.holder.is_none() || held_for >= window;
        Ok(HolderState {
            holder: state.holder,
            stale,
            highest_epoch: state.highest_epoch,
            reports,
            stale_in_ms: (!stale).then(|| window.saturating_sub(held_for).as_millis() as u64),
        })
    }

    fn report_due(&self, me: &Report) -> bool {
        let reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        report_due(reported.as_ref(), me, Instant::now(), &self.node.core.timing)
    }

    async fn acquire(&self, me: &Report, expected: Option<Holder>, highest_known: u64) -> Result<Option<u64>> {
        let observed = *self.observed.lock().unwrap_or_else(|p| p.into_inner());
        let renewals = observed.filter(|(holder, _)| *holder == expected).map(|(_, r)| r);
        match self.write(CmdKind::Acquire { me: me.clone(), expected, highest_known, renewals }).await?.0 {
            CmdResponse::Acquired(epoch) => Ok(epoch),
            other => Err(unexpected(other)),
        }
    }

    async fn transfer(&self, from: Holder, to: Uid, epoch: u64) -> Result<()> {
        match self.write(CmdKind::Transfer { from, to, epoch }).await?.0 {
            CmdResponse::Transferred(Ok(())) => Ok(()),
            CmdResponse::Transferred(Err(why)) => {
                Err(ChangeoverError::ArbiterRefused { reason: format!("the transfer: {why}") }.into())
            }
            other => Err(unexpected(other)),
        }
    }

    async fn status(&self) -> ArbiterStatus {
        let core = &self.node.core;
        let (members, has_quorum) =
            core.status_cache.get_or_refresh(Duration::from_millis(core.timing.heartbeat_ms), || self.members()).await;
        ArbiterStatus { kind: "quorum".into(), members, has_quorum, holder: core.shared.holder(self.domain) }
    }

    async fn close(&self) {
        if self.owner {
            self.node.close().await;
        }
    }
}

/// The witness: a voter that holds no configuration and never reports nor campaigns; it only
/// votes and keeps the Raft log, so two data nodes have a majority without each other. Runs
/// until `shutdown` resolves.
pub async fn run_witness(cfg: QuorumConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    check_config(&cfg, cfg.members.len().saturating_sub(1))?;
    let node = Node::start(&cfg).await?;
    tracing::info!(name = %cfg.name, listen = %cfg.listen, voters = cfg.members.len(), "arbiter witness started");
    shutdown.await;
    node.close().await;
    tracing::info!(name = %cfg.name, "arbiter witness stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_from_the_command_line() {
        let m = parse_members("a=127.0.0.1:1, b=h:2,w=[::1]:3").expect("parses");
        assert_eq!(m.len(), 3);
        assert_eq!(m[2], QuorumPeer { name: "w".into(), address: "[::1]:3".into() });
        assert!(parse_members("a=1,b").is_err());
        assert!(parse_members("=h:1").is_err());
    }

    #[test]
    fn a_wildcard_listen_matches_its_port() {
        assert!(listens_at("0.0.0.0:7000", "10.0.0.1:7000"));
        assert!(listens_at("[::]:7000", "node-a:7000"));
        assert!(!listens_at("0.0.0.0:7001", "10.0.0.1:7000"));
        assert!(!listens_at("127.0.0.1:7000", "10.0.0.1:7000"));
    }

    #[test]
    fn node_ids_are_stable() {
        assert_eq!(node_id("a"), node_id("a"));
        assert_ne!(node_id("a"), node_id("b"));
    }

    #[test]
    fn a_report_is_committed_when_it_changed_or_ages_and_not_at_every_look() {
        let timing = FailoverTiming::default();
        let me = Report {
            node_id: Uid::new_random(),
            name: "a".into(),
            tag: 1,
            role: mgha_core::Role::Standby,
            epoch: 1,
            head_seq: 10,
            writable: true,
            ranks_per_domain: true,
        };
        let t0 = Instant::now();
        let later = |ms| t0 + Duration::from_millis(ms);
        assert!(report_due(None, &me, t0, &timing), "the first report");
        let last = (me.clone(), t0);
        assert!(!report_due(Some(&last), &me, later(timing.heartbeat_ms), &timing));
        let refresh = timing.failover_after_ms / 3;
        assert!(!report_due(Some(&last), &me, later(refresh - 1), &timing));
        assert!(report_due(Some(&last), &me, later(refresh), &timing), "aged: observers must keep seeing it");
        // Refreshed well inside the window in which observers count a report.
        assert!(2 * refresh < timing.failover_after_ms);
        for changed in [
            Report { head_seq: 11, ..me.clone() },
            Report { role: mgha_core::Role::Active, ..me.clone() },
            Report { epoch: 2, ..me.clone() },
            Report { writable: false, ..me.clone() },
        ] {
            assert!(report_due(Some(&last), &changed, later(1), &timing), "{changed:?}");
        }
    }
}
