//! A Standby's side: dial every member, follow the one that is Active (apply its revisions
//! durably and acknowledge them, install full snapshots, hand over its branch when asked), take
//! over when the Active promotes it, and say who the Active is. An Active dials too, to learn of
//! other Actives: whichever sees the higher epoch steps down (fencing).

use crate::EngineExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;

use super::branch;
use super::conn::{spawn_reader, Counted, Inbox, PeerCmd};
use super::pki::node_id_of;
use super::plan::SyncStatus;
use super::runtime::{self, check_hello, connect_member, learn_members, our_hello, role_event, Ctx};
use super::wire::{read_msg, write_msg, Hello, Member, Msg, WireError};
use mgha_core::engine::SNAPSHOT_FILE;
use mgha_core::error::{Error, Result};
use mgha_core::node::Role;
use mgha_core::roles::{Action, Event};
use mgha_core::store::SnapshotBuilder;

fn peer_err(e: WireError) -> Error {
    Error::Peer(e.to_string())
}

/// Keeps in touch with `member`: follows it while this node is a Standby and it is the Active;
/// while this node is Active, exchanges hellos with it now and then.
pub(crate) async fn dial_loop(ctx: Arc<Ctx>, member: Member) {
    let mut shutdown = ctx.shutdown.clone();
    let mut roles = ctx.engine.sync().role_changes();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let active = ctx.engine.role().0 == Role::Active;
        let mut answered = false;
        if runtime::contact_needed(&ctx, &member, active) {
            match contact(&ctx, &member).await {
                Ok(()) => answered = true,
                Err(e) => tracing::debug!(peer = %member.name, error = %e, "no session with peer"),
            }
        }
        let wait = runtime::dial_pause(&ctx, &member, active, answered);
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(wait) => {}
            // A role change, or an Active we do not follow dialing us: look again now.
            Ok(()) = roles.changed() => {}
            _ = ctx.wake_dialers.notified() => {}
        }
    }
}

async fn contact(ctx: &Arc<Ctx>, member: &Member) -> Result<()> {
    tracing::trace!(peer = %member.name, addr = %member.listen, "dialing");
    let mut tls = connect_member(ctx, &member.listen).await?;
    let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
    let node_id = node_id_of(&cert.ok_or_else(|| Error::Peer("peer sent no certificate".into()))?)?;
    write_msg(&mut tls, &Msg::Hello(our_hello(ctx)?)).await.map_err(peer_err)?;
    let handshake = Duration::from_millis(ctx.cfg.handshake_timeout_ms);
    let hello = match tokio::time::timeout(handshake, read_msg(&mut tls)).await {
        Err(_) => return Err(Error::Peer("no hello in time".into())),
        Ok(Ok(Some(Msg::Hello(h)))) => h,
        Ok(Ok(Some(Msg::Refuse { reason }))) => {
            return Err(Error::Peer(format!("{} refused us: {reason}", member.name)))
        }
        Ok(Ok(other)) => return Err(Error::Peer(format!("expected hello, got {other:?}"))),
        Ok(Err(e)) => return Err(peer_err(e)),
    };
    check_hello(ctx, &hello, node_id).map_err(Error::Peer)?;
    // A Standby names the Active it is about to follow at once: the Active may count it as
    // synchronized as soon as the hellos crossed, and a publish refused here from then on must
    // say where to publish. (Set again below once it is sure to follow.)
    let (role, epoch) = ctx.engine.role();
    if role == Role::Standby && hello.role == Role::Active && hello.epoch >= epoch {
        ctx.engine.sync().set_active_hint(Some(hello.name.clone()));
    }
    learn_members(ctx, &hello).await?;
    let (role, epoch) = ctx.engine.role();
    if role != Role::Standby || hello.role != Role::Active {
        // Not a session to keep, but the peer answered: say how its history compares to ours.
        let ours = ctx.engine.sync().head();
        ctx.engine.sync().update_peer(hello.node_id, |p| {
            p.head = hello.head;
            p.last_contact_ms = mgha_core::now_ms();
            p.status = if hello.head == ours {
                SyncStatus::Synchronized
            } else if hello.head.seq < ours.seq {
                SyncStatus::Lagging
            } else {
                SyncStatus::Advanced
            };
        });
        return Ok(());
    }
    if hello.epoch < epoch {
        let reason = format!("active epoch {} is older than ours {epoch}", hello.epoch);
        let _ = write_msg(&mut tls, &Msg::Refuse { reason: reason.clone() }).await;
        return Err(Error::Peer(reason));
    }
    ctx.engine.sync().set_active_hint(Some(hello.name.clone()));
    tracing::info!(active = %hello.name, "following the active");
    let tls = Counted::new(tls, ctx.engine.sync().traffic(hello.node_id));
    let (rd, mut wr) = tokio::io::split(tls);
    let (reader, mut rx) = spawn_reader(rd);
    let (session, mut cmds) = ctx.registry.register(hello.node_id);
    *ctx.upstream.lock().unwrap_or_else(|p| p.into_inner()) = Some(hello.node_id);
    let result = follow(ctx, &mut wr, &mut rx, &mut cmds, &hello).await;
    reader.abort();
    // Only forget the upstream and the connection if a newer session has not replaced them.
    if ctx.registry.unregister(hello.node_id, session) {
        let mut upstream = ctx.upstream.lock().unwrap_or_else(|p| p.into_inner());
        if *upstream == Some(hello.node_id) {
            *upstream = None;
        }
        drop(upstream);
        ctx.engine.sync().update_peer(hello.node_id, |p| {
            p.connected = false;
            p.status = SyncStatus::Unreachable;
        });
    }
    result
}

/// Processes the Active's messages until the connection ends or this node stops following.
async fn follow<W: AsyncWrite + Unpin>(
    ctx: &Arc<Ctx>,
    wr: &mut W,
    rx: &mut Inbox,
    cmds: &mut tokio::sync::mpsc::Receiver<PeerCmd>,
    hello: &Hello,
) -> Result<()> {
    let timeout = Duration::from_millis(ctx.cfg.peer_timeout_ms.max(100));
    let mut shutdown = ctx.shutdown.clone();
    let mut snapshot: Option<SnapshotBuilder> = None;
    let mut pending: Option<oneshot::Sender<Result<u64>>> = None;
    let synced = |ctx: &Ctx| {
        let head = ctx.engine.sync().head();
        ctx.engine.sync().update_peer(hello.node_id, |p| {
            p.connected = true;
            p.head = head;
            p.status = SyncStatus::Synchronized;
            p.last_contact_ms = mgha_core::now_ms();
        });
    };
    synced(ctx);
    let mut roles = ctx.engine.sync().role_changes();
    loop {
        let msg = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            // Fencing without waiting for the next frame (see below).
            _ = roles.changed() => {
                let (role, epoch) = ctx.engine.role();
                if role != Role::Standby || epoch > hello.epoch {
                    return Ok(());
                }
                continue;
            }
            cmd = cmds.recv() => {
                match cmd {
                    Some(PeerCmd::Forward { target, timeout_ms, reply }) => {
                        write_msg(wr, &Msg::ChangeoverRequest { target, timeout_ms }).await.map_err(peer_err)?;
                        pending = Some(reply);
                    }
                    Some(PeerCmd::Send(m)) => write_msg(wr, &m).await.map_err(peer_err)?,
                    Some(PeerCmd::Promote { .. }) | None => {}
                }
                continue;
            }
            read = tokio::time::timeout(timeout, rx.recv()) => match read {
                Err(_) => return Err(Error::Peer(format!("no word from the active for {} ms", timeout.as_millis()))),
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(peer_err(e)),
                Ok(None) => return Ok(()),
            }
        };
        // Fencing: stop following as soon as this node is no longer a Standby of this epoch.
        let (role, epoch) = ctx.engine.role();
        if role != Role::Standby || epoch > hello.epoch {
            return Ok(());
        }
        let reply = match msg {
            Msg::Revision(w) => {
                let engine = ctx.engine.clone();
                let applied = tokio::task::spawn_blocking(move || {
                    let parent = engine.store().head()?.id;
                    engine.apply_replicated(w.into_revision(parent))
                })
                .await
                .map_err(|e| Error::Peer(e.to_string()))?;
                match applied {
                    Ok(head) => {
                        synced(ctx);
                        Msg::Ack { seq: head.seq, state_hash: head.state_hash, epoch: ctx.engine.role().1 }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refusing a revision from the active");
                        let _ = write_msg(wr, &Msg::Refuse { reason: e.to_string() }).await;
                        return Err(e);
                    }
                }
            }
            Msg::IdAt { seq } => Msg::IdAtReply { seq, id: ctx.engine.store().id_at(seq)? },
            Msg::Ping { nonce } => Msg::Pong { nonce },
            Msg::SnapshotBegin { head, objects, archive } => {
                let engine = ctx.engine.clone();
                let builder = tokio::task::spawn_blocking(move || {
                    if archive {
                        archive_store(&engine)?;
                    }
                    let node = engine.node()?;
                    SnapshotBuilder::begin(&engine.dir().join(SNAPSHOT_FILE), &node, head, objects)
                })
                .await
                .map_err(|e| Error::Peer(e.to_string()))??;
                tracing::info!(seq = head.seq, objects, "receiving a full sync");
                snapshot = Some(builder);
                continue;
            }
            Msg::SnapshotChunk { objects } => {
                let mut builder =
                    snapshot.take().ok_or_else(|| Error::Peer("snapshot chunk before its start".into()))?;
                let builder = tokio::task::spawn_blocking(move || builder.add_chunk(&objects).map(|_| builder))
                    .await
                    .map_err(|e| Error::Peer(e.to_string()))??;
                snapshot = Some(builder);
                continue;
            }
            Msg::SnapshotEnd => {
                let builder = snapshot.take().ok_or_else(|| Error::Peer("snapshot end before its start".into()))?;
                let engine = ctx.engine.clone();
                let head = tokio::task::spawn_blocking(move || {
                    let path = builder.finish()?;
                    engine.install_snapshot(&path)
                })
                .await
                .map_err(|e| Error::Peer(e.to_string()))??;
                tracing::info!(seq = head.seq, "full sync installed");
                synced(ctx);
                Msg::Ack { seq: head.seq, state_hash: head.state_hash, epoch: ctx.engine.role().1 }
            }
            Msg::GetRevisions { after, to } => {
                let revisions = branch::revisions(&ctx.engine.store(), after, to)?;
                for r in revisions {
                    write_msg(wr, &Msg::BranchRevision(Box::new(r))).await.map_err(peer_err)?;
                }
                Msg::BranchEnd
            }
            Msg::Promote { epoch, head } => {
                let head_matches = ctx.engine.store().head()? == head;
                let request = Event::PromoteRequest { from: hello.node_id, epoch, head_matches };
                let actions = role_event(&ctx.engine, request).await?;
                if actions.iter().any(|a| matches!(a, Action::ReplyPromoted { .. })) {
                    write_msg(wr, &Msg::Promoted { epoch }).await.map_err(peer_err)?;
                    tracing::info!(epoch = %mgha_core::roles::machine::epoch::display(epoch), "promoted: this node is now active");
                    return Ok(());
                }
                continue;
            }
            Msg::ChangeoverResult { outcome } => {
                if let Some(reply) = pending.take() {
                    let _ = reply.send(outcome.map_err(Error::Changeover));
                }
                continue;
            }
            Msg::CaKey { pem } => {
                if !ctx.files.has_ca_key() {
                    ctx.files.write(&ctx.files.ca_key(), &pem, true)?;
                    tracing::info!("received the cluster CA key (this secondary can be promoted to primary)");
                }
                continue;
            }
            Msg::Refuse { reason } => return Err(Error::Peer(format!("the active refused us: {reason}"))),
            other => return Err(Error::Peer(format!("unexpected message from the active: {other:?}"))),
        };
        write_msg(wr, &reply).await.map_err(peer_err)?;
    }
}

/// Keeps a backup of this node's store before a snapshot replaces a diverged history.
fn archive_store(engine: &mgha_core::engine::Engine) -> Result<()> {
    let dir = engine.dir().join("archive");
    mgha_core::private::create_dir(&dir)?;
    let store = engine.store();
    let head = store.head()?;
    let path = dir.join(format!("{}-rev{}.mghabak", mgha_core::now_ms(), head.seq));
    let mut file = std::io::BufWriter::new(mgha_core::private::create_file(&path)?);
    mgha_core::backup::write_backup(&store, &mut file, &mut |_| {})?;
    use std::io::Write;
    file.flush()?;
    file.get_ref().sync_all()?;
    tracing::warn!(path = %path.display(), "history diverged from the active's: archived this node's store");
    Ok(())
}
