//! The cdylib as a C host sees it: loaded with `dlopen` (libloading) and driven only through
//! its exported symbols, with no Rust types shared. Catches a symbol that is not exported, an
//! ABI mismatch between the header and the library, and a build that forgot the cdylib.

mod common;

use std::ffi::{c_char, c_void, CStr, CString};

use common::{config, lib_dir};

type Init = unsafe extern "C" fn(*const c_char, *mut *mut c_void) -> u32;
type Close = unsafe extern "C" fn(*mut c_void) -> u32;
type Publish = unsafe extern "C" fn(*const c_void, *const c_char, *const c_char, *mut u64) -> u32;
type GetJson = unsafe extern "C" fn(*const c_void, *const c_char, *const c_char, *mut *mut c_char) -> u32;
type StringFree = unsafe extern "C" fn(*mut c_char);
type Text = unsafe extern "C" fn() -> *const c_char;
type StatusName = unsafe extern "C" fn(u32) -> *const c_char;

const MGHA_OK: u32 = 0;
const MGHA_NULL_ARGUMENT: u32 = 1;
const MGHA_INVALID_ARGUMENT: u32 = 4;
const MGHA_NOT_FOUND: u32 = 6;

fn text(p: *const c_char) -> String {
    assert!(!p.is_null());
    // SAFETY: the library returns NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[test]
fn the_cdylib_works_through_its_exported_symbols_alone() {
    let path = lib_dir().join(format!("{}mgha{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    assert!(path.exists(), "{} is missing: cargo builds the cdylib before the tests", path.display());
    // SAFETY: loading our own library runs no initializers beyond Rust's std.
    let lib = unsafe { libloading::Library::new(&path) }.expect("dlopen libmgha");
    // SAFETY (every `get`): the types are the ones include/mgha.h declares for these symbols.
    let (init, close, publish, get_json, string_free, version, message, status_name) = unsafe {
        (
            lib.get::<Init>(b"mgha_engine_init\0").expect("symbol"),
            lib.get::<Close>(b"mgha_engine_close\0").expect("symbol"),
            lib.get::<Publish>(b"mgha_engine_publish_json\0").expect("symbol"),
            lib.get::<GetJson>(b"mgha_engine_get_json\0").expect("symbol"),
            lib.get::<StringFree>(b"mgha_string_free\0").expect("symbol"),
            lib.get::<Text>(b"mgha_version\0").expect("symbol"),
            lib.get::<Text>(b"mgha_last_error_message\0").expect("symbol"),
            lib.get::<StatusName>(b"mgha_status_name\0").expect("symbol"),
        )
    };
    // SAFETY (every call below): arguments follow the header: C strings that outlive the call,
    // local out-parameters, and the engine handle the library returned, closed once.
    assert_eq!(text(unsafe { version() }), env!("CARGO_PKG_VERSION"));
    assert_eq!(text(unsafe { status_name(8) }), "MGHA_READ_ONLY");

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = CString::new(config(dir.path(), "a")).expect("config");
    let mut engine: *mut c_void = std::ptr::null_mut();
    assert_eq!(unsafe { init(cfg.as_ptr(), &mut engine) }, MGHA_OK, "{}", text(unsafe { message() }));
    let (author, cs) = (
        CString::new("dl").expect("c"),
        CString::new(
            r#"{"changes": [{"op": "put", "type": "host", "name": "h", "fields": {"ipv4-address": "10.9.9.9"}}]}"#,
        )
        .expect("c"),
    );
    let mut seq = 0u64;
    assert_eq!(unsafe { publish(engine, author.as_ptr(), cs.as_ptr(), &mut seq) }, MGHA_OK);
    assert_eq!(seq, 1);
    let (host, h) = (CString::new("host").expect("c"), CString::new("h").expect("c"));
    let mut out: *mut c_char = std::ptr::null_mut();
    assert_eq!(unsafe { get_json(engine, host.as_ptr(), h.as_ptr(), &mut out) }, MGHA_OK);
    let object: serde_json::Value = serde_json::from_str(&text(out)).expect("JSON");
    unsafe { string_free(out) };
    assert_eq!(object["fields"]["ipv4-address"], "10.9.9.9");

    // Bad input comes back as codes with messages.
    assert_eq!(unsafe { get_json(engine, host.as_ptr(), std::ptr::null(), &mut out) }, MGHA_NULL_ARGUMENT);
    assert_eq!(text(unsafe { message() }), "key is NULL");
    let bad = CString::new("{\"changes\": [").expect("c");
    assert_eq!(unsafe { publish(engine, author.as_ptr(), bad.as_ptr(), &mut seq) }, MGHA_INVALID_ARGUMENT);
    assert!(text(unsafe { message() }).contains("line 1"), "JSON errors give the place");
    let missing = CString::new("nope").expect("c");
    assert_eq!(unsafe { get_json(engine, host.as_ptr(), missing.as_ptr(), &mut out) }, MGHA_NOT_FOUND);
    assert_eq!(seq, 1);

    assert_eq!(unsafe { close(engine) }, MGHA_OK);
    assert_eq!(unsafe { close(engine) }, MGHA_INVALID_ARGUMENT, "a second close is refused");
    assert_eq!(unsafe { close(std::ptr::null_mut()) }, MGHA_OK);
    // Not unloaded: a host must not dlclose libmgha while its threads or thread-locals live.
    std::mem::forget(lib);
}
