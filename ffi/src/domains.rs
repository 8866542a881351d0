//! A cluster's domains (docs/c-api.md, "Domains"): a handle bound to one domain of the node
//! (`mgha_engine_domain`), and the node library's domain calls (list, create, delete, move,
//! rebalance) with the admin API's JSON bodies in and out.
//!
//! A domain handle shares its node with the handle it was asked of ([`crate::engine`]): every
//! store, role and event call acts on its domain; closing it closes only the handle. The rules
//! (where replicas go, what a delete keeps, what a rebalance moves) are the node's.

use std::ffi::c_char;

use mgha_node::contract::{DomainCreateBody, DomainRetentionBody};

use crate::args::{text, Out};
use crate::engine::{mgha_engine, outside_async_runtime, ENGINES};
use crate::error::{mgha_status, FfiError};
use crate::read::json_out;

/// Writes to `out` a new engine handle on the domain `name` of `engine`'s node (`"global"`: the
/// cluster's first domain, the one the node's own handle is on). Every `mgha_engine_*` call on
/// it acts on that domain: reads, publishes, sessions, revisions, backups, plugins, archives,
/// changeovers, collisions, status and events; `mgha_engine_peer_addr`, `mgha_engine_join_key`,
/// `mgha_engine_members_json`, `mgha_engine_member_remove`, `mgha_engine_promote` and the domain
/// calls act on the node, as on any of its handles. Close it with `mgha_engine_close`, which
/// closes only this handle. Once the node's own handle is closed, its calls fail with
/// `MGHA_INVALID_ARGUMENT`; once the domain is deleted or its replica leaves this server, with
/// `MGHA_NOT_FOUND`. `MGHA_NOT_FOUND`: no domain of that name, or this server holds no replica
/// of it (the message names the servers that do).
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_domain(
    engine: *const mgha_engine,
    name: *const c_char,
    out: *mut *mut mgha_engine,
) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        // SAFETY (two calls): a C string and an out-parameter valid for the call (API contract).
        let name = unsafe { text(name, "name") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let domain = handle.for_domain(name)?;
        out.set(ENGINES.insert(std::sync::Arc::new(domain)));
        Ok(())
    })
}

/// Every domain of the cluster, the global one first, as this server sees it, as JSON
/// `{"domains": [{"name", "id", "global", "replicas", "here", "role", "epoch", "active",
/// "head_seq", "objects", "peers"}]}` (`GET /v1/domains`), freed with `mgha_string_free`.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_domains_json(engine: *const mgha_engine, out: *mut *mut c_char) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        handle.global()?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        unsafe { json_out(out, || Ok(handle.node().domains()?)) }
    })
}

/// Creates a domain, on the global domain's Active, from `request_json`
/// `{"name", "replicas"?: count, "on"?: [server names, the first Active]}` (`POST /v1/domains`),
/// and writes the new domain as `mgha_engine_domains_json` shows one to `out_json`. Without
/// `on`, the node places `replicas` replicas (default 2, at most one per server) on the servers
/// that hold the fewest. Returns once this server's own replica, if any, is open.
/// `MGHA_CONFLICT`: the name is taken. `MGHA_INVALID_ARGUMENT`: a name that cannot name a
/// domain, or replicas that cannot be placed. `MGHA_READ_ONLY`: this node's global domain is a
/// Standby.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_domain_create(
    engine: *const mgha_engine,
    request_json: *const c_char,
    out_json: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        // SAFETY: a C string valid for the call (API contract).
        let request = unsafe { text(request_json, "request_json") }?;
        let body: DomainCreateBody =
            serde_json::from_str(request).map_err(|e| FfiError::invalid(format!("request_json: {e}")))?;
        outside_async_runtime("mgha_engine_domain_create")?;
        handle.global()?;
        let node = handle.node();
        // SAFETY: `out_json` is NULL or writable for the call (API contract).
        unsafe { json_out(out_json, || Ok(node.block_on(node.create_domain(body, None))??)) }
    })
}

/// Deletes the domain `name`, on the global domain's Active, and writes
/// `{"name", "backup"?}` to `out_json`. Refused (`MGHA_CONFLICT`) while this server's replica
/// holds objects, unless `force` is nonzero: a verified backup of it is then written first
/// (`backup`: its path). Every server archives its replica's store, so nothing is lost either
/// way. On a server that holds no replica only a forced delete goes ahead. `MGHA_NOT_FOUND`: no
/// such domain. `MGHA_INVALID_ARGUMENT`: `"global"`. Handles on the domain then fail with
/// `MGHA_NOT_FOUND`; close them.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_domain_delete(
    engine: *const mgha_engine,
    name: *const c_char,
    force: u32,
    out_json: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        // SAFETY: a C string valid for the call (API contract).
        let name = unsafe { text(name, "name") }?;
        outside_async_runtime("mgha_engine_domain_delete")?;
        handle.global()?;
        let node = handle.node();
        // SAFETY: `out_json` is NULL or writable for the call (API contract).
        unsafe { json_out(out_json, || Ok(node.block_on(node.delete_domain(name, force != 0))??)) }
    })
}

/// Sets how many of its newest revisions the domain `name` keeps, on the global domain's Active,
/// and writes the domain as `mgha_engine_domains_json` shows one to `out_json`. `0` makes it
/// follow each server's `retain_revisions` again. Every server applies it to its replica; an
/// Active keeping fewer revisions than before purges the older ones at once (the objects stay).
/// `MGHA_NOT_FOUND`: no such domain. `MGHA_INVALID_ARGUMENT`: `"global"` (its retention is each
/// server's `retain_revisions`).
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_domain_set_retention(
    engine: *const mgha_engine,
    name: *const c_char,
    retain_revisions: u64,
    out_json: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        // SAFETY: a C string valid for the call (API contract).
        let name = unsafe { text(name, "name") }?;
        outside_async_runtime("mgha_engine_domain_set_retention")?;
        handle.global()?;
        let node = handle.node();
        let body = DomainRetentionBody { retain_revisions: Some(retain_revisions).filter(|n| *n > 0) };
        // SAFETY: `out_json` is NULL or writable for the call (API contract).
        unsafe { json_out(out_json, || Ok(node.block_on(node.set_domain_retention(name, body))??)) }
    })
}

/// Moves the domain `name`'s replica from the server `from` to the server `to`, on the global
/// domain's Active, and writes the domain as `mgha_engine_domains_json` shows one to `out_json`.
/// `to` gets a full sync of that domain; `from` archives its store. The domain's Active does not
/// move this way (`MGHA_INVALID_ARGUMENT`): change it over first.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_domain_move(
    engine: *const mgha_engine,
    name: *const c_char,
    from: *const c_char,
    to: *const c_char,
    out_json: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        // SAFETY (three calls): C strings valid for the call (API contract).
        let name = unsafe { text(name, "name") }?;
        let from = unsafe { text(from, "from") }?;
        let to = unsafe { text(to, "to") }?;
        outside_async_runtime("mgha_engine_domain_move")?;
        handle.global()?;
        let node = handle.node();
        // SAFETY: `out_json` is NULL or writable for the call (API contract).
        unsafe { json_out(out_json, || Ok(node.block_on(node.move_replica(name, from, to))??)) }
    })
}

/// Spreads the domains' Actives evenly over the healthy servers by planned changeovers, one
/// domain after another, and writes what it did as JSON `{"moves": [{"domain", "from", "to",
/// "epoch"?, "error"?}]}` (`POST /v1/domains/rebalance`): each planned move, with its new epoch
/// or why it did not happen. Blocks until every move is done or refused. `MGHA_BUSY` from an
/// event callback of this handle.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_rebalance_json(engine: *const mgha_engine, out: *mut *mut c_char) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        outside_async_runtime("mgha_engine_rebalance_json")?;
        if handle.events().on_event_thread() {
            return Err(FfiError::new(
                mgha_status::MGHA_BUSY,
                "mgha_engine_rebalance_json blocks until its changeovers are done and cannot run in an event \
                 callback of the same engine; call it from another thread",
            ));
        }
        handle.global()?;
        let node = handle.node();
        // SAFETY: `out` is NULL or writable for the call (API contract).
        unsafe { json_out(out, || Ok(node.block_on(node.rebalance())??)) }
    })
}
