//! Integrity checks of a store. The full check: every record verified against its seal, every
//! object canonically encoded and indexed, the state hash recomputed from the objects, and the
//! retained revisions forming an unbroken hash chain that ends at the head (`mgha check`, the
//! background scrub, tests after crashes), each with its undo record holding the objects it
//! replaced and its state hash following from the one before it. The quick check, run whenever
//! a node opens its store: the records that everything else starts from (format, node, head,
//! floor, the head's revision) and the counts of the objects and of their name index.

use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use super::history::verify_follows;
use super::tables::*;
use super::{decode, object_from_record, record, revision_from_record, undo_from_record, Store};
use crate::error::{Error, Result};
use crate::model::{Hash, StateHash, Uid};
use crate::revision::Head;

/// What a successful check covered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub head: Head,
    pub objects: u64,
    pub revisions: u64,
}

impl Store {
    /// Verifies what every other read starts from, in time independent of the store's size; the
    /// first fault is an [`Error::Corrupt`] naming it.
    pub fn quick_check(&self) -> Result<Head> {
        self.guard("quick_check", || {
            let txn = self.begin_read()?;
            let meta = txn.open_table(META)?;
            let read_meta = |key: &str| -> Result<Vec<u8>> {
                Ok(meta
                    .get(key)?
                    .ok_or_else(|| Error::Corrupt(format!("meta record '{key}' is missing")))?
                    .value()
                    .to_vec())
            };
            let _: crate::node::NodeState = decode(&read_meta(META_NODE)?, "meta record 'node'")?;
            let head: Head = decode(&read_meta(META_HEAD)?, "meta record 'head'")?;
            let floor: Head = decode(&read_meta(META_FLOOR)?, "meta record 'floor'")?;
            if floor.seq > head.seq {
                return Err(Error::Corrupt(format!("the floor {} is above the head {}", floor.seq, head.seq)));
            }
            if head.seq > floor.seq {
                let revisions = txn.open_table(REVISIONS)?;
                let raw = revisions
                    .get(head.seq)?
                    .ok_or_else(|| Error::Corrupt(format!("revision {} (the head) is missing", head.seq)))?;
                let rev = revision_from_record(head.seq, raw.value())?;
                rev.verify_id()?;
                if rev.head() != head {
                    return Err(Error::Corrupt(format!("revision {} differs from the head record", head.seq)));
                }
            } else if head != floor {
                return Err(Error::Corrupt(format!("the head {} has no revision and is not the floor", head.seq)));
            }
            let (objects, names) = (txn.open_table(OBJECTS)?.len()?, txn.open_table(NAMES)?.len()?);
            if objects != names {
                return Err(Error::Corrupt(format!("the name index holds {names} entries for {objects} objects")));
            }
            Ok(head)
        })
    }

    /// Verifies the whole store; the first inconsistency is an [`Error::Corrupt`] naming it.
    pub fn check(&self) -> Result<CheckReport> {
        self.guard("check", || {
            let txn = self.begin_read()?;
            let meta = txn.open_table(META)?;
            let read_head = |key: &str| -> Result<Head> {
                let raw = meta.get(key)?.ok_or_else(|| Error::Corrupt(format!("meta record '{key}' is missing")))?;
                decode(raw.value(), key)
            };
            let head = read_head(META_HEAD)?;
            let floor = read_head(META_FLOOR)?;

            let objects = txn.open_table(OBJECTS)?;
            let names = txn.open_table(NAMES)?;
            let mut state = StateHash::default();
            let mut count = 0u64;
            for entry in objects.iter()? {
                let (k, v) = entry?;
                state.add(verify_object_entry(&names, k.value(), v.value())?);
                count += 1;
            }
            if names.len()? != count {
                return Err(Error::Corrupt(format!(
                    "the name index holds {} entries for {count} objects",
                    names.len()?
                )));
            }
            if state.to_hash() != head.state_hash {
                return Err(Error::Corrupt(format!(
                    "recomputed state hash {} differs from the head's {}",
                    state.to_hash().short(),
                    head.state_hash.short()
                )));
            }

            let revisions = txn.open_table(REVISIONS)?;
            let undo = txn.open_table(UNDO)?;
            let mut prev = floor;
            let mut n = 0u64;
            for entry in revisions.iter()? {
                let (k, v) = entry?;
                let seq = k.value();
                let rev = revision_from_record(seq, v.value())?;
                let raw = undo
                    .get(seq)?
                    .ok_or_else(|| Error::Corrupt(format!("undo record of revision {seq} is missing")))?;
                verify_follows(&prev, &rev, &undo_from_record(seq, raw.value())?)?;
                prev = rev.head();
                n += 1;
            }
            if prev != head {
                return Err(Error::Corrupt(format!("the revision log ends at {}, the head is {}", prev.seq, head.seq)));
            }
            Ok(CheckReport { head, objects: count, revisions: n })
        })
    }
}

/// Verifies one record of the objects table, as the full check and the scrub both do: its seal,
/// its canonical encoding, and its entry in the name index. Returns the object's hash.
pub(super) fn verify_object_entry(
    names: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &[u8],
    value: &[u8],
) -> Result<Hash> {
    let uid = Uid::from_slice(key)?;
    let (o, hash) = object_from_record(&uid, value)?;
    if o.encode() != record::unseal(value, || format!("object {uid}"))?.0 {
        return Err(Error::Corrupt(format!("object {uid} is not stored canonically")));
    }
    match names.get(name_key(&o.type_name, &o.name).as_str())? {
        Some(u) if Uid::from_slice(u.value())? == uid => Ok(hash),
        _ => Err(Error::Corrupt(format!("{} '{}' ({uid}) is missing from the name index", o.type_name, o.name))),
    }
}
