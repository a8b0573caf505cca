//! Sample-ratio mismatch: Pearson's chi-square goodness-of-fit test of the observed unit counts per
//! variant against the configured split (written by hand; the chi-square tail comes from
//! `statrs`). Matches `scipy.stats.chisquare(counts, f_exp)`.

use crate::dist::chi2_sf;
use crate::{invalid, StatsError};
use serde::Serialize;

/// The p-value below which a mismatch is reported as a warning.
pub const SRM_THRESHOLD: f64 = 0.001;

/// The result of an SRM test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Srm {
    /// Σ (observed − expected)² / expected.
    pub chi2: f64,
    /// Degrees of freedom: variants − 1.
    pub df: f64,
    /// P(χ²_df ≥ chi2).
    pub p_value: f64,
    /// Expected counts under the split.
    pub expected: Vec<f64>,
}

/// Tests `counts` against `weights` (any positive scale; normalised here).
pub fn srm(counts: &[u64], weights: &[f64]) -> Result<Srm, StatsError> {
    if counts.len() != weights.len() {
        return invalid("weights", format!("{} weights for {} variants", weights.len(), counts.len()));
    }
    if counts.len() < 2 {
        return invalid("counts", "needs at least two variants");
    }
    if weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
        return invalid("weights", "every weight must be positive");
    }
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return invalid("counts", "no units");
    }
    let wsum: f64 = weights.iter().sum();
    let expected: Vec<f64> = weights.iter().map(|w| total as f64 * w / wsum).collect();
    let chi2 = counts.iter().zip(&expected).map(|(&o, &e)| (o as f64 - e).powi(2) / e).sum::<f64>();
    let df = (counts.len() - 1) as f64;
    Ok(Srm { chi2, df, p_value: chi2_sf(chi2, df), expected })
}
