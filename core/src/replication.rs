//! What the engine asks of whatever replicates it, as a trait, so that the engine stays free of
//! networking and async runtimes: the sync runtime (crate `mgha-sync`) implements it; an engine
//! opened on its own (offline commands, backups, tests of the store) runs [`Detached`].

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::node::Role;
use crate::revision::{Head, Revision};
use crate::status::{FailoverStatus, PeerStatus};

/// The engine's side of replication. Every method is called from the engine's synchronous code
/// (publish, apply, role changes), so none of them may block except [`Replication::wait_acks`],
/// which blocks by contract and only for its timeout.
pub trait Replication: Send + Sync + 'static {
    /// After every durable commit (local publish, replicated apply, installed snapshot). `rev`
    /// is the revision that moved the head there, when there is one.
    fn committed(&self, rev: Option<Arc<Revision>>, head: Head);
    /// After the role machine durably moved to a new role or epoch.
    fn role_changed(&self, role: Role, epoch: u64);
    /// Blocks until `needed` peers acknowledged `seq`, or `timeout` passes; returns how many had.
    fn wait_acks(&self, seq: u64, needed: usize, timeout: Duration) -> usize;
    /// The name of the Active a Standby follows, when known (for its read-only error).
    fn active_hint(&self) -> Option<String>;
    /// The peers as this node sees them (lag is filled in by the engine).
    fn peers(&self) -> Vec<PeerStatus>;
    /// What automatic failover last saw; `None` in manual mode.
    fn failover(&self) -> Option<FailoverStatus>;
    /// For the implementation to find itself again behind the engine's `Arc<dyn Replication>`.
    fn as_any(&self) -> &dyn Any;
}

/// An engine that nothing replicates: no peers, no acknowledgements, no Active to name.
#[derive(Debug, Default)]
pub struct Detached;

impl Replication for Detached {
    fn committed(&self, _rev: Option<Arc<Revision>>, _head: Head) {}
    fn role_changed(&self, _role: Role, _epoch: u64) {}
    fn wait_acks(&self, _seq: u64, _needed: usize, _timeout: Duration) -> usize {
        0
    }
    fn active_hint(&self) -> Option<String> {
        None
    }
    fn peers(&self) -> Vec<PeerStatus> {
        Vec::new()
    }
    fn failover(&self) -> Option<FailoverStatus> {
        None
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
