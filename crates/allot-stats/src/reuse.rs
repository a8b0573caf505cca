//! Bucket-reuse health: is an experiment's sample like the population?
//!
//! A program of exclusive experiments draws each new experiment from the buckets the others left
//! free, and reuses the buckets of stopped ones. Schultzberg, Kjellin and Rydberg (2020),
//! *Statistical properties of exclusive and non-exclusive online randomized experiments using
//! bucket reuse*, show that this restricted sampling keeps each experiment's internal validity
//! (its variant split is an independent hash) but can bias it against the population: its units
//! can differ on pre-period behaviour, and on past treatment — they may have been, more or less
//! often than the population, in experiments that ran before on the same buckets, whose
//! carry-over effects then shift the new experiment's baseline. Instead of assuming that does not
//! happen, this measures it: the units of the experiment's drawn buckets against the rest of the
//! population,
//!
//! - on each pre-period metric: the difference of means (Welch, with its interval and p-value)
//!   and the standardized mean difference `d / √((s₁² + s₀²)/2)`;
//! - on each earlier experiment whose buckets were released before this one was drawn: the share
//!   of the experiment's units that had been in it against the share of the rest, the difference
//!   with its Wald interval and a pooled two-proportion z-test.
//!
//! A warning is raised for a p-value below [`P_WARN`] or a standardized difference above
//! [`SMD_WARN`] (the usual threshold of "meaningful imbalance" in observational studies).
//! Which units are in which buckets is the caller's: the CLI computes it from the recorded state
//! (`allot_core::history`), this module only accumulates and tests.

use crate::dist::{norm_ppf, norm_sf};
use crate::estimate::{welch, Summary};
use crate::Moments;
use serde::Serialize;

/// p-value below which an imbalance is flagged.
pub const P_WARN: f64 = 0.001;

/// Standardized mean difference above which a pre-period imbalance is flagged.
pub const SMD_WARN: f64 = 0.1;

/// One pre-period metric, inside against outside.
#[derive(Debug, Clone, Serialize)]
pub struct Balance {
    /// The metric.
    pub metric: String,
    /// Mean over the experiment's units.
    pub mean_in: f64,
    /// Mean over the rest of the population.
    pub mean_out: f64,
    /// `mean_in − mean_out`, when computable.
    pub diff: Option<f64>,
    /// Its interval at 1 − α.
    pub ci: Option<[f64; 2]>,
    /// Welch's two-sided p-value.
    pub p_value: Option<f64>,
    /// Standardized mean difference.
    pub smd: Option<f64>,
    /// Why it could not be computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One earlier experiment whose buckets were reused.
#[derive(Debug, Clone, Serialize)]
pub struct PastTreatment {
    /// The earlier experiment.
    pub experiment: String,
    /// The experiment's units that had been in it.
    pub units_in: u64,
    /// The rest's units that had been in it.
    pub units_out: u64,
    /// Share of the experiment's units that had been in it.
    pub share_in: f64,
    /// Share of the rest of the population.
    pub share_out: f64,
    /// `share_in − share_out`.
    pub diff: f64,
    /// Wald interval at 1 − α.
    pub ci: [f64; 2],
    /// Pooled two-proportion z-test, two-sided.
    pub p_value: f64,
}

/// The health of one experiment's sample.
#[derive(Debug, Clone, Serialize)]
pub struct ReuseHealth {
    /// The experiment.
    pub experiment: String,
    /// Units of the population in its buckets.
    pub units_in: u64,
    /// Units of the population outside them.
    pub units_out: u64,
    /// Per pre-period metric.
    pub pre_period: Vec<Balance>,
    /// Per earlier experiment whose buckets it reused.
    pub past_treatment: Vec<PastTreatment>,
    /// The imbalances flagged.
    pub warnings: Vec<String>,
    /// Why the health could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ReuseHealth {
    /// An experiment whose health cannot be measured, with why.
    pub fn unavailable(experiment: &str, why: impl Into<String>) -> ReuseHealth {
        ReuseHealth {
            experiment: experiment.to_string(),
            units_in: 0,
            units_out: 0,
            pre_period: vec![],
            past_treatment: vec![],
            warnings: vec![],
            error: Some(why.into()),
        }
    }
}

/// Streams the population's units, inside or outside one experiment's buckets.
#[derive(Debug, Clone)]
pub struct ReuseAcc {
    metrics: Vec<String>,
    priors: Vec<String>,
    moments: [Vec<Moments>; 2],
    prior_counts: [Vec<u64>; 2],
    units: [u64; 2],
}

impl ReuseAcc {
    /// An accumulator over the pre-period `metrics` and the earlier experiments `priors`.
    pub fn new(metrics: Vec<String>, priors: Vec<String>) -> ReuseAcc {
        let (nm, np) = (metrics.len(), priors.len());
        ReuseAcc {
            metrics,
            priors,
            moments: [vec![Moments::default(); nm], vec![Moments::default(); nm]],
            prior_counts: [vec![0; np], vec![0; np]],
            units: [0; 2],
        }
    }

    /// Adds a unit: whether it is in the experiment's buckets, its value of each metric (in the
    /// order given to [`ReuseAcc::new`]; missing values are 0) and whether it had been in each
    /// earlier experiment.
    pub fn push(&mut self, inside: bool, values: &[f64], priors: &[bool]) {
        let side = usize::from(!inside);
        self.units[side] += 1;
        for (i, m) in self.moments[side].iter_mut().enumerate() {
            m.push(values.get(i).copied().unwrap_or(0.0), 0.0);
        }
        for (c, &p) in self.prior_counts[side].iter_mut().zip(priors) {
            *c += u64::from(p);
        }
    }

    /// The tests at level `alpha`.
    pub fn finish(&self, experiment: &str, alpha: f64) -> ReuseHealth {
        let mut warnings = vec![];
        let pre_period = self
            .metrics
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (a, b) = (Summary::of_y(&self.moments[0][i]), Summary::of_y(&self.moments[1][i]));
                let mut out = Balance {
                    metric: name.clone(),
                    mean_in: a.mean,
                    mean_out: b.mean,
                    diff: None,
                    ci: None,
                    p_value: None,
                    smd: None,
                    error: None,
                };
                match welch(&a, &b, alpha) {
                    Ok(w) => {
                        let smd = w.diff / ((a.var + b.var) / 2.0).sqrt();
                        out.diff = Some(w.diff);
                        out.ci = Some(w.ci);
                        out.p_value = Some(w.p_value);
                        out.smd = smd.is_finite().then_some(smd);
                        if w.p_value < P_WARN || smd.abs() > SMD_WARN {
                            warnings.push(format!(
                                "pre-period {name}: the experiment's units differ from the population's by {:.4} (standardized {:.3}, p = {:.1e})",
                                w.diff, smd, w.p_value
                            ));
                        }
                    }
                    Err(e) => out.error = Some(e.to_string()),
                }
                out
            })
            .collect();
        let (n1, n0) = (self.units[0] as f64, self.units[1] as f64);
        let z = norm_ppf(1.0 - alpha / 2.0);
        let past_treatment = self
            .priors
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (k1, k0) = (self.prior_counts[0][i], self.prior_counts[1][i]);
                let (p1, p0) = (ratio(k1, n1), ratio(k0, n0));
                let diff = p1 - p0;
                let se = (p1 * (1.0 - p1) / n1 + p0 * (1.0 - p0) / n0).sqrt();
                let pooled = ratio(k1 + k0, n1 + n0);
                let se0 = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n0)).sqrt();
                let p_value = if se0 > 0.0 && se0.is_finite() {
                    (2.0 * norm_sf((diff / se0).abs())).min(1.0)
                } else {
                    1.0
                };
                let se = if se.is_finite() { se } else { 0.0 };
                if p_value < P_WARN {
                    warnings.push(format!(
                        "past treatment {name}: {:.1}% of the experiment's units had been in it, {:.1}% of the population's (p = {p_value:.1e})",
                        100.0 * p1,
                        100.0 * p0
                    ));
                }
                PastTreatment {
                    experiment: name.clone(),
                    units_in: k1,
                    units_out: k0,
                    share_in: p1,
                    share_out: p0,
                    diff,
                    ci: [diff - z * se, diff + z * se],
                    p_value,
                }
            })
            .collect();
        ReuseHealth {
            experiment: experiment.to_string(),
            units_in: self.units[0],
            units_out: self.units[1],
            pre_period,
            past_treatment,
            warnings,
            error: None,
        }
    }
}

/// `k/n`, 0 for an empty group.
fn ratio(k: u64, n: f64) -> f64 {
    if n > 0.0 {
        k as f64 / n
    } else {
        0.0
    }
}
