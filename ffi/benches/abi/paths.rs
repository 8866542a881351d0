//! The ways into one engine that the bench compares: the Rust API, the exported functions as a
//! linked program calls them, and `libmgha.so` loaded with `dlopen`. The two C ways share one
//! driver (`C`) over the calls a C host makes (`CAbi`), so they run the very same sequence.

use std::ffi::{c_char, c_void, CStr, CString};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use mgha::engine::{mgha_engine, mgha_engine_close, mgha_engine_init};
use mgha::error::mgha_last_error_message;
use mgha::read::{mgha_engine_get_json, mgha_engine_get_msgpack};
use mgha::session::{
    mgha_session, mgha_session_begin, mgha_session_discard, mgha_session_free, mgha_session_publish,
    mgha_session_put_json,
};
use mgha::strings::{mgha_bytes_free, mgha_string_free};
use mgha_core::{ChangeInput, Engine};

use crate::Way;

/// The object of one session call, made before the call is timed: the Rust API takes the
/// change, the C ways the JSON text a C program would hold.
pub struct Staged {
    change: Option<ChangeInput>,
    json: CString,
}

impl Staged {
    /// Host `name` with a comment that differs on every call, so each publish changes it.
    pub fn new(name: &str, n: u64) -> Staged {
        let fields =
            serde_json::json!({"ipv4-address": "10.0.0.2", "comments": format!("call {n}"), "tags": ["bench"]});
        let json = serde_json::json!({"type": "host", "name": name, "fields": fields}).to_string();
        let serde_json::Value::Object(fields) = fields else { unreachable!("json! of an object") };
        Staged {
            change: Some(ChangeInput::Put { type_name: "host".into(), name: name.into(), uid: None, fields }),
            json: CString::new(json).expect("JSON has no NUL"),
        }
    }
}

/// The Rust API: what a Rust host holding an `Arc<Engine>` calls.
pub struct RustApi {
    pub core: Arc<Engine>,
}

impl Way for RustApi {
    fn label(&self) -> &'static str {
        "Rust API"
    }
    fn get_json(&self) {
        black_box(self.core.store().get("host", "web1").expect("web1"));
    }
    fn get_msgpack(&self) {
        self.get_json()
    }
    fn session(&self, staged: &mut Staged, publish: bool) {
        let change = staged.change.take().expect("each staged object is used once");
        let id = self.core.session_open("bench").expect("session");
        self.core.session_stage(id, change).expect("stage");
        match publish {
            true => drop(black_box(self.core.session_publish(id, "bench").expect("publish"))),
            false => self.core.session_discard(id).expect("discard"),
        }
    }
}

/// The calls a C host makes, whichever way it reached the library; statuses as `u32`.
pub trait CAbi {
    /// The calling thread's last error message.
    fn message(&self) -> String;
    fn ok(&self, status: u32, what: &str) {
        assert_eq!(status, 0, "{what}: {}", self.message());
    }
    unsafe fn get_json(&self, t: *const c_char, k: *const c_char, out: *mut *mut c_char) -> u32;
    unsafe fn string_free(&self, s: *mut c_char);
    unsafe fn get_msgpack(&self, t: *const c_char, k: *const c_char, out: *mut *mut u8, len: *mut usize) -> u32;
    unsafe fn bytes_free(&self, p: *mut u8, len: usize);
    unsafe fn begin(&self, author: *const c_char, out: *mut *mut c_void) -> u32;
    unsafe fn put_json(&self, s: *mut c_void, json: *const c_char) -> u32;
    unsafe fn publish(&self, s: *mut c_void, message: *const c_char, seq: *mut u64) -> u32;
    unsafe fn discard(&self, s: *mut c_void) -> u32;
    unsafe fn free(&self, s: *mut c_void);
}

/// Drives a `CAbi` as examples/c/cluster.c does. The strings a C program has as literals are
/// made once.
pub struct C<A: CAbi> {
    pub abi: A,
    label: &'static str,
    host: CString,
    web1: CString,
    author: CString,
}

impl<A: CAbi> C<A> {
    pub fn new(abi: A, label: &'static str) -> Self {
        let c = |s: &str| CString::new(s).expect("no NUL");
        C { abi, label, host: c("host"), web1: c("web1"), author: c("bench") }
    }

    /// Stages `object` in a new session and publishes or discards it, then frees the session.
    pub fn run_session(&self, object: &CStr, publish: bool) {
        let abi = &self.abi;
        let mut session: *mut c_void = std::ptr::null_mut();
        // SAFETY (every call below): C strings that outlive the calls, local out-parameters, and
        // the session the library returned, freed once: the API's pointer contract.
        unsafe {
            abi.ok(abi.begin(self.author.as_ptr(), &mut session), "begin");
            abi.ok(abi.put_json(session, object.as_ptr()), "put_json");
            if publish {
                let mut seq = 0u64;
                abi.ok(abi.publish(session, self.author.as_ptr(), &mut seq), "publish");
                black_box(seq);
            } else {
                abi.ok(abi.discard(session), "discard");
            }
            abi.free(session);
        }
    }
}

impl<A: CAbi> Way for C<A> {
    fn label(&self) -> &'static str {
        self.label
    }
    fn get_json(&self) {
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: C strings that outlive the call and a local out-parameter; the string the
        // library returned is freed once, with its own free.
        unsafe {
            self.abi.ok(self.abi.get_json(self.host.as_ptr(), self.web1.as_ptr(), &mut out), "get_json");
            self.abi.string_free(black_box(out));
        }
    }
    fn get_msgpack(&self) {
        let (mut out, mut len): (*mut u8, usize) = (std::ptr::null_mut(), 0);
        // SAFETY: as in `get_json`; the buffer is freed with the length the library wrote.
        unsafe {
            self.abi.ok(self.abi.get_msgpack(self.host.as_ptr(), self.web1.as_ptr(), &mut out, &mut len), "get");
            self.abi.bytes_free(black_box(out), len);
        }
    }
    fn session(&self, staged: &mut Staged, publish: bool) {
        self.run_session(&staged.json, publish)
    }
}

/// The exported functions called directly: a program linked against libmgha.
pub struct Linked {
    engine: *mut mgha_engine,
}

impl Linked {
    /// A Primary made with `mgha_engine_init`, as the C example makes one.
    pub fn init(config: &CStr) -> Linked {
        let mut linked = Linked { engine: std::ptr::null_mut() };
        let mut engine = std::ptr::null_mut();
        // SAFETY: a C string that outlives the call and a local out-parameter.
        linked.ok(unsafe { mgha_engine_init(config.as_ptr(), &mut engine) } as u32, "init");
        linked.engine = engine;
        linked
    }

    pub fn engine(&self) -> *mut mgha_engine {
        self.engine
    }

    pub fn close(self) {
        self.ok(mgha_engine_close(self.engine) as u32, "close");
    }
}

// SAFETY (every `unsafe` block of this impl): the caller's contract, passed on unchanged.
impl CAbi for Linked {
    fn message(&self) -> String {
        // SAFETY: a NUL-terminated string valid until the thread's next status call.
        unsafe { CStr::from_ptr(mgha_last_error_message()) }.to_string_lossy().into_owned()
    }
    unsafe fn get_json(&self, t: *const c_char, k: *const c_char, out: *mut *mut c_char) -> u32 {
        unsafe { mgha_engine_get_json(self.engine, t, k, out) as u32 }
    }
    unsafe fn string_free(&self, s: *mut c_char) {
        unsafe { mgha_string_free(s) }
    }
    unsafe fn get_msgpack(&self, t: *const c_char, k: *const c_char, out: *mut *mut u8, len: *mut usize) -> u32 {
        unsafe { mgha_engine_get_msgpack(self.engine, t, k, out, len) as u32 }
    }
    unsafe fn bytes_free(&self, p: *mut u8, len: usize) {
        unsafe { mgha_bytes_free(p, len) }
    }
    unsafe fn begin(&self, author: *const c_char, out: *mut *mut c_void) -> u32 {
        unsafe { mgha_session_begin(self.engine, author, out.cast::<*mut mgha_session>()) as u32 }
    }
    unsafe fn put_json(&self, s: *mut c_void, json: *const c_char) -> u32 {
        unsafe { mgha_session_put_json(s.cast(), json) as u32 }
    }
    unsafe fn publish(&self, s: *mut c_void, message: *const c_char, seq: *mut u64) -> u32 {
        unsafe { mgha_session_publish(s.cast(), message, seq) as u32 }
    }
    unsafe fn discard(&self, s: *mut c_void) -> u32 {
        mgha_session_discard(s.cast()) as u32
    }
    unsafe fn free(&self, s: *mut c_void) {
        mgha_session_free(s.cast())
    }
}

type InitFn = unsafe extern "C" fn(*const c_char, *mut *mut c_void) -> u32;
type CloseFn = unsafe extern "C" fn(*mut c_void) -> u32;
type GetJsonFn = unsafe extern "C" fn(*const c_void, *const c_char, *const c_char, *mut *mut c_char) -> u32;
type GetMsgpackFn = unsafe extern "C" fn(*const c_void, *const c_char, *const c_char, *mut *mut u8, *mut usize) -> u32;
type StringFreeFn = unsafe extern "C" fn(*mut c_char);
type BytesFreeFn = unsafe extern "C" fn(*mut u8, usize);
type BeginFn = unsafe extern "C" fn(*const c_void, *const c_char, *mut *mut c_void) -> u32;
type PutJsonFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> u32;
type PublishFn = unsafe extern "C" fn(*mut c_void, *const c_char, *mut u64) -> u32;
type DiscardFn = unsafe extern "C" fn(*mut c_void) -> u32;
type SessionFreeFn = unsafe extern "C" fn(*mut c_void);
type MessageFn = unsafe extern "C" fn() -> *const c_char;

/// `libmgha.so` loaded with `dlopen`, its functions resolved once (as a C host keeps them), and
/// an engine of its own, closed on drop.
pub struct Loaded {
    engine: *mut c_void,
    close: CloseFn,
    get_json: GetJsonFn,
    get_msgpack: GetMsgpackFn,
    string_free: StringFreeFn,
    bytes_free: BytesFreeFn,
    begin: BeginFn,
    put_json: PutJsonFn,
    publish: PublishFn,
    discard: DiscardFn,
    free: SessionFreeFn,
    message: MessageFn,
    // Last: the functions above point into it.
    _lib: libloading::Library,
}

/// The function `name` of `lib`.
///
/// # Safety
/// `T` is the function pointer type include/mgha.h declares for `name`.
unsafe fn symbol<T: Copy>(lib: &libloading::Library, name: &str) -> T {
    // SAFETY: the caller's contract.
    *unsafe { lib.get::<T>(format!("{name}\0").as_bytes()) }.unwrap_or_else(|e| panic!("{name}: {e}"))
}

impl Loaded {
    /// Loads the library and makes a Primary with `config`; `None`, with a note, when the cdylib
    /// is not next to this executable.
    pub fn open(config: &CStr) -> Option<Loaded> {
        let path = cdylib_path()?;
        // SAFETY: our own library; loading it runs no initializers beyond Rust's std.
        let lib = unsafe { libloading::Library::new(&path) }.expect("dlopen libmgha");
        // SAFETY: every type is the one the header declares for the name.
        let (init, mut loaded) = unsafe {
            let init: InitFn = symbol(&lib, "mgha_engine_init");
            let loaded = Loaded {
                engine: std::ptr::null_mut(),
                close: symbol(&lib, "mgha_engine_close"),
                get_json: symbol(&lib, "mgha_engine_get_json"),
                get_msgpack: symbol(&lib, "mgha_engine_get_msgpack"),
                string_free: symbol(&lib, "mgha_string_free"),
                bytes_free: symbol(&lib, "mgha_bytes_free"),
                begin: symbol(&lib, "mgha_session_begin"),
                put_json: symbol(&lib, "mgha_session_put_json"),
                publish: symbol(&lib, "mgha_session_publish"),
                discard: symbol(&lib, "mgha_session_discard"),
                free: symbol(&lib, "mgha_session_free"),
                message: symbol(&lib, "mgha_last_error_message"),
                _lib: lib,
            };
            (init, loaded)
        };
        let mut engine = std::ptr::null_mut();
        // SAFETY: a C string that outlives the call and a local out-parameter.
        loaded.ok(unsafe { init(config.as_ptr(), &mut engine) }, "init (libmgha.so)");
        loaded.engine = engine;
        Some(loaded)
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if !self.engine.is_null() {
            // SAFETY: the engine this library returned, closed once.
            unsafe { (self.close)(self.engine) };
        }
    }
}

// SAFETY (every `unsafe` block of this impl): the caller's contract, passed on unchanged to the
// function of the same name, which the library still holds (`_lib` lives as long as `self`).
impl CAbi for Loaded {
    fn message(&self) -> String {
        // SAFETY: a NUL-terminated string valid until the thread's next status call.
        unsafe { CStr::from_ptr((self.message)()) }.to_string_lossy().into_owned()
    }
    unsafe fn get_json(&self, t: *const c_char, k: *const c_char, out: *mut *mut c_char) -> u32 {
        unsafe { (self.get_json)(self.engine, t, k, out) }
    }
    unsafe fn string_free(&self, s: *mut c_char) {
        unsafe { (self.string_free)(s) }
    }
    unsafe fn get_msgpack(&self, t: *const c_char, k: *const c_char, out: *mut *mut u8, len: *mut usize) -> u32 {
        unsafe { (self.get_msgpack)(self.engine, t, k, out, len) }
    }
    unsafe fn bytes_free(&self, p: *mut u8, len: usize) {
        unsafe { (self.bytes_free)(p, len) }
    }
    unsafe fn begin(&self, author: *const c_char, out: *mut *mut c_void) -> u32 {
        unsafe { (self.begin)(self.engine, author, out) }
    }
    unsafe fn put_json(&self, s: *mut c_void, json: *const c_char) -> u32 {
        unsafe { (self.put_json)(s, json) }
    }
    unsafe fn publish(&self, s: *mut c_void, message: *const c_char, seq: *mut u64) -> u32 {
        unsafe { (self.publish)(s, message, seq) }
    }
    unsafe fn discard(&self, s: *mut c_void) -> u32 {
        unsafe { (self.discard)(s) }
    }
    unsafe fn free(&self, s: *mut c_void) {
        unsafe { (self.free)(s) }
    }
}

/// `libmgha.so` as cargo built it for this run: next to this executable, in
/// `target/<profile>/deps` (as `tests/common::lib_dir` finds it for the tests).
fn cdylib_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let name = format!("{}mgha{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let path = exe.parent()?.join(name);
    if !path.exists() {
        println!("note: {} is missing; the dlopen column is left out", path.display());
        return None;
    }
    Some(path)
}
