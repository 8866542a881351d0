//! The admin API's connections: an accept loop that caps connections in total and per source
//! address, serves each with HTTP/1.1 under a header-read deadline (which is also the idle time
//! of a keep-alive connection between requests), and a request-body deadline. Without them, idle
//! or half-sent connections held until the daemon ran out of file descriptors, and every status
//! request then timed out. With TLS (`admin_tls_cert`), the handshake runs in the connection's
//! own task under the header deadline, so a client that never finishes it holds one connection
//! slot for that long and never the accept loop. docs/security.md gives the numbers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use mgha_core::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::errors::ApiError;

/// Most admin connections open at once. Under half of systemd's default open-file limit (1024),
/// so that the store, the peer port and the logs always have descriptors left.
pub const ADMIN_CONNECTIONS_MAX: usize = 400;
/// Most admin connections open at once from one source address: one client cannot take them all.
pub const ADMIN_CONNECTIONS_PER_SOURCE_MAX: usize = 64;
/// A request's header must arrive whole within this time of the connection opening or of the
/// previous response: a slow-header client, and an idle keep-alive connection, are closed then.
pub const ADMIN_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's body must arrive whole within this time of its header (256 MiB at 10 MB/s).
pub const ADMIN_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the accept loop pauses when accepting fails (out of descriptors): it retries
/// rather than spinning or giving up.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Open connections per source address; an entry goes when its count drops to zero.
#[derive(Default)]
struct PerSource(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in the per-source table, given back on drop.
struct SourceSlot {
    table: Arc<PerSource>,
    ip: IpAddr,
}

impl PerSource {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= ADMIN_CONNECTIONS_PER_SOURCE_MAX {
            return None;
        }
        *n += 1;
        Some(SourceSlot { table: self.clone(), ip })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true, then lets each connection finish its
/// request in progress and returns once all are closed (the caller bounds that wait). With `tls`,
/// every connection is HTTPS: one that does not complete the handshake within
/// [`ADMIN_HEADER_READ_TIMEOUT`] is closed.
pub async fn serve(listener: TcpListener, app: Router, tls: Option<TlsAcceptor>, mut stop: watch::Receiver<bool>) {
    let total = Arc::new(Semaphore::new(ADMIN_CONNECTIONS_MAX));
    let per_source = Arc::new(PerSource::default());
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin API: accept failed; retrying");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            // The sender only ever sends `true`, and a dropped sender is a stop too.
            _ = stop.changed() => break,
        };
        // Finished connection tasks are reaped as we go, so the set stays as small as the load.
        while connections.try_join_next().is_some() {}
        // Over a cap, the connection is closed at once: accepting and dropping it keeps the
        // backlog moving, so a client under the caps is never stuck behind the flood.
        let Ok(permit) = total.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "admin API: connection cap reached; closing");
            continue;
        };
        let Some(slot) = per_source.take(peer.ip()) else {
            tracing::debug!(%peer, "admin API: per-source connection cap reached; closing");
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let _held = (permit, slot);
            let Some(acceptor) = tls else {
                serve_connection(stream, service, &mut stop, peer).await;
                return;
            };
            let handshake = tokio::time::timeout(ADMIN_HEADER_READ_TIMEOUT, acceptor.accept(stream));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "admin API: TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "admin API: TLS handshake not done in time; closing");
                        return;
                    }
                },
                _ = stop.changed() => return,
            };
            serve_connection(stream, service, &mut stop, peer).await;
        });
    }
    while connections.join_next().await.is_some() {}
}

/// Serves HTTP/1.1 on one connection (plain or TLS) until it closes, or until `stop`, when the
/// request in progress finishes first.
async fn serve_connection<S>(
    io: S,
    service: TowerToHyperService<Router>,
    stop: &mut watch::Receiver<bool>,
    peer: std::net::SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(ADMIN_HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "admin API connection closed");
            }
            return;
        }
        _ = stop.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// The TLS acceptor of the admin API from its PEM files: TLS 1.2 and 1.3 (monitoring tools and
/// scrapers still speak 1.2), HTTP/1.1 announced through ALPN.
pub fn tls_acceptor(pem: &mgha_node::config::AdminTlsPem) -> anyhow::Result<TlsAcceptor> {
    use anyhow::Context;
    let where_ = pem.cert_path.display();
    let certs = rustls_pemfile::certs(&mut pem.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("admin_tls_cert {where_}: unreadable PEM"))?;
    if certs.is_empty() {
        anyhow::bail!("admin_tls_cert {where_}: no certificate in it");
    }
    let key = rustls_pemfile::private_key(&mut pem.key.as_bytes())
        .context("admin_tls_key: unreadable PEM")?
        .context("admin_tls_key: no private key in it")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("admin API TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| format!("admin_tls_cert {where_} and admin_tls_key do not make a usable pair"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Reads the whole request body within [`ADMIN_BODY_READ_TIMEOUT`] and at most
/// `CHANGESET_BYTES_MAX`, before the handler runs. It runs after the token check, so a client
/// without the token never makes the daemon hold a body.
pub async fn body_deadline(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let limit = mgha_core::limits::CHANGESET_BYTES_MAX;
    match tokio::time::timeout(ADMIN_BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::new(ErrorCode::TooLarge, format!("request body over the limit of {limit} bytes"))
                    .into_response()
            } else {
                ApiError::new(ErrorCode::InvalidArgument, format!("request body: {e}")).into_response()
            }
        }
        Err(_) => ApiError::new(
            ErrorCode::InvalidArgument,
            format!("request body not received within {} s", ADMIN_BODY_READ_TIMEOUT.as_secs()),
        )
        .into_response(),
    }
}
