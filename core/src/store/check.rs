//! A full integrity check of a store: every object canonically encoded and indexed, the state
//! hash recomputed from scratch, and the retained revisions forming an unbroken hash chain that
//! ends at the head. Used after crashes, by tests, and by `mgha status --check`.

use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use super::tables::*;
use super::{decode, Store};
use crate::error::{Error, Result};
use crate::model::{Hash, Object, StateHash, Uid};
use crate::revision::{Head, Revision};

/// What a successful check covered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub head: Head,
    pub objects: u64,
    pub revisions: u64,
}

impl Store {
    /// Verifies the whole store; the first inconsistency is an [`Error::Corrupt`] naming it.
    pub fn check(&self) -> Result<CheckReport> {
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
            let uid = Uid::from_slice(k.value())?;
            let bytes = v.value();
            let o = Object::decode(bytes)?;
            if o.uid != uid || o.encode() != bytes {
                return Err(Error::Corrupt(format!("object {uid} is stored under the wrong key or not canonically")));
            }
            match names.get(name_key(&o.type_name, &o.name).as_str())? {
                Some(u) if Uid::from_slice(u.value())? == uid => {}
                _ => {
                    return Err(Error::Corrupt(format!("{} '{}' is missing from the name index", o.type_name, o.name)))
                }
            }
            state.add(Hash::of(bytes));
            count += 1;
        }
        if names.len()? != count {
            return Err(Error::Corrupt(format!("the name index holds {} entries for {count} objects", names.len()?)));
        }
        if state.to_hash() != head.state_hash {
            return Err(Error::Corrupt(format!(
                "recomputed state hash {} differs from the head's {}",
                state.to_hash().short(),
                head.state_hash.short()
            )));
        }

        let revisions = txn.open_table(REVISIONS)?;
        let mut prev = floor;
        let mut n = 0u64;
        for entry in revisions.iter()? {
            let (k, v) = entry?;
            let rev = Revision::decode(v.value())?;
            if rev.seq != k.value() || rev.seq != prev.seq + 1 || rev.parent != prev.id {
                return Err(Error::Corrupt(format!("revision {} does not follow revision {}", k.value(), prev.seq)));
            }
            rev.verify_id()?;
            prev = rev.head();
            n += 1;
        }
        if prev != head {
            return Err(Error::Corrupt(format!("the revision log ends at {}, the head is {}", prev.seq, head.seq)));
        }
        Ok(CheckReport { head, objects: count, revisions: n })
    }
}
