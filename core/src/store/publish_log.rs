//! The publish log: where a local publish becomes durable. Group commit appends the revisions
//! its flush covers to this file, as one frame, and fsyncs it: one sequential append instead of
//! redb's durable commit, which writes every page the revisions dirtied and holds the store's
//! writer through its fsync. The revisions themselves were committed to redb without waiting for
//! the disk; a checkpoint (one durable redb commit) makes them durable there too, and empties the
//! log. When the store opens, and when it reopens after a failed write, every revision the log
//! holds past the durable head is applied again, checked as a Standby checks what the Active
//! sends, before anything else reads or writes the store.
//!
//! The file, beside the store (`mgha.redb.log`): a header of [`HEADER_BYTES`] ([`LOG_MAGIC`],
//! the log's generation (u64 little-endian), and the first 8 bytes of the blake3 of those), then
//! frames. A frame is [`FRAME_MAGIC`], the payload's length (u32 little-endian), the blake3 of
//! the generation and the payload, then the payload: the number of revisions (u32), and each
//! revision's length (u32) and encoding.
//!
//! The file keeps its length: it is extended ahead of the appends, by zeros (doubling, at most a
//! megabyte at a time), and emptied by a new generation in the header rather than by truncation, so that an
//! append overwrites allocated blocks and its fsync writes no inode (on ext4, half the time of an
//! append that grows the file). Frames of an earlier generation fail the hash with the current
//! one, so whatever follows the last frame (zeros, older frames) ends the log.
//!
//! A frame that is cut short or fails its hash ends the log when no intact frame of the current
//! generation follows it: an append that a crash interrupted, never acknowledged. An intact frame
//! after a damaged one means the damage is in acknowledged revisions: the store refuses to open
//! ([`Error::Corrupt`]) rather than drop them.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::inject::StorageFaults;
use super::Store;
use crate::error::{Error, Result};
use crate::revision::Revision;

/// The first bytes of a publish log.
pub const LOG_MAGIC: &[u8; 8] = b"MGHAPLG1";
/// The first bytes of each frame.
const FRAME_MAGIC: &[u8; 4] = b"MPLF";
/// Magic, length and hash.
const FRAME_HEADER_BYTES: usize = 4 + 4 + 32;
/// Magic, generation and checksum.
pub const HEADER_BYTES: usize = 8 + 8 + 8;
/// A new log's length; when an append reaches the end, the file grows by its length again, up
/// to [`PREALLOC_STEP_MAX`] at a time (a server holding many domains keeps one log per domain).
const PREALLOC_BYTES: u64 = 64 << 10;
const PREALLOC_STEP_MAX: u64 = 1 << 20;
/// A reset gives back what the file grew beyond this (a run of large frames).
const KEEP_BYTES: u64 = 16 << 20;
/// The largest frame payload the log takes: a batch holding more goes to the store directly, by a
/// checkpoint ([`PublishLog::takes`]). Also bounds what a read of a damaged length allocates.
pub const FRAME_PAYLOAD_MAX: usize = 4 << 20;
/// A batch of more changes than this goes to the store directly (a checkpoint): large revisions
/// gain nothing from the log, whose point is one small append per publish.
const FRAME_CHANGES_MAX: usize = 4_096;
/// A log longer than this is not one this store wrote (checkpoints keep it far shorter).
const LOG_BYTES_MAX: u64 = 256 << 20;
/// A checkpoint is due once the log holds this many bytes...
pub const CHECKPOINT_BYTES: u64 = 8 << 20;
/// ... or this many revisions: each leaves the pages it dirtied in redb's write buffer until
/// the checkpoint writes them.
pub const CHECKPOINT_REVISIONS: u64 = 2_000;

/// The log of the store at `store`.
pub fn log_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".log");
    PathBuf::from(name)
}

/// An open publish log.
#[derive(Debug)]
pub(crate) struct PublishLog {
    file: File,
    path: PathBuf,
    /// Bytes of the header and the intact frames (where the next append goes).
    len: u64,
    /// Revisions in those frames.
    revisions: u64,
    /// The header's generation, which each frame's hash covers.
    generation: u64,
    /// The file's length, zeros past `len` included.
    size: u64,
    faults: Option<Arc<StorageFaults>>,
}

/// What a log holds, read and verified.
#[derive(Debug)]
pub(crate) struct LogContent {
    pub revisions: Vec<Revision>,
    /// Bytes of the header and the intact frames; what follows is a torn append, zeros, or
    /// frames of an earlier generation.
    pub len: u64,
    pub torn: bool,
    /// 0 for a file without a header (one whose creation a crash cut short).
    pub generation: u64,
}

impl PublishLog {
    /// Opens the log at `path`, creating an empty one when there is none, and reads it.
    pub(crate) fn open(path: &Path, faults: Option<Arc<StorageFaults>>) -> Result<(PublishLog, Vec<Revision>)> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Self::create(path, faults)?, Vec::new())),
            Err(e) => return Err(io(e)),
        };
        let size = file.metadata().map_err(io)?.len();
        let mut log = PublishLog { file, path: path.to_path_buf(), len: 0, revisions: 0, generation: 0, size, faults };
        let content = log.read()?;
        if content.torn {
            tracing::warn!(log = %path.display(), at = content.len, "the publish log ends in an interrupted append: it is cut there");
        }
        log.len = content.len;
        log.revisions = content.revisions.len() as u64;
        log.generation = content.generation;
        if content.generation == 0 {
            log.reset()?;
        }
        Ok((log, content.revisions))
    }

    /// Creates an empty log at `path`, replacing whatever is there.
    pub(crate) fn create(path: &Path, faults: Option<Arc<StorageFaults>>) -> Result<PublishLog> {
        // Private from its first byte, as the store file is.
        match crate::private::create_file(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        // Truncated: frames of an earlier file would pass the hash of generation 1 again.
        let file = OpenOptions::new().read(true).write(true).truncate(true).open(path).map_err(io)?;
        let mut log =
            PublishLog { file, path: path.to_path_buf(), len: 0, revisions: 0, generation: 0, size: 0, faults };
        log.reset()?;
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(log)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `revisions` go into the log (else a checkpoint makes them durable): the log is not
    /// due for a checkpoint, they are not too many changes for one frame, and none changes a
    /// plugin (the plugins are reloaded after such a commit, before anything else is applied).
    fn takes<'a>(&self, revisions: impl Iterator<Item = &'a Revision> + Clone) -> bool {
        !self.full()
            && revisions.clone().map(|r| r.changes.len()).sum::<usize>() <= FRAME_CHANGES_MAX
            && !revisions.flat_map(|r| r.changes.iter()).any(|c| c.type_name == crate::plugin::PLUGIN_TYPE)
    }

    /// Revisions appended since the last reset.
    pub(crate) fn revisions(&self) -> u64 {
        self.revisions
    }

    /// Whether a checkpoint is due.
    pub(crate) fn full(&self) -> bool {
        self.len >= CHECKPOINT_BYTES || self.revisions >= CHECKPOINT_REVISIONS
    }

    /// Reads the whole log, verified; the revisions of its intact frames, in order.
    pub(crate) fn read(&self) -> Result<LogContent> {
        let size = self.file.metadata().map_err(io)?.len();
        if size > LOG_BYTES_MAX {
            return Err(self.damaged(format!("is {size} bytes, more than any log of this store")));
        }
        let mut bytes = vec![0u8; size as usize];
        self.file.read_exact_at(&mut bytes, 0).map_err(io)?;
        parse(&bytes).map_err(|why| self.damaged(why))
    }

    /// Makes the file at least `end` bytes long, with zeros, ahead of the appends (made durable
    /// by the fsync of the append that follows).
    fn extend_to(&mut self, end: u64) -> std::io::Result<()> {
        if end <= self.size {
            return Ok(());
        }
        let step = self.size.clamp(PREALLOC_BYTES, PREALLOC_STEP_MAX);
        let target = end.max(self.size + step).next_multiple_of(PREALLOC_BYTES);
        let zeros = vec![0u8; 64 << 10];
        let mut at = self.size;
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            self.write_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.size = target;
        Ok(())
    }

    /// Appends `revisions` as one frame and makes it durable. On failure the log is as before
    /// (the frame is cut off again when that still works; a torn frame is ignored anyway).
    pub(crate) fn append<'a>(&mut self, revisions: impl ExactSizeIterator<Item = &'a Revision>) -> Result<()> {
        let count = revisions.len() as u64;
        let frame = frame(self.generation, revisions)?;
        let end = self.len + frame.len() as u64;
        let written = self.extend_to(end).and_then(|_| self.write_at(&frame, self.len)).and_then(|_| self.sync());
        if let Err(e) = written {
            // What was written is cut off by the next append, or read as a torn one.
            return Err(io(e));
        }
        self.len += frame.len() as u64;
        self.revisions += count;
        Ok(())
    }

    /// Empties the log (after a checkpoint made everything in it durable in the store): a header
    /// of the next generation, which every frame so far fails.
    pub(crate) fn reset(&mut self) -> Result<()> {
        let generation = self.generation + 1;
        // The space first (zeros from the file's end), then the header over its first bytes.
        let mut done = self.extend_to(HEADER_BYTES as u64 + 1);
        if done.is_ok() && self.size > KEEP_BYTES {
            done = self.check_write().and_then(|_| self.file.set_len(PREALLOC_BYTES));
            if done.is_ok() {
                self.size = PREALLOC_BYTES;
            }
        }
        done = done.and_then(|_| self.write_at(&header(generation), 0)).and_then(|_| self.sync());
        done.map_err(io)?;
        self.generation = generation;
        self.len = HEADER_BYTES as u64;
        self.revisions = 0;
        Ok(())
    }

    fn write_at(&self, bytes: &[u8], at: u64) -> std::io::Result<()> {
        self.check_write()?;
        self.file.write_all_at(bytes, at)
    }

    fn check_write(&self) -> std::io::Result<()> {
        match &self.faults {
            Some(f) => f.pass_write(),
            None => Ok(()),
        }
    }

    fn sync(&self) -> std::io::Result<()> {
        if let Some(f) = &self.faults {
            f.pass_sync()?;
        }
        self.file.sync_data()
    }

    fn damaged(&self, why: String) -> Error {
        Error::Corrupt(format!("publish log {}: {why}", self.path.display()))
    }
}

/// An I/O error of the log, as the store reports one of its file (a write fault).
fn io(e: std::io::Error) -> Error {
    Error::Storage(redb::Error::Io(e))
}

/// The header of generation `generation`.
fn header(generation: u64) -> [u8; HEADER_BYTES] {
    let mut out = [0u8; HEADER_BYTES];
    out[..8].copy_from_slice(LOG_MAGIC);
    out[8..16].copy_from_slice(&generation.to_le_bytes());
    let sum = blake3::hash(&out[..16]);
    out[16..].copy_from_slice(&sum.as_bytes()[..8]);
    out
}

/// The hash a frame of `generation` holding `payload` carries.
fn frame_hash(generation: u64, payload: &[u8]) -> [u8; 32] {
    *blake3::Hasher::new().update(&generation.to_le_bytes()).update(payload).finalize().as_bytes()
}

/// The frame of `revisions`.
fn frame<'a>(generation: u64, revisions: impl ExactSizeIterator<Item = &'a Revision>) -> Result<Vec<u8>> {
    let mut payload = Vec::with_capacity(4 + revisions.len() * 512);
    payload.extend_from_slice(&(revisions.len() as u32).to_le_bytes());
    for r in revisions {
        let encoded = r.encode();
        payload.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        payload.extend_from_slice(&encoded);
    }
    if payload.len() > FRAME_PAYLOAD_MAX {
        return Err(Error::TooLarge { what: "publish log frame".into(), size: payload.len(), max: FRAME_PAYLOAD_MAX });
    }
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(FRAME_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&frame_hash(generation, &payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The payload of the intact frame of `generation` at `at`, and where the next one starts.
fn frame_at(bytes: &[u8], at: usize, generation: u64) -> Option<(&[u8], usize)> {
    let header = bytes.get(at..at.checked_add(FRAME_HEADER_BYTES)?)?;
    if &header[..4] != FRAME_MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    if len > FRAME_PAYLOAD_MAX {
        return None;
    }
    let start = at + FRAME_HEADER_BYTES;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    (frame_hash(generation, payload).as_slice() == &header[8..]).then_some((payload, start + len))
}

/// The revisions of one verified payload.
fn revisions_of(payload: &[u8], at: usize) -> std::result::Result<Vec<Revision>, String> {
    let bad = |why: &str| format!("the frame at byte {at} {why}");
    let mut rest = payload;
    let mut take = |n: usize| -> std::result::Result<&[u8], String> {
        if rest.len() < n {
            return Err(bad("is shorter than it says"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad("has no count"))?) as usize;
    let mut out = Vec::with_capacity(count.min(payload.len() / 4));
    for _ in 0..count {
        let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad("has no length"))?) as usize;
        let rev = Revision::decode(take(len)?).map_err(|e| bad(&format!("holds an unreadable revision: {e}")))?;
        out.push(rev);
    }
    if !rest.is_empty() {
        return Err(bad("holds bytes after its revisions"));
    }
    Ok(out)
}

/// Parses a whole log file.
fn parse(bytes: &[u8]) -> std::result::Result<LogContent, String> {
    let empty = |len| LogContent { revisions: Vec::new(), len, torn: false, generation: 0 };
    if bytes.len() < HEADER_BYTES || bytes[..HEADER_BYTES].iter().all(|b| *b == 0) {
        // A log whose creation a crash cut short holds a part of the header, or zeros.
        let short = &bytes[..bytes.len().min(HEADER_BYTES)];
        if short.iter().all(|b| *b == 0) || LOG_MAGIC.starts_with(&short[..short.len().min(8)]) {
            return Ok(empty(0));
        }
        return Err("is not a publish log".into());
    }
    if &bytes[..8] != LOG_MAGIC {
        return Err("is not a publish log (its first bytes are not the log's)".into());
    }
    let generation = u64::from_le_bytes(bytes[8..16].try_into().map_err(|_| "has no generation".to_string())?);
    if bytes[..HEADER_BYTES] != header(generation) {
        return Err("has a damaged header".into());
    }
    let mut revisions = Vec::new();
    let mut at = HEADER_BYTES;
    while at < bytes.len() {
        match frame_at(bytes, at, generation) {
            Some((payload, next)) => {
                revisions.extend(revisions_of(payload, at)?);
                at = next;
            }
            None => {
                // A torn append is the last frame of this generation; an intact one after it
                // means the damage is in acknowledged revisions.
                if (at + 1..bytes.len()).any(|later| frame_at(bytes, later, generation).is_some()) {
                    return Err(format!("is damaged at byte {at}, and acknowledged revisions follow it"));
                }
                // Zeros (space made ahead of the appends), or frames of an earlier generation.
                let torn = bytes[at..(at + FRAME_HEADER_BYTES).min(bytes.len())] != [0u8; FRAME_HEADER_BYTES][..]
                    && !frame_of_earlier(bytes, at, generation);
                return Ok(LogContent { revisions, len: at as u64, torn, generation });
            }
        }
    }
    Ok(LogContent { revisions, len: at as u64, torn: false, generation })
}

/// Whether an intact frame of a generation before `generation` starts at `at` (left from before
/// the last reset).
fn frame_of_earlier(bytes: &[u8], at: usize, generation: u64) -> bool {
    (generation.saturating_sub(8)..generation).any(|g| frame_at(bytes, at, g).is_some())
}

/// Keeps a log this store cannot use (revisions of a history it no longer has) beside it, under
/// a new name: it is never applied, and never deleted either.
fn set_aside(path: &Path, why: &str) -> Result<()> {
    let kept = stale_path(path);
    std::fs::rename(path, &kept).map_err(io)?;
    tracing::warn!(log = %path.display(), kept = %kept.display(), "{why}: the publish log is kept aside, not applied");
    Ok(())
}

/// The name a log kept aside takes: `mgha.redb.log.stale-MS`.
fn stale_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".stale-{}", crate::now_ms()));
    PathBuf::from(name)
}

impl Store {
    /// Starts the publish log of a store a node serves (`Engine::create`, `Engine::open`): local
    /// publishes become durable by an append to it from now on. A store opened with a log file
    /// beside it has it already ([`Store::open_with`]).
    pub(crate) fn start_log(&self) -> Result<()> {
        let mut slot = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(PublishLog::create(&log_path(&self.path), self.faults.clone())?);
        }
        Ok(())
    }

    /// At open: applies the log beside the store, if there is one, and keeps it.
    pub(super) fn open_log(&self) -> Result<()> {
        let path = log_path(&self.path);
        if !path.exists() {
            return Ok(());
        }
        let (log, revisions) = PublishLog::open(&path, self.faults.clone())?;
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut slot = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let log = slot.insert(log);
        let plugins = self.apply_logged(log, revisions)?;
        drop(slot);
        if plugins {
            self.reload_plugins()?;
        }
        Ok(())
    }

    /// At create: a log left beside the path by an earlier store is not this one's.
    pub(super) fn clear_log(path: &Path) -> Result<()> {
        let log = log_path(path);
        if !log.exists() {
            return Ok(());
        }
        match PublishLog::open(&log, None) {
            Ok((_, revisions)) if revisions.is_empty() => std::fs::remove_file(&log).map_err(io),
            _ => set_aside(&log, "a new store is created at its place"),
        }
    }

    /// Applies every revision of the log past the store's durable head. The caller holds the
    /// writer lock (an open, a reopen after a failed write), so no publish commits meanwhile.
    /// Each revision is checked as a replicated one is (it follows the head, its before-hashes
    /// match, it reproduces its id and state hash). They are committed without waiting for the
    /// disk, as they were first: the log keeps them durable until the next checkpoint, so this
    /// works on a disk that is full. A log whose first revision past the head does not follow it
    /// holds a history this store no longer has: a copy is kept aside, and the log is emptied.
    pub(super) fn replay_log_held(&self) -> Result<()> {
        let mut slot = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let Some(log) = slot.as_mut() else { return Ok(()) };
        let content = log.read()?;
        log.len = content.len;
        log.revisions = content.revisions.len() as u64;
        let plugins = self.apply_logged(log, content.revisions)?;
        drop(slot);
        if plugins {
            self.reload_plugins()?;
        }
        Ok(())
    }

    /// [`Store::replay_log_held`] of `revisions`, the content of `log` just read; whether a
    /// plugin changed (the caller reloads the plugins once it let go of the log).
    fn apply_logged(&self, log: &mut PublishLog, revisions: Vec<Revision>) -> Result<bool> {
        if revisions.is_empty() {
            return Ok(false);
        }
        let mut plugins = false;
        let mut stale = None;
        {
            let db = self.db.read().unwrap_or_else(|p| p.into_inner());
            let db = db.as_ref().ok_or_else(|| Error::Storage(redb::Error::DatabaseClosed))?;
            let mut txn = db.begin_write()?;
            txn.set_durability(redb::Durability::None).map_err(|e| Error::Storage(e.into()))?;
            let head = super::replica::read_head(&txn)?;
            let pending: Vec<Revision> = revisions.into_iter().filter(|r| r.seq > head.seq).collect();
            match pending.first() {
                None => {}
                Some(first) if first.seq != head.seq + 1 || first.parent != head.id => {
                    stale = Some(format!(
                        "its revision {} does not follow the store's head {} ({})",
                        first.seq,
                        head.seq,
                        head.id.short()
                    ));
                }
                Some(_) => {
                    let n = pending.len();
                    for rev in pending {
                        plugins |= rev.changes.iter().any(|c| c.type_name == crate::plugin::PLUGIN_TYPE);
                        self.apply_in(&txn, rev).map_err(|e| match super::write_fault_kind(&e) {
                            Some(_) => e,
                            None => Error::Corrupt(format!(
                                "publish log {}: a revision does not apply: {e}",
                                log.path().display()
                            )),
                        })?;
                    }
                    txn.commit()?;
                    tracing::info!(revisions = n, log = %log.path().display(), "applied the publish log's revisions to the store");
                }
            }
        }
        if let Some(why) = stale {
            let path = log.path().to_path_buf();
            std::fs::copy(&path, stale_path(&path)).map_err(io)?;
            tracing::warn!(log = %path.display(), "{why}: a copy of the publish log is kept aside, not applied");
            log.reset()?;
        }
        Ok(plugins)
    }

    /// Makes `batch` durable: the revisions group commit committed without waiting for the disk,
    /// in commit order, made while the store had been reopened `committed_at` times.
    pub(crate) fn make_durable(&self, batch: &[Arc<Revision>], committed_at: u64) -> Result<()> {
        self.guard("make_durable", || self.append_or_checkpoint(batch.iter().map(|r| r.as_ref()), committed_at))
    }

    /// One durable commit, which makes every commit so far durable in the store, then an empty
    /// log.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        self.guard("checkpoint", || {
            let txn = self.begin_write()?;
            self.commit_checkpoint(txn)
        })
    }

    /// Commits `txn` durably, then empties the log: everything committed so far is durable in
    /// the store. No append can come between the two (the log is held across both): an
    /// appended revision would be durable in the log only.
    pub(super) fn commit_checkpoint(&self, txn: super::fault::Txn<'_>) -> Result<()> {
        let mut slot = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let committed = self.commit_recording(txn);
        if committed.is_ok() {
            if let Some(log) = slot.as_mut().filter(|l| l.len > HEADER_BYTES as u64) {
                if let Err(e) = log.reset() {
                    // Harmless: what it holds is in the store now, and is skipped at the next
                    // open; the next checkpoint empties it.
                    tracing::warn!(error = %e, "emptying the publish log after a checkpoint failed");
                }
            }
        }
        drop(slot);
        self.reopen_after(&committed);
        committed
    }

    /// Whether the log takes `revisions` (a Standby's run of replicated ones): see
    /// [`PublishLog::takes`]. `false` without a log.
    pub(super) fn log_takes(&self, revisions: &[Revision]) -> bool {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|l| l.takes(revisions.iter()))
    }

    /// Makes `revisions`, just committed without waiting for the disk while the store had been
    /// reopened `committed_at` times, durable: an append to the log when it takes them;
    /// otherwise (a batch too large for a frame, a plugin change, a log that is due for a
    /// checkpoint, no log) a checkpoint. A failed append is a failed commit: the fault is
    /// recorded, and the store reopens on what is durable (the file and the log), dropping what
    /// was not.
    pub(super) fn append_or_checkpoint<'a>(
        &self,
        revisions: impl ExactSizeIterator<Item = &'a Revision> + Clone,
        committed_at: u64,
    ) -> Result<()> {
        let mut slot = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if committed_at != self.reopens() {
            // Some were made on a handle closed since: gone with it (see group commit).
            return Err(Error::Storage(redb::Error::DatabaseClosed));
        }
        let appended = match slot.as_mut() {
            Some(log) if log.takes(revisions.clone()) => Some(log.append(revisions)),
            _ => None,
        };
        drop(slot);
        match appended {
            Some(Ok(())) => Ok(()),
            // Too large for a frame after all: the store takes it.
            None | Some(Err(Error::TooLarge { .. })) => self.checkpoint(),
            Some(Err(e)) => {
                self.commit_failed(&e);
                Err(e)
            }
        }
    }

    /// Revisions in the log that only it holds durably (until the next checkpoint).
    pub fn logged_revisions(&self) -> u64 {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map_or(0, PublishLog::revisions)
    }

    /// Before a full sync replaces the file: everything durable in the store and an empty log,
    /// which this store no longer writes to (the store that replaces this one takes it over). A
    /// store that cannot checkpoint (a damaged one, kept in the archive) leaves its log beside
    /// it under a new name instead.
    pub(crate) fn retire_log(&self) -> Result<()> {
        let checkpointed = if self.logged_revisions() > 0 { self.checkpoint() } else { Ok(()) };
        let mut slot = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut log) = slot.take() else { return Ok(()) };
        match checkpointed {
            Ok(()) => log.reset(),
            Err(e) => set_aside(log.path(), &format!("its store is replaced without a checkpoint ({e})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changeset::{ChangeInput, ChangeSet};
    use crate::engine::{Engine, EngineOptions};
    use crate::node::NodeState;
    use crate::store::STORE_FILE;

    fn host(name: &str, i: usize) -> ChangeSet {
        let fields = match serde_json::json!({"ipv4-address": format!("10.2.{}.{}", i / 250, i % 250)}) {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        };
        ChangeSet {
            message: String::new(),
            changes: vec![ChangeInput::Put { type_name: "host".into(), name: name.into(), uid: None, fields }],
        }
    }

    /// The store file and its log as a crash leaves them: copied while the store is open.
    fn crash_image(node: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        let file = node.join(STORE_FILE);
        for from in [file.clone(), log_path(&file)] {
            std::fs::copy(&from, to.join(from.file_name().expect("name"))).expect("copy");
        }
    }

    #[test]
    fn acknowledged_publishes_only_the_log_held_are_applied_at_the_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = dir.path().join("node");
        let engine = Engine::create(&node, &NodeState::new_primary("a"), EngineOptions::default()).expect("create");
        let revs: Vec<Revision> =
            (0..20).map(|i| engine.publish("admin", &host(&format!("h{i}"), i)).expect("publish")).collect();
        assert_eq!(engine.store().logged_revisions(), 20, "one-object publishes go to the log");
        let image = dir.path().join("image");
        crash_image(&node, &image);

        // The file alone does not hold them: they were committed to it without the disk.
        let file_only = dir.path().join("file-only");
        std::fs::create_dir(&file_only).expect("mkdir");
        std::fs::copy(image.join(STORE_FILE), file_only.join(STORE_FILE)).expect("copy");
        let store = Store::open(&file_only.join(STORE_FILE)).expect("open");
        assert!(store.head().expect("head").seq < revs[19].seq, "the test needs revisions only the log holds");
        drop(store);

        let reopened = Engine::open(&image, EngineOptions::default()).expect("open the crash image");
        assert_eq!(reopened.store().head().expect("head"), revs[19].head());
        reopened.check().expect("verifies");
        assert_eq!(reopened.store().logged_revisions(), 20, "the log keeps them until a checkpoint");
        for r in &revs {
            assert_eq!(reopened.store().revision(r.seq).expect("revision").id, r.id);
        }
        drop(reopened);

        // A clean close checkpoints: the file alone is whole.
        drop(engine);
        std::fs::remove_file(log_path(&node.join(STORE_FILE))).expect("no log needed");
        let store = Store::open(&node.join(STORE_FILE)).expect("open");
        assert_eq!(store.head().expect("head"), revs[19].head());
    }

    #[test]
    fn a_checkpoint_empties_the_log_by_a_new_generation_and_keeps_its_space() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = dir.path().join("node");
        let engine = Engine::create(&node, &NodeState::new_primary("a"), EngineOptions::default()).expect("create");
        let log = log_path(&node.join(STORE_FILE));
        let size = std::fs::metadata(&log).expect("log").len();
        assert_eq!(size, PREALLOC_BYTES, "space is made ahead of the appends");
        for i in 0..3 {
            engine.publish("admin", &host(&format!("h{i}"), i)).expect("publish");
        }
        assert_eq!(PublishLog::open(&log, None).expect("read").1.len(), 3);
        engine.store().checkpoint().expect("checkpoint");
        assert_eq!(std::fs::metadata(&log).expect("log").len(), size, "the file keeps its length");
        assert!(PublishLog::open(&log, None).expect("read").1.is_empty(), "the earlier frames fail the new generation");
        let last = engine.publish("admin", &host("h3", 3)).expect("publish");
        let (_, held) = PublishLog::open(&log, None).expect("read");
        assert_eq!(held.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![last.seq]);
    }

    #[test]
    fn the_runs_a_standby_applies_are_durable_in_its_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let active = Engine::create(&a, &NodeState::new_primary("a"), EngineOptions::default()).expect("create");
        let standby = Engine::create(&b, &NodeState::new_primary("b"), EngineOptions::default()).expect("create");
        let revs: Vec<Revision> =
            (0..6).map(|i| active.publish("admin", &host(&format!("h{i}"), i)).expect("publish")).collect();
        for run in revs.chunks(2) {
            standby.apply_replicated_batch(run.to_vec()).expect("applies");
        }
        assert_eq!(standby.store().logged_revisions(), 6, "each run is one append");
        let image = dir.path().join("image");
        crash_image(&b, &image);
        let reopened = Engine::open(&image, EngineOptions::default()).expect("open the crash image");
        assert_eq!(reopened.store().head().expect("head"), revs[5].head());
        reopened.check().expect("verifies");
    }

    #[test]
    fn a_torn_append_is_cut_and_damage_before_intact_frames_refuses_the_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = dir.path().join("node");
        let engine = Engine::create(&node, &NodeState::new_primary("a"), EngineOptions::default()).expect("create");
        let revs: Vec<Revision> =
            (0..3).map(|i| engine.publish("admin", &host(&format!("h{i}"), i)).expect("publish")).collect();
        let image = dir.path().join("image");
        crash_image(&node, &image);
        drop(engine);
        let log = log_path(&image.join(STORE_FILE));
        let whole = std::fs::read(&log).expect("read");

        // The last frame cut short: an append a crash interrupted, never acknowledged.
        let torn = dir.path().join("torn");
        crash_image(&image, &torn);
        let frame3 = whole.windows(4).rposition(|w| w == FRAME_MAGIC).expect("a frame");
        std::fs::write(log_path(&torn.join(STORE_FILE)), &whole[..frame3 + 20]).expect("write");
        let opened = Engine::open(&torn, EngineOptions::default()).expect("a torn tail is cut");
        assert_eq!(opened.store().head().expect("head"), revs[1].head());
        drop(opened);

        // A flipped bit in the first frame, with intact frames after it: acknowledged revisions
        // are damaged, and the store says so instead of dropping them.
        let damaged = dir.path().join("damaged");
        crash_image(&image, &damaged);
        let mut bytes = whole.clone();
        bytes[HEADER_BYTES + FRAME_HEADER_BYTES + 10] ^= 0x01;
        std::fs::write(log_path(&damaged.join(STORE_FILE)), &bytes).expect("write");
        let e = Engine::open(&damaged, EngineOptions::default()).expect_err("damage before intact frames");
        assert_eq!(e.code(), crate::error::ErrorCode::Corrupt, "{e}");
        assert!(e.to_string().contains("publish log"), "{e}");
    }

    #[test]
    fn a_log_of_another_history_is_kept_aside_not_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let ea = Engine::create(&a, &NodeState::new_primary("a"), EngineOptions::default()).expect("create");
        let eb = Engine::create(&b, &NodeState::new_primary("b"), EngineOptions::default()).expect("create");
        ea.publish("admin", &host("first-a", 1)).expect("publish");
        ea.publish("admin", &host("from-a", 1)).expect("publish");
        eb.publish("admin", &host("from-b", 2)).expect("publish");
        // Closed and opened again: revision 1 of b is in its file.
        drop(eb);
        let eb = Engine::open(&b, EngineOptions::default()).expect("open");
        let image = dir.path().join("image");
        crash_image(&b, &image);
        let a_image = dir.path().join("a-image");
        crash_image(&a, &a_image);
        drop(eb);
        drop(ea);
        // b's store (at its durable revision 1) with a's log: revisions 1 and 2 of another
        // history.
        let a_log = std::fs::read(log_path(&a_image.join(STORE_FILE))).expect("read");
        let (_, held) = PublishLog::open(&log_path(&a_image.join(STORE_FILE)), None).expect("a's log");
        assert_eq!(held.len(), 2, "a's log holds its publishes");
        std::fs::write(log_path(&image.join(STORE_FILE)), &a_log).expect("write");
        let opened = Engine::open(&image, EngineOptions::default()).expect("opens");
        assert!(opened.store().get("host", "from-a").is_err(), "another history's revision was applied");
        let kept = std::fs::read_dir(&image)
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".log.stale-"))
            .count();
        assert_eq!(kept, 1, "the log is kept aside");
    }
}
