//! Buffers that cross to C and their free functions. Every string the library returns is a
//! `char *` made by [`into_c_string`] and freed with [`mgha_string_free`]; every byte buffer is
//! made by [`into_c_bytes`] and freed with [`mgha_bytes_free`]. Static strings (versions, status
//! names) are never freed.

use std::ffi::{c_char, CString};

use serde::Serialize;

use crate::error::{mgha_status, FfiError, FfiResult};

/// A Rust string as an owned C string, for `char **out` parameters.
pub fn into_c_string(s: String) -> FfiResult<*mut c_char> {
    CString::new(s).map(CString::into_raw).map_err(|e| {
        // JSON escapes NUL and no other text we return can hold one; this is a bug if it shows.
        FfiError::new(mgha_status::MGHA_INVALID_ARGUMENT, format!("text holds a NUL byte at {}", e.nul_position()))
    })
}

/// A value serialized as JSON text, as an owned C string.
pub fn json_c_string<T: Serialize + ?Sized>(value: &T) -> FfiResult<*mut c_char> {
    let text = serde_json::to_string(value)
        .map_err(|e| FfiError::new(mgha_status::MGHA_INVALID_ARGUMENT, format!("cannot encode JSON: {e}")))?;
    into_c_string(text)
}

/// Bytes as an owned buffer for `uint8_t **out, size_t *out_len`.
pub fn into_c_bytes(bytes: Vec<u8>) -> (*mut u8, usize) {
    let boxed = bytes.into_boxed_slice();
    let len = boxed.len();
    (Box::into_raw(boxed).cast::<u8>(), len)
}

/// Frees a string returned by this library. NULL is ignored. Freeing a string twice, or one
/// this library did not return (or with `free()`), is undefined behaviour.
#[no_mangle]
pub unsafe extern "C" fn mgha_string_free(s: *mut c_char) {
    ffi_boundary!(value: {
        if !s.is_null() {
            // SAFETY: by the contract, `s` came from `CString::into_raw` in `into_c_string` and
            // is freed once.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

/// Frees a byte buffer returned by this library, with the length it was returned with. NULL is
/// ignored. A wrong length, a second free, or a buffer this library did not return is undefined
/// behaviour.
#[no_mangle]
pub unsafe extern "C" fn mgha_bytes_free(ptr: *mut u8, len: usize) {
    ffi_boundary!(value: {
        if !ptr.is_null() {
            let slice = std::ptr::slice_from_raw_parts_mut(ptr, len);
            // SAFETY: by the contract, `ptr`/`len` are what `into_c_bytes` returned (a boxed
            // slice turned into a raw pointer), freed once.
            drop(unsafe { Box::from_raw(slice) });
        }
    })
}

/// The library version (`"0.1.0"`): a static string, never freed.
#[no_mangle]
pub extern "C" fn mgha_version() -> *const c_char {
    ffi_boundary!(value: { concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast::<c_char>() })
}

/// The library version as one number, `major * 1000000 + minor * 1000 + patch` (0.1.0 is
/// 1000): what `MGHA_VERSION_NUMBER` in mgha.h says of the header a program was compiled
/// with, so a program can compare the two, or require a minimum, with `<`.
#[no_mangle]
pub extern "C" fn mgha_version_number() -> u32 {
    ffi_boundary!(value: { VERSION_NUMBER })
}

/// The crate version as [`mgha_version_number`] gives it, worked out at compile time.
const VERSION_NUMBER: u32 = parse(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
    + parse(env!("CARGO_PKG_VERSION_MINOR")) * 1_000
    + parse(env!("CARGO_PKG_VERSION_PATCH"));

/// A decimal number at compile time (Cargo's version parts are plain digits).
const fn parse(digits: &str) -> u32 {
    let bytes = digits.as_bytes();
    let mut value = 0;
    let mut i = 0;
    while i < bytes.len() {
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn strings_and_bytes_round_trip_through_their_frees() {
        let s = json_c_string(&serde_json::json!({"a": "b\u{0}c"})).expect("JSON escapes NUL");
        // SAFETY: `s` is a live string returned above.
        assert_eq!(unsafe { CStr::from_ptr(s) }.to_str().expect("utf-8"), r#"{"a":"b\u0000c"}"#);
        // SAFETY: freed once.
        unsafe { mgha_string_free(s) };
        let (p, len) = into_c_bytes(vec![1, 2, 3]);
        // SAFETY: `p`/`len` were just returned, freed once.
        unsafe { mgha_bytes_free(p, len) };
        let (p, len) = into_c_bytes(Vec::new());
        // SAFETY: as above; an empty buffer frees too.
        unsafe { mgha_bytes_free(p, len) };
    }

    #[test]
    fn frees_ignore_null() {
        // SAFETY: NULL is always accepted.
        unsafe {
            mgha_string_free(std::ptr::null_mut());
            mgha_bytes_free(std::ptr::null_mut(), 5);
        }
    }

    #[test]
    fn a_nul_in_text_is_an_error_not_a_truncation() {
        assert!(into_c_string("a\0b".into()).is_err());
    }

    #[test]
    fn version_number_is_the_crate_version() {
        let [major, minor, patch] =
            [env!("CARGO_PKG_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MINOR"), env!("CARGO_PKG_VERSION_PATCH")]
                .map(|part| part.parse::<u32>().expect("a number"));
        assert_eq!(mgha_version_number(), major * 1_000_000 + minor * 1_000 + patch);
    }

    #[test]
    fn version_is_the_crate_version() {
        // SAFETY: a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(mgha_version()) };
        assert_eq!(v.to_str().expect("utf-8"), env!("CARGO_PKG_VERSION"));
    }
}
