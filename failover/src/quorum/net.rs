//! The arbiter's transport: request/reply over TCP with mutual TLS 1.3 (the cluster CA's
//! [`MemberTls`](mgha_sync::tls::MemberTls)), one MessagePack frame each way (a 4-byte
//! big-endian length, then the body; at most [`FRAME_BYTES_MAX`]). It carries openraft's RPCs
//! (append entries, vote, snapshot chunks), client writes forwarded to the Raft leader, and the
//! leader's view of the members for `status`.
//!
//! A dialer verifies the listener's certificate against the cluster CA; a listener serves only a
//! dialer that presented a certificate of the cluster CA. Each peer has one connection per
//! purpose (Raft, client writes), reused and redialed after an error; every call is bounded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mgha_sync::failover::ArbiterMember;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use rustls::{ClientConfig, ServerConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::state::{Cmd, CmdResponse, TypeConfig};

/// The largest frame either side sends or accepts.
pub const FRAME_BYTES_MAX: usize = 4 << 20;
/// Most MessagePack values in a frame, counted before it is decoded (as the peer protocol does,
/// `mgha_core::msgpack_shape`): 4 MiB of one-byte values would decode to over 100 MiB. A
/// snapshot chunk (a quarter frame of data, one value a byte) is the largest honest frame.
pub const FRAME_VALUES_MAX: usize = FRAME_BYTES_MAX / 2;
const _: () = assert!(FRAME_BYTES_MAX / 4 + 4096 <= FRAME_VALUES_MAX);
/// Connections a listener serves at once.
pub const CONNECTIONS_MAX: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// A frame that has begun must arrive whole within this.
const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// A listener closes a connection that sent nothing for this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type NodeId = u64;

/// What one voter asks another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client write, forwarded to the node the sender believes is the leader.
    Write(Cmd),
    /// The receiver's view of every voter (meaningful on the leader).
    Status,
}

/// The answer to one [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Write(WriteReply),
    Status(Vec<ArbiterMember>),
}

/// The outcome of a forwarded write.
#[derive(Debug, Serialize, Deserialize)]
pub enum WriteReply {
    /// Committed and applied at log `index`.
    Done {
        answer: CmdResponse,
        index: u64,
    },
    /// The receiver is not the leader; `leader` is its hint.
    NotLeader {
        leader: Option<NodeId>,
    },
    Failed(String),
}

/// Serves requests of authenticated peers.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, request: Request) -> Reply;
}

fn too_large(len: usize) -> std::io::Error {
    std::io::Error::other(format!("frame of {len} bytes, over the limit of {FRAME_BYTES_MAX}"))
}

async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, msg: &T) -> std::io::Result<()> {
    let body = rmp_serde::to_vec_named(msg).map_err(std::io::Error::other)?;
    if body.len() > FRAME_BYTES_MAX {
        return Err(too_large(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).await?;
    w.flush().await
}

/// Reads one frame: `None` at a clean end of stream before a frame began. The first byte may
/// wait `idle`; the rest of the frame must follow within [`FRAME_TIMEOUT`].
async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    idle: Duration,
) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    let first = tokio::time::timeout(idle, r.read(&mut len[..1]))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
    if first == 0 {
        return Ok(None);
    }
    let rest = async {
        r.read_exact(&mut len[1..]).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > FRAME_BYTES_MAX {
            return Err(too_large(len));
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await?;
        mgha_core::msgpack_shape::check(&body, FRAME_VALUES_MAX, mgha_core::limits::FRAME_DEPTH_MAX)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        rmp_serde::from_slice(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    };
    tokio::time::timeout(FRAME_TIMEOUT, rest)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "frame incomplete"))?
        .map(Some)
}

/// Accepts and serves peers until `stop` turns true.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "arbiter: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "arbiter: too many connections; refusing one");
            continue;
        };
        let (acceptor, handler, mut stop) = (acceptor.clone(), handler.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                r = serve_connection(&acceptor, tcp, handler) => {
                    if let Err(e) = r {
                        tracing::debug!(%addr, error = %e, "arbiter: connection closed");
                    }
                }
                _ = stop.wait_for(|s| *s) => {}
            }
        });
    }
}

async fn serve_connection<H: Handler>(acceptor: &TlsAcceptor, tcp: TcpStream, handler: Arc<H>) -> std::io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
    // The member configuration lets a joiner in without a certificate; the arbiter does not.
    if !matches!(tls.get_ref().1.peer_certificates(), Some(c) if !c.is_empty()) {
        let _ = tls.shutdown().await;
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "peer presented no certificate"));
    }
    while let Some(request) = read_frame::<_, Request>(&mut tls, IDLE_TIMEOUT).await? {
        let reply = handler.handle(request).await;
        write_frame(&mut tls, &reply).await?;
    }
    Ok(())
}

/// Whether we reached a peer lately, in either direction.
#[derive(Clone, Debug, Default)]
pub struct Health {
    pub last_ok: Option<Instant>,
    pub last_error: Option<String>,
}

/// One reused connection to a peer.
pub struct Link {
    pub addr: String,
    tls: Arc<ClientConfig>,
    conn: tokio::sync::Mutex<Option<TlsStream<TcpStream>>>,
    health: Arc<Mutex<Health>>,
}

impl Link {
    fn new(addr: &str, tls: Arc<ClientConfig>, health: Arc<Mutex<Health>>) -> Link {
        Link { addr: addr.to_string(), tls, conn: tokio::sync::Mutex::new(None), health }
    }

    /// Sends `request` and waits for its reply, within `timeout`.
    pub async fn call(&self, request: &Request, timeout: Duration) -> Result<Reply, String> {
        let result = tokio::time::timeout(timeout, self.call_retrying(request))
            .await
            .unwrap_or_else(|_| Err(format!("no answer from {} within {} ms", self.addr, timeout.as_millis())));
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(_) => {
                health.last_ok = Some(Instant::now());
                health.last_error = None;
            }
            Err(e) => health.last_error = Some(e.clone()),
        }
        result
    }

    async fn call_retrying(&self, request: &Request) -> Result<Reply, String> {
        let mut slot = self.conn.lock().await;
        // Taken out while in use: a call abandoned at its timeout drops the connection with it,
        // never leaving half a frame on a connection that is reused.
        if let Some(mut stream) = slot.take() {
            if let Ok(reply) = exchange(&mut stream, request).await {
                *slot = Some(stream);
                return Ok(reply);
            }
            // The peer may have closed an idle connection: one more try on a new one.
        }
        let mut stream = self.connect().await?;
        let reply = exchange(&mut stream, request).await.map_err(|e| format!("{}: {e}", self.addr))?;
        *slot = Some(stream);
        Ok(reply)
    }

    async fn connect(&self) -> Result<TlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect(&self.addr).await.map_err(|e| format!("connect to {}: {e}", self.addr))?;
        let _ = tcp.set_nodelay(true);
        let connector = TlsConnector::from(self.tls.clone());
        let stream =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(mgha_sync::tls::member_server_name(), tcp))
                .await
                .map_err(|_| format!("TLS handshake with {} timed out", self.addr))?
                .map_err(|e| format!("TLS handshake with {} (a member of this cluster?): {e}", self.addr))?;
        Ok(stream)
    }
}

async fn exchange(stream: &mut TlsStream<TcpStream>, request: &Request) -> std::io::Result<Reply> {
    write_frame(stream, request).await?;
    read_frame(stream, FRAME_TIMEOUT)
        .await?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed by the peer"))
}

/// The links to one peer and its health.
pub struct Peer {
    pub name: String,
    pub raft: Link,
    pub client: Link,
    pub health: Arc<Mutex<Health>>,
}

impl Peer {
    /// Notes that the peer reached us.
    pub fn contacted(&self) {
        self.health.lock().unwrap_or_else(|p| p.into_inner()).last_ok = Some(Instant::now());
    }

    pub fn health(&self) -> Health {
        self.health.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Every other voter, by Raft node id.
pub struct Peers {
    pub by_id: BTreeMap<NodeId, Arc<Peer>>,
    tls: Arc<ClientConfig>,
}

impl Peers {
    pub fn new(tls: Arc<ClientConfig>, peers: impl IntoIterator<Item = (NodeId, String, String)>) -> Peers {
        let by_id = peers
            .into_iter()
            .map(|(id, name, addr)| {
                let health = Arc::new(Mutex::new(Health::default()));
                let peer = Peer {
                    name,
                    raft: Link::new(&addr, tls.clone(), health.clone()),
                    client: Link::new(&addr, tls.clone(), health.clone()),
                    health,
                };
                (id, Arc::new(peer))
            })
            .collect();
        Peers { by_id, tls }
    }
}

/// openraft's network factory over [`Peers`].
#[derive(Clone)]
pub struct Network {
    pub peers: Arc<Peers>,
    /// How long replication to an unreachable peer waits before it retries.
    pub backoff: Duration,
}

/// openraft's client for one target.
pub struct PeerNetwork {
    target: NodeId,
    peer: Arc<Peer>,
    backoff: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerNetwork {
        // Addresses come from our configuration; one that only the log knows is dialed as given.
        let peer = self.peers.by_id.get(&target).cloned().unwrap_or_else(|| {
            let health = Arc::new(Mutex::new(Health::default()));
            Arc::new(Peer {
                name: format!("node {target}"),
                raft: Link::new(&node.addr, self.peers.tls.clone(), health.clone()),
                client: Link::new(&node.addr, self.peers.tls.clone(), health.clone()),
                health,
            })
        });
        PeerNetwork { target, peer, backoff: self.backoff }
    }
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerNetwork {
    async fn call(&self, request: Request, option: &RPCOption) -> Result<Reply, Unreachable> {
        self.peer.raft.call(&request, option.hard_ttl()).await.map_err(|e| Unreachable::new(&std::io::Error::other(e)))
    }

    fn unexpected<E: std::error::Error>(&self, reply: &Reply) -> RPCError<NodeId, BasicNode, E> {
        let e = std::io::Error::other(format!("unexpected reply from {}: {reply:?}", self.peer.name));
        RPCError::Network(NetworkError::new(&e))
    }

    // openraft's error type, as its network trait returns it.
    #[allow(clippy::result_large_err)]
    fn remote<T, E: std::error::Error>(&self, r: Result<T, RaftError<NodeId, E>>) -> RpcResult<T, E> {
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.call(Request::AppendEntries(rpc), &option).await? {
            Reply::AppendEntries(r) => self.remote(r),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.call(Request::InstallSnapshot(rpc), &option).await? {
            Reply::InstallSnapshot(r) => self.remote(r),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(Request::Vote(rpc), &option).await? {
            Reply::Vote(r) => self.remote(r),
            other => Err(self.unexpected(&other)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of `n` empty strings as one array: small on the wire, large once decoded.
    fn empty_strings(n: usize) -> Vec<u8> {
        let mut body = vec![0xdd];
        body.extend_from_slice(&(n as u32).to_be_bytes());
        body.extend(std::iter::repeat_n(0xa0u8, n));
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    }

    #[tokio::test]
    async fn a_frame_of_more_values_than_the_limit_is_refused_before_decoding() {
        let frame = empty_strings(FRAME_VALUES_MAX + 1);
        let read: std::io::Result<Option<Vec<String>>> = read_frame(&mut frame.as_slice(), IDLE_TIMEOUT).await;
        let err = read.expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("MessagePack values"), "{err}");
        let frame = empty_strings(1000);
        let read: Option<Vec<String>> =
            read_frame(&mut frame.as_slice(), IDLE_TIMEOUT).await.expect("within the limit");
        assert_eq!(read.map(|v| v.len()), Some(1000));
    }
}
