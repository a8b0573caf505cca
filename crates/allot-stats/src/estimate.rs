//! Treatment-vs-control estimates from summary statistics: Welch's t-test and interval for the
//! absolute difference, the delta-method interval for the relative lift, and CUPED.
//!
//! Written by hand (the distributions come from `statrs`):
//! - Welch (1947): se² = s₁²/n₁ + s₀²/n₀, Welch–Satterthwaite degrees of freedom
//!   ν = se⁴ / ((s₁²/n₁)²/(n₁−1) + (s₀²/n₀)²/(n₀−1)), two-sided p = 2·P(T_ν > |d/se|),
//!   interval d ± t_{ν,1−α/2}·se. Matches `scipy.stats.ttest_ind(equal_var=False)`.
//! - Delta method for r = ȳ₁/ȳ₀ − 1 with independent arms:
//!   Var(r) ≈ Var(ȳ₁)/ȳ₀² + ȳ₁²·Var(ȳ₀)/ȳ₀⁴, normal interval r ± z_{1−α/2}·se.
//! - CUPED (Deng, Xu, Kohavi, Walker 2013): y' = y − θ(x − x̄), θ = pooled within-arm
//!   covariance / pooled within-arm variance of the covariate, then Welch on y'. θ is treated as
//!   known, as is usual.

use crate::dist::{norm_ppf, t_ppf, t_sf};
use crate::{invalid, Moments, StatsError};
use serde::Serialize;

/// Count, mean and sample variance of one arm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Units.
    pub n: u64,
    /// Mean.
    pub mean: f64,
    /// Sample variance (denominator n − 1).
    pub var: f64,
}

impl Summary {
    /// The summary of `y` in a set of moments.
    pub fn of_y(m: &Moments) -> Summary {
        Summary { n: m.n, mean: m.mean_y, var: m.var_y() }
    }

    /// Variance of the mean, s²/n.
    pub fn var_mean(&self) -> f64 {
        self.var / self.n as f64
    }
}

/// The summary of a ratio metric `Σy/Σx` of one arm (per-unit numerators `y`, denominators `x`):
/// mean `R = ȳ/x̄` and the delta-method (linearised) variance per unit
/// `(s_y² − 2R·s_xy + R²·s_x²)/x̄²`, so that `var/n` is `Var(R)` and [`welch`] and [`relative`]
/// apply to it unchanged (Deng, Knoblich, Lu 2018, §3). NaN when `x̄` is 0.
pub fn ratio(m: &Moments) -> Summary {
    let r = m.mean_y / m.mean_x;
    let var = (m.var_y() - 2.0 * r * m.cov_xy() + r * r * m.var_x()) / (m.mean_x * m.mean_x);
    Summary { n: m.n, mean: r, var: var.max(0.0) }
}

/// A difference of means with Welch's interval and test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Welch {
    /// Treatment mean − control mean.
    pub diff: f64,
    /// Standard error of the difference.
    pub se: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// t statistic.
    pub t: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Two-sided confidence interval at level 1 − α.
    pub ci: [f64; 2],
}

fn check_alpha(alpha: f64) -> Result<(), StatsError> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return invalid("alpha", format!("{alpha} is not in (0, 1)"));
    }
    Ok(())
}

fn check_arm(field: &'static str, s: &Summary) -> Result<(), StatsError> {
    if s.n < 2 {
        return invalid(field, format!("needs at least 2 units, has {}", s.n));
    }
    if !s.mean.is_finite() || !s.var.is_finite() || s.var < 0.0 {
        return invalid(field, "mean or variance is not finite");
    }
    Ok(())
}

/// Welch's unequal-variance t-test and interval of `treatment − control`.
pub fn welch(treatment: &Summary, control: &Summary, alpha: f64) -> Result<Welch, StatsError> {
    check_alpha(alpha)?;
    check_arm("treatment", treatment)?;
    check_arm("control", control)?;
    let (v1, v0) = (treatment.var_mean(), control.var_mean());
    let diff = treatment.mean - control.mean;
    let se2 = v1 + v0;
    if se2 <= 0.0 {
        return invalid("variance", "both arms have zero variance");
    }
    let se = se2.sqrt();
    let df = se2 * se2 / (v1 * v1 / (treatment.n - 1) as f64 + v0 * v0 / (control.n - 1) as f64);
    let t = diff / se;
    let p_value = (2.0 * t_sf(t.abs(), df)).min(1.0);
    let q = t_ppf(1.0 - alpha / 2.0, df);
    Ok(Welch { diff, se, df, t, p_value, ci: [diff - q * se, diff + q * se] })
}

/// A relative lift with its delta-method interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Relative {
    /// ȳ₁/ȳ₀ − 1.
    pub lift: f64,
    /// Delta-method standard error.
    pub se: f64,
    /// Normal interval at level 1 − α.
    pub ci: [f64; 2],
}

/// Relative lift `treatment/control − 1` with the delta-method interval (independent arms).
pub fn relative(treatment: &Summary, control: &Summary, alpha: f64) -> Result<Relative, StatsError> {
    check_alpha(alpha)?;
    check_arm("treatment", treatment)?;
    check_arm("control", control)?;
    if control.mean == 0.0 {
        return invalid("control", "mean is 0; the relative lift is undefined");
    }
    let (m1, m0) = (treatment.mean, control.mean);
    let lift = m1 / m0 - 1.0;
    let var = treatment.var_mean() / (m0 * m0) + m1 * m1 * control.var_mean() / (m0 * m0 * m0 * m0);
    let se = var.sqrt();
    let z = norm_ppf(1.0 - alpha / 2.0);
    Ok(Relative { lift, se, ci: [lift - z * se, lift + z * se] })
}

/// CUPED's θ from the pooled within-arm covariance: Σ c_xy / Σ m2_x over the given arms.
/// 0 when the covariate does not vary (no adjustment).
pub fn cuped_theta<'a>(arms: impl IntoIterator<Item = &'a Moments>) -> f64 {
    let (mut c, mut v) = (0.0, 0.0);
    for m in arms {
        c += m.c_xy;
        v += m.m2_x;
    }
    if v > 0.0 {
        c / v
    } else {
        0.0
    }
}

/// The summary of the CUPED-adjusted metric y − θ(x − x̄) of one arm, where x̄ is any fixed
/// centre (it cancels in differences; the pooled covariate mean is customary).
pub fn cuped_adjust(m: &Moments, theta: f64, centre: f64) -> Summary {
    let var = m.var_y() - 2.0 * theta * m.cov_xy() + theta * theta * m.var_x();
    Summary { n: m.n, mean: m.mean_y - theta * (m.mean_x - centre), var: var.max(0.0) }
}

/// A CUPED-adjusted comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cuped {
    /// The θ used.
    pub theta: f64,
    /// Welch on the adjusted metric.
    pub welch: Welch,
    /// 1 − Var(adjusted difference)/Var(raw difference).
    pub variance_reduction: f64,
}

/// CUPED comparison of two arms with a given θ: Welch on the adjusted metric, and the variance
/// reduction achieved against the unadjusted Welch standard error.
pub fn cuped(treatment: &Moments, control: &Moments, theta: f64, alpha: f64) -> Result<Cuped, StatsError> {
    let raw = welch(&Summary::of_y(treatment), &Summary::of_y(control), alpha)?;
    let centre = 0.0;
    let adj = welch(&cuped_adjust(treatment, theta, centre), &cuped_adjust(control, theta, centre), alpha)?;
    let variance_reduction = 1.0 - (adj.se * adj.se) / (raw.se * raw.se);
    Ok(Cuped { theta, welch: adj, variance_reduction })
}
