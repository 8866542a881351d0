//! Planned and forced changeover, driven through the role machine. A planned changeover runs on
//! the Active; asked on a Standby, it is forwarded to the Active over the follow connection.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

use super::conn::PeerCmd;
use super::membership::members;
use super::runtime::Ctx;
use crate::error::{Error, Result};
use crate::failover::Holder;
use crate::node::Role;
use crate::roles::{Action, Event};

/// Hands the Active role to the member named `target`; returns the new epoch.
pub(crate) async fn changeover(ctx: &Arc<Ctx>, target: &str, timeout: Duration) -> Result<u64> {
    let engine = &ctx.engine;
    if engine.role().0 != Role::Active {
        return forward(ctx, target, timeout).await;
    }
    let member = members(&engine.store())?
        .into_iter()
        .find(|m| m.name == target)
        .ok_or_else(|| Error::Changeover(format!("no member named '{target}'")))?;
    // A target that is reconnecting (right after an earlier changeover, say) gets until the
    // deadline to be back; publishes are not fenced meanwhile.
    let connect_deadline = tokio::time::Instant::now() + timeout;
    // Connected means: a replication session with the target is open here (a hello exchanged
    // in passing is not enough; the promote must travel on the session).
    let is_connected = || {
        ctx.registry.get(member.node_id).is_some()
            && engine.sync().peers().iter().any(|p| p.node_id == member.node_id && p.connected)
    };
    while !is_connected() && tokio::time::Instant::now() < connect_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connected = is_connected();
    let timeout_ms = connect_deadline.saturating_duration_since(tokio::time::Instant::now()).as_millis().max(1) as u64;
    // Forget an earlier changeover's outcome, and accept only an epoch above ours.
    ctx.promoted.send_replace(None);
    let mut promoted = ctx.promoted.subscribe();
    let epoch_before = engine.role().1;
    failed(engine.role_event(Event::ChangeoverTo {
        target: member.node_id,
        target_tag: member.tag,
        target_connected: connected,
        now_ms: crate::now_ms(),
        timeout_ms,
    })?)?;
    tracing::info!(target = %target, "planned changeover: publishes fenced, waiting for the target");
    loop {
        if let Some((node, epoch)) = *promoted.borrow_and_update() {
            if node == member.node_id && epoch > epoch_before {
                return Ok(epoch);
            }
        }
        let ours = engine.sync().head();
        let caught_up =
            is_connected() && engine.sync().peers().iter().any(|p| p.node_id == member.node_id && p.head == ours);
        if caught_up {
            for a in engine.role_event(Event::TargetCaughtUp { target: member.node_id })? {
                if let Action::SendPromote { epoch, .. } = a {
                    if let Err(e) =
                        transfer_at_arbiter(ctx, epoch_before, member.node_id, epoch, connect_deadline).await
                    {
                        let reason = format!("the arbiter refused to hand the role over, nothing changed: {e}");
                        engine.role_event(Event::PromoteNotSent { reason: reason.clone() })?;
                        return Err(Error::Changeover(reason));
                    }
                    if let Some(tx) = ctx.registry.get(member.node_id) {
                        let _ = tx.send(PeerCmd::Promote { epoch, head: ours }).await;
                    }
                }
            }
        }
        failed(engine.role_event(Event::Tick { now_ms: crate::now_ms() })?)?;
        if engine.role_machine().handover.is_none() && engine.role().0 == Role::Active {
            return Err(Error::Changeover("the changeover was cancelled".into()));
        }
        tokio::select! {
            _ = promoted.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
}

/// With automatic failover, the arbiter must name the target as the holder before the target is
/// asked to take over; otherwise a Standby could be elected over it, or the old Active renew.
/// A failed call is retried (an arbiter electing its own leader answers nothing for a moment)
/// until the changeover's deadline; a retry whose earlier try did land finds the target holding.
async fn transfer_at_arbiter(
    ctx: &Arc<Ctx>,
    epoch_before: u64,
    target: crate::model::Uid,
    epoch: u64,
    deadline: tokio::time::Instant,
) -> Result<()> {
    let arbiter = ctx.arbiter.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some((arbiter, _)) = arbiter else { return Ok(()) };
    let node = ctx.engine.node()?;
    let from = Holder { node_id: node.node_id, epoch: epoch_before };
    loop {
        let err = match arbiter.transfer(from, target, epoch).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let me = crate::failover::Report::of(&ctx.engine)?;
        if let Ok(state) = arbiter.observe(&me).await {
            if state.holder == Some(Holder { node_id: target, epoch }) {
                return Ok(());
            }
            if state.holder != Some(from) {
                return Err(err);
            }
        }
        if tokio::time::Instant::now() + Duration::from_millis(ctx.cfg.heartbeat_ms) >= deadline {
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(ctx.cfg.heartbeat_ms / 2)).await;
    }
}

fn failed(actions: Vec<Action>) -> Result<()> {
    for a in actions {
        if let Action::ChangeoverFailed { reason } = a {
            return Err(Error::Changeover(reason));
        }
    }
    Ok(())
}

/// A Standby passes the request to the Active it follows.
async fn forward(ctx: &Arc<Ctx>, target: &str, timeout: Duration) -> Result<u64> {
    let upstream = *ctx.upstream.lock().unwrap_or_else(|p| p.into_inner());
    let tx = upstream.and_then(|id| ctx.registry.get(id)).ok_or_else(|| {
        Error::Changeover("this standby is not connected to an active to forward the request to".into())
    })?;
    let (reply, answer) = oneshot::channel();
    tx.send(PeerCmd::Forward { target: target.into(), reply })
        .await
        .map_err(|_| Error::Changeover("the connection to the active closed".into()))?;
    match tokio::time::timeout(timeout + Duration::from_secs(2), answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(Error::Changeover("the connection to the active closed before it answered".into())),
        Err(_) => Err(Error::Changeover("the active did not answer in time".into())),
    }
}

/// Makes this Standby Active in the round after the highest epoch it has seen. With automatic
/// failover, through the arbiter: see [`force_at_arbiter`].
pub(crate) fn force(ctx: &Arc<Ctx>) -> Result<u64> {
    let engine = &ctx.engine;
    let arbiter = ctx.arbiter.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some((arbiter, timing)) = arbiter {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Changeover("a forced changeover with an arbiter needs the sync runtime".into()))?;
        return handle.block_on(force_at_arbiter(ctx, arbiter, timing));
    }
    let highest = engine.sync().peers().iter().map(|p| p.epoch).max().unwrap_or(0).max(engine.role().1);
    failed(engine.role_event(Event::Force { highest_epoch: highest })?)?;
    let epoch = engine.role().1;
    tracing::warn!(epoch = %crate::roles::machine::epoch::display(epoch), "forced changeover: this node is now active");
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
        return Err(Error::Changeover("this node is already the active".into()));
    }
    let state = arbiter.observe(&me).await?;
    let highest = engine.sync().peers().iter().map(|p| p.epoch).max().unwrap_or(0).max(epoch).max(state.highest_epoch);
    let Some(new) = arbiter.acquire(&me, state.holder, highest).await? else {
        return Err(Error::Changeover("the arbiter's holder changed meanwhile; nothing changed, ask again".into()));
    };
    tracing::warn!(
        epoch = %crate::roles::machine::epoch::display(new),
        wait_ms = timing.fence_after_ms(),
        "forced changeover: the arbiter made this node the holder; publishing once the old active's lease ran out"
    );
    tokio::time::sleep(Duration::from_millis(timing.fence_after_ms())).await;
    failed(engine.role_event(Event::Elected { epoch: new, until_ms: 0 })?)?;
    if engine.role() != (Role::Active, new) {
        return Err(Error::Changeover("this node could not take the role the arbiter granted".into()));
    }
    Ok(new)
}
