//! A node's identity and role, persisted in the store's meta table.

use serde::{Deserialize, Serialize};

use crate::model::Uid;

/// Fixed at install: the node that ran `init` is the Primary; nodes that joined are Secondary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Designation {
    Primary,
    Secondary,
}

/// Who may publish: the Active; Standbys are read-only replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Active,
    Standby,
}

/// Identity, designation, role and epoch of this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub node_id: Uid,
    pub name: String,
    pub cluster_id: Uid,
    pub designation: Designation,
    pub role: Role,
    /// A ballot number (see `roles::machine::epoch`): round and the tag of its Active.
    pub epoch: u64,
    /// This node's tag in epochs, unique in the cluster (the Primary is 0).
    #[serde(default)]
    pub tag: u16,
}

impl NodeState {
    /// A fresh Primary: Active in round 1 of a new cluster, tag 0.
    pub fn new_primary(name: &str) -> NodeState {
        NodeState {
            node_id: Uid::new_random(),
            name: name.into(),
            cluster_id: Uid::new_random(),
            designation: Designation::Primary,
            role: Role::Active,
            epoch: crate::roles::machine::epoch::first(0),
            tag: 0,
        }
    }
}

impl std::fmt::Display for Designation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Designation::Primary => "primary",
            Designation::Secondary => "secondary",
        })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Active => "active",
            Role::Standby => "standby",
        })
    }
}
