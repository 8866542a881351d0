//! Sealed records: every value of the objects, revisions and undo tables is its payload followed
//! by the payload's blake3 (32 bytes), and is verified against it each time it is read, so a
//! damaged record is an [`Error::Corrupt`] naming it, never wrong data. For an object the seal is
//! the object's hash itself, the one the state hash and the before-hashes of revisions use.
//!
//! History records (revisions and undo records) hold every object a revision wrote or replaced,
//! so they are stored deflated when that makes them smaller ([`seal_history`]): a tag byte that
//! no MessagePack value starts with, the codec, the payload's length, the deflate stream, then
//! the seal of all of it. The seal is checked before anything is inflated, and inflating stops
//! at the length the record declares (at most [`HISTORY_PAYLOAD_BYTES_MAX`]). A record without
//! the tag is the payload itself, as format 2 stores wrote every record, and still reads.

use std::borrow::Cow;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::{Error, Result};
use crate::limits::REVISION_BYTES_MAX;
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
    verify(record).map_err(|how| damaged(what(), how))
}

/// The bytes a record seals and their hash, or how it fails its seal.
fn verify(record: &[u8]) -> std::result::Result<(&[u8], Hash), &'static str> {
    let Some(split) = record.len().checked_sub(SEAL_BYTES) else {
        return Err("is shorter than its seal");
    };
    let (payload, stored) = record.split_at(split);
    let hash = Hash::of(payload);
    if hash.0.as_slice() != stored {
        return Err("fails its checksum");
    }
    Ok((payload, hash))
}

/// First byte of a deflated history record: 0xc1 is the one byte MessagePack never uses, so no
/// encoded revision or undo record (a map, an array) starts with it.
const DEFLATED_TAG: u8 = 0xc1;
/// The codec byte after the tag: raw deflate (RFC 1951).
const CODEC_DEFLATE: u8 = 1;
/// Tag, codec and the payload's length (u32 little-endian).
const DEFLATED_HEADER_BYTES: usize = 6;
/// The largest payload a history record holds: a revision and its undo record together fit
/// [`REVISION_BYTES_MAX`], so each alone does.
pub const HISTORY_PAYLOAD_BYTES_MAX: usize = REVISION_BYTES_MAX;
const _: () = assert!(HISTORY_PAYLOAD_BYTES_MAX <= u32::MAX as usize);
/// Payloads shorter than this are stored as they are: a revision of a few objects is mostly
/// hashes, which do not compress, and deflating it cost a one-object publish more time than it
/// saved bytes. Revisions of many objects, which hold most of a history's bytes, are deflated.
const DEFLATE_MIN_BYTES: usize = 1024;

thread_local! {
    /// One deflate context per thread, reset between records: making one allocates and clears
    /// a few hundred KiB, which each record paid before.
    static DEFLATE: std::cell::RefCell<Compress> = std::cell::RefCell::new(Compress::new(Compression::fast(), false));
}

/// A history record (an encoded revision or undo record) as stored: deflated when that is
/// smaller, then sealed. The fastest deflate level: the records are MessagePack whose keys and
/// type names repeat, which even that level shrinks about sixfold, and a publish waits for it.
pub fn seal_history(payload: &[u8]) -> Vec<u8> {
    if payload.len() < DEFLATE_MIN_BYTES || payload.len() > HISTORY_PAYLOAD_BYTES_MAX {
        return seal(payload);
    }
    // Room for a stream as long as the payload: one that does not fit gains nothing.
    let mut out = Vec::with_capacity(DEFLATED_HEADER_BYTES + payload.len() + SEAL_BYTES);
    out.push(DEFLATED_TAG);
    out.push(CODEC_DEFLATE);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let status = DEFLATE.with(|d| {
        let mut deflate = d.borrow_mut();
        deflate.reset();
        deflate.compress_vec(payload, &mut out, FlushCompress::Finish)
    });
    match status {
        Ok(Status::StreamEnd) if out.len() < payload.len() => {
            let hash = Hash::of(&out);
            out.extend_from_slice(&hash.0);
            out
        }
        // Larger than the payload, or (deflating a slice into memory has no failure of its own)
        // an error: stored as it is.
        _ => seal(payload),
    }
}

/// The payload of a history record, once its seal verified: borrowed from a record stored as it
/// is, inflated from a deflated one. `what` names the record in the error.
pub fn unseal_history(record: &[u8], what: impl FnOnce() -> String) -> Result<Cow<'_, [u8]>> {
    let stored = match verify(record) {
        Ok((stored, _)) if stored.first() != Some(&DEFLATED_TAG) => return Ok(Cow::Borrowed(stored)),
        Ok((stored, _)) => inflate(stored),
        Err(how) => Err(how),
    };
    stored.map(Cow::Owned).map_err(|how| damaged(what(), how))
}

/// Inflates a deflated history record whose seal verified (tag included).
fn inflate(stored: &[u8]) -> std::result::Result<Vec<u8>, &'static str> {
    if stored.len() < DEFLATED_HEADER_BYTES || stored[1] != CODEC_DEFLATE {
        return Err("has an unknown encoding");
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&stored[2..DEFLATED_HEADER_BYTES]);
    let len = u32::from_le_bytes(len) as usize;
    if len > HISTORY_PAYLOAD_BYTES_MAX {
        return Err("declares a payload over the limit");
    }
    let input = &stored[DEFLATED_HEADER_BYTES..];
    // One call into a vector of one byte more than declared: inflating stops at its capacity,
    // so a stream that would grow longer shows as such and allocates nothing more.
    let mut out = Vec::with_capacity(len + 1);
    let mut inflate = Decompress::new(false);
    match inflate.decompress_vec(input, &mut out, FlushDecompress::Finish) {
        Ok(Status::StreamEnd) if out.len() == len && inflate.total_in() as usize == input.len() => Ok(out),
        _ => Err("does not inflate to the payload it declares"),
    }
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

    /// A revision-like MessagePack payload: the same keys and type names over and over.
    fn history_payload(changes: u32) -> Vec<u8> {
        let items: Vec<_> = (0..changes)
            .map(|i| {
                serde_json::json!({"type": "host", "op": "put", "after": {"name": format!("host-{i:08}"),
                    "fields": {"comments": format!("app server {i}"), "ipv4-address": "10.0.0.1"}}})
            })
            .collect();
        rmp_serde::to_vec_named(&items).expect("encode")
    }

    #[test]
    fn a_history_record_is_stored_deflated_and_reads_back_equal() {
        let payload = history_payload(1_000);
        let record = seal_history(&payload);
        assert_eq!(record[0], DEFLATED_TAG);
        assert!(record.len() * 3 < payload.len(), "{} bytes deflated to {}", payload.len(), record.len());
        let read = unseal_history(&record, || "revision 7".into()).expect("intact");
        assert!(matches!(read, Cow::Owned(_)));
        assert_eq!(read.as_ref(), payload.as_slice());
    }

    #[test]
    fn a_history_record_stored_as_it_is_still_reads() {
        // As a format 2 store wrote every record, and as a small or incompressible one is kept.
        let payload = history_payload(20);
        let plain = seal(&payload);
        let read = unseal_history(&plain, || "revision 7".into()).expect("intact");
        assert!(matches!(read, Cow::Borrowed(_)));
        assert_eq!(read.as_ref(), payload.as_slice());
        let small = history_payload(0);
        assert_eq!(seal_history(&small), seal(&small), "too small to deflate");
        let noise: Vec<u8> = (0..64u32).flat_map(|i| Hash::of(&i.to_le_bytes()).0).collect();
        let mut incompressible = history_payload(0);
        incompressible.extend_from_slice(&noise);
        assert_eq!(seal_history(&incompressible), seal(&incompressible), "deflate would not shrink it");
    }

    #[test]
    fn any_flipped_bit_of_a_deflated_history_record_is_caught() {
        let record = seal_history(&history_payload(20));
        assert_eq!(record[0], DEFLATED_TAG);
        for i in 0..record.len() * 8 {
            let mut bad = record.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let err = unseal_history(&bad, || "revision 7".into()).expect_err("a flipped bit is caught");
            assert!(matches!(err, Error::Corrupt(ref m) if m.contains("revision 7")), "{err}");
        }
    }

    #[test]
    fn a_deflated_record_that_does_not_inflate_to_what_it_declares_is_refused() {
        let payload = history_payload(20);
        let record = seal_history(&payload);
        let stored = &record[..record.len() - SEAL_BYTES];
        let resealed = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut s = stored.to_vec();
            edit(&mut s);
            seal(&s)
        };
        let shorter = resealed(&|s| s[2..6].copy_from_slice(&(payload.len() as u32 - 1).to_le_bytes()));
        let longer = resealed(&|s| s[2..6].copy_from_slice(&(payload.len() as u32 + 1).to_le_bytes()));
        let huge = resealed(&|s| s[2..6].copy_from_slice(&u32::MAX.to_le_bytes()));
        let codec = resealed(&|s| s[1] = 9);
        let truncated = resealed(&|s| s.truncate(s.len() - 3));
        let trailing = resealed(&|s| s.push(0));
        for (case, bad) in [
            ("shorter", shorter),
            ("longer", longer),
            ("huge", huge),
            ("codec", codec),
            ("cut", truncated),
            ("tail", trailing),
        ] {
            let err = unseal_history(&bad, || "undo record of revision 3".into()).expect_err(case);
            assert!(matches!(err, Error::Corrupt(ref m) if m.contains("undo record of revision 3")), "{case}: {err}");
        }
    }
}
