//! History operations: diff between two revisions, revert to a revision, purge of old revisions.
//! Diff and revert walk only the revisions between the two points (their undo records give the
//! older versions), so their cost follows the number of changes, not the size of the database.

use redb::{ReadTransaction, ReadableTable};
use std::collections::HashMap;

use super::tables::*;
use super::{encode, CommitMeta, Store, Target};
use crate::diff::{Diff, ObjectDiff};
use crate::error::{Error, Result};
use crate::limits::DIFF_CHANGES_MAX;
use crate::model::{Hash, Object, StateHash, Uid};
use crate::revision::{Head, Revision};

/// For each object changed in a span: its version before the span and after it.
pub(crate) type Span = Vec<(Uid, Option<Object>, Option<Object>)>;

impl Store {
    /// Field-level differences from revision `from` to revision `to` (either order).
    pub fn diff(&self, from: u64, to: u64) -> Result<Diff> {
        self.guard("diff", || {
            let txn = self.begin_read()?;
            let (lo, hi) = (from.min(to), from.max(to));
            let span = self.span(&txn, lo, hi)?;
            let mut objects: Vec<ObjectDiff> = span
                .iter()
                .filter_map(|(_, b, a)| ObjectDiff::between(b.as_ref(), a.as_ref()))
                .map(|d| if from > to { d.reversed() } else { d })
                .collect();
            objects.sort_by(|a, b| (&a.type_name, &a.name, a.uid).cmp(&(&b.type_name, &b.name, b.uid)));
            Ok(Diff { from, to, objects })
        })
    }

    /// Publishes a new revision whose state equals the state after revision `to`.
    pub fn revert(&self, to: u64, meta: &CommitMeta) -> Result<Revision> {
        self.guard("revert", || {
            // Holding the write transaction first means no publish can commit between reading the
            // span and committing the revert: the snapshot read below is the latest state.
            let write = self.begin_write()?;
            let targets: Vec<Target> = {
                let read = self.begin_read()?;
                let head = self.head_in(&read)?;
                if to > head.seq {
                    return Err(Error::UnknownRevision(to));
                }
                // The domain registry is the node's to change: a revert of the global domain
                // restores objects, never creates, deletes or moves a domain.
                let managed = |o: &Option<Object>| {
                    o.as_ref().is_some_and(|o| crate::model::schema::MANAGED_TYPES.contains(&o.type_name.as_str()))
                };
                self.span(&read, to, head.seq)?
                    .into_iter()
                    .filter(|(_, before, now)| !managed(before) && !managed(now))
                    .map(|(uid, before, _)| Target { uid, after: before })
                    .collect()
            };
            let rev = self.commit_targets(&write, meta, targets)?;
            self.commit_revision(write, &rev)?;
            Ok(rev)
        })
    }

    fn head_in(&self, txn: &ReadTransaction) -> Result<Head> {
        let meta = txn.open_table(META)?;
        let raw = meta.get(META_HEAD)?.ok_or_else(|| Error::Corrupt("meta record 'head' is missing".into()))?;
        super::decode(raw.value(), "head")
    }

    /// Every object changed since revision `from`, with its version then and now (one snapshot).
    pub(crate) fn changed_since(&self, from: u64) -> Result<Span> {
        self.guard("changed_since", || {
            let txn = self.begin_read()?;
            let head = self.head_in(&txn)?;
            self.span(&txn, from, head.seq)
        })
    }

    /// Every object changed between revisions `lo` and `hi` (lo <= hi), with its versions at
    /// `lo` and at `hi`, in order of first change.
    fn span(&self, txn: &ReadTransaction, lo: u64, hi: u64) -> Result<Span> {
        let meta = txn.open_table(META)?;
        let head: Head = super::decode(&meta.get(META_HEAD)?.map(|v| v.value().to_vec()).unwrap_or_default(), "head")?;
        let floor: Head =
            super::decode(&meta.get(META_FLOOR)?.map(|v| v.value().to_vec()).unwrap_or_default(), "floor")?;
        if hi > head.seq {
            return Err(Error::UnknownRevision(hi));
        }
        if lo < floor.seq {
            return Err(Error::RevisionPurged { seq: lo, oldest: floor.seq });
        }
        let mut index: HashMap<Uid, usize> = HashMap::new();
        let mut span: Span = Vec::new();
        let mut total = 0usize;
        for seq in lo + 1..=hi {
            let rev = self.revision_in(txn, seq)?;
            let undo = self.undo_in(txn, seq)?;
            if undo.len() != rev.changes.len() {
                return Err(Error::Corrupt(format!("revision {seq}: undo record does not match its changes")));
            }
            total += rev.changes.len();
            if total > DIFF_CHANGES_MAX {
                return Err(Error::InvalidArgument(format!(
                    "revisions {lo}..{hi} hold over {DIFF_CHANGES_MAX} changes; diff a shorter span"
                )));
            }
            for (change, before) in rev.changes.into_iter().zip(undo) {
                match index.get(&change.uid) {
                    Some(&i) => span[i].2 = change.after,
                    None => {
                        index.insert(change.uid, span.len());
                        span.push((change.uid, before, change.after));
                    }
                }
            }
        }
        Ok(span)
    }

    /// Drops revisions older than the newest `keep`; returns how many were dropped. A peer that
    /// needs a dropped revision gets a full sync instead.
    pub fn purge(&self, keep: u64) -> Result<u64> {
        self.guard("purge", || {
            let head = self.head()?;
            let floor = self.floor()?;
            let new_floor = head.seq.saturating_sub(keep);
            if new_floor <= floor.seq {
                return Ok(0);
            }
            let txn = self.begin_write()?;
            {
                let mut revisions = txn.open_table(REVISIONS)?;
                let floor_head = match revisions.get(new_floor)? {
                    Some(v) => super::revision_from_record(new_floor, v.value())?.head(),
                    None => return Err(Error::Corrupt(format!("revision {new_floor} is missing"))),
                };
                revisions.retain_in(..=new_floor, |_, _| false)?;
                txn.open_table(UNDO)?.retain_in(..=new_floor, |_, _| false)?;
                txn.open_table(META)?.insert(META_FLOOR, encode(&floor_head).as_slice())?;
            }
            self.commit_txn(txn)?;
            Ok(new_floor - floor.seq)
        })
    }
}

/// Checks that revision `rev`, with its undo record `undo`, follows `prev` in a history: its seq,
/// parent and id; each entry of its undo record is the object its change replaced (by hash, so
/// diffs and reverts through it see what really was); and its state hash is `prev`'s with its
/// changes applied. What the history of a full sync and the full check verify, record by record.
pub(crate) fn verify_follows(prev: &Head, rev: &Revision, undo: &[Option<Object>]) -> Result<()> {
    if rev.seq != prev.seq + 1 || rev.parent != prev.id {
        return Err(Error::Corrupt(format!("revision {} does not follow revision {}", rev.seq, prev.seq)));
    }
    let afters = rev.verify_id_and_after_hashes()?;
    if undo.len() != rev.changes.len() {
        return Err(Error::Corrupt(format!("revision {}: undo record does not match its changes", rev.seq)));
    }
    let mut state = StateHash::from_hash(prev.state_hash);
    for ((change, before), after) in rev.changes.iter().zip(undo).zip(afters) {
        let not_replaced = || {
            Error::Corrupt(format!(
                "revision {}: the undo record of {} {} is not the object the revision replaced",
                rev.seq, change.type_name, change.uid
            ))
        };
        let replaced = match before {
            Some(o) if o.uid != change.uid => return Err(not_replaced()),
            Some(o) => Some(Hash::of(&o.encode())),
            None => None,
        };
        if replaced != change.before {
            return Err(not_replaced());
        }
        if let Some(h) = change.before {
            state.sub(h);
        }
        match (&change.after, after) {
            (Some(o), Some(hash)) if o.uid == change.uid => state.add(hash),
            (Some(o), _) => {
                return Err(Error::Corrupt(format!(
                    "revision {}: a change of {} holds object {}",
                    rev.seq, change.uid, o.uid
                )))
            }
            (None, _) => {}
        }
    }
    if state.to_hash() != rev.state_hash {
        return Err(Error::Corrupt(format!(
            "revision {}: its state hash {} does not follow from revision {} and its changes",
            rev.seq,
            rev.state_hash.short(),
            prev.seq
        )));
    }
    Ok(())
}
