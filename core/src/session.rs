//! Admin sessions: staged puts and deletes that publish as one revision or are discarded, with
//! per-object locks so that two sessions cannot edit the same object at once.

use std::collections::HashMap;

use crate::changeset::ChangeInput;
use crate::error::{Error, Result};
use crate::limits::{SESSIONS_MAX, SESSION_BYTES_MAX, SESSION_CHANGES_MAX};

/// One open session.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: u64,
    pub author: String,
    pub changes: Vec<ChangeInput>,
    /// What the staged objects weigh, against [`SESSION_BYTES_MAX`].
    pub bytes: usize,
    locks: Vec<String>,
}

/// All open sessions of a node and the locks they hold.
#[derive(Debug, Default)]
pub struct Sessions {
    next_id: u64,
    open: HashMap<u64, Session>,
    /// lock key → session id.
    locks: HashMap<String, u64>,
}

impl Sessions {
    pub fn open(&mut self, author: &str) -> Result<u64> {
        if self.open.len() >= SESSIONS_MAX {
            return Err(Error::TooManySessions(SESSIONS_MAX));
        }
        self.next_id += 1;
        let id = self.next_id;
        self.open.insert(id, Session { id, author: author.into(), changes: Vec::new(), bytes: 0, locks: Vec::new() });
        Ok(id)
    }

    pub fn get(&self, id: u64) -> Result<&Session> {
        self.open.get(&id).ok_or(Error::NoSession(id))
    }

    /// Stages a change weighing `bytes` (its object's encoding; 0 for a delete), taking the locks
    /// named by `lock_keys` (the object's name key and, when it exists, its uid). Fails without
    /// staging if the session would pass its limits or another session holds one of the locks.
    pub fn stage(&mut self, id: u64, change: ChangeInput, lock_keys: Vec<String>, bytes: usize) -> Result<()> {
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
        session.changes.push(change);
        session.bytes = total;
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

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(name: &str) -> ChangeInput {
        ChangeInput::Put { type_name: "host".into(), name: name.into(), uid: None, fields: Default::default() }
    }

    #[test]
    fn second_session_cannot_edit_a_locked_object() {
        let mut s = Sessions::default();
        let a = s.open("alice").expect("open");
        let b = s.open("bob").expect("open");
        s.stage(a, put("web1"), vec!["host\0web1".into()], 10).expect("alice stages");
        let e = s.stage(b, put("web1"), vec!["host\0web1".into()], 10).expect_err("bob is locked out");
        assert!(e.to_string().contains("alice"), "{e}");
        s.close(a).expect("close");
        s.stage(b, put("web1"), vec!["host\0web1".into()], 10).expect("bob may edit after alice closed");
    }

    #[test]
    fn a_session_over_its_change_limit_is_too_large_and_keeps_what_it_staged() {
        let mut s = Sessions::default();
        let id = s.open("alice").expect("open");
        for i in 0..SESSION_CHANGES_MAX {
            s.stage(id, put("web1"), vec![format!("host\0web{i}")], 0).expect("within the limit");
        }
        let e = s.stage(id, put("one-more"), vec!["host\0one-more".into()], 0).expect_err("over");
        assert_eq!(e.code(), crate::ErrorCode::TooLarge, "{e}");
        assert_eq!(s.get(id).expect("open").changes.len(), SESSION_CHANGES_MAX);
        assert!(!s.locks.contains_key("host\0one-more"), "a refused change takes no lock");
    }

    #[test]
    fn a_session_over_its_byte_limit_is_too_large_and_keeps_what_it_staged() {
        let mut s = Sessions::default();
        let id = s.open("alice").expect("open");
        s.stage(id, put("a"), vec!["host\0a".into()], SESSION_BYTES_MAX - 10).expect("under the limit");
        s.stage(id, put("b"), vec!["host\0b".into()], 10).expect("exactly the limit");
        let e = s.stage(id, put("c"), vec!["host\0c".into()], 1).expect_err("one byte over");
        assert_eq!(e.code(), crate::ErrorCode::TooLarge, "{e}");
        assert!(e.to_string().contains("host 'c'"), "{e}");
        let session = s.get(id).expect("open");
        assert_eq!((session.changes.len(), session.bytes), (2, SESSION_BYTES_MAX));
        s.close(id).expect("close");
        let other = s.open("bob").expect("open");
        s.stage(other, put("c"), vec!["host\0c".into()], 1).expect("a new session starts from nothing");
    }
}
