//! The pure statistics of allot: planning (power, sample size, minimum detectable effect) and
//! analysis (Welch and delta-method estimates, CUPED, sample-ratio mismatch, multiple-comparison
//! corrections, interaction contrasts) over streaming sufficient statistics, when experiments
//! ran at the same time ([`timeline`]), the capacity schedule ([`schedule`]) and the whole
//! analysis of exposures and metrics with its typed report ([`analysis`]).
//!
//! Nothing here does I/O. Distributions (normal, Student's t, chi-square CDFs and quantiles) come
//! from `statrs`; the statistics themselves are written here by hand, each with its formula and a
//! reference in `docs/stats.md`, and each checked against scipy/statsmodels golden data in
//! `spec/stats/`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod analysis;
pub mod correct;
pub mod dist;
pub mod estimate;
pub mod interaction;
pub mod looks;
pub mod moments;
pub mod power;
pub mod reuse;
pub mod schedule;
pub mod sequential;
pub mod srm;
pub mod timeline;

/// A statistic that cannot be computed from its inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// An input is out of its domain; names the input.
    #[error("{field}: {message}")]
    Invalid {
        /// The input.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// Shorthand for an [`StatsError::Invalid`].
pub(crate) fn invalid<T>(field: &'static str, message: impl Into<String>) -> Result<T, StatsError> {
    Err(StatsError::Invalid { field, message: message.into() })
}

pub use moments::Moments;
