//! Multiple-comparison corrections of p-values, written by hand: Bonferroni, Holm's step-down and
//! Benjamini–Hochberg's step-up false discovery rate. Each returns adjusted p-values in the input
//! order, matching `statsmodels.stats.multitest.multipletests` (`bonferroni`, `holm`, `fdr_bh`).

use serde::{Deserialize, Serialize};

/// A correction method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// p·m, family-wise error rate.
    Bonferroni,
    /// Holm's step-down, family-wise error rate, uniformly more powerful than Bonferroni.
    Holm,
    /// Benjamini–Hochberg, false discovery rate.
    Bh,
}

/// Adjusted p-values for `method`, in input order, each at most 1.
pub fn adjust(p: &[f64], method: Method) -> Vec<f64> {
    match method {
        Method::Bonferroni => bonferroni(p),
        Method::Holm => holm(p),
        Method::Bh => bh(p),
    }
}

/// Bonferroni: min(1, m·p).
pub fn bonferroni(p: &[f64]) -> Vec<f64> {
    let m = p.len() as f64;
    p.iter().map(|x| (x * m).min(1.0)).collect()
}

fn order(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    idx
}

/// Holm: the i-th smallest (from 0) is max over j ≤ i of min(1, (m − j)·p₍ⱼ₎).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut out = vec![0.0; m];
    let mut run: f64 = 0.0;
    for (i, &k) in order(p).iter().enumerate() {
        run = run.max(((m - i) as f64 * p[k]).min(1.0));
        out[k] = run;
    }
    out
}

/// Benjamini–Hochberg: the i-th smallest (from 1) is min over j ≥ i of min(1, m·p₍ⱼ₎/j).
pub fn bh(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut out = vec![0.0; m];
    let mut run: f64 = 1.0;
    let idx = order(p);
    for (i, &k) in idx.iter().enumerate().rev() {
        run = run.min(m as f64 * p[k] / (i + 1) as f64);
        out[k] = run.min(1.0);
    }
    out
}
