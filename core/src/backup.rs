//! Online, verifiable backups: a consistent snapshot of a store (objects and retained history)
//! written as a stream of checksummed frames, checked without a store, and restored into a new
//! data directory. docs/storage.md gives the byte layout.
//!
//! ```text
//! "MGHABAK1"  then frames: u32 LE length | u8 kind | MessagePack payload
//!   kind 1 header, kind 2 object chunks, kind 3 revision chunks, kind 4 end (blake3 of all before it)
//! ```

use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::limits::{BACKUP_CHUNK_OBJECTS, BACKUP_FRAME_BYTES_MAX};
use crate::model::validate::references;
use crate::model::{Hash, Object, StateHash, Uid};
use crate::node::NodeState;
use crate::revision::{Head, Revision};
use crate::store::history::verify_follows;
use crate::store::record::{seal, seal_history};
use crate::store::tables::*;
use crate::store::{decode, encode, Store, STORE_FILE};

const MAGIC: &[u8; 8] = b"MGHABAK1";
const BACKUP_FORMAT: u32 = 1;
const KIND_HEADER: u8 = 1;
const KIND_OBJECTS: u8 = 2;
const KIND_REVISIONS: u8 = 3;
const KIND_END: u8 = 4;
/// Revisions per chunk of a backup file.
const BACKUP_CHUNK_REVISIONS: usize = 256;
/// A chunk is closed once its items reach this size, well under [`BACKUP_FRAME_BYTES_MAX`]:
/// 4096 large objects or 256 large revisions would otherwise make a frame no reader accepts.
const BACKUP_CHUNK_BYTES: usize = BACKUP_FRAME_BYTES_MAX / 4;

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupHeader {
    pub format: u32,
    pub node: NodeState,
    pub head: Head,
    pub floor: Head,
    pub objects: u64,
    pub revisions: u64,
    pub created_ms: u64,
}

/// The outcome of writing, verifying or restoring a backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupSummary {
    pub header: BackupHeader,
    pub bytes: u64,
}

/// Progress of a long backup or restore: objects and revisions done so far, of how many.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

#[derive(Serialize, Deserialize)]
struct RevisionEntry {
    seq: u64,
    #[serde(with = "serde_bytes")]
    revision: Vec<u8>,
    #[serde(with = "serde_bytes")]
    undo: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct End {
    digest: Hash,
}

/// Writes a consistent backup of `store` at its current head, with retained history.
/// Publishes may go on meanwhile: the backup reads one MVCC snapshot.
pub fn write_backup(store: &Store, out: &mut dyn Write, progress: &mut dyn FnMut(Progress)) -> Result<BackupSummary> {
    store.guard("backup", || write_snapshot(store, out, progress))
}

fn write_snapshot(store: &Store, out: &mut dyn Write, progress: &mut dyn FnMut(Progress)) -> Result<BackupSummary> {
    let txn = store.begin_read()?;
    let meta = txn.open_table(META)?;
    let get_meta = |key: &str| -> Result<Vec<u8>> {
        meta.get(key)?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| Error::Corrupt(format!("meta record '{key}' is missing")))
    };
    let objects = txn.open_table(OBJECTS)?;
    let revisions = txn.open_table(REVISIONS)?;
    let undo = txn.open_table(UNDO)?;
    let header = BackupHeader {
        format: BACKUP_FORMAT,
        node: decode(&get_meta(META_NODE)?, "node")?,
        head: decode(&get_meta(META_HEAD)?, "head")?,
        floor: decode(&get_meta(META_FLOOR)?, "floor")?,
        objects: objects.len()?,
        revisions: revisions.len()?,
        created_ms: crate::now_ms(),
    };
    let total = header.objects + header.revisions;
    let mut w = FrameWriter { out, hasher: blake3::Hasher::new(), bytes: 0 };
    w.raw(MAGIC)?;
    w.frame(KIND_HEADER, &encode(&header))?;
    let mut done = 0u64;
    let mut chunk: Vec<serde_bytes::ByteBuf> = Vec::with_capacity(BACKUP_CHUNK_OBJECTS);
    let mut chunk_bytes = 0usize;
    for entry in objects.iter()? {
        let (k, v) = entry?;
        // A backup holds the payloads, verified on the way out: it never copies damage.
        let (bytes, _) =
            crate::store::record::unseal(v.value(), || format!("object {:?}", Uid::from_slice(k.value())))?;
        // Close a chunk by count or by size, so that no frame outgrows what a reader accepts.
        if !chunk.is_empty() && chunk_bytes + bytes.len() > BACKUP_CHUNK_BYTES {
            w.frame(KIND_OBJECTS, &encode(&chunk))?;
            done += chunk.len() as u64;
            chunk.clear();
            chunk_bytes = 0;
            progress(Progress { done, total });
        }
        chunk_bytes += bytes.len();
        chunk.push(serde_bytes::ByteBuf::from(bytes.to_vec()));
        if chunk.len() == BACKUP_CHUNK_OBJECTS {
            w.frame(KIND_OBJECTS, &encode(&chunk))?;
            done += chunk.len() as u64;
            chunk.clear();
            chunk_bytes = 0;
            progress(Progress { done, total });
        }
    }
    if !chunk.is_empty() {
        w.frame(KIND_OBJECTS, &encode(&chunk))?;
        done += chunk.len() as u64;
    }
    let mut revs: Vec<RevisionEntry> = Vec::with_capacity(BACKUP_CHUNK_REVISIONS);
    let mut revs_bytes = 0usize;
    for entry in revisions.iter()? {
        let (k, v) = entry?;
        let seq = k.value();
        let u = undo.get(seq)?.ok_or_else(|| Error::Corrupt(format!("undo record of revision {seq} is missing")))?;
        let revision = crate::store::record::unseal_history(v.value(), || format!("revision {seq}"))?;
        let undo_bytes = crate::store::record::unseal_history(u.value(), || format!("undo record of revision {seq}"))?;
        let size = revision.len() + undo_bytes.len();
        if !revs.is_empty() && revs_bytes + size > BACKUP_CHUNK_BYTES {
            w.frame(KIND_REVISIONS, &encode(&revs))?;
            done += revs.len() as u64;
            revs.clear();
            revs_bytes = 0;
            progress(Progress { done, total });
        }
        revs_bytes += size;
        revs.push(RevisionEntry { seq, revision: revision.to_vec(), undo: undo_bytes.to_vec() });
        if revs.len() == BACKUP_CHUNK_REVISIONS {
            w.frame(KIND_REVISIONS, &encode(&revs))?;
            done += revs.len() as u64;
            revs.clear();
            revs_bytes = 0;
            progress(Progress { done, total });
        }
    }
    if !revs.is_empty() {
        w.frame(KIND_REVISIONS, &encode(&revs))?;
        done += revs.len() as u64;
    }
    let digest = Hash(*w.hasher.finalize().as_bytes());
    w.frame(KIND_END, &encode(&End { digest }))?;
    w.out.flush()?;
    progress(Progress { done, total });
    Ok(BackupSummary { header, bytes: w.bytes })
}

struct FrameWriter<'a> {
    out: &'a mut dyn Write,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl FrameWriter<'_> {
    fn raw(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b)?;
        self.hasher.update(b);
        self.bytes += b.len() as u64;
        Ok(())
    }
    fn frame(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        // Refuse to write what `verify_backup` would refuse to read (one revision over the limit).
        if payload.len() + 1 > BACKUP_FRAME_BYTES_MAX {
            return Err(Error::TooLarge {
                what: "backup frame".into(),
                size: payload.len() + 1,
                max: BACKUP_FRAME_BYTES_MAX,
            });
        }
        let len =
            u32::try_from(payload.len() + 1).map_err(|_| Error::InvalidArgument("backup frame over 4 GiB".into()))?;
        self.raw(&len.to_le_bytes())?;
        self.raw(&[kind])?;
        self.raw(payload)
    }
}

/// Where verified backup content goes: nowhere (verify) or into a new store (restore).
trait Sink {
    fn header(&mut self, _h: &BackupHeader) -> Result<()> {
        Ok(())
    }
    fn objects(&mut self, _objects: &[(Object, Vec<u8>)]) -> Result<()> {
        Ok(())
    }
    fn revisions(&mut self, _entries: &[RevisionEntry]) -> Result<()> {
        Ok(())
    }
}

struct NoSink;
impl Sink for NoSink {}

/// Checks a backup stream end to end: framing, checksum, every object's encoding, the state
/// hash, and the hash chain of its revisions.
pub fn verify_backup(path: &Path, input: &mut dyn Read, progress: &mut dyn FnMut(Progress)) -> Result<BackupSummary> {
    read_backup(path, input, &mut NoSink, progress)
}

/// The header of a backup (what it holds: node, head, floor, counts), read from its first frame
/// without reading the rest; [`verify_backup`] checks the whole file against it.
pub fn read_backup_header(path: &Path, input: &mut dyn Read) -> Result<BackupHeader> {
    let mut r = FrameReader { input, hasher: blake3::Hasher::new(), bytes: 0, path };
    read_header(&mut r)
}

fn read_header(r: &mut FrameReader<'_>) -> Result<BackupHeader> {
    let path = r.path;
    let mut magic = [0u8; 8];
    r.exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad(path, "not an mgha backup (bad magic)"));
    }
    let (kind, payload) = r.frame()?.ok_or_else(|| bad(path, "truncated: no header"))?;
    if kind != KIND_HEADER {
        return Err(bad(path, "the first frame is not a header"));
    }
    let header: BackupHeader = decode(&payload, "backup header").map_err(|e| bad(path, e.to_string()))?;
    if header.format != BACKUP_FORMAT {
        return Err(bad(path, format!("backup format {}, this build reads {BACKUP_FORMAT}", header.format)));
    }
    Ok(header)
}

/// Verifies a backup and builds a new node from it in `dir`, which must not hold a store yet.
/// On any error the partial store is removed.
pub fn restore_backup(
    path: &Path,
    input: &mut dyn Read,
    dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<BackupSummary> {
    crate::private::create_dir(dir)?;
    let file = dir.join(STORE_FILE);
    if file.exists() {
        return Err(Error::InvalidArgument(format!("{} already holds a store", dir.display())));
    }
    let result = (|| {
        let mut sink = RestoreSink { file: file.clone(), store: None };
        let summary = read_backup(path, input, &mut sink, progress)?;
        let store = sink.store.ok_or_else(|| bad(path, "no header"))?;
        store.index_plugin_references()?;
        let txn = store.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_HEAD, encode(&summary.header.head).as_slice())?;
            meta.insert(META_FLOOR, encode(&summary.header.floor).as_slice())?;
        }
        store.commit_txn(txn)?;
        // Built in bulk, the file grew by doublings: give back what they left free before the
        // new node first opens it.
        store.compact()?;
        Ok(summary)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&file);
    }
    result
}

struct RestoreSink {
    file: std::path::PathBuf,
    store: Option<Store>,
}

impl RestoreSink {
    fn store(&self) -> Result<&Store> {
        self.store.as_ref().ok_or_else(|| Error::Corrupt("backup content before its header".into()))
    }
}

impl Sink for RestoreSink {
    fn header(&mut self, h: &BackupHeader) -> Result<()> {
        self.store = Some(Store::create(&self.file, &h.node)?);
        Ok(())
    }
    fn objects(&mut self, objects: &[(Object, Vec<u8>)]) -> Result<()> {
        let store = self.store()?;
        let mut txn = store.begin_write()?;
        txn.set_durability(redb::Durability::None).map_err(|e| Error::Storage(e.into()))?;
        {
            let mut table = txn.open_table(OBJECTS)?;
            let mut names = txn.open_table(NAMES)?;
            let mut refs = txn.open_table(REFS)?;
            for (o, bytes) in objects {
                table.insert(o.uid.as_bytes().as_slice(), seal(bytes).as_slice())?;
                names.insert(name_key(&o.type_name, &o.name).as_str(), o.uid.as_bytes().as_slice())?;
                if let Some(schema) = store.schemas().get(&o.type_name) {
                    for (_, target) in references(schema, &o.fields) {
                        refs.insert(ref_key(target.as_bytes(), o.uid.as_bytes()).as_slice(), ())?;
                    }
                }
            }
        }
        store.commit_txn(txn)?;
        Ok(())
    }
    fn revisions(&mut self, entries: &[RevisionEntry]) -> Result<()> {
        let store = self.store()?;
        let txn = store.begin_write()?;
        {
            let mut revisions = txn.open_table(REVISIONS)?;
            let mut undo = txn.open_table(UNDO)?;
            for e in entries {
                revisions.insert(e.seq, seal_history(&e.revision).as_slice())?;
                undo.insert(e.seq, seal_history(&e.undo).as_slice())?;
            }
        }
        store.commit_txn(txn)?;
        Ok(())
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Backup { path: path.to_path_buf(), reason: reason.into() }
}

fn read_backup(
    path: &Path,
    input: &mut dyn Read,
    sink: &mut dyn Sink,
    progress: &mut dyn FnMut(Progress),
) -> Result<BackupSummary> {
    let mut r = FrameReader { input, hasher: blake3::Hasher::new(), bytes: 0, path };
    let header = read_header(&mut r)?;
    sink.header(&header)?;
    let total = header.objects + header.revisions;
    let (mut objects, mut revisions) = (0u64, 0u64);
    let mut state = StateHash::default();
    let mut prev: Head = header.floor;
    loop {
        let digest_so_far = Hash(*r.hasher.finalize().as_bytes());
        let (kind, payload) = r.frame()?.ok_or_else(|| bad(path, "truncated: no end frame"))?;
        match kind {
            KIND_OBJECTS => {
                let chunk: Vec<serde_bytes::ByteBuf> =
                    decode(&payload, "object chunk").map_err(|e| bad(path, e.to_string()))?;
                let mut decoded = Vec::with_capacity(chunk.len());
                for raw in chunk {
                    let o = Object::decode(&raw).map_err(|e| bad(path, e.to_string()))?;
                    if o.encode() != raw.as_slice() {
                        return Err(bad(path, format!("object {} is not canonically encoded", o.uid)));
                    }
                    state.add(Hash::of(&raw));
                    decoded.push((o, raw.into_vec()));
                }
                objects += decoded.len() as u64;
                sink.objects(&decoded)?;
            }
            KIND_REVISIONS => {
                let entries: Vec<RevisionEntry> =
                    decode(&payload, "revision chunk").map_err(|e| bad(path, e.to_string()))?;
                for e in &entries {
                    let rev = Revision::decode(&e.revision).map_err(|err| bad(path, err.to_string()))?;
                    let undo: Vec<Option<Object>> =
                        decode(&e.undo, "undo record").map_err(|err| bad(path, err.to_string()))?;
                    if rev.seq != e.seq {
                        return Err(bad(path, format!("revision {} is filed as {}", rev.seq, e.seq)));
                    }
                    verify_follows(&prev, &rev, &undo).map_err(|err| bad(path, err.to_string()))?;
                    prev = rev.head();
                }
                revisions += entries.len() as u64;
                sink.revisions(&entries)?;
            }
            KIND_END => {
                let end: End = decode(&payload, "end frame").map_err(|e| bad(path, e.to_string()))?;
                if end.digest != digest_so_far {
                    return Err(bad(path, "checksum mismatch: the file was altered or damaged"));
                }
                let mut trailing = [0u8; 1];
                if r.input.read(&mut trailing)? != 0 {
                    return Err(bad(path, "bytes after the end frame"));
                }
                break;
            }
            other => return Err(bad(path, format!("unknown frame kind {other}"))),
        }
        progress(Progress { done: objects + revisions, total });
    }
    if objects != header.objects || revisions != header.revisions {
        return Err(bad(
            path,
            format!(
                "holds {objects} objects and {revisions} revisions, its header says {} and {}",
                header.objects, header.revisions
            ),
        ));
    }
    if state.to_hash() != header.head.state_hash {
        return Err(bad(path, "the objects do not hash to the head's state hash"));
    }
    if prev != header.head {
        return Err(bad(
            path,
            format!("the history ends at revision {}, the header says {}", prev.seq, header.head.seq),
        ));
    }
    progress(Progress { done: total, total });
    Ok(BackupSummary { header, bytes: r.bytes })
}

struct FrameReader<'a> {
    input: &'a mut dyn Read,
    hasher: blake3::Hasher,
    bytes: u64,
    path: &'a Path,
}

impl FrameReader<'_> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad(self.path, "truncated"),
            _ => Error::Io(e),
        })?;
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// The next frame, or `None` at a clean end of input.
    fn frame(&mut self) -> Result<Option<(u8, Vec<u8>)>> {
        let mut len = [0u8; 4];
        let n = self.input.read(&mut len[..1])?;
        if n == 0 {
            return Ok(None);
        }
        self.input.read_exact(&mut len[1..]).map_err(|_| bad(self.path, "truncated frame length"))?;
        self.hasher.update(&len);
        self.bytes += 4;
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 || len > BACKUP_FRAME_BYTES_MAX {
            return Err(bad(self.path, format!("frame of {len} bytes is out of bounds")));
        }
        let mut buf = vec![0u8; len];
        self.exact(&mut buf)?;
        let kind = buf[0];
        buf.remove(0);
        Ok(Some((kind, buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changeset::ChangeInput;
    use crate::model::Fields;
    use crate::store::CommitMeta;
    use serde_json::Value;

    #[test]
    fn history_over_one_frame_is_written_in_readable_chunks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = NodeState::new_primary("test");
        let store = Store::create(&dir.path().join(STORE_FILE), &node).expect("create store");
        let meta = CommitMeta { author: "t".into(), message: "big".into(), epoch: 1, time_ms: 0 };
        // 120 revisions of about 600 KB each (the new version and its undo record): over
        // 64 MiB in all, so a chunk of 256 revisions would be a frame no reader accepts.
        for i in 0..120 {
            let mut fields = Fields::new();
            fields.insert("value".into(), Value::String(format!("{i}{}", "0".repeat(300_000))));
            let change =
                ChangeInput::Put { type_name: "system-setting".into(), name: "blob".into(), uid: None, fields };
            store.publish(&meta, &[change]).expect("publish");
        }
        let mut file = Vec::new();
        let written = write_backup(&store, &mut file, &mut |_| {}).expect("write");
        let read =
            verify_backup(Path::new("test.bak"), &mut file.as_slice(), &mut |_| {}).expect("the backup verifies");
        assert_eq!(read.header.revisions, 120);
        assert_eq!(read.bytes, written.bytes);
    }
}
