//! The Active's side of one Standby connection: decide what the Standby needs (see
//! [`super::plan`]), keep a diverged Standby's branch, send missing revisions or a full
//! snapshot, then push every new revision as it commits, track acknowledgements, and carry out
//! the Active's part of a planned changeover. Revisions go out as fast as the socket takes them
//! (acknowledgements are read on the side, see [`super::conn`]); a [`Watchdog`] drops the
//! connection when the Standby falls silent or stops acknowledging, also in the middle of a
//! write.

use crate::EngineExt;
use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::conn::{spawn_reader, Ack, Inbox, PeerCmd, Reader, Watchdog, Watched, IDLE_PING_HEARTBEATS};
use super::plan::{decide, our_id_at, Facts, Plan, SyncStatus};
use super::runtime::{role_event, Ctx};
use super::wire::{
    encode_frame, write_frame, write_msg, Hello, Msg, WireError, WireRevision, SNAPSHOT_CHUNK_BYTES,
    SNAPSHOT_CHUNK_OBJECTS,
};
use super::{branch, changeover};
use mgha_core::error::{ChangeoverError, Error, Result};
use mgha_core::limits::SNAPSHOT_FRAMES_AHEAD;
use mgha_core::node::Role;
use mgha_core::revision::{Head, Revision};
use mgha_core::roles::{Action, Event};
use mgha_core::store::SnapshotPart;

fn peer_err(e: WireError) -> Error {
    Error::Peer(e.to_string())
}

/// Serves one Standby until the connection ends, this node stops being Active, or shutdown.
pub(crate) async fn serve_standby<S>(ctx: Arc<Ctx>, stream: S, hello: Hello, link_heard: Arc<AtomicU64>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer_id = hello.node_id;
    let (rd, wr) = tokio::io::split(stream);
    let Reader { task: reader, inbox: mut rx, acks, heard } = spawn_reader(rd);
    heard.hear_link(link_heard);
    let timeout = Duration::from_millis(ctx.server.cfg.peer_timeout_ms.max(100));
    let dog = Arc::new(Watchdog::new(hello.name.clone(), timeout, heard));
    let mut wr = Watched::new(wr, dog.clone());
    let (session, mut cmds) = ctx.registry.register(peer_id);
    let mut link = Link { acks, dog, inflight: VecDeque::new() };
    let result = serve(&ctx, &mut wr, &mut rx, &mut link, &mut cmds, &hello).await;
    reader.abort();
    // A session that a newer one replaced leaves the peer's state to its successor.
    if ctx.registry.unregister(peer_id, session) {
        ctx.engine.sync().update_peer(peer_id, |p| {
            p.connected = false;
            // A Standby that cannot apply dials again at once: its cause stays shown meanwhile.
            if !matches!(p.status, SyncStatus::Collision | SyncStatus::ApplyFailing) {
                p.status = SyncStatus::Unreachable;
            }
        });
    }
    result
}

/// What the connection task reads and tracks besides its write half.
struct Link {
    acks: tokio::sync::watch::Receiver<Option<Ack>>,
    dog: Arc<Watchdog>,
    /// Revisions sent and not yet acknowledged, oldest first: (seq, frame bytes).
    inflight: VecDeque<(u64, usize)>,
}

impl Link {
    fn sent(&mut self, seq: u64, bytes: usize) {
        if self.inflight.is_empty() {
            self.dog.waiting_for(Some((seq, bytes)));
        }
        self.inflight.push_back((seq, bytes));
    }

    fn acked(&mut self, seq: u64) {
        let before = self.inflight.len();
        while self.inflight.front().is_some_and(|(s, _)| *s <= seq) {
            self.inflight.pop_front();
        }
        if self.inflight.len() != before {
            self.dog.waiting_for(self.inflight.front().copied());
        }
    }
}

/// Revisions sent between two looks at acknowledgements, commands and heartbeats.
const SEND_BURST_REVISIONS: usize = 256;

async fn serve<W: AsyncWrite + Unpin>(
    ctx: &Arc<Ctx>,
    wr: &mut W,
    rx: &mut Inbox,
    link: &mut Link,
    cmds: &mut mpsc::Receiver<PeerCmd>,
    hello: &Hello,
) -> Result<()> {
    let engine = &ctx.engine;
    let peer_id = hello.node_id;
    let mut heads = engine.sync().subscribe();
    if ctx.server.files.has_ca_key() {
        // Lets any Secondary be promoted to Primary if this one is lost for good.
        let pem = ctx.server.files.read(&ctx.server.files.ca_key())?;
        write_msg(wr, &Msg::CaKey { pem }).await.map_err(peer_err)?;
    }
    let (status, plan) = plan_for(ctx, wr, rx, hello).await?;
    tracing::info!(peer = %hello.name, ?status, ?plan, "standby connected");
    engine.sync().update_peer(peer_id, |p| {
        // A Standby that failed to apply and comes back where it was is still failing, until
        // its acks move (`on_ack`).
        let still_failing =
            p.status == SyncStatus::ApplyFailing && p.head == hello.head && status == SyncStatus::Lagging;
        if !still_failing {
            p.status = status;
            p.apply_error = None;
        }
        p.head = hello.head;
        p.connected = true;
        p.last_contact_ms = mgha_core::now_ms();
    });
    let mut next = match plan {
        Plan::Stream => hello.head.seq + 1,
        Plan::SendRevisions { after, .. } => after + 1,
        Plan::FullSync => send_snapshot(ctx, wr, link, false).await?.seq + 1,
        Plan::Hold => {
            // Diverged or ahead: keep its branch first; only then may a snapshot replace its store.
            branch::fetch(ctx, wr, rx, hello).await?;
            send_snapshot(ctx, wr, link, true).await?.seq + 1
        }
    };

    let heartbeat = Duration::from_millis(ctx.server.cfg.heartbeat_ms.max(10));
    // Pings every heartbeat while revisions wait for acknowledgement, every
    // `IDLE_PING_HEARTBEATS` while the session is idle; on the server's grid either way, so
    // that the pings of many domains share the link's writes.
    let idle = heartbeat * IDLE_PING_HEARTBEATS;
    let mut next_ping = tokio::time::Instant::now();
    let mut shutdown = ctx.shutdown.clone();
    // A node that handed its role away ends its sessions at once, so that its Standbys go and
    // follow the new Active without waiting for a heartbeat.
    let mut roles = engine.sync().role_changes();
    let mut nonce = 0u64;
    let mut acks_open = true;
    loop {
        if engine.role().0 != Role::Active {
            return Ok(());
        }
        if next <= engine.sync().head().seq {
            send_revisions(ctx, wr, link, &mut next).await?;
        }
        if !link.inflight.is_empty() {
            next_ping = next_ping.min(super::grid::next(heartbeat));
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => return Ok(()),
            _ = roles.changed() => {}
            changed = link.acks.changed(), if acks_open => {
                if changed.is_err() {
                    // The reader ended; what it read before (a Promoted, say) is still in the
                    // inbox, and its end comes after it there.
                    acks_open = false;
                    continue;
                }
                let ack = *link.acks.borrow_and_update();
                if let Some(Ack { seq, state_hash, epoch }) = ack {
                    link.acked(seq);
                    on_ack(ctx, peer_id, seq, state_hash, epoch).await?;
                }
            }
            cmd = cmds.recv() => match cmd {
                Some(PeerCmd::Promote { epoch, head }) => {
                    write_msg(wr, &Msg::Promote { epoch, head }).await.map_err(peer_err)?;
                }
                Some(PeerCmd::Send(msg)) => write_msg(wr, &msg).await.map_err(peer_err)?,
                Some(PeerCmd::Forward { reply, .. }) => {
                    // This node serves the peer, so it is no Standby of it: the caller looks again.
                    let _ = reply.send(Err(ChangeoverError::NotFollowingAnActive.into()));
                }
                None => return Ok(()),
            },
            msg = rx.recv() => {
                engine.sync().update_peer(peer_id, |p| p.last_contact_ms = mgha_core::now_ms());
                match msg {
                    Some(Ok(Msg::Promoted { epoch })) => {
                        let actions = role_event(&ctx.engine, Event::Promoted { from: peer_id, epoch }).await?;
                        if actions.iter().any(|a| matches!(a, Action::ChangeoverDone { .. })) {
                            engine.sync().set_active_hint(Some(hello.name.clone()));
                            tracing::info!(new_active = %hello.name, "planned changeover done; following it");
                            ctx.promoted.send_replace(Some((peer_id, epoch)));
                            return Ok(());
                        }
                    }
                    Some(Ok(Msg::ChangeoverRequest { target, timeout_ms })) => {
                        let (ctx2, session) = (ctx.clone(), ctx.registry.get(peer_id));
                        let timeout = ctx.changeover_timeout().min(Duration::from_millis(timeout_ms.max(1)));
                        tokio::spawn(async move {
                            let outcome = changeover::forwarded(&ctx2, &target, timeout).await;
                            let msg = Msg::ChangeoverResult { outcome: outcome.map_err(ChangeoverError::of) };
                            // The session is gone when this node handed its role away: the
                            // Standby then reads the outcome from what it sees.
                            if let Some(session) = session {
                                let _ = session.tx.send(PeerCmd::Send(msg)).await;
                            }
                        });
                    }
                    Some(Ok(Msg::ApplyFailing { cause })) => {
                        tracing::warn!(peer = %hello.name, %cause, "the standby cannot apply revisions");
                        engine.sync().update_peer(peer_id, |p| {
                            p.status = SyncStatus::ApplyFailing;
                            p.apply_error = Some(cause);
                            p.last_contact_ms = mgha_core::now_ms();
                        });
                    }
                    Some(Ok(Msg::Refuse { reason })) => return Err(Error::Peer(format!("standby refused: {reason}"))),
                    Some(Ok(other)) => return Err(Error::Peer(format!("unexpected message from standby: {other:?}"))),
                    Some(Err(e)) => return Err(peer_err(e)),
                    None => return Ok(()),
                }
            }
            _ = tokio::time::sleep_until(next_ping) => {
                next_ping = super::grid::next(if link.inflight.is_empty() { idle } else { heartbeat });
                link.dog.check().map_err(Error::Peer)?;
                let silent = link.dog.heard.silent_for().as_millis() as u64;
                engine.sync().update_peer(peer_id, |p| p.last_contact_ms = mgha_core::now_ms().saturating_sub(silent));
                nonce += 1;
                let head = engine.sync().head().seq;
                write_msg(wr, &Msg::Ping { nonce, head }).await.map_err(peer_err)?;
            }
            // More to send: come straight back once nothing above is ready.
            _ = std::future::ready(()), if next <= engine.sync().head().seq => {}
            changed = heads.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}

/// Gathers the facts (asking the peer for its id at our head when it is ahead) and decides.
async fn plan_for<W: AsyncWrite + Unpin>(
    ctx: &Arc<Ctx>,
    wr: &mut W,
    rx: &mut Inbox,
    hello: &Hello,
) -> Result<(SyncStatus, Plan)> {
    if hello.damaged {
        // Its copy cannot be trusted whatever its head says: it gets the whole state again.
        tracing::warn!(peer = %hello.name, "the standby's store is damaged: healing it by a full sync");
        return Ok((SyncStatus::Lagging, Plan::FullSync));
    }
    let store = ctx.engine.store();
    let (ours, floor, peer) = (store.head()?, store.floor()?, hello.head);
    let peer_id_at_ours = if peer.seq > ours.seq {
        write_msg(wr, &Msg::IdAt { seq: ours.seq }).await.map_err(peer_err)?;
        wait_id_reply(rx, ours.seq, Duration::from_millis(ctx.server.cfg.peer_timeout_ms)).await?
    } else {
        None
    };
    let our_id_at_peer = (peer.seq <= ours.seq).then(|| our_id_at(peer.seq, &floor, |s| store.id_at(s).ok().flatten()));
    Ok(decide(&Facts { ours, floor, peer, our_id_at_peer, peer_id_at_ours }))
}

async fn on_ack(
    ctx: &Ctx,
    peer_id: mgha_core::model::Uid,
    seq: u64,
    state_hash: mgha_core::model::Hash,
    epoch: u64,
) -> Result<()> {
    // An ack comes only from a store that applied or installed what it acknowledges: a Standby
    // that said it was damaged acknowledges once the full sync replaced its store.
    ctx.set_damaged(peer_id, false);
    if epoch > ctx.engine.role().1 {
        // A Standby holds an epoch above ours only if some node became Active in it (the target
        // of our changeover, say): fencing, as for a hello.
        role_event(&ctx.engine, Event::PeerSeen { peer: peer_id, role: Role::Standby, epoch }).await?;
    }
    let ours = ctx.engine.sync().head();
    // The standby applied our revisions, so its id at `seq` is ours.
    let id = if seq == ours.seq { Some(ours.id) } else { ctx.engine.store().id_at(seq)? };
    let head = Head { seq, id: id.unwrap_or_default(), state_hash };
    // Collision is shown from the open branches by Engine::status; here only heads count.
    ctx.engine.sync().update_peer(peer_id, |p| {
        p.head = head;
        p.epoch = epoch;
        p.last_contact_ms = mgha_core::now_ms();
        p.status = if head == ours { SyncStatus::Synchronized } else { SyncStatus::Lagging };
        p.apply_error = None;
    });
    Ok(())
}

async fn wait_id_reply(rx: &mut Inbox, seq: u64, timeout: Duration) -> Result<Option<mgha_core::model::Hash>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return Err(Error::Peer("no answer to id query".into())),
            Ok(Some(Ok(Msg::IdAtReply { seq: s, id }))) if s == seq => return Ok(id),
            Ok(Some(Ok(Msg::Pong { .. }))) => continue,
            Ok(Some(Ok(other))) => return Err(Error::Peer(format!("expected an id reply, got {other:?}"))),
            Ok(Some(Err(e))) => return Err(peer_err(e)),
            Ok(None) => return Err(Error::Peer("connection closed".into())),
        }
    }
}

/// Bytes of revision records read from the store for one burst (at least one revision).
const SEND_BURST_BYTES: usize = 4 * 1024 * 1024;

/// Sends the next burst of revisions from `*next` towards our head, advancing `*next`. Blocks
/// only as long as the socket does, and the socket only as long as the [`Watchdog`] allows.
async fn send_revisions<W: AsyncWrite + Unpin>(ctx: &Ctx, wr: &mut W, link: &mut Link, next: &mut u64) -> Result<()> {
    let head = ctx.engine.sync().head();
    let from = *next;
    let revisions: Vec<Arc<Revision>> = match ctx.engine.sync().cached(from) {
        Some(r) => vec![r],
        None => {
            let engine = ctx.engine.clone();
            let to = head.seq.min(from + SEND_BURST_REVISIONS as u64 - 1);
            tokio::task::spawn_blocking(move || engine.store().revisions_between(from, to, SEND_BURST_BYTES))
                .await
                .map_err(|e| Error::Peer(e.to_string()))??
                .into_iter()
                .map(Arc::new)
                .collect()
        }
    };
    // The burst is written as a run and flushed once: its frames share blocks (one deflate
    // flush, TLS record and write for up to 16 KiB of them, docs/protocol.md "Blocks"), where a
    // flush after each cost the Active most of its CPU in a catch-up.
    for rev in revisions {
        let frame = encode_frame(&Msg::Revision(WireRevision::from_revision(&rev))).map_err(peer_err)?;
        wr.write_all(&frame).await.map_err(|e| peer_err(e.into()))?;
        link.sent(rev.seq, frame.len());
        *next = rev.seq + 1;
    }
    wr.flush().await.map_err(|e| peer_err(e.into()))?;
    Ok(())
}

/// Streams a consistent snapshot (objects, then the history above our floor) in bounded chunks;
/// memory stays at a few chunks whatever the database size, because the reading thread waits for
/// the socket. The reading thread also encodes each chunk's frame, so that the next one is read
/// and encoded while the one before is encrypted and on the wire.
async fn send_snapshot<W: AsyncWrite + Unpin>(ctx: &Ctx, wr: &mut W, link: &mut Link, archive: bool) -> Result<Head> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(SNAPSHOT_FRAMES_AHEAD);
    let engine = ctx.engine.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let store = engine.store();
        let send = |m: Msg| {
            let frame = encode_frame(&m).map_err(peer_err)?;
            tx.blocking_send(frame).map_err(|_| Error::Peer("standby went away during full sync".into()))
        };
        store.snapshot_chunks(
            SNAPSHOT_CHUNK_OBJECTS,
            SNAPSHOT_CHUNK_BYTES,
            &mut |info| {
                send(Msg::SnapshotBegin {
                    head: info.head,
                    objects: info.objects,
                    archive,
                    floor: info.floor,
                    revisions: info.revisions,
                })
            },
            &mut |part| match part {
                SnapshotPart::Objects(objects) => send(Msg::SnapshotChunk { objects }),
                SnapshotPart::History(records) => send(Msg::SnapshotHistory { records }),
            },
        )
    });
    while let Some(frame) = rx.recv().await {
        write_frame(wr, &frame).await.map_err(peer_err)?;
    }
    let head = producer.await.map_err(|e| Error::Peer(e.to_string()))??;
    write_msg(wr, &Msg::SnapshotEnd).await.map_err(peer_err)?;
    // Acknowledged once installed: the Standby's verify and swap get the allowance of a
    // revision as large as the store.
    let bytes = std::fs::metadata(ctx.engine.store().path()).map(|m| m.len() as usize).unwrap_or(0);
    link.sent(head.seq, bytes);
    tracing::info!(seq = head.seq, "full sync sent");
    Ok(head)
}
