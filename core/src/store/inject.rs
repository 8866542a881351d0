//! Injected storage faults: a redb storage backend that wraps the file backend and fails chosen
//! writes and syncs with an OS error (EIO by default), so that tests can drive the store's
//! recovery from an I/O error other than a full disk on the real engine and the real file. An
//! engine opened with [`StorageFaults`] (`EngineOptions::storage_faults`) keeps them across the
//! reopens after a failed write and across a full sync that replaces its store.

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use std::fs::{File, OpenOptions};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

/// A countdown that never reaches zero: the calls it guards never fail.
const NEVER: u64 = u64::MAX;

/// Which storage calls fail, shared between a test and every database handle opened with it.
/// Each kind of call (write, sync) has a countdown: `fail_writes(n)` lets `n` more writes
/// through, then fails every later one until [`StorageFaults::heal`] (a disk that went bad);
/// `fail_one_write(n)` fails only the one after those `n` (a transient error).
#[derive(Debug)]
pub struct StorageFaults {
    writes_left: AtomicU64,
    syncs_left: AtomicU64,
    /// The next failing write (sync) is the last: the countdown is off again after it.
    writes_once: AtomicBool,
    syncs_once: AtomicBool,
    errno: AtomicI32,
    injected: AtomicU64,
}

impl StorageFaults {
    /// No fault yet; errors are EIO until [`StorageFaults::set_errno`].
    pub fn new() -> Arc<StorageFaults> {
        Arc::new(StorageFaults {
            writes_left: AtomicU64::new(NEVER),
            syncs_left: AtomicU64::new(NEVER),
            writes_once: AtomicBool::new(false),
            syncs_once: AtomicBool::new(false),
            errno: AtomicI32::new(libc::EIO),
            injected: AtomicU64::new(0),
        })
    }

    /// After `after` more successful writes, every write fails.
    pub fn fail_writes(&self, after: u64) {
        self.writes_once.store(false, Ordering::SeqCst);
        self.writes_left.store(after, Ordering::SeqCst);
    }

    /// After `after` more successful syncs, every sync fails.
    pub fn fail_syncs(&self, after: u64) {
        self.syncs_once.store(false, Ordering::SeqCst);
        self.syncs_left.store(after, Ordering::SeqCst);
    }

    /// After `after` more successful writes, one write fails; the ones after it succeed.
    pub fn fail_one_write(&self, after: u64) {
        self.writes_once.store(true, Ordering::SeqCst);
        self.writes_left.store(after, Ordering::SeqCst);
    }

    /// After `after` more successful syncs, one sync fails; the ones after it succeed.
    pub fn fail_one_sync(&self, after: u64) {
        self.syncs_once.store(true, Ordering::SeqCst);
        self.syncs_left.store(after, Ordering::SeqCst);
    }

    /// The OS error the failing calls return.
    pub fn set_errno(&self, errno: i32) {
        self.errno.store(errno, Ordering::SeqCst);
    }

    /// The fault stops: every later call reaches the file.
    pub fn heal(&self) {
        self.writes_left.store(NEVER, Ordering::SeqCst);
        self.syncs_left.store(NEVER, Ordering::SeqCst);
    }

    /// How many calls failed so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Counts one write down (the publish log's, as the store file's): `Err` when it is to fail.
    pub(super) fn pass_write(&self) -> std::io::Result<()> {
        self.pass(&self.writes_left, &self.writes_once)
    }

    /// Counts one sync down: `Err` when it is to fail.
    pub(super) fn pass_sync(&self) -> std::io::Result<()> {
        self.pass(&self.syncs_left, &self.syncs_once)
    }

    /// Counts one call down; `Err` when it is to fail.
    fn pass(&self, left: &AtomicU64, once: &AtomicBool) -> std::io::Result<()> {
        let passed = left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
            0 | NEVER => None,
            n => Some(n - 1),
        });
        match passed {
            Ok(_) => Ok(()),
            Err(NEVER) => Ok(()),
            Err(_) => {
                if once.swap(false, Ordering::SeqCst) {
                    left.store(NEVER, Ordering::SeqCst);
                }
                self.injected.fetch_add(1, Ordering::SeqCst);
                Err(std::io::Error::from_raw_os_error(self.errno.load(Ordering::SeqCst)))
            }
        }
    }
}

/// The file backend with [`StorageFaults`] in front of its writes and syncs.
#[derive(Debug)]
pub(super) struct FaultyBackend {
    file: FileBackend,
    faults: Arc<StorageFaults>,
}

impl FaultyBackend {
    /// Opens (or creates, when `create`) the file at `path` behind `faults`.
    pub(super) fn open(path: &Path, create: bool, faults: &Arc<StorageFaults>) -> Result<Self, redb::DatabaseError> {
        let file: File = OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path)?;
        Ok(FaultyBackend { file: FileBackend::new(file)?, faults: faults.clone() })
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        // Growing the file is a write to the disk as much as writing a page is.
        self.faults.pass(&self.faults.writes_left, &self.faults.writes_once)?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.faults.pass(&self.faults.syncs_left, &self.faults.syncs_once)?;
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.faults.pass(&self.faults.writes_left, &self.faults.writes_once)?;
        self.file.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}
