//! Three-way merge of a collision branch into the Active's state, as DESIGN.md "Merge" describes:
//! trivial cases first, then the type's own merge where it has one (a plugin type that declares
//! a custom merge, through [`CustomMerge`]), else a field-by-field merge by each type's per-field
//! strategy. Conflicts
//! are records, settled by side or by explicit value in [`resolve`]. Everything here is pure and
//! deterministic, so every node that merges the same inputs gets byte-identical objects and the
//! same conflict list.

mod field;
mod resolve;
#[cfg(test)]
mod tests;

pub use resolve::{resolve, Choice, MergeError, ObjectResolution, Resolution, ResolutionFile};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

use crate::model::{Fields, MergeStrategy, Object, Schemas, TypeSchema, Uid};
use field::{merge_value, Merged};

/// The pseudo-field of a conflict over the object's name (merged with `Replace`).
pub const NAME_FIELD: &str = "name";
/// The pseudo-field of a conflict over the whole object: one side deleted it while the other
/// modified it, or the sides hold objects of different types under one uid.
pub const WHOLE_OBJECT: &str = "*";

/// One side of a collision: the Active's history, or the branch an old Active published while it
/// was cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Active,
    Branch,
}

/// A field both sides changed in ways the merge cannot combine.
///
/// The values are `None` where the field is absent on that side (the key is then left out of the
/// JSON, so an absent field and a JSON `null` stay distinct). For [`NAME_FIELD`] they are strings;
/// for [`WHOLE_OBJECT`] they are whole objects as [`Object::to_json`] gives them, `None` where the
/// object is deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    // "type", as in Object and ObjectDiff, so that `mgha diff` and merge output read alike.
    #[serde(rename = "type")]
    pub type_name: String,
    pub uid: Uid,
    /// The object's name in the provisional merge result (the active's when it has one).
    pub name: String,
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub base: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub active: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub branch: Option<Value>,
}

impl Conflict {
    /// The value on one side.
    pub fn value(&self, side: Side) -> Option<&Value> {
        match side {
            Side::Active => self.active.as_ref(),
            Side::Branch => self.branch.as_ref(),
        }
    }
}

/// A key that is present deserializes to `Some`, even when it holds `null`; serde's default would
/// fold `null` into `None` and lose the difference between "null" and "absent".
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Which rule settled an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Only one side changed the object, or both made the same change.
    Trivial,
    /// Field by field; the result may still carry conflicts.
    Fields,
    /// The sides disagree about the whole object: one [`WHOLE_OBJECT`] conflict.
    Whole,
    /// By the type's plugin; the result may still carry conflicts.
    Plugin,
}

/// A type's own three-way merge, consulted after the trivial cases: plugin types that declare a
/// custom merge (see `crate::plugin`). It must be deterministic, as the rest of the merge is.
pub trait CustomMerge {
    /// The merge of one object of `type_name` (the type on every present side), or `None` when
    /// the type has no merge of its own and its per-field strategies apply.
    fn merge(
        &self,
        type_name: &str,
        base: Option<&Object>,
        active: Option<&Object>,
        branch: Option<&Object>,
    ) -> Option<crate::Result<ObjectMerge>>;
}

/// The merge of one object.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectMerge {
    /// The merged version, `None` when deleted. Where there are conflicts it is provisional: it
    /// holds the active's value in every conflicting field.
    pub result: Option<Object>,
    /// Sorted by field.
    pub conflicts: Vec<Conflict>,
    pub method: Method,
}

/// Merges one object. `schema` gives the per-field strategies; without it (an unknown type)
/// every field is merged with `Replace`.
pub fn merge_object(
    schema: Option<&TypeSchema>,
    base: Option<&Object>,
    active: Option<&Object>,
    branch: Option<&Object>,
) -> ObjectMerge {
    if let Some(side) = three_way(base, active, branch) {
        let result = pick(side, active, branch).cloned();
        return ObjectMerge { result, conflicts: Vec::new(), method: Method::Trivial };
    }
    match (active, branch) {
        (Some(a), Some(b)) if a.type_name == b.type_name => merge_fields(schema, base, a, b),
        _ => whole_conflict(base, active, branch),
    }
}

/// The side whose value a three-way merge takes without looking inside: the side that changed
/// (relative to `base`) when only one did, either when both agree. `None` when both changed,
/// differently.
pub(crate) fn three_way<T: PartialEq + ?Sized>(
    base: Option<&T>,
    active: Option<&T>,
    branch: Option<&T>,
) -> Option<Side> {
    if active == branch || branch == base {
        Some(Side::Active)
    } else if active == base {
        Some(Side::Branch)
    } else {
        None
    }
}

pub(crate) fn pick<T>(side: Side, active: T, branch: T) -> T {
    match side {
        Side::Active => active,
        Side::Branch => branch,
    }
}

/// Delete against modify (or a type clash): keep the active's version until the admin decides.
fn whole_conflict(base: Option<&Object>, active: Option<&Object>, branch: Option<&Object>) -> ObjectMerge {
    // The caller only gets here when at least one of active and branch exists.
    let shown = active.or(branch).or(base);
    let conflicts = shown
        .map(|o| Conflict {
            type_name: o.type_name.clone(),
            uid: o.uid,
            name: o.name.clone(),
            field: WHOLE_OBJECT.to_string(),
            base: base.map(Object::to_json),
            active: active.map(Object::to_json),
            branch: branch.map(Object::to_json),
        })
        .into_iter()
        .collect();
    ObjectMerge { result: active.cloned(), conflicts, method: Method::Whole }
}

/// Both sides hold the object and both changed it: merge the name and every field on its own.
/// An object both sides created is merged against empty fields and no name.
fn merge_fields(schema: Option<&TypeSchema>, base: Option<&Object>, a: &Object, b: &Object) -> ObjectMerge {
    debug_assert_eq!(a.uid, b.uid, "merging two different objects");
    let empty = Fields::new();
    let base_fields = base.map_or(&empty, |o| &o.fields);
    let string = |s: &str| Some(Value::String(s.to_string()));
    let name_side = three_way(base.map(|o| o.name.as_str()), Some(a.name.as_str()), Some(b.name.as_str()));
    let name = pick(name_side.unwrap_or(Side::Active), &a.name, &b.name).clone();
    let conflict = |field: &str, base: Option<Value>, active: Option<Value>, branch: Option<Value>| Conflict {
        type_name: a.type_name.clone(),
        uid: a.uid,
        name: name.clone(),
        field: field.to_string(),
        base,
        active,
        branch,
    };
    let mut conflicts = Vec::new();
    if name_side.is_none() {
        conflicts.push(conflict(NAME_FIELD, base.and_then(|o| string(&o.name)), string(&a.name), string(&b.name)));
    }

    // BTreeSet: fields are visited, and conflicts found, in the same order on every node.
    let keys: BTreeSet<&str> =
        base_fields.keys().chain(a.fields.keys()).chain(b.fields.keys()).map(String::as_str).collect();
    let mut fields = Fields::new();
    for key in keys {
        let strategy = schema.and_then(|s| s.field(key)).map_or(MergeStrategy::Replace, |f| f.merge);
        let (bv, av, rv) = (base_fields.get(key), a.fields.get(key), b.fields.get(key));
        let merged = match merge_value(strategy, bv, av, rv) {
            Merged::Value(v) => v,
            Merged::Conflict => {
                conflicts.push(conflict(key, bv.cloned(), av.cloned(), rv.cloned()));
                av.cloned()
            }
        };
        if let Some(v) = merged {
            fields.insert(key.to_string(), v);
        }
    }
    conflicts.sort_by(|x, y| x.field.cmp(&y.field));
    let result = Object { type_name: a.type_name.clone(), uid: a.uid, name, fields };
    ObjectMerge { result: Some(result), conflicts, method: Method::Fields }
}

/// The merge of every object either side changed since the fork point.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MergeOutcome {
    /// Objects whose merged version differs from the active's, sorted by uid; `None` deletes.
    /// Versions of objects with conflicts are provisional: [`resolve`] gives the final list.
    pub targets: Vec<(Uid, Option<Object>)>,
    /// Sorted by (uid, field).
    pub conflicts: Vec<Conflict>,
    /// Objects settled by the trivial rules.
    pub trivial: usize,
    /// Objects merged field by field or by their plugin (with or without conflicts).
    pub field_merged: usize,
    /// The provisional version of every object with conflicts, sorted by uid, whether or not it
    /// differs from the active's: [`resolve`] starts from it.
    provisional: Vec<(Uid, Option<Object>)>,
}

impl MergeOutcome {
    /// The provisional version of an object with conflicts.
    pub fn provisional(&self, uid: &Uid) -> Option<&Option<Object>> {
        let at = self.provisional.binary_search_by(|(u, _)| u.cmp(uid)).ok()?;
        self.provisional.get(at).map(|(_, o)| o)
    }
}

/// Merges every changed object, given as (uid, base, active, branch) versions, in any order.
///
/// # Panics
/// When a uid appears twice: the caller builds `changed` from a map, so that is a bug.
pub fn merge_states<I>(schemas: &Schemas, changed: I) -> MergeOutcome
where
    I: IntoIterator<Item = (Uid, Option<Object>, Option<Object>, Option<Object>)>,
{
    match merge_all::<_, std::convert::Infallible>(schemas, changed, |_, _, _, _| None) {
        Ok(outcome) => outcome,
        Err(never) => match never {},
    }
}

/// [`merge_states`], with the types' own merges: an error of one (a plugin that traps, runs out
/// of fuel or answers nonsense) fails the whole merge, naming the plugin.
pub fn merge_states_with<I>(schemas: &Schemas, custom: &dyn CustomMerge, changed: I) -> crate::Result<MergeOutcome>
where
    I: IntoIterator<Item = (Uid, Option<Object>, Option<Object>, Option<Object>)>,
{
    merge_all(schemas, changed, |t, b, a, r| custom.merge(t, b, a, r))
}

/// The type's own merge, when it has one and the trivial rules do not settle the object (and
/// every side present holds the same type), else [`merge_object`].
pub fn merge_object_with(
    custom: &dyn CustomMerge,
    schema: Option<&TypeSchema>,
    base: Option<&Object>,
    active: Option<&Object>,
    branch: Option<&Object>,
) -> crate::Result<ObjectMerge> {
    custom_first(schema, base, active, branch, |t, b, a, r| custom.merge(t, b, a, r))
}

fn custom_first<E>(
    schema: Option<&TypeSchema>,
    base: Option<&Object>,
    active: Option<&Object>,
    branch: Option<&Object>,
    custom: impl FnOnce(&str, Option<&Object>, Option<&Object>, Option<&Object>) -> Option<Result<ObjectMerge, E>>,
) -> Result<ObjectMerge, E> {
    if three_way(base, active, branch).is_none() {
        let mut types = [base, active, branch].into_iter().flatten().map(|o| o.type_name.as_str());
        if let Some(first) = types.next() {
            if types.all(|t| t == first) {
                if let Some(merged) = custom(first, base, active, branch) {
                    return merged;
                }
            }
        }
    }
    Ok(merge_object(schema, base, active, branch))
}

#[allow(clippy::type_complexity)]
fn merge_all<I, E>(
    schemas: &Schemas,
    changed: I,
    mut custom: impl FnMut(&str, Option<&Object>, Option<&Object>, Option<&Object>) -> Option<Result<ObjectMerge, E>>,
) -> Result<MergeOutcome, E>
where
    I: IntoIterator<Item = (Uid, Option<Object>, Option<Object>, Option<Object>)>,
{
    let mut inputs: Vec<_> = changed.into_iter().collect();
    inputs.sort_unstable_by_key(|input| input.0);
    assert!(inputs.windows(2).all(|w| w[0].0 != w[1].0), "merge_states: a uid appears twice");

    let mut out = MergeOutcome::default();
    for (uid, base, active, branch) in inputs {
        let type_name = active.as_ref().or(branch.as_ref()).or(base.as_ref()).map(|o| o.type_name.as_str());
        let schema = type_name.and_then(|t| schemas.get(t));
        let merged = custom_first(schema, base.as_ref(), active.as_ref(), branch.as_ref(), &mut custom)?;
        match merged.method {
            Method::Trivial => out.trivial += 1,
            Method::Fields | Method::Plugin => out.field_merged += 1,
            Method::Whole => {}
        }
        if !merged.conflicts.is_empty() {
            out.provisional.push((uid, merged.result.clone()));
            out.conflicts.extend(merged.conflicts);
        }
        if merged.result != active {
            out.targets.push((uid, merged.result));
        }
    }
    Ok(out)
}
