//! The Standby side of replication: applying a revision received from the Active (checking
//! everything the Active claims: parent, before-hashes, revision id, state hash, and changing
//! nothing when a check fails), and the reads the Active serves a Standby from. Full snapshots
//! are `snapshot.rs`.

use redb::{ReadableTable, WriteTransaction};

use super::tables::*;
use super::{decode, object_from_record, revision_from_record, CommitMeta, Store, Target};
use crate::changeset::ChangeSet;
use crate::error::{Error, Result};
use crate::model::Hash;
use crate::plugin::PLUGIN_TYPE;
use crate::revision::{Head, Revision};

impl Store {
    /// Applies the next revision of the Active's history, durably, after checking that it
    /// follows our head and reproduces the Active's id and state hash exactly.
    pub fn apply_replicated(&self, rev: &Revision) -> Result<Head> {
        let applied = self.apply_replicated_batch(vec![rev.clone()])?;
        applied.last().map(|r| r.head()).ok_or_else(|| Error::InvalidArgument("no revision to apply".into()))
    }

    /// Applies a run of the Active's revisions, each checked as [`Store::apply_replicated`]
    /// checks one, in one commit made durable once: one fsync for the run instead of one per
    /// revision. On a store with a publish log that takes the run, the commit does not wait for
    /// the disk and the run is appended to the log instead (`publish_log.rs`); otherwise it is a
    /// durable commit, which is a checkpoint. A revision that changes a plugin ends its commit
    /// there (the plugins are reloaded before the next is validated). Returns the applied
    /// revisions once durable; nothing of a commit that fails a check is kept.
    pub fn apply_replicated_batch(&self, revs: Vec<Revision>) -> Result<Vec<Revision>> {
        self.guard("apply_replicated_batch", || {
            if self.log_takes(&revs) {
                let mut txn = self.begin_write()?;
                // After the begin, which may reopen a failed handle; no reopen comes while the
                // transaction holds the writer.
                let generation = self.reopens();
                txn.set_durability(redb::Durability::None).map_err(|e| Error::Storage(e.into()))?;
                let mut out = Vec::with_capacity(revs.len());
                for rev in revs {
                    out.push(self.apply_in(&txn, rev)?);
                }
                self.commit_txn(txn)?;
                self.append_or_checkpoint(out.iter(), generation)?;
                return Ok(out);
            }
            let mut out = Vec::with_capacity(revs.len());
            let mut txn = self.begin_write()?;
            let mut dirty = false;
            for rev in revs {
                let applied = self.apply_in(&txn, rev)?;
                if applied.changes.iter().any(|c| c.type_name == PLUGIN_TYPE) {
                    self.commit_revision(txn, &applied)?;
                    txn = self.begin_write()?;
                    dirty = false;
                } else {
                    dirty = true;
                }
                out.push(applied);
            }
            if dirty {
                self.commit_checkpoint(txn)?;
            }
            Ok(out)
        })
    }

    /// Local publishes in bulk: each change set becomes its own revision (with its own
    /// message), in order, all in one durable commit. Plugin changes are refused here (each
    /// must reload the plugins, so they publish one at a time).
    pub fn publish_batch(&self, meta: &CommitMeta, changesets: &[ChangeSet]) -> Result<Vec<Revision>> {
        self.guard("publish_batch", || {
            if changesets.iter().flat_map(|c| c.changes.iter()).any(|c| c.type_name() == PLUGIN_TYPE) {
                return Err(Error::InvalidArgument("plugins are published one revision at a time".into()));
            }
            let txn = self.begin_write()?;
            let mut out = Vec::with_capacity(changesets.len());
            for c in changesets {
                let meta = CommitMeta { message: c.message.clone(), ..meta.clone() };
                let (targets, stored) = self.resolve(&txn, c.changes.clone())?;
                out.push(self.commit_resolved(&txn, &meta, targets, super::Origin::Local, stored)?);
            }
            self.commit_txn(txn)?;
            Ok(out)
        })
    }

    /// Checks and applies one replicated revision inside `txn`; returns it as applied.
    pub(super) fn apply_in(&self, txn: &WriteTransaction, rev: Revision) -> Result<Revision> {
        let head: Head = read_head(txn)?;
        if rev.seq != head.seq + 1 || rev.parent != head.id {
            return Err(Error::Diverged(format!(
                "revision {} does not follow our head {} ({})",
                rev.seq,
                head.seq,
                head.id.short()
            )));
        }
        let mut targets = Vec::with_capacity(rev.changes.len());
        // The versions read here are the ones the commit replaces: it takes them from here.
        let mut stored = super::commit::Stored::with_capacity(rev.changes.len());
        {
            let objects = txn.open_table(OBJECTS)?;
            for c in rev.changes {
                let current = match stored.entry(c.uid) {
                    std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(match objects.get(c.uid.as_bytes().as_slice())? {
                            Some(v) => Some(object_from_record(&c.uid, v.value())?),
                            None => None,
                        })
                    }
                };
                let current_hash = current.as_ref().map(|(_, h)| *h);
                if current_hash != c.before {
                    return Err(Error::Diverged(format!(
                        "revision {}: {} {} is not in the state the Active changed",
                        rev.seq, c.type_name, c.uid
                    )));
                }
                // Moved, not copied: a revision of hundreds of MB is held once.
                targets.push(Target { uid: c.uid, after: c.after });
            }
        }
        let meta = CommitMeta { author: rev.author, message: rev.message, epoch: rev.epoch, time_ms: rev.time_ms };
        let applied = self.commit_resolved(txn, &meta, targets, super::Origin::Replicated, stored)?;
        if applied.id != rev.id || applied.state_hash != rev.state_hash {
            return Err(Error::Diverged(format!(
                "revision {} reproduces id {} and state {}, the Active sent {} and {}",
                rev.seq,
                applied.id.short(),
                applied.state_hash.short(),
                rev.id.short(),
                rev.state_hash.short()
            )));
        }
        Ok(applied)
    }

    /// Copies this node's own records (identity, role, members, join keys) into `other`: a
    /// snapshot brings the Active's objects and head, never its identity.
    pub fn copy_local_meta(&self, other: &Store) -> Result<()> {
        self.guard("copy_local_meta", || {
            let read = self.begin_read()?;
            let from = read.open_table(META)?;
            let txn = other.begin_write()?;
            {
                let mut to = txn.open_table(META)?;
                for entry in from.iter()? {
                    let (k, v) = entry?;
                    if ![META_HEAD, META_FLOOR, META_FORMAT].contains(&k.value()) {
                        to.insert(k.value(), v.value())?;
                    }
                }
                // Collision branches are this node's record too: never dropped by a snapshot.
                if let Ok(from) = read.open_table(super::branches::BRANCHES) {
                    let mut to = txn.open_table(super::branches::BRANCHES)?;
                    for entry in from.iter()? {
                        let (k, v) = entry?;
                        to.insert(k.value(), v.value())?;
                    }
                }
            }
            other.commit_txn(txn)?;
            Ok(())
        })
    }

    /// Revisions `from ..= to` from one read snapshot, stopping after the one that brings the
    /// records read to `max_bytes` (so at least one): what the Active sends a Standby that is
    /// behind, read in runs rather than one transaction per revision.
    pub fn revisions_between(&self, from: u64, to: u64, max_bytes: usize) -> Result<Vec<Revision>> {
        let txn = self.begin_read()?;
        let table = txn.open_table(REVISIONS)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (expected, entry) in (from..).zip(table.range(from..=to)?) {
            let (k, v) = entry?;
            if k.value() != expected {
                break;
            }
            bytes += v.value().len();
            out.push(revision_from_record(k.value(), v.value())?);
            if bytes >= max_bytes {
                break;
            }
        }
        if out.is_empty() && from <= to {
            return Err(self.missing_revision(&txn, from)?);
        }
        Ok(out)
    }

    /// Our revision id at `seq`, if that revision is in our log (or is the floor).
    pub fn id_at(&self, seq: u64) -> Result<Option<Hash>> {
        self.guard("id_at", || {
            let floor = self.floor()?;
            if seq == floor.seq {
                return Ok(Some(floor.id));
            }
            let txn = self.begin_read()?;
            let table = txn.open_table(REVISIONS)?;
            Ok(match table.get(seq)? {
                Some(v) => Some(revision_from_record(seq, v.value())?.id),
                None => None,
            })
        })
    }
}

pub(super) fn read_head(txn: &WriteTransaction) -> Result<Head> {
    let meta = txn.open_table(META)?;
    let raw = meta.get(META_HEAD)?.ok_or_else(|| Error::Corrupt("meta record 'head' is missing".into()))?;
    decode(raw.value(), "head")
}
