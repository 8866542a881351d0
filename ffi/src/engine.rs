//! The engine handle: creating a node (`init`, `join`), opening one, and closing it.
//!
//! An open `mgha_engine` is a [`Node`] of the node library (the same node `mgha run` serves:
//! synchronization, automatic failover, the one configuration parser) with an event thread
//! ([`crate::events`]) for the host's callbacks. Its tokio runtime has [`RUNTIME_WORKERS`]
//! workers. Two engines in one process are two cluster members on loopback.
//!
//! A handle is bound to one domain of its node: the node's own handle to the global domain,
//! a handle from `mgha_engine_domain` ([`crate::domains`]) to the domain it names. The store,
//! role and event calls act on the handle's domain; the calls about the node itself (peers,
//! join keys, members) act on the node whichever handle they are given.

use std::ffi::c_char;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use mgha_core::engine::Engine;
use mgha_node::{Node, NodeConfig, RuntimeOptions};

use crate::args::{text, Out};
use crate::error::{mgha_status, FfiError, FfiResult};
use crate::events::{Dispatcher, Events};
use crate::handle::Registry;
use crate::strings::into_c_string;

/// Worker threads of each engine's tokio runtime.
pub const RUNTIME_WORKERS: usize = 2;

/// Every live engine handle.
pub static ENGINES: Registry<mgha_engine> = Registry::new("engine");

/// An open node, or one domain of it. Opaque to C.
#[allow(non_camel_case_types)]
pub struct mgha_engine {
    node: Arc<Node>,
    /// `None`: the node's own handle, on the global domain; closing it stops the node.
    /// `Some`: a handle from `mgha_engine_domain`; closing it closes only the handle.
    domain: Option<Bound>,
    events: Arc<Events>,
    /// `None` once closed.
    dispatcher: Mutex<Option<Dispatcher>>,
    /// Set by close. The node's own handle needs no flag (its node is shut down), but a domain
    /// handle's node lives on, and the sessions begun on the handle must end with it.
    closed: AtomicBool,
}

/// The domain replica a domain handle was made for. Held weakly: the node owns its replicas,
/// and a replica the node let go of (the domain deleted or moved away) must not stay open
/// because a handle still names it.
pub struct Bound {
    name: String,
    engine: Weak<Engine>,
}

impl mgha_engine {
    /// The core engine of the handle's domain, or an error once the node was closed
    /// (`MGHA_INVALID_ARGUMENT`) or the domain is no longer held here (`MGHA_NOT_FOUND`).
    pub fn core(&self) -> FfiResult<Arc<Engine>> {
        let global = self.global()?;
        let Some(bound) = &self.domain else {
            return Ok(global);
        };
        let engine = self.node.domain(&bound.name).map_err(closed_or)?;
        // The replica open now must be the one the handle was made for: a domain deleted and
        // created again under the same name is another domain.
        if Arc::as_ptr(&engine) != bound.engine.as_ptr() {
            return Err(FfiError::new(
                mgha_status::MGHA_NOT_FOUND,
                format!(
                    "the replica of domain '{}' this handle was made for is no longer held here (the domain was \
                     deleted or its replica moved); close this handle and ask mgha_engine_domain again",
                    bound.name
                ),
            ));
        }
        Ok(engine)
    }

    /// The global domain's engine, whichever domain the handle is on: what the calls about the
    /// node itself (members, join keys, promotion) read.
    pub fn global(&self) -> FfiResult<Arc<Engine>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(FfiError::invalid("the engine was closed"));
        }
        self.node.engine().map_err(closed_or)
    }

    /// The engine the handle was made for while it is still open somewhere, closed handle or not:
    /// what releases a session begun on the handle (its locks live in that engine).
    pub(crate) fn engine_to_release(&self) -> Option<Arc<Engine>> {
        match &self.domain {
            None => self.node.engine().ok(),
            Some(bound) => bound.engine.upgrade(),
        }
    }

    /// The name of the handle's domain (`global` for the node's own handle).
    pub fn domain_name(&self) -> &str {
        self.domain.as_ref().map_or(mgha_node::domains::GLOBAL_DOMAIN, |b| b.name.as_str())
    }

    /// The node behind the handle.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Stops the event thread, then, for the node's own handle, the node (failover, peers,
    /// every task of its runtime), letting go of its stores.
    fn shut_down(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(dispatcher) = self.dispatcher.lock().unwrap_or_else(|p| p.into_inner()).take() {
            dispatcher.stop();
        }
        if self.domain.is_none() {
            self.node.shutdown();
        }
    }

    /// A new handle on the domain `name` of this handle's node, with an event thread of its own.
    pub(crate) fn for_domain(&self, name: &str) -> FfiResult<mgha_engine> {
        self.global()?;
        let engine = self.node.domain(name).map_err(closed_or)?;
        let events = Arc::new(Events::default());
        let dispatcher = Dispatcher::start(&engine, events.clone(), self.node.handle())?;
        Ok(mgha_engine {
            node: self.node.clone(),
            domain: Some(Bound { name: name.to_string(), engine: Arc::downgrade(&engine) }),
            events,
            dispatcher: Mutex::new(Some(dispatcher)),
            closed: AtomicBool::new(false),
        })
    }
}

/// A node error as a handle's caller sees it: a closed node is a closed handle.
fn closed_or(e: mgha_node::Error) -> FfiError {
    match e {
        mgha_node::Error::Closed => FfiError::invalid("the engine was closed"),
        other => other.into(),
    }
}

/// The core engine behind a handle.
pub fn core_of(engine: *const mgha_engine) -> FfiResult<Arc<Engine>> {
    ENGINES.get(engine)?.core()
}

/// Blocks SIGPIPE in the calling thread, one of an engine's runtime threads, which do all its
/// network writes. A write to a peer that closed its end then fails with EPIPE, as the sync code
/// expects, instead of raising SIGPIPE, whose default action would kill a C host that kept it
/// (Rust programs ignore it; C programs do not). The host's own threads and its signal
/// disposition are left alone.
fn block_sigpipe() {
    #[cfg(unix)]
    {
        // SAFETY: `set` is a local signal set, initialised by sigemptyset before it is read;
        // pthread_sigmask changes only the calling thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
    }
}

/// Refuses a call from inside a tokio runtime (a Rust host's async code): starting or stopping
/// an engine's own runtime there would panic.
pub(crate) fn outside_async_runtime(what: &str) -> FfiResult<()> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Err(FfiError::new(
            mgha_status::MGHA_BUSY,
            format!("{what} was called from inside a tokio runtime; call it from a plain thread"),
        )),
        Err(_) => Ok(()),
    }
}

/// The runtime an engine's node runs on: a few named workers that never take SIGPIPE.
fn runtime_options() -> RuntimeOptions {
    RuntimeOptions {
        worker_threads: Some(RUNTIME_WORKERS),
        thread_name: "mgha-sync",
        on_thread_start: Some(block_sigpipe),
    }
}

/// Starts the node that `make` created or opened, and its event thread, and registers the
/// handle. A node that fails to start is shut down before the error returns.
fn launch(make: impl FnOnce() -> mgha_node::Result<Node>) -> FfiResult<*mut mgha_engine> {
    outside_async_runtime("creating or opening an engine")?;
    let node = Arc::new(make()?);
    node.start()?;
    let events = Arc::new(Events::default());
    let dispatcher = Dispatcher::start(&node.engine()?, events.clone(), node.handle())?;
    let handle = mgha_engine {
        node,
        domain: None,
        events,
        dispatcher: Mutex::new(Some(dispatcher)),
        closed: AtomicBool::new(false),
    };
    Ok(ENGINES.insert(Arc::new(handle)))
}

fn config_arg(config_toml: *const c_char) -> FfiResult<NodeConfig> {
    // SAFETY: `config_toml` is NULL or a C string valid for the call (API contract).
    Ok(NodeConfig::parse(unsafe { text(config_toml, "config_toml") }?)?)
}

/// Creates a new cluster: a Primary node, Active at epoch 1, with its cluster CA, in the
/// config's `data_dir` (which must not hold a node yet), and starts it.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_init(config_toml: *const c_char, out: *mut *mut mgha_engine) -> mgha_status {
    ffi_boundary!(status: {
        let config = config_arg(config_toml)?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        let out = unsafe { Out::new(out, "out") }?;
        out.set(launch(|| Node::init(config, runtime_options()))?);
        Ok(())
    })
}

/// Joins the cluster of the node at `peer` (its peer address, `HOST:PORT`) with a one-time
/// join `key`, creating a Secondary node, Standby, in the config's `data_dir`, and starts it.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_join(
    config_toml: *const c_char,
    peer: *const c_char,
    key: *const c_char,
    out: *mut *mut mgha_engine,
) -> mgha_status {
    ffi_boundary!(status: {
        let config = config_arg(config_toml)?;
        // SAFETY (three calls): C strings and an out-parameter valid for the call (API contract).
        let peer = unsafe { text(peer, "peer") }?;
        let key = unsafe { text(key, "key") }?;
        let out = unsafe { Out::new(out, "out") }?;
        out.set(launch(|| Node::join(config, peer, key, runtime_options()))?);
        Ok(())
    })
}

/// Opens the existing node in the config's `data_dir` and starts it. When the config has a
/// `name`, it must be the node's.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_open(config_toml: *const c_char, out: *mut *mut mgha_engine) -> mgha_status {
    ffi_boundary!(status: {
        let config = config_arg(config_toml)?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        let out = unsafe { Out::new(out, "out") }?;
        out.set(launch(|| Node::open(config, runtime_options()))?);
        Ok(())
    })
}

/// As `mgha_engine_open`, with the config read from the file at `path`: a regular file of at
/// most 64 KiB (a FIFO, a device or a directory is refused at once). `data_dir` defaults to the
/// file's directory (so a daemon's `DIR/mgha.toml` opens its node), and a relative one is
/// relative to it.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_open_path(path: *const c_char, out: *mut *mut mgha_engine) -> mgha_status {
    ffi_boundary!(status: {
        // SAFETY (two calls): a C string and an out-parameter valid for the call (API contract).
        let path = unsafe { text(path, "path") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let config = NodeConfig::load_file(Path::new(path))?;
        out.set(launch(|| Node::open(config, runtime_options()))?);
        Ok(())
    })
}

/// Stops the engine (event thread, then peers) and closes its store. NULL is ignored.
///
/// On a handle from `mgha_engine_domain`, closes only that handle (its event thread; its
/// subscriptions end): the node and its other handles go on. Closing the node's own handle
/// stops the node: calls on its domain handles then fail with `MGHA_INVALID_ARGUMENT`, and each
/// must still be closed.
///
/// Returns `MGHA_BUSY`, closing nothing, when called from an event callback of this engine (the
/// event thread cannot wait for itself), and `MGHA_INVALID_ARGUMENT` for a handle that is not
/// live (already closed). Sessions of the engine stay allocated until freed; their calls fail.
#[no_mangle]
pub extern "C" fn mgha_engine_close(engine: *mut mgha_engine) -> mgha_status {
    ffi_boundary!(status: {
        if engine.is_null() {
            return Ok(());
        }
        let handle = ENGINES.get(engine)?;
        outside_async_runtime("mgha_engine_close")?;
        if handle.events.on_event_thread() {
            return Err(FfiError::new(
                mgha_status::MGHA_BUSY,
                "mgha_engine_close was called from an event callback of the same engine; close it from another thread",
            ));
        }
        // Whoever removes the handle closes it; a concurrent second close finds it gone.
        ENGINES.remove(engine).ok_or_else(|| ENGINES.not_live())?;
        handle.shut_down();
        Ok(())
    })
}

/// The address the engine listens on for peers (the port chosen for `listen = "...:0"`), as a
/// string freed with `mgha_string_free`. `MGHA_NOT_FOUND` for a node without certificates (one
/// restored from a backup), which runs without peers.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_peer_addr(engine: *const mgha_engine, out: *mut *mut c_char) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        let out = unsafe { Out::new(out, "out") }?;
        handle.global()?;
        let addr = handle.node.peer_addr().ok_or_else(|| {
            FfiError::new(mgha_status::MGHA_NOT_FOUND, "this node has no certificates and runs without peers")
        })?;
        out.set(into_c_string(addr.to_string())?);
        Ok(())
    })
}

/// Issues a one-time join key valid for `ttl_ms` milliseconds (1 to 30 days' worth), freed with
/// `mgha_string_free`. Only the Primary (which holds the cluster CA) issues keys.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_join_key(
    engine: *const mgha_engine,
    ttl_ms: u64,
    out_key: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        // SAFETY: `out_key` is NULL or writable for the call (API contract).
        let out = unsafe { Out::new(out_key, "out_key") }?;
        out.set(into_c_string(handle.node.join_key(ttl_ms)?.key)?);
        Ok(())
    })
}

/// The current members this node knows, itself included, as a JSON object
/// `{"members": [{"name", "node_id", "listen", "designation"}]}` sorted by name, freed with
/// `mgha_string_free`. Every node ends with the same list.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_members_json(engine: *const mgha_engine, out: *mut *mut c_char) -> mgha_status {
    ffi_boundary!(status: {
        let global = ENGINES.get(engine)?.global()?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        let out = unsafe { Out::new(out, "out") }?;
        out.set(crate::strings::json_c_string(&mgha_node::contract::MemberList::of(&global)?)?);
        Ok(())
    })
}

/// Removes the member named `name` from the cluster, on the Active: every node refuses its
/// certificate from then on, and its name is free for a node that joins with a new key.
/// `MGHA_NOT_FOUND`: no current member has that name. `MGHA_CONFLICT`: it is this Active itself
/// (change over first). `MGHA_READ_ONLY`: this node is not the Active.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_member_remove(engine: *const mgha_engine, name: *const c_char) -> mgha_status {
    ffi_boundary!(status: {
        let handle = ENGINES.get(engine)?;
        // SAFETY: a C string valid for the call (API contract).
        let name = unsafe { text(name, "name") }?;
        outside_async_runtime("mgha_engine_member_remove")?;
        let node = handle.node();
        let removed = node.block_on(node.remove_member(name))??;
        tracing::warn!(member = %removed.name, node = %removed.node_id, "member removed");
        Ok(())
    })
}
