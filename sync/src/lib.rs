//! Synchronization between cluster members: the wire protocol, the pure decision of what a peer
//! needs, trust (cluster CA, node certificates, join keys), the tokio runtime that moves
//! revisions from the Active to its Standbys, and the automatic failover driver that runs in it.
//! The engine (crate `mgha-core`) knows none of this: it reports commits and role changes through
//! its [`Replication`](mgha_core::Replication) trait, which [`state::SyncState`] implements.

mod accept;
mod active;
mod branch;
mod changeover;
pub mod cluster;
pub mod compress;
mod conn;
pub mod failover;
mod forward;
mod grid;
pub mod join;
mod link;
pub mod membership;
pub mod pki;
pub mod plan;
pub mod runtime;
mod standby;
pub mod state;
pub mod tls;
pub mod wire;

pub use plan::SyncStatus;
pub use runtime::{SyncConfig, SyncRuntime, FORWARD_MARGIN_MS};

use std::path::Path;
use std::sync::Arc;

use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::{NodeState, Result};
use state::SyncState;

/// Opens the node in `dir` with a [`SyncState`] attached, ready for a [`SyncRuntime`].
pub fn open_engine(dir: &Path, options: EngineOptions) -> Result<Engine> {
    Engine::open_replicated(dir, options, Arc::new(SyncState::new()))
}

/// Creates a node's store in `dir` with a [`SyncState`] attached, ready for a [`SyncRuntime`].
pub fn create_engine(dir: &Path, node: &NodeState, options: EngineOptions) -> Result<Engine> {
    Engine::create_replicated(dir, node, options, Arc::new(SyncState::new()))
}

/// The replication state of an engine opened by [`open_engine`] or [`create_engine`].
pub trait EngineExt {
    /// The engine's [`SyncState`], or `None` for an engine opened detached
    /// ([`Engine::open`]), which nothing replicates.
    fn try_sync(&self) -> Option<&SyncState>;

    /// The engine's [`SyncState`].
    ///
    /// # Panics
    /// On an engine opened detached: every engine this crate serves is opened through
    /// [`open_engine`] or [`create_engine`], and [`SyncRuntime::start`] refuses any other, so
    /// reaching this with a detached engine is a defect of the caller, not a condition to handle.
    fn sync(&self) -> &SyncState {
        match self.try_sync() {
            Some(s) => s,
            None => panic!("engine opened without replication state; open it with mgha_sync::open_engine"),
        }
    }
}

impl EngineExt for Engine {
    fn try_sync(&self) -> Option<&SyncState> {
        self.replication().as_any().downcast_ref::<SyncState>()
    }
}
