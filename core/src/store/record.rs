//! Sealed records: every value of the objects, revisions and undo tables is its payload followed
//! by the payload's blake3 (32 bytes), and is verified against it each time it is read, so a
//! damaged record is an [`Error::Corrupt`] naming it, never wrong data. For an object the seal is
//! the object's hash itself, the one the state hash and the before-hashes of revisions use.

use crate::error::{Error, Result};
use crate::model::Hash;

/// Bytes the seal adds to every record.
pub const SEAL_BYTES: usize = 32;

/// `payload` followed by its blake3.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    seal_with(payload, &Hash::of(payload))
}

/// `payload` followed by `hash`, its blake3 that the caller already computed.
pub fn seal_with(payload: &[u8], hash: &Hash) -> Vec<u8> {
    debug_assert_eq!(*hash, Hash::of(payload));
    let mut out = Vec::with_capacity(payload.len() + SEAL_BYTES);
    out.extend_from_slice(payload);
    out.extend_from_slice(&hash.0);
    out
}

/// The payload of a sealed record and its hash, once the hash verified. `what` names the record
/// in the error ("object 1b4e…", "revision 12").
pub fn unseal(record: &[u8], what: impl FnOnce() -> String) -> Result<(&[u8], Hash)> {
    let Some(split) = record.len().checked_sub(SEAL_BYTES) else {
        return Err(damaged(what(), "is shorter than its seal"));
    };
    let (payload, stored) = record.split_at(split);
    let hash = Hash::of(payload);
    if hash.0.as_slice() != stored {
        return Err(damaged(what(), "fails its checksum"));
    }
    Ok((payload, hash))
}

fn damaged(what: String, how: &str) -> Error {
    Error::Corrupt(format!("{what}: the stored record {how} (the store is damaged; see `mgha check`)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_record_reads_back_and_any_flipped_bit_is_caught() {
        let record = seal(b"payload bytes");
        let (payload, hash) = unseal(&record, || "object x".into()).expect("intact");
        assert_eq!(payload, b"payload bytes");
        assert_eq!(hash, Hash::of(b"payload bytes"));
        for i in 0..record.len() * 8 {
            let mut bad = record.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let err = unseal(&bad, || "object x".into()).expect_err("a flipped bit is caught");
            assert!(matches!(err, Error::Corrupt(ref m) if m.contains("object x")), "{err}");
        }
        assert!(unseal(&record[..SEAL_BYTES - 1], || "r".into()).is_err(), "too short");
    }
}
