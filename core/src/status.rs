//! What a node reports of its replication and failover: the plain documents that the engine's
//! status carries and every front end shows. The sync runtime and the failover driver fill
//! them in through [`crate::replication::Replication`]; this module only defines them.

use serde::{Deserialize, Serialize};

use crate::model::Uid;
use crate::node::{Designation, Role};
use crate::revision::Head;

/// How a peer's database relates to the Active's, as `mgha status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncStatus {
    /// The peer never completed a synchronization.
    NeverSynchronized,
    /// Same head.
    Synchronized,
    /// The peer's head is an ancestor of ours: it misses revisions.
    Lagging,
    /// Our head is an ancestor of the peer's: it has revisions we lack.
    Advanced,
    /// The histories diverged.
    Collision,
    /// No connection to the peer.
    Unreachable,
    /// The peer (a Standby) receives revisions but cannot store them: its disk is full, say.
    /// [`PeerStatus::apply_error`] says why. It catches up by itself once it can write again.
    ApplyFailing,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::NeverSynchronized => "never synchronized",
            SyncStatus::Synchronized => "synchronized",
            SyncStatus::Lagging => "lagging",
            SyncStatus::Advanced => "advanced",
            SyncStatus::Collision => "collision",
            SyncStatus::Unreachable => "unreachable",
            SyncStatus::ApplyFailing => "apply failing",
        }
    }
}

impl std::fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One peer as this node sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub node_id: Uid,
    pub name: String,
    pub listen: String,
    pub designation: Designation,
    pub role: Option<Role>,
    pub epoch: u64,
    pub head: Head,
    pub status: SyncStatus,
    /// Revisions the peer is behind this node's head; on a Standby catching up, the entry of
    /// the Active it follows (status lagging) counts how far this node is behind the Active.
    pub lag_revisions: u64,
    /// Age of the oldest revision the peer has not acknowledged.
    pub lag_ms: u64,
    /// Unix milliseconds of the last frame from the peer; 0 when never.
    pub last_contact_ms: u64,
    pub connected: bool,
    /// Bytes written to and read from the peer's sync connections since this node started.
    #[serde(default)]
    pub bytes_sent: u64,
    #[serde(default)]
    pub bytes_received: u64,
    /// While the status is [`SyncStatus::ApplyFailing`]: why the Standby cannot apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_error: Option<String>,
}

/// How the Active role moves when the Active fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverMode {
    /// Only by an administrator (`mgha changeover`, `--force`).
    #[default]
    Manual,
    /// Automatically, decided by a Raft group of the nodes and a witness.
    Quorum,
    /// Automatically, decided by a leader key under a lease in an etcd cluster.
    Etcd,
}

impl std::fmt::Display for FailoverMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailoverMode::Manual => "manual",
            FailoverMode::Quorum => "quorum",
            FailoverMode::Etcd => "etcd",
        })
    }
}

/// The node the arbiter says is Active, and at which epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub node_id: Uid,
    pub epoch: u64,
}

/// One member of the arbiter (a Raft voter or an etcd endpoint) and whether it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArbiterMember {
    /// A node name, "witness", or an etcd endpoint.
    pub name: String,
    pub address: String,
    pub healthy: bool,
    /// Whether it leads the arbiter's own consensus (the Raft group's leader, or the etcd
    /// cluster's), as this node learned last. Absent (false) from nodes that do not say.
    #[serde(default)]
    pub leader: bool,
    /// Free text: the Raft role and log index, the etcd version, the last error.
    pub detail: String,
}

/// What `mgha status` shows of the arbiter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArbiterStatus {
    /// "quorum" or "etcd".
    pub kind: String,
    pub members: Vec<ArbiterMember>,
    /// The arbiter can decide now (a Raft majority or a reachable etcd cluster).
    pub has_quorum: bool,
    pub holder: Option<Holder>,
}

/// What `mgha status` shows of automatic failover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverStatus {
    pub mode: FailoverMode,
    pub heartbeat_ms: u64,
    pub failover_after_ms: u64,
    /// The arbiter, its members and their health (as of the last check).
    pub arbiter: Option<ArbiterStatus>,
    /// An Active: how long its lease still lets it publish.
    pub lease_left_ms: Option<u64>,
    /// A Standby: why it does not take over now.
    pub waiting: Option<String>,
    /// The last failed call to the arbiter, if the latest one failed.
    pub last_error: Option<String>,
}

/// What kind of failure keeps a store from writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteFaultKind {
    /// The filesystem is out of space (ENOSPC) or over its quota (EDQUOT).
    DiskFull,
    /// Any other I/O failure (EIO, say).
    Io,
}

impl WriteFaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteFaultKind::DiskFull => "disk full",
            WriteFaultKind::Io => "i/o error",
        }
    }
}

impl std::fmt::Display for WriteFaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a node's store cannot write, from its last failed commit until a commit (or a write
/// probe) succeeds again. While it is set, an Active under automatic failover does not renew
/// its lease and a Standby does not take over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreFault {
    pub kind: WriteFaultKind,
    /// The failed write's error, as the operating system reported it.
    pub error: String,
    /// Unix milliseconds of the first failure since the store last wrote.
    pub since_ms: u64,
    /// Whether the store was reopened after the failure (reads work; writes are retried),
    /// or is closed because reopening failed too (every operation tries again).
    pub reopened: bool,
}

impl std::fmt::Display for StoreFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.error)
    }
}
