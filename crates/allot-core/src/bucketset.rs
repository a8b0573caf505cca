//! Sets of buckets: the currency of coordination.
//!
//! A bucket space of `B` buckets is cut into shards of [`SHARD`] consecutive buckets. Since a
//! unit's bucket is a uniform hash, every shard is itself a uniform random sample of the units.
//! Allocations are drawn shard by shard (see [`draw`]), so a set is stored as a bitmap of the
//! shards it holds whole plus a 128-bit mask for the few shards it holds in part. Over 1,000,000
//! buckets that is 7,813 shards: under 1 KB per set whatever its share, against 125 KB for a plain
//! bitmap, so 1,000 live allocations fit in about a megabyte and membership is two lookups.
//!
//! [`BucketBitmap`] is the working form for set algebra while allocating and auditing (one mask per
//! shard); [`BucketSet`] is the compact form that is recorded and evaluated.

use crate::rng::{self, SplitMix64};
use base64::Engine as _;

/// Buckets per shard.
pub const SHARD: u32 = 128;

fn shards_for(buckets: u32) -> usize {
    buckets.div_ceil(SHARD) as usize
}

/// The mask of buckets that exist in shard `s` of a space of `buckets` buckets.
fn valid_mask(buckets: u32, s: usize) -> u128 {
    let start = s as u64 * u64::from(SHARD);
    let len = (u64::from(buckets) - start).min(u64::from(SHARD));
    if len == 128 {
        u128::MAX
    } else {
        (1u128 << len) - 1
    }
}

/// A set of buckets in working form: one 128-bit mask per shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketBitmap {
    buckets: u32,
    masks: Vec<u128>,
}

impl BucketBitmap {
    /// The empty set over a space of `buckets` buckets.
    pub fn empty(buckets: u32) -> Self {
        Self { buckets, masks: vec![0; shards_for(buckets)] }
    }

    /// Every bucket of the space.
    pub fn full(buckets: u32) -> Self {
        let n = shards_for(buckets);
        Self { buckets, masks: (0..n).map(|s| valid_mask(buckets, s)).collect() }
    }

    /// The size of the space.
    pub fn space(&self) -> u32 {
        self.buckets
    }

    /// Number of buckets in the set.
    pub fn len(&self) -> u64 {
        self.masks.iter().map(|m| u64::from(m.count_ones())).sum()
    }

    /// True when the set holds no bucket.
    pub fn is_empty(&self) -> bool {
        self.masks.iter().all(|m| *m == 0)
    }

    /// Whether bucket `b` is in the set.
    pub fn contains(&self, b: u32) -> bool {
        let s = (b / SHARD) as usize;
        s < self.masks.len() && (self.masks[s] >> (b % SHARD)) & 1 == 1
    }

    /// Adds bucket `b` (ignored when outside the space).
    pub fn insert(&mut self, b: u32) {
        if b < self.buckets {
            self.masks[(b / SHARD) as usize] |= 1u128 << (b % SHARD);
        }
    }

    /// `self ∪= other`.
    pub fn union_with(&mut self, other: &BucketBitmap) {
        for (a, b) in self.masks.iter_mut().zip(&other.masks) {
            *a |= *b;
        }
    }

    /// `self ∩= other`.
    pub fn intersect_with(&mut self, other: &BucketBitmap) {
        for (a, b) in self.masks.iter_mut().zip(&other.masks) {
            *a &= *b;
        }
    }

    /// `self −= other`.
    pub fn subtract(&mut self, other: &BucketBitmap) {
        for (a, b) in self.masks.iter_mut().zip(&other.masks) {
            *a &= !*b;
        }
    }

    /// `self ∪= other` for a compact set.
    pub fn union_compact(&mut self, other: &BucketSet) {
        other.for_each_mask(|s, m| self.masks[s] |= m);
    }

    /// `self −= other` for a compact set.
    pub fn subtract_compact(&mut self, other: &BucketSet) {
        other.for_each_mask(|s, m| self.masks[s] &= !m);
    }

    /// `self -= other` for a compact set; returns how many buckets left `self`. Costs the size
    /// of `other`, not of the space (planning subtracts many small sets from one large one).
    pub fn subtract_compact_counted(&mut self, other: &BucketSet) -> u64 {
        let mut removed = 0u64;
        other.for_each_mask(|s, m| {
            removed += u64::from((self.masks[s] & m).count_ones());
            self.masks[s] &= !m;
        });
        removed
    }

    /// `self ∩= other` for a compact set.
    pub fn intersect_compact(&mut self, other: &BucketSet) {
        let mut keep = vec![0u128; self.masks.len()];
        other.for_each_mask(|s, m| keep[s] = m);
        for (a, k) in self.masks.iter_mut().zip(keep) {
            *a &= k;
        }
    }

    /// Number of buckets in both sets.
    pub fn intersection_len(&self, other: &BucketBitmap) -> u64 {
        self.masks.iter().zip(&other.masks).map(|(a, b)| u64::from((a & b).count_ones())).sum()
    }

    /// The buckets of the space that are not in the set.
    pub fn complement(&self) -> BucketBitmap {
        let masks = self.masks.iter().enumerate().map(|(s, m)| !m & valid_mask(self.buckets, s)).collect();
        BucketBitmap { buckets: self.buckets, masks }
    }

    /// The buckets in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.masks.iter().enumerate().flat_map(|(s, &m)| {
            let base = s as u32 * SHARD;
            BitIter(m).map(move |i| base + i)
        })
    }

    /// The compact form.
    pub fn compact(&self) -> BucketSet {
        let n = self.masks.len();
        let mut full = vec![0u64; n.div_ceil(64)];
        let mut partial = Vec::new();
        for (s, &m) in self.masks.iter().enumerate() {
            if m == 0 {
                continue;
            }
            if m == valid_mask(self.buckets, s) {
                full[s / 64] |= 1 << (s % 64);
            } else {
                partial.push((s as u32, m));
            }
        }
        BucketSet { buckets: self.buckets, full, partial }
    }
}

struct BitIter(u128);

impl Iterator for BitIter {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(i)
    }
}

/// A set of buckets in compact form: whole shards as a bitmap, partial shards as masks.
///
/// Invariant: a shard is either in `full`, or in `partial` with a mask that is neither empty nor
/// the whole shard, or in neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSet {
    buckets: u32,
    full: Vec<u64>,
    partial: Vec<(u32, u128)>,
}

impl BucketSet {
    /// The empty set over `buckets` buckets.
    pub fn empty(buckets: u32) -> Self {
        BucketBitmap::empty(buckets).compact()
    }

    /// The size of the space the set lives in.
    pub fn space(&self) -> u32 {
        self.buckets
    }

    /// Whether bucket `b` is in the set: one bit test, and a binary search only for the rare
    /// partly held shard.
    #[inline]
    pub fn contains(&self, b: u32) -> bool {
        if b >= self.buckets {
            return false;
        }
        let s = b / SHARD;
        let word = (s / 64) as usize;
        match self.full.get(word) {
            Some(w) if (w >> (s % 64)) & 1 == 1 => true,
            Some(_) if !self.partial.is_empty() => match self.partial.binary_search_by_key(&s, |p| p.0) {
                Ok(i) => (self.partial[i].1 >> (b % SHARD)) & 1 == 1,
                Err(_) => false,
            },
            _ => false,
        }
    }

    /// Calls `f(shard, mask)` for every shard that holds at least one bucket.
    pub fn for_each_mask(&self, mut f: impl FnMut(usize, u128)) {
        let mut p = self.partial.iter().peekable();
        for (w, &word) in self.full.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let s = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                while let Some(&&(ps, pm)) = p.peek() {
                    if (ps as usize) < s {
                        f(ps as usize, pm);
                        p.next();
                    } else {
                        break;
                    }
                }
                f(s, valid_mask(self.buckets, s));
            }
        }
        for &(ps, pm) in p {
            f(ps as usize, pm);
        }
    }

    /// Number of buckets in the set.
    pub fn len(&self) -> u64 {
        let whole: u64 = self.full.iter().map(|w| u64::from(w.count_ones())).sum();
        let mut n = whole * u64::from(SHARD);
        if self.is_full_shard(self.last_shard()) {
            n -= self.last_shard_short();
        }
        n + self.partial.iter().map(|p| u64::from(p.1.count_ones())).sum::<u64>()
    }

    /// The last shard of the space (it may be short).
    fn last_shard(&self) -> u32 {
        self.buckets.div_ceil(SHARD).saturating_sub(1)
    }

    /// How many buckets the last shard lacks of a whole [`SHARD`].
    fn last_shard_short(&self) -> u64 {
        u64::from(SHARD) - u64::from(valid_mask(self.buckets, self.last_shard() as usize).count_ones())
    }

    /// True when the set holds no bucket.
    pub fn is_empty(&self) -> bool {
        self.partial.is_empty() && self.full.iter().all(|w| *w == 0)
    }

    /// Number of buckets in both sets, without expanding either (used by the exact audit).
    pub fn intersection_len(&self, other: &BucketSet) -> u64 {
        // Whole shards of both: one AND and popcount per 64 shards (the audit does this for
        // every pair of running experiments), then the short last shard once.
        let whole: u64 = self.full.iter().zip(&other.full).map(|(a, b)| u64::from((a & b).count_ones())).sum();
        let mut n = whole * u64::from(SHARD);
        let last = self.last_shard();
        if self.is_full_shard(last) && other.is_full_shard(last) {
            n -= self.last_shard_short();
        }
        // Partial shards of one side against anything of the other.
        for &(s, m) in &self.partial {
            n += u64::from((m & other.mask(s)).count_ones());
        }
        for &(s, m) in &other.partial {
            if self.is_full_shard(s) {
                n += u64::from(m.count_ones());
            }
        }
        n
    }

    fn is_full_shard(&self, s: u32) -> bool {
        self.full.get((s / 64) as usize).is_some_and(|w| (w >> (s % 64)) & 1 == 1)
    }

    fn mask(&self, s: u32) -> u128 {
        if self.is_full_shard(s) {
            valid_mask(self.buckets, s as usize)
        } else {
            match self.partial.binary_search_by_key(&s, |p| p.0) {
                Ok(i) => self.partial[i].1,
                Err(_) => 0,
            }
        }
    }

    /// The working form.
    pub fn dense(&self) -> BucketBitmap {
        let mut d = BucketBitmap::empty(self.buckets);
        d.union_compact(self);
        d
    }

    /// The buckets in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let mut all = Vec::new();
        self.for_each_mask(|s, m| all.push((s, m)));
        all.into_iter().flat_map(|(s, m)| {
            let base = s as u32 * SHARD;
            BitIter(m).map(move |i| base + i)
        })
    }

    /// Approximate heap bytes held (for the memory benchmark).
    pub fn heap_bytes(&self) -> usize {
        self.full.len() * 8 + self.partial.len() * 20
    }

    /// The recorded text form: `<space>:<encoding>:<base64>`, where the whole shards are a bitmap
    /// (`b`) or a delta-varint list (`d`), whichever is shorter, followed by the partial shards.
    pub fn encode(&self) -> String {
        let mut bitmap = Vec::with_capacity(self.full.len() * 8);
        for w in &self.full {
            bitmap.extend_from_slice(&w.to_le_bytes());
        }
        let mut deltas = Vec::new();
        let mut prev = 0u64;
        self.for_each_mask(|s, m| {
            if m == valid_mask(self.buckets, s) {
                varint(&mut deltas, s as u64 - prev);
                prev = s as u64;
            }
        });
        let (tag, mut body) = if deltas.len() < bitmap.len() { ('d', deltas) } else { ('b', bitmap) };
        let mut tail = Vec::new();
        varint(&mut tail, self.partial.len() as u64);
        for (s, m) in &self.partial {
            varint(&mut tail, u64::from(*s));
            tail.extend_from_slice(&m.to_le_bytes());
        }
        let split = body.len();
        body.extend_from_slice(&tail);
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&body);
        format!("{}:{tag}{split}:{b64}", self.buckets)
    }

    /// Parses [`BucketSet::encode`]'s form; `None` when it is malformed.
    pub fn decode(text: &str) -> Option<BucketSet> {
        let mut parts = text.splitn(3, ':');
        let buckets: u32 = parts.next()?.parse().ok()?;
        // The largest space a configuration may declare: a recorded set never asks for more
        // memory than a real space needs.
        if buckets == 0 || buckets > 100_000_000 {
            return None;
        }
        let head = parts.next()?;
        let tag = head.chars().next()?;
        let split: usize = head.get(1..)?.parse().ok()?;
        let body = base64::engine::general_purpose::STANDARD_NO_PAD.decode(parts.next()?).ok()?;
        let (main, tail) = (body.get(..split)?, body.get(split..)?);
        let n = shards_for(buckets);
        let mut d = BucketBitmap::empty(buckets);
        match tag {
            'b' => {
                for (i, &byte) in main.iter().enumerate() {
                    for bit in 0..8 {
                        if (byte >> bit) & 1 == 1 {
                            let s = i * 8 + bit;
                            if s >= n {
                                return None;
                            }
                            d.masks[s] = valid_mask(buckets, s);
                        }
                    }
                }
            }
            'd' => {
                let mut pos = 0;
                let mut s = 0u64;
                while pos < main.len() {
                    s = s.checked_add(read_varint(main, &mut pos)?)?;
                    let s = usize::try_from(s).ok().filter(|s| *s < n)?;
                    d.masks[s] = valid_mask(buckets, s);
                }
            }
            _ => return None,
        }
        let mut pos = 0;
        let count = read_varint(tail, &mut pos)?;
        for _ in 0..count {
            let s = usize::try_from(read_varint(tail, &mut pos)?).ok().filter(|s| *s < n)?;
            let bytes: [u8; 16] = tail.get(pos..pos.checked_add(16)?)?.try_into().ok()?;
            pos += 16;
            d.masks[s] = u128::from_le_bytes(bytes) & valid_mask(buckets, s);
        }
        if pos != tail.len() {
            return None;
        }
        Some(d.compact())
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*pos)?;
        *pos += 1;
        // The tenth byte holds bit 63 only: anything more does not fit in 64 bits.
        if shift == 63 && byte > 1 {
            return None;
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

impl serde::Serialize for BucketSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> serde::Deserialize<'de> for BucketSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        BucketSet::decode(&text).ok_or_else(|| serde::de::Error::custom("malformed bucket set"))
    }
}

/// Draws exactly `count` buckets from `free`, at random from `seed`, preferring shards with the
/// lowest `recency` (0 = never used; higher = released more recently).
///
/// Shards are visited in order of (recency, a per-shard random key): within a tier this is a
/// uniform random shuffle. Whole free shards are taken while they fit; the last one contributes
/// a uniform random subset of its free buckets. Returns `None` when `free` holds fewer than
/// `count` buckets. Frozen: a recorded seed reproduces its allocation forever.
pub fn draw(free: &BucketBitmap, count: u64, seed: u64, recency: Option<&[u64]>) -> Option<BucketBitmap> {
    if free.len() < count {
        return None;
    }
    let mut order: Vec<(u64, u64, usize)> = free
        .masks
        .iter()
        .enumerate()
        .filter(|(_, m)| **m != 0)
        .map(|(s, _)| {
            let r = recency.and_then(|r| r.get(s).copied()).unwrap_or(0);
            (r, rng::key(seed, s as u64), s)
        })
        .collect();
    // Shards are visited in ascending (recency, key, shard) order, a total order. A draw
    // usually needs few of them, so only a prefix is sorted (the rest once it runs out): the
    // same visiting order as sorting everything, at a fraction of the cost.
    let guess = usize::try_from(count / u64::from(SHARD)).unwrap_or(usize::MAX).saturating_mul(2).saturating_add(16);
    let mut sorted = guess.min(order.len());
    if sorted < order.len() {
        order.select_nth_unstable(sorted);
    }
    order[..sorted].sort_unstable();
    let mut out = BucketBitmap::empty(free.buckets);
    let mut left = count;
    let mut i = 0;
    while left > 0 && i < order.len() {
        if i == sorted {
            order[sorted..].sort_unstable();
            sorted = order.len();
        }
        let (_, _, s) = order[i];
        i += 1;
        let m = free.masks[s];
        let n = u64::from(m.count_ones());
        if n <= left {
            out.masks[s] = m;
            left -= n;
        } else {
            // A uniform random subset of `left` of this shard's free buckets (partial Fisher-Yates).
            let mut bits: Vec<u32> = BitIter(m).collect();
            let mut g = SplitMix64::new(rng::key(seed ^ 0xD1B5_4A32_D192_ED03, s as u64));
            let take = left as usize;
            for i in 0..take {
                let j = i + g.below((bits.len() - i) as u64) as usize;
                bits.swap(i, j);
            }
            for &b in &bits[..take] {
                out.masks[s] |= 1u128 << b;
            }
            left = 0;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_roundtrip_and_len() {
        let b = 1_000_000;
        let mut d = BucketBitmap::empty(b);
        for x in [0, 1, 127, 128, 5000, 999_999] {
            d.insert(x);
        }
        let free = BucketBitmap::full(b);
        let drawn = draw(&free, 300_000, 7, None).unwrap();
        assert_eq!(drawn.len(), 300_000);
        d.union_with(&drawn);
        let c = d.compact();
        assert_eq!(c.len(), d.len());
        assert_eq!(c.dense(), d);
        let text = c.encode();
        assert!(text.len() < 2048, "{}", text.len());
        assert_eq!(BucketSet::decode(&text).unwrap(), c);
        for x in [0, 1, 127, 128, 5000, 999_999] {
            assert!(c.contains(x));
        }
        assert_eq!(c.intersection_len(&c), c.len());
    }

    /// A bitmap of `buckets` from a seed: whole shards, partial shards and empty ones, the short
    /// last shard included.
    fn random_bitmap(buckets: u32, seed: u64) -> BucketBitmap {
        let mut g = crate::rng::SplitMix64::new(seed);
        let mut d = BucketBitmap::empty(buckets);
        for s in 0..buckets.div_ceil(SHARD) {
            let lo = s * SHARD;
            let hi = (lo + SHARD).min(buckets);
            match g.next_u64() % 4 {
                0 => {}
                1 => (lo..hi).for_each(|b| d.insert(b)),
                _ => (lo..hi).filter(|_| g.next_u64().is_multiple_of(3)).for_each(|b| d.insert(b)),
            }
        }
        d
    }

    proptest::proptest! {
        /// The compact form counts exactly as the dense one: `len` and `intersection_len`.
        #[test]
        fn compact_counts_equal_dense_counts(buckets in 1u32..20_000, a in 0u64..1000, b in 0u64..1000) {
            let (da, db) = (random_bitmap(buckets, a), random_bitmap(buckets, b ^ 0x5555));
            let (ca, cb) = (da.compact(), db.compact());
            proptest::prop_assert_eq!(ca.len(), da.len());
            proptest::prop_assert_eq!(cb.len(), db.len());
            proptest::prop_assert_eq!(ca.intersection_len(&cb), da.intersection_len(&db));
            proptest::prop_assert_eq!(cb.intersection_len(&ca), da.intersection_len(&db));
        }
    }

    #[test]
    fn short_last_shard() {
        let full = BucketBitmap::full(1000);
        assert_eq!(full.len(), 1000);
        let c = full.compact();
        assert_eq!(c.len(), 1000);
        assert!(!c.contains(1000));
        assert_eq!(c.intersection_len(&c), 1000);
    }
}
