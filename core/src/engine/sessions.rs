//! Admin sessions on the engine: open, stage (locking the objects against other sessions),
//! publish as one revision, discard.

use super::Engine;
use crate::changeset::{ChangeInput, ChangeSet};
use crate::error::{Error, Result};
use crate::limits::{AUTHOR_BYTES_MAX, OBJECT_BYTES_MAX};
use crate::model::validate::validate_text;
use crate::model::Object;
use crate::node::Role;
use crate::revision::Revision;
use crate::roles::Refusal;
use crate::session::Sessions;

impl Engine {
    pub(super) fn lock_sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // A panic while holding the lock leaves the table consistent (every method updates it
        // after its checks), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens an admin session for `author`. A Standby refuses at once (`ReadOnly`, naming the
    /// Active when known): its sessions could never publish. An Active that cannot publish for
    /// the moment (its lease lapsed, a changeover running) still opens one; its publish waits
    /// for the role check.
    pub fn session_open(&self, author: &str) -> Result<u64> {
        if author.len() > AUTHOR_BYTES_MAX {
            return Err(Error::TooLarge { what: "author".into(), size: author.len(), max: AUTHOR_BYTES_MAX });
        }
        validate_text("author", author)?;
        self.refuse_on_standby()?;
        self.lock_sessions().open(author)
    }

    /// `ReadOnly` on a Standby, for the writes that would otherwise only fail at their publish.
    pub(crate) fn refuse_on_standby(&self) -> Result<()> {
        match self.role().0 {
            Role::Standby => Err(self.refusal_error(Refusal::Standby)),
            Role::Active => Ok(()),
        }
    }

    /// Stages a put or delete in a session, locking the object against other sessions. A put
    /// whose object (as written) is over [`OBJECT_BYTES_MAX`], or that would take the session
    /// past [`SESSION_CHANGES_MAX`](crate::limits::SESSION_CHANGES_MAX) changes or
    /// [`SESSION_BYTES_MAX`](crate::limits::SESSION_BYTES_MAX) of staged objects, is refused
    /// here (`TooLarge`), not at publish; what the session holds stays staged.
    pub fn session_stage(&self, id: u64, change: ChangeInput) -> Result<()> {
        super::refuse_managed(std::slice::from_ref(&change))?;
        let type_name = change.type_name().to_string();
        let store = self.store();
        if store.schemas().get(&type_name).is_none() {
            return Err(Error::UnknownType(type_name));
        }
        let bytes = match &change {
            ChangeInput::Put { type_name, name, fields, .. } => Object::encoded_len(type_name, name, fields),
            ChangeInput::Delete { .. } => 0,
        };
        if bytes > OBJECT_BYTES_MAX {
            return Err(Error::TooLarge { what: change.label(), size: bytes, max: OBJECT_BYTES_MAX });
        }
        let (keys, seen) = self.change_locks(&store, &change)?;
        self.lock_sessions().stage(id, change, keys, seen, bytes)
    }

    /// The changes staged in a session.
    pub fn session_changes(&self, id: u64) -> Result<Vec<ChangeInput>> {
        Ok(self.lock_sessions().get(id)?.changes.clone())
    }

    /// Publishes a session's changes as one revision and closes it. On a validation error the
    /// session stays open so the admin can fix it; if an object it staged changed since it was
    /// staged (`Stale`), it stays open to be discarded.
    pub fn session_publish(&self, id: u64, message: &str) -> Result<Revision> {
        let (author, changes) = {
            let mut sessions = self.lock_sessions();
            let s = sessions.get(id)?;
            (s.author.clone(), s.changes.clone())
        };
        let rev = std::sync::Arc::unwrap_or_clone(self.publish_changes(
            &author,
            ChangeSet { message: message.into(), changes },
            Some(id),
        )?);
        self.lock_sessions().close(id)?;
        Ok(rev)
    }

    /// Drops a session's changes and releases its locks.
    pub fn session_discard(&self, id: u64) -> Result<()> {
        self.lock_sessions().close(id).map(|_| ())
    }
}
