//! Interaction tests for two experiments that overlapped on some units: the interaction contrast
//! of their table of cell means, written by hand.
//!
//! For variants `i` of A and `j` of B (index 0 = control) the contrast is
//! `(μᵢⱼ − μᵢ₀) − (μ₀ⱼ − μ₀₀)`: how much the effect of A's arm `i` changes under B's arm `j`.
//! Its standard error is `√Σ s²/n` over the four cells (heteroskedastic, independent cells) and
//! the test is a two-sided z-test. This equals the interaction coefficient of an OLS with full
//! dummies and HC2 standard errors (statsmodels `OLS(...).fit(cov_type="HC2")`), against which it
//! is checked. A k×m table gives (k−1)(m−1) contrasts.

use crate::dist::norm_sf;
use crate::estimate::Summary;
use crate::{invalid, StatsError};
use serde::Serialize;

/// One interaction contrast.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Contrast {
    /// Variant index of the first experiment (≥ 1).
    pub a: usize,
    /// Variant index of the second experiment (≥ 1).
    pub b: usize,
    /// (μ_ab − μ_a0) − (μ_0b − μ_00).
    pub estimate: f64,
    /// Standard error.
    pub se: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Every contrast of a table of cells `cells[i][j]` (A's variant `i`, B's variant `j`, control
/// first). Contrasts whose four cells do not each have two units are skipped.
pub fn contrasts(cells: &[Vec<Summary>]) -> Result<Vec<Contrast>, StatsError> {
    let k = cells.len();
    let m = cells.first().map_or(0, Vec::len);
    if k < 2 || m < 2 || cells.iter().any(|r| r.len() != m) {
        return invalid("cells", "needs a rectangular table of at least 2×2");
    }
    let mut out = vec![];
    for (a, row) in cells.iter().enumerate().skip(1) {
        for b in 1..m {
            let four = [&row[b], &row[0], &cells[0][b], &cells[0][0]];
            if four.iter().any(|c| c.n < 2 || !c.var.is_finite()) {
                continue;
            }
            let estimate = four[0].mean - four[1].mean - four[2].mean + four[3].mean;
            let se = four.iter().map(|c| c.var_mean()).sum::<f64>().sqrt();
            let p_value = if se > 0.0 { (2.0 * norm_sf((estimate / se).abs())).min(1.0) } else { f64::NAN };
            out.push(Contrast { a, b, estimate, se, p_value });
        }
    }
    Ok(out)
}
