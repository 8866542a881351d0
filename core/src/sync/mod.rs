//! Synchronization between cluster members: the wire protocol, the pure decision of what a peer
//! needs, trust (cluster CA, node certificates, join keys), and the tokio runtime that moves
//! revisions from the Active to its Standbys.

mod active;
mod branch;
mod changeover;
mod conn;
mod forward;
pub mod join;
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
