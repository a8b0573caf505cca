//! The variant split: an independent hash of the experiment's own salt and the unit id over
//! [`SPLIT_BUCKETS`], cut into consecutive ranges by weight. Because the salt is the
//! experiment's own, the units of a reused bucket spread evenly over the new experiment's
//! variants: nothing carries over from the bucket's previous owner.

use crate::config::Variant;
use crate::hash;
use indexmap::IndexMap;

/// Resolution of the split: variant shares are exact to one part in a million.
pub const SPLIT_BUCKETS: u32 = 1_000_000;

/// A compiled split: variant names and the exclusive upper bound of each one's range.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Salt hashed with the unit id.
    pub salt: String,
    /// Variant names in order.
    pub names: Vec<String>,
    /// Upper bounds, ascending; the last is [`SPLIT_BUCKETS`].
    pub bounds: Vec<u32>,
}

impl Split {
    /// Builds the ranges: variant `i` holds `[floor(S·W_<i / W), floor(S·W_≤i / W))`.
    pub fn new(salt: &str, variants: &IndexMap<String, Variant>) -> Split {
        let total: u64 = variants.values().map(|v| u64::from(v.weight)).sum::<u64>().max(1);
        let mut cum = 0u64;
        let mut bounds = Vec::with_capacity(variants.len());
        for v in variants.values() {
            cum += u64::from(v.weight);
            bounds.push((cum * u64::from(SPLIT_BUCKETS) / total) as u32);
        }
        Split { salt: salt.to_string(), names: variants.keys().cloned().collect(), bounds }
    }

    /// The variant index for a split bucket.
    #[inline]
    pub fn variant_of_bucket(&self, b: u32) -> usize {
        // Few variants: a linear scan beats a binary search.
        self.bounds.iter().position(|&u| b < u).unwrap_or(self.bounds.len().saturating_sub(1))
    }

    /// The variant index for a unit.
    #[inline]
    pub fn variant(&self, unit: &str) -> usize {
        self.variant_of_bucket(hash::bucket(&self.salt, unit, SPLIT_BUCKETS))
    }

    /// Share of the split space in variant `i`.
    pub fn share(&self, i: usize) -> f64 {
        let lo = if i == 0 { 0 } else { self.bounds[i - 1] };
        f64::from(self.bounds[i] - lo) / f64::from(SPLIT_BUCKETS)
    }

    /// Exact share of units whose variant (by name) differs between `self` and `new`: over the
    /// ranges when the salt is the same, and `1 − Σ p_old(v)·p_new(v)` (independent hashes)
    /// when it changed.
    pub fn moved_share(&self, new: &Split) -> f64 {
        if self.salt != new.salt {
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
        moved as f64 / f64::from(SPLIT_BUCKETS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(ws: &[(&str, u32)]) -> IndexMap<String, Variant> {
        ws.iter().map(|(n, w)| (n.to_string(), Variant { weight: *w, value: None })).collect()
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
}
