//! The panic boundary. Every `extern "C"` body runs inside [`ffi_boundary!`], which catches a
//! panic so that nothing unwinds into C: a status-returning function then returns
//! `MGHA_PANIC` (with the panic message as the thread's last error), any other function returns
//! its [`PanicDefault`] (NULL, nothing).
//!
//! Two forms, because the closure's type must be spelled for `?` to work inside it:
//!
//! ```ignore
//! ffi_boundary!(status: { let e = engine(handle)?; ...; Ok(()) })   // -> mgha_status
//! ffi_boundary!(value: { ... some_pointer })                       // -> that value
//! ```

use std::any::Any;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{mgha_status, record, FfiError, FfiResult};

/// Runs an `extern "C"` body behind the panic boundary; see the module documentation.
macro_rules! ffi_boundary {
    (status: { $($body:tt)* }) => {
        $crate::panic::run_status(move || -> $crate::error::FfiResult { $($body)* })
    };
    (value: { $($body:tt)* }) => {
        $crate::panic::run_value(move || { $($body)* })
    };
}

/// What a function that returns no status gives back when its body panicked.
pub trait PanicDefault {
    fn panic_default() -> Self;
}

impl PanicDefault for () {
    fn panic_default() -> Self {}
}

impl PanicDefault for u32 {
    fn panic_default() -> Self {
        0
    }
}

impl PanicDefault for *const c_char {
    fn panic_default() -> Self {
        std::ptr::null()
    }
}

impl PanicDefault for mgha_status {
    fn panic_default() -> Self {
        mgha_status::MGHA_PANIC
    }
}

/// Runs a status-returning body: records its outcome as the thread's last error.
pub fn run_status(body: impl FnOnce() -> FfiResult) -> mgha_status {
    // AssertUnwindSafe: after a panic the engine's own state stays usable (its locks recover
    // from poisoning and every write is one transaction), and the caller learns of the panic.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(outcome) => record(outcome),
        Err(payload) => record(Err(FfiError::new(
            mgha_status::MGHA_PANIC,
            format!("internal error (panic): {}", panic_message(payload.as_ref())),
        ))),
    }
}

/// Runs a body that returns a plain value; a panic gives the type's default.
pub fn run_value<T: PanicDefault>(body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| T::panic_default())
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{mgha_last_error_code, mgha_last_error_message};
    use std::ffi::CStr;

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = ffi_boundary!(status: {
            if mgha_status::MGHA_OK as u32 == 0 {
                panic!("boom in the body");
            }
            Ok(())
        });
        assert_eq!(status, mgha_status::MGHA_PANIC);
        assert_eq!(mgha_last_error_code(), mgha_status::MGHA_PANIC);
        // SAFETY: the message pointer is valid until the next status call on this thread.
        let message = unsafe { CStr::from_ptr(mgha_last_error_message()) }.to_string_lossy().into_owned();
        assert!(message.contains("boom in the body"), "{message}");
    }

    #[test]
    fn a_panic_in_a_value_function_gives_its_default() {
        let p: *const c_char = ffi_boundary!(value: {
            if mgha_status::MGHA_OK as u32 == 0 {
                panic!("boom");
            }
            c"never".as_ptr()
        });
        assert!(p.is_null());
    }

    #[test]
    fn errors_pass_through_with_their_status() {
        let status = ffi_boundary!(status: { Err(FfiError::null("out")) });
        assert_eq!(status, mgha_status::MGHA_NULL_ARGUMENT);
    }
}
