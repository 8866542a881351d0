//! The admin API's bodies for roles: changeover, promotion, and collision branches (list, diff,
//! resolve). Like the rest of `crate::contract` they mirror core types where one exists
//! (`CollisionDiff`, `Conflict`), and the tests below pin that the core's JSON parses as the
//! mirror; request bodies and the branch summary are the API's own shapes.

use mgha_core::collision::{CollisionDiff, Resolved};
use mgha_core::merge::{Conflict, Side};
use mgha_core::store::{Branch, BranchResolution};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{HeadBody, ObjectDiffBody, RefName, RevisionInfoBody};
use std::collections::BTreeMap;

/// `POST /v1/changeover`: `{"to": "b"}` for a planned changeover, `{"force": true}` for a forced
/// one (on a Standby). Exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeoverRequest {
    /// The member to hand the Active role to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Make this Standby the Active at once, without the current Active.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// What a changeover did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeoverBody {
    /// The name of the node that is now the Active.
    pub active: String,
    /// Its epoch (a ballot number: `round << 16 | tag`).
    pub epoch: u64,
    /// Whether it was a forced changeover.
    pub forced: bool,
    /// How long the changeover took, in milliseconds.
    pub took_ms: u64,
}

/// A collision branch: revisions an old Active published after the fork point with the
/// current history, kept on the node that detected them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollisionBody {
    pub id: u64,
    /// The node that published the branch.
    pub node_id: String,
    pub node: String,
    /// The last revision both histories share.
    pub fork: HeadBody,
    /// The branch's newest revision.
    pub head: HeadBody,
    /// How many revisions the branch holds.
    pub revisions: usize,
    /// The branch's revisions, oldest first, without their changes.
    pub headers: Vec<RevisionInfoBody>,
    /// When it was detected, in Unix milliseconds.
    pub detected_ms: u64,
    /// `open` or `resolved`.
    pub status: String,
    /// How it was resolved; null while open.
    pub resolution: Option<ResolutionBody>,
    /// When it was resolved, in Unix milliseconds; null while open.
    pub resolved_ms: Option<u64>,
}

/// How a branch was resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolutionBody {
    /// `kept-active`, `took-branch` or `merged`.
    pub how: String,
    /// The revision the resolution published; null for `kept-active`.
    pub seq: Option<u64>,
    /// The conflicts a merge settled; 0 otherwise.
    pub conflicts: usize,
}

/// `GET /v1/collisions`: every branch this node keeps, resolved ones included, oldest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CollisionList {
    pub collisions: Vec<CollisionBody>,
}

/// A field both sides changed in ways a merge cannot combine. A side's value is left out where
/// the field is absent on that side (null is a value). For the field `name` the values are
/// names; for `*` (one side deleted the object, the other changed it) whole objects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConflictBody {
    #[serde(rename = "type")]
    pub type_name: String,
    pub uid: String,
    pub name: String,
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub base: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub active: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub branch: Option<Value>,
}

/// A key that is present is `Some`, even when it holds null, so null and absent stay apart.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `GET /v1/collisions/{id}/diff`: what the branch and the Active each changed since the fork,
/// field by field, and the conflicts a merge would leave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollisionDiffBody {
    pub branch: u64,
    /// The fork revision.
    pub fork: u64,
    /// From the fork to the branch's head.
    pub branch_changes: Vec<ObjectDiffBody>,
    /// From the fork to the Active's head.
    pub active_changes: Vec<ObjectDiffBody>,
    pub conflicts: Vec<ConflictBody>,
    /// The type and name of each object the changes and conflicts reference, by uid (as in
    /// [`DiffBody::refs`](super::DiffBody::refs)).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refs: BTreeMap<String, RefName>,
}

/// A side of a collision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SideBody {
    Active,
    Branch,
}

impl From<SideBody> for Side {
    fn from(s: SideBody) -> Side {
        match s {
            SideBody::Active => Side::Active,
            SideBody::Branch => Side::Branch,
        }
    }
}

/// `POST /v1/collisions/{id}/resolve`: `{"keep": "active"}`, `{"keep": "branch"}`, or
/// `{"merge": {...}}`. Exactly one of the two keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// Keep one side's state whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<SideBody>,
    /// A three-way merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeRequest>,
}

/// How a merge settles its conflicts: a side for all, a resolution file (docs/roles.md), or
/// both (the side then stands for the file's `default` when it names none). Neither: the merge
/// must have no conflicts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer: Option<SideBody>,
    /// `{"default": "active", "objects": [{"uid", "field", "take" | "value"}]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub resolutions: Option<Value>,
}

/// What a resolution did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolvedBody {
    pub branch: u64,
    /// `kept-active`, `took-branch` or `merged`.
    pub how: String,
    /// The revision published, if any (keeping the Active's state publishes nothing, and so
    /// does a branch or merge that leaves the state as it is).
    pub revision: Option<RevisionInfoBody>,
    /// Conflicts settled by the merge's choices.
    pub conflicts_resolved: usize,
}

/// The name of a resolution, in the API and in `collision show`.
pub fn resolution_name(r: &BranchResolution) -> &'static str {
    match r {
        BranchResolution::KeptActive => "kept-active",
        BranchResolution::TookBranch { .. } => "took-branch",
        BranchResolution::Merged { .. } => "merged",
    }
}

impl From<&BranchResolution> for ResolutionBody {
    fn from(r: &BranchResolution) -> Self {
        let (seq, conflicts) = match r {
            BranchResolution::KeptActive => (None, 0),
            BranchResolution::TookBranch { seq } => (Some(*seq), 0),
            BranchResolution::Merged { seq, conflicts } => (Some(*seq), *conflicts),
        };
        // A resolution that changed nothing records revision 0: there is none to point at.
        ResolutionBody { how: resolution_name(r).into(), seq: seq.filter(|s| *s > 0), conflicts }
    }
}

impl From<&Branch> for CollisionBody {
    fn from(b: &Branch) -> Self {
        CollisionBody {
            id: b.id,
            node_id: b.node_id.to_string(),
            node: b.node_name.clone(),
            fork: (&b.fork).into(),
            head: (&b.head()).into(),
            revisions: b.revisions.len(),
            headers: b.revisions.iter().map(|r| RevisionInfoBody::from(&r.info())).collect(),
            detected_ms: b.detected_ms,
            status: if b.resolved.is_some() { "resolved" } else { "open" }.into(),
            resolution: b.resolved.as_ref().map(ResolutionBody::from),
            resolved_ms: b.resolved_ms,
        }
    }
}

impl From<&Conflict> for ConflictBody {
    fn from(c: &Conflict) -> Self {
        ConflictBody {
            type_name: c.type_name.clone(),
            uid: c.uid.to_string(),
            name: c.name.clone(),
            field: c.field.clone(),
            base: c.base.clone(),
            active: c.active.clone(),
            branch: c.branch.clone(),
        }
    }
}

impl From<&CollisionDiff> for CollisionDiffBody {
    fn from(d: &CollisionDiff) -> Self {
        CollisionDiffBody {
            branch: d.branch,
            fork: d.fork,
            branch_changes: d.branch_changes.iter().map(ObjectDiffBody::from).collect(),
            active_changes: d.active_changes.iter().map(ObjectDiffBody::from).collect(),
            conflicts: d.conflicts.iter().map(ConflictBody::from).collect(),
            refs: BTreeMap::new(),
        }
    }
}

impl ResolvedBody {
    /// The body of a core resolution, with the revision it published (if any).
    pub fn new(r: &Resolved, how: &str, revision: Option<RevisionInfoBody>) -> ResolvedBody {
        ResolvedBody { branch: r.branch, how: how.into(), revision, conflicts_resolved: r.conflicts_resolved }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_keep_null_apart_from_absent() {
        let text = r#"{"type": "host", "uid": "u", "name": "web1", "field": "comments", "base": null, "active": "a"}"#;
        let c: ConflictBody = serde_json::from_str(text).expect("parses");
        assert_eq!(c.base, Some(Value::Null));
        assert_eq!(c.branch, None);
        let back = serde_json::to_value(&c).expect("json");
        assert_eq!(back, serde_json::from_str::<Value>(text).expect("json"));
    }

    #[test]
    fn core_conflicts_and_sides_parse_as_their_mirrors() {
        let c = Conflict {
            type_name: "host".into(),
            uid: mgha_core::Uid::new_random(),
            name: "web1".into(),
            field: "ipv4-address".into(),
            base: Some(Value::from("10.0.0.1")),
            active: None,
            branch: Some(Value::Null),
        };
        let core = serde_json::to_value(&c).expect("json");
        let mirror: ConflictBody = serde_json::from_value(core.clone()).expect("core JSON parses as the mirror");
        assert_eq!(serde_json::to_value(&mirror).expect("json"), core);
        assert_eq!(serde_json::to_value(ConflictBody::from(&c)).expect("json"), core);
        for side in [SideBody::Active, SideBody::Branch] {
            let core = serde_json::to_value(Side::from(side)).expect("json");
            assert_eq!(serde_json::to_value(side).expect("json"), core);
        }
    }

    #[test]
    fn requests_refuse_unknown_keys() {
        assert!(serde_json::from_str::<ChangeoverRequest>(r#"{"to": "b", "forse": true}"#).is_err());
        assert!(serde_json::from_str::<ResolveRequest>(r#"{"keep": "both"}"#).is_err());
        let r: ResolveRequest =
            serde_json::from_str(r#"{"merge": {"prefer": "branch"}}"#).expect("a merge request parses");
        assert_eq!(r.merge.and_then(|m| m.prefer), Some(SideBody::Branch));
    }
}
