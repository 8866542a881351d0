//! Resolving collision branches: show what a branch changed, and resolve it by keeping the
//! Active's state, taking the branch's, or a three-way merge (see [`crate::merge`]) published as
//! one new revision, which then replicates like any other.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::diff::ObjectDiff;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::merge::{merge_states_with, resolve, Conflict, MergeOutcome, Resolution};
use crate::model::{Object, Uid};
use crate::store::{Branch, BranchResolution, Target};

/// How an administrator resolves a branch.
#[derive(Clone, Debug)]
pub enum ResolveHow {
    /// Keep the Active's state; the branch is kept on record.
    KeepActive,
    /// Publish the branch's state.
    KeepBranch,
    /// Publish a three-way merge; conflicts settled by `resolution`.
    Merge(Resolution),
}

/// What a branch changed and what the Active changed since the fork, field by field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollisionDiff {
    pub branch: u64,
    pub fork: u64,
    /// From the fork to the branch's head.
    pub branch_changes: Vec<ObjectDiff>,
    /// From the fork to the Active's head.
    pub active_changes: Vec<ObjectDiff>,
    /// What a merge would leave to resolve.
    pub conflicts: Vec<Conflict>,
}

/// The outcome of a resolution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    pub branch: u64,
    /// The revision published, if any.
    pub seq: Option<u64>,
    pub conflicts_resolved: usize,
}

/// Builds the resolution record from the published revision and the conflicts settled.
type RecordFn = fn(u64, usize) -> BranchResolution;

/// For each object either side changed since the fork: (base, active, branch) versions.
type Versions = BTreeMap<Uid, (Option<Object>, Option<Object>, Option<Object>)>;

fn versions(engine: &Engine, branch: &Branch) -> Result<Versions> {
    let store = engine.store();
    let mut out: Versions = BTreeMap::new();
    for (uid, before, after) in store.changed_since(branch.fork.seq)? {
        out.insert(uid, (before.clone(), after, before));
    }
    let mut branch_after: BTreeMap<Uid, Option<Object>> = BTreeMap::new();
    for rev in &branch.revisions {
        for c in &rev.changes {
            branch_after.insert(c.uid, c.after.clone());
        }
    }
    for (uid, after) in branch_after {
        match out.get_mut(&uid) {
            Some(entry) => entry.2 = after,
            None => {
                // Unchanged on the Active since the fork: its current version is the base.
                let base = store.get_by_uid(&uid)?;
                out.insert(uid, (base.clone(), base, after));
            }
        }
    }
    Ok(out)
}

/// The merge of a branch, with plugin types merged by their plugins.
fn merge_outcome(engine: &Engine, v: &Versions) -> Result<MergeOutcome> {
    let plugins = engine.store().plugins();
    let changed = v.iter().map(|(uid, (b, a, br))| (*uid, b.clone(), a.clone(), br.clone()));
    merge_states_with(plugins.schemas(), &*plugins, changed)
}

fn open_branch(engine: &Engine, id: u64) -> Result<Branch> {
    let branch = engine.store().branch(id)?;
    if branch.resolved.is_some() {
        return Err(Error::InvalidArgument(format!("collision branch {id} is already resolved")));
    }
    Ok(branch)
}

impl Engine {
    /// Every collision branch this node keeps, resolved ones included.
    pub fn collisions(&self) -> Result<Vec<Branch>> {
        self.store().branches()
    }

    /// What the branch and the Active each changed since the fork, and the merge's conflicts.
    pub fn collision_diff(&self, id: u64) -> Result<CollisionDiff> {
        let branch = self.store().branch(id)?;
        let v = versions(self, &branch)?;
        let branch_changes = v.values().filter_map(|(b, _, br)| ObjectDiff::between(b.as_ref(), br.as_ref())).collect();
        let active_changes = v.values().filter_map(|(b, a, _)| ObjectDiff::between(b.as_ref(), a.as_ref())).collect();
        let conflicts = merge_outcome(self, &v)?.conflicts;
        Ok(CollisionDiff { branch: id, fork: branch.fork.seq, branch_changes, active_changes, conflicts })
    }

    /// Resolves a branch. Taking the branch or merging publishes one revision; every way records
    /// the resolution and keeps the branch on record. Only the Active resolves (a Standby is
    /// `ReadOnly`, whatever the way): it holds the branches, and its decision replicates.
    pub fn resolve_collision(&self, id: u64, how: ResolveHow, author: &str) -> Result<Resolved> {
        self.refuse_on_standby()?;
        let branch = open_branch(self, id)?;
        let (targets, conflicts, record): (Vec<Target>, usize, RecordFn) = match &how {
            ResolveHow::KeepActive => {
                self.store().mark_resolved(id, BranchResolution::KeptActive)?;
                return Ok(Resolved { branch: id, seq: None, conflicts_resolved: 0 });
            }
            ResolveHow::KeepBranch => {
                let v = versions(self, &branch)?;
                let targets = v
                    .into_iter()
                    .filter(|(_, (_, a, br))| a != br)
                    .map(|(uid, (_, _, br))| Target { uid, after: br })
                    .collect();
                (targets, 0, |seq, _| BranchResolution::TookBranch { seq })
            }
            ResolveHow::Merge(resolution) => {
                let outcome = merge_outcome(self, &versions(self, &branch)?)?;
                let n = outcome.conflicts.len();
                let resolved = resolve(&outcome, resolution).map_err(|e| Error::InvalidArgument(e.to_string()))?;
                let targets = resolved.into_iter().map(|(uid, after)| Target { uid, after }).collect();
                (targets, n, |seq, conflicts| BranchResolution::Merged { seq, conflicts })
            }
        };
        let message = format!("resolve collision branch {id} from {} ({})", branch.node_name, how_name(&how));
        // What the resolution deletes: the databases held elsewhere are asked first, as for a
        // publish's deletes (those held here are asked inside the commit).
        let store = self.store();
        let gone: Vec<_> = targets
            .iter()
            .filter(|t| t.after.is_none())
            .filter_map(|t| store.get_by_uid(&t.uid).ok().flatten())
            .collect();
        drop(store);
        self.check_deleted_elsewhere(gone.iter().map(|o| (o.uid, o.type_name.as_str(), o.name.clone())).collect())?;
        let seq = if targets.is_empty() {
            None
        } else {
            Some(
                self.publish_with(author, &message, |store, meta| {
                    self.check_targets_unlocked(targets.iter().map(|t| (&t.uid, t.after.as_ref())))?;
                    store.publish_targets(meta, targets)
                })?
                .seq,
            )
        };
        self.store().mark_resolved(id, record(seq.unwrap_or(0), conflicts))?;
        Ok(Resolved { branch: id, seq, conflicts_resolved: conflicts })
    }
}

fn how_name(how: &ResolveHow) -> &'static str {
    match how {
        ResolveHow::KeepActive => "kept the active's state",
        ResolveHow::KeepBranch => "took the branch",
        ResolveHow::Merge(_) => "merged",
    }
}
