//! What the administrator of a damaged node does next. The rule lives here, beside the status
//! document, so that the CLI, libmgha, Python and the status page all say the same thing: a
//! Standby heals by itself; an Active hands its role to a connected, synchronized Standby (by
//! automatic failover when it runs, else by a planned changeover), or, without one, waits for a
//! Standby or is restored from a backup.

use mgha_core::engine::Status;
use mgha_core::Role;
use mgha_sync::SyncStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `recovery` in `GET /v1/status`: present while the node's store is damaged (`damage`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum RecoveryBody {
    /// A Standby: it sets its store aside and heals by a full sync from the Active, by itself.
    Heal,
    /// An Active under automatic failover: it stops renewing its lease, so that the arbiter
    /// elects the synchronized Standby `to`; `mgha changeover --to TO` does it at once. The node
    /// then heals as a Standby.
    Failover { to: String },
    /// An Active without automatic failover: `mgha changeover --to TO` hands the role to that
    /// synchronized Standby, and the node then heals as a Standby of it.
    Changeover { to: String },
    /// An Active with no connected, synchronized Standby: start one (or wait until it is
    /// synchronized) and change over to it, or restore a backup into a new data directory.
    NoStandby,
}

impl RecoveryBody {
    /// The next step for a node with this status, or `None` while its store is not damaged.
    pub fn of(s: &Status) -> Option<RecoveryBody> {
        s.damage.as_ref()?;
        if s.node.role == Role::Standby {
            return Some(RecoveryBody::Heal);
        }
        let heir = s.peers.iter().find(|p| p.connected && p.status == SyncStatus::Synchronized);
        Some(match (heir, &s.failover) {
            (Some(p), Some(_)) => RecoveryBody::Failover { to: p.name.clone() },
            (Some(p), None) => RecoveryBody::Changeover { to: p.name.clone() },
            (None, _) => RecoveryBody::NoStandby,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgha_core::engine::EngineOptions;
    use mgha_core::status::{FailoverMode, FailoverStatus, PeerStatus};
    use mgha_core::NodeState;

    fn peer(name: &str, status: SyncStatus, connected: bool, of: &Status) -> PeerStatus {
        PeerStatus {
            node_id: mgha_core::Uid::new_random(),
            name: name.into(),
            listen: "127.0.0.1:1".into(),
            designation: mgha_core::Designation::Secondary,
            role: Some(Role::Standby),
            epoch: of.node.epoch,
            head: of.head,
            status,
            lag_revisions: 0,
            lag_ms: 0,
            last_contact_ms: 0,
            connected,
            bytes_sent: 0,
            bytes_received: 0,
            apply_error: None,
        }
    }

    #[test]
    fn the_next_step_follows_role_peers_and_failover() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = mgha_sync::create_engine(dir.path(), &NodeState::new_primary("a"), EngineOptions::default())
            .expect("create");
        let mut s = engine.status().expect("status");
        assert_eq!(RecoveryBody::of(&s), None, "no advice while the store is sound");

        s.damage = Some("revision 3: record checksum mismatch".into());
        assert_eq!(RecoveryBody::of(&s), Some(RecoveryBody::NoStandby));
        // A Standby that is not synchronized, or not connected, cannot take the role.
        s.peers = vec![peer("b", SyncStatus::Lagging, true, &s), peer("c", SyncStatus::Synchronized, false, &s)];
        assert_eq!(RecoveryBody::of(&s), Some(RecoveryBody::NoStandby));
        s.peers.push(peer("d", SyncStatus::Synchronized, true, &s));
        assert_eq!(RecoveryBody::of(&s), Some(RecoveryBody::Changeover { to: "d".into() }));
        s.failover = Some(FailoverStatus {
            mode: FailoverMode::Quorum,
            heartbeat_ms: 500,
            failover_after_ms: 3000,
            arbiter: None,
            lease_left_ms: Some(1000),
            waiting: None,
            last_error: None,
        });
        assert_eq!(RecoveryBody::of(&s), Some(RecoveryBody::Failover { to: "d".into() }));
        s.node.role = Role::Standby;
        assert_eq!(RecoveryBody::of(&s), Some(RecoveryBody::Heal));
    }

    #[test]
    fn the_body_is_tagged_by_action() {
        let json = serde_json::to_value(RecoveryBody::Changeover { to: "b".into() }).expect("json");
        assert_eq!(json, serde_json::json!({"action": "changeover", "to": "b"}));
        assert_eq!(
            serde_json::to_value(RecoveryBody::NoStandby).expect("json"),
            serde_json::json!({"action": "no_standby"})
        );
        let back: RecoveryBody = serde_json::from_value(json).expect("parses");
        assert_eq!(back, RecoveryBody::Changeover { to: "b".into() });
    }
}
