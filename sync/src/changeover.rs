//! Planned and forced changeover, driven through the role machine. A planned changeover asked on
//! the Active is led here ([`lead`]); asked on a Standby, it is forwarded to the Active it
//! follows ([`super::forward`]). Either way the call ends, done or refused with a typed reason,
//! within `changeover_timeout_ms` (plus [`FORWARD_MARGIN_MS`] when forwarded): every wait below
//! has that deadline, and the work runs in a task of its own so that a caller that stops waiting
//! cannot leave the role machine in the middle of a handover.

use crate::EngineExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use super::conn::{PeerCmd, Session};
use super::membership::members;
use super::runtime::{role_event, Ctx};
use super::wire::Member;
use crate::failover::Holder;
use mgha_core::error::{ChangeoverError, Error, Result};
use mgha_core::model::Uid;
use mgha_core::node::Role;
use mgha_core::roles::machine::epoch;
use mgha_core::roles::{Action, ChangeoverFailure, Event, PlannedChangeover};

/// How much longer than `changeover_timeout_ms` a changeover asked on a Standby may take: the
/// request and its answer cross the network, and when the answer is lost with the connection
/// the Standby looks for the outcome (the target Active at a higher epoch) meanwhile.
pub const FORWARD_MARGIN_MS: u64 = 2000;
/// How often a wait looks again (for the target's session, the outcome, an upstream).
const POLL_MS: u64 = 5;
/// Most tries of a forced changeover's claim at the arbiter while the holder it saw only
/// renews.
const FORCE_ATTEMPTS_MAX: u32 = 5;

/// The one changeover a node runs at a time, by target name.
#[derive(Default)]
pub(crate) struct Slot(Arc<Mutex<Option<String>>>);

/// Holds the node's changeover [`Slot`]; frees it when dropped, whatever way the changeover ended.
struct SlotGuard(Arc<Mutex<Option<String>>>);

impl Slot {
    fn take(&self, target: &str) -> Result<SlotGuard> {
        let mut running = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(other) = running.as_ref() {
            return Err(ChangeoverError::InProgress { target: other.clone() }.into());
        }
        *running = Some(target.to_string());
        Ok(SlotGuard(self.0.clone()))
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Hands the Active role to the member named `target`, asked on any node; returns the target's
/// new epoch. Runs in its own task (see the module doc).
pub(crate) async fn planned(ctx: &Arc<Ctx>, target: &str) -> Result<u64> {
    let (ctx, target) = (ctx.clone(), target.to_string());
    let task = tokio::spawn(async move {
        let _slot = ctx.changeover.take(&target)?;
        let deadline = Instant::now() + ctx.changeover_timeout();
        run(&ctx, &target, deadline).await
    });
    task.await.map_err(|e| Error::Io(std::io::Error::other(format!("the changeover task failed: {e}"))))?
}

/// A changeover a Standby forwarded to this node: led here if this node is still the Active,
/// for at most `timeout`. It does not take this node's slot (the Standby holds its own): the
/// role machine refuses a second handover while one runs, and a slot held here until the answer
/// went out would make a call asked here right after the changeover busy.
pub(crate) async fn forwarded(ctx: &Arc<Ctx>, target: &str, timeout: Duration) -> Result<u64> {
    let member = member_named(ctx, target)?;
    lead(ctx, &member, Instant::now() + timeout).await
}

/// Leads the changeover while this node is the Active, forwards it while it is a Standby; a
/// node that changes role meanwhile (an earlier changeover landing) tries the other way. A
/// forward whose answer was lost is forwarded again while there is time (see
/// [`super::forward`]); the answers that only say the first request ran or landed (busy, or the
/// target already Active) then mean: look for the outcome.
async fn run(ctx: &Arc<Ctx>, target: &str, deadline: Instant) -> Result<u64> {
    let member = member_named(ctx, target)?;
    let before = ctx.engine.role().1;
    let until = deadline + Duration::from_millis(FORWARD_MARGIN_MS);
    // Whether an earlier forward lost its answer (the request may be running or have landed).
    let mut lost = false;
    loop {
        let outcome = if ctx.engine.role().0 == Role::Active {
            lead(ctx, &member, deadline).await
        } else {
            super::forward::forward(ctx, &member, before, deadline).await
        };
        let retry = Instant::now() < deadline;
        match outcome {
            // Nothing was asked of anyone: look again while there is time.
            Err(Error::Changeover(ChangeoverError::NotActive | ChangeoverError::NotFollowingAnActive)) if retry => {}
            Err(Error::Changeover(ChangeoverError::ForwardingClosed { .. })) => {
                if !retry {
                    return super::forward::outcome(ctx, &member, before, until).await;
                }
                lost = true;
            }
            Err(Error::Changeover(ChangeoverError::InProgress { target: running }))
                if lost && running == member.name =>
            {
                return super::forward::outcome(ctx, &member, before, until).await;
            }
            Err(Error::Changeover(ChangeoverError::AlreadyActive { name })) if lost && name == member.name => {
                return super::forward::outcome(ctx, &member, before, until).await;
            }
            Err(Error::Changeover(ChangeoverError::NotActive | ChangeoverError::NotFollowingAnActive)) if lost => {
                return super::forward::outcome(ctx, &member, before, until).await;
            }
            other => return other,
        }
        tokio::time::sleep(Duration::from_millis(super::forward::UPSTREAM_POLL_MS)).await;
    }
}

fn member_named(ctx: &Ctx, name: &str) -> Result<Member> {
    members(&ctx.engine.store())?
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ChangeoverError::NoSuchMember { name: name.into() }.into())
}

/// The target's replication session with this Active, when it has one. Connected means a session
/// is open here (a hello exchanged in passing is not enough: the promote travels on the session).
fn session_with(ctx: &Ctx, target: Uid) -> Option<Session> {
    let session = ctx.registry.get(target)?;
    ctx.engine.sync().peers().iter().any(|p| p.node_id == target && p.connected).then_some(session)
}

/// The session, if the target on it acknowledged our head.
fn caught_up(ctx: &Ctx, target: Uid) -> Option<Session> {
    let session = session_with(ctx, target)?;
    let ours = ctx.engine.sync().head();
    ctx.engine.sync().peers().iter().any(|p| p.node_id == target && p.head == ours).then_some(session)
}

/// The Active's side: fence publishes, bring the target to our head, ask it to take over, and
/// wait until this node learns, by any path, that it did (its confirmation, or a hello or an
/// acknowledgement carrying the promised epoch). The request is sent again on every new session
/// with the target and every heartbeat on the same one; the target answers a repeated request
/// as the first.
async fn lead(ctx: &Arc<Ctx>, member: &Member, deadline: Instant) -> Result<u64> {
    let engine = &ctx.engine;
    let me = engine.node()?;
    if member.node_id == me.node_id {
        return Err(match engine.role().0 {
            Role::Active => ChangeoverError::AlreadyActive { name: me.name },
            Role::Standby => ChangeoverError::NotActive,
        }
        .into());
    }
    if ctx.is_damaged(member.node_id) {
        return Err(ChangeoverError::TargetDamaged { target: member.name.clone() }.into());
    }
    // A target that is reconnecting (right after an earlier changeover, say) gets until the
    // deadline to be back; publishes are not fenced meanwhile.
    while session_with(ctx, member.node_id).is_none() && Instant::now() < deadline {
        if engine.role().0 != Role::Active {
            return Err(ChangeoverError::NotActive.into());
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    let left_ms = deadline.saturating_duration_since(Instant::now()).as_millis().max(1) as u64;
    let start = Event::ChangeoverTo {
        target: member.node_id,
        target_tag: member.tag,
        target_connected: session_with(ctx, member.node_id).is_some(),
        now_ms: mgha_core::mono_ms(),
        timeout_ms: left_ms,
    };
    let actions = role_event(engine, start).await?;
    failed(ctx, member, &actions)?;
    let Some(planned) = actions.iter().find_map(|a| match a {
        Action::HandoverStarted(p) => Some(*p),
        _ => None,
    }) else {
        return Err(ChangeoverError::Cancelled.into());
    };
    let _handover = HandoverGuard { ctx, planned };
    tracing::info!(domain = %ctx.domain, target = %member.name, "planned changeover: publishes fenced, waiting for the target");
    let mut promoted = ctx.promoted.subscribe();
    let resend_every = Duration::from_millis(ctx.server.cfg.heartbeat_ms.max(10));
    let mut sent: Option<(u64, Instant)> = None;
    loop {
        if let Some(outcome) = engine.role_machine().planned_outcome(&planned, sent.is_some(), mgha_core::mono_ms()) {
            if outcome.is_ok() {
                // Whichever path told us, publishes refused here from now on name the target.
                engine.sync().set_active_hint(Some(member.name.clone()));
                tracing::info!(domain = %ctx.domain, new_active = %member.name, epoch = %epoch::display(planned.epoch), "planned changeover done");
            }
            return outcome.map_err(|f| error_of(ctx, member, f));
        }
        if let Some(session) = caught_up(ctx, member.node_id) {
            let head = engine.sync().head();
            if sent.is_none() {
                for a in role_event(engine, Event::TargetCaughtUp { target: member.node_id }).await? {
                    if let Action::SendPromote { epoch, .. } = a {
                        if let Err(reason) = transfer_at_arbiter(ctx, &planned, deadline).await {
                            let actions = role_event(engine, Event::PromoteNotSent { reason: reason.clone() }).await?;
                            failed(ctx, member, &actions)?;
                            return Err(ChangeoverError::ArbiterRefused { reason }.into());
                        }
                        promote(&session, epoch, head);
                        sent = Some((session.id, Instant::now()));
                    }
                }
            } else if sent.is_some_and(|(id, at)| id != session.id || at.elapsed() >= resend_every) {
                // Either a new session replaced the one the request went on (which may have
                // closed with it unread), or no answer came: ask again.
                tracing::debug!(target = %member.name, session = session.id, "asking the target again to take over");
                promote(&session, planned.epoch, head);
                sent = Some((session.id, Instant::now()));
            }
        }
        failed(ctx, member, &role_event(engine, Event::Tick { now_ms: mgha_core::mono_ms() }).await?)?;
        tokio::select! {
            _ = promoted.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(POLL_MS)) => {}
        }
    }
}

/// Hands a promote request to the target's connection task without waiting: a full or closed
/// channel only means the next look sends it again.
fn promote(session: &Session, epoch: u64, head: mgha_core::revision::Head) {
    if session.tx.try_send(PeerCmd::Promote { epoch, head }).is_err() {
        tracing::debug!(session = session.id, "the target's session took no promote request now");
    }
}

/// Ends the handover it guards when the changeover stops driving it before an outcome (an error
/// on the way out), as the deadline would: publishes are never left fenced.
struct HandoverGuard<'a> {
    ctx: &'a Ctx,
    planned: PlannedChangeover,
}

impl Drop for HandoverGuard<'_> {
    fn drop(&mut self) {
        let machine = self.ctx.engine.role_machine();
        let p = self.planned;
        if machine.handover.is_some_and(|h| h.target == p.target && h.deadline_ms == p.deadline_ms) {
            // Inline, though a drop may run on an async worker: giving a handover up keeps the
            // role and epoch, so the machine persists nothing and no fsync is waited on.
            if let Err(e) = self.ctx.engine.role_event(Event::Abandon { target: p.target }) {
                tracing::error!(error = %e, "could not end an abandoned changeover");
            }
        }
    }
}

/// The first failure among a role machine's actions, as a typed error.
fn failed(ctx: &Ctx, member: &Member, actions: &[Action]) -> Result<()> {
    for a in actions {
        if let Action::ChangeoverFailed { failure } = a {
            return Err(error_of(ctx, member, failure.clone()));
        }
    }
    Ok(())
}

/// Names the nodes of a role machine's failure.
fn error_of(ctx: &Ctx, member: &Member, failure: ChangeoverFailure) -> Error {
    let target = member.name.clone();
    let name_of = |id: Uid| {
        members(&ctx.engine.store())
            .ok()
            .and_then(|ms| ms.into_iter().find(|m| m.node_id == id).map(|m| m.name))
            .unwrap_or_else(|| id.to_string())
    };
    match failure {
        ChangeoverFailure::NotActive => ChangeoverError::NotActive,
        ChangeoverFailure::InProgress { target } => ChangeoverError::InProgress { target: name_of(target) },
        ChangeoverFailure::AlreadyActive => {
            ChangeoverError::AlreadyActive { name: ctx.engine.node().map(|n| n.name).unwrap_or(target) }
        }
        ChangeoverFailure::TargetNotConnected => ChangeoverError::TargetNotConnected { target },
        ChangeoverFailure::TargetNotCaughtUp => ChangeoverError::TargetNotCaughtUp { target },
        ChangeoverFailure::TargetDidNotConfirm => ChangeoverError::TargetDidNotConfirm { target },
        ChangeoverFailure::ArbiterRefused { reason } => ChangeoverError::ArbiterRefused { reason },
        ChangeoverFailure::Superseded { epoch } => ChangeoverError::Superseded { epoch },
        ChangeoverFailure::Cancelled => ChangeoverError::Cancelled,
    }
    .into()
}

/// With automatic failover, the arbiter must name the target as the holder before the target is
/// asked to take over; otherwise a Standby could be elected over it, or the old Active renew.
/// A failed call is retried (an arbiter electing its own leader answers nothing for a moment)
/// until the changeover's deadline; a retry whose earlier try did land finds the target holding.
/// The error is the arbiter's reason.
async fn transfer_at_arbiter(
    ctx: &Arc<Ctx>,
    planned: &PlannedChangeover,
    deadline: Instant,
) -> std::result::Result<(), String> {
    let arbiter = ctx.arbiter.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some((arbiter, _)) = arbiter else { return Ok(()) };
    let node = ctx.engine.node().map_err(|e| format!("to hand the role over ({e})"))?;
    let from = Holder { node_id: node.node_id, epoch: planned.from_epoch };
    let to = Holder { node_id: planned.target, epoch: planned.epoch };
    loop {
        let err = match tokio::time::timeout_at(deadline, arbiter.transfer(from, to.node_id, to.epoch)).await {
            Err(_) => return Err("to hand the role over before the changeover's deadline (no answer)".into()),
            Ok(Ok(())) => return Ok(()),
            Ok(Err(Error::Changeover(ChangeoverError::ArbiterRefused { reason }))) => reason,
            Ok(Err(e)) => format!("to hand the role over ({e})"),
        };
        let me = crate::failover::Report::of(&ctx.engine).map_err(|e| format!("to hand the role over ({e})"))?;
        if let Ok(Ok(state)) = tokio::time::timeout_at(deadline, arbiter.observe(&me)).await {
            if state.holder == Some(to) {
                return Ok(());
            }
            if state.holder != Some(from) {
                return Err(err);
            }
        }
        if Instant::now() + Duration::from_millis(ctx.server.cfg.heartbeat_ms) >= deadline {
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(ctx.server.cfg.heartbeat_ms / 2)).await;
    }
}

/// Makes this Standby Active in the round after the highest epoch it has seen. With automatic
/// failover, through the arbiter: see [`force_at_arbiter`].
pub(crate) fn force(ctx: &Arc<Ctx>) -> Result<u64> {
    let engine = &ctx.engine;
    if engine.damage().is_some() && engine.role().0 == Role::Standby {
        return Err(ChangeoverError::TargetDamaged { target: engine.node()?.name }.into());
    }
    let arbiter = ctx.arbiter.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some((arbiter, timing)) = arbiter {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::InvalidArgument("a forced changeover with an arbiter needs the sync runtime".into()))?;
        return handle.block_on(force_at_arbiter(ctx, arbiter, timing));
    }
    let highest = engine.sync().peers().iter().map(|p| p.epoch).max().unwrap_or(0).max(engine.role().1);
    let actions = engine.role_event(Event::Force { highest_epoch: highest })?;
    if actions.iter().any(|a| matches!(a, Action::ChangeoverFailed { .. })) {
        return Err(ChangeoverError::AlreadyActive { name: engine.node()?.name }.into());
    }
    let epoch = engine.role().1;
    tracing::warn!(epoch = %epoch::display(epoch), "forced changeover: this node is now active");
    Ok(epoch)
}

/// A forced changeover with automatic failover: the arbiter makes this Standby the holder at
/// once, whoever holds it now. The old Active's lease may still run for up to
/// `fence_after_ms`, so this node takes publishes only after that (its driver renews first):
/// forcing never puts two nodes in a position to accept publishes at one instant.
async fn force_at_arbiter(
    ctx: &Arc<Ctx>,
    arbiter: Arc<dyn crate::failover::Arbiter>,
    timing: crate::failover::FailoverTiming,
) -> Result<u64> {
    let engine = &ctx.engine;
    let me = crate::failover::Report::of(engine)?;
    let epoch = me.epoch;
    if me.role == Role::Active {
        return Err(ChangeoverError::AlreadyActive { name: me.name }.into());
    }
    // The acquire is granted only if the holder did not change since the look, renewals
    // included: a live Active that only renewed meanwhile is the same holder, so look and try
    // again; a different holder (another node took over) is the caller's to judge.
    let mut state = arbiter.observe(&me).await?;
    let mut attempts = 1;
    let new = loop {
        let highest =
            engine.sync().peers().iter().map(|p| p.epoch).max().unwrap_or(0).max(epoch).max(state.highest_epoch);
        if let Some(new) = arbiter.acquire(&me, state.holder, highest).await? {
            break new;
        }
        let again = arbiter.observe(&me).await?;
        if again.holder != state.holder || attempts >= FORCE_ATTEMPTS_MAX {
            return Err(ChangeoverError::ArbiterHolderChanged.into());
        }
        attempts += 1;
        state = again;
    };
    tracing::warn!(
        epoch = %epoch::display(new),
        wait_ms = timing.fence_after_ms(),
        "forced changeover: the arbiter made this node the holder; publishing once the old active's lease ran out"
    );
    tokio::time::sleep(Duration::from_millis(timing.fence_after_ms())).await;
    role_event(engine, Event::Elected { epoch: new, until_ms: 0 }).await?;
    if engine.role() != (Role::Active, new) {
        return Err(ChangeoverError::CouldNotTakeRole.into());
    }
    Ok(new)
}
