//! The engine handle: creating a node (`init`, `join`), opening one, and closing it.
//!
//! An open `mgha_engine` owns a tokio multi-thread runtime ([`RUNTIME_WORKERS`] workers) that
//! runs the node's sync runtime (peer listener, dial loops), and an event thread
//! ([`crate::events`]). Two engines in one process are two cluster members on loopback.

use std::ffi::c_char;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use mgha_core::cluster::{init_primary, issue_join_key, join_secondary};
use mgha_core::engine::Engine;
use mgha_core::sync::pki::TlsFiles;
use mgha_core::sync::SyncRuntime;

use crate::args::{text, Out};
use crate::config::EngineConfig;
use crate::error::{mgha_status, FfiError, FfiResult};
use crate::events::{Dispatcher, Events};
use crate::handle::Registry;
use crate::strings::into_c_string;

/// Worker threads of each engine's tokio runtime.
pub const RUNTIME_WORKERS: usize = 2;
/// How long close waits for the sync runtime's tasks to end before leaving them behind.
pub const SHUTDOWN_TIMEOUT_MS: u64 = 5_000;

/// Every live engine handle.
pub static ENGINES: Registry<mgha_engine> = Registry::new("engine");

/// An open node. Opaque to C.
#[allow(non_camel_case_types)]
pub struct mgha_engine {
    /// `None` once closed: sessions that outlive their engine find it gone.
    core: RwLock<Option<Arc<Engine>>>,
    peer_addr: Option<SocketAddr>,
    events: Arc<Events>,
    running: Mutex<Option<Running>>,
    /// Held by the changeover in progress on this handle (see [`crate::roles`]).
    changeover: Mutex<()>,
    /// How long a planned changeover may take (the config's `changeover_timeout_ms`).
    changeover_timeout: Duration,
}

/// What close tears down, in this order.
struct Running {
    dispatcher: Dispatcher,
    sync: Option<SyncRuntime>,
    runtime: tokio::runtime::Runtime,
}

impl mgha_engine {
    /// The core engine, or an error once the handle was closed.
    pub fn core(&self) -> FfiResult<Arc<Engine>> {
        self.core
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| FfiError::invalid("the engine was closed"))
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    pub fn changeover_timeout(&self) -> Duration {
        self.changeover_timeout
    }

    /// The changeover slot of this handle: `None` while another changeover holds it.
    pub fn try_changeover_slot(&self) -> Option<MutexGuard<'_, ()>> {
        match self.changeover.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Runs `f` with the node's sync runtime and the tokio runtime that drives it. Close waits
    /// until `f` returns. Fails for a closed handle, and with `MGHA_CONFLICT` for a node without
    /// certificates (restored from a backup), which has no peers to change roles with.
    pub fn with_sync<T>(&self, f: impl FnOnce(&SyncRuntime, &tokio::runtime::Runtime) -> FfiResult<T>) -> FfiResult<T> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let running = running.as_ref().ok_or_else(|| FfiError::invalid("the engine was closed"))?;
        let sync = running.sync.as_ref().ok_or_else(|| {
            FfiError::new(
                mgha_status::MGHA_CONFLICT,
                "this node has no certificates and runs without peers: there is no other node to change roles with",
            )
        })?;
        f(sync, &running.runtime)
    }

    /// Stops the event thread, then sync, then the runtime, and lets go of the store.
    fn shut_down(&self) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Running { dispatcher, sync, runtime }) = running {
            dispatcher.stop();
            if let Some(sync) = sync {
                let timeout = Duration::from_millis(SHUTDOWN_TIMEOUT_MS);
                let _ = runtime.block_on(async { tokio::time::timeout(timeout, sync.shutdown()).await });
            }
            runtime.shutdown_timeout(Duration::from_millis(SHUTDOWN_TIMEOUT_MS));
        }
        // The last reference closes the store, unless a call on another thread still holds one.
        self.core.write().unwrap_or_else(|p| p.into_inner()).take();
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

/// Starts the runtime, creates or opens the node with `make`, starts sync and events, and
/// registers the handle.
fn launch(
    config: &EngineConfig,
    make: impl FnOnce(&tokio::runtime::Runtime, &str) -> mgha_core::Result<Engine>,
) -> FfiResult<*mut mgha_engine> {
    outside_async_runtime("creating or opening an engine")?;
    let listen = config.require_listen()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_WORKERS)
        .thread_name("mgha-sync")
        .on_thread_start(block_sigpipe)
        .enable_all()
        .build()?;
    let engine = Arc::new(make(&runtime, listen)?);
    if let Some(name) = &config.name {
        let node = engine.node()?;
        if &node.name != name {
            return Err(FfiError::invalid(format!(
                "config: key 'name': the config names node '{name}' but {} holds node '{}'",
                config.data_dir.display(),
                node.name
            )));
        }
    }
    // A node restored from a backup has no certificates (backups hold data, not keys): it
    // serves reads and writes locally, without peers.
    let files = TlsFiles::new(engine.dir());
    let sync = match files.node_cert().exists() {
        true => Some(runtime.block_on(SyncRuntime::start(engine.clone(), files, config.sync_config(listen)))?),
        false => None,
    };
    let events = Arc::new(Events::default());
    let dispatcher = Dispatcher::start(engine.clone(), events.clone(), &runtime)?;
    let handle = mgha_engine {
        core: RwLock::new(Some(engine)),
        peer_addr: sync.as_ref().map(SyncRuntime::local_addr),
        events,
        running: Mutex::new(Some(Running { dispatcher, sync, runtime })),
        changeover: Mutex::new(()),
        changeover_timeout: Duration::from_millis(config.changeover_timeout_ms),
    };
    Ok(ENGINES.insert(Arc::new(handle)))
}

/// Refuses a peer address that cannot be bound before a node is created for it, so that a
/// taken port does not leave a node on disk that never ran; and resolves port 0 to the port it
/// got. A new member announces its address when it joins, and members keep dialing the address
/// they first heard: a node must never be known as `HOST:0`.
fn check_listen(listen: &str) -> FfiResult<String> {
    std::net::TcpListener::bind(listen)
        .and_then(|l| l.local_addr())
        .map(|addr| addr.to_string())
        .map_err(|e| FfiError::invalid(format!("config: key 'listen': cannot listen for peers on {listen}: {e}")))
}

fn config_arg(config_toml: *const c_char) -> FfiResult<EngineConfig> {
    // SAFETY: `config_toml` is NULL or a C string valid for the call (API contract).
    EngineConfig::parse(unsafe { text(config_toml, "config_toml") }?, None)
}

/// Creates a new cluster: a Primary node, Active at epoch 1, with its cluster CA, in the
/// config's `data_dir` (which must not hold a node yet), and starts it.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_init(config_toml: *const c_char, out: *mut *mut mgha_engine) -> mgha_status {
    ffi_boundary!(status: {
        let mut config = config_arg(config_toml)?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        let out = unsafe { Out::new(out, "out") }?;
        config.listen = Some(check_listen(config.require_listen()?)?);
        let name = config.require_name()?;
        let handle = launch(&config, |_, listen| {
            init_primary(&config.data_dir, name, config.member_address(listen), config.engine_options())
        })?;
        out.set(handle);
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
        let mut config = config_arg(config_toml)?;
        // SAFETY (three calls): C strings and an out-parameter valid for the call (API contract).
        let peer = unsafe { text(peer, "peer") }?;
        let key = unsafe { text(key, "key") }?;
        let out = unsafe { Out::new(out, "out") }?;
        config.listen = Some(check_listen(config.require_listen()?)?);
        let name = config.require_name()?;
        let handle = launch(&config, |runtime, listen| {
            // On a runtime thread, not this one: the join talks to the peer (see block_sigpipe).
            let listen = config.member_address(listen).to_owned();
            let (dir, name, peer, key) = (config.data_dir.clone(), name.to_owned(), peer.to_owned(), key.to_owned());
            let options = config.engine_options();
            let join = runtime.spawn(async move { join_secondary(&dir, &name, &peer, &key, &listen, options).await });
            runtime.block_on(join).map_err(|e| mgha_core::Error::Peer(format!("the join task failed: {e}")))?
        })?;
        out.set(handle);
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
        out.set(launch(&config, |_, _| Engine::open(&config.data_dir, config.engine_options()))?);
        Ok(())
    })
}

/// As `mgha_engine_open`, with the config read from the file at `path` (at most 64 KiB); a
/// relative `data_dir` in it is relative to the file's directory.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_open_path(path: *const c_char, out: *mut *mut mgha_engine) -> mgha_status {
    ffi_boundary!(status: {
        // SAFETY (two calls): a C string and an out-parameter valid for the call (API contract).
        let path = unsafe { text(path, "path") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let config = EngineConfig::load(Path::new(path))?;
        out.set(launch(&config, |_, _| Engine::open(&config.data_dir, config.engine_options()))?);
        Ok(())
    })
}

/// Stops the engine (event thread, then peers) and closes its store. NULL is ignored.
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
        handle.core()?;
        let addr = handle.peer_addr.ok_or_else(|| {
            FfiError::new(mgha_status::MGHA_NOT_FOUND, "this node has no certificates and runs without peers")
        })?;
        out.set(into_c_string(addr.to_string())?);
        Ok(())
    })
}

/// Issues a one-time join key valid for `ttl_ms` milliseconds, freed with `mgha_string_free`.
/// Only the Primary (which holds the cluster CA) issues keys.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_join_key(
    engine: *const mgha_engine,
    ttl_ms: u64,
    out_key: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: `out_key` is NULL or writable for the call (API contract).
        let out = unsafe { Out::new(out_key, "out_key") }?;
        if ttl_ms == 0 {
            return Err(FfiError::invalid("ttl_ms is 0: the key would expire at once"));
        }
        out.set(into_c_string(issue_join_key(&core, ttl_ms)?.to_string())?);
        Ok(())
    })
}
