//! Thin wrappers over `statrs` distributions: standard normal, Student's t and chi-square tails
//! and quantiles, as plain functions of `f64`.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};

fn std_normal() -> Normal {
    // Parameters are constants, valid by construction.
    Normal::standard()
}

/// Standard normal CDF Φ(x).
pub fn norm_cdf(x: f64) -> f64 {
    std_normal().cdf(x)
}

/// Standard normal survival function 1 − Φ(x), accurate in the tail.
pub fn norm_sf(x: f64) -> f64 {
    std_normal().sf(x)
}

/// Standard normal quantile Φ⁻¹(p).
pub fn norm_ppf(p: f64) -> f64 {
    std_normal().inverse_cdf(p)
}

/// Survival function of Student's t with `df` degrees of freedom; an infinite or non-finite `df`
/// falls back to the normal.
pub fn t_sf(x: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(t) if df.is_finite() => t.sf(x),
        _ => norm_sf(x),
    }
}

/// Quantile of Student's t with `df` degrees of freedom (normal for non-finite `df`).
pub fn t_ppf(p: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(t) if df.is_finite() => t.inverse_cdf(p),
        _ => norm_ppf(p),
    }
}

/// Survival function of the chi-square distribution with `df` degrees of freedom.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    match ChiSquared::new(df) {
        Ok(c) => c.sf(x),
        Err(_) => f64::NAN,
    }
}
