//! One mutual-TLS link per pair of servers, carrying every domain's sessions as yamux streams:
//! the link handshake (`Msg::Link` each way after TLS), the task that drives a link's yamux
//! connection, the map of live links by peer (one per peer; two that cross keep the one dialed
//! by the smaller node id), and the liveness rule that drops a silent link so the sessions above
//! reconnect.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use super::membership::is_removed;
use super::pki::node_id_of;
use super::runtime::{connect_member, Server};
use super::wire::{read_msg, write_msg, Msg, PROTOCOL_VERSION};
use mgha_core::error::{Error, Result};
use mgha_core::limits::STREAMS_PER_LINK_MAX;
use mgha_core::model::Uid;
use mgha_core::mono_ms;

/// The TLS stream under a link, dialed or accepted.
pub(crate) type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// Bytes of receive window yamux gives one stream before its reader takes them (its default).
const STREAM_WINDOW_BYTES: usize = 256 * 1024;

/// Open-stream requests queued for a link's driver at once.
const OPEN_REQUESTS_MAX: usize = 64;

/// The yamux settings of every link: at most [`STREAMS_PER_LINK_MAX`] streams, each with its
/// default window, and no more in flight over the link than those windows together.
fn yamux_config() -> yamux::Config {
    let mut cfg = yamux::Config::default();
    cfg.set_max_connection_receive_window(Some(STREAMS_PER_LINK_MAX * STREAM_WINDOW_BYTES));
    cfg.set_max_num_streams(STREAMS_PER_LINK_MAX);
    cfg
}

/// What a link's driver is asked to do.
enum Request {
    Open(oneshot::Sender<Result<yamux::Stream>>),
    Close,
}

/// One live link to a peer server.
pub(crate) struct Link {
    /// Tells this link apart from an earlier or later one with the same peer.
    id: u64,
    /// The node id of the server that dialed it: which of two crossing links is kept.
    dialer: Uid,
    requests: mpsc::Sender<Request>,
    /// Set by the driver when it ends: the link carries nothing more.
    done: Arc<AtomicBool>,
    /// Streams of this link still held by a session.
    streams: Arc<AtomicUsize>,
    /// When a byte was last read from the peer, and when a stream was last opened ([`mono_ms`]).
    heard_ms: Arc<AtomicU64>,
    opened_ms: Arc<AtomicU64>,
}

impl Link {
    fn is_live(&self) -> bool {
        !self.done.load(Ordering::SeqCst) && !self.requests.is_closed()
    }

    /// Asks the driver to close the link; no stream is opened on it from now on.
    fn close(&self) {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.requests.try_send(Request::Close);
    }

    /// Opens a stream to the peer.
    async fn open(&self) -> Result<LinkStream> {
        let (tx, rx) = oneshot::channel();
        self.opened_ms.store(mono_ms(), Ordering::SeqCst);
        self.requests.send(Request::Open(tx)).await.map_err(|_| Error::Peer("the link closed".into()))?;
        let stream = rx.await.map_err(|_| Error::Peer("the link closed".into()))??;
        Ok(LinkStream::new(stream, self.streams.clone(), self.heard_ms.clone()))
    }
}

/// Whether a new link with `peer`, dialed by `new_dialer`, replaces `existing`: a link that
/// ended is always replaced; of two live ones, the one dialed by the server with the smaller node
/// id is kept (both ends decide alike, so two links that cross converge to one); of two dialed by
/// the same server, the newer (it dials only when it has no live link, so the older is dead to
/// it).
pub(crate) fn replaces(existing_dialer: Uid, existing_live: bool, new_dialer: Uid, me: Uid, peer: Uid) -> bool {
    if !existing_live {
        return true;
    }
    let preferred = me.min(peer);
    !(existing_dialer == preferred && new_dialer != preferred)
}

/// The live links of a server, by peer node id.
#[derive(Default)]
pub(crate) struct Links {
    map: Mutex<HashMap<Uid, Arc<Link>>>,
    /// One dial at a time per peer: the domains that want a stream at once share one link.
    dials: Mutex<HashMap<Uid, Arc<tokio::sync::Mutex<()>>>>,
    next_id: AtomicU64,
    /// Links accepted or dialed so far (adopted or not).
    established: AtomicU64,
}

impl Links {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uid, Arc<Link>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live link with `peer`, if any.
    fn live(&self, peer: Uid) -> Option<Arc<Link>> {
        self.lock().get(&peer).filter(|l| l.is_live()).cloned()
    }

    /// How many live links this server holds.
    pub fn count(&self) -> usize {
        self.lock().values().filter(|l| l.is_live()).count()
    }

    /// How many links this server has set up since it started (dialed or accepted).
    pub fn established(&self) -> u64 {
        self.established.load(Ordering::SeqCst)
    }

    /// Closes the link with `peer` (a removed member); its streams end.
    pub fn drop_peer(&self, peer: Uid) {
        if let Some(link) = self.lock().remove(&peer) {
            link.close();
        }
    }

    /// Closes every link (shutdown).
    pub fn close_all(&self) {
        for (_, link) in self.lock().drain() {
            link.close();
        }
    }

    /// Keeps `link` as the one with `peer`, or closes it if the live one wins.
    fn adopt(&self, me: Uid, peer: Uid, link: Arc<Link>) -> Arc<Link> {
        let mut map = self.lock();
        let kept = match map.get(&peer) {
            Some(old) if !replaces(old.dialer, old.is_live(), link.dialer, me, peer) => {
                tracing::debug!(%peer, "a crossing link loses to the one kept; closing it");
                link.close();
                old.clone()
            }
            old => {
                if let Some(old) = old {
                    if old.is_live() {
                        tracing::debug!(%peer, "a crossing link replaces the one held; closing the old one");
                    }
                    old.close();
                }
                map.insert(peer, link.clone());
                link
            }
        };
        drop(map);
        kept
    }

    /// Forgets `link` once its driver ended, unless another replaced it.
    fn ended(&self, peer: Uid, id: u64) {
        let mut map = self.lock();
        if map.get(&peer).is_some_and(|l| l.id == id) {
            map.remove(&peer);
        }
    }
}

/// Opens a stream to the member at `addr` whose node id is `peer`, over the live link to it
/// or a new one. Returns the node id the link's certificate names (the peer answering there)
/// and the stream.
pub(crate) async fn open_stream(server: &Arc<Server>, peer: Uid, addr: &str) -> Result<(Uid, LinkStream)> {
    if let Some(link) = server.links.live(peer) {
        return Ok((peer, link.open().await?));
    }
    let gate = {
        let mut dials = server.links.dials.lock().unwrap_or_else(|p| p.into_inner());
        dials.entry(peer).or_default().clone()
    };
    let _dialing = gate.lock().await;
    if let Some(link) = server.links.live(peer) {
        return Ok((peer, link.open().await?));
    }
    let (node_id, link) = dial(server, addr).await?;
    Ok((node_id, link.open().await?))
}

/// Dials a new link to `addr`: TLS, then the link handshake.
async fn dial(server: &Arc<Server>, addr: &str) -> Result<(Uid, Arc<Link>)> {
    let mut tls = connect_member(server, addr).await?;
    let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
    let node_id = node_id_of(&cert.ok_or_else(|| Error::Peer("peer sent no certificate".into()))?)?;
    if is_removed(&server.global()?.store(), node_id)? {
        return Err(Error::Peer(format!("{addr} answers with the certificate of a removed member")));
    }
    write_msg(&mut tls, &our_link(server)).await.map_err(|e| Error::Peer(e.to_string()))?;
    let handshake = Duration::from_millis(server.cfg.handshake_timeout_ms);
    match tokio::time::timeout(handshake, read_msg(&mut tls)).await {
        Err(_) => return Err(Error::Peer(format!("no link answer from {addr} in time"))),
        Ok(Ok(Some(Msg::Link { protocol, cluster_id, node_id: theirs }))) => {
            check_link(server, protocol, cluster_id, theirs, node_id).map_err(Error::Peer)?;
        }
        Ok(Ok(Some(Msg::Refuse { reason }))) => {
            if reason == super::runtime::REMOVED {
                tracing::warn!(peer = %addr, "{reason}");
            }
            return Err(Error::Peer(format!("{addr} refused us: {reason}")));
        }
        Ok(Ok(other)) => return Err(Error::Peer(format!("expected a link answer, got {other:?}"))),
        Ok(Err(e)) => return Err(Error::Peer(e.to_string())),
    }
    let link = start(server, TlsStream::from(tls), node_id, server.node_id, yamux::Mode::Client, None);
    Ok((node_id, link))
}

/// Serves an accepted connection whose first message was `Msg::Link`, from the certificate's
/// node `cert_node`: checks it, answers, and adopts the link.
pub(crate) async fn accept(
    server: &Arc<Server>,
    mut tls: TlsStream,
    first: (u32, Uid, Uid),
    cert_node: Uid,
    permit: OwnedSemaphorePermit,
) -> Result<()> {
    let (protocol, cluster_id, node_id) = first;
    if let Err(reason) = check_link(server, protocol, cluster_id, node_id, cert_node) {
        let _ = write_msg(&mut tls, &Msg::Refuse { reason: reason.clone() }).await;
        return Err(Error::Peer(reason));
    }
    write_msg(&mut tls, &our_link(server)).await.map_err(|e| Error::Peer(e.to_string()))?;
    start(server, tls, cert_node, cert_node, yamux::Mode::Server, Some(permit));
    Ok(())
}

fn our_link(server: &Server) -> Msg {
    Msg::Link { protocol: PROTOCOL_VERSION, cluster_id: server.cluster_id, node_id: server.node_id }
}

/// Checks a peer's link message: protocol, cluster, and that it speaks for the certificate's
/// node, which is not this server.
pub(crate) fn check_link(
    server: &Server,
    protocol: u32,
    cluster_id: Uid,
    node_id: Uid,
    cert_node: Uid,
) -> std::result::Result<(), String> {
    if protocol != PROTOCOL_VERSION {
        return Err(format!("protocol version {protocol}, this node speaks {PROTOCOL_VERSION}"));
    }
    if cluster_id != server.cluster_id {
        return Err(format!("cluster {cluster_id} is not this cluster"));
    }
    if node_id != cert_node {
        return Err(format!("link claims node {node_id} but the certificate is node {cert_node}"));
    }
    if node_id == server.node_id {
        return Err("a node cannot connect to itself".into());
    }
    Ok(())
}

/// Starts the driver of a link with `peer` dialed by `dialer`, and adopts it (or closes it, if
/// a live one wins). Returns the link kept. An accepted link holds its `permit` of the peer
/// connection cap while it lives.
fn start(
    server: &Arc<Server>,
    tls: TlsStream,
    peer: Uid,
    dialer: Uid,
    mode: yamux::Mode,
    permit: Option<OwnedSemaphorePermit>,
) -> Arc<Link> {
    let heard_ms = Arc::new(AtomicU64::new(mono_ms()));
    let (socket, cork) = Heard::new(tls, heard_ms.clone());
    let conn = yamux::Connection::new(socket.compat(), yamux_config(), mode);
    let (requests, rx) = mpsc::channel(OPEN_REQUESTS_MAX);
    let link = Arc::new(Link {
        id: server.links.next_id.fetch_add(1, Ordering::Relaxed),
        dialer,
        requests,
        done: Arc::new(AtomicBool::new(false)),
        streams: Arc::new(AtomicUsize::new(0)),
        heard_ms,
        opened_ms: Arc::new(AtomicU64::new(0)),
    });
    server.links.established.fetch_add(1, Ordering::SeqCst);
    let driver = drive(server.clone(), peer, link.clone(), conn, cork, rx);
    server.spawn_tracked(async move {
        let _permit = permit;
        driver.await
    });
    let kept = server.links.adopt(server.node_id, peer, link.clone());
    if matches!(mode, yamux::Mode::Client) && Arc::ptr_eq(&kept, &link) {
        // The dialer opens the link's beat stream; the acceptor answers on it (`beat`).
        let heartbeat = Duration::from_millis(server.cfg.heartbeat_ms.max(10));
        server.spawn_tracked(async move {
            let opened = link.open().await;
            let ended = match opened {
                Ok(mut stream) => match write_msg(&mut stream, &Msg::Beat).await {
                    Ok(()) => beat(stream, heartbeat).await,
                    Err(e) => Err(Error::Peer(e.to_string())),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "the link's beat stream ended");
            }
        });
    }
    kept
}

/// Runs a link's beat stream (docs/protocol.md, "Links and streams"): sends `Msg::Beat` every
/// heartbeat and reads the peer's, until the stream or the link ends. The link's driver counts
/// any byte read as the peer's voice, so a link whose sessions are idle is still heard, and the
/// sessions on it ping each other rarely (`IDLE_PING_HEARTBEATS`).
pub(crate) async fn beat(stream: LinkStream, heartbeat: Duration) -> Result<()> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let send = async {
        let mut ticker = super::grid::interval(heartbeat);
        loop {
            ticker.tick().await;
            write_msg(&mut wr, &Msg::Beat).await.map_err(|e| Error::Peer(e.to_string()))?;
        }
    };
    let hear = async {
        loop {
            match read_msg(&mut rd).await {
                Ok(Some(Msg::Beat)) => {}
                Ok(Some(other)) => return Err(Error::Peer(format!("expected a beat, got {other:?}"))),
                Ok(None) => return Ok(()),
                Err(e) => return Err(Error::Peer(e.to_string())),
            }
        }
    };
    tokio::select! {
        sent = send => sent,
        heard = hear => heard,
    }
}

/// Runs a link's yamux connection: opens the streams asked for, hands each inbound stream to
/// the domain routing of [`super::runtime`], and drops the link when the peer falls silent for
/// the peer timeout while a stream is in use (an idle link has nothing to hear). Whenever the
/// connection has nothing more to do, it writes what yamux gathered in the [`Cork`] at once.
async fn drive(
    server: Arc<Server>,
    peer: Uid,
    link: Arc<Link>,
    mut conn: yamux::Connection<Compat<Heard>>,
    cork: Cork,
    mut requests: mpsc::Receiver<Request>,
) {
    let timeout_ms = server.cfg.peer_timeout_ms.max(100);
    let mut ticker = super::grid::interval(Duration::from_millis((timeout_ms / 4).max(10)));
    let mut pending: Option<oneshot::Sender<Result<yamux::Stream>>> = None;
    let why = std::future::poll_fn(|cx| {
        while ticker.poll_tick(cx).is_ready() {
            let now = mono_ms();
            let quiet = now.saturating_sub(link.heard_ms.load(Ordering::SeqCst));
            let since_open = now.saturating_sub(link.opened_ms.load(Ordering::SeqCst));
            if link.streams.load(Ordering::SeqCst) > 0 && quiet > timeout_ms && since_open > timeout_ms {
                return Poll::Ready(format!("no frame for {quiet} ms"));
            }
        }
        loop {
            if pending.is_none() {
                match requests.poll_recv(cx) {
                    Poll::Ready(Some(Request::Open(tx))) => pending = Some(tx),
                    // Closed at once, not gracefully: dropping the connection while it is
                    // active ends (and wakes) every stream on it, whose sessions then dial
                    // again; the peer sees the socket close and ends its side alike.
                    Poll::Ready(Some(Request::Close)) | Poll::Ready(None) => {
                        return Poll::Ready("closed by this server".to_string());
                    }
                    Poll::Pending => break,
                }
            }
            match conn.poll_new_outbound(cx) {
                Poll::Ready(Ok(stream)) => {
                    if let Some(tx) = pending.take() {
                        let _ = tx.send(Ok(stream));
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(format!("cannot open a stream: {e}")),
                Poll::Pending => break,
            }
        }
        loop {
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    let stream = LinkStream::new(stream, link.streams.clone(), link.heard_ms.clone());
                    let server2 = server.clone();
                    server.spawn_tracked(async move {
                        if let Err(e) = super::accept::handle_stream(server2, peer, stream).await {
                            tracing::info!(%peer, error = %e, "peer session refused or ended");
                        }
                    });
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(format!("link error: {e}")),
                Poll::Ready(None) => return Poll::Ready("closed by the peer".to_string()),
                // Every frame this turn queued goes out now, in as few writes as TLS needs; a
                // socket that cannot take them all wakes this task when it can.
                Poll::Pending => {
                    return match cork.write_out(cx) {
                        Poll::Ready(Err(e)) => Poll::Ready(format!("link error: {e}")),
                        Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
    })
    .await;
    link.done.store(true, Ordering::SeqCst);
    // Dropped while active, the connection ends and wakes every stream still open on it.
    drop(conn);
    if let Some(tx) = pending.take() {
        let _ = tx.send(Err(Error::Peer(format!("the link ended: {why}"))));
    }
    server.links.ended(peer, link.id);
    tracing::debug!(%peer, %why, "link ended");
}

/// Bytes of yamux frames a link gathers before it writes them even without waiting for its
/// driver: a turn of the driver that queues more than this writes as it goes.
const CORK_BYTES_MAX: usize = 64 * 1024;

/// The socket under a link's yamux connection: the TLS stream, noting when a byte was last read
/// (a link is alive while its peer speaks), and gathering writes. yamux writes each frame's
/// header and body apart and flushes after every frame; written as they come, a thousand domains'
/// pings cost two TLS records and two system calls each. `Heard` keeps them in one buffer
/// instead, and the link's driver writes the buffer out ([`Cork::write_out`]) each time the
/// connection has nothing more to do, so that the frames of one turn share records and calls.
pub(crate) struct Heard<T = TlsStream> {
    socket: Arc<Mutex<Socket<T>>>,
}

/// The driver's handle on the writes a [`Heard`] gathered.
pub(crate) struct Cork<T = TlsStream> {
    socket: Arc<Mutex<Socket<T>>>,
}

struct Socket<T> {
    inner: T,
    /// Written by yamux, not yet to `inner`.
    out: Vec<u8>,
    heard_ms: Arc<AtomicU64>,
}

impl<T: AsyncWrite + Unpin> Socket<T> {
    /// Writes the gathered bytes to `inner` and flushes it.
    fn write_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.out.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => drop(self.out.drain(..n)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }
}

impl<T> Heard<T> {
    pub(crate) fn new(inner: T, heard_ms: Arc<AtomicU64>) -> (Heard<T>, Cork<T>) {
        let socket = Arc::new(Mutex::new(Socket { inner, out: Vec::new(), heard_ms }));
        (Heard { socket: socket.clone() }, Cork { socket })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Socket<T>> {
        self.socket.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: AsyncWrite + Unpin> Cork<T> {
    /// Writes out what the connection gathered; Pending (this task woken later) while the socket
    /// cannot take it all.
    pub(crate) fn write_out(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.socket.lock().unwrap_or_else(|p| p.into_inner()).write_out(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Heard<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let mut socket = self.lock();
        let before = buf.filled().len();
        let polled = Pin::new(&mut socket.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            socket.heard_ms.store(mono_ms(), Ordering::SeqCst);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Heard<T> {
    /// Gathers `data`; writes the gathered bytes first when they reached [`CORK_BYTES_MAX`].
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let mut socket = self.lock();
        if socket.out.len() >= CORK_BYTES_MAX {
            match socket.write_out(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if socket.out.len() >= CORK_BYTES_MAX => return Poll::Pending,
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
        }
        let n = data.len().min(CORK_BYTES_MAX - socket.out.len());
        socket.out.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    /// Ready at once below [`CORK_BYTES_MAX`]: the driver writes out when its turn ends, which is
    /// as soon as a flush here could.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut socket = self.lock();
        if socket.out.len() >= CORK_BYTES_MAX {
            return socket.write_out(cx);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut socket = self.lock();
        std::task::ready!(socket.write_out(cx))?;
        Pin::new(&mut socket.inner).poll_shutdown(cx)
    }
}

/// One stream of a link, as a tokio stream; counted among its link's streams while it lives.
pub(crate) struct LinkStream {
    inner: Compat<yamux::Stream>,
    streams: Arc<AtomicUsize>,
    heard_ms: Arc<AtomicU64>,
}

impl LinkStream {
    fn new(stream: yamux::Stream, streams: Arc<AtomicUsize>, heard_ms: Arc<AtomicU64>) -> LinkStream {
        streams.fetch_add(1, Ordering::SeqCst);
        LinkStream { inner: stream.compat(), streams, heard_ms }
    }

    /// When a byte of the link under this stream was last read ([`mono_ms`]): a session on the
    /// stream hears its peer's server through any stream of the link, its beats included.
    pub(crate) fn link_heard(&self) -> Arc<AtomicU64> {
        self.heard_ms.clone()
    }
}

impl Drop for LinkStream {
    fn drop(&mut self) {
        self.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for LinkStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_link_socket_gathers_writes_until_its_driver_writes_them_out() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let (mut socket, cork) = Heard::new(near, Arc::new(AtomicU64::new(0)));
        for frame in [&b"header"[..], b"body", b"ping"] {
            socket.write_all(frame).await.expect("gathers");
            socket.flush().await.expect("a flush below the cap is free");
        }
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(Duration::from_millis(50), far.read(&mut buf)).await;
        assert!(early.is_err(), "nothing reached the peer before the driver wrote out");
        std::future::poll_fn(|cx| cork.write_out(cx)).await.expect("writes out");
        let n = far.read(&mut buf).await.expect("reads");
        assert_eq!(&buf[..n], b"headerbodyping", "one write, in order");

        // Past the cap, writes go out as they come, without the driver, and none is lost.
        let big: Vec<u8> = (0..3 * CORK_BYTES_MAX).map(|i| i as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; big.len()];
            far.read_exact(&mut got).await.map(|_| got)
        });
        let sent: Vec<u8> = (0..3 * CORK_BYTES_MAX).map(|i| i as u8).collect();
        socket.write_all(&sent).await.expect("writes through the cap");
        std::future::poll_fn(|cx| cork.write_out(cx)).await.expect("writes out the rest");
        assert_eq!(reader.await.expect("joins").expect("reads all"), sent);
    }

    #[test]
    fn crossing_links_keep_the_one_dialed_by_the_smaller_node_id() {
        let (a, b) = {
            let (x, y) = (Uid::new_random(), Uid::new_random());
            (x.min(y), x.max(y))
        };
        // On a: it holds its own dial; b's crossing dial loses. On b: a's dial replaces its own.
        assert!(!replaces(a, true, b, a, b));
        assert!(replaces(b, true, a, b, a));
        // Both ends keep a's link, whichever arrived first.
        assert!(replaces(b, true, a, a, b));
        assert!(!replaces(a, true, b, b, a));
        // A link that ended, or an older one of the same dialer, is always replaced.
        assert!(replaces(a, false, b, a, b));
        assert!(replaces(b, true, b, a, b));
        assert!(replaces(a, true, a, b, a));
    }
}
