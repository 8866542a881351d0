//! Writes: admin sessions (begin, stage puts and deletes, publish or discard, free), and the
//! one-shot publish of a JSON changeset and revert.
//!
//! A session handle is a core session (its staged changes and object locks live in the engine)
//! plus its state here, so that a session used after publish, discard or its engine's close gets
//! a clear error. Calls on one session are serialized by its lock.

use std::ffi::c_char;
use std::sync::{Arc, Mutex, MutexGuard};

use mgha_core::model::{Fields, Uid};
use mgha_core::{ChangeInput, ChangeSet};
use serde::Deserialize;

use crate::args::{bytes, text, Out};
use crate::engine::{core_of, mgha_engine, ENGINES};
use crate::error::{mgha_status, FfiError, FfiResult};
use crate::handle::Registry;

/// Every live session handle.
pub static SESSIONS: Registry<mgha_session> = Registry::new("session");

/// An admin session. Opaque to C.
#[allow(non_camel_case_types)]
pub struct mgha_session {
    engine: Arc<mgha_engine>,
    id: u64,
    state: Mutex<State>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    Published(u64),
    Discarded,
}

impl mgha_session {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The session behind `session`, checked open; the guard keeps other calls on it out.
fn open_session(session: *const mgha_session, f: impl FnOnce(&mgha_session, &mut State) -> FfiResult) -> FfiResult {
    let s = SESSIONS.get(session)?;
    let mut state = s.lock();
    match *state {
        State::Open => f(&s, &mut state),
        State::Published(seq) => {
            Err(FfiError::invalid(format!("the session was already published as revision {seq}; begin a new one")))
        }
        State::Discarded => Err(FfiError::invalid("the session was discarded; begin a new one")),
    }
}

/// An object as `mgha_session_put_json` and `_put_msgpack` take it (docs/changeset.md), and as
/// `mgha_engine_get_json` and `_get_msgpack` return it: a uid in MessagePack may be its text or
/// its 16 bytes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectInput {
    #[serde(rename = "type")]
    type_name: String,
    name: String,
    #[serde(default)]
    uid: Option<Uid>,
    #[serde(default)]
    fields: Fields,
}

impl ObjectInput {
    fn into_change(self) -> ChangeInput {
        ChangeInput::Put {
            type_name: self.type_name,
            name: self.name,
            uid: self.uid.map(|u| u.to_string()),
            fields: self.fields,
        }
    }
}

fn stage(session: *const mgha_session, change: impl FnOnce() -> FfiResult<ChangeInput>) -> FfiResult {
    open_session(session, |s, _| {
        let change = change()?;
        Ok(s.engine.core()?.session_stage(s.id, change)?)
    })
}

/// Opens an admin session for `author`. Free it with `mgha_session_free`. A Standby refuses
/// with `MGHA_READ_ONLY` (its sessions could never publish).
#[no_mangle]
pub unsafe extern "C" fn mgha_session_begin(
    engine: *const mgha_engine,
    author: *const c_char,
    out: *mut *mut mgha_session,
) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        // SAFETY (two calls): a C string and an out-parameter valid for the call (API contract).
        let author = unsafe { text(author, "author") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let id = handle.core()?.session_open(author)?;
        out.set(SESSIONS.insert(Arc::new(mgha_session { engine: handle, id, state: Mutex::new(State::Open) })));
        Ok(())
    })
}

/// Stages a put of one object, given as JSON `{"type", "name", "uid"?, "fields"}`, and locks it
/// against other sessions. `MGHA_TOO_LARGE` when the object is over its size limit or the
/// session would pass its own (docs/changeset.md); the session keeps what it staged before.
#[no_mangle]
pub unsafe extern "C" fn mgha_session_put_json(session: *mut mgha_session, object_json: *const c_char) -> mgha_status {
    ffi_boundary!(status: {
        // SAFETY: a C string valid for the call (API contract).
        let json = unsafe { text(object_json, "object_json") }?;
        stage(session, || {
            mgha_core::json_scan::scan_document(json.as_bytes())?;
            let object: ObjectInput =
                serde_json::from_str(json).map_err(|e| FfiError::invalid(format!("object_json: {e}")))?;
            Ok(object.into_change())
        })
    })
}

/// As `mgha_session_put_json`, with the object as a MessagePack map of the same keys (what
/// `mgha_engine_get_msgpack` returns is accepted as is).
#[no_mangle]
pub unsafe extern "C" fn mgha_session_put_msgpack(
    session: *mut mgha_session,
    buf: *const u8,
    len: usize,
) -> mgha_status {
    ffi_boundary!(status: {
        // SAFETY: `len` readable bytes valid for the call (API contract).
        let buf = unsafe { bytes(buf, len, "buf") }?;
        if buf.len() > mgha_core::limits::OBJECT_BYTES_MAX {
            return Err(FfiError::new(
                mgha_status::MGHA_TOO_LARGE,
                format!("object is {} bytes, over the limit of {}", buf.len(), mgha_core::limits::OBJECT_BYTES_MAX),
            ));
        }
        stage(session, || {
            let object: ObjectInput =
                rmp_serde::from_slice(buf).map_err(|e| FfiError::invalid(format!("msgpack object: {e}")))?;
            Ok(object.into_change())
        })
    })
}

/// Stages a delete of the object of `type` named `name_or_uid` (a uid when it parses as one
/// and an object of that type has it, a name otherwise).
#[no_mangle]
pub unsafe extern "C" fn mgha_session_delete(
    session: *mut mgha_session,
    type_name: *const c_char,
    name_or_uid: *const c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        // SAFETY (two calls): C strings valid for the call (API contract).
        let type_name = unsafe { text(type_name, "type") }?;
        let key = unsafe { text(name_or_uid, "name_or_uid") }?;
        let s = SESSIONS.get(session)?;
        let store = s.engine.core()?.store();
        let by_uid = Uid::parse(key)
            .filter(|uid| matches!(store.get_by_uid(uid), Ok(Some(o)) if o.type_name == type_name));
        drop(store);
        stage(session, || {
            Ok(match by_uid {
                Some(uid) => ChangeInput::Delete { type_name: type_name.into(), name: None, uid: Some(uid.to_string()) },
                None => ChangeInput::Delete { type_name: type_name.into(), name: Some(key.into()), uid: None },
            })
        })
    })
}

/// Publishes the session's changes as one revision with `message`, writing its number to
/// `out_seq`. Afterwards the session is spent (its calls fail) but must still be freed. On a
/// validation error nothing is published and the session stays open to be fixed.
#[no_mangle]
pub unsafe extern "C" fn mgha_session_publish(
    session: *mut mgha_session,
    message: *const c_char,
    out_seq: *mut u64,
) -> mgha_status {
    ffi_boundary!(status: {
        // SAFETY (two calls): a C string and an out-parameter valid for the call (API contract).
        let message = unsafe { text(message, "message") }?;
        let out = unsafe { Out::new(out_seq, "out_seq") }?;
        open_session(session, |s, state| {
            let rev = s.engine.core()?.session_publish(s.id, message)?;
            *state = State::Published(rev.seq);
            out.set(rev.seq);
            Ok(())
        })
    })
}

/// Drops the session's changes and releases its locks. The session is spent; free it.
#[no_mangle]
pub extern "C" fn mgha_session_discard(session: *mut mgha_session) -> mgha_status {
    ffi_boundary!(status: {
        open_session(session, |s, state| {
            s.engine.core()?.session_discard(s.id)?;
            *state = State::Discarded;
            Ok(())
        })
    })
}

/// Frees a session, discarding it first if it is still open. NULL, and a session already
/// freed, are ignored.
#[no_mangle]
pub extern "C" fn mgha_session_free(session: *mut mgha_session) {
    ffi_boundary!(value: {
        if let Some(s) = SESSIONS.remove(session) {
            if *s.lock() == State::Open {
                // Also after a domain handle's close: its node goes on, and the session's locks
                // would outlive it.
                if let Some(core) = s.engine.engine_to_release() {
                    let _ = core.session_discard(s.id);
                }
            }
        }
    })
}

/// Publishes a JSON changeset (docs/changeset.md) as one revision by `author`, writing its
/// number to `out_seq`.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_publish_json(
    engine: *const mgha_engine,
    author: *const c_char,
    changeset_json: *const c_char,
    out_seq: *mut u64,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY (three calls): C strings and an out-parameter valid for the call (API contract).
        let author = unsafe { text(author, "author") }?;
        let json = unsafe { text(changeset_json, "changeset_json") }?;
        let out = unsafe { Out::new(out_seq, "out_seq") }?;
        let changeset = ChangeSet::from_json(json.as_bytes())?;
        out.set(core.publish_owned(author, changeset)?.seq);
        Ok(())
    })
}

/// Publishes, by `author`, a revision that restores the state after revision `to` (history is
/// kept), writing its number to `out_seq`.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_revert(
    engine: *const mgha_engine,
    author: *const c_char,
    to: u64,
    out_seq: *mut u64,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY (two calls): a C string and an out-parameter valid for the call (API contract).
        let author = unsafe { text(author, "author") }?;
        let out = unsafe { Out::new(out_seq, "out_seq") }?;
        out.set(core.revert(author, to)?.seq);
        Ok(())
    })
}
