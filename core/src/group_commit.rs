//! Group commit: local revisions commit one by one (each its own write transaction, validated
//! and ordered under the role lock as before) without waiting for the disk, and concurrent
//! publishers then share one fsync. The first publisher to wait becomes the flusher: one append
//! to the publish log (or one durable commit of the store, a checkpoint) makes every revision
//! committed so far durable, it tells replication of them in
//! order, and wakes the others, whose revisions it covered. A publish is still acknowledged
//! only once its revision is durable, and replication (which ships only what it was told of)
//! never sends a revision that is not durable here.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::revision::Revision;

/// What the flusher does: make everything committed so far durable, then announce `batch`.
pub(crate) trait Flush {
    /// Makes `batch` (every revision committed and not yet durable, in commit order, made while
    /// the store had been reopened `committed_at` times) durable.
    fn flush(&self, batch: &[Arc<Revision>], committed_at: u64) -> Result<()>;
    fn announce(&self, batch: &[Arc<Revision>]);
    /// How many times the store was reopened after a failed write: a commit that was not
    /// durable before a reopen may be gone after it.
    fn reopens(&self) -> u64;
    /// A flush failed: tell replication what the store holds now.
    fn failed(&self, e: &Error);
}

/// Tickets number the commits in order. Not revision seqs: a history that is rewound (a
/// collision branch kept aside) reuses seqs, and a ticket must never be found durable because an
/// older revision had its seq.
#[derive(Default)]
struct State {
    /// The ticket of the last commit queued.
    last_ticket: u64,
    /// Committed (visible here) but not yet durable nor announced, in commit order, each with
    /// the store's reopen count at its commit.
    pending: Vec<(u64, u64, Arc<Revision>)>,
    /// Every commit up to this ticket is durable and announced.
    durable: u64,
    /// A flush is under way (by a publisher thread, outside the lock).
    flushing: bool,
    /// The last failed flush: the highest ticket it was to cover, and why it failed. Publishers
    /// of those revisions are told; the revisions stay pending for the next flush, unless the
    /// store was reopened since they committed (then they may be gone: they are dropped).
    failed: Option<(u64, std::io::ErrorKind, String)>,
    /// Tickets dropped after a reopen (first, last, why): never durable, whatever comes after.
    dropped: Vec<(u64, u64, std::io::ErrorKind, String)>,
}

/// The queue of revisions that wait for one shared fsync.
#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    flushed: Condvar,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is a single assignment or push: a panic leaves it usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a revision just committed without durability; its ticket for
    /// [`GroupCommit::wait_durable`]. Called in commit order (under the engine's role lock).
    pub(crate) fn committed(&self, rev: Arc<Revision>, reopens: u64) -> u64 {
        let mut st = self.lock();
        st.last_ticket += 1;
        let ticket = st.last_ticket;
        st.pending.push((ticket, reopens, rev));
        ticket
    }

    /// Returns once the commit of `ticket` is durable and announced, flushing when no one else is.
    pub(crate) fn wait_durable(&self, ticket: u64, io: &dyn Flush) -> Result<()> {
        let mut st = self.lock();
        loop {
            if let Some((_, _, kind, why)) = st.dropped.iter().find(|(a, b, _, _)| (*a..=*b).contains(&ticket)) {
                return Err(Error::Io(std::io::Error::new(*kind, why.clone())));
            }
            if st.durable >= ticket {
                return Ok(());
            }
            if let Some((upto, kind, why)) = &st.failed {
                if ticket <= *upto {
                    return Err(Error::Io(std::io::Error::new(*kind, why.clone())));
                }
            }
            if st.flushing {
                st = self.flushed.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st = self.flush_locked(st, io);
        }
    }

    /// Makes every queued revision durable and announced now (before a role change, say, so
    /// that it never overtakes a revision committed before it).
    pub(crate) fn flush_all(&self, io: &dyn Flush) -> Result<()> {
        let mut st = self.lock();
        while st.flushing {
            st = self.flushed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let Some(last) = st.pending.last().map(|(t, _, _)| *t) else {
            return Ok(());
        };
        drop(st);
        self.wait_durable(last, io)
    }

    /// One flush by the calling thread: takes the batch, fsyncs and announces outside the
    /// lock (the `flushing` flag keeps the flushes, and so the announcements, in order).
    fn flush_locked<'a>(&'a self, mut st: MutexGuard<'a, State>, io: &dyn Flush) -> MutexGuard<'a, State> {
        st.flushing = true;
        let batch = std::mem::take(&mut st.pending);
        drop(st);
        let revisions: Vec<Arc<Revision>> = batch.iter().map(|(_, _, r)| r.clone()).collect();
        let committed_at = batch.first().map_or_else(|| io.reopens(), |(_, r, _)| *r);
        let result = io.flush(&revisions, committed_at);
        match &result {
            Ok(()) => io.announce(&revisions),
            Err(e) => io.failed(e),
        }
        let reopens = io.reopens();
        let mut st = self.lock();
        st.flushing = false;
        let last = batch.last().map_or(st.durable, |(t, _, _)| *t);
        match result {
            Ok(()) => {
                st.durable = st.durable.max(last);
                st.failed = None;
            }
            Err(e) => {
                let kind = match &e {
                    Error::Io(io) => io.kind(),
                    Error::Storage(redb::Error::Io(io)) => io.kind(),
                    _ => std::io::ErrorKind::Other,
                };
                tracing::warn!(error = %e, upto = last, "making committed revisions durable failed");
                // Still not durable: they go back in front, to be announced in order by the
                // flush that makes them durable, if one does. Those committed before a reopen
                // of the store may be gone with the handle they were made on: they are never
                // announced (replication learnt the store's head from `failed`), and their
                // publishers are told the publish failed.
                let newer = std::mem::replace(&mut st.pending, batch);
                st.pending.extend(newer);
                let stale = st.pending.iter().take_while(|(_, r, _)| *r != reopens).count();
                if stale > 0 {
                    let (first, upto) = (st.pending[0].0, st.pending[stale - 1].0);
                    tracing::warn!(
                        revisions = stale,
                        "revisions not yet durable when the store was reopened are dropped"
                    );
                    st.dropped.push((first, upto, kind, e.to_string()));
                    st.pending.drain(..stale);
                }
                st.failed = Some((last, kind, e.to_string()));
            }
        }
        self.flushed.notify_all();
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    fn rev(seq: u64) -> Arc<Revision> {
        Arc::new(Revision {
            seq,
            id: Default::default(),
            parent: Default::default(),
            epoch: 1,
            author: "t".into(),
            time_ms: 0,
            message: String::new(),
            state_hash: Default::default(),
            changes: Vec::new(),
        })
    }

    #[derive(Default)]
    struct Disk {
        flushes: AtomicUsize,
        fail: AtomicBool,
        /// A failed flush reopens the store (as the real one does on a write fault).
        reopen_on_failure: AtomicBool,
        reopens: AtomicUsize,
        failures_reported: AtomicUsize,
        announced: Mutex<Vec<u64>>,
    }

    impl Flush for Disk {
        fn flush(&self, _: &[Arc<Revision>], _: u64) -> Result<()> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                if self.reopen_on_failure.load(Ordering::SeqCst) {
                    self.reopens.fetch_add(1, Ordering::SeqCst);
                }
                return Err(Error::Io(std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full")));
            }
            Ok(())
        }
        fn announce(&self, batch: &[Arc<Revision>]) {
            self.announced.lock().unwrap_or_else(|p| p.into_inner()).extend(batch.iter().map(|r| r.seq));
        }
        fn reopens(&self) -> u64 {
            self.reopens.load(Ordering::SeqCst) as u64
        }
        fn failed(&self, _: &Error) {
            self.failures_reported.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn one_flush_covers_every_revision_queued_before_it() {
        let (g, disk) = (GroupCommit::default(), Disk::default());
        let tickets: Vec<u64> = (1..=3).map(|s| g.committed(rev(s), 0)).collect();
        g.wait_durable(tickets[1], &disk).expect("durable");
        // Revision 3 was queued before the flush: the same fsync covered it.
        g.wait_durable(tickets[2], &disk).expect("durable");
        assert_eq!(disk.flushes.load(Ordering::SeqCst), 1);
        assert_eq!(*disk.announced.lock().expect("lock"), vec![1, 2, 3]);
    }

    #[test]
    fn a_rewound_history_reusing_seqs_is_still_flushed_and_announced() {
        let (g, disk) = (GroupCommit::default(), Disk::default());
        let t = g.committed(rev(5), 0);
        g.wait_durable(t, &disk).expect("durable");
        // The history was rewound below 5 (a collision branch kept aside): seq 4 again.
        let t = g.committed(rev(4), 0);
        g.wait_durable(t, &disk).expect("durable");
        assert_eq!(disk.flushes.load(Ordering::SeqCst), 2);
        assert_eq!(*disk.announced.lock().expect("lock"), vec![5, 4]);
    }

    #[test]
    fn a_failed_flush_fails_its_publishers_and_keeps_the_revisions_for_the_next() {
        let (g, disk) = (GroupCommit::default(), Disk::default());
        let t1 = g.committed(rev(1), 0);
        disk.fail.store(true, Ordering::SeqCst);
        let e = g.wait_durable(t1, &disk).expect_err("the flush failed");
        assert_eq!(e.code(), crate::error::ErrorCode::Io);
        assert!(disk.announced.lock().expect("lock").is_empty(), "announced before durable");
        disk.fail.store(false, Ordering::SeqCst);
        let t2 = g.committed(rev(2), 0);
        g.wait_durable(t2, &disk).expect("durable");
        assert_eq!(*disk.announced.lock().expect("lock"), vec![1, 2]);
    }

    #[test]
    fn revisions_committed_before_a_reopen_are_dropped_never_announced() {
        let (g, disk) = (GroupCommit::default(), Disk::default());
        let t1 = g.committed(rev(1), 0);
        disk.fail.store(true, Ordering::SeqCst);
        disk.reopen_on_failure.store(true, Ordering::SeqCst);
        let e = g.wait_durable(t1, &disk).expect_err("the flush failed");
        assert_eq!(e.code(), crate::error::ErrorCode::Io);
        assert_eq!(disk.failures_reported.load(Ordering::SeqCst), 1, "replication hears of the failure");
        // The store was reopened: revision 1 may be gone, and the next commit reuses its seq.
        disk.fail.store(false, Ordering::SeqCst);
        let t2 = g.committed(rev(1), 1);
        g.wait_durable(t2, &disk).expect("durable");
        assert_eq!(*disk.announced.lock().expect("lock"), vec![1], "the lost revision 1 is never announced");
        assert!(g.wait_durable(t1, &disk).is_err(), "its publisher was told it failed");
    }

    #[test]
    fn concurrent_waiters_all_return_with_every_revision_announced_once_in_order() {
        let g = Arc::new(GroupCommit::default());
        let disk = Arc::new(Disk::default());
        let order = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (g, disk, order) = (g.clone(), disk.clone(), order.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        // Commits are ordered by a lock, as the role lock orders them.
                        let ticket = {
                            let mut o = order.lock().unwrap_or_else(|p| p.into_inner());
                            *o += 1;
                            g.committed(rev(*o), 0)
                        };
                        g.wait_durable(ticket, disk.as_ref()).expect("durable");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let announced = disk.announced.lock().expect("lock").clone();
        assert_eq!(announced, (1..=1600).collect::<Vec<_>>());
        assert!(disk.flushes.load(Ordering::SeqCst) <= 1600);
    }
}
