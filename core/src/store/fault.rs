//! Surviving a failed write (a full disk, EIO). Once one write of the file fails, redb refuses
//! every later transaction ("previous I/O error") until the database is closed and opened again;
//! the store does that itself, at once, so that reads go on and the next write is tried afresh
//! (and succeeds once space is free), with no restart. A commit either lands whole or not at
//! all (redb's commit is atomic), so nothing half-committed is ever visible after the reopen.
//!
//! The store also remembers why it could not write ([`StoreFault`]) until a commit succeeds
//! again, so that status shows it and the failover driver stops renewing the lease of an Active
//! that cannot write; [`Store::probe_write`] lets the driver find out when writing works again
//! while nothing else commits.

use redb::{Database, ReadTransaction, TableDefinition, WriteTransaction};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::{map_open_error, open_db, Store};
use crate::error::{Error, Result};
use crate::limits::{STORE_REOPEN_RETRY_MS, STORE_WRITE_PROBE_BYTES};
use crate::status::{StoreFault, WriteFaultKind};

/// A write transaction of the store, holding its writer lock (`begin_write`).
pub(crate) struct Txn<'a> {
    txn: WriteTransaction,
    _writer: MutexGuard<'a, ()>,
}

impl std::ops::Deref for Txn<'_> {
    type Target = WriteTransaction;
    fn deref(&self) -> &WriteTransaction {
        &self.txn
    }
}

impl std::ops::DerefMut for Txn<'_> {
    fn deref_mut(&mut self) -> &mut WriteTransaction {
        &mut self.txn
    }
}

/// A read transaction of the store, counted while it lives ([`Store::begin_read`]).
pub(crate) struct ReadTxn<'a> {
    txn: ReadTransaction,
    _live: LiveRead<'a>,
}

impl std::ops::Deref for ReadTxn<'_> {
    type Target = ReadTransaction;
    fn deref(&self) -> &ReadTransaction {
        &self.txn
    }
}

/// One live read transaction in the store's count; dropped after the transaction (field order).
struct LiveRead<'a>(&'a AtomicUsize);

impl Drop for LiveRead<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The store's writer lock: held by every write transaction, and by a reopen.
pub(super) type WriterLock = Mutex<()>;

/// The table of the write probe: one record, written and removed again by each probe.
const PROBE: TableDefinition<&str, &[u8]> = TableDefinition::new("write_probe");

/// What the store knows of its last write failure.
#[derive(Default)]
pub(super) struct FaultState {
    fault: Option<StoreFault>,
    /// When reopening last failed and why, while the database is closed: operations in the
    /// meantime fail at once rather than each run redb's recovery again.
    reopen_failed: Option<(Instant, String)>,
}

impl Store {
    /// Why this store cannot write, from its last failed commit until one succeeds again.
    pub fn fault(&self) -> Option<StoreFault> {
        self.fault_state().fault.clone()
    }

    fn fault_state(&self) -> MutexGuard<'_, FaultState> {
        // Every critical section leaves the state consistent, so a poisoned lock is still usable.
        self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Begins a read transaction, counted while it lives (see [`Store::resize_cache`]).
    pub(crate) fn begin_read(&self) -> Result<ReadTxn<'_>> {
        use redb::ReadableDatabase;
        // Counted under the database lock, which a resize holds exclusively: it sees every reader.
        let txn = self.with_db(|db| {
            let txn = db.begin_read()?;
            self.live_reads.fetch_add(1, Ordering::SeqCst);
            Ok(txn)
        })?;
        Ok(ReadTxn { txn, _live: LiveRead(&self.live_reads) })
    }

    /// The size of redb's page cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache_bytes.load(Ordering::Relaxed)
    }

    /// Gives redb's page cache `bytes` from now on, which takes closing the database and opening
    /// it again. That happens only while no transaction is alive, after a durable commit, so
    /// that no reader fails and no commit is lost (unlike a reopen after a failed write, it
    /// drops nothing that group commit waits for). Returns whether the cache has that size now;
    /// `false` when the store is busy (the caller tries again later) or cannot write.
    pub fn resize_cache(&self, bytes: usize) -> Result<bool> {
        if self.cache_bytes() == bytes {
            return Ok(true);
        }
        let writer = match self.writer.try_lock() {
            Ok(w) => w,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
        };
        let mut slot = match self.db.try_write() {
            Ok(s) => s,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
        };
        if self.live_reads.load(Ordering::SeqCst) > 0 || self.broken().is_some() || self.fault().is_some() {
            return Ok(false);
        }
        let Some(db) = slot.as_ref() else { return Ok(false) };
        // What a closed handle did not make durable may be gone at the open: everything is, first.
        if let Err(e) = db.begin_write().map_err(Error::from).and_then(|txn| txn.commit().map_err(Error::from)) {
            if let Some(kind) = write_fault_kind(&e) {
                self.record_fault(kind, &e);
            }
            return Err(e);
        }
        if let Some(log) = self.log.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            // Everything it held is durable in the file now.
            log.reset()?;
        }
        if let Some(db) = slot.take() {
            if let Err(e) = db.close() {
                tracing::debug!(error = %e, "closing the store to resize its cache");
            }
        }
        self.cache_bytes.store(bytes, Ordering::Relaxed);
        match open_db(&self.path, false, self.faults.as_ref(), bytes) {
            Ok(db) => *slot = Some(db),
            Err(e) => {
                drop(slot);
                return Err(self.reopen_failed(map_open_error(&self.path, e)));
            }
        }
        drop(slot);
        drop(writer);
        // Verified as at any open before anything of it is used.
        if let Err(e) = self.quick_check() {
            *self.db.write().unwrap_or_else(|p| p.into_inner()) = None;
            return Err(self.reopen_failed(e));
        }
        Ok(true)
    }

    /// Begins a write transaction. It holds the store's writer lock until it commits or drops,
    /// so that a reopen never closes the database under a live write (redb would then defer the
    /// close, and the reopen would find the file still locked).
    /// A store that met damage in the storage engine (see [`Store::guard`]) takes no writes:
    /// what a write would add could rest on pages it misread.
    pub(crate) fn begin_write(&self) -> Result<Txn<'_>> {
        if let Some(found) = self.broken() {
            return Err(Error::Corrupt(format!("the store takes no writes since damage was found: {found}")));
        }
        for _ in 0..2 {
            let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            {
                let db = self.db.read().unwrap_or_else(|p| p.into_inner());
                if let Some(db) = db.as_ref() {
                    match db.begin_write() {
                        Err(redb::TransactionError::Storage(redb::StorageError::PreviousIo)) => {}
                        Ok(txn) => return Ok(Txn { txn, _writer: writer }),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            drop(writer);
            self.reopen()?;
        }
        Err(self.closed_error("the store failed again right after it was reopened"))
    }

    /// Runs `begin` on the open database. A database that an earlier failure closed, or that
    /// redb latched after a failed write, is reopened first.
    fn with_db<T>(&self, begin: impl Fn(&Database) -> Result<T, redb::TransactionError>) -> Result<T> {
        for _ in 0..2 {
            {
                let db = self.db.read().unwrap_or_else(|p| p.into_inner());
                if let Some(db) = db.as_ref() {
                    match begin(db) {
                        Err(redb::TransactionError::Storage(redb::StorageError::PreviousIo)) => {}
                        other => return other.map_err(Error::from),
                    }
                }
            }
            self.reopen()?;
        }
        Err(self.closed_error("the store failed again right after it was reopened"))
    }

    /// Commits `txn` durably. A failure to write records the fault and reopens the database,
    /// so that the next transaction starts on a clean handle; a success clears the fault.
    pub(crate) fn commit_txn(&self, txn: Txn<'_>) -> Result<()> {
        let committed = self.commit_recording(txn);
        self.reopen_after(&committed);
        committed
    }

    /// [`Store::commit_txn`] without the reopen, for a caller that holds a lock the reopen
    /// takes (the plugin registry): it calls [`Store::reopen_after`] once it let go.
    pub(super) fn commit_recording(&self, txn: Txn<'_>) -> Result<()> {
        let Txn { txn, _writer } = txn;
        match txn.commit() {
            Ok(()) => {
                if let Some(fault) = self.fault_state().fault.take() {
                    tracing::info!(after = %fault, "the store writes again");
                }
                Ok(())
            }
            Err(e) => {
                let e = Error::from(e);
                if let Some(kind) = write_fault_kind(&e) {
                    self.record_fault(kind, &e);
                }
                Err(e)
            }
        }
    }

    /// A write outside redb (the publish log) failed with `e`: recorded as a failed commit is,
    /// and the database reopens on what is durable, as after one.
    pub(super) fn commit_failed(&self, e: &Error) {
        if let Some(kind) = write_fault_kind(e) {
            self.record_fault(kind, e);
            if let Err(reopen) = self.reopen() {
                tracing::error!(error = %reopen, "could not reopen the store after a failed write");
            }
        }
    }

    /// Reopens the database if `committed` failed to write.
    pub(super) fn reopen_after(&self, committed: &Result<()>) {
        if let Err(e) = committed {
            if write_fault_kind(e).is_some() {
                if let Err(reopen) = self.reopen() {
                    tracing::error!(error = %reopen, "could not reopen the store after a failed write");
                }
            }
        }
    }

    /// An operation failed with `e`. An error the disk itself returned (EIO while a transaction
    /// grew the file or read a page, not only at its commit) is the store's fault as much as a
    /// failed commit: it is recorded, so that status shows it and an Active stops renewing its
    /// lease, until a commit succeeds again. redb latched the handle meanwhile; the next
    /// transaction reopens it (`begin_write`, `with_db`).
    /// `faults_before` is [`Store::faults_recorded`] before the operation: a failed commit
    /// inside it recorded (and reopened) already.
    pub(super) fn note_io_error(&self, e: &Error, faults_before: u64) {
        if let Error::Storage(redb::Error::Io(io)) = e {
            if self.faults_recorded() == faults_before {
                self.record_fault(io_fault_kind(io), e);
            }
        }
    }

    /// How many write failures were recorded since the store opened.
    pub(super) fn faults_recorded(&self) -> u64 {
        self.faults_recorded.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn record_fault(&self, kind: WriteFaultKind, e: &Error) {
        let mut state = self.fault_state();
        let since_ms = state.fault.as_ref().map(|f| f.since_ms).unwrap_or_else(crate::now_ms);
        tracing::error!(error = %e, cause = %kind, store = %self.path.display(), "a write to the store failed");
        state.fault = Some(StoreFault { kind, error: e.to_string(), since_ms, reopened: false });
        self.faults_recorded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many times the database was closed and opened again after a failed write.
    pub(crate) fn reopens(&self) -> u64 {
        self.reopens.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Closes the database and opens it again, verified as at start ([`Store::quick_check`]).
    /// New transactions wait meanwhile (they need the database lock this holds); transactions
    /// already running fail (redb: "database closed"), as they would have on the failed handle.
    fn reopen(&self) -> Result<()> {
        // No write transaction is alive while this is held (see `begin_write`).
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        let failed_lately = self.fault_state().reopen_failed.clone();
        if let Some((at, why)) = failed_lately {
            if slot.is_none() && at.elapsed().as_millis() < u128::from(STORE_REOPEN_RETRY_MS) {
                return Err(self.closed_error(&why));
            }
        }
        // Commits not made durable on the closed handle may be gone after the open: whoever
        // waits for them (group commit) learns it from this count.
        self.reopens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(db) = slot.take() {
            // A latched handle cannot write its clean-shutdown mark; redb recovers at the open.
            if let Err(e) = db.close() {
                tracing::debug!(error = %e, "closing the failed store handle");
            }
        }
        match open_db(&self.path, false, self.faults.as_ref(), self.cache_bytes()) {
            Ok(db) => *slot = Some(db),
            Err(e) => {
                drop(slot);
                return Err(self.reopen_failed(map_open_error(&self.path, e)));
            }
        }
        drop(slot);
        if let Err(e) = self.quick_check().and_then(|_| self.reload_plugins()) {
            // Nothing is served from a file that fails its verification, as `Engine::open`
            // would refuse it.
            *self.db.write().unwrap_or_else(|p| p.into_inner()) = None;
            return Err(self.reopen_failed(e));
        }
        // The reopened handle holds what was durable in the file: what only the publish log
        // held (acknowledged publishes) is applied again before anything reads or writes.
        if let Err(e) = self.replay_log_held() {
            *self.db.write().unwrap_or_else(|p| p.into_inner()) = None;
            return Err(self.reopen_failed(e));
        }
        let mut state = self.fault_state();
        state.reopen_failed = None;
        if let Some(f) = state.fault.as_mut() {
            f.reopened = true;
        }
        tracing::warn!(store = %self.path.display(), "reopened the store after a failed write");
        Ok(())
    }

    /// Records that reopening failed with `e` (the store stays closed), and returns `e`.
    fn reopen_failed(&self, e: Error) -> Error {
        let mut state = self.fault_state();
        state.reopen_failed = Some((Instant::now(), e.to_string()));
        if let Some(f) = state.fault.as_mut() {
            f.reopened = false;
        }
        e
    }

    /// The error of an operation on a store that is closed after a failed write.
    fn closed_error(&self, why: &str) -> Error {
        let cause = self.fault().map(|f| format!(" ({f})")).unwrap_or_default();
        Error::Io(std::io::Error::other(format!("the store is closed after a failed write{cause}: {why}")))
    }

    /// Tries whether the store can write again, while it has a fault: commits a record of
    /// [`STORE_WRITE_PROBE_BYTES`], then removes it. Success clears the fault. Does nothing on a
    /// store without a fault. The record is large enough that a filesystem with only a few pages
    /// left still fails it.
    pub fn probe_write(&self) -> Result<()> {
        if self.fault().is_none() {
            return Ok(());
        }
        let txn = self.begin_write()?;
        txn.open_table(PROBE)?.insert("probe", vec![0u8; STORE_WRITE_PROBE_BYTES].as_slice())?;
        self.commit_txn(txn)?;
        let txn = self.begin_write()?;
        txn.open_table(PROBE)?.remove("probe")?;
        self.commit_txn(txn)
    }
}

/// The kind of write failure `e` is, if it is one: an I/O error from the storage, or redb's
/// refusal after one.
pub fn write_fault_kind(e: &Error) -> Option<WriteFaultKind> {
    match e {
        Error::Storage(redb::Error::Io(io)) => Some(io_fault_kind(io)),
        Error::Storage(redb::Error::PreviousIo | redb::Error::DatabaseClosed) => Some(WriteFaultKind::Io),
        _ => None,
    }
}

fn io_fault_kind(e: &std::io::Error) -> WriteFaultKind {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => WriteFaultKind::DiskFull,
        _ => WriteFaultKind::Io,
    }
}
