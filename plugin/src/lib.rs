//! mgha-plugin-host: the WebAssembly runtime of mgha plugins. Core (`mgha_core::plugin`) holds the
//! plugin ABI, the checks of what a plugin declares, the registry and the calls' encodings; this
//! crate is the machine under them, wasmtime, configured for determinism and metered (fuel, an
//! epoch deadline, a memory limit). Every front end calls [`install`] once before it opens an
//! engine; docs/plugin-abi.md is the contract a plugin is written against.

mod host;

pub use host::Wasmtime;

/// Installs wasmtime as the process's plugin runtime (idempotent: the first install wins, and
/// every front end installs this same one). The engine itself starts at the first module.
pub fn install() {
    use mgha_core::plugin::runtime;
    if runtime::runtime().is_err() {
        runtime::install(std::sync::Arc::new(Wasmtime));
    }
}
