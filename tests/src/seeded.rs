//! A small seeded generator (xorshift64) for the tests that damage stores at many positions: the
//! positions are the same on every run, so a failing one can be replayed.

pub struct XorShift(pub u64);

impl XorShift {
    /// The next number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}
