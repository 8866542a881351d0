//! `memcmp` for wasm32, eight bytes at a time. The one compiler-builtins provides there compares
//! byte by byte, and every map lookup, string comparison and `Value` equality of a call ends in
//! it: about a sixth of a merge. The builtin is a weak symbol, so this definition replaces it in
//! the plugin's module. The default feature `memcmp` provides it; turn it off if another crate
//! of the plugin defines `memcmp` too.

/// # Safety
/// `a` and `b` must be readable for `n` bytes, as for C's `memcmp`.
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, and the caller guarantees n readable bytes.
        let (x, y) = unsafe { ((a.add(i) as *const u64).read_unaligned(), (b.add(i) as *const u64).read_unaligned()) };
        if x != y {
            // Little-endian: the lowest differing byte is the first one in memory.
            let shift = (x ^ y).trailing_zeros() & !7;
            return i32::from((x >> shift) as u8) - i32::from((y >> shift) as u8);
        }
        i += 8;
    }
    while i < n {
        // SAFETY: i < n.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    #[test]
    fn memcmp_orders_as_slices_do() {
        let texts: [&[u8]; 8] =
            [b"", b"a", b"ab", b"abcdefgh", b"abcdefgi", b"abcdefgh-0000-0001", b"abcdefgh-0000-0002", b"\xffabcdefgh"];
        for a in texts {
            for b in texts {
                let n = a.len().min(b.len());
                // SAFETY: both are readable for n bytes.
                let ours = unsafe { super::memcmp(a.as_ptr(), b.as_ptr(), n) }.cmp(&0);
                assert_eq!(ours, a[..n].cmp(&b[..n]), "{a:?} {b:?}");
            }
        }
        // SAFETY: as above.
        assert_eq!(unsafe { super::memcmp(b"x\x01".as_ptr(), b"x\xff".as_ptr(), 2) }.cmp(&0), Ordering::Less);
    }
}
