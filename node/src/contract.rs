//! The JSON documents every front end speaks: the admin API sends them, the CLI reads them, the
//! C ABI returns them, and the OpenAPI document describes them. They mirror the core types field
//! for field; the tests below pin that the JSON of each core type parses as its mirror, so the
//! document cannot drift from what is on the wire. `roles` holds the bodies of changeover,
//! promotion and collision branches, `archive` those of the archive of a data directory,
//! `domains` those of a cluster's domains,
//! `recovery` the next step a damaged node's status names.

mod archive;
mod domains;
mod recovery;
mod roles;

pub use archive::*;
pub use domains::*;
pub use recovery::RecoveryBody;
pub use roles::*;

use mgha_core::engine::Status;
use mgha_core::{Change, Diff, FieldDiff, Head, NodeState, Object, ObjectDiff, Revision, RevisionInfo};
use mgha_sync::state::PeerStatus;
use mgha_sync::SyncStatus;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// An error: a stable code (kebab-case `ErrorCode`, or `unauthorized`) and a message naming
/// the object, field, revision or file at fault.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    #[schema(example = "validation")]
    pub code: String,
    pub message: String,
}

/// A node's identity, designation, role and epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeBody {
    pub node_id: String,
    pub name: String,
    pub cluster_id: String,
    /// `primary` or `secondary`.
    pub designation: String,
    /// `active` or `standby`.
    pub role: String,
    /// A ballot number: `round << 16 | tag` of the node that became Active in it.
    pub epoch: u64,
    /// This node's tag in epochs, unique in the cluster (the Primary is 0).
    pub tag: u16,
}

/// A point in history: revision number, revision id and the state hash after it (hex).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadBody {
    pub seq: u64,
    pub id: String,
    pub state_hash: String,
}

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    pub node: NodeBody,
    pub head: HeadBody,
    /// The newest purged revision (seq 0 when nothing was purged).
    pub floor: HeadBody,
    pub objects: u64,
    pub sessions: usize,
    /// The Active this node follows, when it is a Standby that knows it.
    pub active: Option<String>,
    pub peers: Vec<PeerBody>,
    /// Collision branches kept on this node and not resolved yet (`GET /v1/collisions`).
    #[serde(default)]
    pub collisions_open: usize,
    /// The damage the last full check (`mgha check`) or background scrub found in this node's
    /// store, naming the record; absent while none was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage: Option<String>,
    /// While `damage` is present: what to do next (`action`: `heal`, `failover`, `changeover`
    /// with the Standby `to` hand the role to, or `no_standby`), the same for every front end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryBody>,
    /// Where a damaged store of this node was set aside (`DIR/archive/…-damaged.redb`) before a
    /// full sync from the Active replaced it; absent when none was since the node started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
    /// Why this node's store cannot write, from a failed commit (a full disk, say) until a
    /// commit succeeds again; absent while it writes. An Active under automatic failover does
    /// not renew its lease meanwhile, and a Standby does not take over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_fault: Option<StoreFaultBody>,
    /// Automatic failover (absent in manual mode): `mode`, `heartbeat_ms`, `failover_after_ms`,
    /// `arbiter` (`kind`, `has_quorum`, `holder`, `members` with `name`, `address`, `healthy`,
    /// `leader`, `detail`), `lease_left_ms` (an Active), `waiting` (a Standby), `last_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub failover: Option<mgha_sync::failover::FailoverStatus>,
    /// The settings the node runs with, after defaults (absent where a front end serves an
    /// engine without a node around it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SettingsBody>,
    /// The domain this status is of (`global`: the cluster's first domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// The effective settings of a running node: its config file's keys after defaults, as the one
/// parser ([`NodeConfig`](crate::config::NodeConfig)) read them, whichever front end started the
/// node. The daemon-only keys (`admin`, `log`) and the node's identity are left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    pub listen: Option<String>,
    pub advertise: Option<String>,
    pub retain_revisions: Option<u64>,
    pub sync_standbys: usize,
    pub sync_timeout_ms: u64,
    pub heartbeat_ms: u64,
    pub peer_timeout_ms: u64,
    pub changeover_timeout_ms: u64,
    /// `manual`, `quorum` or `etcd`.
    pub failover: String,
    pub failover_after_ms: u64,
    pub max_lag_revisions: u64,
    pub quorum_listen: Option<String>,
    pub quorum_members: Vec<String>,
    pub etcd_endpoints: Vec<String>,
    pub etcd_prefix: Option<String>,
}

impl From<&crate::config::NodeConfig> for SettingsBody {
    fn from(c: &crate::config::NodeConfig) -> Self {
        SettingsBody {
            listen: c.listen.clone(),
            advertise: c.advertise.clone(),
            retain_revisions: c.retain_revisions,
            sync_standbys: c.sync_standbys,
            sync_timeout_ms: c.sync_timeout_ms,
            heartbeat_ms: c.heartbeat_ms,
            peer_timeout_ms: c.peer_timeout_ms,
            changeover_timeout_ms: c.changeover_timeout_ms,
            failover: c.failover.to_string(),
            failover_after_ms: c.failover_after_ms,
            max_lag_revisions: c.max_lag_revisions,
            quorum_listen: c.quorum_listen.clone(),
            quorum_members: c.quorum_members.clone(),
            etcd_endpoints: c.etcd_endpoints.clone(),
            etcd_prefix: c.etcd_prefix.clone(),
        }
    }
}

/// `GET /v1/check`: what a full integrity check of the store verified. A damaged store is an
/// error with code `corrupt` naming the first damaged record instead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// The head, whose state hash was recomputed from every object.
    pub head: HeadBody,
    /// Objects verified against their seals, encodings and name index.
    pub objects: u64,
    /// Retained revisions verified against their seals and the hash chain.
    pub revisions: u64,
}

impl From<&mgha_core::store::CheckReport> for CheckBody {
    fn from(r: &mgha_core::store::CheckReport) -> Self {
        CheckBody { head: (&r.head).into(), objects: r.objects, revisions: r.revisions }
    }
}

/// One peer as this node sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerBody {
    pub node_id: String,
    pub name: String,
    /// The peer's sync address.
    pub listen: String,
    pub designation: String,
    /// `active` or `standby`; null when not known yet.
    pub role: Option<String>,
    pub epoch: u64,
    pub head: HeadBody,
    /// `never-synchronized`, `synchronized`, `lagging`, `advanced`, `collision`, `unreachable`
    /// or `apply-failing` (the Standby receives revisions but cannot store them).
    pub status: String,
    /// Revisions the peer is behind this node's head.
    pub lag_revisions: u64,
    /// Age of the oldest revision the peer has not acknowledged.
    pub lag_ms: u64,
    /// Unix milliseconds of the last frame from the peer; 0 when never.
    pub last_contact_ms: u64,
    pub connected: bool,
    /// Bytes of sync traffic sent to the peer since this node started (all connections).
    #[serde(default)]
    pub bytes_sent: u64,
    /// Bytes of sync traffic received from the peer since this node started.
    #[serde(default)]
    pub bytes_received: u64,
    /// While `status` is `apply-failing`: why the Standby cannot apply ("disk full: ...").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_error: Option<String>,
}

/// Why a node's store cannot write (`GET /v1/status`, `store_fault`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreFaultBody {
    /// `disk-full` (ENOSPC, EDQUOT) or `io` (any other I/O error).
    pub kind: String,
    /// The failed write's error.
    pub error: String,
    /// Unix milliseconds of the first failure since the store last wrote.
    pub since_ms: u64,
    /// The store reopened itself after the failure (reads work, writes are retried); false
    /// while reopening fails too.
    pub reopened: bool,
}

impl From<&mgha_core::status::StoreFault> for StoreFaultBody {
    fn from(f: &mgha_core::status::StoreFault) -> Self {
        StoreFaultBody {
            kind: serde_json::to_value(f.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            error: f.error.clone(),
            since_ms: f.since_ms,
            reopened: f.reopened,
        }
    }
}

/// One object. Reference fields hold uids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectBody {
    #[serde(rename = "type")]
    #[schema(example = "host")]
    pub type_name: String,
    pub uid: String,
    #[schema(example = "web1")]
    pub name: String,
    /// The object's document of fields.
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
}

/// `GET /v1/objects`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ObjectList {
    pub objects: Vec<ObjectBody>,
}

/// A revision without its changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevisionInfoBody {
    pub seq: u64,
    pub id: String,
    pub parent: String,
    pub epoch: u64,
    pub author: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub message: String,
    pub state_hash: String,
    /// How many objects the revision changed.
    pub changes: usize,
}

/// `GET /v1/revisions`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RevisionList {
    pub revisions: Vec<RevisionInfoBody>,
}

/// One object's change within a revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    #[serde(rename = "type")]
    pub type_name: String,
    pub uid: String,
    /// `put` or `delete`.
    pub op: String,
    /// Hash of the object before the change; null when it did not exist.
    pub before: Option<String>,
    /// The object after the change; null for a delete.
    pub after: Option<ObjectBody>,
}

/// `GET /v1/revisions/{seq}`: a revision with its changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevisionBody {
    pub seq: u64,
    pub id: String,
    pub parent: String,
    pub epoch: u64,
    pub author: String,
    pub time_ms: u64,
    pub message: String,
    pub state_hash: String,
    pub changes: Vec<ChangeBody>,
    /// The type and name of each object the changes' fields reference, by uid (as in
    /// [`DiffBody::refs`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refs: BTreeMap<String, RefName>,
}

/// One field that differs; null means absent on that side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldDiffBody {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// One object that differs between two revisions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectDiffBody {
    #[serde(rename = "type")]
    pub type_name: String,
    pub uid: String,
    pub name: String,
    /// The name on the `from` side, when the object was renamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_name: Option<String>,
    /// `added`, `removed` or `modified`.
    pub kind: String,
    pub fields: Vec<FieldDiffBody>,
}

/// `GET /v1/diff`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffBody {
    pub from: u64,
    pub to: u64,
    pub objects: Vec<ObjectDiffBody>,
    /// The type and name of each object the fields above reference, by uid (the store keeps
    /// references as uids). Absent when nothing is referenced; a uid of an object that is gone
    /// has no entry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refs: BTreeMap<String, RefName>,
}

/// A referenced object, named: what a front end shows instead of its uid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefName {
    #[serde(rename = "type")]
    #[schema(example = "host")]
    pub type_name: String,
    #[schema(example = "web1")]
    pub name: String,
}

/// A put or delete of one object, as an administrator writes it (docs/changeset.md). The
/// daemon parses it with the core's own strict parser; this mirror only describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChangeInputBody {
    Put {
        #[serde(rename = "type")]
        type_name: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<String>,
        #[serde(default)]
        #[schema(value_type = Object)]
        fields: Map<String, Value>,
    },
    Delete {
        #[serde(rename = "type")]
        type_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<String>,
    },
}

/// `POST /v1/publish`: one changeset, published as one revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeSetBody {
    #[serde(default)]
    pub message: String,
    pub changes: Vec<ChangeInputBody>,
}

/// `POST /v1/revert`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevertRequest {
    /// The revision whose state the new revision restores.
    pub to: u64,
}

/// `POST /v1/sessions`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionOpenRequest {
    pub author: String,
}

/// The id of a newly opened session.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionCreated {
    pub id: u64,
}

/// `GET /v1/sessions/{id}`: the changes staged so far.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionBody {
    pub id: u64,
    pub changes: Vec<ChangeInputBody>,
}

/// `POST /v1/sessions/{id}/publish`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionPublishRequest {
    #[serde(default)]
    pub message: String,
}

/// `POST /v1/join-keys`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinKeyRequest {
    /// How long the key stays valid, in milliseconds (default one hour, at most 30 days).
    #[serde(default)]
    pub expires_ms: Option<u64>,
}

/// A one-time join key, for `mgha join --key`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinKeyBody {
    /// `mgha1.<secret>.<CA fingerprint>`; valid once.
    pub key: String,
    /// How long it stays valid, in milliseconds.
    pub expires_ms: u64,
    /// When it expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

/// A current member of the cluster, as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    pub name: String,
    pub node_id: String,
    /// The peer address other members dial.
    pub listen: String,
    /// `primary` or `secondary`.
    pub designation: String,
}

/// The current members this node knows, itself included, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberList {
    pub members: Vec<MemberBody>,
}

impl MemberList {
    /// The member list of the node of `engine`, by name.
    pub fn of(engine: &mgha_core::engine::Engine) -> mgha_core::Result<MemberList> {
        let mut members: Vec<MemberBody> = mgha_sync::membership::members(&engine.store())?
            .into_iter()
            .map(|m| MemberBody {
                name: m.name,
                node_id: m.node_id.to_string(),
                listen: m.listen,
                designation: m.designation.to_string(),
            })
            .collect();
        members.sort_by(|a, b| (&a.name, &a.node_id).cmp(&(&b.name, &b.node_id)));
        Ok(MemberList { members })
    }
}

/// A member that was removed from the cluster (`mgha member remove`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRemovedBody {
    /// Its member name, free again for a node that joins with a new key.
    pub name: String,
    /// Its node id, whose certificate every node refuses from now on.
    #[schema(value_type = String)]
    pub node_id: String,
}

impl From<&NodeState> for NodeBody {
    fn from(n: &NodeState) -> Self {
        NodeBody {
            node_id: n.node_id.to_string(),
            name: n.name.clone(),
            cluster_id: n.cluster_id.to_string(),
            designation: n.designation.to_string(),
            role: n.role.to_string(),
            epoch: n.epoch,
            tag: n.tag,
        }
    }
}

impl From<&Head> for HeadBody {
    fn from(h: &Head) -> Self {
        HeadBody { seq: h.seq, id: h.id.to_hex(), state_hash: h.state_hash.to_hex() }
    }
}

impl StatusBody {
    /// The body of a node's status, with the number of its open collision branches.
    pub fn new(s: &Status, collisions_open: usize) -> StatusBody {
        StatusBody {
            node: (&s.node).into(),
            head: (&s.head).into(),
            floor: (&s.floor).into(),
            objects: s.objects,
            sessions: s.sessions,
            active: s.active.clone(),
            peers: s.peers.iter().map(PeerBody::from).collect(),
            collisions_open,
            damage: s.damage.clone(),
            recovery: RecoveryBody::of(s),
            archived: s.archived.clone(),
            store_fault: s.store_fault.as_ref().map(StoreFaultBody::from),
            failover: s.failover.clone(),
            settings: None,
            domain: None,
        }
    }

    /// The status of the node of `engine`, open collision branches counted.
    pub fn of(engine: &mgha_core::Engine) -> mgha_core::Result<StatusBody> {
        let open = engine.collisions()?.iter().filter(|b| b.resolved.is_none()).count();
        Ok(StatusBody::new(&engine.status()?, open))
    }
}

impl From<&PeerStatus> for PeerBody {
    fn from(p: &PeerStatus) -> Self {
        PeerBody {
            node_id: p.node_id.to_string(),
            name: p.name.clone(),
            listen: p.listen.clone(),
            designation: p.designation.to_string(),
            role: p.role.map(|r| r.to_string()),
            epoch: p.epoch,
            head: (&p.head).into(),
            status: sync_status_name(p.status),
            lag_revisions: p.lag_revisions,
            lag_ms: p.lag_ms,
            last_contact_ms: p.last_contact_ms,
            connected: p.connected,
            bytes_sent: p.bytes_sent,
            bytes_received: p.bytes_received,
            apply_error: p.apply_error.clone(),
        }
    }
}

/// A sync status's name in the API and metrics: the core's serde name (`never-synchronized`),
/// which `SyncStatus::as_str` (for people) is not.
pub fn sync_status_name(status: SyncStatus) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

impl From<&Object> for ObjectBody {
    fn from(o: &Object) -> Self {
        ObjectBody {
            type_name: o.type_name.clone(),
            uid: o.uid.to_string(),
            name: o.name.clone(),
            fields: o.fields.clone(),
        }
    }
}

impl From<&RevisionInfo> for RevisionInfoBody {
    fn from(r: &RevisionInfo) -> Self {
        RevisionInfoBody {
            seq: r.seq,
            id: r.id.to_hex(),
            parent: r.parent.to_hex(),
            epoch: r.epoch,
            author: r.author.clone(),
            time_ms: r.time_ms,
            message: r.message.clone(),
            state_hash: r.state_hash.to_hex(),
            changes: r.changes,
        }
    }
}

impl From<&Change> for ChangeBody {
    fn from(c: &Change) -> Self {
        let op = match c.op {
            mgha_core::Op::Put => "put",
            mgha_core::Op::Delete => "delete",
        };
        ChangeBody {
            type_name: c.type_name.clone(),
            uid: c.uid.to_string(),
            op: op.into(),
            before: c.before.map(|h| h.to_hex()),
            after: c.after.as_ref().map(ObjectBody::from),
        }
    }
}

impl From<&Revision> for RevisionBody {
    fn from(r: &Revision) -> Self {
        RevisionBody {
            seq: r.seq,
            id: r.id.to_hex(),
            parent: r.parent.to_hex(),
            epoch: r.epoch,
            author: r.author.clone(),
            time_ms: r.time_ms,
            message: r.message.clone(),
            state_hash: r.state_hash.to_hex(),
            changes: r.changes.iter().map(ChangeBody::from).collect(),
            refs: BTreeMap::new(),
        }
    }
}

impl From<&FieldDiff> for FieldDiffBody {
    fn from(f: &FieldDiff) -> Self {
        FieldDiffBody { field: f.field.clone(), before: f.before.clone(), after: f.after.clone() }
    }
}

impl From<&ObjectDiff> for ObjectDiffBody {
    fn from(d: &ObjectDiff) -> Self {
        let kind = match d.kind {
            mgha_core::DiffKind::Added => "added",
            mgha_core::DiffKind::Removed => "removed",
            mgha_core::DiffKind::Modified => "modified",
        };
        ObjectDiffBody {
            type_name: d.type_name.clone(),
            uid: d.uid.to_string(),
            name: d.name.clone(),
            old_name: d.old_name.clone(),
            kind: kind.into(),
            fields: d.fields.iter().map(FieldDiffBody::from).collect(),
        }
    }
}

impl From<&Diff> for DiffBody {
    fn from(d: &Diff) -> Self {
        DiffBody {
            from: d.from,
            to: d.to,
            objects: d.objects.iter().map(ObjectDiffBody::from).collect(),
            refs: BTreeMap::new(),
        }
    }
}

/// The mirror of a core change input, through their shared JSON form.
pub fn change_input_body(c: &mgha_core::ChangeInput) -> ChangeInputBody {
    match c.clone() {
        mgha_core::ChangeInput::Put { type_name, name, uid, fields } => {
            ChangeInputBody::Put { type_name, name, uid, fields }
        }
        mgha_core::ChangeInput::Delete { type_name, name, uid } => ChangeInputBody::Delete { type_name, name, uid },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgha_core::engine::EngineOptions;
    use mgha_core::{ChangeSet, NodeState};

    /// Serializes a core value and parses it as its mirror (which refuses unknown keys), then
    /// checks that the mirror built by `From` gives the very same JSON.
    fn same_json<C: Serialize, M: Serialize + serde::de::DeserializeOwned>(core: &C, mirror: &M) {
        let core_json = serde_json::to_value(core).expect("core serializes");
        let parsed: M = serde_json::from_value(core_json.clone()).expect("core JSON parses as the mirror");
        assert_eq!(serde_json::to_value(&parsed).expect("mirror serializes"), core_json);
        assert_eq!(serde_json::to_value(mirror).expect("mirror serializes"), core_json);
    }

    #[test]
    fn mirrors_match_the_core_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = mgha_sync::create_engine(dir.path(), &NodeState::new_primary("n"), EngineOptions::default())
            .expect("create");
        let cs = ChangeSet::from_json(
            br#"{"message": "m", "changes": [
                {"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1"}},
                {"op": "put", "type": "group", "name": "web", "fields": {"members": ["web1"]}}]}"#,
        )
        .expect("changeset");
        let r1 = engine.publish("alice", &cs).expect("publish");
        let cs2 = ChangeSet::from_json(
            br#"{"changes": [{"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.2"}}]}"#,
        )
        .expect("changeset");
        engine.publish("bob", &cs2).expect("publish");

        let status = engine.status().expect("status");
        // The status body adds the count of open collision branches to the core's status.
        let mut body = serde_json::to_value(StatusBody::of(&engine).expect("status")).expect("json");
        assert_eq!(body.as_object_mut().and_then(|m| m.remove("collisions_open")), Some(0.into()));
        assert_eq!(body, serde_json::to_value(&status).expect("json"));
        let parsed: StatusBody = serde_json::from_value(serde_json::to_value(&status).expect("json")).expect("parses");
        assert_eq!(parsed, StatusBody::new(&status, 0));
        same_json(&r1, &RevisionBody::from(&r1));
        same_json(&r1.info(), &RevisionInfoBody::from(&r1.info()));
        let obj = engine.store().get("group", "web").expect("get");
        same_json(&obj, &ObjectBody::from(&obj));
        let diff = engine.store().diff(0, 2).expect("diff");
        same_json(&diff, &DiffBody::from(&diff));
        let diff = engine.store().diff(1, 2).expect("diff");
        same_json(&diff, &DiffBody::from(&diff));
        same_json(
            &cs,
            &ChangeSetBody { message: cs.message.clone(), changes: cs.changes.iter().map(change_input_body).collect() },
        );
    }

    #[test]
    fn documented_changeset_parses_as_mirror_and_core() {
        let text = br#"{"message": "web tier", "changes": [
            {"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1"}},
            {"op": "delete", "type": "host", "name": "old-host"}]}"#;
        let core = ChangeSet::from_json(text).expect("core parses");
        let mirror: ChangeSetBody = serde_json::from_slice(text).expect("mirror parses");
        assert_eq!(serde_json::to_value(&core).expect("json"), serde_json::to_value(&mirror).expect("json"));
    }
}
