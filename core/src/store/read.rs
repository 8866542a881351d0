//! Reads from MVCC snapshots: objects by uid, name or type, and the revision log.

use redb::{ReadTransaction, ReadableTableMetadata};

use super::tables::*;
use super::{decode, get_named, get_object, revision_from_record, undo_from_record, Store};
use crate::error::{Error, Result};
use crate::limits::{LIST_OBJECTS_MAX, LIST_REVISIONS_MAX};
use crate::model::{Object, Uid};
use crate::revision::{Revision, RevisionInfo};

impl Store {
    /// One object of `type_name`, by uid or by name.
    pub fn get(&self, type_name: &str, key: &str) -> Result<Object> {
        self.guard("get", || {
            let txn = self.begin_read()?;
            let objects = txn.open_table(OBJECTS)?;
            let by_uid = match Uid::parse(key) {
                Some(uid) => get_object(&objects, &uid)?.filter(|o| o.type_name == type_name),
                None => None,
            };
            if let Some(o) = by_uid {
                return Ok(o);
            }
            let names = txn.open_table(NAMES)?;
            if let Some(o) = get_named(&names, &objects, type_name, key)? {
                return Ok(o);
            }
            if self.schemas().get(type_name).is_none() {
                return Err(Error::UnknownType(type_name.into()));
            }
            Err(Error::NotFound(format!("{type_name} '{key}'")))
        })
    }

    /// One object by uid, whatever its type.
    pub fn get_by_uid(&self, uid: &Uid) -> Result<Option<Object>> {
        self.guard("get_by_uid", || {
            let txn = self.begin_read()?;
            get_object(&txn.open_table(OBJECTS)?, uid)
        })
    }

    /// The uid of the object of `type_name` named `name`, if there is one.
    pub fn uid_of(&self, type_name: &str, name: &str) -> Result<Option<Uid>> {
        self.guard("uid_of", || {
            let txn = self.begin_read()?;
            Ok(get_named(&txn.open_table(NAMES)?, &txn.open_table(OBJECTS)?, type_name, name)?.map(|o| o.uid))
        })
    }

    /// Up to `max` objects that reference the object `uid` (which need not be in this store: a
    /// global object that this database's objects reference), by type and name.
    pub fn referrers(&self, uid: &Uid, max: usize) -> Result<Vec<String>> {
        self.guard("referrers", || {
            let txn = self.begin_read()?;
            let (refs, objects) = (txn.open_table(REFS)?, txn.open_table(OBJECTS)?);
            let (lo, hi) = ref_range(uid.as_bytes());
            let mut out = Vec::new();
            for entry in refs.range(lo.as_slice()..=hi.as_slice())?.take(max) {
                let (k, _) = entry?;
                let source = Uid::from_slice(&k.value()[16..])?;
                out.push(match get_object(&objects, &source)? {
                    Some(o) => format!("{} '{}'", o.type_name, o.name),
                    None => source.to_string(),
                });
            }
            Ok(out)
        })
    }

    /// Objects of one type in name order, or of every type in (type, name) order; at most
    /// `limit` (capped at [`LIST_OBJECTS_MAX`]), starting after `after` (a name key) if given.
    pub fn list(&self, type_name: Option<&str>, limit: usize) -> Result<Vec<Object>> {
        self.guard("list", || self.list_after(type_name, None, limit))
    }

    /// As [`Store::list`], from just after `after` = (type, name) in (type, name) order: a caller
    /// passes the last object of one page to get the next, and so reads any number of objects
    /// in pages of at most `LIST_OBJECTS_MAX`. `after` need not name an object that exists.
    pub fn list_after(
        &self,
        type_name: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<Object>> {
        self.guard("list_after", || {
            use std::ops::Bound;
            let limit = limit.min(LIST_OBJECTS_MAX);
            let (mut lo, hi) = match type_name {
                Some(t) => {
                    if self.schemas().get(t).is_none() {
                        return Err(Error::UnknownType(t.into()));
                    }
                    let (lo, hi) = type_range(t);
                    (Bound::Included(lo), Bound::Excluded(hi))
                }
                None => (Bound::Unbounded, Bound::Unbounded),
            };
            if let Some((t, n)) = after {
                let key = name_key(t, n);
                let past_start = match &lo {
                    Bound::Included(start) => key >= *start,
                    _ => true,
                };
                if past_start {
                    // A cursor at or past the end of the range: nothing after it (and a reversed
                    // range must never reach the table).
                    if matches!(&hi, Bound::Excluded(end) if key >= *end) {
                        return Ok(Vec::new());
                    }
                    lo = Bound::Excluded(key);
                }
            }
            let txn = self.begin_read()?;
            let names = txn.open_table(NAMES)?;
            let objects = txn.open_table(OBJECTS)?;
            let mut out = Vec::new();
            let range = names.range::<&str>((lo.as_ref().map(String::as_str), hi.as_ref().map(String::as_str)))?;
            for entry in range.take(limit) {
                let (k, v) = entry?;
                let uid = Uid::from_slice(v.value())?;
                match get_object(&objects, &uid)? {
                    // The object must be the one its name key names, or the index is damaged.
                    Some(o) if name_key(&o.type_name, &o.name) == k.value() => out.push(o),
                    Some(o) => {
                        return Err(Error::Corrupt(format!(
                            "name index: {:?} points at {} '{}' ({uid})",
                            k.value(),
                            o.type_name,
                            o.name
                        )))
                    }
                    None => return Err(Error::Corrupt(format!("name index points at missing object {uid}"))),
                }
            }
            Ok(out)
        })
    }

    /// How many objects the store holds.
    pub fn count(&self) -> Result<u64> {
        self.guard("count", || {
            let txn = self.begin_read()?;
            Ok(txn.open_table(OBJECTS)?.len()?)
        })
    }

    /// Revision headers, newest first, at most `limit` (capped), from `before` (exclusive) down.
    pub fn revisions(&self, before: Option<u64>, limit: usize) -> Result<Vec<RevisionInfo>> {
        self.guard("revisions", || {
            let limit = limit.min(LIST_REVISIONS_MAX);
            let txn = self.begin_read()?;
            let table = txn.open_table(REVISIONS)?;
            let upper = before.unwrap_or(u64::MAX);
            let mut out = Vec::new();
            for entry in table.range(..upper)?.rev().take(limit) {
                let (k, v) = entry?;
                out.push(revision_from_record(k.value(), v.value())?.info());
            }
            Ok(out)
        })
    }

    /// One revision with its changes.
    pub fn revision(&self, seq: u64) -> Result<Revision> {
        self.guard("revision", || {
            let txn = self.begin_read()?;
            self.revision_in(&txn, seq)
        })
    }

    pub(crate) fn revision_in(&self, txn: &ReadTransaction, seq: u64) -> Result<Revision> {
        self.guard("revision_in", || {
            let table = txn.open_table(REVISIONS)?;
            match table.get(seq)? {
                Some(v) => revision_from_record(seq, v.value()),
                None => Err(self.missing_revision(txn, seq)?),
            }
        })
    }

    /// The objects as they were before revision `seq`, one per change.
    pub(crate) fn undo_in(&self, txn: &ReadTransaction, seq: u64) -> Result<Vec<Option<Object>>> {
        self.guard("undo_in", || {
            let table = txn.open_table(UNDO)?;
            match table.get(seq)? {
                Some(v) => undo_from_record(seq, v.value()),
                None => Err(self.missing_revision(txn, seq)?),
            }
        })
    }

    /// The error for a revision that is not in the log: purged, or never published.
    pub(crate) fn missing_revision(&self, txn: &ReadTransaction, seq: u64) -> Result<Error> {
        self.guard("missing_revision", || {
            let meta = txn.open_table(META)?;
            let floor: crate::revision::Head = match meta.get(META_FLOOR)? {
                Some(v) => decode(v.value(), "floor")?,
                None => Default::default(),
            };
            Ok(if seq <= floor.seq && seq > 0 {
                Error::RevisionPurged { seq, oldest: floor.seq + 1 }
            } else {
                Error::UnknownRevision(seq)
            })
        })
    }
}
