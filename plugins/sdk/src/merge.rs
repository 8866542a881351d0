//! Helpers for a plugin's own three-way merge, the same rules the engine applies field by field:
//! a side that did not change yields to the one that did; lists merge as sets; anything else
//! that both sides changed differently is a [`Conflict`]. [`FieldMerge`] walks an object's
//! fields and collects the result and the conflicts.

use serde_json::Value;
use std::collections::BTreeSet;

use crate::types::{Conflict, Fields, MergeInput, MergeOutput, Object};

/// One side of a collision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Active,
    Branch,
}

/// The side a three-way merge takes without looking inside: the one that changed when only one
/// did, the active when both agree. `None` when both changed, differently.
pub fn three_way<T: PartialEq + ?Sized>(base: Option<&T>, active: Option<&T>, branch: Option<&T>) -> Option<Side> {
    if active == branch || branch == base {
        Some(Side::Active)
    } else if active == base {
        Some(Side::Branch)
    } else {
        None
    }
}

/// Lists merged as sets: the active's items less those the branch removed, then the branch's
/// additions, without duplicates. An absent or null field is an empty list; `None` when a side
/// holds something other than a list.
pub fn set_union(base: Option<&Value>, active: Option<&Value>, branch: Option<&Value>) -> Option<Value> {
    fn items(v: Option<&Value>) -> Option<&[Value]> {
        match v {
            None | Some(Value::Null) => Some(&[]),
            Some(Value::Array(items)) => Some(items),
            Some(_) => None,
        }
    }
    let (base, active, branch) = (items(base)?, items(active)?, items(branch)?);
    let mut out: Vec<Value> = Vec::with_capacity(active.len() + branch.len());
    for item in active {
        let removed_by_branch = base.contains(item) && !branch.contains(item);
        if !removed_by_branch && !out.contains(item) {
            out.push(item.clone());
        }
    }
    for item in branch {
        if !base.contains(item) && !out.contains(item) {
            out.push(item.clone());
        }
    }
    Some(Value::Array(out))
}

/// A merge answer for delete against modify: keep the active's version until the administrator
/// chooses, with one conflict over the whole object.
pub fn whole_conflict(input: &MergeInput) -> MergeOutput {
    let json = |o: &Option<Object>| o.as_ref().and_then(|o| serde_json::to_value(o).ok());
    MergeOutput {
        result: input.active.clone(),
        conflicts: vec![Conflict {
            field: "*".into(),
            base: json(&input.base),
            active: json(&input.active),
            branch: json(&input.branch),
        }],
    }
}

/// Builds the merge of an object both sides hold, field by field.
pub struct FieldMerge<'a> {
    base: Option<&'a Object>,
    active: &'a Object,
    branch: &'a Object,
    fields: Fields,
    conflicts: Vec<Conflict>,
    done: BTreeSet<String>,
}

impl<'a> FieldMerge<'a> {
    /// `None` unless both sides hold the object (see [`whole_conflict`] for the other cases).
    pub fn new(input: &'a MergeInput) -> Option<FieldMerge<'a>> {
        Some(FieldMerge {
            base: input.base.as_ref(),
            active: input.active.as_ref()?,
            branch: input.branch.as_ref()?,
            fields: Fields::new(),
            conflicts: Vec::new(),
            done: BTreeSet::new(),
        })
    }

    /// The (base, active, branch) values of a field.
    pub fn values(&self, field: &str) -> (Option<&'a Value>, Option<&'a Value>, Option<&'a Value>) {
        (self.base.and_then(|o| o.get(field)), self.active.get(field), self.branch.get(field))
    }

    /// Merges `field` with `rule`, which sees the three values when both sides changed it and
    /// answers the merged value, or `Err(())` for a conflict. `Ok(None)` leaves the field out.
    pub fn field(
        &mut self,
        field: &str,
        rule: impl FnOnce(Option<&Value>, Option<&Value>, Option<&Value>) -> Result<Option<Value>, ()>,
    ) -> &mut Self {
        self.done.insert(field.to_string());
        let (b, a, r) = self.values(field);
        let merged = match three_way(b, a, r) {
            Some(Side::Active) => Ok(a.cloned()),
            Some(Side::Branch) => Ok(r.cloned()),
            None => rule(b, a, r),
        };
        let value = match merged {
            Ok(v) => v,
            Err(()) => {
                self.conflicts.push(Conflict {
                    field: field.into(),
                    base: b.cloned(),
                    active: a.cloned(),
                    branch: r.cloned(),
                });
                a.cloned()
            }
        };
        if let Some(v) = value {
            self.fields.insert(field.to_string(), v);
        }
        self
    }

    /// Merges every field not merged yet, and the name: a change on both sides to different
    /// values is a conflict.
    pub fn finish(mut self) -> MergeOutput {
        let rest: BTreeSet<String> =
            [self.base.map(|o| &o.fields), Some(&self.active.fields), Some(&self.branch.fields)]
                .into_iter()
                .flatten()
                .flat_map(|f| f.keys().cloned())
                .filter(|k| !self.done.contains(k))
                .collect();
        for field in rest {
            self.field(&field, |_, _, _| Err(()));
        }
        let names = (self.base.map(|o| o.name.as_str()), self.active.name.as_str(), self.branch.name.as_str());
        let name = match three_way(names.0, Some(names.1), Some(names.2)) {
            Some(Side::Branch) => names.2,
            Some(Side::Active) => names.1,
            None => {
                let text = |s: &str| Some(Value::String(s.to_string()));
                self.conflicts.push(Conflict {
                    field: "name".into(),
                    base: names.0.and_then(text),
                    active: text(names.1),
                    branch: text(names.2),
                });
                names.1
            }
        };
        let result = Object {
            type_name: self.active.type_name.clone(),
            uid: self.active.uid.clone(),
            name: name.to_string(),
            fields: self.fields,
        };
        MergeOutput { result: Some(result), conflicts: self.conflicts }
    }
}
