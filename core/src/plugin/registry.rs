//! The plugins a store has loaded: their types merged into the store's [`Schemas`], the map from
//! type to plugin, and the limits their calls run under. A registry is an immutable snapshot; the
//! store swaps in a new one after a revision that puts or deletes a `plugin` object commits
//! (see `store/plugins.rs`), so a publish validates against one consistent set of plugins.
//!
//! It is also where the engine calls plugins: [`PluginRegistry::validate`] from the commit,
//! [`CustomMerge`] from the three-way merge, and [`PluginRegistry::check_commit`], which checks
//! the `plugin` objects a revision puts or deletes against the final state in its transaction.

use redb::ReadableTable;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::limits::{PluginLimits, PLUGINS_MAX};
use super::loaded::Plugin;
use super::stored::{self, PLUGIN_TYPE};
use crate::error::{Error, Result};
use crate::merge::{CustomMerge, ObjectMerge};
use crate::model::validate::{references, validate_fields};
use crate::model::{Object, Schemas, Uid};
use crate::revision::Change;
use crate::store::tables::type_range;

/// How many remaining objects a refused removal names.
const REMAINING_SHOWN_MAX: usize = 5;

/// The loaded plugins of one store, and every type it knows.
#[derive(Debug)]
pub struct PluginRegistry {
    limits: PluginLimits,
    schemas: Arc<Schemas>,
    plugins: BTreeMap<String, Arc<Plugin>>,
    by_type: HashMap<String, Arc<Plugin>>,
    /// Plugins stored but not loaded on this node, with the reason.
    failed: BTreeMap<String, String>,
}

impl PluginRegistry {
    /// The built-in types and no plugin.
    pub fn new(limits: PluginLimits) -> PluginRegistry {
        let mut schemas = Schemas::builtin();
        schemas.insert(stored::plugin_schema());
        PluginRegistry {
            limits,
            schemas: Arc::new(schemas),
            plugins: BTreeMap::new(),
            by_type: HashMap::new(),
            failed: BTreeMap::new(),
        }
    }

    /// A registry of the plugins stored as `plugin_objects`, with this one's limits. Plugins
    /// whose module is unchanged are shared with this registry, not loaded again. A plugin that
    /// does not load is listed in [`PluginRegistry::failed`] and its types stay unknown.
    pub fn reload(&self, plugin_objects: &[Object]) -> PluginRegistry {
        let mut next = PluginRegistry::new(self.limits);
        let mut schemas = Schemas::clone(&next.schemas);
        for o in plugin_objects {
            let loaded = match self.plugins.get(&o.name) {
                Some(p) if stored::hash(o) == Some(p.hash()) => Ok(p.clone()),
                _ => self.load(o),
            };
            match loaded {
                Ok(p) => {
                    for t in p.types() {
                        schemas.insert(t.clone());
                        next.by_type.insert(t.name.clone(), p.clone());
                    }
                    next.plugins.insert(o.name.clone(), p);
                }
                Err(e) => {
                    tracing::error!(plugin = %o.name, error = %e, "plugin not loaded; its types stay unknown here");
                    next.failed.insert(o.name.clone(), e.to_string());
                }
            }
        }
        next.schemas = Arc::new(schemas);
        next
    }

    /// Loads the module of a plugin object and checks that the object says what it declares.
    fn load(&self, o: &Object) -> Result<Arc<Plugin>> {
        let bad = |reason: String| Error::Plugin { plugin: o.name.clone(), call: "check".into(), reason };
        let wasm = stored::wasm(o).map_err(bad)?;
        let plugin = Plugin::load(&wasm, self.limits)?;
        stored::matches(o, plugin.description()).map_err(bad)?;
        Ok(Arc::new(plugin))
    }

    /// The plugin a `plugin` object installs: the loaded one when its module is unchanged (the
    /// object must still say what it declares), else the module loaded afresh.
    fn candidate(&self, o: &Object) -> Result<Arc<Plugin>> {
        match self.plugins.get(&o.name) {
            Some(p) if stored::hash(o) == Some(p.hash()) => {
                let bad = |reason: String| Error::Plugin { plugin: o.name.clone(), call: "check".into(), reason };
                stored::wasm(o).map_err(bad)?;
                stored::matches(o, p.description()).map_err(bad)?;
                Ok(p.clone())
            }
            _ => self.load(o),
        }
    }

    /// Every type this store knows: the built-in ones and those of loaded plugins.
    pub fn schemas(&self) -> &Arc<Schemas> {
        &self.schemas
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// A loaded plugin, by name.
    pub fn plugin(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.get(name)
    }

    /// The plugin that declares `type_name`.
    pub fn plugin_for_type(&self, type_name: &str) -> Option<&Arc<Plugin>> {
        self.by_type.get(type_name)
    }

    /// Loaded plugins, by name.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.plugins.values()
    }

    /// Plugins stored but not loaded here, with the reason.
    pub fn failed(&self) -> &BTreeMap<String, String> {
        &self.failed
    }

    /// Runs the plugin's own validation of an object of a plugin type (the schema's is done
    /// already); other objects pass.
    pub fn validate(&self, o: &Object) -> Result<()> {
        match self.by_type.get(&o.type_name) {
            Some(p) => p.validate(o),
            None => Ok(()),
        }
    }

    /// Checks the `plugin` objects among a commit's changes against the state the commit leaves
    /// (`objects` and `names` of its transaction): a plugin put must load and match its object;
    /// the types a removal or an upgrade drops must have no objects left; objects of the types
    /// an upgrade keeps must stay valid and refer to the same objects; and at most
    /// [`PLUGINS_MAX`] plugins may be installed.
    pub(crate) fn check_commit(
        &self,
        objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
        names: &impl ReadableTable<&'static str, &'static [u8]>,
        changes: &[Change],
        before: &[Option<Object>],
    ) -> Result<()> {
        let mut installs = false;
        for (change, before) in changes.iter().zip(before) {
            if change.type_name != PLUGIN_TYPE {
                continue;
            }
            let candidate = match &change.after {
                Some(a) => Some(self.candidate(a)?),
                None => None,
            };
            installs |= candidate.is_some();
            let name = change.after.as_ref().or(before.as_ref()).map(|o| o.name.as_str()).unwrap_or_default();
            let call = if change.after.is_none() { "remove" } else { "upgrade" };
            let refuse = |reason: String| Error::Plugin { plugin: name.into(), call: call.into(), reason };
            let kept: Vec<String> = candidate.iter().flat_map(|p| p.types()).map(|t| t.name.clone()).collect();
            for t in before.iter().flat_map(stored::declared_types).filter(|t| !kept.contains(t)) {
                let left = remaining(objects, names, &t)?;
                if !left.is_empty() {
                    return Err(refuse(format!(
                        "objects of type '{t}' remain: {}; delete them first",
                        left.join(", ")
                    )));
                }
            }
            if let (Some(new), Some(old)) = (&candidate, before) {
                if stored::hash(old) != Some(new.hash()) {
                    self.revalidate(objects, names, new, self.plugins.get(new.name()))
                        .map_err(|e| refuse(e.to_string()))?;
                }
            }
        }
        if installs {
            let (lo, hi) = type_range(PLUGIN_TYPE);
            let installed = names.range(lo.as_str()..hi.as_str())?.count();
            if installed > PLUGINS_MAX {
                return Err(Error::Plugin {
                    plugin: "*".into(),
                    call: "install".into(),
                    reason: format!("{installed} plugins, over the limit of {PLUGINS_MAX}"),
                });
            }
        }
        Ok(())
    }

    /// Checks every object of the types `new` keeps against `new`'s schemas and validation, and
    /// that it refers to the same objects under `new`'s schema as under `old`'s, so that the
    /// reference index stays true.
    fn revalidate(
        &self,
        objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
        names: &impl ReadableTable<&'static str, &'static [u8]>,
        new: &Plugin,
        old: Option<&Arc<Plugin>>,
    ) -> Result<()> {
        for schema in new.types() {
            let old_schema = old.and_then(|p| p.types().iter().find(|t| t.name == schema.name));
            let (lo, hi) = type_range(&schema.name);
            for entry in names.range(lo.as_str()..hi.as_str())? {
                let uid = Uid::from_slice(entry?.1.value())?;
                let Some(o) = crate::store::get_object(objects, &uid)? else {
                    continue;
                };
                validate_fields(schema, &o.name, &o.fields)?;
                new.validate(&o)?;
                let refs_before = old_schema.map(|s| references(s, &o.fields)).unwrap_or_default();
                if references(schema, &o.fields) != refs_before {
                    return Err(Error::InvalidObject {
                        type_name: o.type_name.clone(),
                        name: o.name.clone(),
                        reason: "the new version reads its references differently; recreate such objects".into(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Up to [`REMAINING_SHOWN_MAX`] objects of `type_name`, as `type 'name'`.
fn remaining(
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    names: &impl ReadableTable<&'static str, &'static [u8]>,
    type_name: &str,
) -> Result<Vec<String>> {
    let (lo, hi) = type_range(type_name);
    let mut out = Vec::new();
    for entry in names.range(lo.as_str()..hi.as_str())?.take(REMAINING_SHOWN_MAX) {
        let uid = Uid::from_slice(entry?.1.value())?;
        out.push(match crate::store::get_object(objects, &uid)? {
            Some(o) => format!("{} '{}'", o.type_name, o.name),
            None => uid.to_string(),
        });
    }
    Ok(out)
}

impl CustomMerge for PluginRegistry {
    fn merge(
        &self,
        type_name: &str,
        base: Option<&Object>,
        active: Option<&Object>,
        branch: Option<&Object>,
    ) -> Option<Result<ObjectMerge>> {
        let plugin = self.by_type.get(type_name)?;
        plugin.merges(type_name).then(|| plugin.merge(type_name, base, active, branch))
    }
}
