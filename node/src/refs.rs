//! Names for the uids that reference fields hold. The store keeps references as uids, so that a
//! rename breaks nothing; people read `host web1`, not `01a24a51-…`. Every diff, collision diff
//! and revision a front end returns comes from here with a `refs` table naming each referenced
//! object (type and name), so that the daemon, the CLI and libmgha show the same names.

use std::collections::{BTreeMap, BTreeSet};

use mgha_core::model::validate::references;
use mgha_core::model::{Fields, Schemas, Uid};
use mgha_core::store::Store;
use mgha_core::Engine;
use serde_json::Value;

use crate::contract::{CollisionDiffBody, DiffBody, ObjectDiffBody, RefName, RevisionBody};

/// `engine`'s diff of revisions `from` and `to`, with the names of what its fields reference.
pub fn diff(engine: &Engine, from: u64, to: u64) -> mgha_core::Result<DiffBody> {
    store_diff(&engine.store(), from, to)
}

/// [`diff`] of any store (an archived one, say).
pub fn store_diff(store: &Store, from: u64, to: u64) -> mgha_core::Result<DiffBody> {
    let mut body = DiffBody::from(&store.diff(from, to)?);
    let mut names = Names::new(store);
    names.objects(&body.objects);
    body.refs = names.resolve()?;
    Ok(body)
}

/// Revision `seq` with its changes, with the names of what the objects it wrote reference.
pub fn revision(engine: &Engine, seq: u64) -> mgha_core::Result<RevisionBody> {
    store_revision(&engine.store(), seq)
}

/// [`revision`] of any store (an archived one, say).
pub fn store_revision(store: &Store, seq: u64) -> mgha_core::Result<RevisionBody> {
    let mut body = RevisionBody::from(&store.revision(seq)?);
    let mut names = Names::new(store);
    for c in &body.changes {
        if let Some(o) = &c.after {
            names.known(&o.uid, &o.type_name, &o.name);
            names.fields(&o.type_name, o.fields.iter());
        }
    }
    body.refs = names.resolve()?;
    Ok(body)
}

/// Collision branch `id`'s diff, with the names of what both sides' changes and the conflicts
/// reference.
pub fn collision_diff(engine: &Engine, id: u64) -> mgha_core::Result<CollisionDiffBody> {
    let mut body = CollisionDiffBody::from(&engine.collision_diff(id)?);
    let store = engine.store();
    let mut names = Names::new(&store);
    names.objects(&body.branch_changes);
    names.objects(&body.active_changes);
    for c in &body.conflicts {
        names.known(&c.uid, &c.type_name, &c.name);
        for v in [&c.base, &c.active, &c.branch].into_iter().flatten() {
            names.fields(&c.type_name, std::iter::once((&c.field, v)));
        }
    }
    body.refs = names.resolve()?;
    Ok(body)
}

/// The uids a document's reference fields hold, and the names it already gives some of them.
struct Names<'s> {
    store: &'s Store,
    schemas: std::sync::Arc<Schemas>,
    wanted: BTreeSet<Uid>,
    known: BTreeMap<Uid, RefName>,
}

impl<'s> Names<'s> {
    fn new(store: &'s Store) -> Names<'s> {
        Names { store, schemas: store.schemas(), wanted: BTreeSet::new(), known: BTreeMap::new() }
    }

    /// An object the document itself names (it may be gone from the store since).
    fn known(&mut self, uid: &str, type_name: &str, name: &str) {
        if let Some(uid) = Uid::parse(uid) {
            self.known.insert(uid, RefName { type_name: type_name.into(), name: name.into() });
        }
    }

    /// The objects of a diff: each is known by name, and both sides of each field may refer.
    fn objects(&mut self, objects: &[ObjectDiffBody]) {
        for o in objects {
            self.known(&o.uid, &o.type_name, &o.name);
            for f in &o.fields {
                for v in [&f.before, &f.after].into_iter().flatten() {
                    self.fields(&o.type_name, std::iter::once((&f.field, v)));
                }
            }
        }
    }

    /// Fields of an object of `type_name`: the uids held by those its schema says refer.
    fn fields<'a>(&mut self, type_name: &str, fields: impl Iterator<Item = (&'a String, &'a Value)>) {
        let Some(schema) = self.schemas.get(type_name) else {
            return;
        };
        let fields: Fields = fields.map(|(k, v)| (k.clone(), v.clone())).collect();
        self.wanted.extend(references(schema, &fields).into_iter().map(|(_, uid)| uid));
    }

    /// The name of every wanted uid: from the document when it names it, else from the store's
    /// current state; a uid that is in neither (an object deleted since) stays unnamed.
    fn resolve(self) -> mgha_core::Result<BTreeMap<String, RefName>> {
        let mut out = BTreeMap::new();
        for uid in self.wanted {
            let name = match self.known.get(&uid) {
                Some(n) => Some(n.clone()),
                None => self.store.get_by_uid(&uid)?.map(|o| RefName { type_name: o.type_name, name: o.name }),
            };
            if let Some(name) = name {
                out.insert(uid.to_string(), name);
            }
        }
        Ok(out)
    }
}
