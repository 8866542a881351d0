//! Full sync: a consistent snapshot of a store (its objects, then its history: the floor and
//! every revision and undo record above it) streamed in bounded chunks from one MVCC read, and
//! the receiving side, which verifies every record before it keeps it and builds a new store
//! file beside the live one. The new store has the sender's floor, so no history is lost to a
//! full sync: a floor moves only through retention (`Store::purge`).

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use super::history::verify_follows;
use super::record::{self, seal_history, seal_with};
use super::tables::*;
use super::{decode, encode, Store};
use crate::error::{Error, Result};
use crate::limits::{SNAPSHOT_LOAD_QUEUE_CHUNKS, SNAPSHOT_NAMES_SORT_BYTES};
use crate::model::schema::Schemas;
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

/// A full snapshot being received. Two threads share the work: the caller's verifies (decodes
/// each object and checks its canonical encoding, hashes and seals it; decodes each history
/// record and checks it with `history::verify_follows`), while a loader thread of its own
/// inserts what was verified into a new store file beside the live one. Objects and history
/// arrive in key order (uid, then seq), so the loader appends them through redb cursors, which
/// build full leaves instead of descending the B-tree once per record; a record out of order
/// is refused. Names are gathered and inserted sorted ([`SortedNames`]). The loader commits
/// without waiting for the disk as it goes; the head is recorded in its last commit, after
/// [`SnapshotBuilder::finish`] verified the state hash and that the history reached the head,
/// and one durable commit follows: the file is never a store with a head until then, and the
/// caller swaps it in only afterwards (see `Engine::install_snapshot`). A process that dies
/// meanwhile leaves a file that the next open removes (`SNAPSHOT_FILE`), and the full sync
/// starts again. Memory stays within a few chunks and the names being sorted: at most
/// [`SNAPSHOT_LOAD_QUEUE_CHUNKS`] verified chunks wait for the loader.
pub struct SnapshotBuilder {
    path: PathBuf,
    info: SnapshotInfo,
    schemas: Arc<Schemas>,
    state: StateHash,
    objects: u64,
    /// The last revision of the history received so far (the floor before the first).
    history_head: Head,
    revisions: u64,
    loader: Option<Loader>,
}

/// The loader thread and the queue to it.
struct Loader {
    tx: mpsc::SyncSender<Load>,
    thread: std::thread::JoinHandle<Result<()>>,
}

/// One object as the loader inserts it: its uid, its sealed record, its name key and the keys
/// of its references.
struct LoadObject {
    uid: [u8; 16],
    record: Vec<u8>,
    name: String,
    refs: Vec<[u8; 32]>,
}

/// What the verifying side hands the loader, in order.
enum Load {
    Objects(Vec<LoadObject>),
    /// (seq, revision record, undo record), verified; the loader seals them (deflating them,
    /// `record::seal_history`), off the verifying thread.
    History(Vec<(u64, Vec<u8>, Vec<u8>)>),
    /// Everything verified: record the head and floor, and commit durably.
    Finish {
        head: Head,
        floor: Head,
    },
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
        let schemas = store.schemas();
        let (tx, rx) = mpsc::sync_channel(SNAPSHOT_LOAD_QUEUE_CHUNKS);
        let thread = std::thread::Builder::new()
            .name("snapshot-load".into())
            .spawn(move || store.guard("snapshot_load", || load(&store, rx)))?;
        Ok(SnapshotBuilder {
            path: path.to_path_buf(),
            info,
            schemas,
            state: StateHash::default(),
            objects: 0,
            history_head: info.floor,
            revisions: 0,
            loader: Some(Loader { tx, thread }),
        })
    }

    /// Hands verified work to the loader; when the loader has stopped, its error.
    fn send(&mut self, load: Load) -> Result<()> {
        let Some(loader) = self.loader.as_ref() else {
            return Err(Error::Corrupt("the snapshot's loader has already stopped".into()));
        };
        if loader.tx.send(load).is_ok() {
            return Ok(());
        }
        // The loader hung up: it failed, and says why once joined.
        Err(self.join().err().unwrap_or_else(|| Error::Corrupt("the snapshot's loader stopped early".into())))
    }

    /// Waits for the loader thread to end and returns how it ended.
    fn join(&mut self) -> Result<()> {
        let Some(Loader { tx, thread }) = self.loader.take() else {
            return Err(Error::Corrupt("the snapshot's loader has already stopped".into()));
        };
        drop(tx);
        thread.join().map_err(|_| Error::Corrupt("the snapshot's loader panicked".into()))?
    }

    /// Adds one chunk of canonically encoded objects, in ascending uid order.
    pub fn add_chunk(&mut self, chunk: &[impl AsRef<[u8]>]) -> Result<()> {
        if self.revisions > 0 {
            return Err(Error::Corrupt("a snapshot sent objects after its history".into()));
        }
        let mut batch = Vec::with_capacity(chunk.len());
        for raw in chunk {
            let bytes = raw.as_ref();
            let o = Object::decode(bytes)?;
            if o.encode() != bytes {
                return Err(Error::Corrupt(format!("snapshot object {} is not canonically encoded", o.uid)));
            }
            let hash = Hash::of(bytes);
            let refs = match self.schemas.get(&o.type_name) {
                Some(schema) => references(schema, &o.fields)
                    .into_iter()
                    .map(|(_, target)| ref_key(target.as_bytes(), o.uid.as_bytes()))
                    .collect(),
                None => Vec::new(),
            };
            batch.push(LoadObject {
                uid: *o.uid.as_bytes(),
                record: seal_with(bytes, &hash),
                name: name_key(&o.type_name, &o.name),
                refs,
            });
            self.state.add(hash);
            self.objects += 1;
        }
        self.send(Load::Objects(batch))
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
        let mut batch = Vec::with_capacity(records.len());
        let mut last = self.history_head;
        for r in records {
            let rev = Revision::decode(&r.revision)?;
            let before: Vec<Option<Object>> =
                decode(&r.undo, &format!("snapshot undo record of revision {}", rev.seq))?;
            verify_follows(&last, &rev, &before)?;
            batch.push((rev.seq, r.revision.to_vec(), r.undo.to_vec()));
            last = rev.head();
        }
        self.history_head = last;
        self.revisions += batch.len() as u64;
        self.send(Load::History(batch))
    }

    /// Verifies the snapshot against what it announced and commits it durably.
    pub fn finish(mut self) -> Result<PathBuf> {
        let head = self.info.head;
        let complete = self.objects == self.info.objects && self.state.to_hash() == head.state_hash;
        if !complete || self.revisions != self.info.revisions || self.history_head != head {
            let _ = self.join();
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
        self.send(Load::Finish { head, floor: self.info.floor })?;
        self.join()?;
        Ok(std::mem::take(&mut self.path))
    }
}

impl Drop for SnapshotBuilder {
    fn drop(&mut self) {
        // An abandoned snapshot (the connection broke): closing the queue makes the loader drop
        // its transaction uncommitted and end by itself; nobody waits for it here, on what may
        // be an async worker. The file stays headless and is replaced by the next attempt, or
        // removed at the next open.
        self.loader.take();
    }
}

/// The loader thread: inserts what the verifying side sends until `Finish`, in transactions
/// of about [`LOAD_COMMIT_BYTES`] committed without waiting for the disk, the last of which
/// records the head and floor; the durable commit that follows (`index_plugin_references`)
/// makes the whole load durable with one fsync. If the queue closes first (the snapshot was
/// abandoned), the open transaction is dropped and the file never gets a head.
fn load(store: &Store, rx: mpsc::Receiver<Load>) -> Result<()> {
    let mut sorted_names = SortedNames::default();
    loop {
        let mut txn = store.begin_write()?;
        txn.set_durability(redb::Durability::None).map_err(|e| Error::Storage(e.into()))?;
        let mut finished = None;
        {
            let mut objects = txn.open_table(OBJECTS)?;
            let mut names = txn.open_table(NAMES)?;
            let mut refs = txn.open_table(REFS)?;
            let mut revisions = txn.open_table(REVISIONS)?;
            let mut undo = txn.open_table(UNDO)?;
            let mut objects_end = objects.upper_bound_mut(Bound::<&[u8]>::Unbounded)?;
            let mut revisions_end = revisions.upper_bound_mut(Bound::<u64>::Unbounded)?;
            let mut undo_end = undo.upper_bound_mut(Bound::<u64>::Unbounded)?;
            let mut bytes = 0usize;
            while bytes < LOAD_COMMIT_BYTES {
                let Ok(load) = rx.recv() else {
                    // Abandoned: this transaction is dropped, uncommitted.
                    return Ok(());
                };
                match load {
                    Load::Objects(batch) => {
                        for o in batch {
                            bytes += o.record.len() + o.name.len();
                            objects_end.insert_before(o.uid.as_slice(), o.record.as_slice()).map_err(|e| {
                                out_of_order(e, || format!("object {}", Uid(uuid::Uuid::from_bytes(o.uid))))
                            })?;
                            sorted_names.push(&o.name, o.uid);
                            if sorted_names.bytes() >= SNAPSHOT_NAMES_SORT_BYTES {
                                sorted_names.flush(&mut names)?;
                            }
                            for r in &o.refs {
                                refs.insert(r.as_slice(), ())?;
                            }
                        }
                    }
                    Load::History(batch) => {
                        for (seq, revision, before) in batch {
                            let (revision, before) = (seal_history(&revision), seal_history(&before));
                            bytes += revision.len() + before.len();
                            revisions_end
                                .insert_before(seq, revision.as_slice())
                                .map_err(|e| out_of_order(e, || format!("revision {seq}")))?;
                            undo_end
                                .insert_before(seq, before.as_slice())
                                .map_err(|e| out_of_order(e, || format!("undo record {seq}")))?;
                        }
                    }
                    Load::Finish { head, floor } => {
                        sorted_names.flush(&mut names)?;
                        finished = Some((head, floor));
                        break;
                    }
                }
            }
            objects_end.close().map_err(|e| Error::Storage(e.into()))?;
            revisions_end.close().map_err(|e| Error::Storage(e.into()))?;
            undo_end.close().map_err(|e| Error::Storage(e.into()))?;
        }
        if let Some((head, floor)) = finished {
            {
                let mut meta = txn.open_table(META)?;
                meta.insert(META_HEAD, encode(&head).as_slice())?;
                meta.insert(META_FLOOR, encode(&floor).as_slice())?;
            }
            store.commit_txn(txn)?;
            // Plugins' reference fields are known once the plugin objects are in; this commit
            // is the durable one, and carries everything before it.
            return store.index_plugin_references();
        }
        store.commit_txn(txn)?;
    }
}

/// Bytes of records the loader puts in one transaction. redb computes the checksums of a
/// transaction's dirty pages when it commits, reading back any it already had to write out:
/// transactions that fit well within the store's write buffer (half of `STORE_CACHE_BYTES`)
/// have their pages checksummed from memory and written once.
const LOAD_COMMIT_BYTES: usize = 8 * 1024 * 1024;

/// Name index entries gathered by the loader and inserted in key order: objects arrive in uid
/// order, which is no order of names, and one B-tree insert per name at a random place costs a
/// page written per name per transaction. Up to [`SNAPSHOT_NAMES_SORT_BYTES`] are held (in one
/// buffer, without an allocation per name), then sorted and inserted: appended through a cursor
/// into an empty table, merged in order into one that already has names.
#[derive(Default)]
struct SortedNames {
    text: Vec<u8>,
    /// (start in `text`, length, uid) per name.
    entries: Vec<(u32, u32, [u8; 16])>,
}

impl SortedNames {
    fn push(&mut self, name: &str, uid: [u8; 16]) {
        self.entries.push((self.text.len() as u32, name.len() as u32, uid));
        self.text.extend_from_slice(name.as_bytes());
    }

    /// Memory held, roughly.
    fn bytes(&self) -> usize {
        self.text.len() + self.entries.len() * std::mem::size_of::<(u32, u32, [u8; 16])>()
    }

    /// The name's bytes: `&str` keys order as their bytes do.
    fn key(&self, e: &(u32, u32, [u8; 16])) -> &[u8] {
        &self.text[e.0 as usize..(e.0 + e.1) as usize]
    }

    fn name(&self, e: &(u32, u32, [u8; 16])) -> &str {
        // Only whole `&str`s are pushed, so every entry's bytes are valid UTF-8.
        std::str::from_utf8(self.key(e)).unwrap_or_default()
    }

    fn flush(&mut self, names: &mut redb::Table<&str, &[u8]>) -> Result<()> {
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_unstable_by(|a, b| self.key(a).cmp(self.key(b)));
        let twice = |name: &str| Error::Corrupt(format!("snapshot holds two objects named {name:?}"));
        if let Some(w) = entries.windows(2).find(|w| self.key(&w[0]) == self.key(&w[1])) {
            return Err(twice(self.name(&w[0])));
        }
        use redb::ReadableTableMetadata;
        if names.is_empty()? {
            let mut end = names.upper_bound_mut(Bound::<&str>::Unbounded)?;
            for e in &entries {
                end.insert_before(self.name(e), e.2.as_slice()).map_err(|err| match err {
                    redb::CursorError::UnorderedKey => twice(self.name(e)),
                    other => Error::Storage(other.into()),
                })?;
            }
            end.close().map_err(|e| Error::Storage(e.into()))?;
        } else {
            for e in &entries {
                if names.insert(self.name(e), e.2.as_slice())?.is_some() {
                    return Err(twice(self.name(e)));
                }
            }
        }
        self.text.clear();
        Ok(())
    }
}

/// A record the cursor refused: out of key order or a duplicate, which no honest snapshot sends.
fn out_of_order(e: redb::CursorError, what: impl FnOnce() -> String) -> Error {
    match e {
        redb::CursorError::UnorderedKey => Error::Corrupt(format!("snapshot {} arrived out of order or twice", what())),
        other => Error::Storage(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changeset::ChangeInput;
    use crate::node::NodeState;
    use crate::store::{CommitMeta, STORE_FILE};

    /// A store with `n` hosts published one per revision, and its snapshot as the sender cuts it
    /// (one object or one revision per chunk).
    fn sent(dir: &Path, n: usize) -> (SnapshotInfo, Vec<SnapshotPart>) {
        let store = Store::create(&dir.join(STORE_FILE), &NodeState::new_primary("a")).expect("create");
        let meta = CommitMeta { author: "t".into(), message: "m".into(), epoch: 1, time_ms: 0 };
        for i in 0..n {
            let mut fields = crate::model::Fields::new();
            fields.insert("ipv4-address".into(), format!("10.0.0.{i}").into());
            let put = ChangeInput::Put { type_name: "host".into(), name: format!("h{i}"), uid: None, fields };
            store.publish(&meta, &[put]).expect("publish");
        }
        let (mut info, mut parts) = (None, Vec::new());
        store
            .snapshot_chunks(
                1,
                1 << 20,
                &mut |i| {
                    info = Some(i);
                    Ok(())
                },
                &mut |p| {
                    parts.push(p);
                    Ok(())
                },
            )
            .expect("snapshot");
        (info.expect("begun"), parts)
    }

    /// Feeds `parts` to a builder and finishes it; the first error, if any.
    fn receive(path: &Path, info: SnapshotInfo, parts: &[SnapshotPart]) -> Result<PathBuf> {
        let mut b = SnapshotBuilder::begin(path, &NodeState::new_primary("b"), info)?;
        for p in parts {
            match p {
                SnapshotPart::Objects(objects) => b.add_chunk(objects)?,
                SnapshotPart::History(records) => b.add_history(records)?,
            }
        }
        b.finish()
    }

    #[test]
    fn a_snapshot_loads_whole_and_checks_clean() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (info, parts) = sent(dir.path(), 20);
        let file = receive(&dir.path().join("copy.redb"), info, &parts).expect("loads");
        let copy = Store::open(&file).expect("opens");
        assert_eq!(copy.head().expect("head"), info.head);
        assert_eq!(copy.count().expect("count"), 20);
        copy.check().expect("the loaded store verifies");
    }

    #[test]
    fn objects_out_of_uid_order_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (info, mut parts) = sent(dir.path(), 5);
        // The object chunks come first; swap two of them.
        assert!(matches!((&parts[0], &parts[1]), (SnapshotPart::Objects(_), SnapshotPart::Objects(_))));
        parts.swap(0, 1);
        let e = receive(&dir.path().join("copy.redb"), info, &parts).expect_err("refused");
        assert!(matches!(&e, Error::Corrupt(m) if m.contains("out of order")), "{e}");
    }

    #[test]
    fn a_revision_sent_twice_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (info, mut parts) = sent(dir.path(), 3);
        let last = parts.len() - 1;
        parts[last] = parts[last - 1].clone();
        let e = receive(&dir.path().join("copy.redb"), info, &parts).expect_err("refused");
        assert!(matches!(&e, Error::Corrupt(_)), "{e}");
    }

    #[test]
    fn names_sorted_in_batches_merge_into_one_index_and_a_repeated_name_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("names.redb")).expect("db");
        let txn = db.begin_write().expect("txn");
        {
            let mut names = txn.open_table(NAMES).expect("table");
            let mut sorted = SortedNames::default();
            // Two batches that interleave: the first is appended, the second merged into it.
            for i in (0..100u32).rev() {
                sorted.push(&format!("host\0h{:03}", 2 * i), [i as u8; 16]);
            }
            sorted.flush(&mut names).expect("first batch");
            for i in 0..100u32 {
                sorted.push(&format!("host\0h{:03}", 2 * i + 1), [i as u8; 16]);
            }
            sorted.flush(&mut names).expect("second batch");
            let keys: Vec<String> =
                names.iter().expect("iter").map(|e| e.expect("entry").0.value().to_string()).collect();
            let want: Vec<String> = (0..200).map(|i| format!("host\0h{i:03}")).collect();
            assert_eq!(keys, want);
            sorted.push("host\0h007", [9; 16]);
            let e = sorted.flush(&mut names).expect_err("a name already in the index");
            assert!(matches!(&e, Error::Corrupt(m) if m.contains("two objects named")), "{e}");
            sorted.push("host\0x", [1; 16]);
            sorted.push("host\0x", [2; 16]);
            let e = sorted.flush(&mut names).expect_err("a name twice in one batch");
            assert!(matches!(&e, Error::Corrupt(m) if m.contains("two objects named")), "{e}");
        }
    }

    #[test]
    fn an_abandoned_snapshot_leaves_a_file_without_a_head() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (info, parts) = sent(dir.path(), 10);
        let path = dir.path().join("copy.redb");
        let mut b = SnapshotBuilder::begin(&path, &NodeState::new_primary("b"), info).expect("begins");
        for p in &parts[..parts.len() - 2] {
            match p {
                SnapshotPart::Objects(objects) => b.add_chunk(objects).expect("adds"),
                SnapshotPart::History(records) => b.add_history(records).expect("adds"),
            }
        }
        // The connection broke: the builder is dropped, its loader ends by itself.
        drop(b);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let left = loop {
            match Store::open(&path) {
                Ok(s) => break s,
                Err(Error::InUse(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("the partial file opens once the loader let go: {e}"),
            }
        };
        assert_eq!(left.head().expect("head"), Head::default(), "no head before the end");
        assert_eq!(left.floor().expect("floor"), Head::default(), "no floor before the end");
    }
}
