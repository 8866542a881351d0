//! The engine's plugin operations, for every front end (`mgha plugin check|install|list|remove`,
//! the admin API, the C ABI): check a module without installing it, install or upgrade one as a
//! revision, list what is installed and whether this node runs it, remove one as a revision.
//!
//! Install and remove are ordinary publishes of the `plugin` object, so they need the Active,
//! replicate like any revision, and are checked again by the commit on every node.

use super::limits::PLUGINS_MAX;
use super::loaded::Plugin;
use super::stored::{self, PLUGIN_TYPE};
use super::PluginInfo;
use crate::changeset::ChangeInput;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::revision::Revision;

impl Engine {
    /// Checks a module as install would (it compiles, imports only host functions, exports the
    /// ABI, speaks its version and describes itself sensibly) and says what it declares. Nothing
    /// is installed. A refusal is an [`Error::Plugin`] whose call is `check`.
    pub fn plugin_check(&self, wasm: &[u8]) -> Result<PluginInfo> {
        let limits = *self.store().plugins().limits();
        Ok(PluginInfo::of(&Plugin::load(wasm, limits)?, None))
    }

    /// Installs a plugin, or upgrades the installed plugin of the same name, as one revision
    /// that carries the module to every node. Refused like [`Engine::plugin_check`] refuses, and
    /// an upgrade also when objects of a type it drops remain or objects of the types it keeps
    /// would no longer be valid. Installing the module already installed is
    /// [`Error::EmptyChangeset`].
    pub fn plugin_install(&self, author: &str, wasm: &[u8]) -> Result<Revision> {
        let store = self.store();
        let plugin = Plugin::load(wasm, *store.plugins().limits())?;
        let d = plugin.description();
        let verb = match store.plugins().plugin(&d.name) {
            Some(old) => format!("upgrade plugin {} {} to {}", d.name, old.version(), d.version),
            None => format!("install plugin {} {}", d.name, d.version),
        };
        drop(store);
        let change = ChangeInput::Put {
            type_name: PLUGIN_TYPE.into(),
            name: d.name.clone(),
            uid: None,
            fields: stored::object_fields(wasm, d),
        };
        self.publish_with(author, &verb, |store, meta| store.publish(meta, std::slice::from_ref(&change)))
    }

    /// Every installed plugin, by name, with what it declares; one this node could not load
    /// carries the reason in `error`.
    pub fn plugin_list(&self) -> Result<Vec<PluginInfo>> {
        let store = self.store();
        let registry = store.plugins();
        let mut out = Vec::new();
        for o in store.list(Some(PLUGIN_TYPE), PLUGINS_MAX)? {
            match registry.plugin(&o.name) {
                Some(p) if stored::hash(&o) == Some(p.hash()) => out.push(PluginInfo::of(p, Some(o.uid))),
                _ => {
                    let why = registry.failed().get(&o.name).cloned();
                    out.push(PluginInfo::failed(&o, why.unwrap_or_else(|| "not loaded yet".into())));
                }
            }
        }
        Ok(out)
    }

    /// Removes a plugin as one revision. Refused while objects of its types exist (the error
    /// names a few): delete them first, in an earlier revision or in the same changeset.
    pub fn plugin_remove(&self, author: &str, name: &str) -> Result<Revision> {
        let installed = match self.store().get(PLUGIN_TYPE, name) {
            Ok(o) => o,
            Err(Error::NotFound(_)) => return Err(Error::NotFound(format!("plugin '{name}'"))),
            Err(e) => return Err(e),
        };
        let change =
            ChangeInput::Delete { type_name: PLUGIN_TYPE.into(), name: None, uid: Some(installed.uid.to_string()) };
        let message = format!("remove plugin {name} {}", stored::version(&installed));
        self.publish_with(author, &message, |store, meta| store.publish(meta, std::slice::from_ref(&change)))
    }
}
