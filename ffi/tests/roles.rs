//! Roles, collisions and plugins through the C ABI: a planned changeover both ways (asked on the
//! Active, then forwarded by a Standby) and its refusals; a forced changeover while the old
//! Active is down, the collision branch its unsynced publishes leave once it returns, resolved
//! by a merge both nodes converge on; promotion; plugin check, install, list and remove. See
//! `common` for the safety contract of the `unsafe` blocks.

mod common;

use std::ffi::{c_char, c_void, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::*;
use mgha::engine::{mgha_engine, mgha_engine_join, mgha_engine_join_key, mgha_engine_open, mgha_engine_peer_addr};
use mgha::error::mgha_status;
use mgha::events::{mgha_engine_subscribe, mgha_engine_unsubscribe, mgha_event};
use mgha::plugins::*;
use mgha::read::{mgha_engine_get_json, mgha_engine_status_json};
use mgha::roles::*;
use mgha::session::mgha_engine_publish_json;
use serde_json::Value;

/// Engine config for a node in `dir` listening on `listen` (a fixed port, so that a reopened
/// node is found where its peers last saw it).
fn config_at(dir: &Path, name: &str, listen: &str) -> CString {
    c(&config(dir, name).replace("127.0.0.1:0", listen))
}

fn open_at(dir: &Path, name: &str, listen: &str) -> Engine {
    let cfg = config_at(dir, name, listen);
    let mut ptr = std::ptr::null_mut();
    // SAFETY (every block in this file): see `common`.
    ok(unsafe { mgha_engine_open(cfg.as_ptr(), &mut ptr) });
    Engine { ptr }
}

fn peer_addr(e: &Engine) -> String {
    string_out(|out| unsafe { mgha_engine_peer_addr(e.ptr, out) })
}

/// A Primary `a` and a Secondary `b` joined to it, in `dir/a` and `dir/b`; and their addresses.
fn pair(dir: &Path) -> (Engine, Engine, String, String) {
    let a = Engine::init(&dir.join("a"), "a");
    let addr_a = peer_addr(&a);
    let key = c(&string_out(|out| unsafe { mgha_engine_join_key(a.ptr, 60_000, out) }));
    let (cfg, peer) = (c(&config(&dir.join("b"), "b")), c(&addr_a));
    let mut b = std::ptr::null_mut();
    ok(unsafe { mgha_engine_join(cfg.as_ptr(), peer.as_ptr(), key.as_ptr(), &mut b) });
    let b = Engine { ptr: b };
    let addr_b = peer_addr(&b);
    (a, b, addr_a, addr_b)
}

fn status(e: &Engine) -> Value {
    json_out(|out| unsafe { mgha_engine_status_json(e.ptr, out) })
}

fn role(e: &Engine) -> String {
    status(e)["node"]["role"].as_str().expect("role").to_owned()
}

/// Head revision and state hash.
fn head(e: &Engine) -> (u64, String) {
    let s = status(e);
    (s["head"]["seq"].as_u64().expect("seq"), s["head"]["state_hash"].as_str().expect("hash").to_owned())
}

fn wait_converged(a: &Engine, b: &Engine) {
    wait_for(30, "both nodes on one head and state hash", || head(a) == head(b));
}

fn changeover(e: &Engine, target: &str) -> mgha_status {
    let target = c(target);
    unsafe { mgha_engine_changeover(e.ptr, target.as_ptr()) }
}

/// A publish that is expected to fail: its status and message.
fn try_publish(e: &Engine, changeset: &str) -> (mgha_status, String) {
    let (author, cs, mut seq) = (c("test"), c(changeset), 0u64);
    let status = unsafe { mgha_engine_publish_json(e.ptr, author.as_ptr(), cs.as_ptr(), &mut seq) };
    (status, last_error().1)
}

fn host(name: &str, ip: &str) -> String {
    format!(
        r#"{{"changes": [{{"op": "put", "type": "host", "name": "{name}", "fields": {{"ipv4-address": "{ip}"}}}}]}}"#
    )
}

fn group(members: &[&str]) -> String {
    let members = serde_json::to_string(members).expect("json");
    format!(r#"{{"changes": [{{"op": "put", "type": "group", "name": "web", "fields": {{"members": {members}}}}}]}}"#)
}

fn get(e: &Engine, type_name: &str, name: &str) -> Option<Value> {
    let (t, n) = (c(type_name), c(name));
    let mut out: *mut c_char = std::ptr::null_mut();
    match unsafe { mgha_engine_get_json(e.ptr, t.as_ptr(), n.as_ptr(), &mut out) } {
        mgha_status::MGHA_OK => Some(serde_json::from_str(&take(out)).expect("json")),
        _ => None,
    }
}

#[test]
fn planned_changeover_swaps_the_roles_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, _, _) = pair(dir.path());
    for i in 0..3 {
        publish(&a, &host(&format!("h{i}"), &format!("10.0.0.{i}")));
    }
    wait_converged(&a, &b);
    ok(changeover(&a, "b"));
    assert_eq!((role(&a), role(&b)), ("standby".into(), "active".into()));
    let seq = publish(&b, &host("on-b", "10.0.1.1"));
    let (status, message) = try_publish(&a, &host("on-a", "10.0.1.2"));
    assert_eq!(status, mgha_status::MGHA_READ_ONLY, "{message}");
    assert!(message.contains("'b'"), "the old Active names the new one: {message}");
    wait_for(20, "a to follow b", || head(&a).0 == seq);
    assert!(get(&a, "host", "h2").is_some() && get(&a, "host", "on-b").is_some());

    // Back again, asked on the Standby: it forwards the request to the Active.
    ok(changeover(&a, "a"));
    wait_for(10, "a to be active", || role(&a) == "active");
    publish(&a, &host("back-on-a", "10.0.1.3"));
    wait_converged(&a, &b);

    // Refusals change nothing.
    assert_eq!(changeover(&a, "nobody"), mgha_status::MGHA_CONFLICT);
    assert!(last_error().1.contains("nobody"), "{:?}", last_error());
    let mut epoch = 0u64;
    assert_eq!(unsafe { mgha_engine_changeover_force(a.ptr, &mut epoch) }, mgha_status::MGHA_CONFLICT);
    assert!(last_error().1.contains("already the active"), "{:?}", last_error());
    assert_eq!(epoch, 0, "outputs untouched on failure");
    assert_eq!(role(&a), "active");
    assert_eq!(unsafe { mgha_engine_changeover(a.ptr, std::ptr::null()) }, mgha_status::MGHA_NULL_ARGUMENT);
}

/// What a callback that tries a changeover on its own engine got.
#[derive(Default)]
struct Attempt {
    engine: Mutex<usize>,
    statuses: Mutex<Vec<mgha_status>>,
}

unsafe extern "C" fn changeover_from_callback(user_data: *mut c_void, _event: *const mgha_event) {
    // SAFETY: `user_data` is the `Attempt` the test keeps alive until it unsubscribed.
    let attempt = unsafe { &*(user_data as *const Attempt) };
    let engine = *attempt.engine.lock().expect("lock") as *const mgha_engine;
    let target = c("b");
    // SAFETY: a live engine and a C string that outlives the call.
    let status = unsafe { mgha_engine_changeover(engine, target.as_ptr()) };
    attempt.statuses.lock().expect("lock").push(status);
}

#[test]
fn a_changeover_from_an_event_callback_is_refused_as_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Engine::init(dir.path(), "a");
    let attempt = Attempt { engine: Mutex::new(a.ptr as usize), ..Attempt::default() };
    let mut id = 0;
    ok(unsafe {
        mgha_engine_subscribe(a.ptr, Some(changeover_from_callback), &attempt as *const Attempt as *mut c_void, &mut id)
    });
    publish(&a, &host("h", "10.0.0.1"));
    wait_for(10, "the callback", || !attempt.statuses.lock().expect("lock").is_empty());
    ok(mgha_engine_unsubscribe(a.ptr, id));
    assert_eq!(attempt.statuses.lock().expect("lock")[0], mgha_status::MGHA_BUSY);
}

#[test]
fn forced_changeover_keeps_the_old_actives_unsynced_publishes_as_a_branch_and_merges_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut a, mut b, addr_a, addr_b) = pair(dir.path());
    publish(&a, &host("h0", "10.0.0.1"));
    publish(&a, &host("h1", "10.0.0.2"));
    publish(&a, &host("h2", "10.0.0.3"));
    publish(&a, &group(&["h0"]));
    wait_converged(&a, &b);

    // b goes down; a publishes what b never sees, then goes down too.
    b.close();
    publish(&a, &host("cut", "10.9.9.9"));
    publish(&a, &group(&["h0", "h2"]));
    let branch_head = head(&a).0;
    a.close();

    // b comes back alone and is forced to be the Active; it publishes too.
    let b = open_at(&dir.path().join("b"), "b", &addr_b);
    let mut epoch = 0;
    ok(unsafe { mgha_engine_changeover_force(b.ptr, &mut epoch) });
    assert!(epoch > 1, "a new round: {epoch}");
    assert_eq!(role(&b), "active");
    publish(&b, &group(&["h0", "h1"]));

    // a returns, meets the higher epoch, steps down; b keeps a's unsynced revisions.
    let a = open_at(&dir.path().join("a"), "a", &addr_a);
    let collisions = || json_out(|out| unsafe { mgha_engine_collisions_json(b.ptr, out) });
    wait_for(30, "the branch to be kept on b", || collisions().as_array().is_some_and(|l| !l.is_empty()));
    wait_for(10, "a to step down", || role(&a) == "standby");
    let branch = collisions()[0].clone();
    assert_eq!((branch["status"].as_str(), branch["node"].as_str()), (Some("open"), Some("a")));
    assert_eq!(branch["revisions"], 2, "both unsynced publishes are in the branch: {branch}");
    assert_eq!(branch["head"]["seq"].as_u64(), Some(branch_head));
    let id = branch["id"].as_u64().expect("id");
    let diff = json_out(|out| unsafe { mgha_engine_collision_diff_json(b.ptr, id, out) });
    assert_eq!(diff["branch_changes"].as_array().map(Vec::len), Some(2), "{diff}");
    assert_eq!(diff["conflicts"], Value::Array(vec![]), "members merge as a set: {diff}");
    let peers = status(&b)["peers"].clone();
    assert!(peers.as_array().expect("peers").iter().any(|p| p["status"] == "collision"), "{peers}");

    // A bad way or a missing branch is refused before anything is published.
    let (how, author, mut seq) = (c("merge-sideways"), c("admin"), 7u64);
    let status_bad =
        unsafe { mgha_engine_collision_resolve(b.ptr, id, how.as_ptr(), std::ptr::null(), author.as_ptr(), &mut seq) };
    assert_eq!((status_bad, seq), (mgha_status::MGHA_INVALID_ARGUMENT, 7));
    let how = c("merge-prefer-active");
    let missing =
        unsafe { mgha_engine_collision_resolve(b.ptr, 99, how.as_ptr(), std::ptr::null(), author.as_ptr(), &mut seq) };
    assert_eq!(missing, mgha_status::MGHA_NOT_FOUND, "{:?}", last_error());

    ok(unsafe { mgha_engine_collision_resolve(b.ptr, id, how.as_ptr(), std::ptr::null(), author.as_ptr(), &mut seq) });
    assert!(seq > 0, "the merge was published");
    wait_converged(&a, &b);
    for node in [&a, &b] {
        assert!(get(node, "host", "cut").is_some(), "the branch's host is merged in");
        let members = get(node, "group", "web").expect("group")["fields"]["members"].as_array().map(Vec::len);
        assert_eq!(members, Some(3), "both sides' members are kept");
    }
    let branch = collisions()[0].clone();
    assert_eq!((branch["status"].as_str(), branch["resolution"]["how"].as_str()), (Some("resolved"), Some("merged")));
    assert_eq!(branch["resolution"]["seq"].as_u64(), Some(seq));
    let again =
        unsafe { mgha_engine_collision_resolve(b.ptr, id, how.as_ptr(), std::ptr::null(), author.as_ptr(), &mut seq) };
    assert_eq!(again, mgha_status::MGHA_INVALID_ARGUMENT, "already resolved");
}

#[test]
fn promotion_needs_the_ca_key_and_a_secondary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, _, _) = pair(dir.path());
    assert_eq!(mgha_engine_promote(a.ptr), mgha_status::MGHA_INVALID_ARGUMENT, "a is the primary already");
    publish(&a, &host("h", "10.0.0.1"));
    wait_converged(&a, &b);
    // The CA key reaches b once it followed a; until then promotion is refused.
    wait_for(20, "b to be promoted", || mgha_engine_promote(b.ptr) == mgha_status::MGHA_OK);
    assert_eq!(status(&b)["node"]["designation"], "primary");
    let key = string_out(|out| unsafe { mgha_engine_join_key(b.ptr, 60_000, out) });
    assert!(key.starts_with("mgha1."), "the new primary issues join keys");
}

/// The compiled example plugins: `$MGHA_EXAMPLE_PLUGINS_DIR` (scripts/test sets it) or where
/// scripts/build-plugins puts them. Fails, never skips, when they are missing.
fn example_plugin(name: &str) -> Vec<u8> {
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm32-unknown-unknown/release");
    let dir = std::env::var_os("MGHA_EXAMPLE_PLUGINS_DIR").map(PathBuf::from).unwrap_or(default);
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; run scripts/build-plugins and set MGHA_EXAMPLE_PLUGINS_DIR to what it prints", path.display())
    })
}

#[test]
fn plugins_are_checked_installed_listed_and_removed() {
    let wasm = example_plugin("vpn_community");
    let info = json_out(|out| unsafe { mgha_plugin_check(wasm.as_ptr(), wasm.len(), out) });
    assert_eq!(info["name"], "vpn");
    assert_eq!(info["type_names"], serde_json::json!(["vpn.community"]));
    let garbage = b"\0asm but not really";
    let mut out: *mut c_char = std::ptr::null_mut();
    let status = unsafe { mgha_plugin_check(garbage.as_ptr(), garbage.len(), &mut out) };
    assert_eq!((status, out.is_null()), (mgha_status::MGHA_VALIDATION, true), "{:?}", last_error());
    assert!(last_error().1.contains("check"), "{:?}", last_error());

    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, _, _) = pair(dir.path());
    let (author, mut seq) = (c("admin"), 0u64);
    ok(unsafe { mgha_engine_plugin_install(a.ptr, author.as_ptr(), wasm.as_ptr(), wasm.len(), &mut seq) });
    assert!(seq > 0);
    wait_converged(&a, &b);
    let listed = json_out(|out| unsafe { mgha_engine_plugin_list_json(b.ptr, out) });
    assert_eq!(listed[0]["name"], "vpn", "the plugin replicated: {listed}");
    assert!(listed[0].get("error").is_none(), "b runs it: {listed}");
    let on_standby = unsafe { mgha_engine_plugin_install(b.ptr, author.as_ptr(), wasm.as_ptr(), wasm.len(), &mut seq) };
    assert_eq!(on_standby, mgha_status::MGHA_READ_ONLY);

    let (vpn, nobody) = (c("vpn"), c("nobody"));
    let missing = unsafe { mgha_engine_plugin_remove(a.ptr, author.as_ptr(), nobody.as_ptr(), &mut seq) };
    assert_eq!(missing, mgha_status::MGHA_NOT_FOUND);
    ok(unsafe { mgha_engine_plugin_remove(a.ptr, author.as_ptr(), vpn.as_ptr(), &mut seq) });
    let listed = json_out(|out| unsafe { mgha_engine_plugin_list_json(a.ptr, out) });
    assert_eq!(listed, Value::Array(vec![]));
}
