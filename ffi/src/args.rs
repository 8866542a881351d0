//! Pointer arguments: NULL checks, C strings to `&str`, byte buffers, and out-parameters that
//! are checked before the work and written only after it succeeded, so that on failure the
//! caller's outputs are left untouched.

use std::ffi::{c_char, CStr};

use crate::error::{mgha_status, FfiError, FfiResult};

// Every function here is `unsafe` for one shared reason, the contract of every pointer argument
// of the C API: a non-NULL pointer points at memory that is valid as the C type says (a
// NUL-terminated string, `len` bytes, a writable `T`) and stays valid and unchanged for the call.

/// A required NUL-terminated UTF-8 string argument named `what` in messages.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for `'a`.
pub unsafe fn text<'a>(p: *const c_char, what: &str) -> FfiResult<&'a str> {
    if p.is_null() {
        return Err(FfiError::null(what));
    }
    // SAFETY: non-NULL, and by the API contract a NUL-terminated string valid for the call.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        FfiError::new(
            mgha_status::MGHA_INVALID_UTF8,
            format!("{what} is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

/// An optional string argument: NULL means absent.
///
/// # Safety
/// As [`text`].
pub unsafe fn optional_text<'a>(p: *const c_char, what: &str) -> FfiResult<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: the caller's contract is the one `text` needs.
        unsafe { text(p, what) }.map(Some)
    }
}

/// A byte buffer argument of `len` bytes. NULL is allowed only with `len == 0`.
///
/// # Safety
/// `p` is NULL or points at `len` readable bytes valid for `'a`.
pub unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> FfiResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(FfiError::null(what));
    }
    if len > isize::MAX as usize {
        return Err(FfiError::new(
            mgha_status::MGHA_TOO_LARGE,
            format!("{what}: a length of {len} bytes is impossible"),
        ));
    }
    // SAFETY: non-NULL, `len` fits an allocation, and by the API contract, `len` readable bytes valid for the call.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// An out-parameter: checked for NULL when the call starts, written once it succeeded.
pub struct Out<T> {
    ptr: *mut T,
}

impl<T> Out<T> {
    /// # Safety
    /// `ptr` is NULL or points at writable storage for a `T` that stays valid until [`Out::set`]
    /// (within the same call).
    pub unsafe fn new(ptr: *mut T, what: &str) -> FfiResult<Out<T>> {
        if ptr.is_null() {
            return Err(FfiError::null(what));
        }
        Ok(Out { ptr })
    }

    /// Writes the result. Whatever the location held is overwritten, not dropped: outputs are
    /// plain C values (integers, pointers the caller owns).
    pub fn set(self, value: T) {
        // SAFETY: checked non-NULL in `new`, whose contract makes it writable storage for a `T`
        // (a `uint64_t`, a `char *`, ...) valid for the call.
        unsafe { self.ptr.write(value) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SAFETY (for every unsafe block below): the pointers come from live locals and literals.

    #[test]
    fn null_and_bad_utf8_are_named() {
        let e = unsafe { text(std::ptr::null(), "author") }.expect_err("NULL");
        assert_eq!((e.status, e.message.as_str()), (mgha_status::MGHA_NULL_ARGUMENT, "author is NULL"));
        let bad = b"ab\xffc\0";
        let e = unsafe { text(bad.as_ptr().cast(), "name") }.expect_err("not UTF-8");
        assert_eq!(e.status, mgha_status::MGHA_INVALID_UTF8);
        assert!(e.message.contains("byte 2"), "{}", e.message);
        assert_eq!(unsafe { text(c"ok".as_ptr(), "x") }.expect("valid"), "ok");
        assert_eq!(unsafe { optional_text(std::ptr::null(), "x") }.expect("absent"), None);
    }

    #[test]
    fn empty_buffers_may_be_null_but_others_not() {
        assert_eq!(unsafe { bytes(std::ptr::null(), 0, "buf") }.expect("empty"), &[] as &[u8]);
        let e = unsafe { bytes(std::ptr::null(), 3, "buf") }.expect_err("NULL");
        assert_eq!(e.status, mgha_status::MGHA_NULL_ARGUMENT);
    }

    #[test]
    fn out_is_written_only_when_set() {
        let mut v = 7u64;
        let _unused = unsafe { Out::new(&mut v as *mut u64, "out") }.expect("non-NULL");
        assert_eq!(v, 7);
        unsafe { Out::new(&mut v as *mut u64, "out") }.expect("non-NULL").set(9);
        assert_eq!(v, 9);
        assert!(unsafe { Out::<u64>::new(std::ptr::null_mut(), "out") }.is_err());
    }
}
