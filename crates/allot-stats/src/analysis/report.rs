//! The typed report of `allot analyze`, as its JSON document has it (field names and order are
//! the wire format: `--format json` serializes this, the text and HTML renderers read it).
//! Statistics that cannot be computed are NaN and serialize as `null`.

use crate::timeline::{Basis, Together};
use indexmap::IndexMap;
use serde::Serialize;

/// The whole analysis.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Per experiment: configured experiments in file order, then the others as first seen.
    pub experiments: IndexMap<String, ExperimentReport>,
    /// Pairs of experiments that ran together and share units, with their interaction tests.
    pub interactions: Vec<Interaction>,
    /// Pairs that share units and get no interaction test, with why.
    pub interactions_skipped: Vec<SkippedInteraction>,
    /// Counts, what decided time, and the exposure issues.
    pub diagnostics: Diagnostics,
    /// The sequential looks of every comparison (`--sequential`), when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequential: Option<crate::looks::SequentialReport>,
    /// Bucket-reuse health per experiment (`--reuse-health`), when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse_health: Option<Vec<crate::reuse::ReuseHealth>>,
}

/// One experiment's results.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentReport {
    /// Variants in report order: the configured order, then any others (without a configuration,
    /// `control` first if seen).
    pub variants: Vec<String>,
    /// The variant the others are compared with (the first).
    pub control: String,
    /// The sample-ratio-mismatch test.
    pub srm: Srm,
    /// Units exposed to more than one variant (left out of the metrics).
    pub variant_jumpers: u64,
    /// Per metric, in the order the metrics file names them.
    pub metrics: IndexMap<String, MetricReport>,
}

/// What the expected split of an SRM test was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// The configured weights.
    Configured,
    /// Even (no configuration, or variants seen that it does not name).
    Even,
}

/// The sample-ratio-mismatch test of an experiment.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Srm {
    /// The test ran.
    Tested {
        /// Its p-value.
        p_value: f64,
        /// The chi-square statistic.
        chi2: f64,
        /// The expected split.
        split: Split,
        /// Units per variant.
        counts: IndexMap<String, u64>,
        /// Expected units per variant.
        expected: IndexMap<String, f64>,
        /// Set when `p_value` is below [`crate::srm::SRM_THRESHOLD`].
        warning: Option<String>,
    },
    /// The test could not run.
    Untestable {
        /// Always `None` (`null`: no p-value).
        p_value: Option<f64>,
        /// Units per variant.
        counts: IndexMap<String, u64>,
        /// Why not.
        error: String,
    },
}

impl Srm {
    /// The p-value, if the test ran.
    pub fn p_value(&self) -> Option<f64> {
        match self {
            Srm::Tested { p_value, .. } => Some(*p_value),
            Srm::Untestable { .. } => None,
        }
    }

    /// Units per variant.
    pub fn counts(&self) -> &IndexMap<String, u64> {
        match self {
            Srm::Tested { counts, .. } | Srm::Untestable { counts, .. } => counts,
        }
    }

    /// The mismatch warning, if any.
    pub fn warning(&self) -> Option<&str> {
        match self {
            Srm::Tested { warning, .. } => warning.as_deref(),
            Srm::Untestable { .. } => None,
        }
    }
}

/// One metric of one experiment.
#[derive(Debug, Clone, Serialize)]
pub struct MetricReport {
    /// Per variant, in report order.
    pub variants: IndexMap<String, VariantSummary>,
    /// Each other variant against the control.
    pub comparisons: Vec<Comparison>,
}

/// A variant's units and metric.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct VariantSummary {
    /// Units.
    pub n: u64,
    /// Mean per unit.
    pub mean: f64,
    /// Standard deviation per unit.
    pub sd: f64,
}

/// Bonferroni, Holm and Benjamini–Hochberg adjusted p-values of a comparison, over the
/// experiment's comparisons of every metric.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Adjusted {
    /// Bonferroni.
    pub bonferroni: f64,
    /// Holm.
    pub holm: f64,
    /// Benjamini–Hochberg.
    pub bh: f64,
}

/// One variant against the control on one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The variant.
    pub variant: String,
    /// The control.
    pub control: String,
    /// Difference of means (Welch), when it could be computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<f64>,
    /// Its confidence interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci: Option<[f64; 2]>,
    /// Its standard error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub se: Option<f64>,
    /// Its p-value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Why the difference could not be computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Relative lift (delta method), `null` when it cannot be computed.
    pub relative: Option<f64>,
    /// Its confidence interval.
    pub relative_ci: Option<[f64; 2]>,
    /// The CUPED-adjusted difference, `null` without a covariate for the metric.
    pub cuped: Option<CupedReport>,
    /// Adjusted p-values, when `p_value` is finite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_adjusted: Option<Adjusted>,
}

/// The CUPED-adjusted difference of a comparison.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum CupedReport {
    /// Computed.
    Estimate {
        /// Difference of adjusted means.
        diff: f64,
        /// Its confidence interval.
        ci: [f64; 2],
        /// Its p-value.
        p_value: f64,
        /// Share of the variance removed.
        variance_reduction: f64,
        /// The pooled θ.
        theta: f64,
        /// Adjusted p-values, when `p_value` is finite.
        #[serde(skip_serializing_if = "Option::is_none")]
        p_adjusted: Option<Adjusted>,
    },
    /// Not computable.
    Failed {
        /// Why.
        error: String,
    },
}

/// Whether a pair ran together, as the report says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RanTogether {
    /// Whether they ran at the same time.
    pub overlapped: bool,
    /// What decided.
    pub basis: Basis,
}

impl From<Together> for RanTogether {
    fn from(t: Together) -> RanTogether {
        RanTogether { overlapped: t.overlapped, basis: t.basis }
    }
}

/// One interaction contrast of a pair on one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Contrast {
    /// The first experiment's variant.
    pub a_variant: String,
    /// The second experiment's variant.
    pub b_variant: String,
    /// The interaction contrast.
    pub estimate: f64,
    /// Its standard error.
    pub se: f64,
    /// Its p-value.
    pub p_value: f64,
    /// Holm-adjusted over every interaction test of the report.
    pub p_adjusted: f64,
}

/// A pair of experiments that ran together and share units.
#[derive(Debug, Clone, Serialize)]
pub struct Interaction {
    /// The two experiments.
    pub experiments: [String; 2],
    /// Shared units tested.
    pub units: u64,
    /// Whether the configuration makes them exclusive (`null` without one).
    pub should_be_exclusive: Option<bool>,
    /// Per metric, the contrasts.
    pub metrics: IndexMap<String, Vec<Contrast>>,
    /// Whether they ran together.
    pub ran_together: RanTogether,
    /// Shared units that came to one after the other had stopped (left out).
    pub reused_after_stop: u64,
}

/// A pair that shares units and gets no interaction test.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedInteraction {
    /// The two experiments.
    pub experiments: [String; 2],
    /// Shared units.
    pub units: u64,
    /// Whether the configuration makes them exclusive (`null` without one).
    pub should_be_exclusive: Option<bool>,
    /// Whether they ran together.
    pub ran_together: RanTogether,
    /// Shared units that came to one after the other had stopped.
    pub reused_after_stop: u64,
    /// Why there is no test.
    pub reason: String,
}

/// `[start, end]` of an interval; `end` is `None` (`null`) while running.
pub type Span<T> = (T, Option<T>);

/// When one experiment ran, on each axis known (`diagnostics.runs`).
#[derive(Debug, Clone, Serialize)]
pub struct RunsReport {
    /// From the recorded state, in versions.
    pub state_versions: Option<Vec<Span<u64>>>,
    /// From the exposures' versions.
    pub seen_versions: Option<Span<u64>>,
    /// From the exposures' times.
    pub seen_times: Option<Span<f64>>,
}

/// A count and its first few examples.
#[derive(Debug, Clone, Serialize)]
pub struct Examples<T> {
    /// How many.
    pub count: u64,
    /// The first few ([`MAX_EXAMPLES`]).
    pub examples: Vec<T>,
}

/// Examples kept per list.
pub const MAX_EXAMPLES: usize = 5;

impl<T> Default for Examples<T> {
    fn default() -> Examples<T> {
        Examples { count: 0, examples: vec![] }
    }
}

impl<T> Examples<T> {
    pub(super) fn add(&mut self, example: impl FnOnce() -> T) {
        self.count += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(example());
        }
    }
}

/// A unit of two exclusive experiments that came to one after the other had stopped.
#[derive(Debug, Clone, Serialize)]
pub struct Reused {
    /// The unit.
    pub unit: String,
    /// The two experiments.
    pub experiments: [String; 2],
    /// What decided.
    pub basis: Basis,
}

/// Why units saw what they should not have, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueClass {
    /// An inclusion in either experiment.
    Inclusion,
    /// Unit ids of one person saw exclusive experiments or several variants of one.
    IdentityMerge,
    /// A unit saw several variants of one experiment.
    VariantJumping,
    /// Its exposures to the two are apart in time and a recorded change falls between them.
    ConfigChange,
    /// None of the above.
    Unexplained,
}

impl IssueClass {
    /// Every class, in report order.
    pub const ALL: [IssueClass; 5] = [
        IssueClass::Inclusion,
        IssueClass::IdentityMerge,
        IssueClass::VariantJumping,
        IssueClass::ConfigChange,
        IssueClass::Unexplained,
    ];

    /// Its key in the report.
    pub fn key(self) -> &'static str {
        match self {
            IssueClass::Inclusion => "inclusion",
            IssueClass::IdentityMerge => "identity_merge",
            IssueClass::VariantJumping => "variant_jumping",
            IssueClass::ConfigChange => "config_change",
            IssueClass::Unexplained => "unexplained",
        }
    }
}

/// An example of an exposure issue.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Issue {
    /// A unit in two exclusive experiments.
    Overlap {
        /// The unit.
        unit: String,
        /// The two experiments.
        experiments: [String; 2],
        /// The exclusion scope they share (`null` without a configuration).
        scope: Option<String>,
    },
    /// A unit that saw several variants of one experiment.
    VariantJumping {
        /// The unit.
        unit: String,
        /// The experiment.
        experiment: String,
    },
    /// Two unit ids of one person.
    IdentityMerge {
        /// The person.
        person: String,
        /// The two unit ids.
        units: [String; 2],
        /// The experiments each saw.
        experiments: [String; 2],
    },
}

/// Counts, what decided time, and the exposure issues.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostics {
    /// Whether the exposures carry times.
    pub exposure_times: bool,
    /// Whether the exposures carry configuration versions.
    pub exposure_versions: bool,
    /// Whether a recorded state with allocations was given.
    pub state: bool,
    /// When each experiment ran, per axis.
    pub runs: IndexMap<String, RunsReport>,
    /// Units of exclusive experiments reused after a stop (not violations).
    pub reused_after_stop: Examples<Reused>,
    /// Exposure rows read.
    pub exposure_rows: u64,
    /// Distinct units exposed.
    pub units: u64,
    /// Metric rows read.
    pub metric_rows: u64,
    /// Metric rows of units never exposed.
    pub metric_rows_without_exposure: u64,
    /// Covariate rows read, with covariates.
    pub covariate_rows: Option<u64>,
    /// Covariate rows of units never exposed, with covariates.
    pub covariate_rows_without_exposure: Option<u64>,
    /// Whether a configuration was given.
    pub config: bool,
    /// Persons with more than one unit id, with identities.
    pub identities: Option<u64>,
    /// Per class, in [`IssueClass::ALL`] order.
    pub exposure_issues: IndexMap<IssueClass, Examples<Issue>>,
    /// The significance level.
    pub alpha: f64,
    /// Where the statistics came from, when not from unit-level rows (the warehouse path:
    /// [`super::rows::SOURCE`]); absent for files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Exposure rows without a unit, a variant or a time, left out of everything (the warehouse
    /// path; a file with such a row is refused instead); absent for files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposure_rows_left_out: Option<u64>,
}
