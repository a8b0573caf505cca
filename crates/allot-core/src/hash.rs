//! The hash functions behind bucketing: MurmurHash3 (x64_128 and x86_32) and allot's frozen
//! `bucket` function.
//!
//! Which bucket a unit lands in is product behaviour: changing it by a single bit would silently
//! reshuffle every running experiment. So the hash is written out here by hand, from Austin
//! Appleby's reference `MurmurHash3.cpp`, instead of being taken from a hashing crate, and must
//! never change with a dependency upgrade. It is pinned by the golden vectors in `spec/hash/`
//! (computed with the `mmh3` Python package) and versioned by [`HASH_VERSION`]: any change to the
//! output of [`bucket`] is a new version, never an edit of this one.
//!
//! [`bucket`] is on the hot path of every evaluation, so it hashes `"<salt>|<unit>"` as a stream
//! of its three parts and never allocates.

/// The version of the frozen bucketing function [`bucket`] (and [`bucket_of_hash`]).
///
/// Version 1 is Spotify Confidence's bucketing: the low 64 bits (`h1`) of MurmurHash3 x64_128,
/// seed 0, over the UTF-8 bytes of `"<salt>|<unit>"`, then `(h1 >> 4) % buckets`. Outputs for a
/// given version never change.
pub const HASH_VERSION: u32 = 1;

const C1_64: u64 = 0x87c3_7b91_1142_53d5;
const C2_64: u64 = 0x4cf5_ad43_2745_937f;

const C1_32: u32 = 0xcc9e_2d51;
const C2_32: u32 = 0x1b87_3593;

/// The separator between salt and unit in the bucketed key.
const SEPARATOR: u8 = b'|';

/// Reads 8 little-endian bytes from the start of `b` (which holds at least 8).
#[inline(always)]
fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Reads 4 little-endian bytes from the start of `b` (which holds at least 4).
#[inline(always)]
fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Reads the 0..=8 bytes of `b` as a little-endian integer (the missing high bytes are zero),
/// without a variable-length copy: two overlapping reads.
#[inline(always)]
fn le_partial_u64(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 4 {
        // Bytes 0..4 and n-4..n; where they overlap they hold the same bytes.
        let lo = u64::from(le_u32(b));
        let hi = u64::from(le_u32(&b[n - 4..]));
        lo | hi << (8 * (n - 4))
    } else if n > 0 {
        u64::from(b[0]) | u64::from(b[n / 2]) << (8 * (n / 2)) | u64::from(b[n - 1]) << (8 * (n - 1))
    } else {
        0
    }
}

/// Reads the 0..=16 bytes of `b` as a little-endian integer (the missing high bytes are zero).
#[inline(always)]
fn le_partial_u128(b: &[u8]) -> u128 {
    if b.len() > 8 {
        u128::from(le_u64(b)) | u128::from(le_partial_u64(&b[8..])) << 64
    } else {
        u128::from(le_partial_u64(b))
    }
}

/// The 64-bit finalization mix (`fmix64`) of the reference implementation.
#[inline(always)]
const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The 32-bit finalization mix (`fmix32`) of the reference implementation.
#[inline(always)]
const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[inline(always)]
const fn mix_k1(k1: u64) -> u64 {
    k1.wrapping_mul(C1_64).rotate_left(31).wrapping_mul(C2_64)
}

#[inline(always)]
const fn mix_k2(k2: u64) -> u64 {
    k2.wrapping_mul(C2_64).rotate_left(33).wrapping_mul(C1_64)
}

/// The running state of MurmurHash3 x64_128.
#[derive(Clone, Copy)]
struct State128 {
    h1: u64,
    h2: u64,
}

impl State128 {
    #[inline(always)]
    const fn new(seed: u32) -> Self {
        Self { h1: seed as u64, h2: seed as u64 }
    }

    /// Mixes one full 16-byte block (`block` holds at least 16 bytes).
    #[inline(always)]
    fn block(&mut self, block: &[u8]) {
        self.words(le_u64(&block[..8]), le_u64(&block[8..16]));
    }

    /// Mixes one full block given as its two little-endian 64-bit words.
    #[inline(always)]
    fn words(&mut self, k1: u64, k2: u64) {
        self.h1 ^= mix_k1(k1);
        self.h1 = self.h1.rotate_left(27).wrapping_add(self.h2).wrapping_mul(5).wrapping_add(0x52dc_e729);

        self.h2 ^= mix_k2(k2);
        self.h2 = self.h2.rotate_left(31).wrapping_add(self.h1).wrapping_mul(5).wrapping_add(0x3849_5ab5);
    }

    /// Mixes the final 0..=15 bytes, given as a little-endian integer, and finalizes; `len` is
    /// the total length hashed.
    #[inline(always)]
    fn finish(mut self, tail: u128, len: usize) -> (u64, u64) {
        // The reference switch over the tail length is equivalent to zero-padding the tail to a
        // whole block: a zero lane mixes to zero and leaves its half unchanged.
        self.h1 ^= mix_k1(tail as u64);
        self.h2 ^= mix_k2((tail >> 64) as u64);

        let len = len as u64;
        let mut h1 = self.h1 ^ len;
        let mut h2 = self.h2 ^ len;
        h1 = h1.wrapping_add(h2);
        h2 = h2.wrapping_add(h1);
        h1 = fmix64(h1);
        h2 = fmix64(h2);
        h1 = h1.wrapping_add(h2);
        h2 = h2.wrapping_add(h1);
        (h1, h2)
    }
}

/// MurmurHash3 x64_128 over a sequence of byte slices, as if they were concatenated, without
/// copying them into one buffer.
#[derive(Clone, Copy)]
struct Stream128 {
    state: State128,
    /// The bytes carried over short of a full block, as a little-endian integer.
    carry: u128,
    /// How many bytes `carry` holds (always < 16 between calls).
    fill: usize,
    /// Total bytes written.
    len: usize,
}

impl Stream128 {
    #[inline(always)]
    const fn new(seed: u32) -> Self {
        Self { state: State128::new(seed), carry: 0, fill: 0, len: 0 }
    }

    /// Mixes the carried block once it is full.
    #[inline(always)]
    fn flush_full(&mut self) {
        if self.fill == 16 {
            self.state.words(self.carry as u64, (self.carry >> 64) as u64);
            self.carry = 0;
            self.fill = 0;
        }
    }

    #[inline(always)]
    fn write_byte(&mut self, byte: u8) {
        self.len += 1;
        self.carry |= u128::from(byte) << (8 * self.fill);
        self.fill += 1;
        self.flush_full();
    }

    #[inline(always)]
    fn write(&mut self, mut data: &[u8]) {
        self.len += data.len();
        if self.fill > 0 {
            let take = (16 - self.fill).min(data.len());
            self.carry |= le_partial_u128(&data[..take]) << (8 * self.fill);
            self.fill += take;
            data = &data[take..];
            if self.fill < 16 {
                return;
            }
            self.flush_full();
        }
        let mut blocks = data.chunks_exact(16);
        for block in &mut blocks {
            self.state.block(block);
        }
        let rest = blocks.remainder();
        self.carry = le_partial_u128(rest);
        self.fill = rest.len();
    }

    #[inline(always)]
    fn finish(self) -> (u64, u64) {
        self.state.finish(self.carry, self.len)
    }
}

/// MurmurHash3 x64_128 of `data` with `seed`, as in Austin Appleby's reference implementation.
///
/// Returns `(h1, h2)`: `h1` is the low 64 bits of the 128-bit hash (the first 8 bytes of the
/// little-endian digest, Python `mmh3.hash64(data, seed, signed=False)[0]`), `h2` the high 64.
#[inline]
pub fn murmur3_x64_128(data: &[u8], seed: u32) -> (u64, u64) {
    let mut state = State128::new(seed);
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        state.block(block);
    }
    state.finish(le_partial_u128(blocks.remainder()), data.len())
}

/// MurmurHash3 x86_32 of `data` with `seed`, as in Austin Appleby's reference implementation
/// (Python `mmh3.hash(data, seed, signed=False)`).
#[inline]
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let k = le_u32(block).wrapping_mul(C1_32).rotate_left(15).wrapping_mul(C2_32);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }

    // As for x64_128, the 0..=3 tail bytes zero-padded to a block.
    h ^= (le_partial_u64(blocks.remainder()) as u32).wrapping_mul(C1_32).rotate_left(15).wrapping_mul(C2_32);

    // The reference takes the length as a 32-bit int: only its low 32 bits are mixed in.
    h ^= data.len() as u32;
    fmix32(h)
}

/// The bucket of `unit` under `salt`, in `0..buckets`: allot's frozen bucketing function,
/// version [`HASH_VERSION`] (Spotify Confidence's).
///
/// Takes `h1`, the low 64 bits of [`murmur3_x64_128`] with seed 0 over the UTF-8 bytes of
/// `"<salt>|<unit>"`, and returns [`bucket_of_hash`]`(h1, buckets)`. The key is hashed in place,
/// part by part, so this never allocates.
///
/// # Panics
///
/// If `buckets` is 0.
#[inline]
pub fn bucket(salt: &str, unit: &str, buckets: u32) -> u32 {
    bucket_of_hash(unit_hash(salt, unit).0, buckets)
}

/// Amplitude Experiment's bucketing hash: MurmurHash3 x86_32, seed 0, over the UTF-8 bytes of
/// `"<salt>/<unit>"`. Amplitude allocates by `hash % 100` and splits by `hash / 100` (over
/// [`AMPLITUDE_SPLIT_BUCKETS`]); a unit type or a split with `hash: amplitude` uses it
/// (docs/config.md). Allocates only for keys over 192 bytes.
#[inline]
pub fn amplitude_hash(salt: &str, unit: &str) -> u32 {
    let n = salt.len() + 1 + unit.len();
    let mut stack = [0u8; 192];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if n <= stack.len() {
        &mut stack[..n]
    } else {
        heap.resize(n, 0);
        &mut heap
    };
    buf[..salt.len()].copy_from_slice(salt.as_bytes());
    buf[salt.len()] = b'/';
    buf[salt.len() + 1..].copy_from_slice(unit.as_bytes());
    murmur3_x86_32(buf, 0)
}

/// Buckets of a unit type with `hash: amplitude`: Amplitude allocates by `hash % 100`.
pub const AMPLITUDE_BUCKETS: u32 = 100;

/// Split buckets of a split with `split_hash: amplitude`: `hash / 100` lies in `0..42,949,673`.
pub const AMPLITUDE_SPLIT_BUCKETS: u32 = u32::MAX / 100 + 1;

/// Both halves of [`murmur3_x64_128`] with seed 0 over `"<salt>|<unit>"`: `h1` places the unit
/// in its bucket ([`bucket_of_hash`]); `h2` drives its moves in the salt machine
/// ([`crate::salt`]), so one hash per unit and space serves every re-salt. Never allocates.
#[inline]
pub fn unit_hash(salt: &str, unit: &str) -> (u64, u64) {
    let mut stream = Stream128::new(0);
    stream.write(salt.as_bytes());
    stream.write_byte(SEPARATOR);
    stream.write(unit.as_bytes());
    stream.finish()
}

/// The bucket step of [`bucket`] alone: `(h1 >> 4) % buckets`, for an `h1` already computed.
///
/// # Panics
///
/// If `buckets` is 0.
#[inline]
pub const fn bucket_of_hash(h1: u64, buckets: u32) -> u32 {
    // The remainder is below `buckets`, so it fits in a u32.
    ((h1 >> 4) % buckets as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        assert_eq!(murmur3_x64_128(b"", 0), (0, 0));
        assert_eq!(murmur3_x64_128(b"hello world", 0), (5_998_619_086_395_760_910, 12_364_428_806_279_881_649));
        assert_eq!(murmur3_x86_32(b"", 0), 0);
        assert_eq!(murmur3_x86_32(b"hello world", 0), 1_586_663_183);
    }

    #[test]
    fn bucket_hashes_salt_bar_unit() {
        // "MegaSalt-confidence-test|roug" from spec/hash/murmur3_x64_128.json.
        assert_eq!(bucket("MegaSalt-confidence-test", "roug", 1_000_000), 567_493);
        assert_eq!(bucket_of_hash(225_617_028_569_079_891, 1_000_000), 567_493);
    }

    #[test]
    fn partial_loads_zero_pad() {
        let data: Vec<u8> = (1u8..=16).collect();
        for n in 0..=16 {
            let mut padded = [0u8; 16];
            padded[..n].copy_from_slice(&data[..n]);
            assert_eq!(le_partial_u128(&data[..n]), u128::from_le_bytes(padded), "n = {n}");
        }
    }

    #[test]
    fn stream_matches_one_shot_at_every_split() {
        let data: Vec<u8> = (0u8..70).collect();
        for a in 0..=data.len() {
            for b in a..=data.len() {
                let mut s = Stream128::new(7);
                s.write(&data[..a]);
                s.write(&data[a..b]);
                s.write(&data[b..]);
                assert_eq!(s.finish(), murmur3_x64_128(&data, 7), "split at {a}, {b}");
            }
        }
    }
}
