//! The peer protocol's frames and messages. A frame is a 4-byte big-endian length and a
//! MessagePack payload (structs as arrays, to keep per-revision overhead small); docs/protocol.md
//! is the reference. Decoding never trusts a length before checking it against
//! [`FRAME_BYTES_MAX`].

use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use mgha_core::error::ChangeoverError;
use mgha_core::model::{Fields, Hash, Object, Uid};
use mgha_core::node::{Designation, Role};
use mgha_core::revision::{Change, Head, Op, Revision};
use mgha_core::store::HistoryRecord;

/// Version of the peer protocol spoken by this build; peers must speak the same. 2: a forwarded
/// changeover carries its time budget, and its result a typed refusal. 3: member records carry
/// a version and a removal mark, and pings carry the Active's head, so that a Standby knows how
/// far behind it is. 4: a full sync carries the history (the floor, and every revision with its
/// undo record above it), and after the hellos frames travel as blocks, small ones deflated
/// (`compress.rs`). 5: one link per pair of servers carries every domain's sessions as streams.
/// 6: a link carries a beat stream, so that idle sessions ping rarely (docs/protocol.md). 7: a
/// server asks another which replicas of the domains Active there could take over
/// (`AskEligible`).
pub const PROTOCOL_VERSION: u32 = 7;
pub use mgha_core::limits::{
    FRAME_BYTES_MAX, FRAME_DEPTH_MAX, FRAME_VALUES_MAX, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_CHUNK_OBJECTS,
};
use mgha_core::msgpack_shape;

/// Errors of the framing layer.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A payload refused before decoding: too many values, too deep, or lengths that do not add
    /// up.
    #[error("frame refused before decoding: {0}")]
    Shape(msgpack_shape::ShapeError),
    #[error("the peer took no bytes for {ms} ms")]
    Stalled { ms: u128 },
}

/// A cluster member as the Active advertises it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node_id: Uid,
    pub name: String,
    pub listen: String,
    pub designation: Designation,
    /// The node's tag in epochs.
    #[serde(default)]
    pub tag: u16,
    /// The member was removed (`mgha member remove`): its certificate is refused, no node dials
    /// it, and the record stays so that the removal reaches every node and is never undone.
    #[serde(default)]
    pub removed: bool,
    /// Raised by the node itself each time its record changes (address, designation): the
    /// higher version wins when lists merge.
    #[serde(default)]
    pub version: u64,
}

impl Member {
    /// A current member record with the given fields, at version 0.
    pub fn new(node_id: Uid, name: &str, listen: &str, designation: Designation, tag: u16) -> Member {
        Member { node_id, name: name.into(), listen: listen.into(), designation, tag, removed: false, version: 0 }
    }

    /// Whether both records say the same of the node (the version aside).
    pub fn same_as(&self, other: &Member) -> bool {
        (self.node_id, &self.name, &self.listen, self.designation, self.tag, self.removed)
            == (other.node_id, &other.name, &other.listen, other.designation, other.tag, other.removed)
    }

    /// An order on designations, for the deterministic merge of records that diverged.
    pub(crate) fn designation_rank(&self) -> u8 {
        match self.designation {
            Designation::Primary => 1,
            Designation::Secondary => 0,
        }
    }
}

/// The first message each side sends on a domain's stream of a link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub cluster_id: Uid,
    /// The domain this stream's session is about (the first domain's id is the cluster id):
    /// the acceptor routes the stream by it.
    pub domain: Uid,
    pub node_id: Uid,
    pub name: String,
    pub designation: Designation,
    pub role: Role,
    pub epoch: u64,
    pub head: Head,
    pub listen: String,
    pub members: Vec<Member>,
    /// The sender found damage in its store (quick check, scrub, check, a read): an Active
    /// answers a Standby that says so with a full sync, and never hands it the role.
    #[serde(default)]
    pub damaged: bool,
}

/// A revision as it crosses the wire: without its parent (the receiver's head is the parent, and
/// the id check proves it) and with each object's type and uid written once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireRevision {
    pub seq: u64,
    pub epoch: u64,
    pub time_ms: u64,
    pub author: String,
    pub message: String,
    pub id: Hash,
    pub state_hash: Hash,
    pub changes: Vec<WireChange>,
}

/// One change of a [`WireRevision`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireChange {
    pub op: Op,
    pub type_name: String,
    pub uid: Uid,
    pub before: Option<Hash>,
    /// Name and fields after a put; `None` after a delete.
    pub after: Option<(String, Fields)>,
}

/// A request to join the cluster, sent by a new Secondary before it has a certificate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub protocol: u32,
    pub key_secret: String,
    pub name: String,
    pub listen: String,
    /// PEM certificate signing request for the node's own key pair.
    pub csr_pem: String,
    /// The sender is an arbiter witness (`mgha witness`): it gets a certificate of the cluster
    /// CA but does not become a member (it holds no data; nodes never sync with it).
    #[serde(default)]
    pub witness: bool,
}

/// What a Secondary needs to take part in the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinReply {
    pub cluster_id: Uid,
    pub node_id: Uid,
    pub tag: u16,
    pub cert_pem: String,
    pub ca_pem: String,
    pub members: Vec<Member>,
}

/// Every message of the peer protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    Hello(Hello),
    /// The first message each side sends on an authenticated connection: it opens a link, over
    /// which every domain's sessions then run as multiplexed streams (docs/protocol.md).
    Link {
        protocol: u32,
        cluster_id: Uid,
        node_id: Uid,
    },
    /// The sender refuses the connection or request, and says why.
    Refuse {
        reason: String,
    },
    Revision(WireRevision),
    /// The sender has durably applied everything up to `seq`, reaching `state_hash`; `epoch` is
    /// its current epoch. (No revision id: the receiver knows its own ids.)
    Ack {
        seq: u64,
        state_hash: Hash,
        epoch: u64,
    },
    /// What is your revision id at `seq`?
    IdAt {
        seq: u64,
    },
    IdAtReply {
        seq: u64,
        id: Option<Hash>,
    },
    /// `archive`: the receiver's history diverged; it keeps a backup of its store first. The
    /// objects come first, then the `revisions` above `floor`, up to `head`.
    SnapshotBegin {
        head: Head,
        objects: u64,
        archive: bool,
        floor: Head,
        revisions: u64,
    },
    SnapshotChunk {
        objects: Vec<serde_bytes::ByteBuf>,
    },
    /// The next revisions of a full sync's history, in order, each with its undo record.
    SnapshotHistory {
        records: Vec<HistoryRecord>,
    },
    SnapshotEnd,
    /// From the Active, every `heartbeat_ms`: liveness, and its head's height (a Standby is
    /// synchronized only once it has applied that far).
    Ping {
        nonce: u64,
        head: u64,
    },
    /// From a Standby: the nonce of the last ping it saw, sent whenever it wrote nothing else
    /// for a heartbeat (also while it is busy applying), so the Active knows it is alive.
    Pong {
        nonce: u64,
    },
    JoinRequest(JoinRequest),
    JoinReply(JoinReply),
    /// The first message of a stream that asks whether this server's replica of `domain`
    /// references any of `uids` (objects of the global domain about to be deleted).
    AskUses {
        domain: Uid,
        uids: Vec<Uid>,
    },
    /// The answer: for each of the uids that objects of the domain reference, a few of them
    /// (`group 'web'`).
    Uses {
        used: Vec<(Uid, Vec<String>)>,
    },
    /// The first message of a stream that asks, for each of `domains` whose Active is the
    /// receiver's replica, which replicas could take its Active role now (a rebalance asked on
    /// another server plans from the Actives' views).
    AskEligible {
        domains: Vec<Uid>,
    },
    /// The answer: for each domain asked whose Active is here, the names of its replicas that
    /// could take over now (see [`crate::runtime::eligible_replicas`]); a domain not hosted here,
    /// or not Active here, is left out.
    Eligible {
        domains: Vec<(Uid, Vec<String>)>,
    },
    /// The Active asks the receiver to become Active at `epoch`, if its head is `head`.
    Promote {
        epoch: u64,
        head: Head,
    },
    /// The receiver took over at `epoch`.
    Promoted {
        epoch: u64,
    },
    /// A Standby forwards an administrator's planned changeover to the Active, which runs it for
    /// at most `timeout_ms` (what is left of the Standby's own deadline) and its own timeout.
    ChangeoverRequest {
        target: String,
        timeout_ms: u64,
    },
    /// The outcome of a forwarded changeover: the target's new epoch, or why it was refused.
    ChangeoverResult {
        outcome: Result<u64, ChangeoverError>,
    },
    /// Send me your revisions `after + 1 ..= to` (a collision branch).
    GetRevisions {
        after: u64,
        to: u64,
    },
    BranchRevision(Box<Revision>),
    BranchEnd,
    /// The cluster CA key, from a node that holds it to a member, so that a Secondary can be
    /// promoted to Primary if the Primary is lost.
    CaKey {
        pem: String,
    },
    /// A Standby could not store what the Active sent (its disk is full, say): `cause` says
    /// why. It closes the connection and dials again; the Active shows it *apply failing*
    /// until an `Ack` moves its head.
    ApplyFailing {
        cause: String,
    },
    /// The link's own liveness, on the one stream of a link that carries no session: each side
    /// sends one every heartbeat, so that a link is heard while its sessions are idle.
    Beat,
}

impl WireRevision {
    pub fn from_revision(rev: &Revision) -> WireRevision {
        WireRevision {
            seq: rev.seq,
            epoch: rev.epoch,
            time_ms: rev.time_ms,
            author: rev.author.clone(),
            message: rev.message.clone(),
            id: rev.id,
            state_hash: rev.state_hash,
            changes: rev
                .changes
                .iter()
                .map(|c| WireChange {
                    op: c.op,
                    type_name: c.type_name.clone(),
                    uid: c.uid,
                    before: c.before,
                    after: c.after.as_ref().map(|o| (o.name.clone(), o.fields.clone())),
                })
                .collect(),
        }
    }

    /// The full revision, given the parent the receiver expects (its own head id).
    pub fn into_revision(self, parent: Hash) -> Revision {
        Revision {
            seq: self.seq,
            id: self.id,
            parent,
            epoch: self.epoch,
            author: self.author,
            time_ms: self.time_ms,
            message: self.message,
            state_hash: self.state_hash,
            changes: self
                .changes
                .into_iter()
                .map(|c| Change {
                    after: c.after.map(|(name, fields)| Object {
                        type_name: c.type_name.clone(),
                        uid: c.uid,
                        name,
                        fields,
                    }),
                    type_name: c.type_name,
                    uid: c.uid,
                    op: c.op,
                    before: c.before,
                })
                .collect(),
        }
    }
}

/// Encodes one message as a frame (length prefix included).
pub fn encode_frame(msg: &Msg) -> Result<Vec<u8>, WireError> {
    let mut buf = vec![0u8; 4];
    rmp_serde::encode::write(&mut buf, msg).map_err(|e| WireError::Malformed(e.to_string()))?;
    let len = buf.len() - 4;
    if len > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge { len, max: FRAME_BYTES_MAX });
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Decodes a frame's payload, once its shape is within [`FRAME_VALUES_MAX`] values and
/// [`FRAME_DEPTH_MAX`] levels: the decoder allocates by the counts it reads, so they are
/// counted first, without allocating (see `mgha_core::msgpack_shape`). Every message of the peer
/// protocol passes here.
pub fn decode_payload(payload: &[u8]) -> Result<Msg, WireError> {
    msgpack_shape::check(payload, FRAME_VALUES_MAX, FRAME_DEPTH_MAX).map_err(WireError::Shape)?;
    rmp_serde::from_slice(payload).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Decodes the first frame of `buf`: `Ok(None)` when more bytes are needed, otherwise the
/// message and the bytes it used. The fuzz target and property tests drive this.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Msg, usize)>, WireError> {
    let Some(len_bytes) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge { len, max: FRAME_BYTES_MAX });
    }
    let Some(payload) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    Ok(Some((decode_payload(payload)?, 4 + len)))
}

/// Reads one message; `Ok(None)` on a clean end of stream between frames.
pub async fn read_msg<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Msg>, WireError> {
    read_msg_max(r, FRAME_BYTES_MAX).await
}

/// Reads one message and says how many payload bytes it took (for byte-bounded queues).
pub async fn read_msg_sized<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<(Msg, usize)>, WireError> {
    read_frame_max(r, FRAME_BYTES_MAX).await
}

/// Most bytes of the one frame a peer without a member certificate may send (a join request):
/// what an unauthenticated client can make a node allocate.
pub const UNAUTHENTICATED_FRAME_BYTES_MAX: usize = 64 * 1024;

/// Reads one message of at most `max` bytes, refusing a longer one from its length alone,
/// before anything is allocated for it.
pub async fn read_msg_max<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<Msg>, WireError> {
    Ok(read_frame_max(r, max).await?.map(|(m, _)| m))
}

/// One message of at most `max` bytes (never more than `FRAME_BYTES_MAX`) and its payload size;
/// `Ok(None)` on a clean end of stream between frames.
async fn read_frame_max<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<(Msg, usize)>, WireError> {
    let max = max.min(FRAME_BYTES_MAX);
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    decode_payload(&payload).map(|m| Some((m, len)))
}

/// Writes one already-encoded frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> Result<(), WireError> {
    w.write_all(frame).await?;
    w.flush().await?;
    Ok(())
}

/// Encodes and writes one message.
pub async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &Msg) -> Result<(), WireError> {
    write_frame(w, &encode_frame(msg)?).await
}

/// Writes one frame, failing with [`WireError::Stalled`] when the peer takes no byte of it for
/// `stall`: a slow link still gets a large frame through, a peer that stopped reading does not
/// hold the writer forever. (A timed-out write leaves the stream mid-frame: the caller drops
/// the connection.)
pub async fn write_frame_within<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame: &[u8],
    stall: Duration,
) -> Result<(), WireError> {
    let mut written = 0;
    while written < frame.len() {
        match tokio::time::timeout(stall, w.write(&frame[written..])).await {
            Err(_) => return Err(WireError::Stalled { ms: stall.as_millis() }),
            Ok(Ok(0)) => return Err(WireError::Io(std::io::ErrorKind::WriteZero.into())),
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) => return Err(e.into()),
        }
    }
    match tokio::time::timeout(stall, w.flush()).await {
        Err(_) => Err(WireError::Stalled { ms: stall.as_millis() }),
        Ok(r) => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_revision() -> Revision {
        let mut fields = Fields::new();
        fields.insert("ipv4-address".into(), "10.0.0.1".into());
        let uid = Uid::new_random();
        let changes = vec![Change {
            type_name: "host".into(),
            uid,
            op: Op::Put,
            before: None,
            after: Some(Object { type_name: "host".into(), uid, name: "web1".into(), fields }),
        }];
        let parent = Hash([7; 32]);
        Revision {
            seq: 12,
            id: Revision::compute_id(&parent, 3, &changes),
            parent,
            epoch: 3,
            author: "admin".into(),
            time_ms: 1_700_000_000_000,
            message: String::new(),
            state_hash: Hash([1; 32]),
            changes,
        }
    }

    #[test]
    fn revision_survives_the_wire() {
        let rev = sample_revision();
        let frame = encode_frame(&Msg::Revision(WireRevision::from_revision(&rev))).expect("encodes");
        let (msg, used) = decode_frame(&frame).expect("decodes").expect("complete");
        assert_eq!(used, frame.len());
        let Msg::Revision(w) = msg else { panic!("not a revision") };
        let back = w.into_revision(rev.parent);
        assert_eq!(back, rev);
        back.verify_id().expect("id still matches");
    }

    #[test]
    fn one_host_revision_is_small_on_the_wire() {
        let frame = encode_frame(&Msg::Revision(WireRevision::from_revision(&sample_revision()))).expect("encodes");
        assert!(frame.len() < 200, "{} bytes", frame.len());
    }

    #[test]
    fn oversized_length_is_refused_before_reading() {
        let mut frame = ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&[0; 16]);
        assert!(matches!(decode_frame(&frame), Err(WireError::TooLarge { .. })));
    }

    #[test]
    fn a_forwarded_refusal_keeps_its_variant() {
        for outcome in [
            Ok(7 << 16 | 2),
            Err(ChangeoverError::TargetNotCaughtUp { target: "b".into() }),
            Err(ChangeoverError::InProgress { target: "c".into() }),
            Err(ChangeoverError::ActiveFailed { code: mgha_core::ErrorCode::Io, message: "disk".into() }),
        ] {
            let msg = Msg::ChangeoverResult { outcome };
            let (back, _) = decode_frame(&encode_frame(&msg).expect("encodes")).expect("decodes").expect("complete");
            assert_eq!(back, msg);
        }
    }

    #[test]
    fn partial_frames_need_more_bytes() {
        let frame = encode_frame(&Msg::Ping { nonce: 9, head: 4 }).expect("encodes");
        for cut in 0..frame.len() {
            assert!(decode_frame(&frame[..cut]).expect("no error").is_none());
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(&bytes);
        }

        #[test]
        fn garbage_payloads_are_malformed(payload in proptest::collection::vec(any::<u8>(), 1..256)) {
            let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&payload);
            if let Ok(Some((msg, _))) = decode_frame(&frame) {
                // A random payload that happens to decode must re-encode to a frame that decodes
                // to the same message.
                let again = encode_frame(&msg).expect("re-encodes");
                let (msg2, _) = decode_frame(&again).expect("decodes").expect("complete");
                prop_assert_eq!(msg, msg2);
            }
        }

        #[test]
        fn acks_round_trip(seq in any::<u64>(), id in any::<[u8; 32]>(), state in any::<[u8; 32]>()) {
            let msg = Msg::Ack { seq, state_hash: Hash(state), epoch: u64::from(id[0]) };
            let frame = encode_frame(&msg).expect("encodes");
            let (back, used) = decode_frame(&frame).expect("decodes").expect("complete");
            prop_assert_eq!(used, frame.len());
            prop_assert_eq!(back, msg);
        }
    }
}
