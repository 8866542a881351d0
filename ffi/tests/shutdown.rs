//! Closing an engine stops everything it started and returns only then: its runtime's threads
//! (peer listener, connections, dial loops, the failover driver) and its event thread are gone
//! when `mgha_engine_close` returns, and the status document it gave while running is the admin
//! API's `StatusBody`. One test in this binary, so no other test's engines share the process.

mod common;

use std::collections::BTreeMap;

use common::{c, config, json_out, ok, publish, string_out, wait_for, Engine};
use mgha::engine::{mgha_engine_join, mgha_engine_join_key, mgha_engine_peer_addr};
use mgha::read::mgha_engine_status_json;
use mgha_node::contract::StatusBody;

/// How many threads of this process have each name (Linux: `/proc/self/task/*/comm`).
fn threads() -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let comm = task.expect("task").path().join("comm");
        // A thread that ended between the listing and the read has no comm any more.
        if let Ok(name) = std::fs::read_to_string(comm) {
            *names.entry(name.trim().to_string()).or_insert(0) += 1;
        }
    }
    names
}

fn engine_threads() -> usize {
    threads().iter().filter(|(name, _)| name.starts_with("mgha-")).map(|(_, n)| n).sum()
}

#[test]
fn close_returns_after_every_thread_of_the_engine_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(engine_threads(), 0, "{:?}", threads());
    let mut a = Engine::init(&dir.path().join("a"), "a");
    // SAFETY (every block below): see `common`.
    let addr = string_out(|out| unsafe { mgha_engine_peer_addr(a.ptr, out) });
    let key = string_out(|out| unsafe { mgha_engine_join_key(a.ptr, 60_000, out) });
    let (cfg, peer, key) = (c(&config(&dir.path().join("b"), "b")), c(&addr), c(&key));
    let mut b = Engine { ptr: std::ptr::null_mut() };
    ok(unsafe { mgha_engine_join(cfg.as_ptr(), peer.as_ptr(), key.as_ptr(), &mut b.ptr) });
    let seq = publish(
        &a,
        r#"{"changes": [{"op": "put", "type": "host", "name": "h", "fields": {"ipv4-address": "10.0.0.1"}}]}"#,
    );
    wait_for(30, "b to apply the revision", || {
        json_out(|out| unsafe { mgha_engine_status_json(b.ptr, out) })["head"]["seq"] == seq
    });

    // The status document is the admin API's, key for key: it parses as `StatusBody`, which
    // refuses unknown keys at every level, and writes back the same JSON.
    let status = json_out(|out| unsafe { mgha_engine_status_json(a.ptr, out) });
    let typed: StatusBody = serde_json::from_value(status.clone()).expect("the C status is a StatusBody");
    assert_eq!(serde_json::to_value(&typed).expect("json"), status);
    assert_eq!((typed.peers.len(), typed.collisions_open), (1, 0));

    let running = engine_threads();
    assert!(running >= 2, "two engines run threads of their own: {:?}", threads());
    b.close();
    a.close();
    assert_eq!(engine_threads(), 0, "threads left after close: {:?}", threads());
}
