//! Revisions: the unit of history and of replication.
//!
//! A revision's `id` is blake3 over its parent id, its epoch and the canonical encoding of its
//! changes, so ids form a hash chain: two nodes agree on history up to `seq` exactly when their
//! ids at `seq` are equal.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Hash, Object, Uid};

/// What a change did to its object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Put,
    Delete,
}

/// One object's change within a revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    #[serde(rename = "type")]
    pub type_name: String,
    pub uid: Uid,
    pub op: Op,
    /// Hash of the object before the change; `None` when it did not exist.
    pub before: Option<Hash>,
    /// The object after the change; `None` for a delete.
    pub after: Option<Object>,
}

/// A published revision with its changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub seq: u64,
    pub id: Hash,
    pub parent: Hash,
    pub epoch: u64,
    pub author: String,
    pub time_ms: u64,
    pub message: String,
    /// The state hash after this revision.
    pub state_hash: Hash,
    pub changes: Vec<Change>,
}

/// A revision without its changes, for listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionInfo {
    pub seq: u64,
    pub id: Hash,
    pub parent: Hash,
    pub epoch: u64,
    pub author: String,
    pub time_ms: u64,
    pub message: String,
    pub state_hash: Hash,
    pub changes: usize,
}

/// Where a history stands: a revision number, its id and the state hash after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub id: Hash,
    pub state_hash: Hash,
}

impl Revision {
    /// The id this revision must have, from its parent, epoch and changes.
    pub fn compute_id(parent: &Hash, epoch: u64, changes: &[Change]) -> Hash {
        Revision::hash_changes(parent, epoch, changes, None)
    }

    /// The id from its parts; with `afters`, also the hash of each change's object after it
    /// (`None` for a delete), taken from the canonical encoding the id covers.
    fn hash_changes(parent: &Hash, epoch: u64, changes: &[Change], mut afters: Option<&mut Vec<Option<Hash>>>) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(&parent.0);
        h.update(&epoch.to_le_bytes());
        let mut buf = Vec::with_capacity(256);
        let _ = rmp::encode::write_array_len(&mut buf, changes.len() as u32);
        for c in changes {
            let after = c.encode_canonical(&mut buf);
            if let Some(afters) = afters.as_deref_mut() {
                afters.push(after.map(|range| Hash::of(&buf[range])));
            }
            h.update(&buf);
            buf.clear();
        }
        h.update(&buf);
        Hash(*h.finalize().as_bytes())
    }

    /// Checks that `id` matches the content.
    pub fn verify_id(&self) -> Result<()> {
        self.check_id(Revision::compute_id(&self.parent, self.epoch, &self.changes))
    }

    /// As [`Revision::verify_id`], and gives the hash of each change's object after it (`None`
    /// for a delete) from the same encoding: a receiver that needs both (the state hash of a
    /// history it is given) encodes each object once.
    pub fn verify_id_and_after_hashes(&self) -> Result<Vec<Option<Hash>>> {
        let mut afters = Vec::with_capacity(self.changes.len());
        self.check_id(Revision::hash_changes(&self.parent, self.epoch, &self.changes, Some(&mut afters)))?;
        Ok(afters)
    }

    fn check_id(&self, want: Hash) -> Result<()> {
        if want != self.id {
            return Err(Error::Corrupt(format!(
                "revision {} has id {} but its content hashes to {}",
                self.seq,
                self.id.short(),
                want.short()
            )));
        }
        Ok(())
    }

    pub fn info(&self) -> RevisionInfo {
        RevisionInfo {
            seq: self.seq,
            id: self.id,
            parent: self.parent,
            epoch: self.epoch,
            author: self.author.clone(),
            time_ms: self.time_ms,
            message: self.message.clone(),
            state_hash: self.state_hash,
            changes: self.changes.len(),
        }
    }

    pub fn head(&self) -> Head {
        Head { seq: self.seq, id: self.id, state_hash: self.state_hash }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serialization of plain data into a Vec cannot fail.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Revision> {
        rmp_serde::from_slice(bytes).map_err(|e| Error::Corrupt(format!("revision encoding: {e}")))
    }
}

impl Change {
    /// Canonical encoding: a map with keys in bytewise order. Returns where the object after
    /// the change lies in `buf` (its canonical encoding), if there is one.
    fn encode_canonical(&self, buf: &mut Vec<u8>) -> Option<std::ops::Range<usize>> {
        let _ = rmp::encode::write_map_len(buf, 5);
        let _ = rmp::encode::write_str(buf, "after");
        let after = match &self.after {
            Some(o) => {
                let start = buf.len();
                o.encode_into(buf);
                Some(start..buf.len())
            }
            None => {
                buf.push(0xc0);
                None
            }
        };
        let _ = rmp::encode::write_str(buf, "before");
        match &self.before {
            Some(h) => {
                let _ = rmp::encode::write_bin(buf, &h.0);
            }
            None => buf.push(0xc0),
        }
        let _ = rmp::encode::write_str(buf, "op");
        let _ = rmp::encode::write_str(
            buf,
            match self.op {
                Op::Put => "put",
                Op::Delete => "delete",
            },
        );
        let _ = rmp::encode::write_str(buf, "type");
        let _ = rmp::encode::write_str(buf, &self.type_name);
        let _ = rmp::encode::write_str(buf, "uid");
        let _ = rmp::encode::write_bin(buf, self.uid.as_bytes());
        after
    }
}
