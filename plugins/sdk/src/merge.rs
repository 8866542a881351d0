//! Helpers for a plugin's own three-way merge, the same rules the engine applies field by field:
//! a side that did not change yields to the one that did; lists merge as sets; anything else
//! that both sides changed differently is a [`Conflict`]. [`FieldMerge`] walks an object's
//! fields and collects the result and the conflicts.

use serde_json::{Map, Value};

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
    let json = |o: &Option<Object>| o.as_ref().map(object_value);
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

/// An object as a document, as serde would write it (`type`, `uid`, `name`, `fields`).
fn object_value(o: &Object) -> Value {
    let mut map = Map::new();
    map.insert("fields".into(), Value::Object(o.fields.clone()));
    map.insert("name".into(), Value::String(o.name.clone()));
    map.insert("type".into(), Value::String(o.type_name.clone()));
    map.insert("uid".into(), Value::String(o.uid.clone()));
    Value::Object(map)
}

/// Builds the merge of an object both sides hold, field by field.
pub struct FieldMerge<'a> {
    base: Option<&'a Object>,
    active: &'a Object,
    branch: &'a Object,
    fields: Fields,
    conflicts: Vec<Conflict>,
    /// Fields merged by [`FieldMerge::field`]: a handful, so a list.
    done: Vec<String>,
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
            done: Vec::new(),
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
        if !self.done.iter().any(|d| d == field) {
            self.done.push(field.to_string());
        }
        self.merge(field, rule);
        self
    }

    fn merge(
        &mut self,
        field: &str,
        rule: impl FnOnce(Option<&Value>, Option<&Value>, Option<&Value>) -> Result<Option<Value>, ()>,
    ) {
        let (b, a, r) = self.values(field);
        self.merge_values(field, [b, a, r], rule);
    }

    fn merge_values(
        &mut self,
        field: &str,
        [b, a, r]: [Option<&Value>; 3],
        rule: impl FnOnce(Option<&Value>, Option<&Value>, Option<&Value>) -> Result<Option<Value>, ()>,
    ) {
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
    }

    /// Merges every field not merged yet, and the name: a change on both sides to different
    /// values is a conflict.
    pub fn finish(mut self) -> MergeOutput {
        // The three maps walked side by side in key order: every field once, without lookups.
        let no_fields = Fields::new();
        let (base, active, branch) = (self.base.map_or(&no_fields, |o| &o.fields), self.active, self.branch);
        let mut sides = [base.iter().peekable(), active.fields.iter().peekable(), branch.fields.iter().peekable()];
        while let Some(key) = sides.iter_mut().filter_map(|s| s.peek().map(|&(k, _)| k.as_str())).min() {
            let values = sides.each_mut().map(|s| s.next_if(|&(k, _)| k == key).map(|(_, v)| v));
            if !self.done.iter().any(|d| d == key) {
                self.merge_values(key, values, |_, _, _| Err(()));
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(name: &str, fields: Value) -> Object {
        let Value::Object(fields) = fields else { panic!("a map") };
        Object { type_name: "t.t".into(), uid: "u".into(), name: name.into(), fields }
    }

    #[test]
    fn fields_merge_by_rule_by_side_or_as_conflicts() {
        let input = MergeInput {
            type_name: "t.t".into(),
            base: Some(object("n", json!({"list": [1, 2], "a": 1, "b": 1, "gone": 1, "both": 1}))),
            active: Some(object("n", json!({"list": [1, 2, 3], "a": 2, "b": 1, "both": 2, "new": 1}))),
            branch: Some(object("renamed", json!({"list": [2], "a": 1, "b": 3, "gone": 1, "both": 3}))),
        };
        let mut merge = FieldMerge::new(&input).expect("both sides");
        merge.field("list", |b, a, r| set_union(b, a, r).map(Some).ok_or(()));
        let out = merge.finish();
        let result = out.result.expect("a result");
        assert_eq!(result.name, "renamed");
        assert_eq!(
            Value::Object(result.fields),
            json!({"list": [2, 3], "a": 2, "b": 3, "both": 2, "new": 1}),
            "the active's change, the branch's, the active's value where both changed; a field \
             deleted on one side only stays deleted"
        );
        let conflicts: Vec<&str> = out.conflicts.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(conflicts, ["both"]);
        assert_eq!(out.conflicts[0].base, Some(json!(1)));
    }

    #[test]
    fn a_deleted_side_is_a_whole_object_conflict() {
        let o = object("n", json!({"a": 1}));
        let input =
            MergeInput { type_name: "t.t".into(), base: Some(o.clone()), active: Some(o.clone()), branch: None };
        assert!(FieldMerge::new(&input).is_none());
        let out = whole_conflict(&input);
        assert_eq!(out.result, Some(o.clone()));
        assert_eq!(out.conflicts[0].active, Some(serde_json::to_value(&o).expect("serializes")));
        assert_eq!(out.conflicts[0].branch, None);
    }
}
