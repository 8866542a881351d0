//! The engine's view of its store's health: damage found by a check, the scrub or a read, the
//! archive a damaged store was set aside to, and write faults with the store's reopen after them.

use std::path::PathBuf;

use super::Engine;
use crate::error::{Error, Result};
use crate::node::Role;
use crate::status::StoreFault;

impl Engine {
    /// Records what a full check or the scrub found: damage (an error with code `corrupt`) is
    /// logged and shown by status and metrics until a later check or scrub pass finds none
    /// (`None`). Other errors (a busy disk, say) say nothing about the store and change nothing.
    pub fn record_damage(&self, found: Option<&Error>) {
        let mut damage = self.damage.lock().unwrap_or_else(|p| p.into_inner());
        match found {
            // A revision that does not fit our history is the Active's to resolve, not damage.
            Some(e) if e.code() == crate::error::ErrorCode::Corrupt && !matches!(e, Error::Diverged(_)) => {
                tracing::error!(error = %e, "the store is damaged");
                if self.role().0 == Role::Active {
                    // A Standby heals by itself; an Active needs the administrator's hand.
                    tracing::error!(
                        "this active's store is damaged: hand the role to a healthy standby \
                         (`mgha changeover --to NAME`); this node then heals by a full sync from it"
                    );
                }
                *damage = Some(e.to_string());
            }
            Some(_) => {}
            None => *damage = None,
        }
    }

    /// Names the archive where a damaged store was set aside before a full sync replaced it,
    /// for status.
    pub fn set_archived(&self, path: PathBuf) {
        *self.archived.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
    }

    /// Where the last damaged store was set aside, if one was since this node started.
    pub fn archived(&self) -> Option<PathBuf> {
        self.archived.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The damage the last full check or scrub found, until one passes.
    ///
    /// The storage engine failing inside an operation on a damaged page counts too, and stays
    /// until the store is replaced (the store takes no writes meanwhile).
    pub fn damage(&self) -> Option<String> {
        let found = self.damage.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let store = self.store();
        found.or_else(|| store.broken()).or_else(|| store.quarantined())
    }

    /// A full check of the store ([`Store::check`]), its outcome recorded for status and metrics.
    pub fn check(&self) -> Result<crate::store::CheckReport> {
        let report = self.store().check();
        self.record_damage(report.as_ref().err());
        report
    }

    /// Why the store cannot write, from a failed commit until a commit (or a write probe)
    /// succeeds again. The store reopens itself after such a failure ([`Store::fault`]).
    pub fn store_fault(&self) -> Option<StoreFault> {
        self.store().fault()
    }

    /// While the store has a fault, tries whether it can write again ([`Store::probe_write`]);
    /// returns the fault that remains, if any.
    pub fn probe_write(&self) -> Option<StoreFault> {
        let store = self.store();
        if let Err(e) = store.probe_write() {
            tracing::debug!(error = %e, "the store still cannot write");
        }
        store.fault()
    }

    /// After a commit failed to write: the store reopened itself, and a commit whose final
    /// flush failed may still have landed, so whatever replicates this engine learns the head
    /// the file holds.
    pub(super) fn after_failed_commit(&self, e: &Error) {
        if crate::store::write_fault_kind(e).is_none() {
            return;
        }
        match self.store().head() {
            Ok(head) => self.replication.committed(None, head),
            Err(e) => tracing::warn!(error = %e, "cannot read the head after a failed write"),
        }
    }
}
