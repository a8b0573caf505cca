//! The looks of `allot analyze --sequential`: every comparison of the analysis (experiment ×
//! metric × treatment arm) is a series of looks; each run of the analysis is one more look, added
//! to the looks recorded by earlier runs ([`SequentialReport`] is both the report and the
//! record), and the whole series is recomputed — group-sequential bounds for the actual
//! information fractions of the looks ([`crate::sequential::boundaries`]), or the mSPRT's
//! always-valid p-values and confidence sequence ([`crate::sequential::msprt`]) — with each
//! look's decision.
//!
//! The statistic of a look is the Welch difference of the analysis and its standard error on all
//! units so far, `z = diff/se` (normal reference: sequential tests are for samples large enough
//! to look at). The information fraction of a look is the experiment's units (every arm) over
//! its planned maximum, capped at 1 (the final look). With `k` treatment arms each comparison is
//! tested at `α/k`, as the capacity plan (`power.rs`) sizes it.

use crate::analysis::Report;
use crate::power::Sides;
use crate::sequential::{boundaries, msprt, Spending};
use crate::{invalid, StatsError};
use serde::{Deserialize, Serialize};

/// The sequential method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Group-sequential, Lan-DeMets O'Brien-Fleming-type spending.
    Obf,
    /// Group-sequential, Lan-DeMets Pocock-type spending.
    Pocock,
    /// mSPRT with a normal mixture: always valid, for continuous monitoring.
    Msprt,
}

impl Method {
    /// Its name, as `--sequential` and the JSON spell it.
    pub fn name(self) -> &'static str {
        match self {
            Method::Obf => "obf",
            Method::Pocock => "pocock",
            Method::Msprt => "msprt",
        }
    }

    /// Its spending function, for the group-sequential methods.
    pub fn spending(self) -> Option<Spending> {
        match self {
            Method::Obf => Some(Spending::ObrienFleming),
            Method::Pocock => Some(Spending::Pocock),
            Method::Msprt => None,
        }
    }
}

/// What was decided at a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// No bound crossed: go on collecting.
    Continue,
    /// A bound was crossed (the p-value fell to α): stop, the difference is significant.
    Reject,
    /// The final look (the planned maximum reached) crossed no bound: stop, not significant.
    NoEffect,
    /// A look after an earlier one rejected: the series had already stopped.
    Stopped,
}

/// One look of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Look {
    /// 1 for the first look.
    pub look: u32,
    /// Units of the experiment (every arm) at this look.
    pub units: u64,
    /// Information fraction (group-sequential): units over the planned maximum, at most 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// The difference (treatment − control).
    pub diff: f64,
    /// Its standard error.
    pub se: f64,
    /// `diff / se`.
    pub z: f64,
    /// The bound on `z` (group-sequential; `−bound` too when two-sided); absent when the α to
    /// spend at this look underflows to 0 (it cannot reject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<f64>,
    /// α spent up to this look (group-sequential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spent_alpha: Option<f64>,
    /// The always-valid p-value (mSPRT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The always-valid confidence sequence at this look (mSPRT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<[f64; 2]>,
    /// What was decided.
    pub decision: Decision,
}

/// The looks of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The experiment.
    pub experiment: String,
    /// The metric.
    pub metric: String,
    /// The treatment arm.
    pub variant: String,
    /// The control.
    pub control: String,
    /// α of this comparison (the plan's α over the experiment's treatment arms).
    pub alpha: f64,
    /// The planned maximum sample, in units of the experiment (group-sequential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_units: Option<f64>,
    /// The mixing standard deviation τ (mSPRT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau: Option<f64>,
    /// Every look, oldest first.
    pub looks: Vec<Look>,
    /// The series' decision: `reject` if any look rejected, else the last look's.
    pub decision: Option<Decision>,
    /// Why the series could not be computed (then `looks` keeps the recorded ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every series, with the plan: the report of `--sequential` and the file `--looks` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialReport {
    /// The method.
    pub method: Method,
    /// The family's α (before dividing over treatment arms).
    pub alpha: f64,
    /// One- or two-sided (mSPRT: two-sided).
    pub sides: Sides,
    /// The series, in the analysis' order.
    pub series: Vec<Series>,
}

/// The plan of a sequential analysis.
pub struct Plan<'a> {
    /// The method.
    pub method: Method,
    /// The family's α.
    pub alpha: f64,
    /// One- or two-sided (group-sequential only).
    pub sides: Sides,
    /// The planned maximum units of an experiment (group-sequential).
    pub max_units: &'a dyn Fn(&str) -> Option<f64>,
    /// The mixing standard deviation τ of an experiment's metric (mSPRT).
    pub tau: &'a dyn Fn(&str, &str) -> Option<f64>,
}

/// The series of the analysis `report` as one more look after the looks `recorded` by earlier
/// runs (none for the first). A recorded look with as many units as this one is this analysis
/// run again: it is replaced, not repeated. Fails, naming the field, when the plan changed since
/// the recorded looks (method, α, sides: a sequential design cannot change while it runs).
pub fn update(
    plan: &Plan<'_>,
    recorded: Option<&SequentialReport>,
    report: &Report,
) -> Result<SequentialReport, StatsError> {
    if !(plan.alpha > 0.0 && plan.alpha < 1.0) {
        return invalid("alpha", format!("{} is not in (0, 1)", plan.alpha));
    }
    let sides = if plan.method == Method::Msprt { Sides::Two } else { plan.sides };
    if let Some(r) = recorded {
        if r.method != plan.method {
            return invalid(
                "method",
                format!("the recorded looks use {}, not {}", r.method.name(), plan.method.name()),
            );
        }
        if r.alpha != plan.alpha {
            return invalid("alpha", format!("the recorded looks use α = {}, not {}", r.alpha, plan.alpha));
        }
        if r.sides != sides {
            return invalid(
                "sides",
                format!("the recorded looks are {}-sided", if r.sides == Sides::One { "one" } else { "two" }),
            );
        }
    }
    let mut series = vec![];
    for (exp, e) in &report.experiments {
        let units: u64 = e.srm.counts().values().sum();
        for (metric, m) in &e.metrics {
            let arms = m.comparisons.len().max(1) as f64;
            for c in &m.comparisons {
                let old = recorded.and_then(|r| {
                    r.series.iter().find(|s| &s.experiment == exp && &s.metric == metric && s.variant == c.variant)
                });
                let mut points: Vec<(u64, f64, f64)> =
                    old.map(|s| s.looks.iter().map(|l| (l.units, l.diff, l.se)).collect()).unwrap_or_default();
                let mut s = Series {
                    experiment: exp.clone(),
                    metric: metric.clone(),
                    variant: c.variant.clone(),
                    control: c.control.clone(),
                    alpha: plan.alpha / arms,
                    max_units: None,
                    tau: None,
                    looks: old.map(|s| s.looks.clone()).unwrap_or_default(),
                    decision: None,
                    error: None,
                };
                let now = match (c.diff, c.se) {
                    (Some(d), Some(se)) if d.is_finite() && se.is_finite() && se > 0.0 => (units, d, se),
                    _ => {
                        s.error = Some(c.error.clone().unwrap_or_else(|| "no difference to look at".into()));
                        series.push(s);
                        continue;
                    }
                };
                match points.last() {
                    Some(last) if last.0 == units => {
                        points.pop();
                    }
                    Some(last) if last.0 > units => {
                        s.error = Some(format!(
                            "this look has {units} units, fewer than the recorded look {} ({}): wrong looks file?",
                            points.len(),
                            last.0
                        ));
                        series.push(s);
                        continue;
                    }
                    _ => {}
                }
                points.push(now);
                match looks(plan, sides, exp, metric, &mut s, &points) {
                    Ok(ls) => {
                        s.decision = Some(if ls.iter().any(|l| l.decision == Decision::Reject) {
                            Decision::Reject
                        } else {
                            ls.last().map_or(Decision::Continue, |l| l.decision)
                        });
                        s.looks = ls;
                    }
                    Err(e) => s.error = Some(e.to_string()),
                }
                series.push(s);
            }
        }
    }
    Ok(SequentialReport { method: plan.method, alpha: plan.alpha, sides, series })
}

/// Every look of a series from its `(units, diff, se)` points.
fn looks(
    plan: &Plan<'_>,
    sides: Sides,
    exp: &str,
    metric: &str,
    s: &mut Series,
    points: &[(u64, f64, f64)],
) -> Result<Vec<Look>, StatsError> {
    let base = |i: usize, &(units, diff, se): &(u64, f64, f64)| Look {
        look: i as u32 + 1,
        units,
        fraction: None,
        diff,
        se,
        z: diff / se,
        bound: None,
        spent_alpha: None,
        p_value: None,
        ci: None,
        decision: Decision::Continue,
    };
    let mut out: Vec<Look> = points.iter().enumerate().map(|(i, p)| base(i, p)).collect();
    let mut crossed: Vec<bool> = vec![];
    let mut final_look = None;
    match plan.method.spending() {
        Some(spending) => {
            let Some(max) = (plan.max_units)(exp).filter(|m| m.is_finite() && *m > 0.0) else {
                return invalid("max_units", format!("no planned maximum sample for experiment {exp}"));
            };
            s.max_units = Some(max);
            let fractions: Vec<f64> = points.iter().map(|p| (p.0 as f64 / max).min(1.0)).collect();
            if let Some(i) = fractions.iter().position(|&t| t >= 1.0) {
                if i + 1 < fractions.len() {
                    return invalid(
                        "looks",
                        format!("look {} came after the final look {} (the planned maximum)", i + 2, i + 1),
                    );
                }
                final_look = Some(i);
            }
            let bounds = boundaries(spending, s.alpha, sides, &fractions)?;
            for (l, b) in out.iter_mut().zip(&bounds) {
                l.fraction = Some(b.fraction);
                l.bound = b.z.is_finite().then_some(b.z);
                l.spent_alpha = Some(b.spent);
                crossed.push(match sides {
                    Sides::Two => l.z.abs() >= b.z,
                    Sides::One => l.z >= b.z,
                });
            }
        }
        None => {
            let Some(tau) = (plan.tau)(exp, metric) else {
                return invalid("tau", format!("no mixing standard deviation τ for {exp}/{metric}"));
            };
            s.tau = Some(tau);
            let pairs: Vec<(f64, f64)> = points.iter().map(|p| (p.1, p.2)).collect();
            for (l, m) in out.iter_mut().zip(msprt(&pairs, tau, s.alpha)?) {
                l.p_value = Some(m.p_value);
                l.ci = Some(m.ci);
                crossed.push(m.p_value <= s.alpha);
            }
        }
    }
    let mut stopped = false;
    for (i, (l, x)) in out.iter_mut().zip(crossed).enumerate() {
        l.decision = if stopped {
            Decision::Stopped
        } else if x {
            stopped = true;
            Decision::Reject
        } else if final_look == Some(i) {
            Decision::NoEffect
        } else {
            Decision::Continue
        };
    }
    Ok(out)
}
