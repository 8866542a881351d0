//! The failover driver: one task per node that, every heartbeat, renews the Active's hold or
//! lets a Standby decide whether to take over, through the [`Arbiter`] and the pure rules of
//! [`super::plan`]. Role changes go through the engine's role machine like every other change,
//! so an Active whose lease runs out refuses publishes at once, even between heartbeats.

use crate::EngineExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use super::arbiter::{Arbiter, Holder, HolderState, Report};
use super::plan::{self, ActiveDecision, StandbyDecision, WaitReason};
use super::{FailoverMode, FailoverStatus, FailoverTiming};
use crate::runtime::role_event;
use mgha_core::engine::Engine;
use mgha_core::mono_ms;
use mgha_core::node::Role;
use mgha_core::roles::machine::epoch;
use mgha_core::roles::{Action, Event};
use mgha_core::status::SyncStatus;
use mgha_core::Uid;

/// Check the arbiter's members for `mgha status` every this many heartbeats.
const STATUS_EVERY: u32 = 3;

/// Runs until `shutdown` turns true, then releases what the node holds at the arbiter.
pub async fn run(
    engine: Arc<Engine>,
    domain: Uid,
    arbiter: Arc<dyn Arbiter>,
    mode: FailoverMode,
    timing: FailoverTiming,
    mut shutdown: watch::Receiver<bool>,
) {
    engine.set_arbitrated();
    let mut d = Driver {
        engine,
        domain,
        arbiter,
        mode,
        timing,
        started_ms: mono_ms(),
        active_since_ms: None,
        ticks: 0,
        identity: None,
        next_look: plan::standby_pause(None, &timing),
        stale_wait: None,
    };
    let mut events = d.engine.sync().events();
    loop {
        let role = d.tick().await;
        let wake = match role {
            Role::Active => crate::grid::next(Duration::from_millis(d.timing.heartbeat_ms)),
            // A Standby looks when the hold would turn stale, so that it notices at once.
            Role::Standby => {
                let pause = d.next_look;
                let on_grid = crate::grid::next(Duration::from_millis(pause.grid_ms));
                match pause.at_most_ms {
                    Some(ms) => on_grid.min(tokio::time::Instant::now() + Duration::from_millis(ms)),
                    None => on_grid,
                }
            }
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep_until(wake) => {}
            // Any engine event wakes it: a role change (a planned changeover landed here) is acted on at once.
            _ = events.recv() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
    d.arbiter.close().await;
}

struct Driver {
    engine: Arc<Engine>,
    /// The domain's id (the cluster's for the first domain): its order of candidates.
    domain: Uid,
    arbiter: Arc<dyn Arbiter>,
    mode: FailoverMode,
    timing: FailoverTiming,
    started_ms: u64,
    /// When this node last became Active (or the driver started on an Active).
    active_since_ms: Option<u64>,
    ticks: u32,
    /// The first report: its identity (id, name, tag) serves every later one.
    identity: Option<Report>,
    /// When this Standby looks next, from what its last look found.
    next_look: plan::Pause,
    /// Why this Standby last waited while the hold was stale (logged when it changes).
    stale_wait: Option<std::mem::Discriminant<WaitReason>>,
}

/// What one tick learned, for the status.
#[derive(Default)]
struct Outcome {
    waiting: Option<String>,
    error: Option<String>,
}

impl Driver {
    async fn tick(&mut self) -> Role {
        self.probe_store().await;
        let report = match &self.identity {
            Some(me) => Ok(Report::again(&self.engine, me.node_id, me.name.clone(), me.tag)),
            None => Report::of(&self.engine).inspect(|me| self.identity = Some(me.clone())),
        };
        let outcome = match report {
            Ok(me) if me.role == Role::Active => {
                self.active_since_ms.get_or_insert_with(mono_ms);
                self.as_active(me).await
            }
            Ok(me) => {
                self.active_since_ms = None;
                self.as_standby(me).await
            }
            Err(e) => Outcome { error: Some(e.to_string()), ..Outcome::default() },
        };
        let checked = if self.ticks.is_multiple_of(STATUS_EVERY) { Some(self.arbiter.status().await) } else { None };
        self.ticks = self.ticks.wrapping_add(1);
        let machine = self.engine.role_machine();
        let lease_left_ms = match (machine.role, machine.lease_until_ms) {
            (Role::Active, Some(until)) => Some(until.saturating_sub(mono_ms())),
            _ => None,
        };
        // In place: a copy of the arbiter's members at every tick of every domain was a good
        // part of an idle server's CPU.
        let (mode, timing) = (self.mode, self.timing);
        self.engine.sync().update_failover(|slot| {
            let status = slot.get_or_insert_with(|| FailoverStatus {
                mode,
                heartbeat_ms: timing.heartbeat_ms,
                failover_after_ms: timing.failover_after_ms,
                arbiter: None,
                lease_left_ms: None,
                waiting: None,
                last_error: None,
            });
            if checked.is_some() {
                status.arbiter = checked;
            }
            status.lease_left_ms = lease_left_ms;
            status.waiting = outcome.waiting;
            status.last_error = outcome.error;
        });
        machine.role
    }

    async fn as_active(&mut self, me: Report) -> Outcome {
        let mut outcome = Outcome::default();
        if self.engine.role_machine().handover.is_some() {
            // A planned changeover owns the role now; its transfer goes through the arbiter.
            return outcome;
        }
        let holder = Holder { node_id: me.node_id, epoch: me.epoch };
        if let Some(found) = self.engine.damage() {
            // A damaged Active steps down when a healthy Standby can take over: it stops
            // renewing, its lease runs out, the Standby is elected, and this node then follows
            // it and heals by a full sync.
            let healthy =
                self.engine.sync().peers().iter().any(|p| p.connected && p.status == SyncStatus::Synchronized);
            if healthy {
                tracing::error!(damage = %found, "this active's store is damaged: letting the lease lapse so that a healthy standby takes over");
                outcome.waiting = Some("the store is damaged: not renewing, a healthy standby takes over".into());
                self.fence_if_lease_ran_out(&outcome).await;
                return outcome;
            }
        }
        let started = mono_ms();
        if !me.writable {
            // An Active that cannot write takes no publish anyway: letting its lease run out
            // lets a Standby that can write take over.
            let fault = self.engine.store_fault().map(|f| f.to_string()).unwrap_or_default();
            outcome.error = Some(format!("not renewing the lease: the store cannot write ({fault})"));
        } else {
            match self.arbiter.renew(holder).await {
                Ok(()) => {
                    let until = plan::lease_until(started, &self.timing);
                    let _ = role_event(&self.engine, Event::Renewed { epoch: me.epoch, until_ms: until }).await;
                    // The renewal succeeded only because this node holds the role at its epoch:
                    // the look below could only say so again, and is for the report.
                    if !self.arbiter.report_due(&me) {
                        return outcome;
                    }
                }
                Err(e) => outcome.error = Some(e.to_string()),
            }
        }
        match self.arbiter.observe(&me).await {
            Ok(state) => match plan::active_decision(holder, &state) {
                ActiveDecision::Renew => self.fence_if_lease_ran_out(&outcome).await,
                ActiveDecision::StepDown { holder: Some(h) } => {
                    let name = name_of(&state, h);
                    self.engine.sync().set_active_hint(name.clone());
                    self.fence(&format!(
                        "the arbiter made {} active at epoch {}",
                        name.as_deref().unwrap_or("another node"),
                        epoch::display(h.epoch)
                    ))
                    .await;
                }
                ActiveDecision::StepDown { holder: None } => {
                    self.fence("a newer active held the role since this node did").await;
                }
                ActiveDecision::Claim => self.claim(&me, &state, &mut outcome).await,
            },
            Err(e) => {
                outcome.error.get_or_insert(e.to_string());
                self.fence_if_lease_ran_out(&outcome).await;
            }
        }
        outcome
    }

    /// Fences this Active when its lease ran out without a renewal. A node that has just become
    /// Active (its lease starts empty) gets a lease's length to succeed once: it publishes
    /// nothing meanwhile, and one failed call at the wrong moment does not cost a failover.
    async fn fence_if_lease_ran_out(&self, outcome: &Outcome) {
        let until = self.engine.role_machine().lease_until_ms.unwrap_or(0);
        let grace = self.active_since_ms.unwrap_or(0).saturating_add(self.timing.fence_after_ms());
        if mono_ms() >= until.max(grace) {
            let why = outcome.error.as_deref().unwrap_or("no renewal succeeded in time");
            // Publishes were refused from the moment the lease ran out, not from now.
            let since = mgha_core::now_ms().saturating_sub(mono_ms().saturating_sub(until));
            self.fence_since(&format!("the arbiter did not confirm this node in time ({why})"), since).await;
        } else if let Some(e) = &outcome.error {
            tracing::warn!(error = %e, lease_left_ms = until.saturating_sub(mono_ms()), "renewal failed");
        }
    }

    /// The Active of a cluster whose arbiter has no holder (and never granted a later epoch)
    /// takes the hold at a new epoch; until then its lease is empty and it publishes nothing.
    async fn claim(&self, me: &Report, state: &HolderState, outcome: &mut Outcome) {
        let started = mono_ms();
        match self.arbiter.acquire(me, None, self.highest_known(state, me.epoch)).await {
            Ok(Some(epoch)) => {
                let until = plan::lease_until(started, &self.timing);
                // Elected takes a Standby to Active at the new epoch; the fence in between is
                // only the machine's way there (the lease was empty, nothing was published).
                let done = match role_event(&self.engine, Event::Fence).await {
                    Ok(_) => role_event(&self.engine, Event::Elected { epoch, until_ms: until }).await,
                    Err(e) => Err(e),
                };
                match done {
                    Ok(_) => tracing::info!(epoch = %epoch::display(epoch), "claimed the arbiter's vacant hold"),
                    Err(e) => outcome.error = Some(e.to_string()),
                }
            }
            Ok(None) => outcome.waiting = Some("another node claimed the hold first".into()),
            Err(e) => outcome.error = Some(e.to_string()),
        }
    }

    async fn fence(&self, why: &str) {
        self.fence_since(why, mgha_core::now_ms()).await;
    }

    /// Fences this Active; `refusing_since_ms` (Unix ms) is when its publishes stopped, logged so
    /// that an operator can line it up with the new Active's `at_ms`.
    async fn fence_since(&self, why: &str, refusing_since_ms: u64) {
        match role_event(&self.engine, Event::Fence).await {
            Ok(actions) if actions.iter().any(|a| matches!(a, Action::Persist { .. })) => {
                tracing::warn!(
                    reason = %why,
                    refusing_since_ms,
                    "fenced: this node stopped taking publishes and is now standby"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not record the fence; publishes stay refused by the lease"),
        }
    }

    async fn as_standby(&mut self, me: Report) -> Outcome {
        let mut outcome = Outcome::default();
        let looked = self.arbiter.observe(&me).await;
        self.next_look = plan::standby_pause(looked.as_ref().ok(), &self.timing);
        let state = match looked {
            Ok(s) => s,
            Err(e) => {
                outcome.error = Some(e.to_string());
                return outcome;
            }
        };
        if self.engine.damage().is_some() {
            // Never a failover target with a damaged store: it heals by a full sync first.
            outcome.waiting =
                Some("this node's store is damaged; it heals by a full sync before it may take over".into());
            return outcome;
        }
        // Only a candidate needs the peers' heads: no copy of the peer table at every idle look.
        let known_head =
            if state.stale { self.engine.sync().peers().iter().map(|p| p.head.seq).max().unwrap_or(0) } else { 0 };
        let observed_for = mono_ms().saturating_sub(self.started_ms);
        match plan::standby_decision(self.domain, &me, &state, observed_for, known_head, &self.timing) {
            StandbyDecision::Wait(reason) => {
                // A domain just created has no holder yet: nothing to say then.
                self.note_wait(state.stale && state.holder.is_some(), &reason);
                outcome.waiting = Some(reason.to_string());
            }
            StandbyDecision::Campaign { expected } => {
                self.stale_wait = None;
                let highest = self.highest_known(&state, me.epoch);
                let started = mono_ms();
                match self.arbiter.acquire(&me, expected, highest).await {
                    Ok(Some(epoch)) => {
                        let until = plan::lease_until(started, &self.timing);
                        let at_ms = mgha_core::now_ms();
                        let reclaimed = plan::is_reclaim(&me, expected);
                        match role_event(&self.engine, Event::Elected { epoch, until_ms: until }).await {
                            Ok(_) if reclaimed => tracing::warn!(
                                domain = %self.domain,
                                epoch = %epoch::display(epoch),
                                at_ms,
                                "the arbiter still named this node: it took the role back after its lease ran out"
                            ),
                            Ok(_) => tracing::warn!(
                                domain = %self.domain,
                                epoch = %epoch::display(epoch),
                                at_ms,
                                previous = ?expected.and_then(|h| name_of(&state, h)),
                                "automatic failover: the arbiter made this node active"
                            ),
                            Err(e) => outcome.error = Some(e.to_string()),
                        }
                    }
                    Ok(None) => outcome.waiting = Some("another node took over first".into()),
                    Err(e) => outcome.error = Some(e.to_string()),
                }
            }
        }
        outcome
    }

    /// Logs why this Standby does not take over while an Active's hold is stale, once per kind
    /// of reason: a domain left without an Active says in the log what it waits for.
    fn note_wait(&mut self, stale: bool, reason: &WaitReason) {
        if !stale {
            self.stale_wait = None;
            return;
        }
        let kind = std::mem::discriminant(reason);
        if self.stale_wait != Some(kind) {
            self.stale_wait = Some(kind);
            tracing::info!(domain = %self.domain, reason = %reason, "the active's hold is stale; not taking over yet");
        }
    }

    /// While this node's store has a fault, tries whether it can write again (off the async
    /// workers), so that the node notices when space is free even though nothing else commits;
    /// the report that follows says whether it can.
    async fn probe_store(&self) {
        if self.engine.store_fault().is_none() {
            return;
        }
        let engine = self.engine.clone();
        let _ = tokio::task::spawn_blocking(move || engine.probe_write()).await;
    }

    /// The highest epoch this node knows of: its own, its peers', and the arbiter's.
    fn highest_known(&self, state: &HolderState, mine: u64) -> u64 {
        let peers = self.engine.sync().peers().iter().map(|p| p.epoch).max().unwrap_or(0);
        [mine, peers, state.highest_epoch, state.holder.map(|h| h.epoch).unwrap_or(0)].into_iter().max().unwrap_or(0)
    }
}

/// The name of a holder, from the reports.
fn name_of(state: &HolderState, holder: Holder) -> Option<String> {
    state.reports.iter().find(|r| r.node_id == holder.node_id).map(|r| r.name.clone())
}
