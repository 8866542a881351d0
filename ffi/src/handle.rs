//! Opaque handles. A handle C holds (`mgha_engine *`, `mgha_session *`) is the address of an
//! `Arc` that a registry of live handles owns; the library never dereferences a pointer it is
//! given, it looks it up. So a handle that was closed or freed, closed twice, or never made by
//! this library is refused with `MGHA_INVALID_ARGUMENT` instead of being undefined behaviour, and
//! a close racing with calls on the same handle only makes those calls fail: each call holds its
//! own reference until it returns. Each handle also records the process that made it: in a child
//! forked after it was made, it is refused with `MGHA_BUSY` and left alone ([`crate::fork`]).
//!
//! What this cannot catch: once a handle is gone, its address may be handed out again for a new
//! handle of the same kind, and a stale copy of the old pointer then reaches the new one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{mgha_status, FfiError, FfiResult};
use crate::fork;

/// A live handle and the id of the process that made it.
pub struct Entry<T> {
    process_id: u32,
    value: Arc<T>,
}

/// The live handles of one kind, by address.
pub struct Registry<T> {
    kind: &'static str,
    live: Mutex<BTreeMap<usize, Entry<T>>>,
}

impl<T> Registry<T> {
    pub const fn new(kind: &'static str) -> Registry<T> {
        Registry { kind, live: Mutex::new(BTreeMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<usize, Entry<T>>> {
        // Every critical section is one map operation; a poisoned map is still consistent.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds the registry locked, for the duration of a `fork()` ([`crate::fork`]).
    pub(crate) fn hold(&self) -> MutexGuard<'_, BTreeMap<usize, Entry<T>>> {
        self.lock()
    }

    /// Registers a new handle and returns the pointer C gets.
    pub fn insert(&self, value: Arc<T>) -> *mut T {
        fork::watch();
        let ptr = Arc::as_ptr(&value).cast_mut();
        self.lock().insert(ptr as usize, Entry { process_id: fork::process_id(), value });
        ptr
    }

    /// The handle behind `ptr`, which must be live and made by this process.
    pub fn get(&self, ptr: *const T) -> FfiResult<Arc<T>> {
        if ptr.is_null() {
            return Err(FfiError::null(self.kind));
        }
        let live = self.lock();
        let entry = live.get(&(ptr as usize)).ok_or_else(|| self.not_live())?;
        self.same_process(entry)?;
        Ok(entry.value.clone())
    }

    /// Unregisters the handle behind `ptr`; later lookups fail. `None` when it was not live, or
    /// was made by the process this one was forked from (which still owns it).
    pub fn remove(&self, ptr: *const T) -> Option<Arc<T>> {
        let mut live = self.lock();
        let entry = live.get(&(ptr as usize))?;
        self.same_process(entry).ok()?;
        live.remove(&(ptr as usize)).map(|e| e.value)
    }

    fn same_process(&self, entry: &Entry<T>) -> FfiResult<()> {
        let here = fork::process_id();
        if entry.process_id == here {
            return Ok(());
        }
        Err(FfiError::new(
            mgha_status::MGHA_BUSY,
            format!(
                "this {} was made by process {}, and this is process {here}, forked from it: a forked child \
                 has none of the engine's threads and must not use the parent's handles (fork only to exec; \
                 docs/c-api.md, \"fork\")",
                self.kind, entry.process_id
            ),
        ))
    }

    pub fn not_live(&self) -> FfiError {
        FfiError::invalid(format!(
            "{} is not a live handle: it was closed or freed, or was not returned by this library",
            self.kind
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_or_foreign_handles_are_refused() {
        let registry: Registry<u32> = Registry::new("thing");
        let p = registry.insert(Arc::new(5));
        assert_eq!(*registry.get(p).expect("live"), 5);
        let held = registry.get(p).expect("live");
        assert!(registry.remove(p).is_some());
        assert_eq!(*held, 5, "a call in flight keeps its reference");
        let e = registry.get(p).expect_err("removed");
        assert_eq!(e.status, mgha_status::MGHA_INVALID_ARGUMENT);
        assert!(registry.remove(p).is_none(), "a second remove finds nothing");
        let local = 7u32;
        assert!(registry.get(&local).is_err(), "an address the registry never gave out");
        assert_eq!(registry.get(std::ptr::null()).expect_err("NULL").status, mgha_status::MGHA_NULL_ARGUMENT);
    }

    #[test]
    fn a_handle_of_another_process_is_refused_and_kept() {
        let registry: Registry<u32> = Registry::new("thing");
        let p = registry.insert(Arc::new(5));
        // What a forked child finds: an entry whose maker is not this process.
        registry.lock().get_mut(&(p as usize)).expect("entry").process_id = fork::process_id() + 1;
        let e = registry.get(p).expect_err("made by another process");
        assert_eq!(e.status, mgha_status::MGHA_BUSY);
        assert!(e.message.contains("forked"), "{}", e.message);
        assert!(registry.remove(p).is_none(), "the child releases nothing");
        assert_eq!(registry.lock().len(), 1, "the entry stays for its own process");
    }
}
