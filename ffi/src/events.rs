//! Events: callbacks that tell the host the head moved, the role changed, or a peer's sync
//! status changed.
//!
//! Each engine has one dispatcher thread (`mgha-events`), a plain std thread. A tokio task
//! wakes it whenever the engine's head moves (the watch of [`SyncState::subscribe`]), and it
//! also wakes every [`EVENT_POLL_MS`] to compare the node's role and the peer table with what it
//! saw last. It calls every subscribed callback, one at a time, on itself; the header documents
//! what a callback may do. A domain handle has a dispatcher of its own, watching that domain's
//! engine. A dispatcher holds its engine weakly: it ends by itself once the node lets go of the
//! engine (the node closed, the domain deleted), so it never keeps a store open.
//!
//! [`SyncState::subscribe`]: mgha_sync::state::SyncState::subscribe

use mgha_sync::EngineExt;
use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use mgha_core::engine::Engine;
use mgha_core::model::Uid;
use mgha_core::{Head, Role};
use mgha_sync::state::PeerStatus;
use mgha_sync::SyncStatus;
use serde_json::json;

use crate::args::Out;
use crate::engine::{mgha_engine, ENGINES};
use crate::error::{mgha_status, FfiError};

/// How often the dispatcher compares role and peer statuses with what it saw last.
pub const EVENT_POLL_MS: u64 = 100;
/// Most subscriptions on one engine at once.
pub const SUBSCRIPTIONS_MAX: usize = 64;

/// What an event reports: the `kind` of an `mgha_event`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum mgha_event_kind {
    /// The head moved (a local publish or revert on the Active, an applied revision or a full
    /// sync on a Standby). `seq` is the new head; one event may cover several revisions.
    MGHA_EVENT_REVISION_APPLIED = 1,
    /// This node's role or epoch changed. `seq` is the head.
    MGHA_EVENT_ROLE_CHANGED = 2,
    /// A peer's sync status changed. `seq` is the peer's head as this node knows it.
    MGHA_EVENT_SYNC_STATUS_CHANGED = 3,
    /// A peer's status became `collision`: its history diverged from this node's, or this node
    /// keeps a collision branch of its revisions. Sent after the matching
    /// `MGHA_EVENT_SYNC_STATUS_CHANGED`. `seq` is the peer's head.
    MGHA_EVENT_COLLISION = 4,
}

/// One event, valid only for the duration of the callback that receives it.
#[repr(C)]
pub struct mgha_event {
    /// An `mgha_event_kind`.
    pub kind: u32,
    /// A revision number; what it counts depends on `kind`.
    pub seq: u64,
    /// The details as a JSON object (NUL-terminated); docs/c-api.md lists the keys per kind.
    pub json: *const c_char,
}

/// Called on the engine's event thread for every event. `event` and its `json` are valid only
/// until the callback returns.
#[allow(non_camel_case_types)]
pub type mgha_event_callback = Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const mgha_event)>;

/// The host's opaque pointer, handed back to its callback on the event thread.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: the library never dereferences it; subscribing is the host's promise that its
// callback may use it from the event thread (documented in the header).
unsafe impl Send for UserData {}

#[derive(Clone, Copy)]
struct Subscription {
    id: u64,
    callback: unsafe extern "C" fn(*mut c_void, *const mgha_event),
    user_data: UserData,
}

/// The subscriptions of one engine and the lock that callbacks run under.
#[derive(Default)]
pub struct Events {
    subs: Mutex<Vec<Subscription>>,
    next_id: AtomicU64,
    /// Held by the dispatcher while it calls callbacks: taking it waits for a call to finish.
    dispatching: Mutex<()>,
    thread: OnceLock<ThreadId>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A callback cannot unwind into Rust (an `extern "C"` panic aborts), and every critical
    // section here leaves the data consistent, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Events {
    /// Whether the caller is this engine's event thread (that is, inside one of its callbacks).
    pub fn on_event_thread(&self) -> bool {
        self.thread.get() == Some(&std::thread::current().id())
    }

    fn subscribe(&self, sub: Subscription) -> Result<(), FfiError> {
        let mut subs = lock(&self.subs);
        if subs.len() >= SUBSCRIPTIONS_MAX {
            return Err(FfiError::new(
                mgha_status::MGHA_BUSY,
                format!("{SUBSCRIPTIONS_MAX} subscriptions are already active on this engine"),
            ));
        }
        subs.push(sub);
        Ok(())
    }

    fn unsubscribe(&self, id: u64) -> Result<(), FfiError> {
        let removed = {
            let mut subs = lock(&self.subs);
            let before = subs.len();
            subs.retain(|s| s.id != id);
            subs.len() != before
        };
        if !removed {
            return Err(FfiError::new(mgha_status::MGHA_NOT_FOUND, format!("no subscription {id} on this engine")));
        }
        // Wait for a callback in progress to return. On the event thread itself the lock is
        // already ours (we are inside a callback): the current call finishes after we return.
        if !self.on_event_thread() {
            drop(lock(&self.dispatching));
        }
        Ok(())
    }

    /// Calls every subscribed callback with one event.
    fn deliver(&self, kind: mgha_event_kind, seq: u64, json: &serde_json::Value) {
        // serde_json escapes NUL, so this cannot fail; an empty object stands in if it did.
        let text = CString::new(json.to_string()).unwrap_or_default();
        let event = mgha_event { kind: kind as u32, seq, json: text.as_ptr() };
        let _dispatching = lock(&self.dispatching);
        let ids: Vec<u64> = lock(&self.subs).iter().map(|s| s.id).collect();
        for id in ids {
            // Looked up again for each call: an earlier callback may have unsubscribed it.
            let Some(sub) = lock(&self.subs).iter().find(|s| s.id == id).copied() else { continue };
            // SAFETY: the host registered this function for these events with this user_data;
            // `event` and `text` outlive the call.
            unsafe { (sub.callback)(sub.user_data.0, &event) };
        }
    }
}

/// The peers as `mgha_engine_status_json` shows them: the sync table, with `collision` for
/// every peer whose branch is kept and not resolved yet (whatever its head does meanwhile), so
/// that events and status never disagree.
fn peers(engine: &Engine) -> Vec<PeerStatus> {
    engine.status().map(|s| s.peers).unwrap_or_default()
}

/// What the dispatcher saw last.
struct Seen {
    head: Head,
    node: Option<(Role, u64)>,
    peers: BTreeMap<Uid, SyncStatus>,
}

impl Seen {
    fn now(engine: &Engine) -> Seen {
        Seen {
            head: engine.sync().head(),
            node: engine.node().ok().map(|n| (n.role, n.epoch)),
            peers: peers(engine).into_iter().map(|p| (p.node_id, p.status)).collect(),
        }
    }

    /// Delivers an event for every difference from what was seen last, and remembers the news.
    fn report(&mut self, engine: &Engine, events: &Events) {
        let head = engine.sync().head();
        if head != self.head {
            let body = json!({"seq": head.seq, "id": head.id, "state_hash": head.state_hash,
                "previous_seq": self.head.seq});
            self.head = head;
            events.deliver(mgha_event_kind::MGHA_EVENT_REVISION_APPLIED, head.seq, &body);
        }
        if let Ok(node) = engine.node() {
            let now = (node.role, node.epoch);
            if self.node != Some(now) {
                let body = json!({"role": node.role, "epoch": node.epoch, "name": node.name,
                    "previous_role": self.node.map(|n| n.0), "previous_epoch": self.node.map(|n| n.1)});
                self.node = Some(now);
                events.deliver(mgha_event_kind::MGHA_EVENT_ROLE_CHANGED, head.seq, &body);
            }
        }
        for peer in peers(engine) {
            let previous = self.peers.insert(peer.node_id, peer.status);
            if previous == Some(peer.status) {
                continue;
            }
            let body = json!({"node_id": peer.node_id, "name": peer.name, "status": peer.status,
                "previous_status": previous, "connected": peer.connected, "head_seq": peer.head.seq});
            events.deliver(mgha_event_kind::MGHA_EVENT_SYNC_STATUS_CHANGED, peer.head.seq, &body);
            if peer.status == SyncStatus::Collision {
                events.deliver(mgha_event_kind::MGHA_EVENT_COLLISION, peer.head.seq, &body);
            }
        }
    }
}

/// A running dispatcher thread and the task that wakes it.
pub struct Dispatcher {
    events: Arc<Events>,
    wake: SyncSender<()>,
    thread: JoinHandle<()>,
    forward: tokio::task::JoinHandle<()>,
}

impl Dispatcher {
    pub fn start(engine: &Arc<Engine>, events: Arc<Events>, runtime: &tokio::runtime::Handle) -> std::io::Result<Self> {
        // One pending wake-up is enough: the dispatcher reads the latest state when it wakes.
        let (wake, wakes) = sync_channel::<()>(1);
        let mut heads = engine.sync().subscribe();
        let forward_wake = wake.clone();
        let forward = runtime.spawn(async move {
            while heads.changed().await.is_ok() {
                if let Err(TrySendError::Disconnected(())) = forward_wake.try_send(()) {
                    return;
                }
            }
        });
        let seen = Seen::now(engine);
        let thread_events = events.clone();
        let weak = Arc::downgrade(engine);
        let thread = std::thread::Builder::new()
            .name("mgha-events".into())
            .spawn(move || dispatch(&weak, &thread_events, seen, &wakes))
            .inspect_err(|_| forward.abort())?;
        // Set before the engine handle exists, so before any callback can be subscribed.
        let _ = events.thread.set(thread.thread().id());
        Ok(Dispatcher { events, wake, thread, forward })
    }

    /// Stops the thread after the callback in progress, if any, returns. Not on the event thread.
    pub fn stop(self) {
        self.events.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.try_send(());
        self.forward.abort();
        if self.thread.join().is_err() {
            tracing::error!("the event thread panicked");
        }
    }
}

fn dispatch(engine: &Weak<Engine>, events: &Events, mut seen: Seen, wakes: &Receiver<()>) {
    let poll = Duration::from_millis(EVENT_POLL_MS);
    loop {
        if let Err(RecvTimeoutError::Disconnected) = wakes.recv_timeout(poll) {
            return;
        }
        if events.stop.load(Ordering::SeqCst) {
            return;
        }
        // Held only while reporting: the node alone decides how long the engine lives.
        let Some(engine) = engine.upgrade() else { return };
        seen.report(&engine, events);
    }
}

/// Calls `callback(user_data, event)` on the engine's event thread for every event from now on,
/// until `mgha_engine_unsubscribe` or `mgha_engine_close`.
/// Writes the subscription id (never 0) to `out_subscription`. `user_data` is passed through
/// untouched and may be NULL; the callback must be safe to call with it from the event thread.
///
/// The event thread calls callbacks one at a time, in subscription order. A callback may call
/// any read function and publish on any engine, subscribe and unsubscribe; it must return
/// promptly (events wait behind it, and so does `mgha_engine_close`), must not unwind (a C++
/// exception) into the library, and must not close its own engine: that returns `MGHA_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_subscribe(
    engine: *const mgha_engine,
    callback: mgha_event_callback,
    user_data: *mut c_void,
    out_subscription: *mut u64,
) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        let callback = callback.ok_or_else(|| FfiError::null("callback"))?;
        // SAFETY: `out_subscription` is NULL or writable for the call (API contract).
        let out = unsafe { Out::new(out_subscription, "out_subscription") }?;
        let events = handle.events();
        let id = events.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        events.subscribe(Subscription { id, callback, user_data: UserData(user_data) })?;
        out.set(id);
        Ok(())
    })
}

/// Removes a subscription. On return the callback is not running and will not be called again,
/// except when called from inside a callback of the same engine: then the current callback
/// finishes (it is the caller), and no later event reaches the removed subscription.
/// `MGHA_NOT_FOUND` when there is no such subscription.
#[no_mangle]
pub extern "C" fn mgha_engine_unsubscribe(engine: *const mgha_engine, subscription: u64) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        handle.events().unsubscribe(subscription)
    })
}
