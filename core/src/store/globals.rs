//! The objects of another database that this store's objects may reference read-only, and the
//! other databases whose objects reference this one's. In a cluster of many domains (the node
//! library's `domains`), every domain reads the cluster's global domain through [`Globals`],
//! and the global domain asks every domain through [`Users`] before an object they use goes.
//! Core knows neither domains nor servers: only these two seams.

use crate::error::Result;
use crate::model::{Object, Uid};

/// Objects of another database that references may name (read-only).
pub trait Globals: Send + Sync {
    /// The object with this uid, if the other database holds it.
    fn object(&self, uid: &Uid) -> Result<Option<Object>>;
    /// The uid of the object of this type and name, if the other database holds it.
    fn named(&self, type_name: &str, name: &str) -> Result<Option<Uid>>;
}

/// Other databases whose objects may reference this store's.
pub trait Users: Send + Sync {
    /// For each of `uids` that another database this process holds references, a description
    /// of who does (`domain 'emea' (group 'web')`). Called inside the commit, under the
    /// publishing engine's locks: it must read local stores only, never wait on a network.
    fn users(&self, uids: &[Uid]) -> Result<Vec<(Uid, String)>>;

    /// The same for the databases held elsewhere (asked over the network), called by a publish
    /// before it takes any lock; an error when one that might use them cannot be asked.
    fn users_elsewhere(&self, uids: &[Uid]) -> Result<Vec<(Uid, String)>>;
}

/// Where a commit's object versions come from: a local publish (an admin's changes, a revert, a
/// merge) or a revision replicated from the Active, which checked them already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Local,
    Replicated,
}
