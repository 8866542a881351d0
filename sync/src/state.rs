//! What the engine shares with the sync runtime: head notifications, the peer table that
//! `mgha status` shows, acknowledgements for synchronous publish, and the name of the Active a
//! Standby follows (for its read-only error). Plain locks and a condition variable, so the
//! synchronous engine and the async runtime can both use it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

use super::plan::SyncStatus;
use mgha_core::model::Uid;
use mgha_core::node::{Designation, Role};
use mgha_core::revision::{Head, Revision};
use mgha_core::status::FailoverStatus;
pub use mgha_core::status::PeerStatus;
use mgha_core::Replication;

/// Shared replication state of one engine.
pub struct SyncState {
    heads: watch::Sender<Head>,
    /// The newest revision committed here, until every peer holds it ([`SyncState::cached`]).
    last: Mutex<Option<Arc<Revision>>>,
    peers: Mutex<BTreeMap<Uid, PeerStatus>>,
    acked: Condvar,
    active_hint: Mutex<Option<String>>,
    events: tokio::sync::broadcast::Sender<NodeEvent>,
    failover: Mutex<Option<FailoverStatus>>,
    /// The latest role and epoch, for connection tasks that must end as soon as either changes.
    roles: watch::Sender<Option<(Role, u64)>>,
    /// Byte counters of each peer's connections, updated by the streams themselves.
    traffic: Mutex<BTreeMap<Uid, Arc<super::conn::Traffic>>>,
}

/// Something front ends may want to react to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum NodeEvent {
    RoleChanged { role: Role, epoch: u64 },
    SyncStatusChanged { peer: Uid, name: String, status: SyncStatus },
    Collision { branch: u64, peer: String, revisions: usize },
}

/// Events kept for slow receivers before the oldest are dropped.
const EVENTS_QUEUE_MAX: usize = 128;

impl std::fmt::Debug for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncState")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SyncState {
    /// Empty state; the engine reports its head as soon as it opens.
    pub fn new() -> SyncState {
        SyncState {
            heads: watch::channel(Head::default()).0,
            last: Mutex::new(None),
            peers: Mutex::new(BTreeMap::new()),
            acked: Condvar::new(),
            active_hint: Mutex::new(None),
            failover: Mutex::new(None),
            events: tokio::sync::broadcast::channel(EVENTS_QUEUE_MAX).0,
            roles: watch::channel(None).0,
            traffic: Mutex::new(BTreeMap::new()),
        }
    }

    /// Called after every durable commit (local publish or replicated apply).
    pub fn committed(&self, rev: Option<Arc<Revision>>, head: Head) {
        if let Some(rev) = rev {
            *lock(&self.last) = Some(rev);
        }
        self.heads.send_replace(head);
    }

    /// A receiver that wakes whenever this node's role or epoch changes.
    pub fn role_changes(&self) -> watch::Receiver<Option<(Role, u64)>> {
        self.roles.subscribe()
    }

    /// A receiver that wakes whenever the head moves.
    pub fn subscribe(&self) -> watch::Receiver<Head> {
        self.heads.subscribe()
    }

    pub fn head(&self) -> Head {
        *self.heads.borrow()
    }

    /// The newest revision committed here, if it is `seq` and a peer may still need it (saves a
    /// store read on the hot path).
    pub fn cached(&self, seq: u64) -> Option<Arc<Revision>> {
        lock(&self.last).as_ref().filter(|r| r.seq == seq).cloned()
    }

    /// Updates (or creates) a peer's entry.
    pub fn update_peer(&self, node_id: Uid, f: impl FnOnce(&mut PeerStatus)) {
        let mut peers = lock(&self.peers);
        let entry = peers.entry(node_id).or_insert_with(|| PeerStatus {
            node_id,
            name: String::new(),
            listen: String::new(),
            designation: Designation::Secondary,
            role: None,
            epoch: 0,
            head: Head::default(),
            status: SyncStatus::NeverSynchronized,
            lag_revisions: 0,
            lag_ms: 0,
            last_contact_ms: 0,
            connected: false,
            bytes_sent: 0,
            bytes_received: 0,
            apply_error: None,
        });
        let before = entry.status;
        f(entry);
        let (after, name) = (entry.status, entry.name.clone());
        // The newest revision is kept decoded for the streams that send it: once every peer
        // holds it, it only takes memory (a server with many idle domains kept one each).
        let mut last = lock(&self.last);
        if last.as_ref().is_some_and(|r| peers.values().all(|p| p.head.seq >= r.seq)) {
            *last = None;
        }
        drop(last);
        drop(peers);
        if before != after {
            self.emit(NodeEvent::SyncStatusChanged { peer: node_id, name, status: after });
        }
        self.acked.notify_all();
    }

    /// Drops a peer's entry (a member that was removed), counters included.
    pub fn forget_peer(&self, node_id: Uid) {
        lock(&self.peers).remove(&node_id);
        lock(&self.traffic).remove(&node_id);
        self.acked.notify_all();
    }

    pub fn peers(&self) -> Vec<PeerStatus> {
        let traffic = lock(&self.traffic);
        let mut peers: Vec<PeerStatus> = lock(&self.peers).values().cloned().collect();
        for p in &mut peers {
            if let Some(t) = traffic.get(&p.node_id) {
                (p.bytes_sent, p.bytes_received) = t.totals();
            }
        }
        peers
    }

    /// The byte counters of `peer`'s connections, kept across reconnections.
    pub(crate) fn traffic(&self, peer: Uid) -> Arc<super::conn::Traffic> {
        lock(&self.traffic).entry(peer).or_default().clone()
    }

    /// Waits until at least `needed` connected peers acknowledged `seq`, or `timeout` passes.
    /// Returns how many had acknowledged.
    pub fn wait_acks(&self, seq: u64, needed: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut peers = lock(&self.peers);
        loop {
            let acked = peers.values().filter(|p| p.head.seq >= seq && p.status != SyncStatus::Collision).count();
            let now = Instant::now();
            if acked >= needed || now >= deadline {
                return acked;
            }
            peers = self.acked.wait_timeout(peers, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Records a role change for observers (events, status).
    pub fn role_changed(&self, role: Role, epoch: u64) {
        self.roles.send_replace(Some((role, epoch)));
        let _ = self.events.send(NodeEvent::RoleChanged { role, epoch });
        if role == Role::Active {
            self.set_active_hint(None);
        }
    }

    /// Engine events for front ends (C callbacks, Python): role changes, collisions, peer
    /// status changes. Lagging receivers lose the oldest events, never block the engine.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    pub(crate) fn emit(&self, event: NodeEvent) {
        let _ = self.events.send(event);
    }

    pub fn set_active_hint(&self, name: Option<String>) {
        *lock(&self.active_hint) = name;
    }

    pub fn active_hint(&self) -> Option<String> {
        lock(&self.active_hint).clone()
    }

    /// What the failover driver last saw (None in manual mode).
    pub fn failover(&self) -> Option<FailoverStatus> {
        lock(&self.failover).clone()
    }

    /// Changes what the failover driver last saw in place (the arbiter's part, its members and
    /// their names, is replaced only when the driver checked it again).
    pub(crate) fn update_failover(&self, change: impl FnOnce(&mut Option<FailoverStatus>)) {
        change(&mut lock(&self.failover));
    }
}

impl Default for SyncState {
    fn default() -> SyncState {
        SyncState::new()
    }
}

impl Replication for SyncState {
    fn committed(&self, rev: Option<Arc<Revision>>, head: Head) {
        SyncState::committed(self, rev, head)
    }
    fn role_changed(&self, role: Role, epoch: u64) {
        SyncState::role_changed(self, role, epoch)
    }
    fn wait_acks(&self, seq: u64, needed: usize, timeout: Duration) -> usize {
        SyncState::wait_acks(self, seq, needed, timeout)
    }
    fn active_hint(&self) -> Option<String> {
        SyncState::active_hint(self)
    }
    fn peers(&self) -> Vec<PeerStatus> {
        SyncState::peers(self)
    }
    fn failover(&self) -> Option<FailoverStatus> {
        SyncState::failover(self)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
