//! Publishing: resolving a changeset against the current state, then committing the resulting
//! object versions as one revision, all inside one redb write transaction. Any error drops the
//! transaction, so a publish is all-or-nothing.

use redb::{ReadableTable, WriteTransaction};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use super::record::{seal_history, seal_with};
use super::tables::*;
use super::{encode, get_object, lookup_name, object_from_record, Origin, Store};
use crate::changeset::ChangeInput;
use crate::error::{Error, Result};
use crate::limits::{CHANGE_WIRE_VALUES, OBJECT_BYTES_MAX, REVISION_BYTES_MAX, REVISION_VALUES_MAX};
use crate::model::validate::{references, resolve_refs, validate_fields, validate_name};
use crate::model::{FieldKind, Fields, Hash, Object, StateHash, TypeSchema, Uid};
use crate::revision::{Change, Head, Op, Revision};

/// A key of the reference index: the referenced uid, then the referencing one.
type RefKey = [u8; 32];

/// The version a commit replaces, with its hash; `None` for a new object.
type Replaced = Option<(Object, Hash)>;

/// Stored versions read (and verified) earlier in the same write transaction, by uid.
pub(super) type Stored = HashMap<Uid, Replaced>;

/// The version an object is to have after a commit: `None` deletes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub uid: Uid,
    pub after: Option<Object>,
}

/// Who publishes, why, when, and at which epoch.
#[derive(Clone, Debug)]
pub struct CommitMeta {
    pub author: String,
    pub message: String,
    pub epoch: u64,
    pub time_ms: u64,
}

thread_local! {
    /// Set while [`Store::deferring_durability`] runs on this thread.
    static DEFER_DURABILITY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether revision commits on this thread skip the fsync (see [`Store::deferring_durability`]).
pub(crate) fn durability_deferred() -> bool {
    DEFER_DURABILITY.with(|d| d.get())
}

impl Store {
    /// Runs `f` with every revision it commits on this thread committed without waiting for
    /// the disk: visible at once, durable only after a later durable commit ([`Store::flush`]).
    /// The engine's group commit uses it so that concurrent publishers share one fsync; it
    /// acknowledges nothing before that flush.
    pub(crate) fn deferring_durability<T>(f: impl FnOnce() -> T) -> T {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                DEFER_DURABILITY.with(|d| d.set(false));
            }
        }
        DEFER_DURABILITY.with(|d| d.set(true));
        let _reset = Reset;
        f()
    }

    /// Validates `changes` and publishes them as one durable revision (deferred inside
    /// [`Store::deferring_durability`]).
    pub fn publish(&self, meta: &CommitMeta, changes: &[ChangeInput]) -> Result<Revision> {
        self.publish_owned(meta, changes.to_vec())
    }

    /// [`Store::publish`] of changes it may take apart: their fields become the objects'
    /// without a copy.
    pub fn publish_owned(&self, meta: &CommitMeta, changes: Vec<ChangeInput>) -> Result<Revision> {
        self.guard("publish", || {
            let txn = self.begin_write()?;
            let (targets, stored) = self.resolve(&txn, changes)?;
            let rev = self.commit_resolved(&txn, meta, targets, Origin::Local, stored)?;
            self.commit_revision(txn, &rev)?;
            Ok(rev)
        })
    }

    /// Publishes object versions that are already resolved (revert, merge, replication).
    pub fn publish_targets(&self, meta: &CommitMeta, targets: Vec<Target>) -> Result<Revision> {
        self.guard("publish_targets", || {
            let txn = self.begin_write()?;
            let rev = self.commit_targets(&txn, meta, targets)?;
            self.commit_revision(txn, &rev)?;
            Ok(rev)
        })
    }

    /// Turns administrator changes (names, optional uids) into object versions with every
    /// reference resolved to a uid.
    /// Also gives the stored versions it read, for [`Store::commit_resolved`].
    pub(super) fn resolve(&self, txn: &WriteTransaction, changes: Vec<ChangeInput>) -> Result<(Vec<Target>, Stored)> {
        let objects = txn.open_table(OBJECTS)?;
        let names = txn.open_table(NAMES)?;
        let mut overlay: HashMap<Uid, Option<Object>> = HashMap::new();
        let mut order: Vec<Uid> = Vec::new();
        // Name keys this changeset creates (Some) or frees (None).
        let mut overlay_names: HashMap<String, Option<Uid>> = HashMap::new();
        let schemas = self.schemas();

        // Each stored object this changeset looks at is read and verified once: the commit's
        // first pass takes its replaced versions from here instead of reading them again.
        let stored: RefCell<Stored> = RefCell::new(HashMap::new());
        let read = |uid: &Uid| -> Result<Option<(String, String)>> {
            if let Some(found) = stored.borrow().get(uid) {
                return Ok(found.as_ref().map(|(o, _)| (o.type_name.clone(), o.name.clone())));
            }
            let found = match objects.get(uid.as_bytes().as_slice())? {
                Some(raw) => Some(object_from_record(uid, raw.value())?),
                None => None,
            };
            let type_and_name = found.as_ref().map(|(o, _)| (o.type_name.clone(), o.name.clone()));
            stored.borrow_mut().insert(*uid, found);
            Ok(type_and_name)
        };
        let find_name = |overlay_names: &HashMap<String, Option<Uid>>, t: &str, n: &str| -> Result<Option<Uid>> {
            if let Some(found) = overlay_names.get(&name_key(t, n)) {
                return Ok(*found);
            }
            let Some(uid) = lookup_name(&names, t, n)? else {
                return Ok(None);
            };
            // Through the object, so that a damaged name index never resolves to another one.
            match read(&uid)? {
                Some((type_name, name)) if type_name == t && name == n => Ok(Some(uid)),
                Some((type_name, name)) => {
                    Err(Error::Corrupt(format!("name index: {t} '{n}' points at {type_name} '{name}' ({uid})")))
                }
                None => Err(Error::Corrupt(format!("name index: {t} '{n}' points at missing object {uid}"))),
            }
        };
        // The type and name `uid` has at this point of the changeset.
        let current = |overlay: &HashMap<Uid, Option<Object>>, uid: &Uid| -> Result<Option<(String, String)>> {
            match overlay.get(uid) {
                Some(o) => Ok(o.as_ref().map(|o| (o.type_name.clone(), o.name.clone()))),
                None => read(uid),
            }
        };

        for (i, change) in changes.into_iter().enumerate() {
            let type_name = change.type_name();
            if schemas.get(type_name).is_none() {
                return Err(Error::UnknownType(type_name.into()));
            }
            match change {
                ChangeInput::Put { type_name, name, uid, fields } => {
                    validate_name(&type_name, &name)?;
                    let known = match &uid {
                        Some(s) => Some(parse_uid(i, s)?),
                        None => find_name(&overlay_names, &type_name, &name)?,
                    };
                    let uid = known.unwrap_or_else(Uid::new_ordered);
                    // A uid made just now names no stored object: there is nothing to read.
                    let cur = match known {
                        Some(uid) => current(&overlay, &uid)?,
                        None => None,
                    };
                    if let Some((cur_type, cur_name)) = cur {
                        if cur_type != type_name {
                            return Err(Error::TypeChange {
                                type_name: cur_type,
                                uid: uid.to_string(),
                                new_type: type_name,
                            });
                        }
                        if cur_name != name {
                            overlay_names.insert(name_key(&type_name, &cur_name), None);
                        }
                    }
                    overlay_names.insert(name_key(&type_name, &name), Some(uid));
                    // The change's own fields: taken, not copied.
                    let obj = Object { type_name, uid, name, fields };
                    if overlay.insert(uid, Some(obj)).is_none() {
                        order.push(uid);
                    }
                }
                ChangeInput::Delete { type_name, name, uid } => {
                    let found = match (&uid, &name) {
                        (Some(s), _) => Some(parse_uid(i, s)?),
                        (None, Some(n)) => find_name(&overlay_names, &type_name, n)?,
                        (None, None) => None,
                    };
                    let cur = match found {
                        Some(u) => current(&overlay, &u)?.map(|c| (u, c)),
                        None => None,
                    };
                    let Some((cur_uid, (_, cur_name))) = cur.filter(|(_, (t, _))| *t == type_name) else {
                        return Err(Error::NotFound(ChangeInput::Delete { type_name, name, uid }.label()));
                    };
                    overlay_names.insert(name_key(&type_name, &cur_name), None);
                    if overlay.insert(cur_uid, None).is_none() {
                        order.push(cur_uid);
                    }
                }
            }
        }

        // References may name objects created anywhere in the same changeset.
        for uid in &order {
            let Some(Some(obj)) = overlay.get(uid) else {
                continue;
            };
            let Some(schema) = schemas.get(&obj.type_name) else {
                continue;
            };
            if !may_refer(schema, &obj.fields) {
                continue;
            }
            let mut obj = obj.clone();
            let (type_name, name) = (obj.type_name.clone(), obj.name.clone());
            resolve_refs(schema, &mut obj.fields, |field, types, reference| {
                let target = self.resolve_ref(&overlay, &overlay_names, &find_name, &current, types, reference);
                let target = target.map_err(|candidates| match candidates {
                    Some(candidates) => Error::AmbiguousReference {
                        type_name: type_name.clone(),
                        name: name.clone(),
                        field: field.into(),
                        reference: reference.into(),
                        candidates,
                    },
                    None => Error::DanglingReference {
                        type_name: type_name.clone(),
                        name: name.clone(),
                        field: field.into(),
                        reference: reference.into(),
                    },
                })??;
                if target == *uid {
                    return Err(Error::InvalidField {
                        type_name: type_name.clone(),
                        name: name.clone(),
                        field: field.into(),
                        reason: "an object cannot refer to itself".into(),
                    });
                }
                Ok(target)
            })?;
            overlay.insert(*uid, Some(obj));
        }
        let targets = order.into_iter().map(|uid| Target { after: overlay.remove(&uid).flatten(), uid }).collect();
        Ok((targets, stored.into_inner()))
    }

    /// Finds the one object of an allowed type that `reference` (uid or name) designates.
    /// `Err(None)`: nothing; `Err(Some(list))`: several candidates.
    #[allow(clippy::type_complexity)]
    fn resolve_ref(
        &self,
        overlay: &HashMap<Uid, Option<Object>>,
        overlay_names: &HashMap<String, Option<Uid>>,
        find_name: &dyn Fn(&HashMap<String, Option<Uid>>, &str, &str) -> Result<Option<Uid>>,
        current: &dyn Fn(&HashMap<Uid, Option<Object>>, &Uid) -> Result<Option<(String, String)>>,
        types: &[String],
        reference: &str,
    ) -> std::result::Result<Result<Uid>, Option<String>> {
        let globals = self.globals().0;
        if let Some(uid) = Uid::parse(reference) {
            return match current(overlay, &uid) {
                Ok(Some((type_name, _))) if types.contains(&type_name) => Ok(Ok(uid)),
                // Deleted by this changeset: the commit's integrity check names who still uses it.
                Ok(None) if matches!(overlay.get(&uid), Some(None)) => Ok(Ok(uid)),
                // Not here: an object of the global database, read-only.
                Ok(None) => match globals.map(|g| g.object(&uid)) {
                    Some(Ok(Some(o))) if types.contains(&o.type_name) => Ok(Ok(uid)),
                    Some(Err(e)) => Ok(Err(e)),
                    _ => Err(None),
                },
                Ok(_) => Err(None),
                Err(e) => Ok(Err(e)),
            };
        }
        let mut found = Vec::new();
        for t in types {
            match find_name(overlay_names, t, reference) {
                Ok(Some(uid)) => found.push((t, uid)),
                Ok(None) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
        // A name this database does not hold may name a global object; this database's own
        // objects come first.
        if found.is_empty() {
            if let Some(g) = &globals {
                for t in types {
                    match g.named(t, reference) {
                        Ok(Some(uid)) => found.push((t, uid)),
                        Ok(None) => {}
                        Err(e) => return Ok(Err(e)),
                    }
                }
            }
        }
        match found.as_slice() {
            [] => Err(None),
            [(_, uid)] => Ok(Ok(*uid)),
            many => Err(Some(many.iter().map(|(t, u)| format!("{t} {u}")).collect::<Vec<_>>().join(", "))),
        }
    }

    /// Applies object versions as the next revision: indexes, integrity, state hash, log.
    pub(crate) fn commit_targets(
        &self,
        txn: &WriteTransaction,
        meta: &CommitMeta,
        targets: Vec<Target>,
    ) -> Result<Revision> {
        self.commit_resolved(txn, meta, targets, Origin::Local, Stored::new())
    }

    /// [`Store::commit_targets`] of versions from `origin`, taking the replaced versions that
    /// `stored` holds from it rather than reading them again: `stored` must come from this
    /// transaction, with nothing written since it was read. A replicated revision's references
    /// to global objects were checked by the Active (this node's copy of the global database
    /// may not have them yet), and only a local publish asks the other databases (`Users`)
    /// whether an object they use may go.
    pub(super) fn commit_resolved(
        &self,
        txn: &WriteTransaction,
        meta: &CommitMeta,
        targets: Vec<Target>,
        origin: Origin,
        mut stored: Stored,
    ) -> Result<Revision> {
        self.guard("commit_targets", || {
            let mut meta_table = txn.open_table(META)?;
            let head: Head = match meta_table.get(META_HEAD)? {
                Some(v) => super::decode(v.value(), "head")?,
                None => return Err(Error::Corrupt("meta record 'head' is missing".into())),
            };
            let mut objects = txn.open_table(OBJECTS)?;
            let mut names = txn.open_table(NAMES)?;
            let mut refs = txn.open_table(REFS)?;
            let mut state = StateHash::from_hash(head.state_hash);
            // Taken after the write transaction began: see store/plugins.rs.
            let plugins = self.plugins();
            let schemas = plugins.schemas();

            // Pass 1: validate the new versions and take the old ones out of the indexes. An
            // index entry the new version keeps (its name, a reference it still holds) stays as
            // it is: rewriting it would copy a B-tree page per entry for nothing, which is most
            // of the pages an update over a large store writes. Each target keeps the reference
            // keys its old version held, so that pass 2 inserts only the new ones.
            let mut effective: Vec<(Target, Replaced, HashSet<RefKey>)> = Vec::with_capacity(targets.len());
            for t in targets {
                let before = match stored.remove(&t.uid) {
                    Some(known) => known,
                    None => match objects.get(t.uid.as_bytes().as_slice())? {
                        Some(raw) => Some(object_from_record(&t.uid, raw.value())?),
                        None => None,
                    },
                };
                if before.as_ref().map(|b| &b.0) == t.after.as_ref() {
                    continue;
                }
                if let Some(a) = &t.after {
                    debug_assert_eq!(a.uid, t.uid);
                    let schema = schemas.get(&a.type_name).ok_or_else(|| Error::UnknownType(a.type_name.clone()))?;
                    validate_name(&a.type_name, &a.name)?;
                    validate_fields(schema, &a.name, &a.fields)?;
                    plugins.validate(a)?;
                    if let Some((b, _)) = &before {
                        if b.type_name != a.type_name {
                            return Err(Error::TypeChange {
                                type_name: b.type_name.clone(),
                                uid: b.uid.to_string(),
                                new_type: a.type_name.clone(),
                            });
                        }
                    }
                }
                let mut kept_refs = HashSet::new();
                if let Some((b, h)) = &before {
                    let after = t.after.as_ref().filter(|a| a.type_name == b.type_name);
                    if after.is_none_or(|a| a.name != b.name) {
                        names.remove(name_key(&b.type_name, &b.name).as_str())?;
                    }
                    if let Some(schema) = schemas.get(&b.type_name) {
                        let still: HashSet<RefKey> = after
                            .map(|a| references(schema, &a.fields))
                            .unwrap_or_default()
                            .iter()
                            .map(|(_, r)| ref_key(r.as_bytes(), b.uid.as_bytes()))
                            .collect();
                        for (_, target) in references(schema, &b.fields) {
                            let key = ref_key(target.as_bytes(), b.uid.as_bytes());
                            if still.contains(&key) {
                                kept_refs.insert(key);
                            } else {
                                refs.remove(key.as_slice())?;
                            }
                        }
                    }
                    state.sub(*h);
                }
                effective.push((t, before, kept_refs));
            }
            if effective.is_empty() {
                return Err(Error::EmptyChangeset);
            }

            // Pass 2: write the new versions and their index entries.
            let mut changes = Vec::with_capacity(effective.len());
            let mut undo = Vec::with_capacity(effective.len());
            let mut new_refs: Vec<(usize, String, Uid)> = Vec::new();
            let mut deleted: Vec<usize> = Vec::new();
            // New versions, written in key order once all are known (below).
            let mut writes: Vec<(Uid, Vec<u8>)> = Vec::new();
            // What the revision will weigh in a peer frame, in MessagePack values: the Standby
            // refuses a frame over its limit before decoding it, so the Active must not publish one.
            let mut wire_values = 0usize;
            for (t, before, kept_refs) in effective {
                let index = changes.len();
                wire_values = wire_values.saturating_add(CHANGE_WIRE_VALUES);
                if let Some(a) = &t.after {
                    let bytes = a.encode();
                    if bytes.len() > OBJECT_BYTES_MAX {
                        return Err(Error::TooLarge {
                            what: format!("{} '{}'", a.type_name, a.name),
                            size: bytes.len(),
                            max: OBJECT_BYTES_MAX,
                        });
                    }
                    wire_values = wire_values.saturating_add(crate::msgpack_shape::values(&bytes));
                    let hash = Hash::of(&bytes);
                    writes.push((t.uid, seal_with(&bytes, &hash)));
                    let keeps_name =
                        before.as_ref().is_some_and(|(b, _)| b.type_name == a.type_name && b.name == a.name);
                    let key = name_key(&a.type_name, &a.name);
                    if !keeps_name {
                        if let Some(old) = names.insert(key.as_str(), t.uid.as_bytes().as_slice())? {
                            let owner = Uid::from_slice(old.value())?;
                            if owner != t.uid {
                                return Err(Error::DuplicateName {
                                    type_name: a.type_name.clone(),
                                    name: a.name.clone(),
                                    uid: owner.to_string(),
                                });
                            }
                        }
                    }
                    if let Some(schema) = schemas.get(&a.type_name) {
                        for (field, target) in references(schema, &a.fields) {
                            let key = ref_key(target.as_bytes(), t.uid.as_bytes());
                            if !kept_refs.contains(&key) {
                                refs.insert(key.as_slice(), ())?;
                            }
                            new_refs.push((index, field, target));
                        }
                    }
                    state.add(hash);
                } else {
                    objects.remove(t.uid.as_bytes().as_slice())?;
                    deleted.push(index);
                }
                let (before_obj, before_hash) = match before {
                    Some((o, h)) => (Some(o), Some(h)),
                    None => (None, None),
                };
                let type_name =
                    t.after.as_ref().or(before_obj.as_ref()).map(|o| o.type_name.clone()).unwrap_or_default();
                changes.push(Change {
                    type_name,
                    uid: t.uid,
                    op: if t.after.is_some() { Op::Put } else { Op::Delete },
                    before: before_hash,
                    after: t.after,
                });
                undo.push(before_obj);
            }

            // In key order: new uids made in one millisecond differ in random bits, and redb
            // packs a leaf full only when keys arrive in ascending order (it splits a leaf in
            // halves when a key lands inside it). So a large revision of new objects fills its
            // pages instead of leaving a third of each empty.
            writes.sort_unstable_by_key(|w| w.0);
            for (uid, record) in &writes {
                objects.insert(uid.as_bytes().as_slice(), record.as_slice())?;
            }
            drop(writes);

            if wire_values > REVISION_VALUES_MAX {
                return Err(Error::TooMany {
                    what: "values in one revision (fields at every depth, and each change)".into(),
                    count: wire_values,
                    max: REVISION_VALUES_MAX,
                });
            }

            // Pass 3: referential integrity of the final state.
            // Deletions first, so that a reference to an object this changeset deletes is reported
            // as "still used by" rather than as dangling.
            let (globals, users) = self.globals();
            // The registry's objects (a managed type) are no other database's to use.
            let gone: Vec<usize> = deleted
                .iter()
                .copied()
                .filter(|&i| !crate::model::schema::MANAGED_TYPES.contains(&changes[i].type_name.as_str()))
                .collect();
            for index in deleted {
                let uid = changes[index].uid;
                let (lo, hi) = ref_range(uid.as_bytes());
                let mut users = Vec::new();
                for entry in refs.range(lo.as_slice()..=hi.as_slice())?.take(5) {
                    let (k, _) = entry?;
                    let source = Uid::from_slice(&k.value()[16..])?;
                    users.push(match get_object(&objects, &source)? {
                        Some(o) => format!("{} '{}'", o.type_name, o.name),
                        None => source.to_string(),
                    });
                }
                if !users.is_empty() {
                    let name = undo[index].as_ref().map(|o| o.name.clone()).unwrap_or_default();
                    return Err(Error::StillReferenced {
                        type_name: changes[index].type_name.clone(),
                        name,
                        used_by: users.join(", "),
                    });
                }
            }
            // Objects another database references: asked once for the whole revision.
            if let (Some(users), Origin::Local, false) = (&users, origin, gone.is_empty()) {
                let uids: Vec<Uid> = gone.iter().map(|&i| changes[i].uid).collect();
                let used = users.users(&uids)?;
                if let Some((uid, _)) = used.first() {
                    let index = gone.iter().copied().find(|&i| changes[i].uid == *uid).unwrap_or(gone[0]);
                    let who: Vec<&str> = used.iter().filter(|(u, _)| u == uid).map(|(_, w)| w.as_str()).collect();
                    return Err(Error::StillReferenced {
                        type_name: changes[index].type_name.clone(),
                        name: undo[index].as_ref().map(|o| o.name.clone()).unwrap_or_default(),
                        used_by: who.join(", "),
                    });
                }
            }
            for (index, field, target) in &new_refs {
                if objects.get(target.as_bytes().as_slice())?.is_none() {
                    let global = match (&globals, origin) {
                        (Some(_), Origin::Replicated) => true,
                        (Some(g), Origin::Local) => g.object(target)?.is_some(),
                        (None, _) => false,
                    };
                    if global {
                        continue;
                    }
                    let src = changes[*index].after.as_ref();
                    return Err(Error::DanglingReference {
                        type_name: changes[*index].type_name.clone(),
                        name: src.map(|o| o.name.clone()).unwrap_or_default(),
                        field: field.clone(),
                        reference: target.to_string(),
                    });
                }
            }
            super::cycles::check_cycles(&objects, schemas, &changes)?;
            plugins.check_commit(&objects, &names, &changes, &undo)?;

            let id = Revision::compute_id(&head.id, meta.epoch, &changes);
            let rev = Revision {
                seq: head.seq + 1,
                id,
                parent: head.id,
                epoch: meta.epoch,
                author: meta.author.clone(),
                time_ms: meta.time_ms,
                message: meta.message.clone(),
                state_hash: state.to_hash(),
                changes,
            };
            let (rev_bytes, undo_bytes) = (rev.encode(), encode(&undo));
            // What publishes must replicate (one peer frame) and back up (one backup frame): a
            // revision over the limit is refused here, on the Active, with nothing committed.
            let size = rev_bytes.len() + undo_bytes.len();
            if size > REVISION_BYTES_MAX {
                return Err(Error::TooLarge {
                    what: format!("revision {} (its changes and the objects they replace)", rev.seq),
                    size,
                    max: REVISION_BYTES_MAX,
                });
            }
            txn.open_table(REVISIONS)?.insert(rev.seq, seal_history(&rev_bytes).as_slice())?;
            txn.open_table(UNDO)?.insert(rev.seq, seal_history(&undo_bytes).as_slice())?;
            meta_table.insert(META_HEAD, encode(&rev.head()).as_slice())?;
            // A format 2 store holds deflated records from this commit on: say so, so that a
            // build that reads only format 2 refuses it rather than taking them for damage. A
            // store opened at this build's format is not read for it on every commit.
            if !self.format_current.load(std::sync::atomic::Ordering::Relaxed) {
                meta_table.insert(META_FORMAT, FORMAT_VERSION.to_le_bytes().as_slice())?;
            }
            Ok(rev)
        })
    }
}

/// Whether `fields` has a field that the schema says may hold references. Objects without one
/// have nothing to resolve, so they are not copied to be resolved.
fn may_refer(schema: &TypeSchema, fields: &Fields) -> bool {
    fn refers(kind: &FieldKind) -> bool {
        match kind {
            FieldKind::Ref { .. } | FieldKind::RefsOrAny { .. } => true,
            FieldKind::List { item } => refers(item),
            _ => false,
        }
    }
    schema.fields.iter().any(|f| refers(&f.kind) && fields.contains_key(&f.name))
}

fn parse_uid(index: usize, s: &str) -> Result<Uid> {
    Uid::parse(s).ok_or_else(|| Error::InvalidChangeset(format!("change {index}: '{s}' is not a uid")))
}
