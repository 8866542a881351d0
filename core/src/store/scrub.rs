//! The background scrub: walks every object, revision and undo record in short batches, each in
//! its own read snapshot, verifying seals, encodings and the name index, so damage is found
//! before anything asks for the damaged record. The caller paces the batches
//! ([`crate::limits::SCRUB_BYTES_PER_SEC_MAX`]); the state hash is recomputed by the full
//! check (`mgha check`), which needs one snapshot of the whole store.

use super::tables::*;
use super::{revision_from_record, undo_from_record, Store};
use crate::error::{Error, Result};

/// Where a scrub pass stands: which table, and the last key verified in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ScrubCursor {
    #[default]
    Start,
    Objects(Vec<u8>),
    Revisions(u64),
    Done,
}

/// What one batch verified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrubBatch {
    pub records: u64,
    pub bytes: u64,
}

impl Store {
    /// Verifies up to `max_records` records after `cursor` and moves it on; `ScrubCursor::Done`
    /// once the pass has covered every table. The first damaged record is an [`Error::Corrupt`]
    /// naming it.
    pub fn scrub_batch(&self, cursor: &mut ScrubCursor, max_records: usize) -> Result<ScrubBatch> {
        self.guard("scrub_batch", || {
            let txn = self.begin_read()?;
            let mut batch = ScrubBatch::default();
            if let ScrubCursor::Start | ScrubCursor::Objects(_) = cursor {
                let objects = txn.open_table(OBJECTS)?;
                let names = txn.open_table(NAMES)?;
                let range = match &*cursor {
                    ScrubCursor::Objects(after) => objects
                        .range::<&[u8]>((std::ops::Bound::Excluded(after.as_slice()), std::ops::Bound::Unbounded))?,
                    _ => objects.range::<&[u8]>(..)?,
                };
                let mut last = None;
                for entry in range.take(max_records) {
                    let (k, v) = entry?;
                    super::check::verify_object_entry(&names, k.value(), v.value())?;
                    batch.records += 1;
                    batch.bytes += v.value().len() as u64;
                    last = Some(k.value().to_vec());
                }
                *cursor = match last {
                    Some(k) if batch.records as usize == max_records => ScrubCursor::Objects(k),
                    _ => ScrubCursor::Revisions(0),
                };
                return Ok(batch);
            }
            if let ScrubCursor::Revisions(after) = *cursor {
                let revisions = txn.open_table(REVISIONS)?;
                let undo = txn.open_table(UNDO)?;
                let mut last = None;
                for entry in revisions.range(after.saturating_add(1)..)?.take(max_records) {
                    let (k, v) = entry?;
                    let seq = k.value();
                    revision_from_record(seq, v.value())?.verify_id()?;
                    let u = undo
                        .get(seq)?
                        .ok_or_else(|| Error::Corrupt(format!("undo record of revision {seq} is missing")))?;
                    undo_from_record(seq, u.value())?;
                    batch.records += 1;
                    batch.bytes += (v.value().len() + u.value().len()) as u64;
                    last = Some(seq);
                }
                *cursor = match last {
                    Some(seq) if batch.records as usize == max_records => ScrubCursor::Revisions(seq),
                    _ => ScrubCursor::Done,
                };
            }
            Ok(batch)
        })
    }

    /// One whole scrub pass without pauses (tests and benchmarks): the records and bytes verified.
    pub fn scrub_all(&self, max_records: usize) -> Result<ScrubBatch> {
        self.guard("scrub_all", || {
            let mut cursor = ScrubCursor::Start;
            let mut total = ScrubBatch::default();
            while cursor != ScrubCursor::Done {
                let b = self.scrub_batch(&mut cursor, max_records)?;
                total.records += b.records;
                total.bytes += b.bytes;
            }
            Ok(total)
        })
    }
}
