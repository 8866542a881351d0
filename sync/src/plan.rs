//! The pure decision of how a peer relates to the Active's history, and what to send it.
//! No I/O here: the runtime gathers the facts (heads, ids at a height) and acts on the answer,
//! so every case is tested without sockets.

use mgha_core::model::Hash;
use mgha_core::revision::Head;
pub use mgha_core::status::SyncStatus;

/// What the Active knows of its own revision at the peer's height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OurIdAt {
    /// Our revision id at that height.
    Known(Hash),
    /// That height was purged from our log (at or below the floor, floor excluded).
    Purged,
}

/// What to do for the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to send; stream new revisions as they come.
    Stream,
    /// Send revisions `after + 1 ..= to`, then stream.
    SendRevisions { after: u64, to: u64 },
    /// Stream a full snapshot, then stream.
    FullSync,
    /// The peer is ahead or diverged: send nothing, report it.
    Hold,
}

/// The facts the decision needs.
#[derive(Clone, Copy, Debug)]
pub struct Facts {
    pub ours: Head,
    pub floor: Head,
    pub peer: Head,
    /// Our id at `peer.seq`, when `peer.seq <= ours.seq`.
    pub our_id_at_peer: Option<OurIdAt>,
    /// The peer's id at `ours.seq`, when `peer.seq > ours.seq` (asked of the peer).
    pub peer_id_at_ours: Option<Hash>,
}

/// Classifies the peer and chooses what to send.
pub fn decide(f: &Facts) -> (SyncStatus, Plan) {
    use std::cmp::Ordering::*;
    match f.peer.seq.cmp(&f.ours.seq) {
        Equal if f.peer.id == f.ours.id => (SyncStatus::Synchronized, Plan::Stream),
        Equal => (SyncStatus::Collision, Plan::Hold),
        Less if f.peer.seq == 0 => (SyncStatus::NeverSynchronized, Plan::FullSync),
        Less => match f.our_id_at_peer {
            Some(OurIdAt::Known(id)) if id == f.peer.id => {
                (SyncStatus::Lagging, Plan::SendRevisions { after: f.peer.seq, to: f.ours.seq })
            }
            Some(OurIdAt::Known(_)) => (SyncStatus::Collision, Plan::Hold),
            // Behind the purge point: ancestry cannot be proven from our log; a full sync
            // brings the peer to our state.
            Some(OurIdAt::Purged) | None => (SyncStatus::Lagging, Plan::FullSync),
        },
        Greater => match f.peer_id_at_ours {
            Some(id) if id == f.ours.id => (SyncStatus::Advanced, Plan::Hold),
            _ => (SyncStatus::Collision, Plan::Hold),
        },
    }
}

/// Our id at height `seq`, given the floor and a lookup into the log.
pub fn our_id_at(seq: u64, floor: &Head, lookup: impl FnOnce(u64) -> Option<Hash>) -> OurIdAt {
    if seq == floor.seq {
        return OurIdAt::Known(floor.id);
    }
    if seq < floor.seq {
        return OurIdAt::Purged;
    }
    lookup(seq).map_or(OurIdAt::Purged, OurIdAt::Known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64, id: u8) -> Head {
        Head { seq, id: Hash([id; 32]), state_hash: Hash([id; 32]) }
    }

    fn facts(ours: Head, peer: Head) -> Facts {
        Facts { ours, floor: Head::default(), peer, our_id_at_peer: None, peer_id_at_ours: None }
    }

    #[test]
    fn same_head_is_synchronized() {
        assert_eq!(decide(&facts(head(5, 5), head(5, 5))), (SyncStatus::Synchronized, Plan::Stream));
    }

    #[test]
    fn same_height_other_id_is_a_collision() {
        assert_eq!(decide(&facts(head(5, 5), head(5, 6))).0, SyncStatus::Collision);
    }

    #[test]
    fn ancestor_peer_is_lagging_and_gets_the_missing_revisions() {
        let f = Facts { our_id_at_peer: Some(OurIdAt::Known(Hash([3; 32]))), ..facts(head(5, 5), head(3, 3)) };
        assert_eq!(decide(&f), (SyncStatus::Lagging, Plan::SendRevisions { after: 3, to: 5 }));
    }

    #[test]
    fn behind_with_another_history_is_a_collision() {
        let f = Facts { our_id_at_peer: Some(OurIdAt::Known(Hash([9; 32]))), ..facts(head(5, 5), head(3, 3)) };
        assert_eq!(decide(&f), (SyncStatus::Collision, Plan::Hold));
    }

    #[test]
    fn new_peer_gets_a_full_sync() {
        assert_eq!(decide(&facts(head(5, 5), Head::default())), (SyncStatus::NeverSynchronized, Plan::FullSync));
    }

    #[test]
    fn peer_behind_the_purge_point_gets_a_full_sync() {
        let f = Facts { our_id_at_peer: Some(OurIdAt::Purged), ..facts(head(50, 5), head(3, 3)) };
        assert_eq!(decide(&f), (SyncStatus::Lagging, Plan::FullSync));
    }

    #[test]
    fn peer_ahead_on_our_history_is_advanced() {
        let f = Facts { peer_id_at_ours: Some(Hash([5; 32])), ..facts(head(5, 5), head(8, 8)) };
        assert_eq!(decide(&f), (SyncStatus::Advanced, Plan::Hold));
        let f = Facts { peer_id_at_ours: Some(Hash([7; 32])), ..facts(head(5, 5), head(8, 8)) };
        assert_eq!(decide(&f), (SyncStatus::Collision, Plan::Hold));
    }

    #[test]
    fn empty_active_and_empty_peer_are_synchronized() {
        assert_eq!(decide(&facts(Head::default(), Head::default())).0, SyncStatus::Synchronized);
    }

    #[test]
    fn our_id_at_uses_the_floor() {
        let floor = head(10, 10);
        assert_eq!(our_id_at(10, &floor, |_| None), OurIdAt::Known(Hash([10; 32])));
        assert_eq!(our_id_at(4, &floor, |_| None), OurIdAt::Purged);
        assert_eq!(our_id_at(12, &floor, |_| Some(Hash([12; 32]))), OurIdAt::Known(Hash([12; 32])));
    }
}
