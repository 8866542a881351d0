//! Plumbing shared by both ends of a member connection: a reader task (so that waiting for a
//! frame can be raced against other work without losing half a frame), and per-peer command
//! channels through which the rest of the runtime asks a connection task to send something.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::wire::{read_msg, Msg, WireError};
use crate::error::Result;
use crate::model::Uid;
use crate::revision::Head;

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
    /// (To a Standby's task following the Active.) Forward a changeover request.
    Forward { target: String, reply: oneshot::Sender<Result<u64>> },
    /// Send this message as is.
    Send(Msg),
}

/// Command channels of the live connection tasks, by peer node id.
#[derive(Default)]
pub(crate) struct Registry {
    peers: Mutex<HashMap<Uid, mpsc::Sender<PeerCmd>>>,
}

impl Registry {
    /// Registers the task talking to `peer`; the returned receiver is its command inbox.
    pub fn register(&self, peer: Uid) -> mpsc::Receiver<PeerCmd> {
        let (tx, rx) = mpsc::channel(COMMANDS_MAX);
        self.lock().insert(peer, tx);
        rx
    }

    pub fn unregister(&self, peer: Uid) {
        self.lock().remove(&peer);
    }

    pub fn get(&self, peer: Uid) -> Option<mpsc::Sender<PeerCmd>> {
        self.lock().get(&peer).filter(|tx| !tx.is_closed()).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uid, mpsc::Sender<PeerCmd>>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
