//! The pure decisions of automatic failover: whether a Standby may campaign, who the best
//! candidate is, and how long an Active's lease runs. No I/O and no clock: the driver passes the
//! time in, and the simulation in `sync/tests/failover_sim.rs` drives these same functions.

use super::arbiter::{Holder, HolderState, Report};
use super::FailoverTiming;
use mgha_core::model::Uid;
use mgha_core::node::Role;

/// Until when (on the caller's monotonic clock) an Active may publish after a renewal that
/// *began* at `started_ms` succeeded. Counting from the start, not the answer, keeps the lease
/// inside the arbiter's own timeout however long the answer took.
pub fn lease_until(started_ms: u64, timing: &FailoverTiming) -> u64 {
    started_ms.saturating_add(timing.fence_after_ms())
}

/// When a Standby looks at the arbiter next: at the next point of the heartbeat grid
/// (`grid_ms`), or `at_most_ms` from now if that comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pause {
    pub grid_ms: u64,
    pub at_most_ms: Option<u64>,
}

/// How long a Standby waits before its next look, given its last one (`None`: it failed). While
/// the holder renews, every [`standby_look_ms`], and at the instant the last look says the hold
/// turns stale if that comes first: an expired hold is noticed at once. A backend that cannot
/// tell when the hold turns stale, a hold already stale (the candidates are deciding) or a failed
/// look: every half heartbeat.
pub fn standby_pause(last: Option<&HolderState>, timing: &FailoverTiming) -> Pause {
    let half = Pause { grid_ms: (timing.heartbeat_ms / 2).max(1), at_most_ms: None };
    match last {
        Some(s) if !s.stale => match s.stale_in_ms {
            // A millisecond past the instant: the look then finds the hold stale.
            Some(ms) => Pause { grid_ms: standby_look_ms(timing), at_most_ms: Some(ms.saturating_add(1)) },
            None => half,
        },
        _ => half,
    }
}

/// How often a Standby looks while the holder renews and its backend says when the hold turns
/// stale: a third of `failover_after`, at least a heartbeat. More often finds nothing sooner
/// (the look at the stale instant notices an expired hold); this often keeps the Standby's report
/// fresh (it is counted while it arrived within `failover_after`, and is written again when a
/// third of that old), and the candidates' reports current once the Active is gone: it stopped
/// sending revisions `failover_after` before anyone may take over, and each candidate looked,
/// and reported its head, at least twice since.
pub fn standby_look_ms(timing: &FailoverTiming) -> u64 {
    (timing.failover_after_ms / 3).max(timing.heartbeat_ms).max(1)
}

/// What an Active does after it observed the arbiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActiveDecision {
    /// Keep renewing.
    Renew,
    /// Another node holds the role at a higher epoch (`holder`), or held it after this node
    /// (`None`: its hold lapsed since): step down now.
    StepDown { holder: Option<Holder> },
    /// Nobody holds the role and the arbiter never granted an epoch above ours: this node is
    /// the latest Active (a fresh arbiter, or automatic failover just turned on), and claims
    /// the hold at once, at a new epoch.
    Claim,
}

/// An Active's reading of the arbiter's state.
pub fn active_decision(me: Holder, state: &HolderState) -> ActiveDecision {
    match state.holder {
        Some(h) if h != me && h.epoch > me.epoch => ActiveDecision::StepDown { holder: Some(h) },
        Some(_) => ActiveDecision::Renew,
        None if state.highest_epoch <= me.epoch => ActiveDecision::Claim,
        None => ActiveDecision::StepDown { holder: None },
    }
}

/// What a Standby does after it observed the arbiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StandbyDecision {
    /// The Active is alive, or this node is not the one to take over (the reason says why).
    Wait(WaitReason),
    /// Try to become the holder, if the holder is still `expected`.
    Campaign { expected: Option<Holder> },
}

/// Why a Standby does not campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// The holder renews.
    HolderAlive,
    /// This node has not watched the arbiter for a whole failover timeout yet, so it may not have
    /// seen every other candidate's report.
    WarmingUp,
    /// Another reachable Standby is more up to date (or as up to date and first in the domain's
    /// order, [`tie_rank`]).
    BetterCandidate { name: String },
    /// This node is more than `max_lag_revisions` behind the most up-to-date node known.
    TooFarBehind { behind: u64 },
    /// This node's store cannot write (a full disk, say): as Active it could publish nothing.
    CannotWrite,
}

impl std::fmt::Display for WaitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitReason::HolderAlive => f.write_str("the active renews its hold"),
            WaitReason::WarmingUp => f.write_str("still learning the other candidates"),
            WaitReason::BetterCandidate { name } => write!(f, "'{name}' is the better candidate"),
            WaitReason::TooFarBehind { behind } => write!(f, "{behind} revisions behind the most up-to-date node"),
            WaitReason::CannotWrite => f.write_str("this node's store cannot write"),
        }
    }
}

/// How `node` ranks among equally up-to-date candidates to take over `domain`: a hash of both
/// ids. Every node computes the same order for a domain, and the orders differ from domain to
/// domain, so that the domains of a lost server spread over the servers left instead of all
/// going to the one with the smallest id (which then held two thirds of the Actives of three
/// servers, and a rebalance had twice the changeovers to make).
pub fn tie_rank(domain: Uid, node: Uid) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(domain.as_bytes());
    hasher.update(node.as_bytes());
    let mut rank = [0u8; 8];
    rank.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    u64::from_le_bytes(rank)
}

/// Whether `holder`, as the arbiter names it, is `me` at its own epoch: then `me`, a Standby now,
/// is the Active that fenced itself, and a campaign of it takes its own role back.
pub fn is_reclaim(me: &Report, holder: Option<Holder>) -> bool {
    holder == Some(Holder { node_id: me.node_id, epoch: me.epoch })
}

/// A Standby's reading of the arbiter's state. `observed_for_ms` is how long this node has been
/// observing; `known_head` is the highest head sequence it learned outside the arbiter (from
/// the Active it followed). A Standby that the arbiter still names as the holder at its own
/// epoch is an Active that fenced itself when its renewals failed (say while the arbiter's
/// Raft group elected a new leader): it campaigns at once to take the role back.
pub fn standby_decision(
    domain: Uid,
    me: &Report,
    state: &HolderState,
    observed_for_ms: u64,
    known_head: u64,
    timing: &FailoverTiming,
) -> StandbyDecision {
    let reclaim = is_reclaim(me, state.holder);
    if !state.stale && !reclaim {
        return StandbyDecision::Wait(WaitReason::HolderAlive);
    }
    if observed_for_ms < timing.failover_after_ms {
        return StandbyDecision::Wait(WaitReason::WarmingUp);
    }
    if !me.writable {
        return StandbyDecision::Wait(WaitReason::CannotWrite);
    }
    if reclaim {
        // This node fenced itself (its lease ran out: the arbiter did not answer in time) and
        // the arbiter still names it at its epoch: nobody took over, so nobody published since
        // its last revision, and no candidate can be more up to date. It takes the role back
        // at a new epoch at once, instead of leaving its domain without an Active until a
        // Standby sees the hold stale and takes over.
        return StandbyDecision::Campaign { expected: state.holder };
    }
    let best_head = state.reports.iter().map(|r| r.head_seq).chain([known_head, me.head_seq]).max().unwrap_or(0);
    let behind = best_head.saturating_sub(me.head_seq);
    if behind > timing.max_lag_revisions {
        return StandbyDecision::Wait(WaitReason::TooFarBehind { behind });
    }
    // Ties by the domain's own order, unless a node reports that it breaks them by id.
    let per_domain = me.ranks_per_domain && state.reports.iter().all(|r| r.ranks_per_domain);
    let precedence = |r: &Report| {
        let rank = if per_domain { tie_rank(domain, r.node_id) } else { 0 };
        (r.head_seq, rank, std::cmp::Reverse(r.node_id))
    };
    let mine = precedence(me);
    if let Some(better) = state
        .reports
        .iter()
        .filter(|r| r.node_id != me.node_id && r.role == Role::Standby && r.writable)
        .filter(|r| Some(r.node_id) != state.holder.map(|h| h.node_id))
        .find(|r| precedence(r) > mine)
    {
        return StandbyDecision::Wait(WaitReason::BetterCandidate { name: better.name.clone() });
    }
    StandbyDecision::Campaign { expected: state.holder }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgha_core::model::Uid;

    fn uid(n: u128) -> Uid {
        Uid(uuid::Uuid::from_u128(n))
    }

    fn report(name: &str, id: u128, head: u64) -> Report {
        Report {
            node_id: uid(id),
            name: name.into(),
            tag: id as u16,
            role: Role::Standby,
            epoch: 1,
            head_seq: head,
            writable: true,
            ranks_per_domain: false,
        }
    }

    /// The domain the tests decide for.
    const D: Uid = Uid(uuid::Uuid::from_u128(100));

    fn stale(reports: Vec<Report>, holder: Option<Holder>) -> HolderState {
        HolderState { holder, stale: true, highest_epoch: 1, reports, stale_in_ms: None }
    }

    #[test]
    fn the_lease_ends_before_a_standby_may_take_over() {
        let t = FailoverTiming::default();
        assert!(lease_until(1000, &t) < 1000 + t.failover_after_ms);
        assert_eq!(lease_until(1000, &t), 4000);
        assert!(t.validate().is_ok());
        assert!(FailoverTiming { failover_after_ms: 2000, ..t }.validate().is_err());
    }

    #[test]
    fn the_most_up_to_date_standby_campaigns_and_ties_go_to_the_smaller_id() {
        let t = FailoverTiming::default();
        let (b, c) = (report("b", 2, 10), report("c", 3, 12));
        let old = Holder { node_id: uid(1), epoch: 1 };
        let state = stale(vec![b.clone(), c.clone()], Some(old));
        assert_eq!(
            standby_decision(D, &b, &state, 10_000, 0, &t),
            StandbyDecision::Wait(WaitReason::BetterCandidate { name: "c".into() })
        );
        assert_eq!(standby_decision(D, &c, &state, 10_000, 0, &t), StandbyDecision::Campaign { expected: Some(old) });
        let c10 = report("c", 3, 10);
        let state = stale(vec![b.clone(), c10.clone()], None);
        assert_eq!(standby_decision(D, &b, &state, 10_000, 0, &t), StandbyDecision::Campaign { expected: None });
        assert!(matches!(standby_decision(D, &c10, &state, 10_000, 0, &t), StandbyDecision::Wait(_)));
    }

    #[test]
    fn ties_go_by_each_domains_own_order_so_that_a_lost_servers_domains_spread() {
        let t = FailoverTiming::default();
        let ranked = |name, id| Report { ranks_per_domain: true, ..report(name, id, 10) };
        let (b, c) = (ranked("b", 2), ranked("c", 3));
        let old = Holder { node_id: uid(1), epoch: 1 };
        let state = stale(vec![b.clone(), c.clone()], Some(old));
        let mut won_by_b = 0;
        for d in 0..200u128 {
            let domain = uid(1000 + d);
            let (for_b, for_c) = (
                standby_decision(domain, &b, &state, 10_000, 0, &t),
                standby_decision(domain, &c, &state, 10_000, 0, &t),
            );
            // Exactly one of the two campaigns, the one of higher rank for this domain.
            let b_first = tie_rank(domain, b.node_id) > tie_rank(domain, c.node_id);
            assert_eq!(matches!(for_b, StandbyDecision::Campaign { .. }), b_first, "{d}");
            assert_eq!(matches!(for_c, StandbyDecision::Campaign { .. }), !b_first, "{d}");
            won_by_b += usize::from(b_first);
        }
        assert!((60..=140).contains(&won_by_b), "b won {won_by_b} of 200 ties");
        // A higher head still comes first.
        let ahead = Report { head_seq: 11, ..c.clone() };
        let state = stale(vec![b.clone(), ahead.clone()], Some(old));
        for d in 0..20u128 {
            assert!(matches!(standby_decision(uid(1000 + d), &b, &state, 10_000, 0, &t), StandbyDecision::Wait(_)));
        }
        // While one reporting node breaks ties by id (an older version), everyone does: c, with
        // the larger id, never campaigns against b.
        let older = report("b", 2, 10);
        let state = stale(vec![older, c.clone()], Some(old));
        for d in 0..20u128 {
            let decision = standby_decision(uid(1000 + d), &c, &state, 10_000, 0, &t);
            assert_eq!(decision, StandbyDecision::Wait(WaitReason::BetterCandidate { name: "b".into() }));
        }
    }

    #[test]
    fn nobody_campaigns_while_the_holder_renews_or_before_warming_up() {
        let t = FailoverTiming::default();
        let b = report("b", 2, 10);
        let alive = HolderState { stale: false, ..stale(vec![b.clone()], None) };
        assert_eq!(standby_decision(D, &b, &alive, 10_000, 0, &t), StandbyDecision::Wait(WaitReason::HolderAlive));
        assert_eq!(
            standby_decision(D, &b, &stale(vec![b.clone()], None), 100, 0, &t),
            StandbyDecision::Wait(WaitReason::WarmingUp)
        );
    }

    #[test]
    fn an_active_that_fenced_itself_takes_the_role_back_while_the_arbiter_names_it() {
        let t = FailoverTiming::default();
        let a = Report { epoch: 7, ..report("a", 1, 10) };
        let mine = Holder { node_id: a.node_id, epoch: 7 };
        let ahead = report("b", 2, 12);
        // The hold is not stale (it renewed recently) and a Standby with a higher head reported:
        // neither matters, the arbiter's holder is this node at its epoch.
        let fresh = HolderState { stale: false, ..stale(vec![a.clone(), ahead.clone()], Some(mine)) };
        assert_eq!(standby_decision(D, &a, &fresh, 10_000, 0, &t), StandbyDecision::Campaign { expected: Some(mine) });
        // Not at another epoch of its own (it stepped down to a later Active since), not before
        // it watched a whole timeout, not with a store that cannot write.
        let older = HolderState { holder: Some(Holder { epoch: 6, ..mine }), ..fresh.clone() };
        assert_eq!(standby_decision(D, &a, &older, 10_000, 0, &t), StandbyDecision::Wait(WaitReason::HolderAlive));
        assert_eq!(standby_decision(D, &a, &fresh, 100, 0, &t), StandbyDecision::Wait(WaitReason::WarmingUp));
        let full = Report { writable: false, ..a.clone() };
        assert_eq!(standby_decision(D, &full, &fresh, 10_000, 0, &t), StandbyDecision::Wait(WaitReason::CannotWrite));
        // Another node's hold is left to the usual rules.
        assert_eq!(standby_decision(D, &ahead, &fresh, 10_000, 0, &t), StandbyDecision::Wait(WaitReason::HolderAlive));
    }

    #[test]
    fn a_standby_too_far_behind_never_takes_over() {
        let t = FailoverTiming { max_lag_revisions: 5, ..FailoverTiming::default() };
        let b = report("b", 2, 10);
        let state = stale(vec![b.clone()], None);
        assert_eq!(
            standby_decision(D, &b, &state, 10_000, 16, &t),
            StandbyDecision::Wait(WaitReason::TooFarBehind { behind: 6 })
        );
        assert_eq!(standby_decision(D, &b, &state, 10_000, 15, &t), StandbyDecision::Campaign { expected: None });
    }

    #[test]
    fn a_standby_that_cannot_write_neither_takes_over_nor_stands_in_the_way() {
        let t = FailoverTiming::default();
        let b = report("b", 2, 10);
        let full = Report { writable: false, ..report("c", 3, 12) };
        let state = stale(vec![b.clone(), full.clone()], None);
        assert_eq!(standby_decision(D, &full, &state, 10_000, 0, &t), StandbyDecision::Wait(WaitReason::CannotWrite));
        assert_eq!(standby_decision(D, &b, &state, 10_000, 0, &t), StandbyDecision::Campaign { expected: None });
    }

    #[test]
    fn a_standby_looks_every_third_of_the_failover_timeout_and_when_the_hold_turns_stale() {
        let t = FailoverTiming::default();
        let alive = |stale_in_ms| HolderState { stale_in_ms, ..HolderState::default() };
        assert_eq!(standby_pause(Some(&alive(Some(4_200))), &t), Pause { grid_ms: 1666, at_most_ms: Some(4_201) });
        assert_eq!(standby_pause(Some(&alive(Some(0))), &t), Pause { grid_ms: 1666, at_most_ms: Some(1) });
        // Never less than a heartbeat.
        let tight = FailoverTiming { failover_after_ms: 3000, ..t };
        assert_eq!(standby_look_ms(&tight), 1000);
        let half = Pause { grid_ms: 500, at_most_ms: None };
        assert_eq!(standby_pause(Some(&alive(None)), &t), half, "a backend that cannot tell");
        let stale = HolderState { stale: true, stale_in_ms: Some(5), ..HolderState::default() };
        assert_eq!(standby_pause(Some(&stale), &t), half, "the candidates are deciding");
        assert_eq!(standby_pause(None, &t), half, "the last look failed");
    }

    #[test]
    fn an_active_steps_down_only_for_a_higher_holder() {
        let me = Holder { node_id: uid(1), epoch: 5 };
        let other = Holder { node_id: uid(2), epoch: 6 };
        let state = |h| HolderState { holder: Some(h), ..HolderState::default() };
        assert_eq!(active_decision(me, &state(me)), ActiveDecision::Renew);
        assert_eq!(active_decision(me, &state(other)), ActiveDecision::StepDown { holder: Some(other) });
        assert_eq!(active_decision(me, &state(Holder { epoch: 4, ..other })), ActiveDecision::Renew);
        let vacant = |highest_epoch| HolderState { highest_epoch, ..HolderState::default() };
        assert_eq!(active_decision(me, &vacant(0)), ActiveDecision::Claim);
        assert_eq!(active_decision(me, &vacant(5)), ActiveDecision::Claim);
        assert_eq!(active_decision(me, &vacant(6)), ActiveDecision::StepDown { holder: None });
    }
}
