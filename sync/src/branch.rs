//! Collision branches over the wire. When a peer's history diverged from the Active's (or runs
//! ahead of it), the Active finds the fork point by asking the peer for its ids (binary search:
//! ids agree up to the fork and differ after it, because they form a hash chain), fetches the
//! peer's revisions after the fork, and keeps them as a branch before anything replaces the
//! peer's store.

use crate::EngineExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWrite;

use super::conn::Inbox;
use super::runtime::Ctx;
use super::state::NodeEvent;
use super::wire::{write_msg, Hello, Msg, WireError};
use mgha_core::error::{Error, Result};
use mgha_core::model::Hash;
use mgha_core::revision::{Head, Revision};
use mgha_core::store::{Branch, Store};

/// Most revisions fetched as one branch; a longer one is left on its node (which then keeps its
/// store and is not synchronized) and reported.
pub const BRANCH_REVISIONS_MAX: u64 = 100_000;

fn peer_err(e: WireError) -> Error {
    Error::Peer(e.to_string())
}

async fn next(rx: &mut Inbox, timeout: Duration) -> Result<Msg> {
    loop {
        match tokio::time::timeout(timeout, rx.recv()).await {
            Err(_) => return Err(Error::Peer("the peer did not answer in time".into())),
            Ok(None) => return Err(Error::Peer("connection closed".into())),
            Ok(Some(Err(e))) => return Err(peer_err(e)),
            Ok(Some(Ok(Msg::Pong { .. }))) => continue,
            Ok(Some(Ok(m))) => return Ok(m),
        }
    }
}

async fn peer_id_at<W: AsyncWrite + Unpin>(
    wr: &mut W,
    rx: &mut Inbox,
    seq: u64,
    timeout: Duration,
) -> Result<Option<Hash>> {
    write_msg(wr, &Msg::IdAt { seq }).await.map_err(peer_err)?;
    match next(rx, timeout).await? {
        Msg::IdAtReply { seq: s, id } if s == seq => Ok(id),
        other => Err(Error::Peer(format!("expected an id reply, got {other:?}"))),
    }
}

/// Fetches and keeps the peer's branch; returns the branch id.
pub(crate) async fn fetch<W: AsyncWrite + Unpin>(
    ctx: &Arc<Ctx>,
    wr: &mut W,
    rx: &mut Inbox,
    hello: &Hello,
) -> Result<u64> {
    let timeout = Duration::from_millis(ctx.server.cfg.peer_timeout_ms.max(1000));
    let store = ctx.engine.store();
    let (ours, floor) = (store.head()?, store.floor()?);
    let peer = hello.head;
    // The highest height where both ids agree, searched between our floor and the lower head.
    let (mut lo, mut hi) = (floor.seq, ours.seq.min(peer.seq));
    if peer_id_at(wr, rx, lo, timeout).await?.is_none() && lo < hi {
        // The peer was rebuilt by a full sync after our floor, so its history starts higher:
        // find its oldest revision (it keeps every one from there to its head) and start there.
        if peer_id_at(wr, rx, hi, timeout).await?.is_some() {
            let mut low = lo + 1;
            while low < hi {
                let mid = low + (hi - low) / 2;
                if peer_id_at(wr, rx, mid, timeout).await?.is_some() {
                    hi = mid;
                } else {
                    low = mid + 1;
                }
            }
            lo = low;
        }
        hi = ours.seq.min(peer.seq);
    }
    if peer_id_at(wr, rx, lo, timeout).await? != our_id(&store, lo)? {
        return Err(Error::Peer(format!(
            "{}'s history forks before revision {lo}, the oldest this node keeps; its store is left as it is",
            hello.name
        )));
    }
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if peer_id_at(wr, rx, mid, timeout).await? == our_id(&store, mid)? {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let fork_seq = lo;
    let fork = if fork_seq == floor.seq { floor } else { store.revision(fork_seq)?.head() };
    if peer.seq - fork_seq > BRANCH_REVISIONS_MAX {
        return Err(Error::Peer(format!(
            "{}'s branch has {} revisions, over the limit of {BRANCH_REVISIONS_MAX}; its store is left as it is",
            hello.name,
            peer.seq - fork_seq
        )));
    }
    write_msg(wr, &Msg::GetRevisions { after: fork_seq, to: peer.seq }).await.map_err(peer_err)?;
    let mut revisions = Vec::new();
    loop {
        match next(rx, timeout).await? {
            Msg::BranchRevision(r) => revisions.push(*r),
            Msg::BranchEnd => break,
            other => return Err(Error::Peer(format!("expected branch revisions, got {other:?}"))),
        }
        if revisions.len() as u64 > peer.seq - fork_seq {
            return Err(Error::Peer("the peer sent more branch revisions than it announced".into()));
        }
    }
    let branch = Branch {
        id: 0,
        node_id: hello.node_id,
        node_name: hello.name.clone(),
        fork,
        revisions,
        detected_ms: mgha_core::now_ms(),
        resolved: None,
        resolved_ms: None,
    };
    let count = branch.revisions.len();
    let engine = ctx.engine.clone();
    let (id, known) = tokio::task::spawn_blocking(move || {
        let store = engine.store();
        let known = store.branches()?.iter().any(|b| branch.is_part_of(b));
        store.add_branch(branch).map(|id| (id, known))
    })
    .await
    .map_err(|e| Error::Peer(e.to_string()))??;
    if known {
        // Another node received the old Active's revisions before the heal: one branch, kept once.
        tracing::info!(peer = %hello.name, branch = id, revisions = count, "diverged with a branch already kept");
        return Ok(id);
    }
    tracing::warn!(peer = %hello.name, branch = id, revisions = count, fork = fork_seq, "collision: branch kept");
    ctx.engine.sync().emit(NodeEvent::Collision { branch: id, peer: hello.name.clone(), revisions: count });
    Ok(id)
}

fn our_id(store: &Store, seq: u64) -> Result<Option<Hash>> {
    if seq == 0 {
        return Ok(Some(Head::default().id));
    }
    store.id_at(seq)
}

/// The Standby's answer to `GetRevisions`: its own revisions in the range.
pub(crate) fn revisions(store: &Store, after: u64, to: u64) -> Result<Vec<Revision>> {
    let head = store.head()?;
    if to > head.seq || to.saturating_sub(after) > BRANCH_REVISIONS_MAX {
        return Err(Error::InvalidArgument(format!("cannot send revisions {after}..{to}")));
    }
    (after + 1..=to).map(|s| store.revision(s)).collect()
}
