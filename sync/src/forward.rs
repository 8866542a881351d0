//! A planned changeover asked on a Standby: forwarded to the Active it follows, which leads it
//! (`changeover::forwarded`) for at most what is left of this node's deadline. Two things can
//! go wrong that say nothing about the changeover itself, and both are settled here, so that
//! every front end gets the same answer:
//! - right after an earlier changeover this node follows no Active for a moment (until it has
//!   dialed the new one): nothing was sent, and the caller tries again until the deadline;
//! - the connection closes before the answer comes: the Active closes it as soon as it has
//!   handed its role away, often before its answer goes out, and a node that stopped being the
//!   Active closes it with the request unread. The outcome is then read from what this node
//!   sees (the target Active at a higher epoch: done); if nothing happened yet, the request is
//!   forwarded again to the Active this node follows by then (which answers busy while the first
//!   request still runs there, or that the target is already the Active when it did land); past
//!   the deadline the outcome is looked for until the deadline plus [`FORWARD_MARGIN_MS`].

use crate::EngineExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::changeover::FORWARD_MARGIN_MS;
use super::conn::PeerCmd;
use super::runtime::Ctx;
use super::wire::Member;
use mgha_core::error::{ChangeoverError, Result};
use mgha_core::node::Role;

/// How often a Standby that follows no Active yet, or whose forward found the Active gone, looks
/// again.
pub(crate) const UPSTREAM_POLL_MS: u64 = 20;
/// How often the outcome of a forward whose answer was lost is looked for.
const OUTCOME_POLL_MS: u64 = 10;

/// Forwards the changeover to `member` to the Active this Standby follows and returns its
/// answer, or the outcome seen here when the answer is lost. `before` is this node's epoch when
/// the changeover was asked.
pub(crate) async fn forward(ctx: &Arc<Ctx>, member: &Member, before: u64, deadline: Instant) -> Result<u64> {
    let upstream = *ctx.upstream.lock().unwrap_or_else(|p| p.into_inner());
    let Some(session) = upstream.and_then(|id| ctx.registry.get(id)) else {
        return Err(ChangeoverError::NotFollowingAnActive.into());
    };
    let timeout_ms = deadline.saturating_duration_since(Instant::now()).as_millis().max(1) as u64;
    let (reply, answer) = oneshot::channel();
    if session.tx.try_send(PeerCmd::Forward { target: member.name.clone(), timeout_ms, reply }).is_err() {
        // The session is closing or busy: nothing was sent.
        return Err(ChangeoverError::NotFollowingAnActive.into());
    }
    let until = deadline + Duration::from_millis(FORWARD_MARGIN_MS);
    match tokio::time::timeout_at(until, answer).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => match took_over(ctx, member, before)? {
            Some(epoch) => Ok(epoch),
            None => Err(ChangeoverError::ForwardingClosed { target: member.name.clone() }.into()),
        },
        Err(_) => match took_over(ctx, member, before)? {
            Some(epoch) => Ok(epoch),
            None => Err(ChangeoverError::ActiveDidNotAnswer.into()),
        },
    }
}

/// After a forward whose answer was lost: waits until `until` for the target to be seen taking
/// over; the outcome is unknown here otherwise.
pub(crate) async fn outcome(ctx: &Arc<Ctx>, member: &Member, before: u64, until: Instant) -> Result<u64> {
    loop {
        if let Some(epoch) = took_over(ctx, member, before)? {
            return Ok(epoch);
        }
        if Instant::now() >= until {
            return Err(ChangeoverError::ForwardingClosed { target: member.name.clone() }.into());
        }
        tokio::time::sleep(Duration::from_millis(OUTCOME_POLL_MS)).await;
    }
}

/// The epoch at which `member` became Active after epoch `before`, as this node (`me`) sees it:
/// it is the target and Active, or it is a Standby at that epoch that follows the target or has
/// heard from it that it is Active there.
fn took_over(ctx: &Ctx, member: &Member, before: u64) -> Result<Option<u64>> {
    let (role, epoch) = ctx.engine.role();
    if epoch <= before {
        return Ok(None);
    }
    let done = match role {
        Role::Active => member.node_id == ctx.engine.node()?.node_id,
        Role::Standby => {
            let following = *ctx.upstream.lock().unwrap_or_else(|p| p.into_inner()) == Some(member.node_id);
            following
                || ctx
                    .engine
                    .sync()
                    .peers()
                    .iter()
                    .any(|p| p.node_id == member.node_id && p.role == Some(Role::Active) && p.epoch == epoch)
        }
    };
    Ok(done.then_some(epoch))
}
