//! The arbiter: the third vote that decides which node is Active when nodes cannot agree among
//! themselves. mgha does not run its own consensus; an arbiter wraps a proven engine (a small
//! Raft group with a data-less witness, or an existing etcd cluster). The failover driver
//! ([`super::driver`]) talks to it only through this trait, so the decision logic
//! ([`super::plan`]) is the same for every backend and is tested without one.
//!
//! Contract every backend keeps:
//! - At most one holder at a time, and every new holder gets a strictly higher epoch than any
//!   holder before it (epochs are the fencing tokens of [`mgha_core::roles::machine::epoch`]).
//! - `renew` succeeds only while the caller is still the holder at that epoch; once it fails, the
//!   caller must assume someone else may be made holder after the failover timeout.
//! - A holder that stops renewing becomes [`HolderState::stale`] for the other nodes no sooner
//!   than `failover_after_ms` after its last successful renewal began.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use mgha_core::status::{ArbiterMember, ArbiterStatus, Holder};

use mgha_core::error::Result;
use mgha_core::model::Uid;
use mgha_core::node::Role;

/// What a node tells the arbiter about itself at every heartbeat; candidates for a failover are
/// chosen from these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub node_id: Uid,
    pub name: String,
    /// The node's tag in epochs.
    pub tag: u16,
    pub role: Role,
    pub epoch: u64,
    /// The sequence number of the node's head revision.
    pub head_seq: u64,
    /// Whether the node's store can write (no failed commit since its last successful one). A
    /// node that cannot write does not take over, and does not stand in a better one's way.
    #[serde(default = "writable_by_default")]
    pub writable: bool,
    /// Whether the node breaks ties between equally up-to-date candidates per domain
    /// ([`super::plan::tie_rank`]) rather than by the smallest node id. False from a node that
    /// does not say (an older version): while any reporting node does not, every node breaks
    /// ties by the smallest id, so that all agree on one candidate.
    #[serde(default)]
    pub ranks_per_domain: bool,
}

/// A report from a node that does not say (an older version) could write.
fn writable_by_default() -> bool {
    true
}

/// What the arbiter says about the Active role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HolderState {
    /// The current holder, if any.
    pub holder: Option<Holder>,
    /// The holder has not renewed for the failover timeout (or there is none): a Standby may
    /// try to take over.
    pub stale: bool,
    /// The highest epoch the arbiter ever granted.
    pub highest_epoch: u64,
    /// The latest report of every node that reported within the failover timeout.
    pub reports: Vec<Report>,
    /// How long after this observation the holder turns stale if it renews no more, by the
    /// observer's clock. `None` when the backend cannot tell, or the holder is stale already:
    /// the driver then looks twice per heartbeat ([`super::plan::standby_pause`]).
    pub stale_in_ms: Option<u64>,
}

/// The third vote. Every call is bounded in time by the backend (well under the heartbeat).
#[async_trait]
pub trait Arbiter: Send + Sync + 'static {
    /// The Active confirms it still holds the role at `epoch`. An error means it must stop
    /// taking publishes (the driver fences it if renewals keep failing until the fence deadline).
    async fn renew(&self, holder: Holder) -> Result<()>;

    /// Records this node's report and reads the holder and the other reports.
    async fn observe(&self, me: &Report) -> Result<HolderState>;

    /// Makes `me` the holder at a new epoch, above `highest_known` and above every epoch the
    /// arbiter granted, if and only if the holder is still `expected` (None: there is no holder).
    /// Returns the new epoch, or None when another node won or the holder changed meanwhile.
    async fn acquire(&self, me: &Report, expected: Option<Holder>, highest_known: u64) -> Result<Option<u64>>;

    /// A planned changeover: hands the role from `from` to the node `to` at `epoch`, if and only
    /// if `from` still holds it. Afterwards `to` renews as the holder at `epoch`.
    async fn transfer(&self, from: Holder, to: Uid, epoch: u64) -> Result<()>;

    /// The arbiter's members and their health.
    async fn status(&self) -> ArbiterStatus;

    /// Whether `observe(me)` would write `me` as this node's report (it changed, or the last
    /// one ages). An Active whose renewal just succeeded holds the role at its epoch, so it
    /// observes only to report; without a report due it skips the look. By default a backend
    /// always reports.
    fn report_due(&self, me: &Report) -> bool {
        let _ = me;
        true
    }

    /// Releases what this node holds (an etcd lease, a Raft node) at shutdown.
    async fn close(&self) {}
}
