//! mgha-core: the Management High Availability engine.
//!
//! A revisioned configuration database of security-management objects ([`store::Store`]),
//! wrapped by the [`engine::Engine`] that adds admin sessions, object locks and the role check.
//! This crate knows nothing of C, HTTP, the command line, Python, networking, async runtimes or
//! WebAssembly: replication reaches it through [`Replication`] (crate `mgha-sync`), and plugins
//! run on the [`plugin::runtime::WasmRuntime`] a front end installs (crate `mgha-plugin-host`).

pub mod backup;
pub mod changeset;
pub mod collision;
pub mod diff;
pub mod engine;
pub mod error;
mod group_commit;
pub mod json_scan;
pub mod limits;
pub mod merge;
pub mod model;
pub mod msgpack_shape;
pub mod node;
pub mod plugin;
pub mod private;
pub mod replication;
pub mod revision;
pub mod roles;
pub mod session;
pub mod status;
pub mod store;

pub use changeset::{ChangeInput, ChangeSet};
pub use diff::{Diff, DiffKind, FieldDiff, ObjectDiff};
pub use engine::Engine;
pub use error::{ChangeoverError, Error, ErrorCode, MemberError, Result};
pub use model::{Hash, Object, Uid};
pub use node::{Designation, NodeState, Role};
pub use replication::{Detached, Replication};
pub use revision::{Change, Head, Op, Revision, RevisionInfo};

/// Milliseconds since the Unix epoch, for revision timestamps.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Milliseconds of a monotonic clock since this process first asked, for leases and deadlines
/// that must not move when the wall clock is set.
pub fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}
