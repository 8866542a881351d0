//! What the exports that [`crate::export!`] generates run: the allocator pair the host uses to
//! pass buffers, and the decode → call → encode of each call (with the hand-written codec of
//! [`crate::codec`]). Not for plugin authors.
//!
//! Buffers are allocated with alignment 1 and their exact length, so `mgha_free(ptr, len)`
//! rebuilds the same layout; an answer is a leaked boxed slice, which is that layout too.

use std::alloc::Layout;

use crate::codec::{self, Reader, Writer};
use crate::types::ValidateOutput;
use crate::Plugin;

/// `mgha_alloc`: `len` bytes for the host to write into; 0 when impossible.
pub fn alloc(len: i32) -> i32 {
    match usize::try_from(len).ok().filter(|l| *l > 0).and_then(|l| Layout::from_size_align(l, 1).ok()) {
        // SAFETY: the layout has a non-zero size.
        Some(layout) => unsafe { std::alloc::alloc(layout) as usize as i32 },
        None => 0,
    }
}

/// `mgha_free`: releases a buffer from [`alloc`] or an answer.
///
/// # Safety
/// `ptr` and `len` must be a buffer this module handed out and not freed yet, as the ABI says.
pub unsafe fn free(ptr: i32, len: i32) {
    let Some(len) = usize::try_from(len).ok().filter(|l| *l > 0) else {
        return;
    };
    if ptr != 0 {
        if let Ok(layout) = Layout::from_size_align(len, 1) {
            // SAFETY: the caller guarantees the buffer came from us with this length.
            unsafe { std::alloc::dealloc(ptr as u32 as usize as *mut u8, layout) };
        }
    }
}

/// `mgha_describe`.
pub fn describe<P: Plugin>() -> i64 {
    hook_panics();
    // Once per instance: serde's way is good enough here.
    let description = match serde_json::to_value(P::describe()) {
        Ok(v) => v,
        Err(e) => panic!("mgha-plugin: unencodable description: {e}"),
    };
    let mut out = Writer::with_capacity(1024);
    out.value(&description);
    answer(out.buf)
}

/// `mgha_validate`.
///
/// # Safety
/// `ptr` and `len` must be the input buffer the host wrote, as the ABI says.
pub unsafe fn validate<P: Plugin>(ptr: i32, len: i32) -> i64 {
    hook_panics();
    // SAFETY: forwarded from the caller.
    let object = decode(unsafe { input(ptr, len) }, Reader::object);
    let errors = P::validate(&object).err().unwrap_or_default();
    let mut out = Writer::with_capacity(64);
    out.validate_output(&ValidateOutput { ok: errors.is_empty(), errors });
    answer(out.buf)
}

/// `mgha_merge`.
///
/// # Safety
/// `ptr` and `len` must be the input buffer the host wrote, as the ABI says.
pub unsafe fn merge<P: Plugin>(ptr: i32, len: i32) -> i64 {
    hook_panics();
    // SAFETY: forwarded from the caller.
    let input = decode(unsafe { input(ptr, len) }, Reader::merge_input);
    let merged = P::merge(input);
    let mut out = Writer::with_capacity(512);
    out.merge_output(&merged);
    answer(out.buf)
}

/// # Safety
/// As [`validate`].
unsafe fn input<'a>(ptr: i32, len: i32) -> &'a [u8] {
    let len = usize::try_from(len).unwrap_or(0);
    if len == 0 {
        return &[];
    }
    // SAFETY: the host wrote `len` bytes at `ptr`, a buffer from `alloc`, and frees it only
    // after the call returns.
    unsafe { std::slice::from_raw_parts(ptr as u32 as usize as *const u8, len) }
}

fn decode<'a, T>(bytes: &'a [u8], read: impl FnOnce(&mut Reader<'a>) -> Result<T, codec::Error>) -> T {
    let mut reader = Reader::new(bytes);
    match read(&mut reader) {
        Ok(v) if reader.finished() => v,
        // The host only sends what the ABI says; anything else is a bug worth a trap.
        Ok(_) => panic!("mgha-plugin: undecodable input: bytes after the value"),
        Err(e) => panic!("mgha-plugin: undecodable input: {e}"),
    }
}

/// Hands an encoded answer to the host as `ptr << 32 | len`.
fn answer(bytes: Vec<u8>) -> i64 {
    let bytes = bytes.into_boxed_slice();
    let len = bytes.len();
    if len == 0 {
        return 0;
    }
    let ptr = Box::into_raw(bytes) as *mut u8 as usize;
    ((ptr as u64) << 32 | len as u64) as i64
}

/// Sends panic messages to the host's log before the trap, so that the node's log says why.
fn hook_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| crate::log(crate::Level::Error, &info.to_string())));
    });
}
