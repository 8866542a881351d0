//! A pass over MessagePack bytes that counts their values and nesting without building any of
//! them. A decoder allocates by what it reads: a frame of 33 million empty byte strings fits in
//! 64 MiB yet decodes to about a gigabyte, so the peer protocol checks a frame's shape here
//! before it decodes a byte of it, and a commit counts what a revision will weigh on the wire.

/// What a payload holds, when it is within the limits it was checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Values, at every depth: each array item, each map key and each map value, plus the
    /// outermost value.
    pub values: usize,
    /// Deepest nesting of arrays and maps (a scalar alone is depth 0).
    pub depth: usize,
    /// Bytes the first complete value used (a payload may not hold more, see [`check`]).
    pub bytes: usize,
}

/// Why a payload was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    #[error("more than {max} MessagePack values")]
    TooManyValues { max: usize },
    #[error("nested deeper than {max} levels")]
    TooDeep { max: usize },
    /// A length that runs past the end of the payload, a reserved marker byte, or bytes left
    /// over after the value.
    #[error("malformed MessagePack at byte {at}: {what}")]
    Malformed { at: usize, what: &'static str },
}

/// Checks that `bytes` is exactly one MessagePack value of at most `values_max` values nested at
/// most `depth_max` deep. Every array and map length is checked against the bytes left (each
/// value takes at least one) and against `values_max` as soon as it is read, so a refusal costs
/// no more than the bytes read so far, and nothing is allocated but the nesting stack (at most
/// `depth_max` entries).
pub fn check(bytes: &[u8], values_max: usize, depth_max: usize) -> Result<Shape, ShapeError> {
    let shape = walk(bytes, values_max, depth_max)?;
    if shape.bytes != bytes.len() {
        return Err(ShapeError::Malformed { at: shape.bytes, what: "bytes after the value" });
    }
    Ok(shape)
}

/// Counts the values of one MessagePack value that is known to be well formed (an encoding this
/// process made); `usize::MAX` if it is not.
pub fn values(bytes: &[u8]) -> usize {
    walk(bytes, usize::MAX, usize::MAX).map(|s| s.values).unwrap_or(usize::MAX)
}

fn walk(bytes: &[u8], values_max: usize, depth_max: usize) -> Result<Shape, ShapeError> {
    let mut pos = 0usize;
    // Values promised so far (read or still owed by an open container): checked against the
    // limit when a container announces its length, before any of its items is looked at.
    let mut promised = 1usize;
    if values_max == 0 {
        return Err(ShapeError::TooManyValues { max: values_max });
    }
    // Items still to read in each open container, innermost last.
    let mut open: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    loop {
        let at = pos;
        let marker = *bytes.get(pos).ok_or(ShapeError::Malformed { at, what: "truncated value" })?;
        pos += 1;
        // (bytes of payload that follow the marker, items of a container that opens here)
        let (skip, items) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, None),
            0x80..=0x8f => (0, Some(2 * (marker & 0x0f) as usize)),
            0x90..=0x9f => (0, Some((marker & 0x0f) as usize)),
            0xa0..=0xbf => ((marker & 0x1f) as usize, None),
            0xc1 => return Err(ShapeError::Malformed { at, what: "reserved marker 0xc1" }),
            0xc4 | 0xd9 => (read_len(bytes, &mut pos, 1)?, None),
            0xc5 | 0xda => (read_len(bytes, &mut pos, 2)?, None),
            0xc6 | 0xdb => (read_len(bytes, &mut pos, 4)?, None),
            0xc7 => (read_len(bytes, &mut pos, 1)? + 1, None),
            0xc8 => (read_len(bytes, &mut pos, 2)? + 1, None),
            0xc9 => (read_len(bytes, &mut pos, 4)? + 1, None),
            0xca | 0xce | 0xd2 => (4, None),
            0xcb | 0xcf | 0xd3 => (8, None),
            0xcc | 0xd0 => (1, None),
            0xcd | 0xd1 => (2, None),
            0xd4 => (2, None),
            0xd5 => (3, None),
            0xd6 => (5, None),
            0xd7 => (9, None),
            0xd8 => (17, None),
            0xdc => (0, Some(read_len(bytes, &mut pos, 2)?)),
            0xdd => (0, Some(read_len(bytes, &mut pos, 4)?)),
            0xde => (0, Some(2 * read_len(bytes, &mut pos, 2)?)),
            0xdf => (0, Some(2 * read_len(bytes, &mut pos, 4)?)),
        };
        if skip > bytes.len() - pos {
            return Err(ShapeError::Malformed { at, what: "length past the end" });
        }
        pos += skip;
        if let Some(items) = items {
            // A decoder recurses into every container, empty or not.
            depth = depth.max(open.len() + 1);
            if open.len() + 1 > depth_max {
                return Err(ShapeError::TooDeep { max: depth_max });
            }
            // Each item takes at least one byte: a longer promise is a lie about the payload.
            if items > bytes.len() - pos {
                return Err(ShapeError::Malformed { at, what: "more items than bytes left" });
            }
            promised = promised.saturating_add(items);
            if promised > values_max {
                return Err(ShapeError::TooManyValues { max: values_max });
            }
            if items > 0 {
                open.push(items);
                continue;
            }
        }
        // A value ended here: it is one item of the innermost open container, which may end too.
        loop {
            match open.last_mut() {
                None => return Ok(Shape { values: promised, depth, bytes: pos }),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    open.pop();
                }
            }
        }
    }
}

/// Reads a big-endian length of `width` bytes at `pos`.
fn read_len(bytes: &[u8], pos: &mut usize, width: usize) -> Result<usize, ShapeError> {
    let at = *pos;
    let raw = bytes.get(at..at + width).ok_or(ShapeError::Malformed { at, what: "truncated length" })?;
    *pos += width;
    Ok(raw.iter().fold(0usize, |n, b| (n << 8) | *b as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(v: &serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec_named(v).expect("encodes")
    }

    #[test]
    fn counts_every_value_at_every_depth() {
        let bytes = encode(&json!({"a": [1, 2, {"b": null}], "c": "x"}));
        // map, a, array, 1, 2, map, b, null, c, "x"
        assert_eq!(check(&bytes, 100, 10), Ok(Shape { values: 10, depth: 3, bytes: bytes.len() }));
        assert_eq!(values(&bytes), 10);
        assert_eq!(check(&encode(&json!(7)), 1, 0).map(|s| s.values), Ok(1));
    }

    #[test]
    fn empty_containers_end_where_they_open() {
        let bytes = encode(&json!([[], {}, [[]], "s"]));
        assert_eq!(check(&bytes, 100, 10).map(|s| (s.values, s.depth)), Ok((6, 3)));
    }

    #[test]
    fn the_amplification_frame_is_refused_at_its_length() {
        // An array32 of 32 million empty byte strings: refused on the array's length.
        let n: u32 = 32 * 1024 * 1024;
        let mut bytes = vec![0xdd];
        bytes.extend_from_slice(&n.to_be_bytes());
        bytes.extend([0xc4u8, 0x00].repeat(n as usize / 16));
        assert_eq!(check(&bytes, 1 << 20, 8), Err(ShapeError::Malformed { at: 0, what: "more items than bytes left" }));
        bytes.extend([0xc4u8, 0x00].repeat(n as usize - n as usize / 16));
        assert_eq!(check(&bytes, 1 << 20, 8), Err(ShapeError::TooManyValues { max: 1 << 20 }));
    }

    #[test]
    fn many_small_arrays_are_counted_together() {
        // 1000 arrays of 10: no single length is large, their sum is.
        let bytes = encode(&json!(vec![vec![0; 10]; 1000]));
        assert_eq!(check(&bytes, 11_001, 4).map(|s| s.values), Ok(11_001));
        assert_eq!(check(&bytes, 11_000, 4), Err(ShapeError::TooManyValues { max: 11_000 }));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut bytes = vec![0x91; 100];
        bytes.push(0xc0);
        assert_eq!(check(&bytes, 1000, 100).map(|s| s.depth), Ok(100));
        assert_eq!(check(&bytes, 1000, 99), Err(ShapeError::TooDeep { max: 99 }));
    }

    #[test]
    fn truncation_and_leftovers_are_malformed() {
        let bytes = encode(&json!({"key": "a longer string value"}));
        for cut in 0..bytes.len() {
            assert!(matches!(check(&bytes[..cut], 100, 10), Err(ShapeError::Malformed { .. })), "cut at {cut}");
        }
        let mut more = bytes.clone();
        more.push(0xc0);
        assert!(matches!(check(&more, 100, 10), Err(ShapeError::Malformed { what: "bytes after the value", .. })));
        assert!(matches!(check(&[0xc1], 100, 10), Err(ShapeError::Malformed { .. })));
    }

    #[test]
    fn every_scalar_kind_is_walked() {
        let bytes = encode(&json!([
            0,
            -1,
            200,
            -200,
            70000,
            -70000,
            5_000_000_000u64,
            -5_000_000_000i64,
            1.5,
            true,
            false,
            null,
            "s"
        ]));
        assert_eq!(check(&bytes, 100, 2).map(|s| s.values), Ok(14));
        let bin = rmp_serde::to_vec(&serde_bytes::ByteBuf::from(vec![1u8; 300])).expect("encodes");
        assert_eq!(check(&bin, 1, 0).map(|s| s.values), Ok(1));
        // fixext 4 and ext8 of 3 bytes.
        assert_eq!(check(&[0xd6, 1, 0, 0, 0, 0], 1, 0).map(|s| s.bytes), Ok(6));
        assert_eq!(check(&[0xc7, 3, 1, 9, 9, 9], 1, 0).map(|s| s.bytes), Ok(6));
    }
}
