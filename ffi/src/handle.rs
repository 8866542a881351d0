//! Opaque handles. A handle C holds (`mgha_engine *`, `mgha_session *`) is the address of an
//! `Arc` that a registry of live handles owns; the library never dereferences a pointer it is
//! given, it looks it up. So a handle that was closed or freed, closed twice, or never made by
//! this library is refused with `MGHA_INVALID_ARGUMENT` instead of being undefined behaviour, and
//! a close racing with calls on the same handle only makes those calls fail: each call holds its
//! own reference until it returns.
//!
//! What this cannot catch: once a handle is gone, its address may be handed out again for a new
//! handle of the same kind, and a stale copy of the old pointer then reaches the new one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{FfiError, FfiResult};

/// The live handles of one kind, by address.
pub struct Registry<T> {
    kind: &'static str,
    live: Mutex<BTreeMap<usize, Arc<T>>>,
}

impl<T> Registry<T> {
    pub const fn new(kind: &'static str) -> Registry<T> {
        Registry { kind, live: Mutex::new(BTreeMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        // Every critical section is one map operation; a poisoned map is still consistent.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new handle and returns the pointer C gets.
    pub fn insert(&self, value: Arc<T>) -> *mut T {
        let ptr = Arc::as_ptr(&value).cast_mut();
        self.lock().insert(ptr as usize, value);
        ptr
    }

    /// The handle behind `ptr`, which must be live.
    pub fn get(&self, ptr: *const T) -> FfiResult<Arc<T>> {
        if ptr.is_null() {
            return Err(FfiError::null(self.kind));
        }
        self.lock().get(&(ptr as usize)).cloned().ok_or_else(|| self.not_live())
    }

    /// Unregisters the handle behind `ptr`; later lookups fail. `None` when it was not live.
    pub fn remove(&self, ptr: *const T) -> Option<Arc<T>> {
        self.lock().remove(&(ptr as usize))
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
    use crate::error::mgha_status;

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
}
