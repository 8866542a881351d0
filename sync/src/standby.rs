//! A Standby's side: dial every member, follow the one that is Active (apply its revisions
//! durably and acknowledge them, install full snapshots with their history, hand over its
//! branch when asked), take over when the Active promotes it, and say who the Active is. An
//! Active dials too, to learn of other Actives: whichever sees the higher epoch steps down
//! (fencing).

use crate::EngineExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

use super::branch;
use super::compress::Compressed;
use super::conn::{
    spawn_reader, spawn_writer, Ack, Counted, Heard, Inbox, Outbox, PeerCmd, Reader, IDLE_PING_HEARTBEATS,
};
use super::grid;
use super::link;
use super::plan::SyncStatus;
use super::runtime::{self, check_hello, learn_members, our_hello, role_event, Ctx};
use super::wire::{read_msg, write_msg, Hello, Member, Msg, WireError};
use mgha_core::engine::SNAPSHOT_FILE;
use mgha_core::error::{Error, Result};
use mgha_core::node::Role;
use mgha_core::revision::Head;
use mgha_core::roles::{Action, Event};
use mgha_core::store::{SnapshotBuilder, SnapshotInfo};

/// Most revisions applied in one durable commit; with the inbox's byte bound, what a batch
/// holds in memory and how long one commit takes stay small.
const APPLY_BATCH_REVISIONS_MAX: usize = 4096;

fn peer_err(e: WireError) -> Error {
    Error::Peer(e.to_string())
}

/// Keeps in touch with `member`: follows it while this node is a Standby and it is the Active;
/// while this node is Active, exchanges hellos with it now and then.
pub(crate) async fn dial_loop(ctx: Arc<Ctx>, member: Member) {
    let mut shutdown = ctx.shutdown.clone();
    let mut roles = ctx.engine.sync().role_changes();
    // The member list version this member last heard from us (see `Ctx::members_version`).
    let mut told = ctx.members_version.load(std::sync::atomic::Ordering::SeqCst);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let active = ctx.engine.role().0 == Role::Active;
        let mut answered = false;
        let members_version = ctx.members_version.load(std::sync::atomic::Ordering::SeqCst);
        let tell_members = active && members_version != told;
        if tell_members || runtime::contact_needed(&ctx, &member, active) {
            // A member removed meanwhile (or no longer of this domain) is dialed no more. Asked
            // only before a contact: while an Active serves the member, a removal ends that
            // session (`forget_removed`, `forget_non_members`) and the next turn asks.
            if runtime::left(&ctx, member.node_id).await.unwrap_or(false) {
                runtime::stop_dialing(&ctx, member.node_id);
                tracing::info!(peer = %member.name, domain = %ctx.domain, "no longer a member: no longer dialed");
                return;
            }
            match contact(&ctx, &member).await {
                Ok(()) => {
                    answered = true;
                    told = members_version;
                }
                Err(e) => tracing::debug!(peer = %member.name, error = %e, "no session with peer"),
            }
        }
        let wait = runtime::dial_pause(&ctx, &member, active, answered);
        // An Active's loops turn every heartbeat, on the server's grid (see `grid`).
        let until = if active { grid::next(wait) } else { tokio::time::Instant::now() + wait };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep_until(until) => {}
            // A role change, or an Active we do not follow dialing us: look again now.
            Ok(()) = roles.changed() => {}
            _ = ctx.wake_dialers.notified() => {}
        }
    }
}

async fn contact(ctx: &Arc<Ctx>, member: &Member) -> Result<()> {
    tracing::trace!(peer = %member.name, addr = %member.listen, "dialing");
    // A stream of the link to the member's server (dialed now if there is none).
    let (node_id, mut tls) = link::open_stream(&ctx.server, member.node_id, &member.listen).await?;
    let ours = our_hello(ctx)?;
    let sent_damaged = ours.damaged;
    write_msg(&mut tls, &Msg::Hello(ours)).await.map_err(peer_err)?;
    let handshake = Duration::from_millis(ctx.server.cfg.handshake_timeout_ms);
    let hello = match tokio::time::timeout(handshake, read_msg(&mut tls)).await {
        Err(_) => return Err(Error::Peer("no hello in time".into())),
        Ok(Ok(Some(Msg::Hello(h)))) => h,
        Ok(Ok(Some(Msg::Refuse { reason }))) => {
            if reason == super::runtime::REMOVED {
                tracing::warn!(peer = %member.name, "{reason}");
            }
            return Err(Error::Peer(format!("{} refused us: {reason}", member.name)));
        }
        Ok(Ok(other)) => return Err(Error::Peer(format!("expected hello, got {other:?}"))),
        Ok(Err(e)) => return Err(peer_err(e)),
    };
    check_hello(ctx, &hello, node_id).map_err(Error::Peer)?;
    // The peer sent its hello and switched: from here on frames travel as blocks, counted as sent.
    let link_heard = tls.link_heard();
    let mut tls = Compressed::new(Counted::new(tls, ctx.engine.sync().traffic(hello.node_id)));
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
    let (rd, wr) = tokio::io::split(tls);
    let Reader { task: reader, inbox: mut rx, heard, .. } = spawn_reader(rd);
    heard.hear_link(link_heard);
    heard.note_active_head(hello.head.seq);
    let timeout = Duration::from_millis(ctx.server.cfg.peer_timeout_ms.max(100));
    let heartbeat = Duration::from_millis(ctx.server.cfg.heartbeat_ms.max(10));
    let outbox = spawn_writer(wr, hello.name.clone(), heard.clone(), heartbeat, timeout);
    let (session, mut cmds) = ctx.registry.register(hello.node_id);
    *ctx.upstream.lock().unwrap_or_else(|p| p.into_inner()) = Some(hello.node_id);
    let result = follow(ctx, &outbox, &mut rx, &heard, &mut cmds, &hello, sent_damaged).await;
    if let Err(e) = &result {
        if let Some(cause) = apply_failure(e) {
            tracing::warn!(active = %hello.name, %cause, "cannot store what the active sends; will try again");
            ctx.engine.sync().update_peer(hello.node_id, |p| {
                p.status = SyncStatus::ApplyFailing;
                p.apply_error = Some(cause.clone());
            });
            let _ = outbox.send(Msg::ApplyFailing { cause }).await;
        }
    }
    // What is queued (a refusal, the last acknowledgement, why applying fails) still goes out,
    // briefly.
    outbox.close(timeout).await;
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
            // Failing to apply is this node's own state, not the link's: it stays shown.
            if p.status != SyncStatus::ApplyFailing {
                p.status = SyncStatus::Unreachable;
            }
        });
    }
    result
}

/// Tells the peer table how this node stands against the Active it follows: synchronized only
/// with the Active's head (as its hello, pings and revisions announced it), lagging by the
/// distance before that.
fn report(ctx: &Ctx, hello: &Hello, heard: &Heard) {
    let ours = ctx.engine.sync().head();
    let theirs = heard.active_head();
    let silent = heard.silent_for().as_millis() as u64;
    // Until a commit succeeds again, a store that failed to apply is still failing.
    let failing = ctx.engine.store_fault().is_some();
    ctx.engine.sync().update_peer(hello.node_id, |p| {
        p.connected = true;
        let status = if theirs > ours.seq {
            // Only the height is known of a head not reached yet.
            p.head = Head { seq: theirs, ..Head::default() };
            SyncStatus::Lagging
        } else {
            p.head = ours;
            SyncStatus::Synchronized
        };
        if !(failing && p.status == SyncStatus::ApplyFailing) {
            p.status = status;
            p.apply_error = None;
        }
        p.last_contact_ms = mgha_core::now_ms().saturating_sub(silent);
    });
}

/// Why this node could not store what the Active sent, when that is the cause of `e`: a
/// failure of its own disk (code `io`), as opposed to a refused revision or a broken link.
fn apply_failure(e: &Error) -> Option<String> {
    if e.code() != mgha_core::error::ErrorCode::Io {
        return None;
    }
    Some(match mgha_core::store::write_fault_kind(e) {
        Some(kind) => format!("{kind}: {e}"),
        None => e.to_string(),
    })
}

/// Processes the Active's messages until the connection ends or this node stops following.
async fn follow(
    ctx: &Arc<Ctx>,
    outbox: &Outbox,
    rx: &mut Inbox,
    heard: &Heard,
    cmds: &mut tokio::sync::mpsc::Receiver<PeerCmd>,
    hello: &Hello,
    sent_damaged: bool,
) -> Result<()> {
    let timeout = Duration::from_millis(ctx.server.cfg.peer_timeout_ms.max(100));
    // Its own deadline and the status are looked at every `IDLE_PING_HEARTBEATS`: every frame
    // (and every acknowledgement, `ack` below) updates the status as it comes, and the link's
    // beats keep the Active's server heard.
    let every = Duration::from_millis(ctx.server.cfg.heartbeat_ms.max(10)) * IDLE_PING_HEARTBEATS;
    let mut ticker = grid::interval(every);
    let mut shutdown = ctx.shutdown.clone();
    let mut snapshot: Option<SnapshotBuilder> = None;
    let mut pending: Option<oneshot::Sender<Result<u64>>> = None;
    let ack = |head: Head| {
        outbox.ack(Ack { seq: head.seq, state_hash: head.state_hash, epoch: ctx.engine.role().1 });
        report(ctx, hello, heard);
    };
    report(ctx, hello, heard);
    let mut roles = ctx.engine.sync().role_changes();
    // A frame taken from the inbox while gathering a batch, to be handled next.
    let mut held: Option<std::result::Result<Msg, WireError>> = None;
    loop {
        let msg = if let Some(m) = held.take() {
            m.map_err(peer_err)?
        } else {
            tokio::select! {
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
                        outbox.send(Msg::ChangeoverRequest { target, timeout_ms }).await.map_err(peer_err)?;
                        pending = Some(reply);
                    }
                    Some(PeerCmd::Send(m)) => outbox.send(m).await.map_err(peer_err)?,
                    Some(PeerCmd::Promote { .. }) => {}
                    // The runtime let go of this session (a newer one replaced it, or the
                    // Active is no longer a member of the domain): it ends here.
                    None => return Ok(()),
                }
                continue;
            }
            _ = outbox.closed() => return Err(Error::Peer("the connection to the active broke while writing".into())),
            _ = ticker.tick() => {
                let silent = heard.silent_for();
                if silent > timeout {
                    let why = format!("no word from the active {} for {} ms; dropping the connection", hello.name, silent.as_millis());
                    tracing::warn!(active = %hello.name, "{why}");
                    return Err(Error::Peer(why));
                }
                report(ctx, hello, heard);
                continue;
            }
            read = rx.recv() => match read {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(peer_err(e)),
                None => return Ok(()),
            }
            }
        };
        // Fencing: stop following as soon as this node is no longer a Standby of this epoch.
        let (role, epoch) = ctx.engine.role();
        if role != Role::Standby || epoch > hello.epoch {
            return Ok(());
        }
        // Damage found since the hello (scrub, check, a read): a new hello says so, and the
        // Active answers it with a full sync.
        if !sent_damaged && snapshot.is_none() {
            if let Some(found) = ctx.engine.damage() {
                tracing::error!(damage = %found, "this standby's store is damaged: asking the active for a full sync");
                return Err(Error::Peer("this standby's store is damaged; reconnecting to heal by a full sync".into()));
            }
        }
        let reply = match msg {
            Msg::Revision(first) => {
                // What already waits in the inbox applies with it, in one durable commit.
                let mut batch = vec![first];
                while batch.len() < APPLY_BATCH_REVISIONS_MAX {
                    match rx.try_recv() {
                        Some(Ok(Msg::Revision(w))) => batch.push(w),
                        Some(other) => {
                            held = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                let engine = ctx.engine.clone();
                let applied = tokio::task::spawn_blocking(move || {
                    // The wire leaves parents out: each is the id before it, starting from our
                    // head; the store recomputes every id, so a wrong one is refused.
                    let mut parent = engine.store().head()?.id;
                    let revs = batch
                        .into_iter()
                        .map(|w| {
                            let id = w.id;
                            let rev = w.into_revision(parent);
                            parent = id;
                            rev
                        })
                        .collect();
                    engine.apply_replicated_batch(revs)
                })
                .await
                .map_err(|e| Error::Peer(e.to_string()))?;
                match applied {
                    Ok(head) => {
                        ack(head);
                        continue;
                    }
                    // A failure to store it is reported by the caller (`ApplyFailing`).
                    Err(e) if apply_failure(&e).is_some() => return Err(e),
                    Err(e) => {
                        // A revision that cannot apply because the store is damaged: the next
                        // hello says so, and the store heals by a full sync.
                        ctx.engine.record_damage(Some(&e));
                        tracing::warn!(error = %e, "refusing a revision from the active");
                        let _ = outbox.send(Msg::Refuse { reason: e.to_string() }).await;
                        return Err(e);
                    }
                }
            }
            Msg::IdAt { seq } => Msg::IdAtReply { seq, id: ctx.engine.store().id_at(seq)? },
            Msg::SnapshotBegin { head, objects, archive, floor, revisions } => {
                let engine = ctx.engine.clone();
                let builder = tokio::task::spawn_blocking(move || {
                    if engine.damage().is_some() {
                        set_aside_damaged(&engine)?;
                    } else if archive {
                        archive_store(&engine)?;
                    }
                    let node = engine.node()?;
                    let info = SnapshotInfo { head, floor, objects, revisions };
                    SnapshotBuilder::begin(&engine.dir().join(SNAPSHOT_FILE), &node, info)
                })
                .await
                .map_err(|e| Error::Peer(e.to_string()))??;
                tracing::info!(seq = head.seq, floor = floor.seq, objects, "receiving a full sync");
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
            Msg::SnapshotHistory { records } => {
                let mut builder =
                    snapshot.take().ok_or_else(|| Error::Peer("snapshot history before its start".into()))?;
                let builder = tokio::task::spawn_blocking(move || builder.add_history(&records).map(|_| builder))
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
                ack(head);
                continue;
            }
            Msg::GetRevisions { after, to } => {
                let revisions = branch::revisions(&ctx.engine.store(), after, to)?;
                for r in revisions {
                    outbox.send(Msg::BranchRevision(Box::new(r))).await.map_err(peer_err)?;
                }
                Msg::BranchEnd
            }
            Msg::Promote { epoch, head } => {
                // A damaged store never takes the role: the promote is refused as a head that
                // does not match, and the Active keeps it.
                let head_matches = ctx.engine.damage().is_none() && ctx.engine.store().head()? == head;
                let request = Event::PromoteRequest { from: hello.node_id, epoch, head_matches };
                let actions = role_event(&ctx.engine, request).await?;
                if actions.iter().any(|a| matches!(a, Action::ReplyPromoted { .. })) {
                    outbox.send(Msg::Promoted { epoch }).await.map_err(peer_err)?;
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
                if !ctx.server.files.has_ca_key() {
                    ctx.server.files.write(&ctx.server.files.ca_key(), &pem, true)?;
                    tracing::info!("received the cluster CA key (this secondary can be promoted to primary)");
                }
                continue;
            }
            Msg::Refuse { reason } => return Err(Error::Peer(format!("the active refused us: {reason}"))),
            other => return Err(Error::Peer(format!("unexpected message from the active: {other:?}"))),
        };
        outbox.send(reply).await.map_err(peer_err)?;
    }
}

/// Keeps a damaged store, as it is, before a full sync replaces it: a second name for the file
/// (a hard link, no copy) in `DIR/archive/`, which stays when the snapshot takes the live name.
/// A backup cannot be written from it: its records fail their seals.
/// A full sync that was cut off after this leaves the damaged store live, and the next one
/// finds it already set aside (the archive is the same file): it is not linked again.
fn set_aside_damaged(engine: &mgha_core::engine::Engine) -> Result<()> {
    let dir = engine.dir().join("archive");
    mgha_core::private::create_dir(&dir)?;
    let live = engine.dir().join(mgha_core::store::STORE_FILE);
    if let Some(kept) = engine.archived().filter(|kept| same_file(kept, &live)) {
        tracing::info!(path = %kept.display(), "the damaged store is already set aside; healing by a full sync from the active");
        return Ok(());
    }
    let path = dir.join(format!("{}-damaged.redb", mgha_core::now_ms()));
    std::fs::hard_link(&live, &path)?;
    std::fs::File::open(&dir)?.sync_all()?;
    let damage = engine.damage().unwrap_or_default();
    tracing::warn!(path = %path.display(), %damage, "the damaged store is set aside; healing by a full sync from the active");
    engine.set_archived(path);
    Ok(())
}

/// Whether two paths name the same file (one inode of one device).
#[cfg(unix)]
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Elsewhere the damaged store is linked again at each try: kept twice, never lost.
#[cfg(not(unix))]
fn same_file(_: &std::path::Path, _: &std::path::Path) -> bool {
    false
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
