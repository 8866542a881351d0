//! Joining a cluster: the new Secondary's request (it sends a CSR; its key stays with it) and
//! the signing node's answer, with the join key redeemed durably before anything is signed.

use crate::EngineExt;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::membership::{check_join_key, member_records, members, merge_members, next_tag, redeem_join_key, JoinKey};
use super::pki::{new_node_key_and_csr, sign_node_csr, sign_witness_csr, TlsFiles};
use super::plan::SyncStatus;
use super::runtime::{ensure_dialers, Ctx};
use super::tls::{joiner_client, member_server_name};
use super::wire::{read_msg, write_msg, JoinReply, JoinRequest, Member, Msg, PROTOCOL_VERSION};
use mgha_core::error::{Error, Result};
use mgha_core::model::Uid;
use mgha_core::node::Designation;

/// The window of the join rate limit.
const JOIN_WINDOW: Duration = Duration::from_secs(60);

/// A fixed-window limit on join requests per source address, so that a key cannot be guessed
/// by brute force, and so that one source hammering the port does not lock every other
/// source's legitimate join out.
#[derive(Debug)]
pub(crate) struct RateLimit {
    per_minute: u32,
    /// Source address → start of its window and requests in it; at most
    /// [`JOIN_SOURCES_MAX`](mgha_core::limits::JOIN_SOURCES_MAX) entries.
    sources: HashMap<IpAddr, (Instant, u32)>,
}

impl RateLimit {
    pub fn new(per_minute: u32) -> RateLimit {
        RateLimit { per_minute, sources: HashMap::new() }
    }

    pub fn allow(&mut self, source: IpAddr) -> bool {
        let now = Instant::now();
        if self.sources.len() >= mgha_core::limits::JOIN_SOURCES_MAX && !self.sources.contains_key(&source) {
            self.sources.retain(|_, (start, _)| now.duration_since(*start) < JOIN_WINDOW);
            // Every tracked source is within its window: a new one waits until one ends, so the
            // table stays bounded whatever the number of addresses an attacker has.
            if self.sources.len() >= mgha_core::limits::JOIN_SOURCES_MAX {
                return false;
            }
        }
        let (start, used) = self.sources.entry(source).or_insert((now, 0));
        if now.duration_since(*start) >= JOIN_WINDOW {
            *start = now;
            *used = 0;
        }
        *used += 1;
        *used <= self.per_minute
    }
}

/// Serves one join request on an unauthenticated connection from `source`.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &std::sync::Arc<Ctx>,
    stream: &mut S,
    req: JoinRequest,
    source: IpAddr,
) -> Result<()> {
    let witness = req.witness;
    let answer = decide(ctx, req, source).await;
    let msg = match &answer {
        Ok(reply) => Msg::JoinReply(reply.clone()),
        Err(Error::Peer(reason)) => Msg::Refuse { reason: reason.clone() },
        Err(e) => Msg::Refuse { reason: e.to_string() },
    };
    write_msg(stream, &msg).await.map_err(|e| Error::Peer(e.to_string()))?;
    let reply = answer?;
    if witness {
        tracing::info!(witness = %reply.node_id, "an arbiter witness enrolled");
        return Ok(());
    }
    ensure_dialers(ctx)?;
    tracing::info!(node = %reply.node_id, "a secondary joined the cluster");
    Ok(())
}

async fn decide(ctx: &std::sync::Arc<Ctx>, req: JoinRequest, source: IpAddr) -> Result<JoinReply> {
    if !ctx.server.joins.lock().unwrap_or_else(|p| p.into_inner()).allow(source) {
        return Err(Error::Peer("too many join attempts; retry in a minute".into()));
    }
    if req.protocol != PROTOCOL_VERSION {
        return Err(Error::Peer(format!("protocol version {}, this node speaks {PROTOCOL_VERSION}", req.protocol)));
    }
    // Only the Primary admits members (a Secondary holds the CA key only to be promoted).
    if !ctx.server.files.has_ca_key() || ctx.engine.node()?.designation != Designation::Primary {
        return Err(Error::Peer("this node is not the primary; join through the primary".into()));
    }
    // The key before anything else: without a valid key, a caller learns nothing, member names
    // included. It is only checked here; it is spent below, once the join can go through.
    let store = ctx.engine.store();
    check_join_key(&store, &req.key_secret, mgha_core::now_ms())?;
    mgha_core::model::validate::validate_name("node", &req.name)?;
    if members(&store)?.iter().any(|m| m.name == req.name) {
        return Err(Error::Peer(format!(
            "a member named '{0}' already exists; if it is lost, remove it on the active (`mgha member remove {0}`) \
             and join again",
            req.name
        )));
    }
    let engine = ctx.engine.clone();
    let secret = req.key_secret.clone();
    tokio::task::spawn_blocking(move || redeem_join_key(&engine.store(), &secret, mgha_core::now_ms()))
        .await
        .map_err(|e| Error::Peer(e.to_string()))??;
    let node_id = Uid::new_random();
    let ca_pem = ctx.server.files.read(&ctx.server.files.ca_cert())?;
    let ca_key = ctx.server.files.read(&ctx.server.files.ca_key())?;
    if req.witness {
        // A witness needs only the CA's trust: it is no member (no node dials it), and its
        // certificate carries no node id, so the sync layer refuses it.
        let cert_pem = sign_witness_csr(&ca_pem, &ca_key, &req.csr_pem, node_id)?;
        let node = ctx.engine.node()?;
        return Ok(JoinReply {
            cluster_id: node.cluster_id,
            node_id,
            tag: 0,
            cert_pem,
            ca_pem,
            members: member_records(&store)?,
        });
    }
    let cert_pem = sign_node_csr(&ca_pem, &ca_key, &req.csr_pem, node_id)?;
    let tag = next_tag(&store)?;
    let member = Member::new(node_id, &req.name, &req.listen, Designation::Secondary, tag);
    merge_members(&store, std::slice::from_ref(&member))?;
    ctx.engine.sync().update_peer(node_id, |p| {
        p.name = member.name.clone();
        p.listen = member.listen.clone();
        p.designation = Designation::Secondary;
        p.status = SyncStatus::NeverSynchronized;
    });
    let node = ctx.engine.node()?;
    Ok(JoinReply { cluster_id: node.cluster_id, node_id, tag, cert_pem, ca_pem, members: member_records(&store)? })
}

/// What a node that joined learns.
#[derive(Clone, Debug)]
pub struct Joined {
    pub cluster_id: Uid,
    pub node_id: Uid,
    pub tag: u16,
    pub members: Vec<Member>,
}

/// Joins the cluster through `peer` with a one-time key, writing the node's TLS files.
pub async fn join_cluster(peer: &str, key: &JoinKey, name: &str, listen: &str, files: &TlsFiles) -> Result<Joined> {
    request_certificate(peer, key, name, listen, false, files).await
}

/// Enrolls an arbiter witness through `peer` with a one-time key: a certificate of the cluster
/// CA, written to `files`, and no membership.
pub async fn enroll_witness(peer: &str, key: &JoinKey, name: &str, files: &TlsFiles) -> Result<Joined> {
    request_certificate(peer, key, name, "", true, files).await
}

async fn request_certificate(
    peer: &str,
    key: &JoinKey,
    name: &str,
    listen: &str,
    witness: bool,
    files: &TlsFiles,
) -> Result<Joined> {
    let (node_key, csr_pem) = new_node_key_and_csr(name)?;
    let timeout = Duration::from_secs(15);
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(peer))
        .await
        .map_err(|_| Error::Peer(format!("connect to {peer} timed out")))?
        .map_err(|e| Error::Peer(format!("connect to {peer}: {e}")))?;
    let connector = TlsConnector::from(joiner_client(key.ca_fingerprint)?);
    let mut tls = tokio::time::timeout(timeout, connector.connect(member_server_name(), tcp))
        .await
        .map_err(|_| Error::Peer("TLS handshake timed out".into()))?
        .map_err(|e| Error::Peer(format!("TLS handshake with {peer} (is the key for this cluster?): {e}")))?;
    let req = JoinRequest {
        protocol: PROTOCOL_VERSION,
        key_secret: key.secret.clone(),
        name: name.into(),
        listen: listen.into(),
        csr_pem,
        witness,
    };
    write_msg(&mut tls, &Msg::JoinRequest(req)).await.map_err(|e| Error::Peer(e.to_string()))?;
    let reply = match tokio::time::timeout(timeout, read_msg(&mut tls)).await {
        Err(_) => return Err(Error::Peer("no answer to the join request".into())),
        Ok(Ok(Some(Msg::JoinReply(r)))) => r,
        Ok(Ok(Some(Msg::Refuse { reason }))) => return Err(Error::Peer(format!("join refused: {reason}"))),
        Ok(Ok(other)) => return Err(Error::Peer(format!("unexpected answer to join: {other:?}"))),
        Ok(Err(e)) => return Err(Error::Peer(e.to_string())),
    };
    files.write(&files.node_key(), &node_key, true)?;
    files.write(&files.node_cert(), &reply.cert_pem, false)?;
    files.write(&files.ca_cert(), &reply.ca_pem, false)?;
    Ok(Joined { cluster_id: reply.cluster_id, node_id: reply.node_id, tag: reply.tag, members: reply.members })
}
