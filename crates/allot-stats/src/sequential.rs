//! Sequential tests: looking at an experiment's results while it runs without inflating the
//! false-positive rate.
//!
//! **Group-sequential tests with Lan-DeMets alpha spending** (Lan, DeMets 1983). A spending
//! function `α(t)` says how much of the significance level may have been spent by information
//! fraction `t` (the share of the planned maximum sample seen so far); at each look `k` the
//! bound `c_k` is the one at which the probability, under the null hypothesis, of crossing it at
//! look `k` without having crossed any earlier bound is exactly `α(t_k) − α(t_{k−1})`. Because
//! only the fractions seen so far enter, the bounds are computed for the **actual** fractions of
//! the looks, whenever they happen. Spending functions:
//!
//! | [`Spending`] | `α(t)` | behaviour |
//! |---|---|---|
//! | `ObrienFleming` | `2 − 2Φ(z_{1−α/2}/√t)` per tail (α/2 a tail when two-sided) | spends almost nothing early: very high early bounds, the last one close to the fixed-horizon `z` |
//! | `Pocock` | `α·ln(1 + (e − 1)·t)` | spends evenly: nearly constant bounds, a higher last one |
//! | `Power { rho }` | `α·t^ρ` | Kim, DeMets (1987) power family (ρ = 1 Pocock-like, ρ = 3 O'Brien-Fleming-like); spotify-confidence's spending function |
//!
//! The crossing probabilities come from the recursive numerical integration of Armitage,
//! McPherson and Rowe (1969), in the form of Jennison and Turnbull (2000), *Group Sequential
//! Methods with Applications to Clinical Trials*, ch. 19: the density of `Z_k` on the
//! continuation region is carried from look to look on their grid of `6r − 1` points (`r` =
//! [`GRID_R`]), trimmed to the continuation region, with Simpson's rule; each bound is then found
//! by bisection to 1e-12 on `z`. Two-sided tests use symmetric bounds `±c_k` and spend `α` over
//! both tails; one-sided tests (H₁: δ > 0) have an upper bound only.
//!
//! **mSPRT** ([`msprt`], Johari, Koomen, Pekelis, Walsh 2017, *Peeking at A/B tests*): an
//! always-valid p-value and confidence sequence for a difference in means from a normal mixture
//! over the effect, `θ ~ N(0, τ²)`, valid however often and whenever one looks.

use crate::dist::{norm_cdf, norm_ppf, norm_sf};
use crate::power::Sides;
use crate::{invalid, StatsError};
use serde::{Deserialize, Serialize};

/// Grid parameter `r` of Jennison and Turnbull's grid (ch. 19.2: 6r − 1 points before
/// trimming). They report r = 16 accurate to about 1e-6 in probability; 32 gives ≈ 1e-10.
pub const GRID_R: usize = 32;

/// An alpha-spending function.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spending {
    /// Lan-DeMets O'Brien-Fleming type: `α(t) = 2 − 2Φ(z_{1−α/2}/√t)` per tail.
    ObrienFleming,
    /// Lan-DeMets Pocock type: `α(t) = α·ln(1 + (e − 1)t)`.
    Pocock,
    /// Kim-DeMets power family: `α(t) = α·t^ρ`.
    Power {
        /// The exponent ρ > 0.
        rho: f64,
    },
}

impl Spending {
    /// α spent by information fraction `t` (clamped to [0, 1]: nothing before the start, all
    /// of it from the planned maximum on), over both tails when two-sided. As in ldbounds and
    /// gsDesign, a two-sided test spends `α/2` per tail by the function (which only matters for
    /// O'Brien-Fleming: `4 − 4Φ(z_{1−α/4}/√t)` in all).
    pub fn spent(&self, alpha: f64, sides: Sides, t: f64) -> f64 {
        let tails = tails(sides);
        tails * self.spent_per_tail(alpha / tails, t)
    }

    fn spent_per_tail(&self, a: f64, t: f64) -> f64 {
        let t = t.clamp(0.0, 1.0);
        if t <= 0.0 {
            return 0.0;
        }
        if t >= 1.0 {
            return a;
        }
        match *self {
            Spending::ObrienFleming => 2.0 * norm_sf(norm_ppf(1.0 - a / 2.0) / t.sqrt()),
            Spending::Pocock => a * (1.0 + (std::f64::consts::E - 1.0) * t).ln(),
            Spending::Power { rho } => a * t.powf(rho),
        }
    }

    fn check(&self) -> Result<(), StatsError> {
        match *self {
            Spending::Power { rho } if !(rho > 0.0 && rho.is_finite()) => {
                invalid("rho", format!("{rho} is not positive"))
            }
            _ => Ok(()),
        }
    }
}

/// The bound of one look.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bound {
    /// Information fraction of the look.
    pub fraction: f64,
    /// α spent up to and including this look, `α(t)`.
    pub spent: f64,
    /// α spent at this look, `α(t_k) − α(t_{k−1})`.
    pub increment: f64,
    /// The bound on `z` (upper; the lower is `−z` when two-sided). Infinite (JSON `null`) when
    /// the α to spend at this look is 0 in floating point (it cannot reject).
    pub z: f64,
    /// The nominal p-value threshold of the look: `P(|Z| ≥ z)` two-sided, `P(Z ≥ z)` one-sided.
    pub nominal_alpha: f64,
}

fn check_alpha(alpha: f64) -> Result<(), StatsError> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return invalid("alpha", format!("{alpha} is not in (0, 1)"));
    }
    Ok(())
}

fn check_fractions(fractions: &[f64]) -> Result<(), StatsError> {
    if fractions.is_empty() {
        return invalid("fractions", "needs at least one look");
    }
    let mut prev = 0.0;
    for (i, &t) in fractions.iter().enumerate() {
        if !(t > prev && t <= 1.0) {
            return invalid(
                "fractions",
                format!("look {}: {t} must be in (0, 1] and above the previous look's {prev}", i + 1),
            );
        }
        prev = t;
    }
    Ok(())
}

/// One look's grid: points and Simpson weights over the continuation region `(lo, hi)` (on the
/// `z` scale) for a look whose `Z` has mean `mean`; Jennison and Turnbull's `6r − 1` points,
/// trimmed to the region with its ends added, plus the midpoints for Simpson's rule.
fn grid(mean: f64, lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let r = GRID_R as f64;
    let mut x: Vec<f64> = (1..6 * GRID_R)
        .map(|i| {
            let i = i as f64;
            if i < r {
                mean - 3.0 - 4.0 * (r / i).ln()
            } else if i <= 5.0 * r {
                mean - 3.0 + 3.0 * (i - r) / (2.0 * r)
            } else {
                mean + 3.0 + 4.0 * (r / (6.0 * r - i)).ln()
            }
        })
        .collect();
    let (first, last) = (x[0], x[x.len() - 1]);
    let (lo, hi) = (lo.max(first), hi.min(last));
    x.retain(|&v| v > lo && v < hi);
    let mut odd = Vec::with_capacity(x.len() + 2);
    odd.push(lo);
    odd.extend(x);
    odd.push(hi);
    let mut z = Vec::with_capacity(2 * odd.len() - 1);
    let mut w = vec![0.0; 2 * odd.len() - 1];
    for (i, pair) in odd.windows(2).enumerate() {
        let d = pair[1] - pair[0];
        z.push(pair[0]);
        z.push(0.5 * (pair[0] + pair[1]));
        w[2 * i] += d / 6.0;
        w[2 * i + 1] += 4.0 * d / 6.0;
        w[2 * i + 2] += d / 6.0;
    }
    z.push(hi);
    (z, w)
}

fn norm_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// The sub-density of `Z` at the last look, on the continuation region (weights folded in):
/// `points[i]` with mass `mass[i]`, for the transition to the next look.
struct Carried {
    fraction: f64,
    points: Vec<f64>,
    mass: Vec<f64>,
}

impl Carried {
    /// `Z₁` on `(lo, hi)` with drift `eta` (`E[Z_k] = eta·√t_k`).
    fn first(t: f64, lo: f64, hi: f64, eta: f64) -> Carried {
        let mean = eta * t.sqrt();
        let (z, w) = grid(mean, lo, hi);
        let mass = z.iter().zip(&w).map(|(z, w)| w * norm_pdf(z - mean)).collect();
        Carried { fraction: t, points: z, mass }
    }

    /// Probability of reaching look `t` from here and having `Z_t ≥ upper` plus (when given)
    /// `Z_t ≤ lower`.
    fn exit(&self, t: f64, upper: f64, lower: Option<f64>, eta: f64) -> f64 {
        let (s0, s1, d) = (self.fraction.sqrt(), t.sqrt(), t - self.fraction);
        let sd = d.sqrt();
        self.points
            .iter()
            .zip(&self.mass)
            .map(|(z, m)| {
                let mu = z * s0 + eta * d;
                let up = if upper.is_finite() { norm_sf((upper * s1 - mu) / sd) } else { 0.0 };
                let low = lower.filter(|l| l.is_finite()).map_or(0.0, |l| norm_cdf((l * s1 - mu) / sd));
                m * (up + low)
            })
            .sum()
    }

    /// The sub-density at look `t` on `(lo, hi)`.
    fn next(&self, t: f64, lo: f64, hi: f64, eta: f64) -> Carried {
        let (s0, s1, d) = (self.fraction.sqrt(), t.sqrt(), t - self.fraction);
        let sd = d.sqrt();
        let (z, w) = grid(eta * s1, lo, hi);
        let mass = z
            .iter()
            .zip(&w)
            .map(|(zk, wk)| {
                let f: f64 = self
                    .points
                    .iter()
                    .zip(&self.mass)
                    .map(|(zj, m)| m * norm_pdf((zk * s1 - zj * s0 - eta * d) / sd))
                    .sum();
                wk * f * s1 / sd
            })
            .collect();
        Carried { fraction: t, points: z, mass }
    }
}

/// Number of tails of a test.
fn tails(sides: Sides) -> f64 {
    match sides {
        Sides::Two => 2.0,
        Sides::One => 1.0,
    }
}

/// The lower bound that goes with upper bound `c`: `−c` two-sided, none one-sided.
fn lower_of(c: f64, sides: Sides) -> Option<f64> {
    match sides {
        Sides::Two => Some(-c),
        Sides::One => None,
    }
}

/// The continuation region of a look with upper bound `c`.
fn region(c: f64, sides: Sides) -> (f64, f64) {
    (lower_of(c, sides).unwrap_or(f64::NEG_INFINITY), c)
}

/// The probability under drift `eta` (`E[Z_k] = eta·√t_k`; 0 is the null hypothesis) of first
/// crossing a bound at each look: `bounds[k]` upper, `−bounds[k]` too when two-sided.
pub fn exit_probabilities(fractions: &[f64], bounds: &[f64], sides: Sides, eta: f64) -> Result<Vec<f64>, StatsError> {
    check_fractions(fractions)?;
    if bounds.len() != fractions.len() {
        return invalid("bounds", format!("{} bounds for {} looks", bounds.len(), fractions.len()));
    }
    if let Some(b) = bounds.iter().find(|b| b.is_nan() || **b < 0.0) {
        return invalid("bounds", format!("{b} is not a non-negative bound"));
    }
    let mut out = Vec::with_capacity(fractions.len());
    let mut carried: Option<Carried> = None;
    for (&t, &c) in fractions.iter().zip(bounds) {
        let (lo, hi) = region(c, sides);
        let p = match &carried {
            None => {
                let mean = eta * t.sqrt();
                let up = if c.is_finite() { norm_sf(c - mean) } else { 0.0 };
                up + lower_of(c, sides).filter(|l| l.is_finite()).map_or(0.0, |l| norm_cdf(l - mean))
            }
            Some(k) => k.exit(t, c, lower_of(c, sides), eta),
        };
        out.push(p);
        carried = Some(match &carried {
            None => Carried::first(t, lo, hi, eta),
            Some(k) => k.next(t, lo, hi, eta),
        });
    }
    Ok(out)
}

/// The bounds of a group-sequential test at level `alpha` for looks at information fractions
/// `fractions` (increasing, in (0, 1]), spending `alpha` by `spending`.
pub fn boundaries(spending: Spending, alpha: f64, sides: Sides, fractions: &[f64]) -> Result<Vec<Bound>, StatsError> {
    check_alpha(alpha)?;
    spending.check()?;
    check_fractions(fractions)?;
    let tails = tails(sides);
    let mut out: Vec<Bound> = Vec::with_capacity(fractions.len());
    let mut carried: Option<Carried> = None;
    let mut prev_spent = 0.0;
    for &t in fractions {
        let spent = spending.spent(alpha, sides, t);
        let increment = (spent - prev_spent).max(0.0);
        // Only an increment that underflows (O'Brien-Fleming spends ≈ 1e-365 at t = 0.003) or a
        // spending function that stopped rising leaves no bound; the tail quantile keeps tiny
        // increments exact (a bound of 25 at t = 0.008).
        let c = if increment <= 0.0 {
            f64::INFINITY
        } else {
            match &carried {
                None => -norm_ppf(increment / tails),
                Some(k) => {
                    // The exit probability falls as the bound rises: bisection on [0, 40].
                    let f = |c: f64| k.exit(t, c, lower_of(c, sides), 0.0) - increment;
                    let (mut lo, mut hi) = (0.0_f64, 40.0_f64);
                    if f(lo) <= 0.0 {
                        0.0
                    } else {
                        while hi - lo > 1e-13 {
                            let mid = 0.5 * (lo + hi);
                            if f(mid) > 0.0 {
                                lo = mid;
                            } else {
                                hi = mid;
                            }
                        }
                        0.5 * (lo + hi)
                    }
                }
            }
        };
        let nominal_alpha = if c.is_finite() { tails * norm_sf(c) } else { 0.0 };
        out.push(Bound { fraction: t, spent, increment, z: c, nominal_alpha });
        let (lo, hi) = region(c, sides);
        carried = Some(match &carried {
            None => Carried::first(t, lo, hi, 0.0),
            Some(k) => k.next(t, lo, hi, 0.0),
        });
        prev_spent = spent;
    }
    Ok(out)
}

/// One look of an mSPRT.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Msprt {
    /// The mixture likelihood ratio `Λ` of this look against δ = 0.
    pub lambda: f64,
    /// The always-valid p-value: `min(1, 1/Λ)`, and never above an earlier look's.
    pub p_value: f64,
    /// The always-valid confidence sequence at 1 − α: this look's interval intersected with the
    /// earlier ones.
    pub ci: [f64; 2],
}

/// The mSPRT of a difference in means at successive looks (`(diff, se)` each, the estimate and
/// its standard error on all the data so far), with a normal mixture `δ ~ N(0, τ²)` over the
/// effect (Johari et al. 2017, eq. for the normal case). With `V = se²`:
/// `Λ = √(V/(V+τ²))·exp(τ²·d²/(2V(V+τ²)))`, the p-value `min(1, 1/Λ)` (running minimum) and the
/// interval `d ± √(2V(V+τ²)/τ² · (ln(1/α) + ½·ln((V+τ²)/V)))` (running intersection). The test
/// rejects δ = 0 at a look exactly when 0 is outside the confidence sequence then.
pub fn msprt(looks: &[(f64, f64)], tau: f64, alpha: f64) -> Result<Vec<Msprt>, StatsError> {
    check_alpha(alpha)?;
    if !(tau > 0.0 && tau.is_finite()) {
        return invalid("tau", format!("{tau} is not positive"));
    }
    let t2 = tau * tau;
    let mut out: Vec<Msprt> = Vec::with_capacity(looks.len());
    for (i, &(d, se)) in looks.iter().enumerate() {
        if !(d.is_finite() && se > 0.0 && se.is_finite()) {
            return invalid("looks", format!("look {}: difference {d} with standard error {se}", i + 1));
        }
        let v = se * se;
        let ln_lambda = 0.5 * (v / (v + t2)).ln() + t2 * d * d / (2.0 * v * (v + t2));
        let half = (2.0 * v * (v + t2) / t2 * ((1.0 / alpha).ln() + 0.5 * ((v + t2) / v).ln())).sqrt();
        let mut p = (-ln_lambda.max(0.0)).exp();
        let mut ci = [d - half, d + half];
        if let Some(prev) = out.last() {
            p = p.min(prev.p_value);
            ci = [ci[0].max(prev.ci[0]), ci[1].min(prev.ci[1])];
        }
        out.push(Msprt { lambda: ln_lambda.exp(), p_value: p, ci });
    }
    Ok(out)
}

/// The inflation factor of a group-sequential design (Jennison, Turnbull 2000, ch. 7): how many
/// times the fixed-horizon sample its planned maximum must be to keep the fixed-horizon test's
/// power `power` at the same α, with looks at `fractions` (the last at 1). The fixed-horizon
/// sample sized for `power` (`crate::power::sample_size`, `allot capacity`'s `units_needed`)
/// gives the drift `η = z_{1−α/tails} + z_{power}` at the full sample; the factor `R` is the one
/// at which the sequential test with drift `√R·η` has the fixed test's exact power at `η`
/// (bisection to 1e-10; `R ≥ 1`, and 1 for one look).
pub fn inflation(
    spending: Spending,
    alpha: f64,
    sides: Sides,
    fractions: &[f64],
    power: f64,
) -> Result<f64, StatsError> {
    if !(power > 0.0 && power < 1.0) {
        return invalid("power", format!("{power} is not in (0, 1)"));
    }
    if fractions.last() != Some(&1.0) {
        return invalid("fractions", "the last planned look must be at the planned maximum (1)");
    }
    let b: Vec<f64> = boundaries(spending, alpha, sides, fractions)?.iter().map(|b| b.z).collect();
    let fixed_z = norm_ppf(1.0 - alpha / tails(sides));
    let eta = fixed_z + norm_ppf(power);
    let target: f64 = exit_probabilities(&[1.0], &[fixed_z], sides, eta)?.iter().sum();
    let power_at = |r: f64| -> Result<f64, StatsError> {
        Ok(exit_probabilities(fractions, &b, sides, r.sqrt() * eta)?.iter().sum::<f64>())
    };
    let (mut lo, mut hi) = (1.0_f64, 2.0_f64);
    while power_at(hi)? < target {
        hi *= 2.0;
        if hi > 1e6 {
            return invalid("power", "cannot be reached by this design");
        }
    }
    if power_at(lo)? >= target {
        return Ok(1.0);
    }
    while hi - lo > 1e-10 {
        let mid = 0.5 * (lo + hi);
        if power_at(mid)? < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(0.5 * (lo + hi))
}
