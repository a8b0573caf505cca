//! A segment's allocation ([`Bits`]) and Confidence's bloom-filter segments ([`Bloom`]).

use super::raw::RawBloom;
use crate::CompatError;
use allot_core::bucketset::{BucketBitmap, BucketSet};
use allot_core::hash;
use base64::Engine as _;

/// A segment's allocation. allot's compact [`BucketSet`] suits sets drawn shard by shard; a
/// Confidence bitset is a bucket-by-bucket random sample, where nearly every 128-bucket shard is
/// partly held and the compact form would binary-search on every lookup, so such sets stay in
/// the working form [`BucketBitmap`] (one bit test, 125 KB).
#[derive(Debug)]
pub(super) enum Bits {
    Compact(BucketSet),
    BucketBitmap(BucketBitmap),
}

impl Bits {
    /// The set in working form.
    pub(super) fn to_dense(&self) -> BucketBitmap {
        match self {
            Bits::Compact(c) => c.dense(),
            Bits::BucketBitmap(d) => d.clone(),
        }
    }

    pub(super) fn new(dense: BucketBitmap) -> Bits {
        let compact = dense.compact();
        let mut partial = 0usize;
        compact.for_each_mask(|_, m| {
            if m != u128::MAX {
                partial += 1;
            }
        });
        if partial > 64 {
            Bits::BucketBitmap(dense)
        } else {
            Bits::Compact(compact)
        }
    }

    #[inline]
    pub(super) fn contains(&self, b: u32) -> bool {
        match self {
            Bits::Compact(c) => c.contains(b),
            Bits::BucketBitmap(d) => d.contains(b),
        }
    }
}

#[derive(Debug)]
pub(super) struct Bloom {
    bits: Vec<u8>,
    hashes: u32,
    num_bits: u64,
}

impl Bloom {
    pub(super) fn compile(raw: RawBloom, path: &str) -> Result<Option<Bloom>, CompatError> {
        let mut bits = base64::engine::general_purpose::STANDARD
            .decode(raw.data.as_bytes())
            .map_err(|e| CompatError::invalid(format!("{path}.data"), format!("not base64: {e}")))?;
        if raw.strategy != 1 {
            // Confidence drops a filter it cannot use; its segment then needs materializations.
            return Ok(None);
        }
        // Guava writes its longs big-endian; reverse each to read bit i at byte i/8, bit i%8.
        for chunk in bits.chunks_exact_mut(8) {
            chunk.reverse();
        }
        // The resolver reads the counts with `as` (a negative count is a huge one); so does allot.
        Ok(Some(Bloom { bits, hashes: raw.hash_function_count as u32, num_bits: raw.bit_count as u64 }))
    }

    /// Guava's MURMUR128_MITZ_64 membership test, as Confidence reads it.
    pub(super) fn might_contain(&self, key: &str) -> bool {
        let (lo, hi) = hash::murmur3_x64_128(key.as_bytes(), 0);
        let (h1, h2) = (lo as i64, hi as i64);
        let mut combined = h1;
        for _ in 0..self.hashes {
            // With no bits the resolver divides by zero (it panics); nothing is in such a filter.
            let Some(i) = ((combined & i64::MAX) as u64).checked_rem(self.num_bits) else { return false };
            let set = self.bits.get((i / 8) as usize).is_some_and(|byte| (byte >> (i % 8)) & 1 == 1);
            if !set {
                return false;
            }
            combined = combined.wrapping_add(h2);
        }
        true
    }
}
