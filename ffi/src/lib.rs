//! libmgha: the C ABI of the mgha engine, built as `libmgha.so` / `libmgha.a` and described by
//! `include/mgha.h` (generated from this crate by cbindgen; `tests/header.rs` keeps it current).
//! docs/c-api.md is the guide: naming, ownership, errors, threads, events.
//!
//! One module per API area; this file only declares them: first the shared machinery (pointer
//! arguments, errors, handles and their fork check, buffers), then the API areas. The only
//! crate of the workspace with `extern "C"`.

#[macro_use]
mod panic;

pub mod args;
pub mod error;
mod fork;
pub mod handle;
pub mod strings;

pub mod archive;
pub mod backup;
pub mod domains;
pub mod engine;
pub mod events;
pub mod log;
pub mod plugins;
pub mod read;
pub mod roles;
pub mod session;
