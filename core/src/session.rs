//! Admin sessions: staged puts and deletes that publish as one revision or are discarded, with
//! per-object locks so that two sessions cannot edit the same object at once. A session idle
//! for longer than its node's `session_idle_timeout_ms` expires and releases its locks, so an
//! abandoned session neither blocks an object nor a place in the table for ever.

use std::collections::HashMap;

use crate::changeset::ChangeInput;
use crate::error::{Error, Result};
use crate::limits::{SESSIONS_MAX, SESSION_BYTES_MAX, SESSION_CHANGES_MAX};
use crate::model::Hash;

/// Default idle time after which a session expires: an hour, as management consoles do.
pub const SESSION_IDLE_TIMEOUT_MS_DEFAULT: u64 = 3_600_000;

/// What a staged object was when a session first staged it: its lock key, and its hash then
/// (`None`: it did not exist).
pub type Seen = (String, Option<Hash>);

/// One open session.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: u64,
    pub author: String,
    pub changes: Vec<ChangeInput>,
    /// What the staged objects weigh, against [`SESSION_BYTES_MAX`].
    pub bytes: usize,
    /// What each staged object was when the session first staged it: its lock key (`uid:U` for
    /// an object that existed, with its hash; its name key for one that did not, with `None`).
    /// A publish refuses if any of them changed meanwhile.
    pub seen: HashMap<String, Option<Hash>>,
    locks: Vec<String>,
    /// When the session was last used (`crate::mono_ms`).
    last_used_ms: u64,
}

/// All open sessions of a node and the locks they hold.
#[derive(Debug)]
pub struct Sessions {
    next_id: u64,
    open: HashMap<u64, Session>,
    /// lock key → session id.
    locks: HashMap<String, u64>,
    idle_timeout_ms: u64,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(SESSION_IDLE_TIMEOUT_MS_DEFAULT)
    }
}

impl Sessions {
    /// An empty table whose sessions expire after `idle_timeout_ms` without use.
    pub fn new(idle_timeout_ms: u64) -> Sessions {
        Sessions { next_id: 0, open: HashMap::new(), locks: HashMap::new(), idle_timeout_ms }
    }

    /// Closes every session unused for the idle timeout, releasing its locks. Called before
    /// every operation, so an expired session is never seen, whoever asks.
    fn expire_idle(&mut self) {
        let now = crate::mono_ms();
        let timeout = self.idle_timeout_ms;
        let idle: Vec<u64> =
            self.open.values().filter(|s| now.saturating_sub(s.last_used_ms) >= timeout).map(|s| s.id).collect();
        for id in idle {
            if let Ok(s) = self.close(id) {
                tracing::info!(session = id, author = %s.author, changes = s.changes.len(), "idle session expired");
            }
        }
    }

    pub fn open(&mut self, author: &str) -> Result<u64> {
        self.expire_idle();
        if self.open.len() >= SESSIONS_MAX {
            return Err(Error::TooManySessions(SESSIONS_MAX));
        }
        self.next_id += 1;
        let id = self.next_id;
        let session = Session {
            id,
            author: author.into(),
            changes: Vec::new(),
            bytes: 0,
            seen: HashMap::new(),
            locks: Vec::new(),
            last_used_ms: crate::mono_ms(),
        };
        self.open.insert(id, session);
        Ok(id)
    }

    /// An open session, which counts as a use of it.
    pub fn get(&mut self, id: u64) -> Result<&Session> {
        self.expire_idle();
        let session = self.open.get_mut(&id).ok_or(Error::NoSession(id))?;
        session.last_used_ms = crate::mono_ms();
        Ok(session)
    }

    /// The session other than `except` that holds the lock `key`, with its author.
    pub fn holder(&mut self, key: &str, except: Option<u64>) -> Option<(u64, String)> {
        self.expire_idle();
        let id = *self.locks.get(key)?;
        if Some(id) == except {
            return None;
        }
        Some((id, self.open.get(&id).map(|s| s.author.clone()).unwrap_or_default()))
    }

    /// Whether any session other than `except` holds a lock, so that publishes skip the lock
    /// lookups while no session is staging.
    pub fn has_locks(&mut self, except: Option<u64>) -> bool {
        self.expire_idle();
        self.locks.values().any(|&holder| Some(holder) != except)
    }

    /// Stages a change weighing `bytes` (its object's encoding; 0 for a delete), taking the locks
    /// named by `lock_keys` (the object's name key and, when it exists, its uid) and recording
    /// `seen` (the object's lock key and its hash now) unless an earlier change of this session
    /// recorded it. Fails without staging if the session would pass its limits or another
    /// session holds one of the locks.
    pub fn stage(
        &mut self,
        id: u64,
        change: ChangeInput,
        lock_keys: Vec<String>,
        seen: Seen,
        bytes: usize,
    ) -> Result<()> {
        self.expire_idle();
        let session = self.open.get(&id).ok_or(Error::NoSession(id))?;
        if session.changes.len() >= SESSION_CHANGES_MAX {
            return Err(Error::TooMany {
                what: format!("changes staged in session {id}"),
                count: session.changes.len() + 1,
                max: SESSION_CHANGES_MAX,
            });
        }
        let total = session.bytes.saturating_add(bytes);
        if total > SESSION_BYTES_MAX {
            return Err(Error::TooLarge {
                what: format!("session {id} holding {}", change.label()),
                size: total,
                max: SESSION_BYTES_MAX,
            });
        }
        for key in &lock_keys {
            if let Some(&holder) = self.locks.get(key) {
                if holder != id {
                    let owner = self.open.get(&holder).map(|s| s.author.clone()).unwrap_or_default();
                    return Err(Error::Locked { object: change.label(), session: holder, owner });
                }
            }
        }
        let session = self.open.get_mut(&id).ok_or(Error::NoSession(id))?;
        for key in lock_keys {
            if self.locks.insert(key.clone(), id).is_none() {
                session.locks.push(key);
            }
        }
        session.seen.entry(seen.0).or_insert(seen.1);
        session.changes.push(change);
        session.bytes = total;
        session.last_used_ms = crate::mono_ms();
        Ok(())
    }

    /// Closes a session and releases its locks, returning it.
    pub fn close(&mut self, id: u64) -> Result<Session> {
        let session = self.open.remove(&id).ok_or(Error::NoSession(id))?;
        for key in &session.locks {
            self.locks.remove(key);
        }
        Ok(session)
    }

    /// How many sessions are open (expired ones are closed first).
    pub fn len(&mut self) -> usize {
        self.expire_idle();
        self.open.len()
    }

    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(key: String) -> (String, Option<Hash>) {
        (key, None)
    }

    fn put(name: &str) -> ChangeInput {
        ChangeInput::Put { type_name: "host".into(), name: name.into(), uid: None, fields: Default::default() }
    }

    #[test]
    fn second_session_cannot_edit_a_locked_object() {
        let mut s = Sessions::default();
        let a = s.open("alice").expect("open");
        let b = s.open("bob").expect("open");
        s.stage(a, put("web1"), vec!["host\0web1".into()], seen("host\0web1".into()), 10).expect("alice stages");
        let e = s
            .stage(b, put("web1"), vec!["host\0web1".into()], seen("host\0web1".into()), 10)
            .expect_err("bob is locked out");
        assert!(e.to_string().contains("alice"), "{e}");
        s.close(a).expect("close");
        s.stage(b, put("web1"), vec!["host\0web1".into()], seen("host\0web1".into()), 10)
            .expect("bob may edit after alice closed");
    }

    #[test]
    fn a_session_over_its_change_limit_is_too_large_and_keeps_what_it_staged() {
        let mut s = Sessions::default();
        let id = s.open("alice").expect("open");
        for i in 0..SESSION_CHANGES_MAX {
            s.stage(id, put("web1"), vec![format!("host\0web{i}")], seen(format!("host\0web{i}")), 0)
                .expect("within the limit");
        }
        let e = s
            .stage(id, put("one-more"), vec!["host\0one-more".into()], seen("host\0one-more".into()), 0)
            .expect_err("over");
        assert_eq!(e.code(), crate::ErrorCode::TooLarge, "{e}");
        assert_eq!(s.get(id).expect("open").changes.len(), SESSION_CHANGES_MAX);
        assert!(!s.locks.contains_key("host\0one-more"), "a refused change takes no lock");
    }

    #[test]
    fn a_session_over_its_byte_limit_is_too_large_and_keeps_what_it_staged() {
        let mut s = Sessions::default();
        let id = s.open("alice").expect("open");
        s.stage(id, put("a"), vec!["host\0a".into()], seen("host\0a".into()), SESSION_BYTES_MAX - 10)
            .expect("under the limit");
        s.stage(id, put("b"), vec!["host\0b".into()], seen("host\0b".into()), 10).expect("exactly the limit");
        let e = s.stage(id, put("c"), vec!["host\0c".into()], seen("host\0c".into()), 1).expect_err("one byte over");
        assert_eq!(e.code(), crate::ErrorCode::TooLarge, "{e}");
        assert!(e.to_string().contains("host 'c'"), "{e}");
        let session = s.get(id).expect("open");
        assert_eq!((session.changes.len(), session.bytes), (2, SESSION_BYTES_MAX));
        s.close(id).expect("close");
        let other = s.open("bob").expect("open");
        s.stage(other, put("c"), vec!["host\0c".into()], seen("host\0c".into()), 1)
            .expect("a new session starts from nothing");
    }

    #[test]
    fn an_idle_session_expires_and_releases_its_locks_and_its_place() {
        let mut s = Sessions::new(50);
        for i in 0..SESSIONS_MAX {
            let id = s.open("abandoned").expect("open");
            if i == 0 {
                s.stage(id, put("web1"), vec!["host\0web1".into()], seen("host\0web1".into()), 1).expect("stage");
            }
        }
        assert_eq!(s.open("bob").expect_err("full").code(), crate::ErrorCode::Busy);
        std::thread::sleep(std::time::Duration::from_millis(120));
        let bob = s.open("bob").expect("the abandoned sessions expired");
        assert_eq!(s.len(), 1);
        assert_eq!(s.holder("host\0web1", None), None, "the expired session's lock is gone");
        s.stage(bob, put("web1"), vec!["host\0web1".into()], seen("host\0web1".into()), 1).expect("bob edits");
        assert_eq!(s.get(1).expect_err("expired").code(), crate::ErrorCode::NotFound);
    }

    #[test]
    fn a_session_in_use_does_not_expire() {
        let mut s = Sessions::new(300);
        let id = s.open("alice").expect("open");
        for _ in 0..6 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            s.get(id).expect("each use keeps it open");
        }
        assert_eq!(s.holder("host\0x", None), None);
    }
}
