//! Reference cycles: a group that contains itself through other groups (A -> B -> A) has no
//! meaning for a policy and sends every walk over its members into a loop, so a commit whose
//! final state holds one is refused, naming the objects on the cycle.

use redb::ReadableTable;
use std::collections::{HashMap, HashSet};

use super::get_object;
use crate::error::{Error, Result};
use crate::model::schema::Schemas;
use crate::model::validate::set_references;
use crate::model::{Object, Uid};
use crate::revision::Change;

/// Refuses a commit whose final state (`objects`, with the new versions written) has a cycle
/// along set-valued reference fields through one of the objects `changes` writes. A new cycle
/// must pass through an object whose references changed, so only those are walked from; a
/// cycle closed across two publishes is found by the second.
pub(super) fn check_cycles(
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    schemas: &Schemas,
    changes: &[Change],
) -> Result<()> {
    // Objects fully walked and on no cycle: the graph does not change during the walk.
    let mut clear: HashSet<Uid> = HashSet::new();
    for change in changes {
        let Some(after) = &change.after else { continue };
        if clear.contains(&change.uid) {
            continue;
        }
        // The version just written, as it is in memory: an object with no set-valued reference
        // (a host, most of what a revision writes) is on no cycle, and is not read back.
        let targets = targets_of(schemas, after);
        if targets.is_empty() {
            clear.insert(change.uid);
            continue;
        }
        let label = format!("{} '{}'", after.type_name, after.name);
        walk(objects, schemas, change.uid, label, targets, &mut clear)?;
    }
    Ok(())
}

/// The uids `object` refers to from set-valued fields.
fn targets_of(schemas: &Schemas, object: &Object) -> Vec<Uid> {
    match schemas.get(&object.type_name) {
        Some(schema) => set_references(schema, &object.fields).into_iter().map(|(_, u)| u).collect(),
        None => Vec::new(),
    }
}

/// The uids `uid` refers to from set-valued fields, with how to name it.
fn edges(
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    schemas: &Schemas,
    uid: &Uid,
) -> Result<(String, Vec<Uid>)> {
    let Some(object) = get_object(objects, uid)? else {
        return Ok((uid.to_string(), Vec::new()));
    };
    Ok((format!("{} '{}'", object.type_name, object.name), targets_of(schemas, &object)))
}

/// Depth-first walk from `start` (named `label`, referring to `targets`) with an explicit stack
/// (a deep chain of groups must not overflow the thread's stack).
fn walk(
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    schemas: &Schemas,
    start: Uid,
    label: String,
    targets: Vec<Uid>,
    clear: &mut HashSet<Uid>,
) -> Result<()> {
    struct Frame {
        uid: Uid,
        label: String,
        targets: Vec<Uid>,
        next: usize,
    }
    let mut on_path: HashMap<Uid, usize> = HashMap::new();
    let mut stack = vec![Frame { uid: start, label, targets, next: 0 }];
    on_path.insert(start, 0);
    while let Some(top) = stack.last_mut() {
        let Some(&target) = top.targets.get(top.next) else {
            clear.insert(top.uid);
            on_path.remove(&top.uid);
            stack.pop();
            continue;
        };
        top.next += 1;
        if let Some(&at) = on_path.get(&target) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|f| f.label.clone()).collect();
            cycle.push(stack[at].label.clone());
            return Err(Error::ReferenceCycle { cycle });
        }
        if clear.contains(&target) {
            continue;
        }
        let (label, targets) = edges(objects, schemas, &target)?;
        on_path.insert(target, stack.len());
        stack.push(Frame { uid: target, label, targets, next: 0 });
    }
    Ok(())
}
