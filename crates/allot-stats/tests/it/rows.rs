//! The seam of the warehouse path: the same units through the file path's accumulators
//! (`analysis::analyze`) and through rows of raw sums (`analysis::rows::analyze_rows`) give the
//! same report to 1e-9; and rows that do not add up are refused with the field named.

use allot_stats::analysis::rows::{analyze_rows, MetricSums, VariantStats};
use allot_stats::analysis::{analyze, Exposures, Inputs, MetricKind, UnitValues};
use indexmap::IndexMap;

/// 600 units of one experiment (control, a, b), 12 of them seen in two variants; metrics
/// `spend` (with a covariate) and `visits`.
fn units() -> Vec<(String, &'static str, bool, f64, f64, f64)> {
    let mut x: u64 = 7;
    let mut r = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..600)
        .map(|i| {
            let v = ["control", "a", "b"][i % 3];
            let pre = 20.0 * r();
            let spend = 0.6 * pre + 10.0 * r() + if v == "a" { 2.0 } else { 0.0 };
            (format!("u{i}"), v, i % 50 == 3, spend, pre, (10.0 * r()).floor())
        })
        .collect()
}

#[test]
fn rows_of_sums_give_the_file_paths_report() {
    let us = units();
    let mut ex = Exposures::new(false, false, std::hash::RandomState::new());
    let (mut m, mut c) = (UnitValues::default(), UnitValues::default());
    for (u, v, jumps, ..) in &us {
        ex.add(u, "e", v, f64::NAN, None);
        if *jumps {
            ex.add(u, "e", if *v == "control" { "a" } else { "control" }, f64::NAN, None);
        }
    }
    for (u, _, _, spend, pre, visits) in &us {
        m.add(&ex, u, "spend", *spend);
        m.add(&ex, u, "visits", *visits);
        c.add(&ex, u, "spend", *pre);
    }
    let files = analyze(Inputs {
        exposures: &ex,
        metrics: &m,
        covariates: Some(&c),
        identities: None,
        design: None,
        recorded: None,
        alpha: 0.05,
    });
    // The rows a GROUP BY computes, by hand.
    let rows: Vec<VariantStats> = ["control", "a", "b"]
        .iter()
        .map(|v| {
            let all: Vec<_> = us.iter().filter(|u| u.1 == *v).collect();
            let kept: Vec<_> = all.iter().filter(|u| !u.2).collect();
            let sums = |kind, y: &dyn Fn(usize) -> f64, x: &dyn Fn(usize) -> f64| {
                let (mut s, n) = ([0.0; 5], kept.len());
                for i in 0..n {
                    let (y, x) = (y(i), x(i));
                    s = [s[0] + y, s[1] + y * y, s[2] + x, s[3] + x * x, s[4] + x * y];
                }
                MetricSums { kind, n: n as u64, sum_y: s[0], sum_yy: s[1], sum_x: s[2], sum_xx: s[3], sum_xy: s[4] }
            };
            let mut metrics = IndexMap::new();
            metrics.insert("spend".to_string(), sums(MetricKind::Mean { cuped: true }, &|i| kept[i].3, &|i| kept[i].4));
            metrics.insert("visits".to_string(), sums(MetricKind::Mean { cuped: false }, &|i| kept[i].5, &|_| 0.0));
            VariantStats {
                experiment: "e".into(),
                variant: v.to_string(),
                units: all.len() as u64,
                multi_variant_units: (all.len() - kept.len()) as u64,
                exposure_rows: 0,
                rows_left_out: 0,
                metrics,
            }
        })
        .collect();
    let from_rows = analyze_rows(&rows, None, 0.05).unwrap();
    let (a, b) =
        (serde_json::to_value(&files.experiments).unwrap(), serde_json::to_value(&from_rows.experiments).unwrap());
    let mut bad = vec![];
    compare(&a, &b, "experiments", &mut bad);
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
    assert_eq!(a["e"]["variant_jumpers"], 12);
    assert!(a["e"]["metrics"]["spend"]["comparisons"][0]["cuped"]["variance_reduction"].as_f64().unwrap() > 0.1);
}

fn compare(a: &serde_json::Value, b: &serde_json::Value, path: &str, bad: &mut Vec<String>) {
    use serde_json::Value::*;
    match (a, b) {
        (Object(x), Object(y)) if x.len() == y.len() => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => compare(v, w, &format!("{path}.{k}"), bad),
                    None => bad.push(format!("{path}.{k}: missing")),
                }
            }
        }
        (Array(x), Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                compare(v, w, &format!("{path}[{i}]"), bad);
            }
        }
        (Number(p), Number(q)) => {
            let (p, q) = (p.as_f64().unwrap(), q.as_f64().unwrap());
            if (p - q).abs() > 1e-9 * p.abs().max(q.abs()).max(1.0) {
                bad.push(format!("{path}: {p} vs {q}"));
            }
        }
        _ if a == b => {}
        _ => bad.push(format!("{path}: {a} vs {b}")),
    }
}

fn row(units: u64, multi: u64, n: u64) -> VariantStats {
    let mut metrics = IndexMap::new();
    let kind = MetricKind::Mean { cuped: false };
    metrics
        .insert("m".to_string(), MetricSums { kind, n, sum_y: 3.0, sum_yy: 9.0, sum_x: 0.0, sum_xx: 0.0, sum_xy: 0.0 });
    VariantStats {
        experiment: "e".into(),
        variant: "control".into(),
        units,
        multi_variant_units: multi,
        exposure_rows: 0,
        rows_left_out: 0,
        metrics,
    }
}

#[test]
fn rows_that_do_not_add_up_are_refused() {
    let err = |rows: &[VariantStats]| analyze_rows(rows, None, 0.05).unwrap_err().to_string();
    assert!(err(&[]).starts_with("rows: "));
    assert!(err(&[row(10, 11, 0)]).starts_with("multi_variant_units: row 1 (e / control)"));
    assert!(err(&[row(10, 2, 7)]).starts_with("n: row 1 (e / control): metric m has 7 units"));
    assert!(err(&[row(10, 2, 8), row(10, 2, 8)]).starts_with("variant: row 2 (e / control)"));
    let mut nan = row(10, 0, 10);
    nan.metrics["m"].sum_yy = f64::NAN;
    assert!(err(&[nan]).starts_with("sums: "));
}
