//! Power, sample size and minimum detectable effect (MDE) of a treatment-vs-control comparison,
//! for proportions and for means, one- or two-sided, with any number of treatment arms, unequal
//! splits and a CUPED variance-reduction factor. Any two of (sample size, power, MDE) give the
//! third.
//!
//! Written by hand on the normal approximation (the normal quantiles come from `statrs`). With
//! `N` units in total split by weights `w` (control first, `W = Σw`), arm `i` gets `nᵢ = N·wᵢ/W`
//! and the difference δ has standard error `se = √(σ₀²/n₀ + σ₁²/n₁)`, where
//! σ² = p(1 − p) for a proportion `p` (σ₁² at `p + δ`) and `sd²` for a mean, both multiplied by
//! `(1 − ρ²)` when CUPED uses a pre-period covariate with correlation ρ. With `k` treatment arms
//! each comparison is tested at α/k (Bonferroni). Power is
//! `Φ(δ/se − z₁₋α/2) + Φ(−δ/se − z₁₋α/2)` two-sided (both tails, as statsmodels'
//! `NormalIndPower`), `Φ(δ/se − z₁₋α)` one-sided. With several arms the reported power is the
//! smallest over the comparisons and the sample size the largest. Sample size and MDE are found
//! by bisection on the power, which is monotone in both.

use crate::dist::{norm_cdf, norm_ppf};
use crate::{invalid, StatsError};
use serde::{Deserialize, Serialize};

/// One- or two-sided test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Sides {
    /// H₁: δ > 0.
    One,
    /// H₁: δ ≠ 0.
    #[default]
    Two,
}

/// The metric being planned for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Metric {
    /// A conversion rate with its baseline in (0, 1).
    Proportion {
        /// Baseline rate of the control.
        baseline: f64,
    },
    /// A mean with its standard deviation (assumed equal in every arm).
    Mean {
        /// Baseline mean of the control (used only to express relative MDEs).
        mean: f64,
        /// Standard deviation per unit.
        sd: f64,
    },
}

impl Metric {
    /// The control baseline (rate or mean).
    pub fn baseline(&self) -> f64 {
        match *self {
            Metric::Proportion { baseline } => baseline,
            Metric::Mean { mean, .. } => mean,
        }
    }

    fn variances(&self, delta: f64) -> (f64, f64) {
        match *self {
            Metric::Proportion { baseline: p } => {
                let q = (p + delta).clamp(0.0, 1.0);
                (p * (1.0 - p), q * (1.0 - q))
            }
            Metric::Mean { sd, .. } => (sd * sd, sd * sd),
        }
    }

    fn check(&self) -> Result<(), StatsError> {
        match *self {
            Metric::Proportion { baseline } if !(baseline > 0.0 && baseline < 1.0) => {
                invalid("baseline", format!("{baseline} is not in (0, 1)"))
            }
            Metric::Mean { sd, .. } if !(sd > 0.0 && sd.is_finite()) => invalid("sd", format!("{sd} is not positive")),
            Metric::Mean { mean, .. } if !mean.is_finite() => invalid("mean", "is not finite"),
            _ => Ok(()),
        }
    }

    /// The largest absolute effect that keeps the treatment's metric in its domain.
    fn max_delta(&self) -> f64 {
        match *self {
            Metric::Proportion { baseline } => 1.0 - baseline,
            Metric::Mean { .. } => f64::INFINITY,
        }
    }
}

/// The design of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Design {
    /// Significance level of the whole family of comparisons.
    pub alpha: f64,
    /// One- or two-sided.
    pub sides: Sides,
    /// Split weights, control first, then each treatment arm (at least two).
    pub weights: Vec<f64>,
    /// Correlation of the metric with its pre-period covariate (0 without CUPED).
    pub rho: f64,
}

impl Design {
    /// A two-arm, even-split, two-sided design without CUPED.
    pub fn simple(alpha: f64) -> Design {
        Design { alpha, sides: Sides::Two, weights: vec![1.0, 1.0], rho: 0.0 }
    }

    fn check(&self) -> Result<(), StatsError> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return invalid("alpha", format!("{} is not in (0, 1)", self.alpha));
        }
        if self.weights.len() < 2 {
            return invalid("weights", "needs a control and at least one treatment arm");
        }
        if self.weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
            return invalid("weights", "every weight must be positive");
        }
        if !(self.rho > -1.0 && self.rho < 1.0) {
            return invalid("rho", format!("{} is not in (−1, 1)", self.rho));
        }
        Ok(())
    }

    /// α of one comparison: α / (number of treatment arms).
    pub fn alpha_per_comparison(&self) -> f64 {
        self.alpha / (self.weights.len() - 1) as f64
    }

    fn critical(&self) -> f64 {
        let a = self.alpha_per_comparison();
        match self.sides {
            Sides::Two => norm_ppf(1.0 - a / 2.0),
            Sides::One => norm_ppf(1.0 - a),
        }
    }
}

fn check_n(n: f64) -> Result<(), StatsError> {
    if !(n > 0.0 && n.is_finite()) {
        return invalid("sample_size", format!("{n} is not positive"));
    }
    Ok(())
}

fn check_power(p: f64) -> Result<(), StatsError> {
    if !(p > 0.0 && p < 1.0) {
        return invalid("power", format!("{p} is not in (0, 1)"));
    }
    Ok(())
}

fn check_mde(metric: &Metric, d: f64) -> Result<(), StatsError> {
    if !(d > 0.0 && d.is_finite()) {
        return invalid("mde", format!("{d} is not positive"));
    }
    if d >= metric.max_delta() {
        return invalid("mde", format!("{d} takes the rate above 1"));
    }
    Ok(())
}

/// Power of each comparison, unchecked; the minimum over treatment arms.
fn power_raw(metric: &Metric, design: &Design, n_total: f64, delta: f64) -> f64 {
    let w_total: f64 = design.weights.iter().sum();
    let shrink = 1.0 - design.rho * design.rho;
    let (v0, v1) = metric.variances(delta);
    let z = design.critical();
    let n0 = n_total * design.weights[0] / w_total;
    design.weights[1..]
        .iter()
        .map(|w| {
            let n1 = n_total * w / w_total;
            let se = (shrink * (v0 / n0 + v1 / n1)).sqrt();
            let d = delta / se;
            match design.sides {
                Sides::Two => norm_cdf(d - z) + norm_cdf(-d - z),
                Sides::One => norm_cdf(d - z),
            }
        })
        .fold(1.0, f64::min)
}

/// Power of the design with `n_total` units to detect an absolute effect `mde`.
pub fn power(metric: &Metric, design: &Design, n_total: f64, mde: f64) -> Result<f64, StatsError> {
    metric.check()?;
    design.check()?;
    check_n(n_total)?;
    check_mde(metric, mde)?;
    Ok(power_raw(metric, design, n_total, mde))
}

/// Bisection for the root of an increasing function on [lo, hi], in log space when `log`.
fn bisect(mut lo: f64, mut hi: f64, log: bool, f: impl Fn(f64) -> f64) -> f64 {
    for _ in 0..300 {
        let mid = if log { (lo * hi).sqrt() } else { 0.5 * (lo + hi) };
        if f(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
        if (hi - lo) <= 1e-15 * hi.abs() {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Total units needed (real-valued; round up to use) to reach `target` power for an absolute
/// effect `mde`.
pub fn sample_size(metric: &Metric, design: &Design, mde: f64, target: f64) -> Result<f64, StatsError> {
    metric.check()?;
    design.check()?;
    check_mde(metric, mde)?;
    check_power(target)?;
    // With no units the power is α' (the test's size); a target at or below it needs none.
    if target <= design.alpha_per_comparison() {
        return invalid("power", format!("{target} must exceed α per comparison ({})", design.alpha_per_comparison()));
    }
    let f = |n: f64| power_raw(metric, design, n, mde) - target;
    let (lo, mut hi) = (1e-9, 1.0);
    while f(hi) < 0.0 {
        hi *= 2.0;
        if hi > 1e18 {
            return invalid("mde", "is too small to detect with any sample size");
        }
    }
    Ok(bisect(lo, hi, true, f))
}

/// The smallest absolute effect detectable with `n_total` units at `target` power.
pub fn mde(metric: &Metric, design: &Design, n_total: f64, target: f64) -> Result<f64, StatsError> {
    metric.check()?;
    design.check()?;
    check_n(n_total)?;
    check_power(target)?;
    let f = |d: f64| power_raw(metric, design, n_total, d) - target;
    let max = metric.max_delta();
    let mut hi = if max.is_finite() { max * (1.0 - 1e-12) } else { 1.0 };
    if max.is_finite() {
        if f(hi) < 0.0 {
            return invalid("sample_size", "too small: no effect within the rate's range is detectable");
        }
    } else {
        let Metric::Mean { sd, .. } = *metric else { return invalid("metric", "unexpected") };
        hi = sd;
        while f(hi) < 0.0 {
            hi *= 2.0;
        }
    }
    Ok(bisect(0.0, hi, false, f))
}
