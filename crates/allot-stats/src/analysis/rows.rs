//! The analysis from sufficient statistics: one row per experiment × variant, as a warehouse
//! computes them (allot-sql's SQL), instead of unit-level rows. Each row carries the variant's
//! units (by the variant of their first exposure), those seen in several variants, and per
//! metric the raw sums a `GROUP BY` gives; they become the same [`Moments`] the file path
//! accumulates, and the same per-experiment code (`analysis::experiment`) computes the report.
//!
//! What needs units across experiments (overlaps of exclusive experiments, interaction tests,
//! identity merges, bucket reuse) cannot come from per-experiment rows: the report has none of
//! it, and says so in `diagnostics.source`.

use super::{experiment, Design, Diagnostics, ExpAcc, IssueClass, MetricKind, Report};
use crate::{invalid, Moments, StatsError};
use indexmap::{IndexMap, IndexSet};

/// The raw sums of one metric over a variant's units, as `SUM(…)` in SQL gives them: `y` is the
/// per-unit value (a ratio's numerator), `x` its pre-period value (a ratio's denominator; 0 and
/// absent without CUPED).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSums {
    /// How `y` and `x` are read.
    pub kind: MetricKind,
    /// Units with the metric (the variant's units less those seen in several variants).
    pub n: u64,
    /// Σy.
    pub sum_y: f64,
    /// Σy².
    pub sum_yy: f64,
    /// Σx.
    pub sum_x: f64,
    /// Σx².
    pub sum_xx: f64,
    /// Σxy.
    pub sum_xy: f64,
}

impl MetricSums {
    /// The moments of these sums.
    pub fn moments(&self) -> Moments {
        Moments::from_sums(self.n, self.sum_y, self.sum_x, self.sum_yy, self.sum_xx, self.sum_xy)
    }
}

/// One row of sufficient statistics: an experiment's variant.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantStats {
    /// The experiment.
    pub experiment: String,
    /// The variant (of the units' first exposure).
    pub variant: String,
    /// Units whose first exposure was to this variant, those seen in several variants included
    /// (the sample-ratio test counts them, as the file path does).
    pub units: u64,
    /// Of those, units seen in several variants of the experiment: left out of the metrics.
    pub multi_variant_units: u64,
    /// Exposure rows of those units.
    pub exposure_rows: u64,
    /// The experiment's exposure rows without a unit, a variant or a time, left out of
    /// everything (the same count on each of its rows).
    pub rows_left_out: u64,
    /// Per metric, in the order of the metric mapping.
    pub metrics: IndexMap<String, MetricSums>,
}

/// Analyses rows of sufficient statistics: per experiment (in row order, or the configured order
/// with a configuration), the same results the file path gives on the same units.
///
/// Errors name the row and field: a repeated experiment × variant, metrics that differ between
/// rows, a metric count that is not the units less the multi-variant units, sums that are not
/// finite.
pub fn analyze_rows(rows: &[VariantStats], design: Option<&dyn Design>, alpha: f64) -> Result<Report, StatsError> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return invalid("alpha", format!("{alpha} is not in (0, 1)"));
    }
    let Some(first) = rows.first() else { return invalid("rows", "there are no rows of sufficient statistics") };
    let metric_names: IndexSet<Box<str>> = first.metrics.keys().map(|k| k.as_str().into()).collect();
    let kinds: Vec<MetricKind> = first.metrics.values().map(|m| m.kind).collect();
    // Experiment → its variants (row order) and accumulators.
    let mut exps: IndexMap<String, (IndexSet<Box<str>>, ExpAcc)> = IndexMap::new();
    let mut exposure_rows = 0u64;
    let mut units = 0u64;
    let mut left_out: IndexMap<&str, u64> = IndexMap::new();
    for (i, r) in rows.iter().enumerate() {
        let at = || format!("row {} ({} / {})", i + 1, r.experiment, r.variant);
        let names: Vec<&str> = r.metrics.keys().map(String::as_str).collect();
        let expected: Vec<&str> = metric_names.iter().map(|m| &**m).collect();
        if names != expected {
            return invalid("metrics", format!("{}: has metrics {names:?}, the first row {expected:?}", at()));
        }
        if r.multi_variant_units > r.units {
            return invalid("multi_variant_units", format!("{}: {} > units {}", at(), r.multi_variant_units, r.units));
        }
        let n = r.units - r.multi_variant_units;
        let mut cells = vec![];
        for ((name, m), kind) in r.metrics.iter().zip(&kinds) {
            if m.kind != *kind {
                return invalid(
                    "metrics",
                    format!("{}: metric {name} is {:?}, in the first row {kind:?}", at(), m.kind),
                );
            }
            if m.n != n {
                return invalid(
                    "n",
                    format!("{}: metric {name} has {} units, expected units − multi_variant_units = {n}", at(), m.n),
                );
            }
            let sums = [m.sum_y, m.sum_yy, m.sum_x, m.sum_xx, m.sum_xy];
            if sums.iter().any(|s| !s.is_finite()) {
                return invalid("sums", format!("{}: metric {name} has a sum that is not finite", at()));
            }
            cells.push(m.moments());
        }
        let (variants, acc) = exps
            .entry(r.experiment.clone())
            .or_insert_with(|| (IndexSet::new(), ExpAcc { counts: vec![], jumped: 0, cells: vec![] }));
        if !variants.insert(r.variant.as_str().into()) {
            return invalid("variant", format!("{}: the experiment's variant appears twice", at()));
        }
        acc.counts.push(r.units);
        acc.jumped += r.multi_variant_units;
        acc.cells.push(cells);
        exposure_rows += r.exposure_rows;
        units += r.units;
        let l = left_out.entry(r.experiment.as_str()).or_default();
        *l = (*l).max(r.rows_left_out);
    }
    let mut order: Vec<String> = design
        .map(|d| d.experiments().into_iter().filter(|k| exps.contains_key(*k)).map(str::to_string).collect())
        .unwrap_or_default();
    order.extend(exps.keys().filter(|k| !order.contains(k)).cloned().collect::<Vec<_>>());
    let experiments = order
        .into_iter()
        .filter_map(|name| {
            let (variants, acc) = exps.get(&name)?;
            let report = experiment(&name, variants, acc, &metric_names, &kinds, design, alpha);
            Some((name, report))
        })
        .collect();
    Ok(Report {
        experiments,
        sequential: None,
        reuse_health: None,
        interactions: vec![],
        interactions_skipped: vec![],
        diagnostics: Diagnostics {
            exposure_times: true,
            exposure_versions: false,
            state: false,
            runs: IndexMap::new(),
            reused_after_stop: Default::default(),
            exposure_rows,
            units,
            metric_rows: 0,
            metric_rows_without_exposure: 0,
            covariate_rows: None,
            covariate_rows_without_exposure: None,
            config: design.is_some(),
            identities: None,
            exposure_issues: IssueClass::ALL.iter().map(|c| (*c, Default::default())).collect(),
            alpha,
            source: Some(SOURCE.to_string()),
            exposure_rows_left_out: Some(left_out.values().sum()),
        },
    })
}

/// `diagnostics.source` of a report from sufficient statistics.
pub const SOURCE: &str = "sufficient statistics per experiment and variant (warehouse): units are summed over \
experiments; metric rows, overlaps, interactions and identity merges are not computed there";
