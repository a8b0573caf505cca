//! A small, frozen pseudo-random generator (SplitMix64) for allocation draws.
//!
//! Hand-written on purpose: an allocation must be reproducible from its recorded seed forever,
//! so the generator and the way it is turned into choices are part of allot's frozen behaviour
//! and must not change with a dependency upgrade (the `rand` crates do not promise that for
//! their sequence helpers).

/// SplitMix64 (Steele, Lea & Flood 2014): a full-period 64-bit generator with good mixing.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// A uniform integer in `0..n` (`n > 0`), by Lemire's unbiased multiply-and-reject.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

/// The SplitMix64 finaliser: a bijective mix of 64 bits.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit key for item `i` under `seed`, independent across items: used to shuffle by sorting.
pub fn key(seed: u64, i: u64) -> u64 {
    mix(mix(seed ^ 0x6A09_E667_F3BC_C909).wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

/// A seed derived from a text label (e.g. `"<space salt>|<owner>|<version>"`), with the frozen hash.
pub fn seed_from(label: &str) -> u64 {
    crate::hash::murmur3_x64_128(label.as_bytes(), 0).0
}
