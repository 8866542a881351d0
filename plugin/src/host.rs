//! The WebAssembly host: one process-wide wasmtime engine, the linker built from the one table of
//! host functions, the compiled-module cache keyed by content hash, and [`Instance`], which runs
//! one call at a time under fuel, an epoch deadline and a memory limit.
//!
//! The engine is configured for determinism (NaN canonicalization, deterministic relaxed SIMD,
//! no threads) and metered with fuel; a thread advances its epoch every [`EPOCH_TICK_MS`] so
//! that a wall-clock deadline backs fuel up. Everything that can go wrong in a call comes back as
//! a reason string; core's `plugin::loaded` names the plugin and the call around it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use wasmtime::{
    Caller, Config, Engine, ExternType, InstancePre, Linker, Memory, Module, OptLevel, ResourceLimiter, Store,
    StoreLimits, StoreLimitsBuilder, Trap, TypedFunc,
};

use mgha_core::model::Hash;
use mgha_core::plugin::abi::{export, HOST_NAMESPACE};
use mgha_core::plugin::limits::{
    PluginLimits, EPOCH_TICK_MS, PLUGIN_LOG_LINES_PER_CALL_MAX, PLUGIN_LOG_LINE_BYTES_MAX, PLUGIN_MODULES_CACHED_MAX,
    PLUGIN_MODULE_BYTES_MAX, PLUGIN_STACK_BYTES_MAX,
};
use mgha_core::plugin::runtime::{Call, CompiledModule, ModuleInstance, WasmRuntime};

/// The per-instance state wasmtime hands to host functions and the resource limiter.
struct CallState {
    plugin: Arc<str>,
    limiter: Limiter,
    log_lines: u32,
}

/// [`StoreLimits`], plus a note of whether it refused memory, so that the trap that follows is
/// reported as what it is: out of memory.
struct Limiter {
    inner: StoreLimits,
    memory_denied: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.memory_denied = true;
        }
        allowed
    }
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_denied = true;
        self.inner.memory_grow_failed(error)
    }
    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }
    fn instances(&self) -> usize {
        self.inner.instances()
    }
    fn tables(&self) -> usize {
        self.inner.tables()
    }
    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// One function a plugin may import from [`HOST_NAMESPACE`].
struct HostFunction {
    name: &'static str,
    /// As docs/plugin-abi.md writes it, for refusals.
    signature: &'static str,
    link: fn(&mut Linker<CallState>, &str, &str) -> wasmtime::Result<()>,
}

/// Every host function. The linker registers exactly these, and a module that imports anything
/// else is refused at check: adding a function here is an ABI change (a new namespace version).
const HOST_FUNCTIONS: &[HostFunction] =
    &[HostFunction { name: "log", signature: "(i32, i32, i32) -> ()", link: link_log }];

fn link_log(linker: &mut Linker<CallState>, module: &str, name: &str) -> wasmtime::Result<()> {
    linker.func_wrap(module, name, host_log)?;
    Ok(())
}

/// `log(level, ptr, len)`: a UTF-8 line from the plugin's memory into the node's log. It never
/// traps and has no effect on answers, so it cannot break determinism; lines past the per-call
/// budget, or pointing outside memory, are dropped.
fn host_log(mut caller: Caller<'_, CallState>, level: i32, ptr: i32, len: i32) {
    if caller.data().log_lines >= PLUGIN_LOG_LINES_PER_CALL_MAX {
        return;
    }
    caller.data_mut().log_lines += 1;
    let Some(memory) = caller.get_export(export::MEMORY).and_then(|e| e.into_memory()) else {
        return;
    };
    let start = ptr as u32 as usize;
    let len = (len as u32 as usize).min(PLUGIN_LOG_LINE_BYTES_MAX);
    let Some(bytes) = memory.data(&caller).get(start..start.saturating_add(len)) else {
        return;
    };
    let line = String::from_utf8_lossy(bytes);
    let plugin = &*caller.data().plugin;
    match level {
        0 => tracing::error!(plugin, "{line}"),
        1 => tracing::warn!(plugin, "{line}"),
        2 => tracing::info!(plugin, "{line}"),
        3 => tracing::debug!(plugin, "{line}"),
        _ => tracing::trace!(plugin, "{line}"),
    }
}

/// The process-wide engine, linker and module cache.
struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    modules: Mutex<HashMap<Hash, Arc<Compiled>>>,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

fn runtime() -> Result<&'static Runtime, String> {
    RUNTIME.get_or_init(new_runtime).as_ref().map_err(Clone::clone)
}

fn new_runtime() -> Result<Runtime, String> {
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        // Floats may be used inside a plugin; their only platform-dependent bits are NaNs'.
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .max_wasm_stack(PLUGIN_STACK_BYTES_MAX)
        .cranelift_opt_level(OptLevel::Speed);
    let engine = Engine::new(&config).map_err(|e| format!("the WebAssembly engine cannot start: {e:#}"))?;
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("mgha-plugin-epoch".into())
        .spawn(move || {
            // Ends with the engine, which lives as long as the process.
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
            }
        })
        .map_err(|e| format!("the plugin deadline clock cannot start: {e}"))?;
    let mut linker = Linker::new(&engine);
    for f in HOST_FUNCTIONS {
        (f.link)(&mut linker, HOST_NAMESPACE, f.name).map_err(|e| format!("host function {}: {e:#}", f.name))?;
    }
    Ok(Runtime { engine, linker, modules: Mutex::new(HashMap::new()) })
}

/// A module compiled, checked against the ABI's imports and exports, and linked.
struct Compiled {
    hash: Hash,
    pre: InstancePre<CallState>,
}

/// Checks and compiles a module, or takes it from the cache; the error says why it is refused.
fn compile(bytes: &[u8]) -> Result<Arc<Compiled>, String> {
    if bytes.len() > PLUGIN_MODULE_BYTES_MAX {
        return Err(format!("the module is {} bytes, over the limit of {PLUGIN_MODULE_BYTES_MAX}", bytes.len()));
    }
    if !bytes.starts_with(b"\0asm") {
        return Err("not a WebAssembly module (it does not start with \\0asm)".into());
    }
    if bytes.get(4..8) != Some(&[1, 0, 0, 0]) {
        return Err("not a core WebAssembly module of version 1 (components are not supported)".into());
    }
    let rt = runtime()?;
    let hash = Hash::of(bytes);
    if let Some(found) = lock(&rt.modules).get(&hash) {
        return Ok(found.clone());
    }
    let module = Module::from_binary(&rt.engine, bytes).map_err(|e| format!("invalid WebAssembly: {e:#}"))?;
    check_imports(&module)?;
    check_exports(&module)?;
    let pre = rt.linker.instantiate_pre(&module).map_err(|e| format!("cannot link: {e:#}"))?;
    let compiled = Arc::new(Compiled { hash, pre });
    let mut modules = lock(&rt.modules);
    if modules.len() >= PLUGIN_MODULES_CACHED_MAX {
        // Any entry will do: a module evicted while in use stays alive through its plugin's Arc.
        if let Some(old) = modules.keys().next().copied() {
            modules.remove(&old);
        }
    }
    modules.insert(hash, compiled.clone());
    Ok(compiled)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The cache is a plain map, consistent between statements even after a panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn check_imports(module: &Module) -> Result<(), String> {
    let allowed = || HOST_FUNCTIONS.iter().map(|f| format!("{HOST_NAMESPACE}.{}", f.name)).collect::<Vec<_>>();
    for import in module.imports() {
        let (m, n) = (import.module(), import.name());
        if m.starts_with("wasi") {
            return Err(format!(
                "imports {m}.{n}: WASI is not available to plugins (build for wasm32-unknown-unknown)"
            ));
        }
        let Some(f) = HOST_FUNCTIONS.iter().find(|f| m == HOST_NAMESPACE && n == f.name) else {
            return Err(format!("imports {m}.{n}: plugins may import only {}", allowed().join(", ")));
        };
        match import.ty() {
            ExternType::Func(ty) if signature(&ty) == f.signature => {}
            _ => return Err(format!("imports {m}.{n} with the wrong type: it is a function {}", f.signature)),
        }
    }
    Ok(())
}

/// The exports the host calls, with their signatures.
const EXPORTS: &[(&str, &str)] = &[
    (export::ABI_VERSION, "() -> (i32)"),
    (export::ALLOC, "(i32) -> (i32)"),
    (export::FREE, "(i32, i32) -> ()"),
    (export::DESCRIBE, "() -> (i64)"),
    (export::VALIDATE, "(i32, i32) -> (i64)"),
    (export::MERGE, "(i32, i32) -> (i64)"),
];

fn check_exports(module: &Module) -> Result<(), String> {
    match module.get_export(export::MEMORY) {
        Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => {}
        Some(_) => return Err(format!("export '{}' is not a 32-bit unshared memory", export::MEMORY)),
        None => return Err(format!("no export '{}'", export::MEMORY)),
    }
    for (name, want) in EXPORTS {
        match module.get_export(name) {
            Some(ExternType::Func(ty)) if signature(&ty) == *want => {}
            Some(ExternType::Func(ty)) => {
                return Err(format!("export '{name}' is {}, the ABI says {want}", signature(&ty)));
            }
            _ => return Err(format!("no function export '{name}' {want}")),
        }
    }
    Ok(())
}

fn signature(ty: &wasmtime::FuncType) -> String {
    let list =
        |it: &mut dyn Iterator<Item = wasmtime::ValType>| it.map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
    format!("({}) -> ({})", list(&mut ty.params()), list(&mut ty.results()))
}

/// A live instance of a plugin: its store, memory and exports. Calls on one instance are
/// sequential (it is `&mut`); a plugin keeps a small pool of them for concurrent callers.
struct Instance {
    store: Store<CallState>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    free: TypedFunc<(i32, i32), ()>,
    abi_version: TypedFunc<(), i32>,
    describe: TypedFunc<(), i64>,
    validate: TypedFunc<(i32, i32), i64>,
    merge: TypedFunc<(i32, i32), i64>,
}

impl Instance {
    /// Instantiates a compiled module; its start function (if any) runs under the call limits.
    fn new(compiled: &Compiled, plugin: Arc<str>, limits: &PluginLimits) -> Result<Instance, String> {
        let rt = runtime()?;
        let inner = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes_max())
            .memories(1)
            .instances(1)
            .tables(4)
            .table_elements(100_000)
            .trap_on_grow_failure(true)
            .build();
        let state = CallState { plugin, limiter: Limiter { inner, memory_denied: false }, log_lines: 0 };
        let mut store = Store::new(&rt.engine, state);
        store.limiter(|s| &mut s.limiter);
        arm(&mut store, limits)?;
        let instance = match compiled.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => return Err(format!("cannot instantiate: {}", failure(&store, &e, limits))),
        };
        let memory = instance.get_memory(&mut store, export::MEMORY).ok_or("no memory export")?;
        macro_rules! func {
            ($name:expr) => {
                instance.get_typed_func(&mut store, $name).map_err(|e| format!("export {}: {e:#}", $name))?
            };
        }
        Ok(Instance {
            alloc: func!(export::ALLOC),
            free: func!(export::FREE),
            abi_version: func!(export::ABI_VERSION),
            describe: func!(export::DESCRIBE),
            validate: func!(export::VALIDATE),
            merge: func!(export::MERGE),
            memory,
            store,
        })
    }

    fn call_armed(&mut self, call: Call, input: &[u8], output_max: usize, answer: &mut Vec<u8>) -> Result<(), Fault> {
        let len = i32::try_from(input.len()).map_err(|_| Fault::Abi("input over 2 GiB".into()))?;
        let ptr = if input.is_empty() {
            0
        } else {
            let ptr = self.alloc.call(&mut self.store, len)?;
            if ptr == 0 {
                return Err(Fault::Abi(format!("{} returned 0 for {len} bytes", export::ALLOC)));
            }
            self.memory.write(&mut self.store, ptr as u32 as usize, input).map_err(|_| {
                Fault::Abi(format!("{} returned {ptr:#x}, outside linear memory, for {len} bytes", export::ALLOC))
            })?;
            ptr
        };
        let packed = match call {
            Call::Describe => self.describe.call(&mut self.store, ())?,
            Call::Validate => self.validate.call(&mut self.store, (ptr, len))?,
            Call::Merge => self.merge.call(&mut self.store, (ptr, len))?,
        };
        let (out_ptr, out_len) = ((packed as u64 >> 32) as usize, (packed as u64 & 0xffff_ffff) as usize);
        if out_len > output_max {
            return Err(Fault::Abi(format!("answer of {out_len} bytes, over the limit of {output_max}")));
        }
        answer.clear();
        match self.memory.data(&self.store).get(out_ptr..out_ptr + out_len) {
            Some(bytes) => answer.extend_from_slice(bytes),
            None => {
                return Err(Fault::Abi(format!("answer at {out_ptr:#x}+{out_len} lies outside linear memory")));
            }
        }
        if out_len > 0 {
            self.free.call(&mut self.store, (out_ptr as i32, out_len as i32))?;
        }
        if len > 0 {
            self.free.call(&mut self.store, (ptr, len))?;
        }
        Ok(())
    }
}

impl ModuleInstance for Instance {
    fn abi_version(&mut self, limits: &PluginLimits) -> Result<i32, String> {
        arm(&mut self.store, limits)?;
        self.abi_version.call(&mut self.store, ()).map_err(|e| failure(&self.store, &e, limits))
    }

    /// Copies `input` into the plugin's memory, calls the export, copies the answer (at most
    /// `output_max` bytes) into `answer` and frees both buffers in the plugin.
    fn call(
        &mut self,
        call: Call,
        input: &[u8],
        limits: &PluginLimits,
        output_max: usize,
        answer: &mut Vec<u8>,
    ) -> Result<(), String> {
        arm(&mut self.store, limits)?;
        let result = self.call_armed(call, input, output_max, answer);
        result.map_err(|e| match e {
            Fault::Wasm(e) => failure(&self.store, &e, limits),
            Fault::Abi(reason) => reason,
        })
    }
}

/// Why a call failed: in the module, or against the ABI's conventions.
enum Fault {
    Wasm(wasmtime::Error),
    Abi(String),
}

impl From<wasmtime::Error> for Fault {
    fn from(e: wasmtime::Error) -> Fault {
        Fault::Wasm(e)
    }
}

/// Refuels and re-arms the deadline: every call starts with the full budget.
fn arm(store: &mut Store<CallState>, limits: &PluginLimits) -> Result<(), String> {
    store.set_fuel(limits.fuel_per_call).map_err(|e| format!("cannot set fuel: {e:#}"))?;
    store.set_epoch_deadline(limits.deadline_ticks());
    let state = store.data_mut();
    state.log_lines = 0;
    state.limiter.memory_denied = false;
    Ok(())
}

/// Says which limit a failed call hit, or what trapped.
fn failure(store: &Store<CallState>, e: &wasmtime::Error, limits: &PluginLimits) -> String {
    if store.data().limiter.memory_denied {
        return format!("out of memory: the limit is {} MiB", limits.memory_bytes_max() >> 20);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => format!("ran out of fuel: the limit is {} per call", limits.fuel_per_call),
        Some(Trap::Interrupt) => format!("timed out: the limit is {} ms per call", limits.call_timeout_ms),
        Some(Trap::UnreachableCodeReached) => "trapped: unreachable executed (a panic or an abort)".into(),
        Some(trap) => format!("trapped: {trap}"),
        None => format!("failed: {e:#}"),
    }
}

impl CompiledModule for Compiled {
    fn hash(&self) -> Hash {
        self.hash
    }

    fn instantiate(&self, plugin: Arc<str>, limits: &PluginLimits) -> Result<Box<dyn ModuleInstance>, String> {
        Ok(Box::new(Instance::new(self, plugin, limits)?))
    }
}

/// The wasmtime runtime: one process-wide engine and module cache.
#[derive(Debug, Default)]
pub struct Wasmtime;

impl WasmRuntime for Wasmtime {
    fn compile(&self, wasm: &[u8]) -> Result<Arc<dyn CompiledModule>, String> {
        let compiled: Arc<dyn CompiledModule> = compile(wasm)?;
        Ok(compiled)
    }
}
