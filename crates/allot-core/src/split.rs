//! The variant split: an independent hash of the experiment's own salt and the unit id over
//! [`SPLIT_BUCKETS`], cut into consecutive ranges by weight. Because the salt is the
//! experiment's own, the units of a reused bucket spread evenly over the new experiment's
//! variants: nothing carries over from the bucket's previous owner.
//!
//! Variants may instead carry explicit ranges (`ranges` in the file, written by
//! `allot compat … import`): the split is then `bucket(salt, unit, N)` over the `N` split
//! buckets the ranges tile, looked up in them, which is exactly Confidence's rule split.

use crate::config::{BucketHash, Experiment, Variant};
use crate::hash;
use indexmap::IndexMap;

/// Resolution of the split: variant shares are exact to one part in a million.
pub const SPLIT_BUCKETS: u32 = 1_000_000;

/// A compiled split: variant names and consecutive ranges of split buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Salt hashed with the unit id.
    pub salt: String,
    /// Variant names in order.
    pub names: Vec<String>,
    /// Exclusive upper bounds of consecutive ranges, ascending; the last is [`Split::buckets`].
    pub bounds: Vec<u32>,
    /// The variant of each range (an index into `names`); empty when range `i` is variant `i`
    /// (the split by weight).
    pub of: Vec<u16>,
    /// Split buckets: [`SPLIT_BUCKETS`], or the `N` explicit ranges tile.
    pub buckets: u32,
    /// The hash: allot's `bucket(salt, unit, N)`, or Amplitude's `amplitude_hash(salt, unit) / 100`.
    pub hash: BucketHash,
}

impl Split {
    /// Builds the ranges: by weight, variant `i` holds `[floor(S·W_<i / W), floor(S·W_≤i / W))`;
    /// with explicit ranges (validated to tile `0..N`), those.
    pub fn new(salt: &str, variants: &IndexMap<String, Variant>) -> Split {
        let names = variants.keys().cloned().collect();
        if variants.values().any(|v| v.ranges.is_some()) {
            let mut ranges: Vec<(u32, u32, u16)> = variants
                .values()
                .enumerate()
                .flat_map(|(i, v)| v.ranges.iter().flatten().map(move |(lo, hi)| (*lo, *hi, i as u16)))
                .collect();
            ranges.sort_unstable();
            let buckets = ranges.last().map_or(1, |r| r.1);
            return Split {
                salt: salt.to_string(),
                names,
                bounds: ranges.iter().map(|r| r.1).collect(),
                of: ranges.iter().map(|r| r.2).collect(),
                buckets,
                hash: BucketHash::Allot,
            };
        }
        let total: u64 = variants.values().map(|v| u64::from(v.weight)).sum::<u64>().max(1);
        let mut cum = 0u64;
        let mut bounds = Vec::with_capacity(variants.len());
        for v in variants.values() {
            cum += u64::from(v.weight);
            bounds.push((cum * u64::from(SPLIT_BUCKETS) / total) as u32);
        }
        Split { salt: salt.to_string(), names, bounds, of: vec![], buckets: SPLIT_BUCKETS, hash: BucketHash::Allot }
    }

    /// The split of an experiment: its salt, its variants and its `split_hash`.
    pub fn of(e: &Experiment) -> Split {
        Split { hash: e.split_hash, ..Split::new(&e.salt, &e.variants) }
    }

    /// The variant index for a split bucket.
    #[inline]
    pub fn variant_of_bucket(&self, b: u32) -> usize {
        // Few ranges: a linear scan beats a binary search.
        let range = if self.bounds.len() <= 16 {
            self.bounds.iter().position(|&u| b < u).unwrap_or(self.bounds.len().saturating_sub(1))
        } else {
            self.bounds.partition_point(|&u| u <= b).min(self.bounds.len().saturating_sub(1))
        };
        match self.of.get(range) {
            Some(&v) => usize::from(v),
            None => range,
        }
    }

    /// The variant index for a unit.
    #[inline]
    pub fn variant(&self, unit: &str) -> usize {
        let b = match self.hash {
            BucketHash::Allot => hash::bucket(&self.salt, unit, self.buckets),
            // Validation makes the ranges tile exactly 0..AMPLITUDE_SPLIT_BUCKETS.
            BucketHash::Amplitude => hash::amplitude_hash(&self.salt, unit) / 100,
        };
        self.variant_of_bucket(b)
    }

    /// Share of the split space in variant `i`.
    pub fn share(&self, i: usize) -> f64 {
        let mut held = 0u64;
        let mut lo = 0u32;
        for (k, &hi) in self.bounds.iter().enumerate() {
            if self.of.get(k).map_or(k, |&v| usize::from(v)) == i {
                held += u64::from(hi - lo);
            }
            lo = hi;
        }
        held as f64 / f64::from(self.buckets.max(1))
    }

    /// Exact share of units whose variant (by name) differs between `self` and `new`: over the
    /// ranges when the salt and the split buckets are the same, and `1 − Σ p_old(v)·p_new(v)`
    /// (independent hashes) when either changed.
    pub fn moved_share(&self, new: &Split) -> f64 {
        if self.salt != new.salt || self.buckets != new.buckets || self.hash != new.hash {
            let same: f64 = self
                .names
                .iter()
                .enumerate()
                .filter_map(|(i, n)| new.names.iter().position(|m| m == n).map(|j| self.share(i) * new.share(j)))
                .sum();
            return 1.0 - same;
        }
        // Merge the two sets of range boundaries and compare names piece by piece.
        let mut cuts: Vec<u32> = self.bounds.iter().chain(&new.bounds).copied().collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut moved = 0u64;
        let mut lo = 0u32;
        for hi in cuts {
            if hi > lo {
                let a = &self.names[self.variant_of_bucket(lo)];
                let b = &new.names[new.variant_of_bucket(lo)];
                if a != b {
                    moved += u64::from(hi - lo);
                }
            }
            lo = hi;
        }
        moved as f64 / f64::from(self.buckets.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(ws: &[(&str, u32)]) -> IndexMap<String, Variant> {
        ws.iter().map(|(n, w)| (n.to_string(), Variant { weight: *w, value: None, ranges: None })).collect()
    }

    #[test]
    fn moved_share_of_reweights() {
        let a = Split::new("s", &vars(&[("c", 1), ("t", 1)]));
        assert_eq!(a.moved_share(&a), 0.0);
        let b = Split::new("s", &vars(&[("c", 1), ("t", 1), ("t2", 1)]));
        // [0,1/3) c, [1/3,1/2) c→t, [1/2,2/3) t, [2/3,1) t→t2.
        assert!((a.moved_share(&b) - 0.5).abs() < 1e-5);
        let c = Split::new("other", &vars(&[("c", 1), ("t", 1)]));
        assert!((a.moved_share(&c) - 0.5).abs() < 1e-9);
    }

    fn ranged(rs: &[(&str, &[(u32, u32)])]) -> IndexMap<String, Variant> {
        rs.iter()
            .map(|(n, r)| {
                let held = r.iter().map(|(lo, hi)| hi - lo).sum();
                (n.to_string(), Variant { weight: held, value: None, ranges: Some(r.to_vec()) })
            })
            .collect()
    }

    #[test]
    fn explicit_ranges_are_looked_up_over_their_own_bucket_count() {
        // Confidence's rule split: bucket(salt, unit, 10) in [0,3) → a, [3,5) and [8,10) → b, [5,8) → c.
        let s = Split::new("seg", &ranged(&[("a", &[(0, 3)]), ("b", &[(8, 10), (3, 5)]), ("c", &[(5, 8)])]));
        assert_eq!(s.buckets, 10);
        let want = [0, 0, 0, 1, 1, 2, 2, 2, 1, 1];
        for (b, w) in want.iter().enumerate() {
            assert_eq!(s.variant_of_bucket(b as u32), *w, "bucket {b}");
        }
        for u in ["u1", "u2", "u3", "alice", "bob"] {
            assert_eq!(s.variant(u), want[hash::bucket("seg", u, 10) as usize], "{u}");
        }
        assert!((s.share(1) - 0.4).abs() < 1e-12);
        // Many ranges take the binary search; it must give the same answers.
        let stripes: Vec<(u32, u32)> = (0..40).map(|i| (i * 2, i * 2 + 1)).collect();
        let odd: Vec<(u32, u32)> = (0..40).map(|i| (i * 2 + 1, i * 2 + 2)).collect();
        let z = Split::new("seg", &ranged(&[("even", &stripes), ("odd", &odd)]));
        for b in 0..80 {
            assert_eq!(z.variant_of_bucket(b), (b % 2) as usize, "bucket {b}");
        }
        // Moving one range's variant moves exactly its share.
        let t = Split::new("seg", &ranged(&[("a", &[(0, 3)]), ("b", &[(8, 10), (3, 4)]), ("c", &[(4, 8)])]));
        assert!((s.moved_share(&t) - 0.1).abs() < 1e-12);
    }
}
