//! Status codes and the per-thread last error.
//!
//! Every function that returns [`mgha_status`] records, for the calling thread, the status it
//! returned and a message saying what went wrong (empty on success). The caller reads them with
//! [`mgha_last_error_code`] and [`mgha_last_error_message`]. Functions that return no status
//! (frees, getters, [`mgha_version`](crate::strings::mgha_version)) leave the record alone, so a
//! caller may free its buffers before reading the message.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use mgha_core::ErrorCode;

/// The result of every fallible function. 0 is success; the values are stable.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum mgha_status {
    /// Success.
    MGHA_OK = 0,
    /// A pointer argument that must not be NULL was NULL.
    MGHA_NULL_ARGUMENT = 1,
    /// A string argument was not valid UTF-8.
    MGHA_INVALID_UTF8 = 2,
    /// The library panicked; the message says where. The handle may still be used.
    MGHA_PANIC = 3,
    /// A malformed argument: bad JSON or TOML, an unknown config key, a malformed join key, a
    /// handle that is closed.
    MGHA_INVALID_ARGUMENT = 4,
    /// The change breaks a schema or reference rule; nothing was published.
    MGHA_VALIDATION = 5,
    /// No such object, revision, session or file.
    MGHA_NOT_FOUND = 6,
    /// The object is locked by another session.
    MGHA_CONFLICT = 7,
    /// This node is a read-only Standby (a publish, a session begin, a collision resolution);
    /// the message names the Active when it is known.
    MGHA_READ_ONLY = 8,
    /// An input is over a named limit.
    MGHA_TOO_LARGE = 9,
    /// Stored data or a backup file failed a check.
    MGHA_CORRUPT = 10,
    /// An operating-system or storage error, a peer port already in use among them.
    MGHA_IO = 11,
    /// A limit on concurrent use was reached, the data directory is in use, the call is not
    /// allowed from the thread it was made on, or the handle was made by the process this one
    /// was forked from.
    MGHA_BUSY = 12,
    /// A peer refused, did not answer, or too few standbys acknowledged a synchronous publish.
    MGHA_PEER = 13,
}

use mgha_status::*;

impl mgha_status {
    /// The status of every value `code` may hold, for [`mgha_status_name`].
    fn from_code(code: u32) -> Option<mgha_status> {
        [
            MGHA_OK,
            MGHA_NULL_ARGUMENT,
            MGHA_INVALID_UTF8,
            MGHA_PANIC,
            MGHA_INVALID_ARGUMENT,
            MGHA_VALIDATION,
            MGHA_NOT_FOUND,
            MGHA_CONFLICT,
            MGHA_READ_ONLY,
            MGHA_TOO_LARGE,
            MGHA_CORRUPT,
            MGHA_IO,
            MGHA_BUSY,
            MGHA_PEER,
        ]
        .into_iter()
        .find(|s| *s as u32 == code)
    }

    /// The enumerator's name, NUL-terminated.
    fn name(self) -> &'static str {
        match self {
            MGHA_OK => "MGHA_OK\0",
            MGHA_NULL_ARGUMENT => "MGHA_NULL_ARGUMENT\0",
            MGHA_INVALID_UTF8 => "MGHA_INVALID_UTF8\0",
            MGHA_PANIC => "MGHA_PANIC\0",
            MGHA_INVALID_ARGUMENT => "MGHA_INVALID_ARGUMENT\0",
            MGHA_VALIDATION => "MGHA_VALIDATION\0",
            MGHA_NOT_FOUND => "MGHA_NOT_FOUND\0",
            MGHA_CONFLICT => "MGHA_CONFLICT\0",
            MGHA_READ_ONLY => "MGHA_READ_ONLY\0",
            MGHA_TOO_LARGE => "MGHA_TOO_LARGE\0",
            MGHA_CORRUPT => "MGHA_CORRUPT\0",
            MGHA_IO => "MGHA_IO\0",
            MGHA_BUSY => "MGHA_BUSY\0",
            MGHA_PEER => "MGHA_PEER\0",
        }
    }
}

impl From<ErrorCode> for mgha_status {
    fn from(code: ErrorCode) -> mgha_status {
        match code {
            ErrorCode::InvalidArgument => MGHA_INVALID_ARGUMENT,
            ErrorCode::Validation => MGHA_VALIDATION,
            ErrorCode::NotFound => MGHA_NOT_FOUND,
            ErrorCode::Conflict => MGHA_CONFLICT,
            ErrorCode::ReadOnly => MGHA_READ_ONLY,
            ErrorCode::TooLarge => MGHA_TOO_LARGE,
            ErrorCode::Corrupt => MGHA_CORRUPT,
            ErrorCode::Io => MGHA_IO,
            ErrorCode::Busy => MGHA_BUSY,
            ErrorCode::Peer => MGHA_PEER,
        }
    }
}

/// What a failed call reports: a status other than `MGHA_OK` and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfiError {
    pub status: mgha_status,
    pub message: String,
}

impl FfiError {
    pub fn new(status: mgha_status, message: impl Into<String>) -> FfiError {
        FfiError { status, message: message.into() }
    }

    /// A NULL pointer where `what` was expected.
    pub fn null(what: &str) -> FfiError {
        FfiError::new(MGHA_NULL_ARGUMENT, format!("{what} is NULL"))
    }

    pub fn invalid(message: impl Into<String>) -> FfiError {
        FfiError::new(MGHA_INVALID_ARGUMENT, message)
    }

    /// Prefixes the message with the file it concerns.
    pub fn context(self, path: &std::path::Path) -> FfiError {
        FfiError::new(self.status, format!("{}: {}", path.display(), self.message))
    }
}

impl From<mgha_core::Error> for FfiError {
    fn from(e: mgha_core::Error) -> FfiError {
        FfiError::new(e.code().into(), e.to_string())
    }
}

impl From<mgha_node::Error> for FfiError {
    fn from(e: mgha_node::Error) -> FfiError {
        FfiError::new(e.code().into(), e.to_string())
    }
}

impl From<mgha_node::ConfigError> for FfiError {
    fn from(e: mgha_node::ConfigError) -> FfiError {
        FfiError::new(e.code().into(), e.to_string())
    }
}

impl From<std::io::Error> for FfiError {
    fn from(e: std::io::Error) -> FfiError {
        FfiError::new(MGHA_IO, e.to_string())
    }
}

/// The result type of every function body behind the panic boundary.
pub type FfiResult<T = ()> = Result<T, FfiError>;

struct LastError {
    status: mgha_status,
    message: CString,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError { status: MGHA_OK, message: CString::default() });
}

/// Records the outcome of a status-returning call on this thread and returns its status.
pub(crate) fn record(outcome: FfiResult) -> mgha_status {
    let (status, message) = match outcome {
        Ok(()) => (MGHA_OK, String::new()),
        Err(e) => (e.status, e.message),
    };
    // A message holds no NUL unless an input smuggled one in (MessagePack strings may); show it
    // escaped rather than lose the message.
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // `try_with`: during thread teardown the record may already be gone; the status still is.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = LastError { status, message });
    status
}

/// The status of the last status-returning call on this thread (`MGHA_OK` before any).
#[no_mangle]
pub extern "C" fn mgha_last_error_code() -> mgha_status {
    ffi_boundary!(value: { LAST_ERROR.try_with(|last| last.borrow().status).unwrap_or(MGHA_OK) })
}

/// The message of the last status-returning call on this thread: empty after a success, never
/// NULL. The pointer stays valid until the next status-returning call on this thread; copy the
/// text to keep it. Do not free it.
#[no_mangle]
pub extern "C" fn mgha_last_error_message() -> *const c_char {
    ffi_boundary!(value: {
        LAST_ERROR.try_with(|last| last.borrow().message.as_ptr()).unwrap_or(c"".as_ptr())
    })
}

/// The name of a status code (`"MGHA_READ_ONLY"`), or `"MGHA_UNKNOWN"` for a value that is
/// none. A static string: never freed, valid for the life of the process.
#[no_mangle]
pub extern "C" fn mgha_status_name(code: u32) -> *const c_char {
    ffi_boundary!(value: {
        mgha_status::from_code(code).map_or("MGHA_UNKNOWN\0", mgha_status::name).as_ptr().cast::<c_char>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn text(p: *const c_char) -> String {
        // SAFETY: the functions under test return NUL-terminated static or thread-local strings.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    #[test]
    fn every_status_has_its_own_name() {
        for code in 0..=13u32 {
            let status = mgha_status::from_code(code).expect("every code up to 13 is a status");
            assert_eq!(status as u32, code);
            assert!(text(mgha_status_name(code)).starts_with("MGHA_"));
        }
        assert_eq!(text(mgha_status_name(14)), "MGHA_UNKNOWN");
        assert_eq!(text(mgha_status_name(MGHA_READ_ONLY as u32)), "MGHA_READ_ONLY");
    }

    #[test]
    fn last_error_follows_the_last_status_call_of_the_thread() {
        record(Err(FfiError::new(MGHA_NOT_FOUND, "no host 'x'")));
        assert_eq!(mgha_last_error_code(), MGHA_NOT_FOUND);
        assert_eq!(text(mgha_last_error_message()), "no host 'x'");
        let other =
            std::thread::spawn(|| (mgha_last_error_code(), text(mgha_last_error_message()))).join().expect("thread");
        assert_eq!(other, (MGHA_OK, String::new()), "another thread has its own record");
        record(Ok(()));
        assert_eq!((mgha_last_error_code(), text(mgha_last_error_message())), (MGHA_OK, String::new()));
    }

    #[test]
    fn core_codes_map_one_to_one() {
        let e: FfiError = mgha_core::Error::ReadOnly { active: Some("a".into()) }.into();
        assert_eq!(e.status, MGHA_READ_ONLY);
        assert!(e.message.contains("'a'"), "{}", e.message);
    }
}
