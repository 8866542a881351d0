//! The Standby side of replication: applying a revision received from the Active, and
//! installing a full snapshot. Both check everything the Active claims (parent, before-hashes,
//! revision id, state hash) and change nothing when a check fails.

use redb::{ReadableTable, WriteTransaction};
use std::path::{Path, PathBuf};

use super::record::{self, seal_with};
use super::tables::*;
use super::{decode, encode, object_hash, revision_from_record, CommitMeta, Store, Target};
use crate::changeset::ChangeSet;
use crate::error::{Error, Result};
use crate::model::validate::references;
use crate::model::{Hash, Object, StateHash, Uid};
use crate::node::NodeState;
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
    /// checks one, in one durable commit: one fsync for the run instead of one per revision.
    /// A revision that changes a plugin ends its commit there (the plugins are reloaded before
    /// the next is validated). Returns the applied revisions; nothing of a commit that fails a
    /// check is kept.
    pub fn apply_replicated_batch(&self, revs: Vec<Revision>) -> Result<Vec<Revision>> {
        self.guard("apply_replicated_batch", || {
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
                self.commit_txn(txn)?;
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
                let targets = self.resolve(&txn, &c.changes)?;
                out.push(self.commit_targets(&txn, &meta, targets)?);
            }
            self.commit_txn(txn)?;
            Ok(out)
        })
    }

    /// Checks and applies one replicated revision inside `txn`; returns it as applied.
    fn apply_in(&self, txn: &WriteTransaction, rev: Revision) -> Result<Revision> {
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
        {
            let objects = txn.open_table(OBJECTS)?;
            for c in rev.changes {
                let current = match objects.get(c.uid.as_bytes().as_slice())? {
                    Some(v) => Some(object_hash(&c.uid, v.value())?),
                    None => None,
                };
                if current != c.before {
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
        let applied = self.commit_targets(txn, &meta, targets)?;
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

fn read_head(txn: &WriteTransaction) -> Result<Head> {
    let meta = txn.open_table(META)?;
    let raw = meta.get(META_HEAD)?.ok_or_else(|| Error::Corrupt("meta record 'head' is missing".into()))?;
    decode(raw.value(), "head")
}

/// A full snapshot being received: objects go into a new store file beside the live one, with
/// non-durable chunk commits; [`SnapshotBuilder::finish`] verifies the state hash and commits
/// durably. The caller then swaps the file in (see `Engine::install_snapshot`).
pub struct SnapshotBuilder {
    store: Store,
    path: PathBuf,
    state: StateHash,
    objects: u64,
    head: Head,
    expected_objects: u64,
}

impl SnapshotBuilder {
    /// Starts a snapshot at `path` (removed first if a previous attempt left it).
    pub fn begin(path: &Path, node: &NodeState, head: Head, expected_objects: u64) -> Result<SnapshotBuilder> {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let store = Store::create(path, node)?;
        Ok(SnapshotBuilder {
            store,
            path: path.to_path_buf(),
            state: StateHash::default(),
            objects: 0,
            head,
            expected_objects,
        })
    }

    /// Adds one chunk of canonically encoded objects.
    pub fn add_chunk(&mut self, chunk: &[impl AsRef<[u8]>]) -> Result<()> {
        let mut txn = self.store.begin_write()?;
        txn.set_durability(redb::Durability::None).map_err(|e| Error::Storage(e.into()))?;
        {
            let mut objects = txn.open_table(OBJECTS)?;
            let mut names = txn.open_table(NAMES)?;
            let mut refs = txn.open_table(REFS)?;
            for raw in chunk {
                let bytes = raw.as_ref();
                let o = Object::decode(bytes)?;
                if o.encode() != bytes {
                    return Err(Error::Corrupt(format!("snapshot object {} is not canonically encoded", o.uid)));
                }
                let hash = Hash::of(bytes);
                objects.insert(o.uid.as_bytes().as_slice(), seal_with(bytes, &hash).as_slice())?;
                names.insert(name_key(&o.type_name, &o.name).as_str(), o.uid.as_bytes().as_slice())?;
                if let Some(schema) = self.store.schemas().get(&o.type_name) {
                    for (_, target) in references(schema, &o.fields) {
                        refs.insert(ref_key(target.as_bytes(), o.uid.as_bytes()).as_slice(), ())?;
                    }
                }
                self.state.add(hash);
                self.objects += 1;
            }
        }
        self.store.commit_txn(txn)?;
        Ok(())
    }

    /// Verifies the snapshot against the head it claims and commits it durably.
    pub fn finish(self) -> Result<PathBuf> {
        if self.objects != self.expected_objects || self.state.to_hash() != self.head.state_hash {
            let _ = std::fs::remove_file(&self.path);
            return Err(Error::Corrupt(format!(
                "snapshot of {} objects hashing to {} does not match the announced {} objects and state {}",
                self.objects,
                self.state.to_hash().short(),
                self.expected_objects,
                self.head.state_hash.short()
            )));
        }
        self.store.index_plugin_references()?;
        let txn = self.store.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_HEAD, encode(&self.head).as_slice())?;
            meta.insert(META_FLOOR, encode(&self.head).as_slice())?;
        }
        self.store.commit_txn(txn)?;
        Ok(self.path)
    }
}

impl Store {
    /// Streams a consistent snapshot (one MVCC read): `begin(head, object count)`, then chunks
    /// of canonical object encodings bounded by count and bytes. Returns the snapshot's head.
    pub fn snapshot_chunks(
        &self,
        chunk_objects: usize,
        chunk_bytes: usize,
        begin: &mut dyn FnMut(Head, u64) -> Result<()>,
        chunk: &mut dyn FnMut(Vec<serde_bytes::ByteBuf>) -> Result<()>,
    ) -> Result<Head> {
        self.guard("snapshot_chunks", || {
            use redb::ReadableTableMetadata;
            let txn = self.begin_read()?;
            let head: Head = {
                let meta = txn.open_table(META)?;
                let raw = meta.get(META_HEAD)?.ok_or_else(|| Error::Corrupt("meta record 'head' is missing".into()))?;
                decode(raw.value(), "head")?
            };
            let objects = txn.open_table(OBJECTS)?;
            begin(head, objects.len()?)?;
            let mut buf = Vec::new();
            let mut bytes = 0usize;
            for entry in objects.iter()? {
                let (k, v) = entry?;
                // Verified before it leaves: a damaged record fails the full sync here, not there.
                let (payload, _) = record::unseal(v.value(), || format!("object {:?}", Uid::from_slice(k.value())))?;
                bytes += payload.len();
                buf.push(serde_bytes::ByteBuf::from(payload.to_vec()));
                if buf.len() >= chunk_objects || bytes >= chunk_bytes {
                    chunk(std::mem::take(&mut buf))?;
                    bytes = 0;
                }
            }
            if !buf.is_empty() {
                chunk(buf)?;
            }
            Ok(head)
        })
    }
}
