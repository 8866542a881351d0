//! The log callback: the engine's `tracing` events (sync, roles, failover, plugins), handed to
//! one C function of the host's, so that a C or C++ program logs them its own way.
//!
//! The first [`mgha_set_log_callback`] installs this library's `tracing` subscriber as the
//! process's global one (a process has only one; a Rust host that installed its own is refused
//! with `MGHA_BUSY`). Events at INFO and more severe reach the callback, on the thread that
//! emitted them, possibly on several threads at once. Replacing the callback takes a write lock
//! that waits for callbacks in flight, so once the setter returns the old callback is neither
//! running nor called again, and the host may free its `user` data. docs/c-api.md, "Logging",
//! states the threading rules for hosts.

use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::fmt::Write as _;
use std::sync::{OnceLock, PoisonError, RwLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::error::{mgha_status, FfiError};

/// The severity of a log event; lower is more severe. Only `MGHA_LOG_ERROR` to `MGHA_LOG_INFO`
/// are delivered today; the others are reserved so that a host's `switch` need not change.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum mgha_log_level {
    MGHA_LOG_ERROR = 1,
    MGHA_LOG_WARN = 2,
    MGHA_LOG_INFO = 3,
    MGHA_LOG_DEBUG = 4,
    MGHA_LOG_TRACE = 5,
}

/// A host's log function: the event's level, its target (the Rust module that emitted it,
/// e.g. `"mgha_sync::runtime"`) and its message (the text, then each field as
/// ` key=value`), both NUL-terminated UTF-8 valid only during the call, and the `user` pointer
/// given to `mgha_set_log_callback`.
#[allow(non_camel_case_types)]
pub type mgha_log_callback = Option<
    unsafe extern "C" fn(level: mgha_log_level, target: *const c_char, message: *const c_char, user: *mut c_void),
>;

/// The callback and its user pointer; the pointer is the host's and only handed back to it.
#[derive(Clone, Copy)]
struct Callback {
    function: unsafe extern "C" fn(mgha_log_level, *const c_char, *const c_char, *mut c_void),
    user: usize,
}

static CALLBACK: RwLock<Option<Callback>> = RwLock::new(None);
/// Whether the global subscriber was installed (by the first successful set).
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

thread_local! {
    /// Set while this thread runs the host's callback: an event the callback causes (by calling
    /// the library) is dropped rather than delivered into the callback again, and a set from
    /// inside the callback, which would wait for itself, is refused.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Sets the function that receives the library's log events (INFO, WARN, ERROR), replacing
/// the previous one; NULL stops delivery. `user` is passed to every call unchanged. When this
/// returns, the previous callback is not running on any thread and will not be called again.
/// The callback runs on the thread that logged (an engine's threads, or the caller's), on
/// several threads at once, so it must be thread-safe and return promptly; it may call the
/// library, but events those calls log on its thread are dropped. `MGHA_BUSY` when called from
/// inside a log callback, or when the process already has another `tracing` subscriber (a Rust
/// host's).
#[no_mangle]
pub extern "C" fn mgha_set_log_callback(callback: mgha_log_callback, user: *mut c_void) -> mgha_status {
    ffi_boundary!(status: {
        if IN_CALLBACK.with(Cell::get) {
            return Err(FfiError::new(mgha_status::MGHA_BUSY, "mgha_set_log_callback called from inside the log callback"));
        }
        let next = callback.map(|function| Callback { function, user: user as usize });
        if next.is_some() {
            install()?;
        }
        *CALLBACK.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(())
    })
}

/// Installs the global subscriber once; every later call answers as the first did.
fn install() -> Result<(), FfiError> {
    let installed = INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(ToCallback.with_filter(LevelFilter::INFO));
        tracing::subscriber::set_global_default(subscriber).map_err(|_| {
            "this process already has a global tracing subscriber; the log callback cannot be installed".into()
        })
    });
    installed.clone().map_err(|message| FfiError::new(mgha_status::MGHA_BUSY, message))
}

/// The layer that formats each event and calls the host.
struct ToCallback;

impl<S: Subscriber> Layer<S> for ToCallback {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if IN_CALLBACK.with(Cell::get) {
            return;
        }
        let guard = CALLBACK.read().unwrap_or_else(PoisonError::into_inner);
        let Some(callback) = *guard else { return };
        let mut text = Text::default();
        event.record(&mut text);
        let meta = event.metadata();
        let (Some(target), Some(message)) = (c_text(meta.target()), c_text(&text.finish())) else { return };
        IN_CALLBACK.with(|c| c.set(true));
        // SAFETY: the host gave this function and pointer for exactly this call; both strings
        // live until after it returns.
        unsafe {
            (callback.function)(level(meta.level()), target.as_ptr(), message.as_ptr(), callback.user as *mut c_void)
        };
        IN_CALLBACK.with(|c| c.set(false));
        drop(guard);
    }
}

fn level(level: &Level) -> mgha_log_level {
    match *level {
        Level::ERROR => mgha_log_level::MGHA_LOG_ERROR,
        Level::WARN => mgha_log_level::MGHA_LOG_WARN,
        Level::INFO => mgha_log_level::MGHA_LOG_INFO,
        Level::DEBUG => mgha_log_level::MGHA_LOG_DEBUG,
        Level::TRACE => mgha_log_level::MGHA_LOG_TRACE,
    }
}

/// Text as a C string; a NUL inside (a peer's name, say) is shown as `\0`, never cuts it short.
fn c_text(s: &str) -> Option<CString> {
    CString::new(s.replace('\0', "\\0")).ok()
}

/// An event's message, then its other fields as ` key=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(self) -> String {
        self.message + &self.fields
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::sync::Mutex;

    /// What the callback saw: level, target, message, user pointer, and what a set from
    /// inside it answered. Other tests of this binary may log meanwhile; only this module's
    /// target is asserted on.
    type Seen = (mgha_log_level, String, String, usize, mgha_status);
    static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

    unsafe extern "C" fn record(
        level: mgha_log_level,
        target: *const c_char,
        message: *const c_char,
        user: *mut c_void,
    ) {
        // SAFETY: the library passes live NUL-terminated strings.
        let (target, message) = unsafe { (CStr::from_ptr(target), CStr::from_ptr(message)) };
        // A set from inside the callback would wait for itself: it must be refused.
        let nested = mgha_set_log_callback(None, std::ptr::null_mut());
        let entry = (
            level,
            target.to_string_lossy().into_owned(),
            message.to_string_lossy().into_owned(),
            user as usize,
            nested,
        );
        SEEN.lock().unwrap_or_else(PoisonError::into_inner).push(entry);
    }

    #[test]
    fn events_reach_the_callback_with_level_target_and_fields_until_it_is_removed() {
        assert_eq!(mgha_set_log_callback(Some(record), 7 as *mut c_void), mgha_status::MGHA_OK);
        tracing::info!(peer = "b\0x", "peer connected");
        tracing::debug!("below the level: not delivered");
        assert_eq!(mgha_set_log_callback(None, std::ptr::null_mut()), mgha_status::MGHA_OK);
        tracing::warn!("after removal: not delivered");
        let seen: Vec<Seen> = SEEN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|entry| entry.1 == "mgha::log::tests")
            .cloned()
            .collect();
        assert_eq!(
            seen,
            vec![(
                mgha_log_level::MGHA_LOG_INFO,
                "mgha::log::tests".to_string(),
                "peer connected peer=b\\0x".to_string(),
                7,
                mgha_status::MGHA_BUSY
            )]
        );
    }
}
