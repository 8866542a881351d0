//! The archive of the engine's data directory: the stores a full sync replaced (a diverged
//! history's backup, a damaged store set aside), listed and browsed read-only through the node
//! library's rules (`mgha_node::archive`), as `mgha archive` and `GET /v1/archive…` do. Each call
//! opens the archive it reads into a private view, verified (a backup end to end, a damaged
//! store record by record as it is read), and removes the view before it returns.

use std::ffi::c_char;

use mgha_core::limits::LIST_REVISIONS_MAX;
use mgha_node::archive::{self, Archive};

use crate::args::text;
use crate::engine::{core_of, mgha_engine};
use crate::error::mgha_status;
use crate::read::{cap, json_out};

/// Every archived store and backup of the engine's data directory, oldest first, as JSON
/// `{"archives": [{"name", "reason", "archived_ms", "bytes", "head", "floor", "revisions",
/// "damage"}]}` (docs/c-api.md).
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_archive_list_json(
    engine: *const mgha_engine,
    out: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        unsafe { json_out(out, || Ok(archive::list(core.dir())?)) }
    })
}

/// The revision headers of the archive `name` (a file name as listed), newest first, as JSON
/// `{"revisions": [...]}`: at most `limit` (0: up to 10,000) below `before`
/// (0: from its head). An archive that does not exist is `MGHA_NOT_FOUND`; a damaged record
/// `MGHA_CORRUPT`, naming it.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_archive_revisions_json(
    engine: *const mgha_engine,
    name: *const c_char,
    before: u64,
    limit: usize,
    out: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: a C string valid for the call (API contract).
        let name = unsafe { text(name, "name") }?;
        let before = (before != 0).then_some(before);
        // SAFETY: `out` is NULL or writable for the call (API contract).
        unsafe {
            json_out(out, || {
                Ok(Archive::open(core.dir(), name)?.revisions(before, cap(limit, LIST_REVISIONS_MAX))?)
            })
        }
    })
}

/// One revision of the archive `name`, with its changes, as JSON (the shape of
/// `mgha_engine_revision_json`).
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_archive_revision_json(
    engine: *const mgha_engine,
    name: *const c_char,
    seq: u64,
    out: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: a C string valid for the call (API contract).
        let name = unsafe { text(name, "name") }?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        unsafe { json_out(out, || Ok(Archive::open(core.dir(), name)?.revision(seq)?)) }
    })
}

/// Field-level differences between revisions `from` and `to` of the archive `name`, as JSON
/// (the shape of `mgha_engine_diff_json`).
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_archive_diff_json(
    engine: *const mgha_engine,
    name: *const c_char,
    from: u64,
    to: u64,
    out: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: a C string valid for the call (API contract).
        let name = unsafe { text(name, "name") }?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        unsafe { json_out(out, || Ok(Archive::open(core.dir(), name)?.diff(from, to)?)) }
    })
}
