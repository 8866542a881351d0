//! Automatic failover with a third vote. Manual changeover is the default; with an arbiter
//! (a Raft quorum with a witness, or an etcd cluster; the backends live in crate
//! `mgha-failover`), a Standby takes over when the Active has not renewed its hold for the
//! failover timeout, and an Active that cannot renew stops taking publishes first.
//!
//! - [`arbiter`]: the contract of a backend.
//! - [`plan`]: the pure decisions (fence? campaign? who is the best candidate?), no I/O, no clock.
//! - [`driver`]: the task that runs the plan every heartbeat against the engine and the arbiter.

pub mod arbiter;
pub mod driver;
pub mod plan;

pub use arbiter::{Arbiter, ArbiterMember, ArbiterStatus, Holder, HolderState, Report};
pub use mgha_core::status::{FailoverMode, FailoverStatus};

use crate::EngineExt;
use serde::{Deserialize, Serialize};

impl Report {
    /// What the node of `engine` tells the arbiter about itself now.
    pub fn of(engine: &mgha_core::engine::Engine) -> mgha_core::Result<Report> {
        let node = engine.node()?;
        Ok(Report::again(engine, node.node_id, node.name, node.tag))
    }

    /// The same for a node whose identity (id, name, tag: fixed for the life of a store) the
    /// caller already read: no read of the store, for the failover driver's every tick.
    pub fn again(engine: &mgha_core::engine::Engine, node_id: mgha_core::Uid, name: String, tag: u16) -> Report {
        let (role, epoch) = engine.role();
        Report {
            node_id,
            name,
            tag,
            role,
            epoch,
            head_seq: engine.sync().head().seq,
            writable: engine.store_fault().is_none(),
            ranks_per_domain: true,
        }
    }
}

/// The timing of automatic failover.
///
/// Defaults: a heartbeat every second and failover after five. FortiManager's HA declares a
/// peer dead after 15 s and Patroni's leader lease is 30 s; both are tuned for WANs and for
/// databases whose promotion is expensive. A standby of mgha holds the full configuration and
/// takes over with one durable write, so the timeout only has to outlast a few lost heartbeats
/// and a GC or fsync stall: five heartbeats do, and a security team waits 5 s rather than 30.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverTiming {
    /// Renewals and reports happen this often.
    pub heartbeat_ms: u64,
    /// A Standby may take over once the Active has not renewed for this long.
    pub failover_after_ms: u64,
    /// A Standby more than this many revisions behind the most up-to-date node is never chosen.
    pub max_lag_revisions: u64,
}

impl Default for FailoverTiming {
    fn default() -> Self {
        FailoverTiming { heartbeat_ms: 1000, failover_after_ms: 5000, max_lag_revisions: 100 }
    }
}

impl FailoverTiming {
    /// An Active whose last successful renewal began this long ago stops taking publishes: well
    /// before any Standby may take over (`failover_after_ms`), with a margin of two heartbeats
    /// for clock-rate differences and the time the fence itself takes.
    pub fn fence_after_ms(&self) -> u64 {
        self.failover_after_ms.saturating_sub(2 * self.heartbeat_ms).max(self.heartbeat_ms)
    }

    /// Checks the relation the safety argument needs.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_ms == 0 {
            return Err("heartbeat_ms must be above 0".into());
        }
        if self.failover_after_ms < 3 * self.heartbeat_ms {
            return Err(format!(
                "failover_after_ms ({}) must be at least three heartbeats ({} ms): the Active fences itself \
                 two heartbeats before a Standby may take over",
                self.failover_after_ms,
                3 * self.heartbeat_ms
            ));
        }
        Ok(())
    }
}
