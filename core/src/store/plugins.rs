//! The store's side of plugins: the [`PluginRegistry`] that its commits validate with and its
//! merges consult, loaded from the stored `plugin` objects at open and reloaded when a revision
//! that puts or deletes one commits, locally or replicated. The reload happens while the
//! registry is write-locked across the redb commit, and a commit takes its registry only after
//! its write transaction began, so no commit ever validates against plugins older than the state
//! it writes on.

use redb::ReadableTable;
use std::sync::Arc;

use super::tables::*;
use super::{get_object, Store};
use crate::error::Result;
use crate::model::validate::references;
use crate::model::{Object, Uid};
use crate::plugin::{PluginLimits, PluginRegistry, PLUGIN_TYPE};
use crate::revision::Revision;

impl Store {
    /// The known types and loaded plugins, as of the last commit.
    pub fn plugins(&self) -> Arc<PluginRegistry> {
        // The registry is only ever replaced whole, so a poisoned lock still holds a good one.
        self.plugins.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets the limits plugin calls run under, reloading every plugin with them.
    pub fn set_plugin_limits(&self, limits: PluginLimits) -> Result<()> {
        self.guard("set_plugin_limits", || {
            let mut slot = self.plugins.write().unwrap_or_else(|p| p.into_inner());
            *slot = Arc::new(PluginRegistry::new(limits).reload(&self.plugin_objects()?));
            Ok(())
        })
    }

    /// Loads the plugins the store holds.
    pub(crate) fn reload_plugins(&self) -> Result<()> {
        self.guard("reload_plugins", || {
            let mut slot = self.plugins.write().unwrap_or_else(|p| p.into_inner());
            *slot = Arc::new(slot.reload(&self.plugin_objects()?));
            Ok(())
        })
    }

    /// Commits the transaction that wrote `rev`; when it changed plugins, swaps in the new
    /// registry before any other commit can take one.
    /// Inside [`Store::deferring_durability`] the commit is made without waiting for the disk.
    pub(crate) fn commit_revision(&self, mut txn: super::fault::Txn<'_>, rev: &Revision) -> Result<()> {
        self.guard("commit_revision", || {
            if super::commit::durability_deferred() {
                txn.set_durability(redb::Durability::None).map_err(|e| crate::error::Error::Storage(e.into()))?;
            }
            if !rev.changes.iter().any(|c| c.type_name == PLUGIN_TYPE) {
                self.commit_txn(txn)?;
                return Ok(());
            }
            let mut slot = self.plugins.write().unwrap_or_else(|p| p.into_inner());
            let committed = self.commit_recording(txn);
            if committed.is_ok() {
                *slot = Arc::new(slot.reload(&self.plugin_objects()?));
            }
            drop(slot);
            // Reopening reloads the registry from what the file holds, so it waits for the lock.
            self.reopen_after(&committed);
            committed
        })
    }

    /// Every stored `plugin` object, by name.
    fn plugin_objects(&self) -> Result<Vec<Object>> {
        let txn = self.begin_read()?;
        let names = txn.open_table(NAMES)?;
        let objects = txn.open_table(OBJECTS)?;
        let (lo, hi) = type_range(PLUGIN_TYPE);
        let mut out = Vec::new();
        for entry in names.range(lo.as_str()..hi.as_str())? {
            let uid = Uid::from_slice(entry?.1.value())?;
            out.extend(get_object(&objects, &uid)?);
        }
        Ok(out)
    }

    /// Loads the plugins of a store filled without commits (a full-sync snapshot, a restored
    /// backup) and indexes the references of their objects, which the filling could not read
    /// while the plugins were unknown.
    pub(crate) fn index_plugin_references(&self) -> Result<()> {
        self.guard("index_plugin_references", || {
            self.reload_plugins()?;
            let registry = self.plugins();
            let txn = self.begin_write()?;
            {
                let names = txn.open_table(NAMES)?;
                let objects = txn.open_table(OBJECTS)?;
                let mut refs = txn.open_table(REFS)?;
                for schema in registry.plugins().flat_map(|p| p.types()) {
                    let (lo, hi) = type_range(&schema.name);
                    for entry in names.range(lo.as_str()..hi.as_str())? {
                        let uid = Uid::from_slice(entry?.1.value())?;
                        let Some(o) = get_object(&objects, &uid)? else {
                            continue;
                        };
                        for (_, target) in references(schema, &o.fields) {
                            refs.insert(ref_key(target.as_bytes(), uid.as_bytes()).as_slice(), ())?;
                        }
                    }
                }
            }
            self.commit_txn(txn)?;
            Ok(())
        })
    }
}
