//! The rows the query returns, as text (a CSV file, or a database's answer rendered without loss):
//! their column names, and their decoding into [`VariantStats`] for the statistics.
//!
//! Columns: `experiment, variant, units, multi_variant_units, exposure_rows, n`, optionally
//! `rows_left_out` (exposure rows without a unit, variant or time), then per metric
//! `<m>__sum, <m>__sum_sq` (sum and count metrics), with `<m>__pre_sum, <m>__pre_sum_sq,
//! <m>__cross` for CUPED, or `<m>__num_sum, <m>__num_sum_sq, <m>__den_sum, <m>__den_sum_sq,
//! <m>__num_den` for a ratio. The metric's kind is read from which columns it has.

use allot_stats::analysis::rows::{MetricSums, VariantStats};
use allot_stats::analysis::MetricKind;
use indexmap::IndexMap;

/// The columns every row has, in order.
pub const FIXED_COLUMNS: [&str; 6] = ["experiment", "variant", "units", "multi_variant_units", "exposure_rows", "n"];

/// The experiment's exposure rows without a unit, a variant or a time, left out (the same count
/// on each of its rows). Optional when reading: rows written before it read as 0.
pub const LEFT_OUT_COLUMN: &str = "rows_left_out";

const MEAN: [&str; 2] = ["sum", "sum_sq"];
const CUPED: [&str; 5] = ["sum", "sum_sq", "pre_sum", "pre_sum_sq", "cross"];
const RATIO: [&str; 5] = ["num_sum", "num_sum_sq", "den_sum", "den_sum_sq", "num_den"];

/// The suffixes of a metric's columns, in the order Σy, Σy², Σx, Σx², Σxy.
fn suffixes(kind: MetricKind) -> &'static [&'static str] {
    match kind {
        MetricKind::Mean { cuped: false } => &MEAN,
        MetricKind::Mean { cuped: true } => &CUPED,
        MetricKind::Ratio => &RATIO,
    }
}

/// The output columns of metric `name`.
pub fn metric_columns(name: &str, kind: MetricKind) -> Vec<String> {
    suffixes(kind).iter().map(|s| format!("{name}__{s}")).collect()
}

/// Where each field is in a header.
#[derive(Debug, Clone)]
pub struct Layout {
    fixed: [usize; 6],
    left_out: Option<usize>,
    /// Per metric: name, kind and the indices of its sums (Σy, Σy², Σx, Σx², Σxy; absent: 0).
    metrics: Vec<(String, MetricKind, Vec<usize>)>,
}

impl Layout {
    /// Reads a header: the fixed columns, then metrics from their `__` columns. Errors name the
    /// column.
    pub fn of(header: &[&str]) -> Result<Layout, String> {
        let find = |c: &str| header.iter().position(|h| h.trim() == c);
        let mut fixed = [0; 6];
        for (slot, c) in fixed.iter_mut().zip(FIXED_COLUMNS) {
            *slot = find(c).ok_or_else(|| format!("missing column `{c}` (header is `{}`)", header.join(",")))?;
        }
        let mut names: IndexMap<&str, Vec<&str>> = IndexMap::new();
        for h in header {
            let h = h.trim();
            if FIXED_COLUMNS.contains(&h) || h == LEFT_OUT_COLUMN {
                continue;
            }
            let Some((m, suffix)) = h.split_once("__") else {
                return Err(format!("column `{h}` is neither a fixed column nor `<metric>__<sum>`"));
            };
            names.entry(m).or_default().push(suffix);
        }
        let mut metrics = vec![];
        for (m, have) in names {
            let kind = [MetricKind::Mean { cuped: false }, MetricKind::Mean { cuped: true }, MetricKind::Ratio]
                .into_iter()
                .find(|k| {
                    let want = suffixes(*k);
                    want.len() == have.len() && want.iter().all(|w| have.contains(w))
                })
                .ok_or_else(|| {
                    format!(
                        "metric `{m}` has columns {have:?}: expected {:?}, {:?} (CUPED) or {:?} (ratio)",
                        MEAN, CUPED, RATIO
                    )
                })?;
            let idx = metric_columns(m, kind).iter().filter_map(|c| find(c)).collect();
            metrics.push((m.to_string(), kind, idx));
        }
        if metrics.is_empty() {
            return Err("no metric columns (`<metric>__sum`, …)".to_string());
        }
        Ok(Layout { fixed, left_out: find(LEFT_OUT_COLUMN), metrics })
    }

    /// Decodes one row (`line` for errors: its line or row number).
    pub fn decode(&self, row: &[&str], line: u64) -> Result<VariantStats, String> {
        let get = |i: usize, name: &str| -> Result<&str, String> {
            let v = row.get(i).map(|s| s.trim()).unwrap_or("");
            if v.is_empty() {
                return Err(format!("line {line}: `{name}` is empty"));
            }
            Ok(v)
        };
        let count_at = |i: usize, name: &str| -> Result<u64, String> {
            let v = get(i, name)?;
            // Engines may render an integer count as `12.0`.
            v.parse::<u64>()
                .ok()
                .or_else(|| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(53))
                        .map(|f| f as u64)
                })
                .ok_or_else(|| format!("line {line}: `{name}` is not a count: {v:?}"))
        };
        let count = |k: usize| count_at(self.fixed[k], FIXED_COLUMNS[k]);
        let n = count(5)?;
        let mut metrics = IndexMap::new();
        for (m, kind, idx) in &self.metrics {
            let mut sums = [0.0; 5];
            for (s, (&i, c)) in sums.iter_mut().zip(idx.iter().zip(metric_columns(m, *kind))) {
                let v = get(i, &c)?;
                *s = v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("line {line}: `{c}` is not a finite number: {v:?}"))?;
            }
            let [sum_y, sum_yy, sum_x, sum_xx, sum_xy] = sums;
            metrics.insert(m.clone(), MetricSums { kind: *kind, n, sum_y, sum_yy, sum_x, sum_xx, sum_xy });
        }
        Ok(VariantStats {
            experiment: get(self.fixed[0], "experiment")?.to_string(),
            variant: get(self.fixed[1], "variant")?.to_string(),
            units: count(2)?,
            multi_variant_units: count(3)?,
            exposure_rows: count(4)?,
            rows_left_out: match self.left_out {
                Some(i) => count_at(i, LEFT_OUT_COLUMN)?,
                None => 0,
            },
            metrics,
        })
    }
}
