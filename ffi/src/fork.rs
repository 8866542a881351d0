//! `fork()` and handles. A child forked from a process with engines inherits their memory but
//! none of their threads (runtime, event dispatcher), and the parent still owns their files and
//! sockets. A call in the child on a handle made before the fork could only misbehave: a
//! publish acknowledged and then never replicated, a close waiting forever for threads that do
//! not exist. So every handle records the process that made it ([`crate::handle`]), and a
//! lookup in another process is refused with `MGHA_BUSY`: the child may only exec (or `_exit`).
//!
//! The process id is read on every lookup, and `getpid()` is a system call (a few hundred
//! nanoseconds on a virtual machine, as much as the rest of a read). So it is kept here and
//! refreshed by a `pthread_atfork` child handler, which runs in every child `fork()` makes.
//! The handlers are installed before the first handle exists, so a handle never outlives a fork
//! the handler missed. They also hold the handle registries locked across the fork, so that the
//! child does not inherit a registry lock some other thread held at that instant (the child
//! would wait for it forever).

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use crate::engine::ENGINES;
use crate::session::SESSIONS;

/// This process's id once [`watch`] ran; 0 before.
static PROCESS_ID: AtomicU32 = AtomicU32::new(0);
static WATCH: Once = Once::new();

thread_local! {
    /// The registry locks the forking thread holds from `prepare` to `parent` / `child`.
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    let pid = unsafe { libc::getpid() };
    u32::try_from(pid).unwrap_or(0)
}

/// Installs the fork handlers, once per process. Called before a handle is registered.
pub(crate) fn watch() {
    WATCH.call_once(|| {
        PROCESS_ID.store(getpid(), Ordering::Release);
        // SAFETY: the three handlers are `extern "C"` functions of this library, which is never
        // unloaded while it has handles (docs/c-api.md: do not dlclose libmgha).
        let failed = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        if failed != 0 {
            tracing::warn!(error = failed, "pthread_atfork failed: a forked child's calls are not refused");
        }
    });
}

/// The id of the process this code runs in, as of the last fork; 0 before the first handle.
pub(crate) fn process_id() -> u32 {
    PROCESS_ID.load(Ordering::Acquire)
}

extern "C" fn prepare() {
    // One fixed order; no code path holds one registry lock while taking the other.
    let held: Vec<Box<dyn Any>> = vec![Box::new(ENGINES.hold()), Box::new(SESSIONS.hold())];
    let _ = HELD.try_with(|h| *h.borrow_mut() = held);
}

/// After the fork, in the parent and the child: releases the registries (deepest first).
fn release() {
    let _ = HELD.try_with(|h| {
        let mut held = std::mem::take(&mut *h.borrow_mut());
        while held.pop().is_some() {}
    });
}

extern "C" fn parent() {
    release();
}

extern "C" fn child() {
    PROCESS_ID.store(getpid(), Ordering::Release);
    release();
}
