//! Write mgha plugins in Rust.
//!
//! A plugin is a WebAssembly module (wasm32-unknown-unknown, no WASI) that adds object types to
//! an mgha engine, validates their objects and, if it wants, merges them in its own way.
//! Implement [`Plugin`] and export it with one macro; the crate turns the plugin ABI
//! (docs/plugin-abi.md in the mgha repository) into typed calls:
//!
//! ```ignore
//! use mgha_plugin::{Description, FieldError, FieldKind, FieldSpec, Object, Plugin, TypeSchema};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn describe() -> Description {
//!         Description {
//!             name: "hello".into(),
//!             version: "1.0.0".into(),
//!             types: vec![TypeSchema::new("hello.greeting", vec![FieldSpec::new("text", FieldKind::String).required()])],
//!             merge: vec![],
//!         }
//!     }
//!     fn validate(o: &Object) -> Result<(), Vec<FieldError>> {
//!         match o.get("text").and_then(|v| v.as_str()) {
//!             Some(t) if t.starts_with("hello") => Ok(()),
//!             _ => Err(vec![FieldError::new("text", "must start with hello")]),
//!         }
//!     }
//! }
//!
//! mgha_plugin::export!(Hello);
//! ```
//!
//! Build with `cargo build --release --target wasm32-unknown-unknown` and a `cdylib` crate type,
//! then `mgha plugin check` and `mgha plugin install` the `.wasm`.
//!
//! Rules the host enforces (see the ABI document): answers must depend only on their input (the
//! host reuses instances and may start fresh ones at any time), documents hold no floats, and
//! each call runs under fuel, a deadline and a memory limit.

#[cfg(any(test, all(target_arch = "wasm32", not(target_feature = "atomics"), feature = "arena")))]
mod arena;
mod codec;
#[cfg(any(test, all(target_arch = "wasm32", feature = "memcmp")))]
mod mem;
mod merge;
#[doc(hidden)]
pub mod rt;
mod types;

/// Every call's allocations come from an arena that the next call reuses (see `src/arena.rs`);
/// the default feature `arena` installs it.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics"), feature = "arena"))]
#[global_allocator]
static ALLOCATOR: arena::Arena<arena::LinearMemory> = arena::Arena::new(arena::LinearMemory);

pub use merge::{set_union, three_way, whole_conflict, FieldMerge, Side};
pub use serde_json::{self, json, Value};
pub use types::{
    Conflict, Constraint, Description, FieldError, FieldKind, FieldSpec, Fields, MergeInput, MergeOutput,
    MergeStrategy, Object, TypeSchema, ValidateOutput,
};

/// The plugin ABI version this crate speaks.
pub const ABI_VERSION: i32 = 1;

/// A plugin: what it declares, and its checks and merge. All three must be pure functions of
/// their input.
pub trait Plugin {
    /// The plugin's name and version, its types (each `<name>.<type>`), and which of them
    /// [`Plugin::merge`] merges.
    fn describe() -> Description;

    /// Checks an object of one of the plugin's types, after the engine checked it against the
    /// declared schema (kinds, required fields, constraints). References hold uids by then.
    fn validate(_object: &Object) -> Result<(), Vec<FieldError>> {
        Ok(())
    }

    /// Three-way merge of an object of a type listed under `merge`, called only when both sides
    /// changed it differently. The default keeps the active's version, with a conflict over the
    /// whole object for the administrator to settle.
    fn merge(input: MergeInput) -> MergeOutput {
        whole_conflict(&input)
    }
}

/// Log levels of [`log`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

/// Writes a line to the node's log, tagged with the plugin's name. Lines past the host's
/// per-call budget are dropped; logging never changes an answer.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        #[link(wasm_import_module = "mgha_host_v1")]
        extern "C" {
            #[link_name = "log"]
            fn host_log(level: i32, ptr: i32, len: i32);
        }
        // SAFETY: the host reads `len` bytes at `ptr` during the call and keeps nothing.
        unsafe { host_log(level as i32, message.as_ptr() as usize as i32, message.len() as i32) };
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Exports a [`Plugin`] under the ABI's names: `mgha_abi_version`, `mgha_alloc`, `mgha_free`,
/// `mgha_describe`, `mgha_validate` and `mgha_merge`. Use it once, in the plugin's crate root.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        #[no_mangle]
        pub extern "C" fn mgha_abi_version() -> i32 {
            $crate::ABI_VERSION
        }

        #[no_mangle]
        pub extern "C" fn mgha_alloc(len: i32) -> i32 {
            $crate::rt::alloc(len)
        }

        #[no_mangle]
        pub extern "C" fn mgha_free(ptr: i32, len: i32) {
            // SAFETY: the host frees only buffers this module handed out, once.
            unsafe { $crate::rt::free(ptr, len) }
        }

        #[no_mangle]
        pub extern "C" fn mgha_describe() -> i64 {
            $crate::rt::describe::<$plugin>()
        }

        #[no_mangle]
        pub extern "C" fn mgha_validate(ptr: i32, len: i32) -> i64 {
            // SAFETY: the host passes the buffer it wrote, as the ABI says.
            unsafe { $crate::rt::validate::<$plugin>(ptr, len) }
        }

        #[no_mangle]
        pub extern "C" fn mgha_merge(ptr: i32, len: i32) -> i64 {
            // SAFETY: the host passes the buffer it wrote, as the ABI says.
            unsafe { $crate::rt::merge::<$plugin>(ptr, len) }
        }
    };
}
