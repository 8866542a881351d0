//! Admin sessions: staged puts and deletes that publish as one revision or are discarded, with
//! per-object locks so that two sessions cannot edit the same object at once.

use std::collections::HashMap;

use crate::changeset::ChangeInput;
use crate::error::{Error, Result};
use crate::limits::{SESSIONS_MAX, SESSION_CHANGES_MAX};

/// One open session.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: u64,
    pub author: String,
    pub changes: Vec<ChangeInput>,
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
        self.open.insert(id, Session { id, author: author.into(), changes: Vec::new(), locks: Vec::new() });
        Ok(id)
    }

    pub fn get(&self, id: u64) -> Result<&Session> {
        self.open.get(&id).ok_or(Error::NoSession(id))
    }

    /// Stages a change, taking the locks named by `lock_keys` (the object's name key and, when it
    /// exists, its uid). Fails without staging if another session holds one of them.
    pub fn stage(&mut self, id: u64, change: ChangeInput, lock_keys: Vec<String>) -> Result<()> {
        let session = self.open.get(&id).ok_or(Error::NoSession(id))?;
        if session.changes.len() >= SESSION_CHANGES_MAX {
            return Err(Error::InvalidArgument(format!("session {id} already holds {SESSION_CHANGES_MAX} changes")));
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
        s.stage(a, put("web1"), vec!["host\0web1".into()]).expect("alice stages");
        let e = s.stage(b, put("web1"), vec!["host\0web1".into()]).expect_err("bob is locked out");
        assert!(e.to_string().contains("alice"), "{e}");
        s.close(a).expect("close");
        s.stage(b, put("web1"), vec!["host\0web1".into()]).expect("bob may edit after alice closed");
    }
}
