//! A Standby's side: dial every member, follow the one that is Active (apply its revisions
//! durably and acknowledge them, install full snapshots), and say who the Active is.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

use super::pki::node_id_of;
use super::plan::SyncStatus;
use super::runtime::{check_hello, connect_member, learn_members, our_hello, Ctx};
use super::wire::{read_msg, write_msg, Hello, Member, Msg, WireError};
use crate::engine::SNAPSHOT_FILE;
use crate::error::{Error, Result};
use crate::node::Role;
use crate::store::SnapshotBuilder;

fn peer_err(e: WireError) -> Error {
    Error::Peer(e.to_string())
}

/// Keeps a connection to `member` while this node is a Standby and that member is Active.
pub(crate) async fn dial_loop(ctx: Arc<Ctx>, member: Member) {
    let mut shutdown = ctx.shutdown.clone();
    let pause = Duration::from_millis(ctx.cfg.reconnect_ms.max(10));
    loop {
        if *shutdown.borrow() {
            return;
        }
        let standby = matches!(ctx.engine.node().map(|n| n.role), Ok(Role::Standby));
        if standby {
            if let Err(e) = follow_once(&ctx, &member).await {
                tracing::debug!(peer = %member.name, error = %e, "not following");
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

async fn follow_once(ctx: &Arc<Ctx>, member: &Member) -> Result<()> {
    tracing::debug!(peer = %member.name, addr = %member.listen, "dialing");
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
    learn_members(ctx, &hello)?;
    if hello.role != Role::Active {
        return Ok(());
    }
    let mut node = ctx.engine.node()?;
    if hello.epoch < node.epoch {
        let reason = format!("active epoch {} is older than ours {}", hello.epoch, node.epoch);
        let _ = write_msg(&mut tls, &Msg::Refuse { reason: reason.clone() }).await;
        return Err(Error::Peer(reason));
    }
    if hello.epoch > node.epoch {
        node.epoch = hello.epoch;
        ctx.engine.set_node(&node)?;
    }
    ctx.engine.sync().set_active_hint(Some(hello.name.clone()));
    tracing::info!(active = %hello.name, "following the active");
    let result = follow(ctx, &mut tls, &hello).await;
    ctx.engine.sync().update_peer(hello.node_id, |p| {
        p.connected = false;
        p.status = SyncStatus::Unreachable;
    });
    result
}

/// Processes the Active's messages until the connection ends.
async fn follow<S: AsyncRead + AsyncWrite + Unpin>(ctx: &Arc<Ctx>, stream: &mut S, hello: &Hello) -> Result<()> {
    let timeout = Duration::from_millis(ctx.cfg.peer_timeout_ms.max(100));
    let mut shutdown = ctx.shutdown.clone();
    let mut snapshot: Option<SnapshotBuilder> = None;
    let synced = |ctx: &Ctx| {
        let head = ctx.engine.sync().head();
        ctx.engine.sync().update_peer(hello.node_id, |p| {
            p.connected = true;
            p.head = head;
            p.status = SyncStatus::Synchronized;
            p.last_contact_ms = crate::now_ms();
        });
    };
    synced(ctx);
    loop {
        let msg = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            read = tokio::time::timeout(timeout, read_msg(stream)) => match read {
                Err(_) => return Err(Error::Peer(format!("no word from the active for {} ms", timeout.as_millis()))),
                Ok(Ok(Some(m))) => m,
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(e)) => return Err(peer_err(e)),
            }
        };
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
                        Msg::Ack { head }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refusing a revision from the active");
                        let _ = write_msg(stream, &Msg::Refuse { reason: e.to_string() }).await;
                        return Err(e);
                    }
                }
            }
            Msg::IdAt { seq } => Msg::IdAtReply { seq, id: ctx.engine.store().id_at(seq)? },
            Msg::Ping { nonce } => Msg::Pong { nonce },
            Msg::SnapshotBegin { head, objects } => {
                let engine = ctx.engine.clone();
                let builder = tokio::task::spawn_blocking(move || {
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
                Msg::Ack { head }
            }
            Msg::Refuse { reason } => return Err(Error::Peer(format!("the active refused us: {reason}"))),
            other => return Err(Error::Peer(format!("unexpected message from the active: {other:?}"))),
        };
        write_msg(stream, &reply).await.map_err(peer_err)?;
    }
}
