//! Roles and collisions (docs/roles.md): planned and forced changeover, promotion of a Secondary
//! to Primary, and collision branches (list, diff, resolve).
//!
//! A planned changeover blocks the calling thread until it is done or refused (at most the
//! config's `changeover_timeout_ms`, plus a forwarding margin); its rules (retries, forwarding,
//! outcomes) are the core's `SyncRuntime::changeover`. It runs in a task of the engine's tokio
//! runtime, so the network writes it causes happen on the runtime's own threads, where SIGPIPE
//! stays blocked (see `engine::block_sigpipe`).

use std::ffi::c_char;

use mgha_core::collision::ResolveHow;
use mgha_core::merge::{Resolution, ResolutionFile, Side};
use mgha_node::contract::CollisionBody;

use crate::args::{optional_text, text, Out};
use crate::engine::{core_of, mgha_engine, outside_async_runtime, ENGINES};
use crate::error::{mgha_status, FfiError, FfiResult};
use crate::strings::json_c_string;

/// Refuses a blocking role call from an event callback of the same engine: it would hold every
/// later event, and `mgha_engine_close`, for as long as the changeover takes.
fn not_from_callback(handle: &mgha_engine, what: &str) -> FfiResult<()> {
    if handle.events().on_event_thread() {
        return Err(FfiError::new(
            mgha_status::MGHA_BUSY,
            format!(
                "{what} blocks until done and cannot run in an event callback of the same engine; \
                 call it from another thread"
            ),
        ));
    }
    Ok(())
}

/// A planned changeover: hands the Active role to the member named `target`, losing no
/// revision (docs/roles.md). May be asked on any member; a Standby forwards it to the Active.
/// Blocks until done or refused, within the config's `changeover_timeout_ms` (plus
/// `FORWARD_MARGIN_MS`, 2 s, when asked on a Standby). Refused (`MGHA_CONFLICT`, the message
/// says why): no such member, the target already the Active, not connected or not caught up in
/// time, its takeover not confirmed in time, superseded by another node, refused by the arbiter,
/// a node without peers. `MGHA_BUSY`: a changeover is already running on this handle, on this
/// node or on the Active, or the call came from an event callback of this engine.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_changeover(engine: *const mgha_engine, target: *const c_char) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        // SAFETY: a C string valid for the call (API contract).
        let target = unsafe { text(target, "target") }?;
        outside_async_runtime("mgha_engine_changeover")?;
        not_from_callback(&handle, "mgha_engine_changeover")?;
        handle.core()?;
        let node = handle.node();
        let epoch = node.block_on(node.changeover_in(handle.domain_name(), target))??;
        tracing::info!(target = %target, epoch, "planned changeover done");
        Ok(())
    })
}

/// A forced changeover: this Standby becomes the Active at once, in the round after the highest
/// epoch it knows, without the current Active (which steps down when it returns; what it
/// published meanwhile becomes a collision branch). Writes the new epoch to `out_epoch`.
/// Refused (`MGHA_CONFLICT`) on the Active and on a node without peers.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_changeover_force(engine: *const mgha_engine, out_epoch: *mut u64) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        // SAFETY: `out_epoch` is NULL or writable for the call (API contract).
        let out = unsafe { Out::new(out_epoch, "out_epoch") }?;
        handle.core()?;
        let node = handle.node();
        let epoch = node.block_on(node.force_changeover_in(handle.domain_name()))??;
        out.set(epoch);
        Ok(())
    })
}

/// Makes this Secondary the Primary when the Primary is lost for good: it can then issue join
/// keys. It needs the cluster CA key, which a member receives once it has followed an Active;
/// before that, and on the Primary itself, `MGHA_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn mgha_engine_promote(engine: *const mgha_engine) -> mgha_status {
    ffi_boundary!(status: {
        let core = ENGINES.get(engine)?.global()?;
        Ok(mgha_sync::cluster::promote_to_primary(&core)?)
    })
}

/// Every collision branch this node keeps, resolved ones included, oldest first, as a JSON
/// array of `{"id", "node_id", "node", "fork", "head", "revisions", "headers", "detected_ms",
/// "status": "open" | "resolved", "resolution": {"how", "seq", "conflicts"} | null,
/// "resolved_ms"}`. Branches are kept on the node that detected them (the Active).
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_collisions_json(engine: *const mgha_engine, out: *mut *mut c_char) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        let out = unsafe { Out::new(out, "out") }?;
        let branches: Vec<CollisionBody> = core.collisions()?.iter().map(CollisionBody::from).collect();
        out.set(json_c_string(&branches)?);
        Ok(())
    })
}

/// What branch `id` and the Active each changed since the fork, field by field, and the
/// conflicts a merge would leave: JSON `{"branch", "fork", "branch_changes": [...],
/// "active_changes": [...], "conflicts": [{"type", "uid", "name", "field", "base"?, "active"?,
/// "branch"?}]}` (a side's key is absent where the field is absent on that side).
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_collision_diff_json(
    engine: *const mgha_engine,
    id: u64,
    out: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        let out = unsafe { Out::new(out, "out") }?;
        out.set(json_c_string(&mgha_node::refs::collision_diff(&core, id)?)?);
        Ok(())
    })
}

/// The names `how` takes, for messages.
const HOW_NAMES: &str = "keep-active, keep-branch, merge, merge-prefer-active or merge-prefer-branch";

/// The core's resolution for `how` and an optional resolution file (docs/roles.md). With a
/// preferred side and a file, the side stands for the file's `default` when it names none.
fn resolve_how(how: &str, resolutions: Option<&str>) -> FfiResult<ResolveHow> {
    let prefer = match how {
        "keep-active" | "keep-branch" => {
            if resolutions.is_some() {
                return Err(FfiError::invalid(format!("resolutions apply only to a merge, not to {how}")));
            }
            return Ok(if how == "keep-active" { ResolveHow::KeepActive } else { ResolveHow::KeepBranch });
        }
        "merge" => None,
        "merge-prefer-active" => Some(Side::Active),
        "merge-prefer-branch" => Some(Side::Branch),
        other => return Err(FfiError::invalid(format!("how: '{other}' is none of {HOW_NAMES}"))),
    };
    let Some(text) = resolutions else {
        // Without a file, a plain merge that leaves conflicts fails listing them.
        return Ok(ResolveHow::Merge(
            prefer.map_or_else(|| Resolution::Explicit(ResolutionFile::default()), Resolution::Prefer),
        ));
    };
    let mut file = ResolutionFile::from_json(text).map_err(|e| FfiError::invalid(format!("resolutions_json: {e}")))?;
    match (file.default, prefer) {
        (None, p) => file.default = p,
        (Some(d), Some(p)) if d != p => {
            return Err(FfiError::invalid(format!(
                "the resolution file's default side is {d:?}, but how is {how}; they must agree"
            )))
        }
        _ => {}
    }
    Ok(ResolveHow::Merge(Resolution::Explicit(file)))
}

/// Resolves collision branch `id` by `author`, `how` being one of:
/// - `"keep-active"`: the Active's state stays; nothing is published;
/// - `"keep-branch"`: publishes one revision that makes the state the branch's;
/// - `"merge"`, `"merge-prefer-active"`, `"merge-prefer-branch"`: publishes a three-way merge;
///   conflicts are settled by the preferred side, by `resolutions_json` (a resolution file,
///   docs/roles.md: `{"default"?, "objects": [{"uid", "field", "take" | "value"}]}`), or both;
///   a plain `"merge"` with conflicts left fails with `MGHA_INVALID_ARGUMENT` listing them.
///
/// `resolutions_json` may be NULL, and must be for the two `keep-` ways. Writes the revision
/// published to `out_seq`, or 0 when nothing was published. Only the Active resolves: a
/// Standby answers `MGHA_READ_ONLY` whatever the way; an already resolved branch is
/// `MGHA_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_collision_resolve(
    engine: *const mgha_engine,
    id: u64,
    how: *const c_char,
    resolutions_json: *const c_char,
    author: *const c_char,
    out_seq: *mut u64,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY (four calls): C strings (one optional) and an out-parameter valid for the call.
        let how = unsafe { text(how, "how") }?;
        let resolutions = unsafe { optional_text(resolutions_json, "resolutions_json") }?;
        let author = unsafe { text(author, "author") }?;
        let out = unsafe { Out::new(out_seq, "out_seq") }?;
        let resolved = core.resolve_collision(id, resolve_how(how, resolutions)?, author)?;
        out.set(resolved.seq.unwrap_or(0));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn how_names_map_to_resolutions() {
        assert!(matches!(resolve_how("keep-active", None), Ok(ResolveHow::KeepActive)));
        assert!(matches!(resolve_how("keep-branch", None), Ok(ResolveHow::KeepBranch)));
        assert!(matches!(
            resolve_how("merge-prefer-branch", None),
            Ok(ResolveHow::Merge(Resolution::Prefer(Side::Branch)))
        ));
        let Ok(ResolveHow::Merge(Resolution::Explicit(file))) = resolve_how("merge", None) else {
            panic!("plain merge")
        };
        assert_eq!(file, ResolutionFile::default());
        let Ok(ResolveHow::Merge(Resolution::Explicit(file))) =
            resolve_how("merge-prefer-active", Some(r#"{"objects": []}"#))
        else {
            panic!("a file with a preferred side")
        };
        assert_eq!(file.default, Some(Side::Active), "the side fills in the file's default");
    }

    #[test]
    fn bad_ways_and_files_are_refused_with_a_reason() {
        for (how, file, needle) in [
            ("both", None, "none of"),
            ("keep-active", Some("{}"), "only to a merge"),
            ("merge", Some("{\"default\": \"sideways\"}"), "resolutions_json"),
            ("merge-prefer-active", Some("{\"default\": \"branch\"}"), "must agree"),
        ] {
            let e = resolve_how(how, file).expect_err(how);
            assert_eq!(e.status, mgha_status::MGHA_INVALID_ARGUMENT);
            assert!(e.message.contains(needle), "{how}: {}", e.message);
        }
    }
}
