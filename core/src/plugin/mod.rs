//! WebAssembly plugins: new object types, their validation and their merge rules, sandboxed,
//! deterministic and replicated. docs/plugin-abi.md is the contract a plugin is written against.
//!
//! - [`abi`]: the ABI's names and MessagePack encodings; `msgpack` writes and reads them by hand.
//! - [`runtime`]: the seam to the WebAssembly runtime (compile, instantiate, call), which the
//!   crate `mgha-plugin-host` fills with wasmtime; core itself runs no WebAssembly.
//! - [`limits`]: [`PluginLimits`], the manifest of what a call may use, and the named ceilings.
//! - [`check`]: what a plugin may declare (namespaced type names, sane schemas).
//! - [`loaded`]: a loaded [`Plugin`] and its instance pool; validate and merge calls.
//! - [`stored`]: the built-in `plugin` object that carries a module through replication.
//! - [`registry`]: a store's [`PluginRegistry`]: its schemas, type → plugin, commit checks.
//! - [`api`]: the engine's plugin operations for front ends (check, install, list, remove).
//!
//! Plugins reach the engine only through the versioned ABI: the engine hands them canonical
//! MessagePack and reads back answers it checks, and a plugin can import nothing but
//! `mgha_host_v1.log`.

pub mod abi;
pub mod api;
pub mod check;
pub mod limits;
pub mod loaded;
mod msgpack;
pub mod registry;
pub mod runtime;
pub mod stored;

use serde::{Deserialize, Serialize};

use crate::model::{Hash, Object, TypeSchema, Uid};
pub use abi::{Description, ABI_VERSION, HOST_NAMESPACE};
pub use limits::PluginLimits;
pub use loaded::Plugin;
pub use registry::PluginRegistry;
pub use stored::PLUGIN_TYPE;

/// What a plugin declares, and whether this node runs it: what `mgha plugin check` and
/// `mgha plugin list` show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    /// blake3 of the module bytes.
    pub hash: Hash,
    pub module_bytes: usize,
    /// The names of the types it declares, sorted.
    pub type_names: Vec<String>,
    /// Their schemas (empty when this node could not load the plugin).
    pub types: Vec<TypeSchema>,
    /// The types it merges itself; the others merge field by field.
    pub merge: Vec<String>,
    /// The `plugin` object that installs it, when installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Uid>,
    /// Why this node could not load it; `None` when loaded (or only checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PluginInfo {
    /// What a loaded plugin declares.
    pub fn of(p: &Plugin, uid: Option<Uid>) -> PluginInfo {
        let d = p.description();
        PluginInfo {
            name: d.name.clone(),
            version: d.version.clone(),
            hash: p.hash(),
            module_bytes: p.module_bytes(),
            type_names: stored::type_names(d),
            types: d.types.clone(),
            merge: d.merge.clone(),
            uid,
            error: None,
        }
    }

    /// What a stored plugin object says of a plugin this node could not load.
    pub fn failed(o: &Object, error: String) -> PluginInfo {
        PluginInfo {
            name: o.name.clone(),
            version: stored::version(o),
            hash: stored::hash(o).unwrap_or_default(),
            module_bytes: 0,
            type_names: stored::declared_types(o),
            types: Vec::new(),
            merge: Vec::new(),
            uid: Some(o.uid),
            error: Some(error),
        }
    }
}
