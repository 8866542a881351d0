//! The order-independent state hash: the sum, modulo 2^256, of the blake3 hashes of every
//! object's canonical encoding. Adding and removing one object costs O(1), so the hash after a
//! revision is kept up to date in O(change) and still equals a recomputation from scratch.
//! A sum (not XOR) is used so that two equal objects do not cancel out.

use super::object::Hash;

/// Running multiset hash of a set of objects.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct StateHash([u64; 4]);

impl StateHash {
    pub fn from_hash(h: Hash) -> StateHash {
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h.0[i * 8..i * 8 + 8]);
            *limb = u64::from_le_bytes(b);
        }
        StateHash(limbs)
    }

    pub fn to_hash(self) -> Hash {
        let mut out = [0u8; 32];
        for (i, limb) in self.0.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&limb.to_le_bytes());
        }
        Hash(out)
    }

    /// Adds one object's hash.
    pub fn add(&mut self, h: Hash) {
        let o = StateHash::from_hash(h).0;
        let mut carry = false;
        for (a, b) in self.0.iter_mut().zip(o) {
            let (s1, c1) = a.overflowing_add(b);
            let (s2, c2) = s1.overflowing_add(carry as u64);
            *a = s2;
            carry = c1 || c2;
        }
    }

    /// Removes one object's hash.
    pub fn sub(&mut self, h: Hash) {
        let o = StateHash::from_hash(h).0;
        let mut borrow = false;
        for (a, b) in self.0.iter_mut().zip(o) {
            let (d1, b1) = a.overflowing_sub(b);
            let (d2, b2) = d1.overflowing_sub(borrow as u64);
            *a = d2;
            borrow = b1 || b2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn add_then_sub_is_identity(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), c in any::<[u8; 32]>()) {
            let mut s = StateHash::default();
            s.add(Hash(a));
            let before = s;
            s.add(Hash(b));
            s.add(Hash(c));
            s.sub(Hash(b));
            s.sub(Hash(c));
            prop_assert_eq!(s, before);
        }

        #[test]
        fn order_does_not_matter(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            let mut x = StateHash::default();
            x.add(Hash(a));
            x.add(Hash(b));
            let mut y = StateHash::default();
            y.add(Hash(b));
            y.add(Hash(a));
            prop_assert_eq!(x, y);
        }
    }

    #[test]
    fn equal_objects_do_not_cancel() {
        let mut s = StateHash::default();
        s.add(Hash([1; 32]));
        s.add(Hash([1; 32]));
        assert_ne!(s, StateHash::default());
    }
}
