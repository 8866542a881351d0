//! WebAssembly plugins (docs/plugin-abi.md): check a module without installing it, install or
//! upgrade one, list what is installed, remove one. Install and remove are ordinary publishes
//! of the replicated `plugin` object: they need the Active and replicate like any revision.
//!
//! A plugin's description crosses as JSON `{"name", "version", "hash", "module_bytes",
//! "type_names", "types", "merge", "uid"?, "error"?}` (`mgha_core::plugin::PluginInfo`). A module
//! the engine refuses (it does not compile, imports more than the host namespace, speaks another
//! ABI version, describes itself badly, traps) is `MGHA_VALIDATION`, the message naming why.

use std::ffi::c_char;

use mgha_core::plugin::{Plugin, PluginInfo, PluginLimits};

use crate::args::{bytes, text, Out};
use crate::engine::{core_of, mgha_engine};
use crate::error::mgha_status;
use crate::strings::json_c_string;

/// Checks the `len` bytes of a WebAssembly module at `wasm` as install would, with the default
/// limits, and writes what it declares as JSON to `out_json`. Nothing is installed; no engine
/// is needed.
#[no_mangle]
pub unsafe extern "C" fn mgha_plugin_check(wasm: *const u8, len: usize, out_json: *mut *mut c_char) -> mgha_status {
    ffi_boundary!(status: {
        // SAFETY (two calls): `len` readable bytes and an out-parameter valid for the call.
        let wasm = unsafe { bytes(wasm, len, "wasm") }?;
        let out = unsafe { Out::new(out_json, "out_json") }?;
        mgha_plugin_host::install();
        let plugin = Plugin::load(wasm, PluginLimits::default())?;
        out.set(json_c_string(&PluginInfo::of(&plugin, None))?);
        Ok(())
    })
}

/// Installs the module at `wasm` (`len` bytes), or upgrades the installed plugin of the same
/// name, as one revision by `author`, written to `out_seq`. Installing the module that is
/// already installed changes nothing: `MGHA_VALIDATION` ("nothing to publish").
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_plugin_install(
    engine: *const mgha_engine,
    author: *const c_char,
    wasm: *const u8,
    len: usize,
    out_seq: *mut u64,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY (three calls): a C string, `len` readable bytes and an out-parameter valid for
        // the call (API contract).
        let author = unsafe { text(author, "author") }?;
        let wasm = unsafe { bytes(wasm, len, "wasm") }?;
        let out = unsafe { Out::new(out_seq, "out_seq") }?;
        out.set(core.plugin_install(author, wasm)?.seq);
        Ok(())
    })
}

/// Every installed plugin, by name, as a JSON array of descriptions; one this node could not
/// load carries the reason in `error`.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_plugin_list_json(
    engine: *const mgha_engine,
    out: *mut *mut c_char,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: `out` is NULL or writable for the call (API contract).
        let out = unsafe { Out::new(out, "out") }?;
        out.set(json_c_string(&core.plugin_list()?)?);
        Ok(())
    })
}

/// Removes the plugin `name` as one revision by `author`, written to `out_seq`. Refused
/// (`MGHA_VALIDATION`, naming a few) while objects of its types exist; `MGHA_NOT_FOUND` when no
/// such plugin is installed.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_plugin_remove(
    engine: *const mgha_engine,
    author: *const c_char,
    name: *const c_char,
    out_seq: *mut u64,
) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY (three calls): C strings and an out-parameter valid for the call (API contract).
        let author = unsafe { text(author, "author") }?;
        let name = unsafe { text(name, "name") }?;
        let out = unsafe { Out::new(out_seq, "out_seq") }?;
        out.set(core.plugin_remove(author, name)?.seq);
        Ok(())
    })
}
