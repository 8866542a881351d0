//! Hostile and mistaken input through the C ABI (called directly through the rlib): NULL
//! pointers, invalid UTF-8, malformed JSON and TOML, handles used in the wrong order or twice.
//! Each gets its documented status and a message, never undefined behaviour, and outputs stay
//! untouched. See `common` for the safety contract of the `unsafe` blocks.

mod common;

use std::ffi::c_char;
use std::ptr::{null, null_mut};

use common::*;
use mgha::archive::*;
use mgha::domains::*;
use mgha::engine::*;
use mgha::error::mgha_status::{self, *};
use mgha::read::*;
use mgha::session::*;
use mgha::strings::{mgha_bytes_free, mgha_string_free};

/// One call with a NULL argument, given the string out-parameter to pass where it has one.
type NullCase<'a> = (&'a str, Box<dyn Fn(&mut *mut c_char) -> mgha_status + 'a>);

/// A sentinel an out-parameter must still hold after a failed call.
fn sentinel<T>() -> *mut T {
    0x10 as *mut T
}

#[test]
fn null_arguments_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::init(dir.path(), "a");
    let mut out: *mut c_char = sentinel();
    let (host, web) = (c("host"), c("web"));
    // SAFETY (every block below): see `common`; NULL is what is being tested.
    let cases: Vec<NullCase> = vec![
        ("config_toml is NULL", Box::new(|_| unsafe { mgha_engine_init(null(), &mut null_mut()) })),
        ("engine is NULL", Box::new(|o| unsafe { mgha_engine_get_json(null(), host.as_ptr(), web.as_ptr(), o) })),
        ("type is NULL", Box::new(|o| unsafe { mgha_engine_get_json(engine.ptr, null(), web.as_ptr(), o) })),
        ("key is NULL", Box::new(|o| unsafe { mgha_engine_get_json(engine.ptr, host.as_ptr(), null(), o) })),
        (
            "out is NULL",
            Box::new(|_| unsafe { mgha_engine_get_json(engine.ptr, host.as_ptr(), web.as_ptr(), null_mut()) }),
        ),
        (
            "author is NULL",
            Box::new(|_| unsafe { mgha_engine_publish_json(engine.ptr, null(), host.as_ptr(), &mut 0) }),
        ),
        ("author is NULL", Box::new(|_| unsafe { mgha_session_begin(engine.ptr, null(), &mut null_mut()) })),
        ("object_json is NULL", Box::new(|_| unsafe { mgha_session_put_json(null_mut(), null()) })),
        ("buf is NULL", Box::new(|_| unsafe { mgha_session_put_msgpack(null_mut(), null(), 4) })),
        ("session is NULL", Box::new(|_| mgha_session_discard(null_mut()))),
        ("out_seq is NULL", Box::new(|_| unsafe { mgha_engine_revert(engine.ptr, host.as_ptr(), 0, null_mut()) })),
        ("name is NULL", Box::new(|o| unsafe { mgha_engine_archive_revision_json(engine.ptr, null(), 1, o) })),
        ("engine is NULL", Box::new(|o| unsafe { mgha_engine_archive_list_json(null(), o) })),
    ];
    for (message, call) in cases {
        assert_eq!(call(&mut out), MGHA_NULL_ARGUMENT, "{message}");
        assert_eq!(last_error(), (MGHA_NULL_ARGUMENT, message.to_string()));
    }
    assert_eq!(out, sentinel(), "outputs untouched on failure");
}

#[test]
fn invalid_utf8_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::init(dir.path(), "a");
    let bad = b"h\xffst\0";
    let web = c("web");
    let mut out: *mut c_char = sentinel();
    // SAFETY (every block below): see `common`.
    let status = unsafe { mgha_engine_get_json(engine.ptr, bad.as_ptr().cast(), web.as_ptr(), &mut out) };
    assert_eq!(status, MGHA_INVALID_UTF8);
    assert!(last_error().1.contains("type is not valid UTF-8"), "{:?}", last_error());
    assert_eq!(unsafe { mgha_engine_init(bad.as_ptr().cast(), &mut null_mut()) }, MGHA_INVALID_UTF8);
    assert_eq!(out, sentinel());
}

#[test]
fn malformed_json_toml_and_values_are_invalid_arguments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::init(&dir.path().join("a"), "a");
    let (author, mut seq) = (c("t"), 5u64);
    // SAFETY (every block below): see `common`.
    for (json, status) in [
        ("{\"changes\": [}", MGHA_INVALID_ARGUMENT),
        ("not json", MGHA_INVALID_ARGUMENT),
        (r#"{"changes": [{"op": "upsert", "type": "host", "name": "a"}]}"#, MGHA_INVALID_ARGUMENT),
        (r#"{"changes": [{"op": "put", "type": "hots", "name": "a", "fields": {}}]}"#, MGHA_VALIDATION),
        (
            r#"{"changes": [{"op": "put", "type": "host", "name": "a", "fields": {"ipv4-address": "1.2.3.400"}}]}"#,
            MGHA_VALIDATION,
        ),
    ] {
        let cs = c(json);
        assert_eq!(
            unsafe { mgha_engine_publish_json(engine.ptr, author.as_ptr(), cs.as_ptr(), &mut seq) },
            status,
            "{json}"
        );
        assert!(!last_error().1.is_empty());
    }
    assert_eq!(seq, 5);
    let mut session = null_mut();
    ok(unsafe { mgha_session_begin(engine.ptr, author.as_ptr(), &mut session) });
    let object = c(r#"{"type": "host", "name": "x", "colour": "red"}"#);
    assert_eq!(unsafe { mgha_session_put_json(session, object.as_ptr()) }, MGHA_INVALID_ARGUMENT);
    assert!(last_error().1.contains("colour"), "{:?}", last_error());
    mgha_session_free(session);

    let unknown = c(&format!("{}colour = \"blue\"\n", config(&dir.path().join("b"), "b")));
    let mut out = sentinel();
    assert_eq!(unsafe { mgha_engine_init(unknown.as_ptr(), &mut out) }, MGHA_INVALID_ARGUMENT);
    assert!(last_error().1.contains("colour"), "the unknown key is named: {:?}", last_error());
    assert_eq!(out, sentinel());
    assert!(!dir.path().join("b").exists(), "nothing was created");
    let no_name =
        c(&format!("data_dir = {:?}\nlisten = \"127.0.0.1:0\"\n", dir.path().join("c").display().to_string()));
    assert_eq!(unsafe { mgha_engine_init(no_name.as_ptr(), &mut out) }, MGHA_INVALID_ARGUMENT);
    assert!(last_error().1.contains("'name'"), "{:?}", last_error());
    let mut key = sentinel();
    assert_eq!(unsafe { mgha_engine_join_key(engine.ptr, 0, &mut key) }, MGHA_INVALID_ARGUMENT);
    let missing = c(&config(&dir.path().join("nothing"), "n"));
    assert_eq!(unsafe { mgha_engine_open(missing.as_ptr(), &mut out) }, MGHA_NOT_FOUND);
}

#[test]
fn sessions_outliving_their_engine_get_an_error_not_undefined_behaviour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine = Engine::init(dir.path(), "a");
    let (author, object) = (c("t"), c(r#"{"type": "host", "name": "h", "fields": {"ipv4-address": "10.0.0.1"}}"#));
    let mut session = null_mut();
    // SAFETY (every block below): see `common`.
    ok(unsafe { mgha_session_begin(engine.ptr, author.as_ptr(), &mut session) });
    ok(unsafe { mgha_session_put_json(session, object.as_ptr()) });
    let stale = engine.ptr;
    engine.close();
    assert_eq!(unsafe { mgha_session_put_json(session, object.as_ptr()) }, MGHA_INVALID_ARGUMENT);
    assert_eq!(last_error().1, "the engine was closed");
    assert_eq!(unsafe { mgha_session_publish(session, author.as_ptr(), &mut 0) }, MGHA_INVALID_ARGUMENT);
    mgha_session_free(session);
    mgha_session_free(session); // a second free of the same session is ignored
    assert_eq!(unsafe { mgha_session_put_json(session, object.as_ptr()) }, MGHA_INVALID_ARGUMENT);
    assert!(last_error().1.contains("not a live handle"), "{:?}", last_error());

    // The closed engine handle: a second close and later calls are refused.
    assert_eq!(mgha_engine_close(stale), MGHA_INVALID_ARGUMENT);
    assert!(last_error().1.contains("engine is not a live handle"), "{:?}", last_error());
    let mut out = sentinel();
    assert_eq!(unsafe { mgha_engine_status_json(stale, &mut out) }, MGHA_INVALID_ARGUMENT);
    assert_eq!(out, sentinel());
}

#[test]
fn pointers_the_library_never_returned_are_refused() {
    let mut local = 0u64;
    let fake = (&mut local as *mut u64).cast::<mgha_engine>();
    let mut out = sentinel();
    // SAFETY: the library looks the handle up and never dereferences it.
    assert_eq!(unsafe { mgha_engine_status_json(fake, &mut out) }, MGHA_INVALID_ARGUMENT);
    assert_eq!(mgha_engine_close(fake), MGHA_INVALID_ARGUMENT);
    mgha_session_free(fake.cast());
    assert_eq!(local, 0);
}

#[test]
fn frees_and_close_accept_null() {
    assert_eq!(mgha_engine_close(null_mut()), MGHA_OK);
    mgha_session_free(null_mut());
    // SAFETY: NULL is always accepted.
    unsafe {
        mgha_string_free(null_mut());
        mgha_bytes_free(null_mut(), 0);
    }
}

#[test]
fn engines_are_not_started_or_stopped_inside_a_tokio_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::init(&dir.path().join("a"), "a");
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let cfg = c(&config(&dir.path().join("b"), "b"));
    let (init, close) = runtime.block_on(async {
        let mut out = null_mut();
        // SAFETY: see `common`.
        let init = unsafe { mgha_engine_init(cfg.as_ptr(), &mut out) };
        (init, mgha_engine_close(engine.ptr))
    });
    assert_eq!((init, close), (MGHA_BUSY, MGHA_BUSY));
    assert!(last_error().1.contains("tokio runtime"), "{:?}", last_error());
    drop(runtime);
    drop(engine); // closes normally outside the runtime
}

/// The archive calls refuse names that are not archives of the data directory: unknown ones are
/// `MGHA_NOT_FOUND`, and a name reaching out of the archive directory never opens a file there.
#[test]
fn archive_names_outside_the_archive_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::init(dir.path(), "a");
    let mut out: *mut c_char = sentinel();
    // SAFETY: see `common`.
    assert_eq!(unsafe { mgha_engine_archive_list_json(engine.ptr, &mut out) }, MGHA_OK);
    // SAFETY: a string the library returned, freed once.
    let listed = unsafe { std::ffi::CStr::from_ptr(out) }.to_string_lossy().into_owned();
    unsafe { mgha_string_free(out) };
    assert_eq!(listed, r#"{"archives":[]}"#, "a new node has an empty archive");
    std::fs::write(dir.path().join("outside.mghabak"), b"not an archive").expect("write");
    let cases = [
        ("missing.mghabak", MGHA_NOT_FOUND),
        ("../outside.mghabak", MGHA_INVALID_ARGUMENT),
        ("/etc/passwd", MGHA_INVALID_ARGUMENT),
    ];
    for (name, expected) in cases {
        let mut out: *mut c_char = sentinel();
        let name = c(name);
        // SAFETY: see `common`.
        let status = unsafe { mgha_engine_archive_revisions_json(engine.ptr, name.as_ptr(), 0, 0, &mut out) };
        assert_eq!(status, expected, "{name:?}");
        assert_eq!(out, sentinel(), "outputs untouched on failure");
    }
}

#[test]
fn domain_requests_are_checked_before_anything_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::init(dir.path(), "a");
    let mut out: *mut c_char = sentinel();
    let mut handle: *mut mgha_engine = sentinel();
    // SAFETY (every block below): see `common`; NULL and bad text are what is being tested.
    assert_eq!(unsafe { mgha_engine_domain(engine.ptr, null(), &mut handle) }, MGHA_NULL_ARGUMENT);
    assert_eq!(last_error().1, "name is NULL");
    assert_eq!(unsafe { mgha_engine_domain_create(engine.ptr, null(), &mut out) }, MGHA_NULL_ARGUMENT);
    for (request, named) in [
        ("{\"name\": ", "request_json"),
        (r#"{"name": "red", "colour": "blue"}"#, "colour"),
        (r#"{"name": "red", "replicas": -1}"#, "request_json"),
        (r#"{"name": ""}"#, "cannot name a domain"),
        (r#"{"name": "a/b"}"#, "cannot name a domain"),
        (r#"{"name": "global"}"#, "global"),
    ] {
        let text = c(request);
        let status = unsafe { mgha_engine_domain_create(engine.ptr, text.as_ptr(), &mut out) };
        assert!(matches!(status, MGHA_INVALID_ARGUMENT | MGHA_CONFLICT), "{request}: {status:?}");
        assert!(last_error().1.contains(named), "{request}: {:?}", last_error());
    }
    let (nowhere, global) = (c("nowhere"), c("global"));
    assert_eq!(unsafe { mgha_engine_domain(engine.ptr, nowhere.as_ptr(), &mut handle) }, MGHA_NOT_FOUND);
    assert_eq!(unsafe { mgha_engine_domain_delete(engine.ptr, nowhere.as_ptr(), 1, &mut out) }, MGHA_NOT_FOUND);
    assert_eq!(unsafe { mgha_engine_domain_delete(engine.ptr, global.as_ptr(), 1, &mut out) }, MGHA_INVALID_ARGUMENT);
    assert_eq!((out, handle), (sentinel(), sentinel()), "outputs untouched on failure");
    let list = json_out(|o| unsafe { mgha_engine_domains_json(engine.ptr, o) });
    let names: Vec<&str> =
        list["domains"].as_array().expect("a list").iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["global"], "no refused request created a domain");
}
