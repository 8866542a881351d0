//! Helpers for the Rust tests that call the C ABI directly through the rlib: owned C strings,
//! engines in temp dirs that close themselves, and readers of the thread's last error.
//!
//! Every `unsafe` block in the tests calls an `mgha_` export with pointers to live locals, C
//! strings that outlive the call, or handles and buffers the library returned and that are used
//! or freed once: the API's documented pointer contract.
#![allow(dead_code)]

pub mod cc;
pub mod driver;

use std::ffi::{c_char, CStr, CString};
use std::path::Path;

use mgha::engine::{mgha_engine, mgha_engine_close, mgha_engine_init};
use mgha::error::{mgha_last_error_code, mgha_last_error_message, mgha_status};
use mgha::strings::mgha_string_free;

pub fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL in test strings")
}

/// The calling thread's last error.
pub fn last_error() -> (mgha_status, String) {
    // SAFETY: a NUL-terminated string valid until the next status call on this thread.
    let message = unsafe { CStr::from_ptr(mgha_last_error_message()) }.to_string_lossy().into_owned();
    (mgha_last_error_code(), message)
}

/// Panics with the last error unless `status` is OK.
pub fn ok(status: mgha_status) {
    assert_eq!(status, mgha_status::MGHA_OK, "call failed: {:?}", last_error());
}

/// Copies and frees a string the library returned.
pub fn take(p: *mut c_char) -> String {
    assert!(!p.is_null(), "the library returned NULL");
    // SAFETY: a live string returned by the library, freed once right after.
    let s = unsafe { CStr::from_ptr(p) }.to_str().expect("UTF-8").to_owned();
    // SAFETY: as above.
    unsafe { mgha_string_free(p) };
    s
}

/// A string out-parameter call: runs `f(&mut out)`, checks OK, returns the text.
pub fn string_out(f: impl FnOnce(*mut *mut c_char) -> mgha_status) -> String {
    let mut out: *mut c_char = std::ptr::null_mut();
    ok(f(&mut out));
    take(out)
}

/// A JSON out-parameter call, parsed.
pub fn json_out(f: impl FnOnce(*mut *mut c_char) -> mgha_status) -> serde_json::Value {
    serde_json::from_str(&string_out(f)).expect("the library returns valid JSON")
}

/// Engine config for a node in `dir`: loopback, a free port, short timers.
pub fn config(dir: &Path, name: &str) -> String {
    format!(
        "data_dir = {:?}\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nheartbeat_ms = 100\npeer_timeout_ms = 2000\n",
        dir.display().to_string()
    )
}

/// An open engine handle, closed on drop.
pub struct Engine {
    pub ptr: *mut mgha_engine,
}

impl Engine {
    /// A new Primary in `dir`.
    pub fn init(dir: &Path, name: &str) -> Engine {
        let cfg = c(&config(dir, name));
        let mut ptr = std::ptr::null_mut();
        // SAFETY: see the module documentation.
        ok(unsafe { mgha_engine_init(cfg.as_ptr(), &mut ptr) });
        Engine { ptr }
    }

    /// Closes now; drop then does nothing.
    pub fn close(&mut self) {
        if !self.ptr.is_null() {
            ok(mgha_engine_close(self.ptr));
            self.ptr = std::ptr::null_mut();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            mgha_engine_close(self.ptr);
        }
    }
}

/// Publishes a JSON changeset by "test" and returns its revision number.
pub fn publish(engine: &Engine, changeset: &str) -> u64 {
    let mut seq = 0;
    let (author, cs) = (c("test"), c(changeset));
    // SAFETY: see the module documentation.
    ok(unsafe { mgha::session::mgha_engine_publish_json(engine.ptr, author.as_ptr(), cs.as_ptr(), &mut seq) });
    seq
}

/// Polls `check` every 20 ms until it holds or `secs` seconds pass.
pub fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The directory holding the `libmgha.so` / `libmgha.a` built for this test run. For the
/// integration tests cargo builds the library (all its crate types) into `target/<profile>/deps`,
/// next to the test executables, and copies it up to `target/<profile>` only on `cargo build`:
/// `deps/` is always current, the directory above may hold an older build.
pub fn lib_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps").to_path_buf();
    let name = format!("{}mgha{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let dir =
        if deps.join(&name).exists() { deps.clone() } else { deps.parent().map(Path::to_path_buf).unwrap_or(deps) };
    soname_link(&dir);
    dir
}

/// The SONAME the library records (ffi/build.rs).
pub const SONAME: &str = "libmgha.so.0";

/// A program linked against `libmgha.so` asks the loader for its SONAME, `libmgha.so.0`; an
/// install makes that link (scripts/install-lib), cargo's build tree does not, so the tests make
/// it beside the library they link.
fn soname_link(dir: &Path) {
    if cfg!(target_os = "linux") {
        let link = dir.join(SONAME);
        match std::os::unix::fs::symlink("libmgha.so", &link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("cannot link {}: {e}", link.display()),
        }
    }
}

/// Where the build tree's `mgha.pc` goes: `target/<profile>`.
pub fn profile_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}
