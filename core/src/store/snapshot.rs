//! Full sync: a consistent snapshot of a store (its objects, then its history: the floor and
//! every revision and undo record above it) streamed in bounded chunks from one MVCC read, and
//! the receiving side, which verifies every record before it keeps it and builds a new store
//! file beside the live one. The new store has the sender's floor, so no history is lost to a
//! full sync: a floor moves only through retention (`Store::purge`).

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::history::verify_follows;
use super::record::{self, seal_history, seal_with};
use super::tables::*;
use super::{decode, encode, Store};
use crate::error::{Error, Result};
use crate::model::validate::references;
use crate::model::{Hash, Object, StateHash, Uid};
use crate::node::NodeState;
use crate::revision::{Head, Revision};

/// What a snapshot holds, announced before its chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The newest revision: the objects are the state after it.
    pub head: Head,
    /// The newest purged revision: the history sent starts right after it.
    pub floor: Head,
    /// How many objects follow.
    pub objects: u64,
    /// How many revisions follow (`head.seq - floor.seq`).
    pub revisions: u64,
}

/// One revision of a snapshot's history as stored: the payloads of its revision record and of
/// its undo record (the objects it replaced), without their seals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub revision: serde_bytes::ByteBuf,
    pub undo: serde_bytes::ByteBuf,
}

/// One chunk of a snapshot: every object chunk comes before the first history chunk, and the
/// history goes up from the floor.
#[derive(Clone, Debug, PartialEq)]
pub enum SnapshotPart {
    /// Canonical encodings of objects.
    Objects(Vec<serde_bytes::ByteBuf>),
    /// The next revisions of the history, in order.
    History(Vec<HistoryRecord>),
}

impl Store {
    /// Streams a consistent snapshot (one MVCC read): `begin` with what it holds, then chunks
    /// of objects and then of history, each bounded by `chunk_items` and by `chunk_bytes` (an
    /// object chunk is cut after the object that crosses it; a history chunk before the record
    /// that would, so a record alone may make a chunk: one revision fits a frame, as
    /// `REVISION_BYTES_MAX` says). Every record is verified against its seal before it leaves.
    /// Returns the snapshot's head.
    pub fn snapshot_chunks(
        &self,
        chunk_items: usize,
        chunk_bytes: usize,
        begin: &mut dyn FnMut(SnapshotInfo) -> Result<()>,
        chunk: &mut dyn FnMut(SnapshotPart) -> Result<()>,
    ) -> Result<Head> {
        self.guard("snapshot_chunks", || {
            use redb::ReadableTableMetadata;
            let txn = self.begin_read()?;
            let (head, floor) = {
                let meta = txn.open_table(META)?;
                let read = |key: &str| -> Result<Head> {
                    let raw =
                        meta.get(key)?.ok_or_else(|| Error::Corrupt(format!("meta record '{key}' is missing")))?;
                    decode(raw.value(), key)
                };
                (read(META_HEAD)?, read(META_FLOOR)?)
            };
            let objects = txn.open_table(OBJECTS)?;
            let revisions = txn.open_table(REVISIONS)?;
            let undo = txn.open_table(UNDO)?;
            begin(SnapshotInfo { head, floor, objects: objects.len()?, revisions: revisions.len()? })?;
            let mut buf = Vec::new();
            let mut bytes = 0usize;
            for entry in objects.iter()? {
                let (k, v) = entry?;
                // Verified before it leaves: a damaged record fails the full sync here, not there.
                let (payload, _) = record::unseal(v.value(), || format!("object {:?}", Uid::from_slice(k.value())))?;
                bytes += payload.len();
                buf.push(serde_bytes::ByteBuf::from(payload.to_vec()));
                if buf.len() >= chunk_items || bytes >= chunk_bytes {
                    chunk(SnapshotPart::Objects(std::mem::take(&mut buf)))?;
                    bytes = 0;
                }
            }
            if !buf.is_empty() {
                chunk(SnapshotPart::Objects(buf))?;
            }
            let mut history: Vec<HistoryRecord> = Vec::new();
            let mut bytes = 0usize;
            for entry in revisions.iter()? {
                let (k, v) = entry?;
                let seq = k.value();
                let u = undo
                    .get(seq)?
                    .ok_or_else(|| Error::Corrupt(format!("undo record of revision {seq} is missing")))?;
                let rev = record::unseal_history(v.value(), || format!("revision {seq}"))?;
                let before = record::unseal_history(u.value(), || format!("undo record of revision {seq}"))?;
                let size = rev.len() + before.len();
                if !history.is_empty() && bytes + size > chunk_bytes {
                    chunk(SnapshotPart::History(std::mem::take(&mut history)))?;
                    bytes = 0;
                }
                bytes += size;
                history.push(HistoryRecord {
                    revision: serde_bytes::ByteBuf::from(rev.to_vec()),
                    undo: serde_bytes::ByteBuf::from(before.to_vec()),
                });
                if history.len() >= chunk_items {
                    chunk(SnapshotPart::History(std::mem::take(&mut history)))?;
                    bytes = 0;
                }
            }
            if !history.is_empty() {
                chunk(SnapshotPart::History(history))?;
            }
            Ok(head)
        })
    }
}

/// A full snapshot being received: objects and history go into a new store file beside the
/// live one, with non-durable chunk commits; [`SnapshotBuilder::finish`] verifies the state hash
/// and that the history reached the head, and commits durably. The caller then swaps the file
/// in (see `Engine::install_snapshot`).
pub struct SnapshotBuilder {
    store: Store,
    path: PathBuf,
    info: SnapshotInfo,
    state: StateHash,
    objects: u64,
    /// The last revision of the history received so far (the floor before the first).
    history_head: Head,
    revisions: u64,
}

impl SnapshotBuilder {
    /// Starts a snapshot at `path` (removed first if a previous attempt left it).
    pub fn begin(path: &Path, node: &NodeState, info: SnapshotInfo) -> Result<SnapshotBuilder> {
        if info.floor.seq > info.head.seq || info.head.seq - info.floor.seq != info.revisions {
            return Err(Error::Corrupt(format!(
                "a snapshot at revision {} with its floor at {} cannot hold {} revisions",
                info.head.seq, info.floor.seq, info.revisions
            )));
        }
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let store = Store::create(path, node)?;
        Ok(SnapshotBuilder {
            store,
            path: path.to_path_buf(),
            info,
            state: StateHash::default(),
            objects: 0,
            history_head: info.floor,
            revisions: 0,
        })
    }

    /// Adds one chunk of canonically encoded objects.
    pub fn add_chunk(&mut self, chunk: &[impl AsRef<[u8]>]) -> Result<()> {
        if self.revisions > 0 {
            return Err(Error::Corrupt("a snapshot sent objects after its history".into()));
        }
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

    /// Adds the next revisions of the history, each verified before it is kept: it follows the
    /// one before it (seq, parent, id), its undo record holds exactly the objects its changes
    /// replaced, and its state hash follows from the one before it and its changes. With the
    /// objects' state hash checked against the head at the end, every state hash of the history
    /// is then proven.
    pub fn add_history(&mut self, records: &[HistoryRecord]) -> Result<()> {
        if self.revisions + records.len() as u64 > self.info.revisions {
            return Err(Error::Corrupt(format!(
                "a snapshot sent more than the {} revisions it announced",
                self.info.revisions
            )));
        }
        let mut txn = self.store.begin_write()?;
        txn.set_durability(redb::Durability::None).map_err(|e| Error::Storage(e.into()))?;
        {
            let mut revisions = txn.open_table(REVISIONS)?;
            let mut undo = txn.open_table(UNDO)?;
            for r in records {
                let rev = Revision::decode(&r.revision)?;
                let before: Vec<Option<Object>> =
                    decode(&r.undo, &format!("snapshot undo record of revision {}", rev.seq))?;
                verify_follows(&self.history_head, &rev, &before)?;
                revisions.insert(rev.seq, seal_history(&r.revision).as_slice())?;
                undo.insert(rev.seq, seal_history(&r.undo).as_slice())?;
                self.history_head = rev.head();
                self.revisions += 1;
            }
        }
        self.store.commit_txn(txn)?;
        Ok(())
    }

    /// Verifies the snapshot against what it announced and commits it durably.
    pub fn finish(self) -> Result<PathBuf> {
        let head = self.info.head;
        let complete = self.objects == self.info.objects && self.state.to_hash() == head.state_hash;
        if !complete || self.revisions != self.info.revisions || self.history_head != head {
            let _ = std::fs::remove_file(&self.path);
            return Err(Error::Corrupt(format!(
                "snapshot of {} objects hashing to {} and {} revisions up to {} does not match the announced \
                 {} objects, state {} and {} revisions up to {}",
                self.objects,
                self.state.to_hash().short(),
                self.revisions,
                self.history_head.seq,
                self.info.objects,
                head.state_hash.short(),
                self.info.revisions,
                head.seq
            )));
        }
        self.store.index_plugin_references()?;
        let txn = self.store.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_HEAD, encode(&head).as_slice())?;
            meta.insert(META_FLOOR, encode(&self.info.floor).as_slice())?;
        }
        self.store.commit_txn(txn)?;
        Ok(self.path)
    }
}
