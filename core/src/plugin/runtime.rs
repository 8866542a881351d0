//! The seam between plugins and the machine that runs them. Core knows the plugin ABI (what a
//! module must export, the encodings of its calls and answers, the limits a call runs under) but
//! not WebAssembly itself: a [`WasmRuntime`] compiles modules and runs their calls, and the crate
//! `mgha-plugin-host` provides the one that every front end installs (wasmtime). A program that
//! installs none loads no plugin: every module is refused with [`NO_RUNTIME`].

use std::sync::{Arc, OnceLock};

use super::limits::PluginLimits;
use crate::model::Hash;

/// Why a module is refused by a program that installed no runtime.
pub const NO_RUNTIME: &str = "this program runs no WebAssembly plugins (it installed no plugin runtime)";

/// The calls of the plugin ABI (docs/plugin-abi.md), besides the version query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Describe,
    Validate,
    Merge,
}

impl Call {
    /// The call's name in refusals and logs.
    pub fn name(self) -> &'static str {
        match self {
            Call::Describe => "describe",
            Call::Validate => "validate",
            Call::Merge => "merge",
        }
    }
}

/// Compiles modules. Every failure is a reason string; core names the plugin and the call.
pub trait WasmRuntime: Send + Sync + 'static {
    /// Checks a module (size, magic, imports limited to the host namespace, the ABI's exports)
    /// and compiles it, or takes it from a cache.
    fn compile(&self, wasm: &[u8]) -> Result<Arc<dyn CompiledModule>, String>;
}

/// A module that passed the runtime's checks, ready to be instantiated.
pub trait CompiledModule: Send + Sync {
    /// blake3 of the module's bytes.
    fn hash(&self) -> Hash;
    /// A new instance whose log lines name `plugin`; its start function runs under `limits`.
    fn instantiate(&self, plugin: Arc<str>, limits: &PluginLimits) -> Result<Box<dyn ModuleInstance>, String>;
}

/// A live instance. Calls are sequential (`&mut`); core keeps a small pool per plugin.
pub trait ModuleInstance: Send {
    /// The ABI version the module says it speaks.
    fn abi_version(&mut self, limits: &PluginLimits) -> Result<i32, String>;
    /// Runs one call under `limits`: `input` goes into the plugin's memory, the answer (at most
    /// `output_max` bytes) into `answer`.
    fn call(
        &mut self,
        call: Call,
        input: &[u8],
        limits: &PluginLimits,
        output_max: usize,
        answer: &mut Vec<u8>,
    ) -> Result<(), String>;
}

static RUNTIME: OnceLock<Arc<dyn WasmRuntime>> = OnceLock::new();

/// Installs the process's plugin runtime. The first call wins; later ones change nothing (every
/// front end installs the same one) and return `false`.
pub fn install(runtime: Arc<dyn WasmRuntime>) -> bool {
    RUNTIME.set(runtime).is_ok()
}

/// The installed runtime, or why there is none.
pub fn runtime() -> Result<&'static Arc<dyn WasmRuntime>, String> {
    RUNTIME.get().ok_or_else(|| NO_RUNTIME.to_string())
}
