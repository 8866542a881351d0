//! The role state machine of one node: who may publish, planned and forced changeover, and
//! fencing by epoch. Events in, actions out, no I/O and no clock of its own, so the runtime
//! drives it and the simulation in `sync/tests/roles_sim.rs` checks it over thousands of seeds.
//!
//! Rules:
//! - Only an Active that is not handing over accepts publishes.
//! - Planned changeover: the Active fences publishes, waits until the target has its head, asks
//!   the target to become Active at epoch + 1, and follows it once the target confirms, or once
//!   it learns the target's new epoch any other way (a hello, an acknowledgement). The target
//!   answers a repeated request the same way as the first, so the runtime may resend it. If the
//!   target never catches up, nothing changes. If the target does not answer after being asked,
//!   the old Active steps down without raising its epoch (it cannot know whether the target took
//!   over; two Actives are worse than none) and follows the target if it did.
//!   [`RoleMachine::planned_outcome`] says how a changeover stands, for the runtime that waits
//!   for it and for the simulation that checks it ends.
//! - Forced changeover: a Standby becomes Active in the round after the highest epoch it knows.
//! - Epochs are ballot numbers, as in Paxos: a round in the high bits and the tag of the node
//!   that becomes Active in the low bits ([`epoch`]). Two nodes can never become Active at the
//!   same epoch, even when a forced changeover races a planned one.
//! - Fencing: any node that sees a higher epoch adopts it, and an Active that does steps down at
//!   once. Two Actives at one epoch (only possible after simultaneous forced changeovers) settle
//!   deterministically: the lower node id steps down.
//! - Arbitrated (automatic failover with a quorum or etcd): the Active also needs a lease, the
//!   time until which the arbiter's last confirmation lets it publish ([`Event::Renewed`]). A
//!   publish after the lease ran out is refused even before the failover driver fences the node
//!   ([`Event::Fence`]), and a node made Active by the arbiter ([`Event::Elected`]) or by a
//!   planned changeover publishes only once the arbiter confirmed it.

use serde::{Deserialize, Serialize};

use crate::model::Uid;
use crate::node::Role;

/// Epochs as ballot numbers: `round << TAG_BITS | node tag`.
pub mod epoch {
    /// Bits of an epoch that hold the tag of the node that became Active in it.
    pub const TAG_BITS: u32 = 16;

    /// The first epoch of a node with `tag` (a Primary at `init`: round 1).
    pub fn first(tag: u16) -> u64 {
        (1 << TAG_BITS) | u64::from(tag)
    }

    /// The epoch in which the node with `tag` becomes Active after `highest`: the next round.
    pub fn next(highest: u64, tag: u16) -> u64 {
        (((highest >> TAG_BITS) + 1) << TAG_BITS) | u64::from(tag)
    }

    /// The round of an epoch, as people count changeovers.
    pub fn round(epoch: u64) -> u64 {
        epoch >> TAG_BITS
    }

    /// The tag of the node that was Active in `epoch`.
    pub fn tag(epoch: u64) -> u16 {
        (epoch & ((1 << TAG_BITS) - 1)) as u16
    }

    /// `round.tag`, for status output.
    pub fn display(epoch: u64) -> String {
        format!("{}.{}", round(epoch), tag(epoch))
    }
}

/// A planned changeover in progress on the Active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    pub target: Uid,
    pub target_tag: u16,
    pub deadline_ms: u64,
    /// The target has been asked to take over.
    pub promote_sent: bool,
}

/// A planned changeover as the Active that leads it sees it: what it waits for, until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedChangeover {
    pub target: Uid,
    /// The Active's epoch when the changeover started.
    pub from_epoch: u64,
    /// The epoch at which the target takes over: the next round, with the target's tag.
    pub epoch: u64,
    /// When (the machine's clock) the changeover gives up.
    pub deadline_ms: u64,
}

/// Why a changeover ended without moving the role as asked. The runtime names the nodes in
/// [`crate::error::ChangeoverError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeoverFailure {
    /// Asked of a node that is not the Active.
    NotActive,
    /// Another planned changeover, to `target`, runs on this Active.
    InProgress {
        target: Uid,
    },
    /// The target is this node, which is the Active already.
    AlreadyActive,
    TargetNotConnected,
    /// The target did not acknowledge our head before the deadline; nothing changed.
    TargetNotCaughtUp,
    /// The target was asked but its takeover was not seen before the deadline; this node
    /// stepped down without raising its epoch.
    TargetDidNotConfirm,
    /// The arbiter did not hand the role over; nothing changed.
    ArbiterRefused {
        reason: String,
    },
    /// Another node became Active, at `epoch`, while the changeover ran.
    Superseded {
        epoch: u64,
    },
    /// The handover ended (the arbiter fenced this node) before the target was asked.
    Cancelled,
}

/// Why a publish is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This node is a Standby.
    Standby,
    /// A planned changeover to `target` is in progress; retry on it shortly.
    HandingOver { target: Uid },
    /// An arbitrated Active whose lease ran out: it may no longer be the Active.
    LeaseExpired,
}

/// What happens to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An administrator publishes at `now_ms` (a monotonic clock, for the lease).
    Publish { now_ms: u64 },
    /// Planned changeover to `target`, which must be connected.
    ChangeoverTo { target: Uid, target_tag: u16, target_connected: bool, now_ms: u64, timeout_ms: u64 },
    /// The sync layer saw the target acknowledge our head.
    TargetCaughtUp { target: Uid },
    /// The promote that [`Action::SendPromote`] asked for was not sent (the arbiter refused to
    /// hand the role over): the changeover ends and nothing changed.
    PromoteNotSent { reason: String },
    /// Time passes (deadlines).
    Tick { now_ms: u64 },
    /// The runtime stopped driving the changeover to `target` before its deadline (its task
    /// ended early): it ends as at the deadline.
    Abandon { target: Uid },
    /// The Active asks us to take over at `epoch`; `head_matches` says our head is its head. A
    /// repeated request (we are Active at `epoch` with that head) gets the same answer.
    PromoteRequest { from: Uid, epoch: u64, head_matches: bool },
    /// The target took over at `epoch`.
    Promoted { from: Uid, epoch: u64 },
    /// Forced changeover on this node; `highest_epoch` is the highest epoch it has heard of.
    Force { highest_epoch: u64 },
    /// A peer said (in a hello or a frame) that it is `role` at `epoch`.
    PeerSeen { peer: Uid, role: Role, epoch: u64 },
    /// The arbiter confirmed this Active at its epoch; it may publish until `until_ms`.
    Renewed { epoch: u64, until_ms: u64 },
    /// The arbiter made this Standby the Active at `epoch`, valid until `until_ms`.
    Elected { epoch: u64, until_ms: u64 },
    /// The arbiter no longer confirms this Active (its lease ran out or another node holds the
    /// role): it becomes Standby at once, keeping its epoch.
    Fence,
}

/// What the runtime must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Accept the publish.
    Accept,
    Refuse(Refusal),
    /// Durably record the new role and epoch (before acting on them).
    Persist {
        role: Role,
        epoch: u64,
    },
    /// A planned changeover started: publishes are fenced until it ends.
    HandoverStarted(PlannedChangeover),
    /// Ask the target to become Active at `epoch` (again, whenever its session is replaced).
    SendPromote {
        target: Uid,
        epoch: u64,
    },
    /// Tell the old Active we took over at `epoch`.
    ReplyPromoted {
        to: Uid,
        epoch: u64,
    },
    /// A changeover this node was part of finished: it is now Active (or Standby) at `epoch`.
    ChangeoverDone {
        epoch: u64,
    },
    ChangeoverFailed {
        failure: ChangeoverFailure,
    },
    /// An Active met a higher (or winning equal) epoch and became Standby.
    SteppedDown {
        because: Uid,
        epoch: u64,
    },
}

/// The role state of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleMachine {
    pub node_id: Uid,
    /// This node's tag in epochs.
    pub tag: u16,
    pub role: Role,
    pub epoch: u64,
    pub handover: Option<Handover>,
    /// With an arbiter: until when (monotonic ms) the Active may publish. None: no arbiter.
    pub lease_until_ms: Option<u64>,
}

impl RoleMachine {
    pub fn new(node_id: Uid, tag: u16, role: Role, epoch: u64) -> RoleMachine {
        RoleMachine { node_id, tag, role, epoch, handover: None, lease_until_ms: None }
    }

    /// A machine whose Active needs the arbiter's lease to publish. It starts with none: a node
    /// that restarts as Active publishes only after its first renewal.
    pub fn arbitrated(node_id: Uid, tag: u16, role: Role, epoch: u64) -> RoleMachine {
        RoleMachine { lease_until_ms: Some(0), ..RoleMachine::new(node_id, tag, role, epoch) }
    }

    /// Whether a publish would be accepted at `now_ms`.
    pub fn may_publish(&self, now_ms: u64) -> Result<(), Refusal> {
        match (self.role, self.handover) {
            (Role::Active, None) => match self.lease_until_ms {
                Some(until) if now_ms >= until => Err(Refusal::LeaseExpired),
                _ => Ok(()),
            },
            (Role::Active, Some(h)) => Err(Refusal::HandingOver { target: h.target }),
            (Role::Standby, _) => Err(Refusal::Standby),
        }
    }

    /// Whether the arbiter's lease governs this machine.
    pub fn is_arbitrated(&self) -> bool {
        self.lease_until_ms.is_some()
    }

    /// Drops the lease (if arbitrated): the next publish waits for a renewal.
    fn expire_lease(&mut self) {
        if let Some(until) = &mut self.lease_until_ms {
            *until = 0;
        }
    }

    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::Publish { now_ms } => vec![match self.may_publish(now_ms) {
                Ok(()) => Action::Accept,
                Err(r) => Action::Refuse(r),
            }],
            Event::ChangeoverTo { target, target_tag, target_connected, now_ms, timeout_ms } => {
                let refuse = |failure| vec![Action::ChangeoverFailed { failure }];
                if self.role != Role::Active {
                    return refuse(ChangeoverFailure::NotActive);
                }
                if let Some(h) = self.handover {
                    return refuse(ChangeoverFailure::InProgress { target: h.target });
                }
                if target == self.node_id {
                    return refuse(ChangeoverFailure::AlreadyActive);
                }
                if !target_connected {
                    return refuse(ChangeoverFailure::TargetNotConnected);
                }
                let deadline_ms = now_ms.saturating_add(timeout_ms);
                self.handover = Some(Handover { target, target_tag, deadline_ms, promote_sent: false });
                vec![Action::HandoverStarted(PlannedChangeover {
                    target,
                    from_epoch: self.epoch,
                    epoch: epoch::next(self.epoch, target_tag),
                    deadline_ms,
                })]
            }
            Event::TargetCaughtUp { target } => match &mut self.handover {
                Some(h) if h.target == target && !h.promote_sent && self.role == Role::Active => {
                    h.promote_sent = true;
                    vec![Action::SendPromote { target, epoch: epoch::next(self.epoch, h.target_tag) }]
                }
                _ => vec![],
            },
            Event::PromoteNotSent { reason } => match self.handover.take() {
                Some(_) => vec![Action::ChangeoverFailed { failure: ChangeoverFailure::ArbiterRefused { reason } }],
                None => vec![],
            },
            Event::Tick { now_ms } => match self.handover {
                Some(h) if now_ms > h.deadline_ms => self.give_up(),
                _ => vec![],
            },
            Event::Abandon { target } => match self.handover {
                Some(h) if h.target == target => self.give_up(),
                _ => vec![],
            },
            Event::PromoteRequest { from, epoch, head_matches } => {
                if epoch::tag(epoch) != self.tag || !head_matches {
                    return vec![];
                }
                if self.role == Role::Standby && epoch > self.epoch {
                    self.role = Role::Active;
                    self.epoch = epoch;
                    self.expire_lease();
                    vec![
                        Action::Persist { role: Role::Active, epoch },
                        Action::ReplyPromoted { to: from, epoch },
                        Action::ChangeoverDone { epoch },
                    ]
                } else if self.role == Role::Active && epoch == self.epoch {
                    // The request came again (the first answer was lost, or the request was
                    // resent on a new session): the same answer, nothing else.
                    vec![Action::ReplyPromoted { to: from, epoch }]
                } else {
                    vec![]
                }
            }
            Event::Promoted { from, epoch } => match self.handover {
                Some(h) if h.target == from && h.promote_sent && epoch == epoch::next(self.epoch, h.target_tag) => {
                    self.handover = None;
                    self.role = Role::Standby;
                    self.epoch = epoch;
                    vec![Action::Persist { role: Role::Standby, epoch }, Action::ChangeoverDone { epoch }]
                }
                _ => vec![],
            },
            Event::Force { highest_epoch } => {
                if self.role == Role::Active {
                    return vec![Action::ChangeoverFailed { failure: ChangeoverFailure::AlreadyActive }];
                }
                let epoch = epoch::next(highest_epoch.max(self.epoch), self.tag);
                self.role = Role::Active;
                self.epoch = epoch;
                self.expire_lease();
                vec![Action::Persist { role: Role::Active, epoch }, Action::ChangeoverDone { epoch }]
            }
            Event::PeerSeen { peer, role, epoch } => {
                let higher = epoch > self.epoch;
                let tie_lost =
                    epoch == self.epoch && role == Role::Active && self.role == Role::Active && peer > self.node_id;
                if self.role == Role::Active && (higher || tie_lost) {
                    self.role = Role::Standby;
                    self.epoch = epoch;
                    self.handover = None;
                    vec![Action::Persist { role: Role::Standby, epoch }, Action::SteppedDown { because: peer, epoch }]
                } else if higher {
                    self.epoch = epoch;
                    vec![Action::Persist { role: self.role, epoch }]
                } else {
                    vec![]
                }
            }
            Event::Renewed { epoch, until_ms } => {
                if self.role == Role::Active && self.epoch == epoch {
                    if let Some(until) = &mut self.lease_until_ms {
                        *until = (*until).max(until_ms);
                    }
                }
                vec![]
            }
            Event::Elected { epoch, until_ms } => {
                if self.role != Role::Standby || epoch <= self.epoch || epoch::tag(epoch) != self.tag {
                    return vec![];
                }
                self.role = Role::Active;
                self.epoch = epoch;
                self.handover = None;
                if let Some(until) = &mut self.lease_until_ms {
                    *until = until_ms;
                }
                vec![Action::Persist { role: Role::Active, epoch }, Action::ChangeoverDone { epoch }]
            }
            Event::Fence => {
                if self.role != Role::Active {
                    return vec![];
                }
                self.role = Role::Standby;
                self.handover = None;
                self.expire_lease();
                vec![Action::Persist { role: Role::Standby, epoch: self.epoch }]
            }
        }
    }

    /// Ends the handover in progress at its deadline: nothing changes if the target was never
    /// asked; if it was, this node steps down at its own epoch, since it cannot know whether the
    /// target took over (it follows the target once it sees the target's new epoch).
    fn give_up(&mut self) -> Vec<Action> {
        let Some(h) = self.handover.take() else { return vec![] };
        if !h.promote_sent {
            return vec![Action::ChangeoverFailed { failure: ChangeoverFailure::TargetNotCaughtUp }];
        }
        self.role = Role::Standby;
        vec![
            Action::Persist { role: Role::Standby, epoch: self.epoch },
            Action::ChangeoverFailed { failure: ChangeoverFailure::TargetDidNotConfirm },
        ]
    }

    /// How the planned changeover `p`, which this node leads, stands at `now_ms`: `None` while it
    /// runs. Done once this node holds the promised epoch (it learned of the takeover from the
    /// target's confirmation, or from any hello or acknowledgement carrying that epoch);
    /// superseded when it holds another, higher epoch. If the handover ended without either
    /// (fenced by the arbiter), it is called off when the target was never asked
    /// (`promote_sent` false); otherwise the target may still have taken over, and the
    /// changeover is unconfirmed only once the deadline passed. Failures that the machine
    /// itself reports ([`Action::ChangeoverFailed`]) come first.
    pub fn planned_outcome(
        &self,
        p: &PlannedChangeover,
        promote_sent: bool,
        now_ms: u64,
    ) -> Option<Result<u64, ChangeoverFailure>> {
        if self.epoch == p.epoch {
            return Some(Ok(p.epoch));
        }
        if self.epoch > p.from_epoch {
            return Some(Err(ChangeoverFailure::Superseded { epoch: self.epoch }));
        }
        let ours = |h: Handover| h.target == p.target && h.deadline_ms == p.deadline_ms;
        let running = self.role == Role::Active && self.handover.is_some_and(ours);
        if running {
            return None;
        }
        if !promote_sent {
            return Some(Err(ChangeoverFailure::Cancelled));
        }
        (now_ms > p.deadline_ms).then_some(Err(ChangeoverFailure::TargetDidNotConfirm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Uid, Uid) {
        let (a, b) = (Uid::new_random(), Uid::new_random());
        if a < b {
            (a, b)
        } else {
            (b, a)
        }
    }

    #[test]
    fn only_an_active_without_handover_publishes() {
        let (a, b) = ids();
        let mut m = RoleMachine::new(a, 0, Role::Active, epoch::first(0));
        assert_eq!(m.handle(Event::Publish { now_ms: 0 }), vec![Action::Accept]);
        m.handle(Event::ChangeoverTo { target: b, target_tag: 1, target_connected: true, now_ms: 0, timeout_ms: 100 });
        assert_eq!(m.handle(Event::Publish { now_ms: 0 }), vec![Action::Refuse(Refusal::HandingOver { target: b })]);
        let mut s = RoleMachine::new(b, 1, Role::Standby, epoch::first(0));
        assert_eq!(s.handle(Event::Publish { now_ms: 0 }), vec![Action::Refuse(Refusal::Standby)]);
    }

    #[test]
    fn planned_changeover_moves_the_role_at_epoch_plus_one() {
        let (a, b) = ids();
        let e = epoch::next(epoch::first(0), 0);
        let mut old = RoleMachine::new(a, 0, Role::Active, e);
        let mut new = RoleMachine::new(b, 1, Role::Standby, e);
        let four = epoch::next(e, 1);
        let started = old.handle(Event::ChangeoverTo {
            target: b,
            target_tag: 1,
            target_connected: true,
            now_ms: 0,
            timeout_ms: 100,
        });
        let planned = PlannedChangeover { target: b, from_epoch: e, epoch: four, deadline_ms: 100 };
        assert_eq!(started, vec![Action::HandoverStarted(planned)]);
        assert_eq!(old.planned_outcome(&planned, false, 0), None);
        let send = old.handle(Event::TargetCaughtUp { target: b });
        assert_eq!(send, vec![Action::SendPromote { target: b, epoch: four }]);
        assert_eq!((epoch::round(four), epoch::tag(four)), (epoch::round(e) + 1, 1));
        let reply = new.handle(Event::PromoteRequest { from: a, epoch: four, head_matches: true });
        assert!(reply.contains(&Action::ReplyPromoted { to: a, epoch: four }));
        assert_eq!((new.role, new.epoch), (Role::Active, four));
        old.handle(Event::Promoted { from: b, epoch: four });
        assert_eq!((old.role, old.epoch, old.handover), (Role::Standby, four, None));
        assert_eq!(old.planned_outcome(&planned, true, 0), Some(Ok(four)));
    }

    #[test]
    fn a_repeated_promote_gets_the_same_answer_and_nothing_else() {
        let (a, b) = ids();
        let e = epoch::first(0);
        let four = epoch::next(e, 1);
        let mut new = RoleMachine::new(b, 1, Role::Standby, e);
        new.handle(Event::PromoteRequest { from: a, epoch: four, head_matches: true });
        let again = new.handle(Event::PromoteRequest { from: a, epoch: four, head_matches: true });
        assert_eq!(again, vec![Action::ReplyPromoted { to: a, epoch: four }]);
        // Once it published, its head moved: no answer (the old Active learns from its hellos).
        assert!(new.handle(Event::PromoteRequest { from: a, epoch: four, head_matches: false }).is_empty());
        assert_eq!((new.role, new.epoch), (Role::Active, four));
    }

    /// An Active at the first epoch handing over to node `b` (tag 1), with a 100 ms deadline.
    fn handing_over() -> (RoleMachine, Uid, u64) {
        let (a, b) = ids();
        let e = epoch::first(0);
        let mut old = RoleMachine::new(a, 0, Role::Active, e);
        old.handle(Event::ChangeoverTo {
            target: b,
            target_tag: 1,
            target_connected: true,
            now_ms: 0,
            timeout_ms: 100,
        });
        (old, b, e)
    }

    #[test]
    fn a_hello_with_the_promised_epoch_before_the_confirmation_ends_the_changeover() {
        let (mut old, b, e) = handing_over();
        old.handle(Event::TargetCaughtUp { target: b });
        let planned = PlannedChangeover { target: b, from_epoch: e, epoch: epoch::next(e, 1), deadline_ms: 100 };
        old.handle(Event::PeerSeen { peer: b, role: Role::Active, epoch: planned.epoch });
        assert_eq!(old.planned_outcome(&planned, true, 1), Some(Ok(planned.epoch)));
        // The confirmation arriving afterwards changes nothing.
        assert!(old.handle(Event::Promoted { from: b, epoch: planned.epoch }).is_empty());
        assert_eq!((old.role, old.epoch), (Role::Standby, planned.epoch));
    }

    #[test]
    fn another_higher_epoch_supersedes_the_changeover() {
        let (mut old, b, e) = handing_over();
        let planned = PlannedChangeover { target: b, from_epoch: e, epoch: epoch::next(e, 1), deadline_ms: 100 };
        let forced = epoch::next(planned.epoch, 2);
        old.handle(Event::PeerSeen { peer: b, role: Role::Active, epoch: forced });
        let out = old.planned_outcome(&planned, false, 1);
        assert_eq!(out, Some(Err(ChangeoverFailure::Superseded { epoch: forced })));
    }

    #[test]
    fn a_fenced_handover_is_called_off_or_unconfirmed_at_the_deadline() {
        let (a, b) = ids();
        let e = epoch::first(0);
        let planned = PlannedChangeover { target: b, from_epoch: e, epoch: epoch::next(e, 1), deadline_ms: 100 };
        let start =
            Event::ChangeoverTo { target: b, target_tag: 1, target_connected: true, now_ms: 0, timeout_ms: 100 };
        let mut m = RoleMachine::new(a, 0, Role::Active, e);
        m.handle(start.clone());
        m.handle(Event::Fence);
        assert_eq!(m.planned_outcome(&planned, false, 1), Some(Err(ChangeoverFailure::Cancelled)));
        // Asked already: the target may take over, so the outcome waits for the deadline.
        assert_eq!(m.planned_outcome(&planned, true, 100), None);
        assert_eq!(m.planned_outcome(&planned, true, 101), Some(Err(ChangeoverFailure::TargetDidNotConfirm)));
        m.handle(Event::PeerSeen { peer: b, role: Role::Active, epoch: planned.epoch });
        assert_eq!(m.planned_outcome(&planned, true, 50), Some(Ok(planned.epoch)));
    }

    #[test]
    fn an_abandoned_handover_ends_as_at_its_deadline() {
        let (a, b) = ids();
        let e = epoch::first(0);
        let start =
            Event::ChangeoverTo { target: b, target_tag: 1, target_connected: true, now_ms: 0, timeout_ms: 100 };
        let mut m = RoleMachine::new(a, 0, Role::Active, e);
        m.handle(start.clone());
        let out = m.handle(Event::Abandon { target: b });
        assert_eq!(out, vec![Action::ChangeoverFailed { failure: ChangeoverFailure::TargetNotCaughtUp }]);
        assert_eq!((m.role, m.handover, m.may_publish(0)), (Role::Active, None, Ok(())));
        m.handle(start);
        m.handle(Event::TargetCaughtUp { target: b });
        let out = m.handle(Event::Abandon { target: b });
        assert!(out.contains(&Action::ChangeoverFailed { failure: ChangeoverFailure::TargetDidNotConfirm }));
        assert_eq!((m.role, m.epoch), (Role::Standby, e));
    }

    #[test]
    fn refusals_name_their_reason() {
        let (a, b) = ids();
        let e = epoch::first(0);
        let to = |target, target_connected| Event::ChangeoverTo {
            target,
            target_tag: 1,
            target_connected,
            now_ms: 0,
            timeout_ms: 100,
        };
        let failed = |failure| vec![Action::ChangeoverFailed { failure }];
        let mut m = RoleMachine::new(a, 0, Role::Active, e);
        assert_eq!(m.handle(to(a, true)), failed(ChangeoverFailure::AlreadyActive));
        assert_eq!(m.handle(to(b, false)), failed(ChangeoverFailure::TargetNotConnected));
        m.handle(to(b, true));
        assert_eq!(m.handle(to(b, true)), failed(ChangeoverFailure::InProgress { target: b }));
        assert_eq!(m.handle(Event::Force { highest_epoch: e }), failed(ChangeoverFailure::AlreadyActive));
        let mut s = RoleMachine::new(b, 1, Role::Standby, e);
        assert_eq!(s.handle(to(a, true)), failed(ChangeoverFailure::NotActive));
    }

    #[test]
    fn unreachable_or_slow_target_changes_nothing() {
        let (a, b) = ids();
        let mut m = RoleMachine::new(a, 0, Role::Active, epoch::first(0));
        let out = m.handle(Event::ChangeoverTo {
            target: b,
            target_tag: 1,
            target_connected: false,
            now_ms: 0,
            timeout_ms: 100,
        });
        assert_eq!(out, vec![Action::ChangeoverFailed { failure: ChangeoverFailure::TargetNotConnected }]);
        m.handle(Event::ChangeoverTo { target: b, target_tag: 1, target_connected: true, now_ms: 0, timeout_ms: 100 });
        let out = m.handle(Event::Tick { now_ms: 101 });
        assert_eq!(out, vec![Action::ChangeoverFailed { failure: ChangeoverFailure::TargetNotCaughtUp }]);
        assert_eq!((m.role, m.epoch, m.handover), (Role::Active, epoch::first(0), None));
    }

    #[test]
    fn unanswered_promote_steps_down_without_raising_the_epoch() {
        let (a, b) = ids();
        let mut m = RoleMachine::new(a, 0, Role::Active, epoch::first(0));
        m.handle(Event::ChangeoverTo { target: b, target_tag: 1, target_connected: true, now_ms: 0, timeout_ms: 100 });
        m.handle(Event::TargetCaughtUp { target: b });
        m.handle(Event::Tick { now_ms: 500 });
        assert_eq!((m.role, m.epoch), (Role::Standby, epoch::first(0)));
    }

    #[test]
    fn promote_with_a_different_head_is_ignored() {
        let (a, b) = ids();
        let mut s = RoleMachine::new(b, 1, Role::Standby, epoch::first(0));
        let next = epoch::next(epoch::first(0), 1);
        assert!(s.handle(Event::PromoteRequest { from: a, epoch: next, head_matches: false }).is_empty());
        assert_eq!(s.role, Role::Standby);
    }

    #[test]
    fn force_takes_one_more_than_the_highest_epoch_known() {
        let (_, b) = ids();
        let mut s = RoleMachine::new(b, 7, Role::Standby, epoch::first(0));
        let highest = epoch::next(epoch::next(epoch::first(0), 3), 2);
        s.handle(Event::Force { highest_epoch: highest });
        assert_eq!((s.role, epoch::round(s.epoch), epoch::tag(s.epoch)), (Role::Active, epoch::round(highest) + 1, 7));
    }

    #[test]
    fn active_seeing_a_higher_epoch_steps_down_at_once() {
        let (a, b) = ids();
        let mut m = RoleMachine::new(a, 0, Role::Active, epoch::first(0));
        let higher = epoch::next(epoch::first(0), 1);
        let out = m.handle(Event::PeerSeen { peer: b, role: Role::Active, epoch: higher });
        assert!(out.contains(&Action::SteppedDown { because: b, epoch: higher }));
        assert_eq!(m.may_publish(0), Err(Refusal::Standby));
        // Epochs never go back.
        m.handle(Event::PeerSeen { peer: b, role: Role::Active, epoch: epoch::first(0) });
        assert_eq!(m.epoch, higher);
    }

    #[test]
    fn equal_epoch_actives_settle_on_the_higher_node_id() {
        let (low, high) = ids();
        // Cannot happen with distinct tags; the rule is a last line of defence.
        let mut l = RoleMachine::new(low, 0, Role::Active, 4);
        let mut h = RoleMachine::new(high, 0, Role::Active, 4);
        l.handle(Event::PeerSeen { peer: high, role: Role::Active, epoch: 4 });
        h.handle(Event::PeerSeen { peer: low, role: Role::Active, epoch: 4 });
        assert_eq!((l.role, h.role), (Role::Standby, Role::Active));
    }

    #[test]
    fn an_arbitrated_active_publishes_only_within_its_lease() {
        let (a, _) = ids();
        let e = epoch::first(0);
        let mut m = RoleMachine::arbitrated(a, 0, Role::Active, e);
        // Restarted as Active: nothing until the arbiter confirms.
        assert_eq!(m.may_publish(10), Err(Refusal::LeaseExpired));
        m.handle(Event::Renewed { epoch: e, until_ms: 100 });
        assert_eq!(m.may_publish(99), Ok(()));
        assert_eq!(m.may_publish(100), Err(Refusal::LeaseExpired));
        // A renewal for another epoch does not count.
        m.handle(Event::Renewed { epoch: e + 1, until_ms: 500 });
        assert_eq!(m.may_publish(200), Err(Refusal::LeaseExpired));
        // A late renewal never shortens the lease.
        m.handle(Event::Renewed { epoch: e, until_ms: 300 });
        m.handle(Event::Renewed { epoch: e, until_ms: 250 });
        assert_eq!(m.may_publish(280), Ok(()));
        let out = m.handle(Event::Fence);
        assert_eq!(out, vec![Action::Persist { role: Role::Standby, epoch: e }]);
        assert_eq!((m.role, m.epoch, m.may_publish(0)), (Role::Standby, e, Err(Refusal::Standby)));
    }

    #[test]
    fn election_needs_a_higher_epoch_of_our_own_tag() {
        let (_, b) = ids();
        let e = epoch::first(0);
        let mut s = RoleMachine::arbitrated(b, 1, Role::Standby, e);
        assert!(s.handle(Event::Elected { epoch: epoch::next(e, 2), until_ms: 50 }).is_empty());
        assert!(s.handle(Event::Elected { epoch: e, until_ms: 50 }).is_empty());
        let won = epoch::next(e, 1);
        let out = s.handle(Event::Elected { epoch: won, until_ms: 50 });
        assert!(out.contains(&Action::Persist { role: Role::Active, epoch: won }));
        assert_eq!(s.may_publish(49), Ok(()));
        assert_eq!(s.may_publish(50), Err(Refusal::LeaseExpired));
    }

    #[test]
    fn a_planned_changeover_target_waits_for_the_arbiter_when_arbitrated() {
        let (a, b) = ids();
        let e = epoch::first(0);
        let mut s = RoleMachine::arbitrated(b, 1, Role::Standby, e);
        let next = epoch::next(e, 1);
        s.handle(Event::PromoteRequest { from: a, epoch: next, head_matches: true });
        assert_eq!(s.may_publish(0), Err(Refusal::LeaseExpired));
        s.handle(Event::Renewed { epoch: next, until_ms: 10 });
        assert_eq!(s.may_publish(5), Ok(()));
    }
}
