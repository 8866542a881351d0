//! Collision branches: revisions that an old Active published after the fork point with the
//! current history. They are kept durably on the node that detected them until an administrator
//! resolves them, and kept (marked resolved) after that: a branch is never silently dropped.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{decode, encode, Store};
use crate::error::{Error, Result};
use crate::model::Uid;
use crate::revision::{Head, Revision};

/// id → encoded [`Branch`].
pub const BRANCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("branches");

/// How a branch was resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolution {
    /// The Active's state was kept; the branch stays here for the record.
    KeptActive,
    /// The branch's state was published as revision `seq`.
    TookBranch { seq: u64 },
    /// A three-way merge was published as revision `seq`.
    Merged { seq: u64, conflicts: usize },
}

/// Revisions an old Active published after the fork point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Branch {
    pub id: u64,
    /// The node that published them.
    pub node_id: Uid,
    pub node_name: String,
    /// The last revision both histories share.
    pub fork: Head,
    /// The branch's own revisions, in order, each following the previous one from the fork.
    pub revisions: Vec<Revision>,
    pub detected_ms: u64,
    pub resolved: Option<Resolution>,
    pub resolved_ms: Option<u64>,
}

impl Branch {
    /// Whether this branch's revisions are `other`'s, or the first of them, from the same fork.
    pub fn is_part_of(&self, other: &Branch) -> bool {
        self.fork == other.fork
            && self.revisions.len() <= other.revisions.len()
            && self.revisions.iter().zip(&other.revisions).all(|(a, b)| a.id == b.id)
    }

    /// The branch's head.
    pub fn head(&self) -> Head {
        self.revisions.last().map(Revision::head).unwrap_or(self.fork)
    }

    /// Checks that the revisions form a hash chain from the fork with valid ids.
    pub fn verify(&self) -> Result<()> {
        let mut prev = self.fork;
        for r in &self.revisions {
            if r.seq != prev.seq + 1 || r.parent != prev.id {
                return Err(Error::Corrupt(format!("branch revision {} does not follow {}", r.seq, prev.seq)));
            }
            r.verify_id()?;
            prev = r.head();
        }
        Ok(())
    }
}

impl Store {
    /// Keeps a new branch durably. Revisions already kept are kept once: a branch whose
    /// revisions are those of a kept branch from the same fork, or their first ones (a peer that
    /// received part of an old Active's branch before the heal), is that branch, whichever node
    /// it came from; merging it once resolves it everywhere.
    pub fn add_branch(&self, mut branch: Branch) -> Result<u64> {
        self.guard("add_branch", || {
            branch.verify()?;
            let txn = self.begin_write()?;
            let id = {
                let mut table = txn.open_table(BRANCHES)?;
                for entry in table.iter()? {
                    let (k, v) = entry?;
                    let b: Branch = decode(v.value(), "branch")?;
                    if branch.is_part_of(&b) {
                        return Ok(k.value());
                    }
                }
                let id = table.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
                branch.id = id;
                table.insert(id, encode(&branch).as_slice())?;
                id
            };
            self.commit_txn(txn)?;
            Ok(id)
        })
    }

    /// Every branch, resolved ones included, oldest first.
    pub fn branches(&self) -> Result<Vec<Branch>> {
        self.guard("branches", || {
            let txn = self.begin_read()?;
            let table = match txn.open_table(BRANCHES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (_, v) = entry?;
                out.push(decode(v.value(), "branch")?);
            }
            Ok(out)
        })
    }

    pub fn branch(&self, id: u64) -> Result<Branch> {
        self.guard("branch", || {
            self.branches()?
                .into_iter()
                .find(|b| b.id == id)
                .ok_or_else(|| Error::NotFound(format!("collision branch {id}")))
        })
    }

    /// Records how a branch was resolved.
    pub fn mark_resolved(&self, id: u64, how: Resolution) -> Result<()> {
        self.guard("mark_resolved", || {
            let txn = self.begin_write()?;
            {
                let mut table = txn.open_table(BRANCHES)?;
                let mut b: Branch = match table.get(id)? {
                    Some(v) => decode(v.value(), "branch")?,
                    None => return Err(Error::NotFound(format!("collision branch {id}"))),
                };
                if b.resolved.is_some() {
                    return Err(Error::InvalidArgument(format!("collision branch {id} is already resolved")));
                }
                b.resolved = Some(how);
                b.resolved_ms = Some(crate::now_ms());
                table.insert(id, encode(&b).as_slice())?;
            }
            self.commit_txn(txn)?;
            Ok(())
        })
    }
}
