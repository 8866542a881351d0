//! The admin API's bodies for the archive of a data directory (`DIR/archive/`): what each
//! archived store or backup is, and why it was kept. Its revisions, one revision and a diff use
//! the bodies of the live store's (`RevisionList`, `RevisionBody`, `DiffBody`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::HeadBody;

/// Why a store was archived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveReason {
    /// Its history diverged from the Active's (a collision): a backup of it was written before
    /// a full sync replaced it.
    Diverged,
    /// It was found damaged: the file itself was set aside before a full sync healed the node.
    Damaged,
    /// A backup file someone put there.
    Backup,
}

/// One entry of `GET /v1/archive`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveBody {
    /// The file's name in `DIR/archive/`: what `GET /v1/archive/{name}/…` takes.
    pub name: String,
    pub reason: ArchiveReason,
    /// When it was archived (ms since the Unix epoch), from its name.
    pub archived_ms: Option<u64>,
    /// The file's size.
    pub bytes: u64,
    /// Its newest revision; null when it cannot be read.
    pub head: Option<HeadBody>,
    /// Its newest purged revision: its history starts right after it.
    pub floor: Option<HeadBody>,
    /// How many revisions it holds.
    pub revisions: Option<u64>,
    /// What was found wrong when it was read for this listing; null when nothing was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage: Option<String>,
}

/// `GET /v1/archive`: oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveList {
    pub archives: Vec<ArchiveBody>,
}
