//! Field-level differences between two states, as `mgha diff` shows them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Object, Uid};

/// How an object differs between the two sides of a diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffKind {
    Added,
    Removed,
    Modified,
}

/// One field that differs; `None` means absent on that side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldDiff {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// One object that differs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectDiff {
    #[serde(rename = "type")]
    pub type_name: String,
    pub uid: Uid,
    /// The name on the `to` side (the `from` side for a removal).
    pub name: String,
    /// The name on the `from` side, when the object was renamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_name: Option<String>,
    pub kind: DiffKind,
    pub fields: Vec<FieldDiff>,
}

/// Every object that differs between revisions `from` and `to`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    pub from: u64,
    pub to: u64,
    pub objects: Vec<ObjectDiff>,
}

impl ObjectDiff {
    /// The difference between two versions of one object; `None` when they are equal.
    pub fn between(before: Option<&Object>, after: Option<&Object>) -> Option<ObjectDiff> {
        let (kind, base) = match (before, after) {
            (None, None) => return None,
            (None, Some(a)) => (DiffKind::Added, a),
            (Some(b), None) => (DiffKind::Removed, b),
            (Some(b), Some(a)) if a == b => return None,
            (Some(_), Some(a)) => (DiffKind::Modified, a),
        };
        let empty = serde_json::Map::new();
        let bf = before.map_or(&empty, |o| &o.fields);
        let af = after.map_or(&empty, |o| &o.fields);
        let keys: BTreeSet<&String> = bf.keys().chain(af.keys()).collect();
        let fields = keys
            .into_iter()
            .filter(|k| bf.get(*k) != af.get(*k))
            .map(|k| FieldDiff { field: k.clone(), before: bf.get(k).cloned(), after: af.get(k).cloned() })
            .collect();
        let old_name = match (before, after) {
            (Some(b), Some(a)) if a.name != b.name => Some(b.name.clone()),
            _ => None,
        };
        Some(ObjectDiff {
            type_name: base.type_name.clone(),
            uid: base.uid,
            name: base.name.clone(),
            old_name,
            kind,
            fields,
        })
    }

    /// The same difference seen the other way round.
    pub fn reversed(&self) -> ObjectDiff {
        let (name, old_name) = match &self.old_name {
            Some(old) => (old.clone(), Some(self.name.clone())),
            None => (self.name.clone(), None),
        };
        ObjectDiff {
            type_name: self.type_name.clone(),
            uid: self.uid,
            name,
            old_name,
            kind: match self.kind {
                DiffKind::Added => DiffKind::Removed,
                DiffKind::Removed => DiffKind::Added,
                DiffKind::Modified => DiffKind::Modified,
            },
            fields: self
                .fields
                .iter()
                .map(|f| FieldDiff { field: f.field.clone(), before: f.after.clone(), after: f.before.clone() })
                .collect(),
        }
    }
}

impl Diff {
    /// Applies this diff to the `from` state, giving the `to` state.
    pub fn apply(&self, state: &mut BTreeMap<Uid, Object>) -> Result<(), String> {
        for d in &self.objects {
            match d.kind {
                DiffKind::Removed => {
                    state.remove(&d.uid).ok_or_else(|| format!("{} is not in the state", d.uid))?;
                }
                DiffKind::Added | DiffKind::Modified => {
                    let obj = match d.kind {
                        DiffKind::Added => {
                            if state.contains_key(&d.uid) {
                                return Err(format!("{} is already in the state", d.uid));
                            }
                            state.entry(d.uid).or_insert_with(|| Object {
                                type_name: d.type_name.clone(),
                                uid: d.uid,
                                name: String::new(),
                                fields: Default::default(),
                            })
                        }
                        _ => state.get_mut(&d.uid).ok_or_else(|| format!("{} is not in the state", d.uid))?,
                    };
                    obj.name = d.name.clone();
                    for f in &d.fields {
                        if obj.fields.get(&f.field) != f.before.as_ref() {
                            return Err(format!("{} field {}: the state does not match the diff", d.uid, f.field));
                        }
                        match &f.after {
                            Some(v) => obj.fields.insert(f.field.clone(), v.clone()),
                            None => obj.fields.remove(&f.field),
                        };
                    }
                }
            }
        }
        Ok(())
    }
}
