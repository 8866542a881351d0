//! The three-way merge of one field value by its schema's [`MergeStrategy`]: set union for lists
//! of members, larger or smaller value for thresholds, and a conflict for everything else that both
//! sides changed differently.
//!
//! Set union runs on hashed membership, so a group of many thousands of members merges in linear
//! time; only membership is hashed, the output order comes from the input lists.

use serde_json::Value;
use std::cmp::Ordering;
use std::collections::HashSet;

use super::{pick, three_way, Side};
use crate::model::object::encode_value;
use crate::model::MergeStrategy;

/// The merge of one field.
#[derive(Debug, PartialEq)]
pub(super) enum Merged {
    /// The merged value; `None` leaves the field out.
    Value(Option<Value>),
    /// Both sides changed it and the strategy cannot combine the two.
    Conflict,
}

/// Merges one field; `None` is an absent field.
pub(super) fn merge_value(
    strategy: MergeStrategy,
    base: Option<&Value>,
    active: Option<&Value>,
    branch: Option<&Value>,
) -> Merged {
    if let Some(side) = three_way(base, active, branch) {
        return Merged::Value(pick(side, active, branch).cloned());
    }
    match strategy {
        MergeStrategy::Replace => Merged::Conflict,
        MergeStrategy::SetUnion => set_union(base, active, branch).map_or(Merged::Conflict, Merged::Value),
        MergeStrategy::Max => extreme(active, branch, Ordering::Greater),
        MergeStrategy::Min => extreme(active, branch, Ordering::Less),
    }
}

/// The identity of a list item. Strings (uids, tags: nearly every member) are borrowed; anything
/// else is keyed by its canonical encoding, so equal documents are equal keys.
#[derive(PartialEq, Eq, Hash)]
enum Key<'a> {
    Str(&'a str),
    Encoded(Vec<u8>),
}

fn key(item: &Value) -> Key<'_> {
    match item {
        Value::String(s) => Key::Str(s),
        other => {
            let mut buf = Vec::new();
            encode_value(&mut buf, other);
            Key::Encoded(buf)
        }
    }
}

/// The items of a list field; an absent or null field is an empty list. `None` when the value is
/// not a list, which set union cannot merge.
fn items(v: Option<&Value>) -> Option<&[Value]> {
    match v {
        None | Some(Value::Null) => Some(&[]),
        Some(Value::Array(items)) => Some(items),
        Some(_) => None,
    }
}

/// The active's items in its order, less those the branch removed, then the branch's additions in
/// its order, without duplicates. `None` when a side is not a list. The field stays absent when
/// the union is empty and one side had dropped the field, so that dropping it on one side and
/// emptying it on the other merge the same whichever side is which.
fn set_union(base: Option<&Value>, active: Option<&Value>, branch: Option<&Value>) -> Option<Option<Value>> {
    let (base_items, active_items, branch_items) = (items(base)?, items(active)?, items(branch)?);
    let in_base: HashSet<Key> = base_items.iter().map(key).collect();
    let in_branch: HashSet<Key> = branch_items.iter().map(key).collect();
    let mut seen: HashSet<Key> = HashSet::with_capacity(active_items.len() + branch_items.len());
    let mut out = Vec::with_capacity(active_items.len() + branch_items.len());
    for item in active_items {
        let k = key(item);
        let removed_by_branch = in_base.contains(&k) && !in_branch.contains(&k);
        if !removed_by_branch && seen.insert(k) {
            out.push(item.clone());
        }
    }
    for item in branch_items {
        let k = key(item);
        // Items already in base are not additions: if the active dropped one, it stays dropped.
        if !in_base.contains(&k) && seen.insert(k) {
            out.push(item.clone());
        }
    }
    let dropped = |v: Option<&Value>| v.is_none_or(Value::is_null);
    if out.is_empty() && (dropped(active) || dropped(branch)) {
        Some(None)
    } else {
        Some(Some(Value::Array(out)))
    }
}

/// The larger (`want` = Greater) or smaller (Less) of two integers or two strings; a conflict
/// when the two cannot be compared (absent, mixed kinds, floats, documents).
fn extreme(active: Option<&Value>, branch: Option<&Value>, want: Ordering) -> Merged {
    let (Some(a), Some(b)) = (active, branch) else {
        return Merged::Conflict;
    };
    let Some(order) = compare(a, b) else {
        return Merged::Conflict;
    };
    let side = if order == want.reverse() { Side::Branch } else { Side::Active };
    Merged::Value(Some(pick(side, a, b).clone()))
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    // i128 holds every i64 and every u64, so a negative and a huge unsigned still compare.
    let int = |v: &Value| v.as_i64().map(i128::from).or_else(|| v.as_u64().map(i128::from));
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => Some(int(a)?.cmp(&int(b)?)),
        // Byte order: ISO dates and zero-padded values compare as their meaning does.
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => None,
    }
}
