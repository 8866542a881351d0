//! Settling the conflicts of a merge: by a side for all of them, or by a resolution file that
//! chooses a side or gives a value per (uid, field), with an optional default side.
//!
//! Resolution only checks that a value fits its place (a name is a name, a whole object is that
//! object); the publish that follows validates fields, references and name uniqueness against the
//! store, as for any other revision.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{present, Conflict, MergeOutcome, Side, NAME_FIELD, WHOLE_OBJECT};
use crate::model::validate::validate_name;
use crate::model::{Object, Uid};

/// How many conflicts an [`MergeError::Unresolved`] message spells out; the error holds them all.
const UNRESOLVED_SHOWN_MAX: usize = 10;

/// What to do with conflicts.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// Take this side in every conflict.
    Prefer(Side),
    /// Per-field choices, then the file's default side for the rest.
    Explicit(ResolutionFile),
}

/// A resolution file:
/// `{"default": "active", "objects": [{"uid": "…", "field": "members", "take": "branch"},
/// {"uid": "…", "field": "ipv4-address", "value": "10.0.0.9"}]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolutionFile {
    /// The side for every conflict that `objects` does not name; without it each must be named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Side>,
    #[serde(default)]
    pub objects: Vec<ObjectResolution>,
}

impl ResolutionFile {
    /// Parses a resolution file from JSON.
    pub fn from_json(text: &str) -> Result<ResolutionFile, MergeError> {
        serde_json::from_str(text).map_err(|e| MergeError::BadFile(e.to_string()))
    }
}

/// The choice for one conflict, named by (uid, field).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawObjectResolution")]
pub struct ObjectResolution {
    pub uid: Uid,
    pub field: String,
    #[serde(flatten)]
    pub choice: Choice,
}

/// A side's value, or a value of the admin's own. A `null` value removes the field (for `*`,
/// deletes the object): the schema treats a null field as absent anyway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Choice {
    Take(Side),
    Value(Value),
}

/// The JSON form, checked into an [`ObjectResolution`]: exactly one of `take` and `value`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObjectResolution {
    uid: Uid,
    field: String,
    #[serde(default)]
    take: Option<Side>,
    #[serde(default, deserialize_with = "present")]
    value: Option<Value>,
}

impl TryFrom<RawObjectResolution> for ObjectResolution {
    type Error = String;
    fn try_from(raw: RawObjectResolution) -> Result<Self, String> {
        let choice = match (raw.take, raw.value) {
            (Some(side), None) => Choice::Take(side),
            (None, Some(value)) => Choice::Value(value),
            (Some(_), Some(_)) => return Err(format!("{} field '{}': give either take or value", raw.uid, raw.field)),
            (None, None) => return Err(format!("{} field '{}': needs take or value", raw.uid, raw.field)),
        };
        Ok(ObjectResolution { uid: raw.uid, field: raw.field, choice })
    }
}

/// Why conflicts could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    #[error("{} conflict(s) left unresolved:{}", conflicts.len(), list(conflicts))]
    Unresolved { conflicts: Vec<Conflict> },
    #[error("the resolution for {uid} field '{field}' names no conflict of this merge")]
    UnknownConflict { uid: Uid, field: String },
    #[error("two resolutions for {uid} field '{field}'")]
    DuplicateResolution { uid: Uid, field: String },
    #[error("the resolution for {uid} field '{field}': {reason}")]
    InvalidValue { uid: Uid, field: String, reason: String },
    #[error("the merge outcome has a conflict on {uid} but no provisional version of it")]
    Inconsistent { uid: Uid },
    #[error("resolution file: {0}")]
    BadFile(String),
}

fn list(conflicts: &[Conflict]) -> String {
    let mut out = String::new();
    for c in conflicts.iter().take(UNRESOLVED_SHOWN_MAX) {
        let _ = write!(out, " {} '{}' ({}) field '{}';", c.type_name, c.name, c.uid, c.field);
    }
    if conflicts.len() > UNRESOLVED_SHOWN_MAX {
        let _ = write!(out, " and {} more", conflicts.len() - UNRESOLVED_SHOWN_MAX);
    }
    out
}

/// Applies `resolution` to every conflict of `outcome` and gives the final versions to publish:
/// the objects whose resolved version differs from the active's, sorted by uid. Fails, changing
/// nothing, when a conflict is left without a choice, or a choice names no conflict or gives a
/// value that does not fit.
pub fn resolve(outcome: &MergeOutcome, resolution: &Resolution) -> Result<Vec<(Uid, Option<Object>)>, MergeError> {
    let (default, named) = match resolution {
        Resolution::Prefer(side) => (Some(*side), &[][..]),
        Resolution::Explicit(file) => (file.default, &file.objects[..]),
    };
    let mut chosen: BTreeMap<(Uid, &str), &Choice> = BTreeMap::new();
    for r in named {
        if chosen.insert((r.uid, r.field.as_str()), &r.choice).is_some() {
            return Err(MergeError::DuplicateResolution { uid: r.uid, field: r.field.clone() });
        }
    }
    let known: BTreeSet<(Uid, &str)> = outcome.conflicts.iter().map(|c| (c.uid, c.field.as_str())).collect();
    if let Some((uid, field)) = chosen.keys().find(|k| !known.contains(*k)) {
        return Err(MergeError::UnknownConflict { uid: *uid, field: field.to_string() });
    }
    let unresolved: Vec<Conflict> = outcome
        .conflicts
        .iter()
        .filter(|c| default.is_none() && !chosen.contains_key(&(c.uid, c.field.as_str())))
        .cloned()
        .collect();
    if !unresolved.is_empty() {
        return Err(MergeError::Unresolved { conflicts: unresolved });
    }

    let mut out: BTreeMap<Uid, Option<Object>> = outcome.targets.iter().cloned().collect();
    // Conflicts are sorted by uid, so each object's conflicts are adjacent.
    for group in outcome.conflicts.chunk_by(|x, y| x.uid == y.uid) {
        let uid = group[0].uid;
        let start = outcome.provisional(&uid).ok_or(MergeError::Inconsistent { uid })?;
        let mut version = start.clone();
        for c in group {
            let choice = chosen.get(&(c.uid, c.field.as_str())).copied();
            let value = match (choice, default) {
                (Some(Choice::Take(side)), _) => c.value(*side).cloned(),
                (Some(Choice::Value(Value::Null)), _) => None,
                (Some(Choice::Value(v)), _) => Some(v.clone()),
                (None, Some(side)) => c.value(side).cloned(),
                // Checked above: every conflict has a choice or a default.
                (None, None) => return Err(MergeError::Unresolved { conflicts: vec![c.clone()] }),
            };
            apply(&mut version, c, value)?;
        }
        // A provisional version that is a target differs from the active's outside its
        // conflicting fields, which resolution leaves alone: it stays a target. Otherwise it
        // equals the active's, and becomes a target only if the choices changed it.
        if out.contains_key(&uid) || version != *start {
            out.insert(uid, version);
        }
    }
    Ok(out.into_iter().collect())
}

/// Sets the conflicting field of `version` to the chosen value (`None`: absent).
fn apply(version: &mut Option<Object>, c: &Conflict, value: Option<Value>) -> Result<(), MergeError> {
    let invalid = |reason: String| MergeError::InvalidValue { uid: c.uid, field: c.field.clone(), reason };
    if c.field == WHOLE_OBJECT {
        *version = match value {
            None => None,
            Some(json) => {
                let o: Object = serde_json::from_value(json).map_err(|e| invalid(format!("not an object: {e}")))?;
                if o.uid != c.uid || o.type_name != c.type_name {
                    return Err(invalid(format!("the object must keep uid {} and type {}", c.uid, c.type_name)));
                }
                Some(o)
            }
        };
        return Ok(());
    }
    let Some(object) = version.as_mut() else {
        return Err(MergeError::Inconsistent { uid: c.uid });
    };
    if c.field == NAME_FIELD {
        let Some(Value::String(name)) = value else {
            return Err(invalid("a name must be a string".into()));
        };
        validate_name(&c.type_name, &name).map_err(|e| invalid(e.to_string()))?;
        object.name = name;
    } else {
        match value {
            Some(v) => object.fields.insert(c.field.clone(), v),
            None => object.fields.remove(&c.field),
        };
    }
    Ok(())
}
