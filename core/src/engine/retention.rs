//! Retention: how many of its newest revisions an engine keeps, and the purge after local
//! publishes and replicated batches alike.

use super::Engine;
use crate::error::{Error, Result};

/// Purge runs at most once per this many revisions, so it stays off the hot path.
const PURGE_EVERY_REVISIONS: u64 = 64;

impl Engine {
    /// How many of the newest revisions this engine keeps when it purges (after its local
    /// publishes and its replicated batches); `None` keeps every one.
    pub fn retain_revisions(&self) -> Option<u64> {
        Some(self.retain.load(std::sync::atomic::Ordering::Relaxed)).filter(|n| *n > 0)
    }

    /// Keeps the newest `keep` revisions from now on (`None`: every one). A smaller number than
    /// before purges at once on an Active (an old revision is history the operator asked to let
    /// go of); a Standby purges when its replicated revisions next reach one of every
    /// [`PURGE_EVERY_REVISIONS`].
    pub fn set_retain_revisions(&self, keep: Option<u64>) -> Result<()> {
        if keep == Some(0) {
            return Err(Error::InvalidArgument("a domain keeps at least one revision".into()));
        }
        let before = self.retain.swap(keep.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
        let fewer = keep.is_some_and(|k| before == 0 || k < before);
        if fewer && self.role().0 == crate::node::Role::Active {
            if let Some(k) = keep {
                self.store().purge(k)?;
            }
        }
        Ok(())
    }

    /// Purges the history beyond what this engine keeps, when the revisions `seqs` just
    /// committed reach one of every [`PURGE_EVERY_REVISIONS`].
    pub(super) fn purge_if_due(&self, seqs: std::ops::RangeInclusive<u64>) {
        let Some(keep) = self.retain_revisions() else { return };
        let (from, to) = (*seqs.start(), *seqs.end());
        if to / PURGE_EVERY_REVISIONS == from.saturating_sub(1) / PURGE_EVERY_REVISIONS {
            return;
        }
        if let Err(e) = self.store().purge(keep) {
            tracing::warn!(error = %e, "purge of old revisions failed; will retry");
        }
    }
}
