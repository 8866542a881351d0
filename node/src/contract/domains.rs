//! The documents of a cluster's domains: the list (`GET /v1/domains`), one domain as this
//! server sees it, and what creating, deleting, moving and rebalancing answer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A domain as this server sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainBody {
    pub name: String,
    /// The domain id (the cluster id for the global domain).
    pub id: String,
    /// Whether it is the cluster's first domain, on every server, holding the registry and the
    /// objects every domain may reference.
    pub global: bool,
    /// The servers that hold a replica of it.
    pub replicas: Vec<String>,
    /// Whether this server holds a replica.
    pub here: bool,
    /// How many of its newest revisions the domain keeps, when it has a number of its own
    /// (absent: each server's `retain_revisions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_revisions: Option<u64>,
    /// This server's replica: `active` or `standby` (absent when it holds none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// This server's replica's epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// The server whose replica is Active, as far as this server knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    /// This server's replica's head revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_seq: Option<u64>,
    /// Objects in this server's replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<u64>,
    /// The sync status of each other replica, as this server's replica sees it (`synchronized`,
    /// `lagging`, …), by server name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<DomainPeerBody>,
}

/// Another replica of a domain, as this server's replica sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainPeerBody {
    pub name: String,
    /// `active` or `standby`; absent when not known yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub status: String,
    pub lag_revisions: u64,
    pub connected: bool,
}

/// `GET /v1/domains`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainList {
    pub domains: Vec<DomainBody>,
}

/// `POST /v1/domains`: a new domain, on `on` (server names, the first Active) or on `replicas`
/// servers chosen to spread the load (default 2, or every server when there are fewer).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainCreateBody {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<String>>,
    /// How many of its newest revisions the domain keeps (at least 1); absent: each server's
    /// `retain_revisions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_revisions: Option<u64>,
}

/// `PUT /v1/domains/{domain}/retention`: how many of its newest revisions a domain keeps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainRetentionBody {
    /// At least 1; `null` (or absent): each server's `retain_revisions` applies again.
    #[serde(default)]
    pub retain_revisions: Option<u64>,
}

/// What deleting a domain did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainDeletedBody {
    pub name: String,
    /// The backup of this server's replica written before a forced delete, when it held one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

/// `POST /v1/domains/{domain}/move`: moves a replica from one server to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainMoveBody {
    pub from: String,
    pub to: String,
}

/// One planned changeover of a rebalance, and how it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebalanceMoveBody {
    pub domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    /// The new epoch, when the changeover succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Why it did not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /v1/domains/rebalance`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebalanceBody {
    pub moves: Vec<RebalanceMoveBody>,
}
