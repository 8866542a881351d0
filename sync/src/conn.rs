//! Plumbing shared by both ends of a member connection: a reader task (so that waiting for a
//! frame can be raced against other work without losing half a frame), and per-peer command
//! channels through which the rest of the runtime asks a connection task to send something.
//! Streams are wrapped in [`Counted`] so each peer's replication traffic can be measured.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::wire::{read_msg, Msg, WireError};
use mgha_core::error::Result;
use mgha_core::model::Uid;
use mgha_core::revision::Head;

/// Frames read from a peer, in order; an error (or end of stream) is the last item.
pub(crate) type Inbox = mpsc::Receiver<std::result::Result<Msg, WireError>>;

/// Frames buffered between the reader task and the connection task.
const INBOX_FRAMES_MAX: usize = 64;
/// Commands buffered for one connection task.
const COMMANDS_MAX: usize = 16;

/// Reads frames from `rd` until it ends or fails.
pub(crate) fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(mut rd: R) -> (JoinHandle<()>, Inbox) {
    let (tx, rx) = mpsc::channel(INBOX_FRAMES_MAX);
    let task = tokio::spawn(async move {
        loop {
            let item = match read_msg(&mut rd).await {
                Ok(Some(m)) => Ok(m),
                Ok(None) => Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into())),
                Err(e) => Err(e),
            };
            let last = item.is_err();
            if tx.send(item).await.is_err() || last {
                return;
            }
        }
    });
    (task, rx)
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
