//! The peer listener: accepts connections (under the peer connection cap), serves join
//! requests (no client certificate), opens links (a member certificate), and routes each stream
//! a peer opens on a link to the domain its hello names.

use crate::EngineExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::compress::Compressed;
use super::conn::Counted;
use super::link::{self, LinkStream};
use super::membership::is_removed;
use super::pki::node_id_of;
use super::runtime::{blocking, check_hello, learn_members, our_hello, Ctx, Server, REMOVED};
use super::wire::{read_msg, read_msg_max, write_msg, Hello, Msg};
use super::wire::{FRAME_BYTES_MAX, UNAUTHENTICATED_FRAME_BYTES_MAX};
use super::{active, join};
use mgha_core::error::{Error, Result};
use mgha_core::model::Uid;
use mgha_core::node::Role;

pub(crate) async fn accept_loop(server: Arc<Server>, listener: TcpListener) {
    let mut shutdown = server.shutdown.clone();
    let acceptor = TlsAcceptor::from(server.tls.server.clone());
    // Each link (and each join request) holds one permit while it lives.
    let open = Arc::new(tokio::sync::Semaphore::new(mgha_core::limits::PEER_CONNECTIONS_MAX));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, addr)) => {
                    // Over the cap the connection is closed at once, before any TLS work.
                    let Ok(permit) = open.clone().try_acquire_owned() else {
                        tracing::warn!(peer = %addr, "peer connection cap reached; closing");
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let task_server = server.clone();
                    task_server.spawn_tracked({
                        let server = server.clone();
                        async move {
                            if let Err(e) = handle_incoming(server, acceptor, tcp, permit).await {
                                tracing::info!(peer = %addr, error = %e, "peer connection refused or ended");
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn handle_incoming(
    server: Arc<Server>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<()> {
    // One deadline for the TLS handshake and the first message together (docs/protocol.md).
    let handshake = tokio::time::Instant::now() + Duration::from_millis(server.cfg.handshake_timeout_ms);
    // Join attempts are limited per source address.
    let source = tcp.peer_addr().map(|a| a.ip()).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let mut tls = tokio::time::timeout_at(handshake, acceptor.accept(tcp))
        .await
        .map_err(|_| Error::Peer("TLS handshake timed out".into()))?
        .map_err(|e| Error::Peer(format!("TLS handshake: {e}")))?;
    // The certificate is known before any frame is read: a peer without one may send only a
    // small join request, refused from its length alone if larger.
    let peer_cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
    let first_max = if peer_cert.is_some() { FRAME_BYTES_MAX } else { UNAUTHENTICATED_FRAME_BYTES_MAX };
    let first = tokio::time::timeout_at(handshake, read_msg_max(&mut tls, first_max))
        .await
        .map_err(|_| Error::Peer("no link message in time".into()))?
        .map_err(|e| Error::Peer(e.to_string()))?;
    let Some(cert) = peer_cert else {
        // No certificate: only a join request is allowed, served by the first domain.
        return match first {
            Some(Msg::JoinRequest(req)) => {
                let ctx = server.domain(server.cluster_id).ok_or_else(|| Error::Peer("shutting down".into()))?;
                join::serve(&ctx, &mut tls, req, source).await
            }
            _ => {
                let _ =
                    write_msg(&mut tls, &Msg::Refuse { reason: "authenticate with a member certificate".into() }).await;
                Err(Error::Peer("unauthenticated peer sent something other than a join request".into()))
            }
        };
    };
    let node_id = node_id_of(&cert)?;
    let global = server.global()?;
    if blocking(&global, move |e| is_removed(&e.store(), node_id)).await? {
        let _ = write_msg(&mut tls, &Msg::Refuse { reason: REMOVED.into() }).await;
        return Err(Error::Peer(format!("node {node_id} was removed from the cluster; its certificate is refused")));
    }
    let Some(Msg::Link { protocol, cluster_id, node_id: claimed }) = first else {
        let _ = write_msg(&mut tls, &Msg::Refuse { reason: "expected a link message".into() }).await;
        return Err(Error::Peer(format!("node {node_id} did not start with a link message")));
    };
    link::accept(&server, tls.into(), (protocol, cluster_id, claimed), node_id, permit).await
}

/// Serves a stream that `peer` opened on a link: its first message is a hello naming the
/// domain, which routes it to that domain's context (refused when not hosted here).
pub(crate) async fn handle_stream(server: Arc<Server>, peer: Uid, mut stream: LinkStream) -> Result<()> {
    let handshake = Duration::from_millis(server.cfg.handshake_timeout_ms);
    let first = tokio::time::timeout(handshake, read_msg(&mut stream))
        .await
        .map_err(|_| Error::Peer("no hello in time".into()))?
        .map_err(|e| Error::Peer(e.to_string()))?;
    let hello = match first {
        Some(Msg::Hello(hello)) => hello,
        Some(Msg::AskUses { domain, uids }) => return answer_uses(&server, stream, domain, uids).await,
        Some(Msg::AskEligible { domains }) => return answer_eligible(&server, stream, domains).await,
        Some(Msg::Beat) => {
            let heartbeat = Duration::from_millis(server.cfg.heartbeat_ms.max(10));
            return link::beat(stream, heartbeat).await;
        }
        _ => {
            let _ = write_msg(&mut stream, &Msg::Refuse { reason: "expected hello".into() }).await;
            return Err(Error::Peer(format!("node {peer} did not start a stream with hello")));
        }
    };
    let Some(ctx) = server.domain(hello.domain) else {
        let reason = format!("domain {} is not hosted on this server", hello.domain);
        let _ = write_msg(&mut stream, &Msg::Refuse { reason: reason.clone() }).await;
        return Err(Error::Peer(reason));
    };
    if let Err(reason) = check_hello(&ctx, &hello, peer) {
        let _ = write_msg(&mut stream, &Msg::Refuse { reason: reason.clone() }).await;
        return Err(Error::Peer(reason));
    }
    // The session belongs to its domain: removing the domain ends it.
    let task_ctx = ctx.clone();
    task_ctx.spawn_tracked(async move {
        if let Err(e) = serve_stream(ctx, stream, hello).await {
            tracing::info!(%peer, error = %e, "peer session ended");
        }
    });
    Ok(())
}

/// Most referrers named per uid in an answer to `AskUses`.
const USES_NAMED: usize = 3;

/// Answers whether this server's replica of `domain` references any of `uids`, and closes the
/// stream.
async fn answer_uses(server: &Arc<Server>, mut stream: LinkStream, domain: Uid, uids: Vec<Uid>) -> Result<()> {
    let Some(ctx) = server.domain(domain) else {
        let reason = format!("domain {domain} is not hosted on this server");
        let _ = write_msg(&mut stream, &Msg::Refuse { reason: reason.clone() }).await;
        return Err(Error::Peer(reason));
    };
    let used = blocking(&ctx.engine, move |e| {
        let store = e.store();
        let mut used = Vec::new();
        for uid in uids {
            let by = store.referrers(&uid, USES_NAMED)?;
            if !by.is_empty() {
                used.push((uid, by));
            }
        }
        Ok(used)
    })
    .await?;
    write_msg(&mut stream, &Msg::Uses { used }).await.map_err(|e| Error::Peer(e.to_string()))?;
    Ok(())
}

/// Answers, for each of `domains` whose Active is this server's replica, which replicas could
/// take its role now, and closes the stream.
async fn answer_eligible(server: &Arc<Server>, mut stream: LinkStream, domains: Vec<Uid>) -> Result<()> {
    let eligible = domains
        .into_iter()
        .filter_map(|id| server.domain(id))
        .filter(|ctx| ctx.engine.role().0 == Role::Active)
        .map(|ctx| (ctx.domain, super::runtime::eligible_replicas(&ctx.engine)))
        .collect();
    write_msg(&mut stream, &Msg::Eligible { domains: eligible }).await.map_err(|e| Error::Peer(e.to_string()))?;
    Ok(())
}

/// The acceptor's side of one domain session, after the peer's hello was checked.
async fn serve_stream(ctx: Arc<Ctx>, mut stream: LinkStream, hello: Hello) -> Result<()> {
    let ours = our_hello(&ctx)?;
    write_msg(&mut stream, &Msg::Hello(ours.clone())).await.map_err(|e| Error::Peer(e.to_string()))?;
    let link_heard = stream.link_heard();
    // From here on the session's frames travel as blocks (docs/protocol.md), counted as sent.
    let stream = Compressed::new(Counted::new(stream, ctx.engine.sync().traffic(hello.node_id)));
    learn_members(&ctx, &hello).await?;
    if ours.role == Role::Standby && hello.role == Role::Active {
        // An Active we do not follow: its dial loop may be waiting out a long pause.
        let following = *ctx.upstream.lock().unwrap_or_else(|p| p.into_inner()) == Some(hello.node_id);
        if !following {
            ctx.wake_dialers.notify_waiters();
        }
    }
    if ours.role == Role::Active && hello.role == Role::Standby {
        active::serve_standby(ctx, stream, hello, link_heard).await
    } else {
        Ok(())
    }
}
