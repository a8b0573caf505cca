//! Streaming sufficient statistics of a metric `y` and its pre-period covariate `x`: count, means,
//! centred sums of squares and the centred cross product, updated one unit at a time (Welford's
//! algorithm, numerically stable) and mergeable, so that memory does not grow with the rows.

use serde::{Deserialize, Serialize};

/// Count, means, centred second moments and co-moment of `(y, x)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Number of units.
    pub n: u64,
    /// Mean of `y`.
    pub mean_y: f64,
    /// Mean of `x`.
    pub mean_x: f64,
    /// Σ (y − ȳ)².
    pub m2_y: f64,
    /// Σ (x − x̄)².
    pub m2_x: f64,
    /// Σ (y − ȳ)(x − x̄).
    pub c_xy: f64,
}

impl Moments {
    /// Adds one unit with metric value `y` and covariate `x` (0 when there is none).
    pub fn push(&mut self, y: f64, x: f64) {
        self.n += 1;
        let n = self.n as f64;
        let dy = y - self.mean_y;
        let dx = x - self.mean_x;
        self.mean_y += dy / n;
        self.mean_x += dx / n;
        self.m2_y += dy * (y - self.mean_y);
        self.m2_x += dx * (x - self.mean_x);
        self.c_xy += dy * (x - self.mean_x);
    }

    /// Builds the moments of a slice of `(y, x)` pairs.
    pub fn of(values: &[(f64, f64)]) -> Moments {
        let mut m = Moments::default();
        for &(y, x) in values {
            m.push(y, x);
        }
        m
    }

    /// The moments of `n` units from their raw sums Σy, Σx, Σy², Σx², Σxy, as a database computes
    /// them (`SUM(y)`, `SUM(y * y)`, …): the centred sums are `Σy² − (Σy)²/n` and so on, clamped
    /// at 0 against rounding. Less stable than [`Moments::push`] when the mean is many standard
    /// deviations from 0 (the cancellation costs about `ȳ²/s²` ulps), which metrics are not.
    pub fn from_sums(n: u64, sum_y: f64, sum_x: f64, sum_yy: f64, sum_xx: f64, sum_xy: f64) -> Moments {
        if n == 0 {
            return Moments::default();
        }
        let nf = n as f64;
        Moments {
            n,
            mean_y: sum_y / nf,
            mean_x: sum_x / nf,
            m2_y: (sum_yy - sum_y * sum_y / nf).max(0.0),
            m2_x: (sum_xx - sum_x * sum_x / nf).max(0.0),
            c_xy: sum_xy - sum_y * sum_x / nf,
        }
    }

    /// Merges another set of moments into this one (Chan et al.'s parallel formula).
    pub fn merge(&mut self, o: &Moments) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        let (na, nb) = (self.n as f64, o.n as f64);
        let n = na + nb;
        let dy = o.mean_y - self.mean_y;
        let dx = o.mean_x - self.mean_x;
        self.m2_y += o.m2_y + dy * dy * na * nb / n;
        self.m2_x += o.m2_x + dx * dx * na * nb / n;
        self.c_xy += o.c_xy + dy * dx * na * nb / n;
        self.mean_y += dy * nb / n;
        self.mean_x += dx * nb / n;
        self.n += o.n;
    }

    /// Sample variance of `y` (denominator n − 1); NaN below two units.
    pub fn var_y(&self) -> f64 {
        if self.n < 2 {
            f64::NAN
        } else {
            self.m2_y / (self.n - 1) as f64
        }
    }

    /// Sample variance of `x` (denominator n − 1).
    pub fn var_x(&self) -> f64 {
        if self.n < 2 {
            f64::NAN
        } else {
            self.m2_x / (self.n - 1) as f64
        }
    }

    /// Sample covariance of `y` and `x` (denominator n − 1).
    pub fn cov_xy(&self) -> f64 {
        if self.n < 2 {
            f64::NAN
        } else {
            self.c_xy / (self.n - 1) as f64
        }
    }
}
