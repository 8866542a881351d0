//! Plumbing shared by both ends of a member connection: a reader task that never stops reading
//! for long (acknowledgements and heartbeats are kept in cells rather than queued, so the peer's
//! writes of them always drain), a byte-bounded inbox for everything else, the Standby's writer
//! task, and per-peer command channels through which the rest of the runtime asks a connection
//! task to send something. Streams are wrapped in [`Counted`] so each peer's replication traffic
//! can be measured.
//!
//! Why this shape: a connection deadlocks when both ends block writing while neither reads. The
//! Active writes revisions as fast as the socket takes them; the Standby writes acknowledgements.
//! Here an acknowledgement never waits in a queue behind anything: the Active's reader task keeps
//! only the newest (they are cumulative), so the Standby's writes always drain, the Standby keeps
//! reading, and the Active's writes drain in turn. Flow control is TCP's own (a window of
//! revisions in flight would cap catch-up at one window per round trip on a long link), and the
//! memory a Standby spends on revisions received but not yet applied is [`INBOX_BYTES_MAX`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::wire::{encode_frame, read_msg_sized, write_frame_within, Msg, WireError};
use mgha_core::error::Result;
use mgha_core::model::{Hash, Uid};
use mgha_core::mono_ms;
use mgha_core::revision::Head;

/// Payload bytes of frames buffered between the reader task and the connection task: what a
/// Standby holds of revisions received but not yet applied (one larger frame still passes alone).
pub(crate) const INBOX_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Frames buffered between the reader task and the connection task.
const INBOX_FRAMES_MAX: usize = 8192;
/// Commands buffered for one connection task.
const COMMANDS_MAX: usize = 16;
/// An idle session (nothing sent and unacknowledged) pings its peer, and looks at its own
/// deadlines, once every this many heartbeats instead of every heartbeat: the link's beats
/// carry the liveness of the peer's server meanwhile (docs/protocol.md, "Links and streams").
pub(crate) const IDLE_PING_HEARTBEATS: u32 = 10;
/// Messages (other than acknowledgements) queued for the Standby's writer task.
const OUTBOX_MESSAGES_MAX: usize = 16;

/// A Standby's acknowledgement: it durably applied everything up to `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ack {
    pub seq: u64,
    pub state_hash: Hash,
    pub epoch: u64,
}

/// What the reader task saw, shared with the connection task without a queue.
#[derive(Debug, Default)]
pub(crate) struct Heard {
    /// When a frame last arrived, or the reader last went back to waiting on the socket.
    at_ms: AtomicU64,
    /// The reader waits for room in the inbox, not for the peer: silence is then ours.
    blocked: AtomicBool,
    /// The highest head height the Active announced (hello, pings, revisions).
    active_head: AtomicU64,
    /// The nonce of the last ping, echoed by the Standby's pongs.
    nonce: AtomicU64,
    /// Woken by every ping: the Standby's writer answers it.
    pinged: tokio::sync::Notify,
    /// When a byte of the link under the session was last read ([`mono_ms`], the link's clock
    /// too), once the session set it ([`Heard::hear_link`]).
    link_ms: OnceLock<Arc<AtomicU64>>,
}

impl Heard {
    fn touch(&self) {
        self.at_ms.store(mono_ms(), Ordering::Relaxed);
    }

    /// How long the peer has been silent while we were ready to read; zero while the reader
    /// waits for the connection task to make room. On a link, the peer's server is heard on
    /// any stream of it: the link's beats keep an idle session's peer heard.
    pub fn silent_for(&self) -> Duration {
        if self.blocked.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let own = self.at_ms.load(Ordering::Relaxed);
        let last = self.link_ms.get().map_or(own, |link| own.max(link.load(Ordering::Relaxed)));
        Duration::from_millis(mono_ms().saturating_sub(last))
    }

    /// Counts what is read on the session's link (`heard_ms` of [`super::link::LinkStream::link_heard`])
    /// as the peer's voice.
    pub fn hear_link(&self, heard_ms: Arc<AtomicU64>) {
        let _ = self.link_ms.set(heard_ms);
    }

    pub fn note_active_head(&self, seq: u64) {
        self.active_head.fetch_max(seq, Ordering::Relaxed);
    }

    /// The Active's head height as far as this connection has told.
    pub fn active_head(&self) -> u64 {
        self.active_head.load(Ordering::Relaxed)
    }
}

/// Frames read from a peer, in order, other than acknowledgements, pings and pongs (see
/// [`Heard`] and the ack cell); an error (or end of stream) is the last item.
pub(crate) struct Inbox {
    rx: mpsc::Receiver<(std::result::Result<Msg, WireError>, Option<OwnedSemaphorePermit>)>,
}

impl Inbox {
    pub async fn recv(&mut self) -> Option<std::result::Result<Msg, WireError>> {
        self.rx.recv().await.map(|(m, _permit)| m)
    }

    /// The next frame if one is already buffered.
    pub fn try_recv(&mut self) -> Option<std::result::Result<Msg, WireError>> {
        self.rx.try_recv().ok().map(|(m, _permit)| m)
    }
}

/// The connection task's side of a reader task.
pub(crate) struct Reader {
    pub task: JoinHandle<()>,
    pub inbox: Inbox,
    /// The newest acknowledgement (cumulative, so older ones are not kept).
    pub acks: watch::Receiver<Option<Ack>>,
    pub heard: Arc<Heard>,
}

/// Reads frames from `rd` until it ends or fails.
pub(crate) fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(mut rd: R) -> Reader {
    let (tx, inbox) = mpsc::channel(INBOX_FRAMES_MAX);
    let (acks_tx, acks) = watch::channel(None);
    let heard = Arc::new(Heard::default());
    heard.touch();
    let budget = Arc::new(Semaphore::new(INBOX_BYTES_MAX));
    let h = heard.clone();
    let task = tokio::spawn(async move {
        loop {
            let read = read_msg_sized(&mut rd).await;
            h.touch();
            let (item, len) = match read {
                Ok(Some((Msg::Ack { seq, state_hash, epoch }, _))) => {
                    acks_tx.send_replace(Some(Ack { seq, state_hash, epoch }));
                    continue;
                }
                Ok(Some((Msg::Pong { .. }, _))) => continue,
                Ok(Some((Msg::Ping { nonce, head }, _))) => {
                    h.note_active_head(head);
                    h.nonce.store(nonce, Ordering::Relaxed);
                    h.pinged.notify_one();
                    continue;
                }
                Ok(Some((m, len))) => {
                    if let Msg::Revision(w) = &m {
                        h.note_active_head(w.seq);
                    }
                    (Ok(m), len)
                }
                Ok(None) => (Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into())), 0),
                Err(e) => (Err(e), 0),
            };
            let last = item.is_err();
            h.blocked.store(true, Ordering::Relaxed);
            let want = len.clamp(1, INBOX_BYTES_MAX) as u32;
            let permit = budget.clone().acquire_many_owned(want).await.ok();
            let sent = tx.send((item, permit)).await;
            h.touch();
            h.blocked.store(false, Ordering::Relaxed);
            if sent.is_err() || last {
                return;
            }
        }
    });
    Reader { task, inbox: Inbox { rx: inbox }, acks, heard }
}

/// The connection task's side of the Standby's writer task.
pub(crate) struct Outbox {
    /// The newest acknowledgement to send; the writer sends it before any later message.
    pub acks: watch::Sender<Option<Ack>>,
    msgs: mpsc::Sender<Msg>,
    /// Why the writer stopped, once it has.
    pub done: JoinHandle<std::result::Result<(), WireError>>,
}

impl Outbox {
    /// Queues `msg` after the acknowledgements set so far; fails once the writer stopped.
    pub async fn send(&self, msg: Msg) -> std::result::Result<(), WireError> {
        self.msgs.send(msg).await.map_err(|_| WireError::Io(std::io::ErrorKind::BrokenPipe.into()))
    }

    pub fn ack(&self, ack: Ack) {
        self.acks.send_replace(Some(ack));
    }

    /// Resolves once the writer stopped (it logged why).
    pub async fn closed(&self) {
        self.msgs.closed().await
    }

    /// Lets the writer send what is queued (a refusal, say), for at most `within`.
    pub async fn close(self, within: Duration) {
        let Outbox { acks, msgs, mut done } = self;
        drop(msgs);
        drop(acks);
        if tokio::time::timeout(within, &mut done).await.is_err() {
            done.abort();
        }
    }
}

/// The Standby's writer: sends acknowledgements (the newest only), queued messages, and a pong
/// in answer to each of the Active's pings unless it wrote something else within half a
/// heartbeat. A write the Active takes no byte of for `stall` ends it.
pub(crate) fn spawn_writer<W: AsyncWrite + Unpin + Send + 'static>(
    wr: W,
    peer: String,
    heard: Arc<Heard>,
    heartbeat: Duration,
    stall: Duration,
) -> Outbox {
    let (acks, ack_rx) = watch::channel::<Option<Ack>>(None);
    let (msgs, msg_rx) = mpsc::channel::<Msg>(OUTBOX_MESSAGES_MAX);
    let done = tokio::spawn(async move {
        let result = write_loop(wr, heard, ack_rx, msg_rx, heartbeat, stall).await;
        if let Err(e) = &result {
            tracing::warn!(%peer, error = %e, "writing to the active failed; dropping the connection");
        }
        result
    });
    Outbox { acks, msgs, done }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    heard: Arc<Heard>,
    mut ack_rx: watch::Receiver<Option<Ack>>,
    mut msg_rx: mpsc::Receiver<Msg>,
    heartbeat: Duration,
    stall: Duration,
) -> std::result::Result<(), WireError> {
    {
        let mut last_write = Instant::now();
        let mut acks_open = true;
        let mut sent = None;
        loop {
            let msg = tokio::select! {
                biased;
                m = msg_rx.recv() => match m {
                    Some(m) => Some(m),
                    None => {
                        // Closing: the newest acknowledgement still goes out.
                        send_ack(&mut wr, &ack_rx, &mut sent, stall).await?;
                        return Ok(());
                    }
                },
                changed = ack_rx.changed(), if acks_open => {
                    acks_open = changed.is_ok();
                    None
                }
                // A ping is answered unless this side spoke within the last half heartbeat. A
                // busy Standby whose reader waits for room reads no ping; the Active still hears
                // its server through the link's beats.
                _ = heard.pinged.notified() => {
                    if last_write.elapsed() >= heartbeat / 2 {
                        let pong = Msg::Pong { nonce: heard.nonce.load(Ordering::Relaxed) };
                        write_frame_within(&mut wr, &encode_frame(&pong)?, stall).await?;
                        last_write = Instant::now();
                    }
                    continue;
                }
            };
            send_ack(&mut wr, &ack_rx, &mut sent, stall).await?;
            if let Some(m) = msg {
                write_frame_within(&mut wr, &encode_frame(&m)?, stall).await?;
            }
            last_write = Instant::now();
        }
    }
}

/// Sends the newest acknowledgement unless it already went out.
async fn send_ack<W: AsyncWrite + Unpin>(
    wr: &mut W,
    acks: &watch::Receiver<Option<Ack>>,
    sent: &mut Option<Ack>,
    stall: Duration,
) -> std::result::Result<(), WireError> {
    let ack = *acks.borrow();
    if ack == *sent {
        return Ok(());
    }
    if let Some(Ack { seq, state_hash, epoch }) = ack {
        write_frame_within(wr, &encode_frame(&Msg::Ack { seq, state_hash, epoch })?, stall).await?;
    }
    *sent = ack;
    Ok(())
}

/// Bytes per second a Standby applies at the least: a revision unacknowledged for longer than
/// the peer timeout plus its bytes (and a full inbox ahead of it) at this rate means the Standby
/// is wedged, even if it still answers heartbeats.
pub(crate) const APPLY_BYTES_PER_SEC_MIN: u64 = 1024 * 1024;

/// The Active's deadlines on one Standby, shared by its connection task and its write half:
/// silence (no frame for the peer timeout), and acknowledgement (the oldest revision sent and not
/// acknowledged waits no longer than its allowance).
#[derive(Debug)]
pub(crate) struct Watchdog {
    pub peer: String,
    pub timeout: Duration,
    pub heard: Arc<Heard>,
    /// Since when the oldest unacknowledged revision waits (ms on [`mono_ms`]'s clock), with
    /// its seq and bytes; all 0 when nothing is outstanding.
    waiting_since_ms: AtomicU64,
    waiting_seq: AtomicU64,
    waiting_bytes: AtomicU64,
}

impl Watchdog {
    pub fn new(peer: String, timeout: Duration, heard: Arc<Heard>) -> Watchdog {
        Watchdog {
            peer,
            timeout,
            heard,
            waiting_since_ms: AtomicU64::new(0),
            waiting_seq: AtomicU64::new(0),
            waiting_bytes: AtomicU64::new(0),
        }
    }

    /// The oldest unacknowledged revision is now `oldest` (seq, bytes), waiting from now on.
    pub fn waiting_for(&self, oldest: Option<(u64, usize)>) {
        let (seq, bytes) = oldest.unwrap_or((0, 0));
        self.waiting_seq.store(seq, Ordering::Relaxed);
        self.waiting_bytes.store(bytes as u64, Ordering::Relaxed);
        self.waiting_since_ms.store(if oldest.is_some() { mono_ms().max(1) } else { 0 }, Ordering::Relaxed);
    }

    /// Why the connection must be dropped now, if it must; logged here, once per reason found.
    pub fn check(&self) -> std::result::Result<(), String> {
        let silent = self.heard.silent_for();
        if silent > self.timeout {
            let why = format!("no word from {} for {} ms; dropping the connection", self.peer, silent.as_millis());
            tracing::warn!(peer = %self.peer, "{why}");
            return Err(why);
        }
        let since = self.waiting_since_ms.load(Ordering::Relaxed);
        if since > 0 {
            let bytes = self.waiting_bytes.load(Ordering::Relaxed) + INBOX_BYTES_MAX as u64;
            let allowed = self.timeout + Duration::from_millis(bytes * 1000 / APPLY_BYTES_PER_SEC_MIN);
            let waited = Duration::from_millis(mono_ms().saturating_sub(since));
            if waited > allowed {
                let seq = self.waiting_seq.load(Ordering::Relaxed);
                let why = format!(
                    "{} acknowledged nothing for {} ms with revision {seq} outstanding; dropping the connection",
                    self.peer,
                    waited.as_millis()
                );
                tracing::warn!(peer = %self.peer, "{why}");
                return Err(why);
            }
        }
        Ok(())
    }
}

/// A write half that fails a write the peer takes no byte of once the [`Watchdog`] says the
/// peer is gone or wedged: a blocked write reaches the same deadlines as the rest of the task.
pub(crate) struct Watched<W> {
    inner: W,
    dog: Arc<Watchdog>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<W> Watched<W> {
    pub fn new(inner: W, dog: Arc<Watchdog>) -> Watched<W> {
        Watched { inner, dog, timer: None }
    }

    /// Polls the watchdog while a write waits: `Ready(Err)` once it says to give up.
    fn poll_watch(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let period = (self.dog.timeout / 4).max(Duration::from_millis(10));
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(period)));
        while std::future::Future::poll(timer.as_mut(), cx).is_ready() {
            if let Err(why) = self.dog.check() {
                return Poll::Ready(std::io::Error::new(std::io::ErrorKind::TimedOut, why));
            }
            timer.as_mut().reset(tokio::time::Instant::now() + period);
        }
        Poll::Pending
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Watched<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Pending => self.poll_watch(cx).map(Err),
            ready => {
                self.timer = None;
                ready
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.poll_watch(cx).map(Err),
            ready => {
                self.timer = None;
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the runtime asks a connection task to do.
#[derive(Debug)]
pub(crate) enum PeerCmd {
    /// (To the Active's task serving the target.) Ask it to take over.
    Promote { epoch: u64, head: Head },
    /// (To a Standby's task following the Active.) Forward a changeover request, to be run for
    /// at most `timeout_ms`.
    Forward { target: String, timeout_ms: u64, reply: oneshot::Sender<Result<u64>> },
    /// Send this message as is.
    Send(Msg),
}

/// The command channel of one live connection task. `id` tells sessions with the same peer
/// apart: a session that replaced another has a new one.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub id: u64,
    pub tx: mpsc::Sender<PeerCmd>,
}

/// Command channels of the live connection tasks, by peer node id.
#[derive(Default)]
pub(crate) struct Registry {
    peers: Mutex<HashMap<Uid, Session>>,
    next_id: AtomicU64,
}

impl Registry {
    /// Registers the task talking to `peer`, replacing any earlier session with it; returns the
    /// session's id (for [`Registry::unregister`]) and its command inbox.
    pub fn register(&self, peer: Uid) -> (u64, mpsc::Receiver<PeerCmd>) {
        let (tx, rx) = mpsc::channel(COMMANDS_MAX);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(peer, Session { id, tx });
        (id, rx)
    }

    /// Forgets session `id` with `peer`, unless a newer session replaced it meanwhile: an old
    /// task that ends late must not take its successor's channel away. Returns whether it was
    /// the current session (only then is the peer disconnected).
    pub fn unregister(&self, peer: Uid, id: u64) -> bool {
        let mut peers = self.lock();
        let current = peers.get(&peer).is_some_and(|s| s.id == id);
        if current {
            peers.remove(&peer);
        }
        current
    }

    /// Forgets any session with `peer`: its task's command channel closes, which ends the
    /// task. Returns whether there was one.
    pub fn forget(&self, peer: Uid) -> bool {
        self.lock().remove(&peer).is_some()
    }

    /// The live session with `peer`, if any.
    pub fn get(&self, peer: Uid) -> Option<Session> {
        self.lock().get(&peer).filter(|s| !s.tx.is_closed()).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uid, Session>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Bytes sent to and received from one peer, over all its connections.
#[derive(Debug, Default)]
pub struct Traffic {
    sent: AtomicU64,
    received: AtomicU64,
}

impl Traffic {
    /// (sent, received).
    pub fn totals(&self) -> (u64, u64) {
        (self.sent.load(Ordering::Relaxed), self.received.load(Ordering::Relaxed))
    }
}

/// A stream that adds what passes through it to a peer's [`Traffic`]: counted below the frame
/// layer, so every message of every kind is in the totals (TLS records are not).
pub(crate) struct Counted<S> {
    inner: S,
    traffic: Arc<Traffic>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, traffic: Arc<Traffic>) -> Counted<S> {
        Counted { inner, traffic }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        self.traffic.received.fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &polled {
            self.traffic.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
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

    #[test]
    fn a_late_unregister_keeps_the_newer_session() {
        let registry = Registry::default();
        let peer = Uid::new_random();
        let (old, _old_rx) = registry.register(peer);
        let (new, _new_rx) = registry.register(peer);
        assert!(!registry.unregister(peer, old));
        assert_eq!(registry.get(peer).map(|s| s.id), Some(new));
        assert!(registry.unregister(peer, new));
        assert!(registry.get(peer).is_none());
    }

    #[tokio::test]
    async fn acknowledgements_never_wait_in_the_inbox() {
        use crate::wire::write_msg;
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let reader = spawn_reader(ours);
        // Far more acknowledgements than the inbox holds frames, none of them consumed: the
        // reader keeps reading, and only the newest is kept.
        for seq in 1..=(INBOX_FRAMES_MAX as u64 + 100) {
            write_msg(&mut theirs, &Msg::Ack { seq, state_hash: Hash::default(), epoch: 1 }).await.expect("write");
        }
        let mut acks = reader.acks.clone();
        let want = INBOX_FRAMES_MAX as u64 + 100;
        tokio::time::timeout(Duration::from_secs(10), acks.wait_for(|a| a.map(|a| a.seq) == Some(want)))
            .await
            .expect("the newest acknowledgement arrives")
            .expect("reader alive");
        reader.task.abort();
    }

    #[tokio::test]
    async fn a_write_the_peer_never_takes_ends_at_the_deadline() {
        use tokio::io::AsyncWriteExt;
        let (ours, _theirs) = tokio::io::duplex(1024);
        let heard = Arc::new(Heard::default());
        heard.touch();
        let dog = Arc::new(Watchdog::new("b".into(), Duration::from_millis(100), heard));
        let mut wr = Watched::new(ours, dog);
        // Nobody reads the other end and nobody speaks: the write blocks, then gives up.
        let written = tokio::time::timeout(Duration::from_secs(10), wr.write_all(&vec![0u8; 1 << 20]))
            .await
            .expect("the write gave up before the test's deadline");
        assert_eq!(written.expect_err("no peer took the bytes").kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn counted_streams_add_both_directions() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let traffic = Arc::new(Traffic::default());
        let (a, mut b) = tokio::io::duplex(1024);
        let mut counted = Counted::new(a, traffic.clone());
        counted.write_all(b"hello").await.expect("write");
        b.write_all(b"abc").await.expect("write");
        let mut buf = [0u8; 3];
        counted.read_exact(&mut buf).await.expect("read");
        assert_eq!(traffic.totals(), (5, 3));
    }
}
