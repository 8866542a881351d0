//! Two engines in one process form a cluster on loopback through the C ABI: join keys, events
//! on the Standby, the Standby's read-only error, and the callback contract (reads from a
//! callback, unsubscribe from inside and outside, close from a callback refused). See `common`
//! for the safety contract of the `unsafe` blocks.

mod common;

use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

use common::*;
use mgha::engine::{mgha_engine, mgha_engine_close, mgha_engine_join, mgha_engine_join_key, mgha_engine_peer_addr};
use mgha::error::mgha_status;
use mgha::events::{mgha_engine_subscribe, mgha_engine_unsubscribe, mgha_event, mgha_event_kind};
use mgha::read::{mgha_engine_get_json, mgha_engine_status_json};
use mgha::session::mgha_engine_publish_json;

/// What a test's callback saw.
#[derive(Default)]
struct Seen {
    events: Mutex<Vec<(u32, u64, serde_json::Value)>>,
    /// The engine the callback reads from or tries to close.
    engine: Mutex<Option<usize>>,
    /// Statuses of calls the callback made.
    calls: Mutex<Vec<mgha_status>>,
    /// A subscription the callback removes (itself).
    unsubscribe: Mutex<Option<u64>>,
}

impl Seen {
    fn count(&self, kind: mgha_event_kind) -> usize {
        self.events.lock().expect("lock").iter().filter(|e| e.0 == kind as u32).count()
    }
    fn max_seq(&self, kind: mgha_event_kind) -> u64 {
        self.events.lock().expect("lock").iter().filter(|e| e.0 == kind as u32).map(|e| e.1).max().unwrap_or(0)
    }
}

unsafe extern "C" fn record(user_data: *mut c_void, event: *const mgha_event) {
    // SAFETY: `user_data` is the `Seen` the test keeps alive past unsubscribe/close; `event`
    // and its JSON are valid during the call.
    let (seen, event) = unsafe { (&*(user_data as *const Seen), &*event) };
    // SAFETY: as above.
    let json = unsafe { CStr::from_ptr(event.json) }.to_str().expect("UTF-8");
    let json = serde_json::from_str(json).expect("event JSON");
    seen.events.lock().expect("lock").push((event.kind, event.seq, json));
}

/// Reads from its own engine inside the callback, and removes its own subscription.
unsafe extern "C" fn read_then_leave(user_data: *mut c_void, event: *const mgha_event) {
    // SAFETY: as in `record`.
    unsafe { record(user_data, event) };
    // SAFETY: as in `record`.
    let seen = unsafe { &*(user_data as *const Seen) };
    let engine = seen.engine.lock().expect("lock").expect("engine set") as *const mgha_engine;
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: a live engine and a local out-parameter.
    let status = unsafe { mgha_engine_status_json(engine, &mut out) };
    mgha::strings::mgha_string_free(out);
    seen.calls.lock().expect("lock").push(status);
    if let Some(id) = seen.unsubscribe.lock().expect("lock").take() {
        seen.calls.lock().expect("lock").push(mgha_engine_unsubscribe(engine, id));
    }
}

/// Tries to close its own engine from the event thread.
unsafe extern "C" fn try_close(user_data: *mut c_void, _event: *const mgha_event) {
    // SAFETY: as in `record`.
    let seen = unsafe { &*(user_data as *const Seen) };
    let engine = seen.engine.lock().expect("lock").expect("engine set") as *mut mgha_engine;
    seen.calls.lock().expect("lock").push(mgha_engine_close(engine));
}

fn subscribe(engine: &Engine, callback: mgha::events::mgha_event_callback, seen: &Seen) -> u64 {
    let mut id = 0;
    // SAFETY: `seen` outlives the subscription (every test unsubscribes or closes first).
    ok(unsafe { mgha_engine_subscribe(engine.ptr, callback, seen as *const Seen as *mut c_void, &mut id) });
    assert_ne!(id, 0);
    id
}

/// A Primary `a` and a Secondary `b` joined to it.
fn pair(dir: &std::path::Path) -> (Engine, Engine) {
    let a = Engine::init(&dir.join("a"), "a");
    // SAFETY (both blocks): see `common`.
    let addr = string_out(|out| unsafe { mgha_engine_peer_addr(a.ptr, out) });
    let key = string_out(|out| unsafe { mgha_engine_join_key(a.ptr, 60_000, out) });
    let (cfg, peer, key_c) = (c(&config(&dir.join("b"), "b")), c(&addr), c(&key));
    let mut b = std::ptr::null_mut();
    // SAFETY: see `common`.
    ok(unsafe { mgha_engine_join(cfg.as_ptr(), peer.as_ptr(), key_c.as_ptr(), &mut b) });
    // The key was used: a second joiner is refused.
    let cfg_c = c(&config(&dir.join("c"), "c"));
    let mut other = std::ptr::null_mut();
    // SAFETY: see `common`.
    let status = unsafe { mgha_engine_join(cfg_c.as_ptr(), peer.as_ptr(), key_c.as_ptr(), &mut other) };
    assert_eq!(status, mgha_status::MGHA_PEER, "{:?}", last_error());
    assert!(other.is_null());
    (a, Engine { ptr: b })
}

const HOST: &str =
    r#"{"changes": [{"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1"}}]}"#;

#[test]
fn standby_sees_publishes_through_events_and_refuses_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = pair(dir.path());
    let seen = Seen::default();
    let id = subscribe(&b, Some(record), &seen);
    let seq = publish(&a, HOST);
    wait_for(20, "the revision on b", || seen.max_seq(mgha_event_kind::MGHA_EVENT_REVISION_APPLIED) >= seq);
    assert!(seen.count(mgha_event_kind::MGHA_EVENT_SYNC_STATUS_CHANGED) >= 1, "b saw a synchronized");
    let (host, web1) = (c("host"), c("web1"));
    // SAFETY (every block below): see `common`.
    let object = json_out(|out| unsafe { mgha_engine_get_json(b.ptr, host.as_ptr(), web1.as_ptr(), out) });
    assert_eq!(object["fields"]["ipv4-address"], "10.0.0.1");

    let (author, cs, mut out_seq) = (c("bob"), c(HOST), 77u64);
    let status = unsafe { mgha_engine_publish_json(b.ptr, author.as_ptr(), cs.as_ptr(), &mut out_seq) };
    assert_eq!(status, mgha_status::MGHA_READ_ONLY);
    assert_eq!(out_seq, 77, "outputs untouched on failure");
    assert!(last_error().1.contains("'a'"), "the error names the Active: {:?}", last_error());

    ok(mgha_engine_unsubscribe(b.ptr, id));
    assert_eq!(mgha_engine_unsubscribe(b.ptr, id), mgha_status::MGHA_NOT_FOUND);
    let before = seen.events.lock().expect("lock").len();
    let seq = publish(&a, &HOST.replace("10.0.0.1", "10.0.0.2"));
    let b_status = || json_out(|out| unsafe { mgha_engine_status_json(b.ptr, out) });
    wait_for(20, "b to apply the second revision", || b_status()["head"]["seq"].as_u64() == Some(seq));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(seen.events.lock().expect("lock").len(), before, "no call after unsubscribe returned");
}

#[test]
fn callbacks_may_read_and_unsubscribe_but_not_close_their_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Engine::init(dir.path(), "a");
    let leaving = Seen::default();
    *leaving.engine.lock().expect("lock") = Some(a.ptr as usize);
    let id = subscribe(&a, Some(read_then_leave), &leaving);
    *leaving.unsubscribe.lock().expect("lock") = Some(id);
    let closing = Seen::default();
    *closing.engine.lock().expect("lock") = Some(a.ptr as usize);
    subscribe(&a, Some(try_close), &closing);

    publish(&a, HOST);
    wait_for(10, "both callbacks", || {
        leaving.calls.lock().expect("lock").len() == 2 && !closing.calls.lock().expect("lock").is_empty()
    });
    assert_eq!(*leaving.calls.lock().expect("lock"), vec![mgha_status::MGHA_OK, mgha_status::MGHA_OK]);
    assert_eq!(closing.calls.lock().expect("lock")[0], mgha_status::MGHA_BUSY, "close from a callback is refused");

    publish(&a, &HOST.replace("10.0.0.1", "10.0.0.3"));
    wait_for(10, "the second event", || closing.calls.lock().expect("lock").len() == 2);
    assert_eq!(leaving.count(mgha_event_kind::MGHA_EVENT_REVISION_APPLIED), 1, "it unsubscribed itself");
    let mut id = 0;
    // SAFETY: see `common`; a NULL callback is refused before anything is kept.
    let status = unsafe { mgha_engine_subscribe(a.ptr, None, std::ptr::null_mut(), &mut id) };
    assert_eq!((status, id), (mgha_status::MGHA_NULL_ARGUMENT, 0));
    drop(a); // closes with a subscription still in place: the callback just stops
}
