//! The analysis query: exposures → each unit's first exposure and variant per experiment →
//! each metric's events in its window, aggregated per unit (and its CUPED pre-period) → one row
//! of sufficient statistics per experiment × variant. Only those rows leave the database.
//!
//! Built to scale (docs/stats.md, "The query"): one sort of the exposures, one scan of each
//! metric table for all its metrics, and one equi-join of units and events on the unit whose
//! rows stream into the per-unit grouping.
//!
//! Units seen in several variants of an experiment are counted in the variant of their first
//! exposure (ties: the smallest variant name) for the sample-ratio test, counted again in
//! `multi_variant_units`, and left out of every metric: the file path's policy. Rows without a
//! unit, a variant or a time are not exposures: left out, and counted per experiment in
//! `rows_left_out` (the file path refuses such a file).

use crate::dialect::Dialect;
use crate::rows::{metric_columns, FIXED_COLUMNS};
use crate::tables::{Measure, Metric, TableName, Tables, Window};
use std::fmt::Write as _;

/// A qualified table name in the dialect.
fn table(d: Dialect, t: &TableName) -> String {
    t.0.iter().map(|p| d.ident(p)).collect::<Vec<_>>().join(".")
}

/// `alias.column`, quoted.
fn col(d: Dialect, alias: &str, c: &str) -> String {
    format!("{alias}.{}", d.ident(c))
}

/// The condition of a metric event at time `t` (`m.et0`, …) counting towards the metric of unit
/// `u` (first exposure `u.t0`; `z.t_end` the experiment's end), or `None` for every event.
fn window_condition(d: Dialect, t: &str, w: Window) -> Option<String> {
    let from = |delay: f64| format!("{t} >= u.t0 + {}", d.number(delay));
    match w {
        Window::All => None,
        Window::After { delay } => Some(from(delay)),
        Window::For { delay, duration } => {
            Some(format!("{} AND {t} < u.t0 + {}", from(delay), d.number(delay + duration)))
        }
        Window::ToEnd { delay } => Some(format!("{} AND {t} <= z.t_end", from(delay))),
    }
}

/// The metrics read from one scan: those of one table with the same unit column.
struct Scan<'a> {
    table: &'a TableName,
    unit: &'a str,
    /// (index, metric), in file order.
    metrics: Vec<(usize, &'a Metric)>,
    /// The distinct time expressions its metrics read, in order of first use.
    times: Vec<String>,
}

/// The metrics grouped by scan, in order of first appearance.
fn scans(d: Dialect, metrics: &[Metric]) -> Vec<Scan<'_>> {
    let mut out: Vec<Scan<'_>> = vec![];
    for (i, m) in metrics.iter().enumerate() {
        let k = match out.iter().position(|s| *s.table == m.table && s.unit == m.unit) {
            Some(k) => k,
            None => {
                out.push(Scan { table: &m.table, unit: &m.unit, metrics: vec![], times: vec![] });
                out.len() - 1
            }
        };
        let s = &mut out[k];
        // The time only when a window or the pre-period reads it.
        if m.window != Window::All || m.cuped_days.is_some() {
            let t = d.epoch(&col(d, "e", &m.time), m.time_type);
            if !s.times.contains(&t) {
                s.times.push(t);
            }
        }
        s.metrics.push((i, m));
    }
    out
}

/// The column of `metric_events` with the time metric `m` reads (in its scan `s`).
fn time_column(d: Dialect, s: &Scan<'_>, m: &Metric) -> String {
    let t = d.epoch(&col(d, "e", &m.time), m.time_type);
    let k = s.times.iter().position(|x| *x == t).unwrap_or(0);
    format!("m.et{k}")
}

/// `metric_events`: one scan per table (and unit column) for all its metrics, `UNION ALL`: per
/// event its unit, its times (`et0`, `et1`, …) and per metric `i` the value `v{i}` (and `w{i}`,
/// a ratio's denominator), NULL where the event is not the metric's (another table, or outside
/// its `where`).
fn metric_events<'a>(d: Dialect, metrics: &'a [Metric], out: &mut String) -> Vec<Scan<'a>> {
    let scans = scans(d, metrics);
    let n_times = scans.iter().map(|s| s.times.len()).max().unwrap_or(0);
    let (dbl, txt, int) = (d.double(), d.text(), d.bigint());
    let _ = writeln!(out, "metric_events AS (");
    for (k, s) in scans.iter().enumerate() {
        if k > 0 {
            let _ = writeln!(out, "\n  UNION ALL");
        }
        let _ = write!(out, "  SELECT {} AS u_id", d.cast(&col(d, "e", s.unit), txt));
        for j in 0..n_times {
            match s.times.get(j) {
                Some(t) => {
                    let _ = write!(out, ", {t} AS et{j}");
                }
                None => {
                    let _ = write!(out, ", {} AS et{j}", d.cast("NULL", dbl));
                }
            }
        }
        let filters: Vec<Option<String>> = s
            .metrics
            .iter()
            .map(|(_, m)| {
                m.filter.as_ref().map(|f| format!("{} = {}", d.cast(&col(d, "e", &f.column), txt), d.string(&f.equals)))
            })
            .collect();
        // A scan of one filtered metric filters in its WHERE; otherwise each filtered metric's
        // value is NULL outside its filter (and the WHERE keeps the events some metric reads).
        let only_where = s.metrics.len() == 1;
        for (i, m) in metrics.iter().enumerate() {
            let mine = s.metrics.iter().position(|(j, _)| *j == i);
            let (v, w, null_ty) = match &m.measure {
                Measure::Sum(c) => (d.cast(&col(d, "e", c), dbl), None, dbl),
                Measure::Count => ("1".to_string(), None, int),
                Measure::Ratio { numerator, denominator } => {
                    (d.cast(&col(d, "e", numerator), dbl), Some(d.cast(&col(d, "e", denominator), dbl)), dbl)
                }
            };
            let value = |x: &str| match mine {
                None => d.cast("NULL", null_ty),
                Some(p) => match &filters[p] {
                    Some(f) if !only_where => format!("CASE WHEN {f} THEN {x} END"),
                    _ => x.to_string(),
                },
            };
            let _ = write!(out, ", {} AS v{i}", value(&v));
            if let Some(w) = &w {
                let _ = write!(out, ", {} AS w{i}", value(w));
            }
        }
        let _ = write!(out, "\n  FROM {} e", table(d, s.table));
        if filters.iter().all(Option::is_some) {
            let conds: Vec<String> = filters.into_iter().flatten().collect();
            let _ = write!(out, "\n  WHERE {}", conds.join(" OR "));
        }
    }
    if let Some(fence) = d.fence() {
        let _ = write!(out, "\n  {fence}");
    }
    let _ = writeln!(out, "\n),");
    scans
}

/// The analysis query of `tables` in dialect `d`: one row per experiment × variant with the
/// columns [`crate::rows`] reads.
pub fn compile(tables: &Tables, d: Dialect) -> String {
    let x = &tables.exposures;
    let (dbl, txt, int) = (d.double(), d.text(), d.bigint());
    let mut s = String::new();
    let _ =
        writeln!(s, "-- allot analysis: one row of sufficient statistics per experiment and variant ({}).", d.name());
    let _ = writeln!(s, "-- Generated by allot-sql from tables.yaml; units seen in several variants are counted and left out of the metrics.");
    for setting in d.settings() {
        let _ = writeln!(s, "-- allot runs it after `{setting}` (in its read-only transaction).");
    }
    let _ = writeln!(s, "WITH exposure_rows AS{} (", d.not_materialized());
    let _ = writeln!(
        s,
        "  SELECT {} AS u_id, {} AS exp_id, {} AS var_id, {} AS t",
        d.cast(&col(d, "x", &x.unit), txt),
        d.cast(&col(d, "x", &x.experiment), txt),
        d.cast(&col(d, "x", &x.variant), txt),
        d.epoch(&col(d, "x", &x.time), x.time_type)
    );
    let _ = write!(s, "  FROM {} x", table(d, &x.table));
    if !tables.experiments.is_empty() {
        let ids: Vec<String> = tables.experiments.keys().map(|k| d.string(k)).collect();
        let _ = write!(s, "\n  WHERE {} IN ({})", d.cast(&col(d, "x", &x.experiment), txt), ids.join(", "));
    }
    let _ = writeln!(s, "\n),");
    // A row without a unit, a variant or a time is no exposure: left out of everything, and
    // counted per experiment (`rows_left_out`), never dropped silently.
    let _ = writeln!(s, "left_out AS (");
    let _ = writeln!(
        s,
        "  SELECT exp_id AS lo_exp, COUNT(*) AS n_left_out\n  FROM exposure_rows\n  WHERE u_id IS NULL OR var_id IS NULL OR t IS NULL\n  GROUP BY exp_id\n),"
    );
    // Each exposure with the variant of its unit's first exposure in the experiment (ties: the
    // smallest variant name): one sort, in the order of the grouping below.
    let _ = writeln!(s, "exposure_events AS (");
    let _ = writeln!(
        s,
        "  SELECT u_id, exp_id, var_id, t, FIRST_VALUE(var_id) OVER (PARTITION BY u_id, exp_id ORDER BY t, var_id) AS var_first\n  FROM exposure_rows\n  WHERE u_id IS NOT NULL AND var_id IS NOT NULL AND t IS NOT NULL\n),"
    );
    // One row per unit and experiment: first exposure, its variant, the number of exposure
    // rows, and `single` = 1 when all its rows are of one variant.
    let _ = writeln!(s, "units AS (");
    let _ = writeln!(
        s,
        "  SELECT u_id, exp_id, MIN(var_first) AS var_id, MIN(t) AS t0, COUNT(*) AS n_rows, CASE WHEN MIN(var_id) = MAX(var_id) THEN 1 ELSE 0 END AS single\n  FROM exposure_events\n  GROUP BY u_id, exp_id\n),"
    );
    let to_end = tables.metrics.iter().any(|m| matches!(m.window, Window::ToEnd { .. }));
    if to_end {
        let configured: Vec<String> = tables
            .experiments
            .iter()
            .filter_map(|(id, end)| end.map(|e| format!("WHEN {} THEN {}", d.string(id), d.number(e))))
            .collect();
        let end = if configured.is_empty() {
            "MAX(t)".to_string()
        } else {
            format!("COALESCE(CASE exp_id {} END, MAX(t))", configured.join(" "))
        };
        let _ = writeln!(s, "experiment_ends AS (");
        let _ = writeln!(
            s,
            "  SELECT exp_id, {end} AS t_end\n  FROM exposure_rows\n  WHERE u_id IS NOT NULL AND var_id IS NOT NULL AND t IS NOT NULL\n  GROUP BY exp_id\n),"
        );
    }
    let scans = metric_events(d, &tables.metrics, &mut s);
    // Per unit and experiment: each metric's sums over the unit's events in its window (and
    // pre-period), from one join of the units with all metric events on the unit. The join
    // keeps every event of the unit (the windows are in the sums, not in the join): its order
    // by unit then streams into the grouping.
    let _ = writeln!(s, "unit_sums AS (");
    let _ = write!(s, "  SELECT u.exp_id, MIN(u.var_id) AS var_id, MIN(u.single) AS single, MIN(u.n_rows) AS n_rows");
    for sc in &scans {
        for (i, m) in &sc.metrics {
            let t = time_column(d, sc, m);
            let window = window_condition(d, &t, m.window);
            let sum = |value: &str| match &window {
                Some(c) => format!("SUM(CASE WHEN {c} THEN {value} ELSE 0 END)"),
                None => format!("SUM({value})"),
            };
            let _ = write!(s, ",\n    {} AS m{i}_y", sum(&format!("m.v{i}")));
            if matches!(m.measure, Measure::Ratio { .. }) {
                let _ = write!(s, ",\n    {} AS m{i}_x", sum(&format!("m.w{i}")));
            }
            if let Some(days) = m.cuped_days {
                let pre = format!("{t} >= u.t0 - {} AND {t} < u.t0", d.number(f64::from(days) * 86400.0));
                let _ = write!(s, ",\n    SUM(CASE WHEN {pre} THEN m.v{i} ELSE 0 END) AS m{i}_x");
            }
        }
    }
    let _ = write!(s, "\n  FROM units u");
    if to_end {
        let _ = write!(s, "\n  JOIN experiment_ends z ON z.exp_id = u.exp_id");
    }
    let _ = writeln!(s, "\n  LEFT JOIN metric_events m ON m.u_id = u.u_id\n  GROUP BY u.u_id, u.exp_id\n),");
    // Per unit: each metric's value (capped), NULL for units seen in several variants.
    let _ = writeln!(s, "per_unit AS (");
    let _ = write!(s, "  SELECT exp_id, var_id, single, n_rows");
    for (i, m) in tables.metrics.iter().enumerate() {
        let value = |c: &str| {
            let v = format!("COALESCE(m{i}_{c}, 0)");
            let v = match m.cap {
                Some(cap) => d.least(&v, &d.number(cap)),
                _ => v,
            };
            format!("CASE WHEN single = 1 THEN {} END", d.cast(&v, dbl))
        };
        let _ = write!(s, ",\n    {} AS m{i}_y", value("y"));
        if m.cuped_days.is_some() || matches!(m.measure, Measure::Ratio { .. }) {
            let _ = write!(s, ",\n    {} AS m{i}_x", value("x"));
        }
    }
    let _ = writeln!(s, "\n  FROM unit_sums\n),");
    // Per experiment × variant: the counts and the sums, then the left-out rows beside them.
    let _ = writeln!(s, "variants AS (");
    let _ = write!(
        s,
        "  SELECT exp_id, var_id, COUNT(*) AS n_units, SUM(1 - single) AS n_multi, SUM(n_rows) AS n_exposure_rows, SUM(single) AS n_single"
    );
    let mut sums: Vec<(String, String)> = vec![];
    for (i, m) in tables.metrics.iter().enumerate() {
        let (y, x) = (format!("m{i}_y"), format!("m{i}_x"));
        let exprs: Vec<String> = match (&m.measure, m.cuped_days) {
            (Measure::Ratio { .. }, _) | (_, Some(_)) => {
                vec![y.clone(), format!("{y} * {y}"), x.clone(), format!("{x} * {x}"), format!("{y} * {x}")]
            }
            _ => vec![y.clone(), format!("{y} * {y}")],
        };
        for (k, (expr, name)) in exprs.iter().zip(metric_columns(&m.name, kind_of(m))).enumerate() {
            let alias = format!("s{i}_{k}");
            let _ = write!(s, ",\n    SUM({expr}) AS {alias}");
            sums.push((alias, name));
        }
    }
    let _ = writeln!(s, "\n  FROM per_unit\n  GROUP BY exp_id, var_id\n)");
    let [c_exp, c_var, c_units, c_multi, c_rows, c_n] = FIXED_COLUMNS;
    let q = |c: &str| d.ident(c);
    let _ = writeln!(s, "SELECT");
    let _ = writeln!(s, "  exp_id AS {},\n  var_id AS {},", q(c_exp), q(c_var));
    let _ = writeln!(s, "  {} AS {},", d.cast("n_units", int), q(c_units));
    let _ = writeln!(s, "  {} AS {},", d.cast("n_multi", int), q(c_multi));
    let _ = writeln!(s, "  {} AS {},", d.cast("n_exposure_rows", int), q(c_rows));
    let _ = write!(s, "  {} AS {}", d.cast("n_single", int), q(c_n));
    let _ = write!(s, ",\n  {} AS {}", d.cast("COALESCE(lo.n_left_out, 0)", int), q(crate::rows::LEFT_OUT_COLUMN));
    for (alias, name) in &sums {
        let _ = write!(s, ",\n  {} AS {}", d.cast(&format!("COALESCE({alias}, 0)"), dbl), q(name));
    }
    let _ = writeln!(s, "\nFROM variants\nLEFT JOIN left_out lo ON lo.lo_exp = exp_id\nORDER BY exp_id, var_id");
    s
}

/// How the statistics read a metric of the mapping.
pub fn kind_of(m: &Metric) -> allot_stats::analysis::MetricKind {
    use allot_stats::analysis::MetricKind;
    match m.measure {
        Measure::Ratio { .. } => MetricKind::Ratio,
        _ => MetricKind::Mean { cuped: m.cuped_days.is_some() },
    }
}
