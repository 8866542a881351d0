//! Reads: objects (JSON or MessagePack), listings, revisions, diffs, status and the store
//! check. Every read is one MVCC snapshot of the store, so reads never wait for publishes and are
//! safe from any thread, event callbacks included. Results are owned buffers: JSON strings freed
//! with `mgha_string_free`, MessagePack with `mgha_bytes_free`.

use std::ffi::c_char;

use mgha_core::limits::{LIST_OBJECTS_MAX, LIST_REVISIONS_MAX};
use serde::Serialize;

use crate::args::{optional_text, text, Out};
use crate::engine::{core_of, mgha_engine};
use crate::error::{mgha_status, FfiResult};
use crate::strings::{into_c_bytes, into_c_string, json_c_string};

/// `limit` as the API takes it: 0 means "as many as allowed".
pub(crate) fn cap(limit: usize, max: usize) -> usize {
    if limit == 0 {
        max
    } else {
        limit.min(max)
    }
}

/// Writes `value` as JSON to a `char **` out-parameter.
///
/// # Safety
/// `out` is NULL or writable for the call.
pub(crate) unsafe fn json_out<T: Serialize>(out: *mut *mut c_char, value: impl FnOnce() -> FfiResult<T>) -> FfiResult {
    // SAFETY: the caller's contract.
    let out = unsafe { Out::new(out, "out") }?;
    out.set(json_c_string(&value()?)?);
    Ok(())
}

/// One object of `type` by uid or name, as JSON `{"type", "uid", "name", "fields"}`.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_get_json(
    engine: *const mgha_engine,
    type_name: *const c_char,
    key: *const c_char,
    out: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY (three calls): C strings and an out-parameter valid for the call (API contract).
        let type_name = unsafe { text(type_name, "type") }?;
        let key = unsafe { text(key, "key") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let object = core.store().get(type_name, key)?;
        out.set(into_c_string(object.to_json().to_string())?);
        Ok(())
    })
}

/// One object in its canonical MessagePack encoding (a map of `fields`, `name`, `type` and
/// `uid` as 16 bytes), freed with `mgha_bytes_free(*out, *out_len)`.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_get_msgpack(
    engine: *const mgha_engine,
    type_name: *const c_char,
    key: *const c_char,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY (four calls): C strings and out-parameters valid for the call (API contract).
        let type_name = unsafe { text(type_name, "type") }?;
        let key = unsafe { text(key, "key") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let out_len = unsafe { Out::new(out_len, "out_len") }?;
        let (ptr, len) = into_c_bytes(core.store().get(type_name, key)?.encode());
        out.set(ptr);
        out_len.set(len);
        Ok(())
    })
}

/// Objects of one type in name order, or of every type (`type_name` NULL) in (type, name)
/// order, as a JSON array of at most `limit` objects (0: up to 100,000).
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_list_json(
    engine: *const mgha_engine,
    type_name: *const c_char,
    limit: usize,
    out: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: NULL or a C string valid for the call (API contract).
        let type_name = unsafe { optional_text(type_name, "type") }?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        unsafe {
            json_out(out, || {
                let objects = core.store().list(type_name, cap(limit, LIST_OBJECTS_MAX))?;
                Ok(objects.iter().map(|o| o.to_json()).collect::<Vec<_>>())
            })
        }
    })
}

/// Revision headers, newest first, as a JSON array of at most `limit` (0: up to 10,000), each
/// `{"seq", "id", "parent", "epoch", "author", "time_ms", "message", "state_hash", "changes"}`.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_revisions_json(
    engine: *const mgha_engine,
    limit: usize,
    out: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        unsafe { json_out(out, || Ok(core.store().revisions(None, cap(limit, LIST_REVISIONS_MAX))?)) }
    })
}

/// One revision with its changes, as JSON.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_revision_json(
    engine: *const mgha_engine,
    seq: u64,
    out: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        unsafe { json_out(out, || Ok(mgha_node::refs::revision(&core, seq)?)) }
    })
}

/// The field-level differences from revision `from` to revision `to` (either order; 0 is the
/// empty state), as JSON `{"from", "to", "objects": [...]}`.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_diff_json(
    engine: *const mgha_engine,
    from: u64,
    to: u64,
    out: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        unsafe { json_out(out, || Ok(mgha_node::refs::diff(&core, from, to)?)) }
    })
}

/// The node's status as JSON, the very document `GET /v1/status` of the admin API returns
/// (`StatusBody` in its OpenAPI document): `node` (identity, designation, role, epoch), `head`,
/// `floor`, `objects`, `sessions`, `active` (the Active a Standby follows, or null), `peers`
/// (each with its sync status, lag and last contact), `collisions_open`, `damage` and `recovery`
/// (the next step) while the store is damaged, `failover` with
/// automatic failover, and `settings`: the config keys the node runs with, after defaults. On a
/// domain handle, the status of that domain's replica (`GET /v1/domains/{domain}/status`), with
/// `domain` naming it.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_status_json(engine: *const mgha_engine, out: *mut *mut c_char) -> mgha_status {
    ffi_boundary!(status: {
        let handle = crate::engine::ENGINES.get(engine)?;
        handle.core()?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        unsafe { json_out(out, || Ok(handle.node().domain_status(handle.domain_name())?)) }
    })
}

/// Checks the whole store (encodings, indexes, state hash, hash chain) and returns what it
/// covered as JSON `{"head", "objects", "revisions"}`; `MGHA_CORRUPT` names the first fault.
/// Reads every object: its cost grows with the database.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_check_json(engine: *const mgha_engine, out: *mut *mut c_char) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        unsafe { json_out(out, || Ok(core.check()?)) }
    })
}

#[cfg(test)]
mod tests {
    use super::cap;

    #[test]
    fn zero_limit_means_the_cap() {
        assert_eq!(cap(0, 10), 10);
        assert_eq!(cap(3, 10), 3);
        assert_eq!(cap(30, 10), 10);
    }
}
