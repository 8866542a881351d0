//! One engine through the C ABI (called directly through the rlib): sessions, one-shot
//! publishes, every read, revert, backup/verify/restore, reopening, and JSON/MessagePack round
//! trips. See `common` for the safety contract of the `unsafe` blocks.

mod common;

use common::*;
use mgha::backup::{mgha_backup_restore, mgha_backup_verify, mgha_engine_backup};
use mgha::engine::{mgha_engine_close, mgha_engine_open, mgha_engine_open_path, mgha_engine_peer_addr};
use mgha::error::mgha_status;
use mgha::read::*;
use mgha::session::*;
use mgha::strings::mgha_bytes_free;

const WEB: &str = r#"{"message": "web tier", "changes": [
    {"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1"}},
    {"op": "put", "type": "group", "name": "web", "fields": {"members": ["web1"]}}]}"#;

#[test]
fn session_stages_publishes_and_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::init(dir.path(), "a");
    let mut session = std::ptr::null_mut();
    let author = c("alice");
    // SAFETY (every block below): see `common`.
    ok(unsafe { mgha_session_begin(engine.ptr, author.as_ptr(), &mut session) });
    let put = c(r#"{"type": "host", "name": "h1", "fields": {"ipv4-address": "10.1.1.1"}}"#);
    ok(unsafe { mgha_session_put_json(session, put.as_ptr()) });
    let put = c(r#"{"type": "host", "name": "h2", "fields": {"ipv4-address": "10.1.1.2"}}"#);
    ok(unsafe { mgha_session_put_json(session, put.as_ptr()) });
    let mut seq = 0;
    let message = c("two hosts");
    ok(unsafe { mgha_session_publish(session, message.as_ptr(), &mut seq) });
    assert_eq!(seq, 1);
    let again = unsafe { mgha_session_put_json(session, put.as_ptr()) };
    assert_eq!(again, mgha_status::MGHA_INVALID_ARGUMENT, "a published session is spent");
    assert!(last_error().1.contains("already published as revision 1"), "{:?}", last_error());
    mgha_session_free(session);

    let (host, h1) = (c("host"), c("h1"));
    let object = json_out(|out| unsafe { mgha_engine_get_json(engine.ptr, host.as_ptr(), h1.as_ptr(), out) });
    assert_eq!(object["fields"]["ipv4-address"], "10.1.1.1");
    let list = json_out(|out| unsafe { mgha_engine_list_json(engine.ptr, host.as_ptr(), 0, out) });
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    let one = json_out(|out| unsafe { mgha_engine_list_json(engine.ptr, std::ptr::null(), 1, out) });
    assert_eq!(one.as_array().map(Vec::len), Some(1), "limit applies; NULL type lists every type");
    let revs = json_out(|out| unsafe { mgha_engine_revisions_json(engine.ptr, 0, out) });
    assert_eq!((revs[0]["seq"].as_u64(), revs[0]["author"].as_str()), (Some(1), Some("alice")));
    let rev = json_out(|out| unsafe { mgha_engine_revision_json(engine.ptr, 1, out) });
    assert_eq!(rev["changes"].as_array().map(Vec::len), Some(2));
}

#[test]
fn delete_by_name_or_uid_and_discard_release_locks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::init(dir.path(), "a");
    publish(&engine, WEB);
    let (alice, bob, host, group, web, web1) = (c("alice"), c("bob"), c("host"), c("group"), c("web"), c("web1"));
    let (mut s1, mut s2) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY (every block below): see `common`.
    ok(unsafe { mgha_session_begin(engine.ptr, alice.as_ptr(), &mut s1) });
    ok(unsafe { mgha_session_begin(engine.ptr, bob.as_ptr(), &mut s2) });
    let group_obj = json_out(|out| unsafe { mgha_engine_get_json(engine.ptr, group.as_ptr(), web.as_ptr(), out) });
    let uid = c(group_obj["uid"].as_str().expect("uid"));
    ok(unsafe { mgha_session_delete(s1, group.as_ptr(), uid.as_ptr()) });
    ok(unsafe { mgha_session_delete(s1, host.as_ptr(), web1.as_ptr()) });
    assert_eq!(unsafe { mgha_session_delete(s2, host.as_ptr(), web1.as_ptr()) }, mgha_status::MGHA_CONFLICT);
    assert!(last_error().1.contains("locked"), "{:?}", last_error());
    ok(mgha_session_discard(s1));
    assert_eq!(mgha_session_discard(s1), mgha_status::MGHA_INVALID_ARGUMENT, "discarded once");
    ok(unsafe { mgha_session_delete(s2, host.as_ptr(), web1.as_ptr()) });
    let mut seq = 0;
    let message = c("drop web1");
    let status = unsafe { mgha_session_publish(s2, message.as_ptr(), &mut seq) };
    assert_eq!(status, mgha_status::MGHA_VALIDATION, "web still uses web1");
    assert_eq!(seq, 0, "outputs untouched on failure");
    assert!(last_error().1.contains("used by"), "{:?}", last_error());
    ok(unsafe { mgha_session_delete(s2, group.as_ptr(), web.as_ptr()) });
    ok(unsafe { mgha_session_publish(s2, message.as_ptr(), &mut seq) });
    assert_eq!(seq, 2, "a session stays open after a validation error and publishes once fixed");
    mgha_session_free(s1);
    mgha_session_free(s2);
}

#[test]
fn msgpack_round_trips_through_get_and_put() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::init(dir.path(), "a");
    publish(&engine, WEB);
    let (host, web1) = (c("host"), c("web1"));
    let (mut buf, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY (every block below): see `common`.
    ok(unsafe { mgha_engine_get_msgpack(engine.ptr, host.as_ptr(), web1.as_ptr(), &mut buf, &mut len) });
    assert!(len > 0);
    let mut bytes = unsafe { std::slice::from_raw_parts(buf, len) }.to_vec();
    unsafe { mgha_bytes_free(buf, len) };
    // Change the address in place: the canonical encoding holds "10.0.0.1" once.
    let at = bytes.windows(8).position(|w| w == b"10.0.0.1").expect("address in the encoding");
    bytes[at..at + 8].copy_from_slice(b"10.0.0.9");
    let mut session = std::ptr::null_mut();
    let author = c("alice");
    ok(unsafe { mgha_session_begin(engine.ptr, author.as_ptr(), &mut session) });
    ok(unsafe { mgha_session_put_msgpack(session, bytes.as_ptr(), bytes.len()) });
    let mut seq = 0;
    let message = c("readdress");
    ok(unsafe { mgha_session_publish(session, message.as_ptr(), &mut seq) });
    mgha_session_free(session);
    let object = json_out(|out| unsafe { mgha_engine_get_json(engine.ptr, host.as_ptr(), web1.as_ptr(), out) });
    assert_eq!(object["fields"]["ipv4-address"], "10.0.0.9");
    let garbage = [0xc1u8, 0x00];
    let mut session = std::ptr::null_mut();
    ok(unsafe { mgha_session_begin(engine.ptr, author.as_ptr(), &mut session) });
    let status = unsafe { mgha_session_put_msgpack(session, garbage.as_ptr(), garbage.len()) };
    assert_eq!(status, mgha_status::MGHA_INVALID_ARGUMENT);
    mgha_session_free(session);
}

#[test]
fn diff_and_revert_walk_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::init(dir.path(), "a");
    publish(&engine, WEB);
    publish(
        &engine,
        r#"{"changes": [{"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.2"}}]}"#,
    );
    // SAFETY (every block below): see `common`.
    let diff = json_out(|out| unsafe { mgha_engine_diff_json(engine.ptr, 1, 2, out) });
    assert_eq!(diff["objects"][0]["fields"][0]["after"], "10.0.0.2");
    let (author, mut seq) = (c("admin"), 0);
    ok(unsafe { mgha_engine_revert(engine.ptr, author.as_ptr(), 1, &mut seq) });
    assert_eq!(seq, 3);
    let (host, web1) = (c("host"), c("web1"));
    let object = json_out(|out| unsafe { mgha_engine_get_json(engine.ptr, host.as_ptr(), web1.as_ptr(), out) });
    assert_eq!(object["fields"]["ipv4-address"], "10.0.0.1");
    let status = json_out(|out| unsafe { mgha_engine_status_json(engine.ptr, out) });
    assert_eq!((status["head"]["seq"].as_u64(), status["node"]["role"].as_str()), (Some(3), Some("active")));
    let check = json_out(|out| unsafe { mgha_engine_check_json(engine.ptr, out) });
    assert_eq!(check["revisions"].as_u64(), Some(3));
    assert_eq!(
        unsafe { mgha_engine_diff_json(engine.ptr, 1, 99, &mut std::ptr::null_mut()) },
        mgha_status::MGHA_NOT_FOUND
    );
}

#[test]
fn backup_verifies_and_restores_into_a_node_without_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::init(&dir.path().join("a"), "a");
    publish(&engine, WEB);
    let file = dir.path().join("a.mghabak");
    let path = c(&file.display().to_string());
    // SAFETY (every block below): see `common`.
    ok(unsafe { mgha_engine_backup(engine.ptr, path.as_ptr()) });
    assert_eq!(unsafe { mgha_engine_backup(engine.ptr, path.as_ptr()) }, mgha_status::MGHA_INVALID_ARGUMENT);
    let summary = json_out(|out| unsafe { mgha_backup_verify(path.as_ptr(), out) });
    assert_eq!(summary["header"]["objects"].as_u64(), Some(2));
    let restored_cfg = c(&config(&dir.path().join("r"), "a"));
    ok(unsafe { mgha_backup_restore(path.as_ptr(), restored_cfg.as_ptr()) });
    let mut restored = std::ptr::null_mut();
    ok(unsafe { mgha_engine_open(restored_cfg.as_ptr(), &mut restored) });
    let (host, web1) = (c("host"), c("web1"));
    let object = json_out(|out| unsafe { mgha_engine_get_json(restored, host.as_ptr(), web1.as_ptr(), out) });
    assert_eq!(object["fields"]["ipv4-address"], "10.0.0.1");
    let mut addr = std::ptr::null_mut();
    assert_eq!(unsafe { mgha_engine_peer_addr(restored, &mut addr) }, mgha_status::MGHA_NOT_FOUND);
    assert!(addr.is_null());
    ok(mgha_engine_close(restored));
    let missing = c(&dir.path().join("none.mghabak").display().to_string());
    assert_eq!(unsafe { mgha_backup_verify(missing.as_ptr(), &mut addr) }, mgha_status::MGHA_NOT_FOUND);
}

#[test]
fn a_closed_node_reopens_from_its_config_string_or_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node_dir = dir.path().join("node");
    let mut engine = Engine::init(&node_dir, "a");
    publish(&engine, WEB);
    engine.close();
    let cfg = c(&config(&node_dir, "a"));
    let mut ptr = std::ptr::null_mut();
    // SAFETY (every block below): see `common`.
    assert_eq!(unsafe { mgha::engine::mgha_engine_init(cfg.as_ptr(), &mut ptr) }, mgha_status::MGHA_INVALID_ARGUMENT);
    assert!(last_error().1.contains("already holds a node"), "{:?}", last_error());
    let wrong = c(&config(&node_dir, "b"));
    assert_eq!(unsafe { mgha_engine_open(wrong.as_ptr(), &mut ptr) }, mgha_status::MGHA_INVALID_ARGUMENT);
    assert!(last_error().1.contains("holds node 'a'"), "{:?}", last_error());
    ok(unsafe { mgha_engine_open(cfg.as_ptr(), &mut ptr) });
    let reopened = Engine { ptr };
    let mut twice = std::ptr::null_mut();
    assert_eq!(unsafe { mgha_engine_open(cfg.as_ptr(), &mut twice) }, mgha_status::MGHA_BUSY, "{:?}", last_error());
    assert!(twice.is_null());
    let status = json_out(|out| unsafe { mgha_engine_status_json(reopened.ptr, out) });
    assert_eq!(status["head"]["seq"].as_u64(), Some(1));
    drop(reopened);
    // A config file with a data_dir relative to the file.
    let file = dir.path().join("node.toml");
    std::fs::write(&file, "data_dir = \"node\"\nlisten = \"127.0.0.1:0\"\n").expect("writes");
    let path = c(&file.display().to_string());
    let mut ptr = std::ptr::null_mut();
    ok(unsafe { mgha_engine_open_path(path.as_ptr(), &mut ptr) });
    let _reopened = Engine { ptr };
}

/// A C host keeps SIGPIPE's default action (terminate); the engine's runtime threads, which do
/// its network writes, block it, so a write to a closed peer is an EPIPE error, not a kill.
#[cfg(target_os = "linux")]
#[test]
fn runtime_threads_block_sigpipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _engine = Engine::init(dir.path(), "a");
    let sigpipe_bit = 1u64 << (13 - 1);
    let mut checked = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        // A thread may end between the listing and the reads: skip it then.
        let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else { continue };
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue };
        if name.trim() != "mgha-sync" {
            continue;
        }
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .expect("SigBlk in /proc status");
        assert_ne!(blocked & sigpipe_bit, 0, "an mgha-sync thread does not block SIGPIPE");
        checked += 1;
    }
    assert!(checked >= 2, "found {checked} mgha-sync threads; expected the runtime's workers");
}
