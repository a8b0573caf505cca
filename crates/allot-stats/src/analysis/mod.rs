//! The analysis of `allot analyze`: results of experiments from their exposures and metrics, as a
//! typed [`Report`] the CLI renders (text, JSON, HTML).
//!
//! The caller reads its files and adds rows one at a time: exposures go into a compact per-unit
//! map ([`Exposures`]: unit → its experiments and variants, first and last exposure time), which
//! grows with the number of distinct units and their experiments, not with rows; metric and
//! covariate rows are summed per unit into one `f64` per unit and metric ([`UnitValues`]). A
//! final pass over the units streams those values into the sufficient statistics
//! ([`Moments`] per experiment, variant and metric, and per pair of overlapping experiments and
//! cell), from which every estimate is computed.
//!
//! Whether two experiments ran at the same time is decided by [`crate::timeline`] from the
//! recorded state ([`Recorded`]), else the versions, else the times of the exposures: units of
//! two exclusive experiments that never ran at once (one stopped, the next started on its
//! buckets) are bucket reuse, not a violation, and pairs that never ran at once get no
//! interaction test. What the configuration says (variants and weights, exclusivity, inclusions)
//! comes through [`Design`], which the CLI implements over allot-core's configuration: this crate
//! depends on nothing else in the workspace.

mod data;
mod report;
pub mod rows;

pub use data::{Exposures, Identities, UnitValues};
pub use report::*;

use crate::correct::{adjust, Method};
use crate::estimate::{cuped, cuped_theta, ratio, relative, welch, Summary};
use crate::interaction::contrasts;
use crate::srm::{srm, SRM_THRESHOLD};
use crate::timeline::{self, Basis, Interval, Runs, Together};
use crate::Moments;
use data::Entry;
use indexmap::{IndexMap, IndexSet};
use std::collections::BTreeMap;

/// What the configuration says about the experiments seen, by experiment id.
pub trait Design {
    /// The configured experiments, in file order.
    fn experiments(&self) -> Vec<&str>;
    /// The configured variants of `experiment` and their weights, in configured order; `None`
    /// when the configuration does not have the experiment.
    fn variants(&self, experiment: &str) -> Option<Vec<(&str, f64)>>;
    /// Whether the configuration says `experiment` is running.
    fn running(&self, experiment: &str) -> bool;
    /// Whether `unit` is included (forced into a variant) in `experiment`.
    fn included(&self, experiment: &str, unit: &str) -> bool;
    /// Whether `a` and `b` must never share a unit.
    fn exclusive(&self, a: &str, b: &str) -> bool;
    /// The exclusion scope `a` and `b` share (a group as `group <name>`, or a tag); empty if none.
    fn scope(&self, a: &str, b: &str) -> String;
}

/// How the moments of a metric are read: `y` a per-unit value (with its pre-period value `x`
/// for CUPED when `cuped`), or a ratio metric `Σy/Σx` of per-unit numerators and denominators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A per-unit value; `cuped` when `x` is its pre-period covariate.
    Mean {
        /// Whether `x` is the covariate.
        cuped: bool,
    },
    /// `y` the numerator, `x` the denominator (delta method, [`crate::estimate::ratio`]).
    Ratio,
}

/// What the recorded state says about time.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// The change log's versions and their times (seconds since the epoch), in log order; entries
    /// whose time could not be read are left out.
    pub changes: Vec<(u64, f64)>,
    /// Each experiment's recorded allocations, `[version drawn, version released)`.
    pub runs: BTreeMap<String, Vec<Interval<u64>>>,
    /// Whether the state records any allocation at all.
    pub any_allocations: bool,
}

/// Everything the analysis reads.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// The exposures.
    pub exposures: &'a Exposures,
    /// Per-unit metric sums.
    pub metrics: &'a UnitValues,
    /// Per-unit pre-period covariates, for CUPED (by metric name).
    pub covariates: Option<&'a UnitValues>,
    /// Persons and their unit ids.
    pub identities: Option<&'a Identities>,
    /// The configuration.
    pub design: Option<&'a dyn Design>,
    /// The recorded state.
    pub recorded: Option<&'a Recorded>,
    /// Significance level of the intervals and tests, in (0, 1).
    pub alpha: f64,
}

/// Accumulators of one experiment: unit counts by (first) variant, and moments per variant and
/// metric.
struct ExpAcc {
    counts: Vec<u64>,
    jumped: u64,
    cells: Vec<Vec<Moments>>,
}

/// Accumulators of one pair of overlapping experiments: moments per cell and metric.
struct PairAcc {
    units: u64,
    cells: Vec<Moments>,
}

/// The exposure issues found so far, per class.
struct Issues {
    classes: IndexMap<IssueClass, Examples<Issue>>,
}

impl Issues {
    fn new() -> Issues {
        Issues { classes: IssueClass::ALL.iter().map(|c| (*c, Examples::default())).collect() }
    }

    fn add(&mut self, class: IssueClass, example: impl FnOnce() -> Issue) {
        if let Some(list) = self.classes.get_mut(&class) {
            list.add(example);
        }
    }
}

/// When each experiment seen ran, on every axis known: the recorded state's allocations (in
/// versions, and in times when the change log gives the time of every version used), and the
/// first and last version and time of its exposures, open-ended when the configuration says it
/// is running.
fn runs_of(ex: &Exposures, names: &[&str], design: Option<&dyn Design>, recorded: Option<&Recorded>) -> Vec<Runs> {
    let times: BTreeMap<u64, f64> = recorded.map(|r| r.changes.iter().copied().collect()).unwrap_or_default();
    names
        .iter()
        .enumerate()
        .map(|(e, name)| {
            let recorded: Vec<Interval<u64>> = recorded.and_then(|r| r.runs.get(*name)).cloned().unwrap_or_default();
            let in_times = |i: &Interval<u64>| -> Option<Interval<f64>> {
                let end = match i.end {
                    timeline::End::Before(v) => Some(*times.get(&v)?),
                    _ => None,
                };
                Some(Interval::recorded(*times.get(&i.start)?, end))
            };
            let state_times: Option<Vec<Interval<f64>>> = recorded.iter().map(in_times).collect();
            let running = design.is_some_and(|d| d.running(name));
            let [v0, v1] = ex.exp_versions[e];
            let [t0, t1] = ex.exp_times[e];
            Runs {
                state_times: state_times.filter(|_| !recorded.is_empty()),
                state_versions: (!recorded.is_empty()).then_some(recorded),
                seen_versions: ex.has_versions.then(|| Interval::seen(v0, v1, running)),
                seen_times: ex.has_times.then(|| Interval::seen(t0, t1, running)),
            }
        })
        .collect()
}

/// Whether two experiments ran together, decided once per pair.
struct Pairs<'a> {
    runs: &'a [Runs],
    cache: std::cell::RefCell<BTreeMap<(u32, u32), Together>>,
}

impl Pairs<'_> {
    fn together(&self, a: u32, b: u32) -> Together {
        *self
            .cache
            .borrow_mut()
            .entry((a.min(b), a.max(b)))
            .or_insert_with(|| timeline::ran_together(&self.runs[a as usize], &self.runs[b as usize]))
    }

    /// Whether the unit of entries `a` and `b` (of two exclusive experiments) was reused after a
    /// stop: the pair never ran together, or the unit came to one after the other had stopped.
    fn reused(&self, ex: &Exposures, (ia, a): (u32, &Entry), (ib, b): (u32, &Entry)) -> Option<Basis> {
        let t = self.together(a.exp, b.exp);
        if !t.overlapped {
            return Some(t.basis);
        }
        let (ra, rb) = (&self.runs[a.exp as usize], &self.runs[b.exp as usize]);
        timeline::reused_after_stop(ra, &ex.seen(ia, a), rb, &ex.seen(ib, b))
    }
}

/// `[start, end]` of an interval in the report; `end` is `None` while running.
fn span<T: Copy>(i: &Interval<T>) -> Span<T> {
    let end = match i.end {
        timeline::End::Open => None,
        timeline::End::Before(e) | timeline::End::At(e) => Some(e),
    };
    (i.start, end)
}

/// An experiment's runs in the report (`diagnostics.runs`).
fn runs_report(r: &Runs) -> RunsReport {
    RunsReport {
        state_versions: r.state_versions.as_ref().map(|v| v.iter().map(span).collect()),
        seen_versions: r.seen_versions.as_ref().map(span),
        seen_times: r.seen_times.as_ref().map(span),
    }
}

/// The two experiments of a pair, by name.
fn two(names: &[&str], a: u32, b: u32) -> [String; 2] {
    [names[a as usize].to_string(), names[b as usize].to_string()]
}

/// Analyses the exposures and metrics: the whole report.
pub fn analyze(inputs: Inputs<'_>) -> Report {
    let Inputs { exposures: ex, metrics, covariates: covs, identities, design, recorded, alpha } = inputs;
    // Times of recorded configuration changes, when the state has any.
    let changes: Option<Vec<f64>> = recorded.map(|r| r.changes.iter().map(|c| c.1).collect::<Vec<_>>());
    let changes = changes.filter(|c| !c.is_empty());
    let changes = changes.as_deref();
    // Covariate of each metric, by name.
    let cov_of: Vec<Option<&Vec<f64>>> =
        metrics.names.iter().map(|m| covs.and_then(|c| c.names.get_index_of(m).map(|i| &c.values[i]))).collect();
    let kinds: Vec<MetricKind> = cov_of.iter().map(|c| MetricKind::Mean { cuped: c.is_some() }).collect();
    let nm = metrics.names.len();
    let ne = ex.experiments.len();
    let names: Vec<&str> = ex.experiments.iter().map(|s| &**s).collect();

    // Exclusivity between the experiments seen, from the configuration.
    let excl: Vec<Vec<bool>> =
        (0..ne).map(|a| (0..ne).map(|b| design.is_some_and(|c| c.exclusive(names[a], names[b]))).collect()).collect();

    let mut accs: Vec<ExpAcc> = ex
        .variants
        .iter()
        .map(|vs| ExpAcc { counts: vec![0; vs.len()], jumped: 0, cells: vec![vec![Moments::default(); nm]; vs.len()] })
        .collect();
    let runs = runs_of(ex, &names, design, recorded);
    let together = Pairs { runs: &runs, cache: Default::default() };
    let mut pairs: IndexMap<(u32, u32), PairAcc> = IndexMap::new();
    // Units of pairs left out of the interaction tests: of pairs that never ran together, and of
    // exclusive pairs, units reused after a stop.
    let mut apart: IndexMap<(u32, u32), u64> = IndexMap::new();
    let mut reused_in: IndexMap<(u32, u32), u64> = IndexMap::new();
    let mut reused = Examples::default();
    let mut issues = Issues::new();
    let mut buf = vec![];
    for u in 0..ex.units() {
        ex.of_unit(u, &mut buf);
        let unit_id = || ex.unit_name(u).to_string();
        for (_, e) in &buf {
            let acc = &mut accs[e.exp as usize];
            acc.counts[e.var as usize] += 1;
            if e.jumped {
                acc.jumped += 1;
                issues.add(IssueClass::VariantJumping, || Issue::VariantJumping {
                    unit: unit_id(),
                    experiment: names[e.exp as usize].to_string(),
                });
                continue;
            }
            for ((cell, ys), xs) in acc.cells[e.var as usize].iter_mut().zip(&metrics.values).zip(&cov_of) {
                cell.push(ys[u], xs.map_or(0.0, |c| c[u]));
            }
        }
        for (i, (ia, a)) in buf.iter().enumerate() {
            for (ib, b) in &buf[i + 1..] {
                let key = (a.exp, b.exp);
                if excl[a.exp as usize][b.exp as usize] {
                    if let Some(basis) = together.reused(ex, (*ia, a), (*ib, b)) {
                        *reused_in.entry(key).or_insert(0) += 1;
                        reused.add(|| Reused { unit: unit_id(), experiments: two(&names, a.exp, b.exp), basis });
                        continue;
                    }
                    let (na, nb) = (names[a.exp as usize], names[b.exp as usize]);
                    let class = classify(design, changes, &unit_id(), na, nb, a, b);
                    issues.add(class, || Issue::Overlap {
                        unit: unit_id(),
                        experiments: two(&names, a.exp, b.exp),
                        scope: design.map(|d| d.scope(na, nb)),
                    });
                }
                if !together.together(a.exp, b.exp).overlapped {
                    *apart.entry(key).or_insert(0) += 1;
                    continue;
                }
                if a.jumped || b.jumped {
                    continue;
                }
                let nb = ex.variants[b.exp as usize].len();
                let na = ex.variants[a.exp as usize].len();
                let p = pairs
                    .entry((a.exp, b.exp))
                    .or_insert_with(|| PairAcc { units: 0, cells: vec![Moments::default(); na * nb * nm] });
                p.units += 1;
                let cell = (a.var as usize * nb + b.var as usize) * nm;
                for ((c, ys), xs) in p.cells[cell..cell + nm].iter_mut().zip(&metrics.values).zip(&cov_of) {
                    c.push(ys[u], xs.map_or(0.0, |v| v[u]));
                }
            }
        }
    }
    let persons = identities.map(|ids| identity_merges(ids, ex, &excl, &together, &names, &mut issues));

    // Per-experiment results: configured experiments in file order, then the others as first seen.
    let mut order: Vec<usize> = design
        .map(|d| d.experiments().into_iter().filter_map(|k| ex.experiments.get_index_of(k)).collect())
        .unwrap_or_default();
    order.extend((0..ne).filter(|e| !order.contains(e)).collect::<Vec<_>>());
    let experiments: IndexMap<String, ExperimentReport> = order
        .into_iter()
        .map(|e| {
            (
                names[e].to_string(),
                experiment(names[e], &ex.variants[e], &accs[e], &metrics.names, &kinds, design, alpha),
            )
        })
        .collect();
    let should_be_exclusive = |a: u32, b: u32| design.is_some().then(|| excl[a as usize][b as usize]);
    let mut interactions = interactions(&pairs, ex, &names, &metrics.names, &should_be_exclusive);
    for (entry, key) in interactions.iter_mut().zip(pairs.keys()) {
        entry.ran_together = together.together(key.0, key.1).into();
        entry.reused_after_stop = reused_in.get(key).copied().unwrap_or(0);
    }
    // Pairs with shared units and no interaction test, with why.
    let mut skipped_keys: Vec<(u32, u32)> = apart.keys().chain(reused_in.keys()).copied().collect();
    skipped_keys.sort_unstable();
    skipped_keys.dedup();
    let interactions_skipped: Vec<SkippedInteraction> = skipped_keys
        .into_iter()
        .filter(|k| !pairs.contains_key(k))
        .map(|(a, b)| {
            let t = together.together(a, b);
            let units = apart.get(&(a, b)).copied().unwrap_or(0) + reused_in.get(&(a, b)).copied().unwrap_or(0);
            let reason = if t.overlapped {
                "every shared unit came to one after the other had stopped (bucket reuse)".to_string()
            } else {
                format!("they never ran at the same time (by {})", t.basis.describe())
            };
            SkippedInteraction {
                experiments: two(&names, a, b),
                units,
                should_be_exclusive: should_be_exclusive(a, b),
                ran_together: t.into(),
                reused_after_stop: reused_in.get(&(a, b)).copied().unwrap_or(0),
                reason,
            }
        })
        .collect();
    let runs = names.iter().zip(&runs).map(|(name, r)| (name.to_string(), runs_report(r))).collect();
    Report {
        experiments,
        interactions,
        interactions_skipped,
        diagnostics: Diagnostics {
            exposure_times: ex.has_times,
            exposure_versions: ex.has_versions,
            state: recorded.is_some_and(|r| r.any_allocations),
            runs,
            reused_after_stop: reused,
            exposure_rows: ex.rows(),
            units: ex.units() as u64,
            metric_rows: metrics.rows,
            metric_rows_without_exposure: metrics.orphan_rows,
            covariate_rows: covs.map(|c| c.rows),
            covariate_rows_without_exposure: covs.map(|c| c.orphan_rows),
            config: design.is_some(),
            identities: persons,
            exposure_issues: issues.classes,
            alpha,
            source: None,
            exposure_rows_left_out: None,
        },
        sequential: None,
        reuse_health: None,
    }
}

/// Why a unit saw two experiments that exclude each other: an inclusion in either; else, when its
/// exposures to the two do not overlap in time and a recorded change falls between them (or no
/// change log is available), a configuration change; else unexplained.
fn classify(
    design: Option<&dyn Design>,
    changes: Option<&[f64]>,
    unit: &str,
    a: &str,
    b: &str,
    ea: &Entry,
    eb: &Entry,
) -> IssueClass {
    let included = |id: &str| design.is_some_and(|d| d.included(id, unit));
    let gap = if ea.last < eb.first {
        Some((ea.last, eb.first))
    } else if eb.last < ea.first {
        Some((eb.last, ea.first))
    } else {
        None
    };
    let changed = gap.is_some_and(|(from, to)| changes.is_none_or(|c| c.iter().any(|&t| t > from && t <= to)));
    if included(a) || included(b) {
        IssueClass::Inclusion
    } else if changed {
        IssueClass::ConfigChange
    } else {
        IssueClass::Unexplained
    }
}

/// Records persons whose several unit ids saw exclusive experiments or several variants of one
/// experiment. Returns the number of persons with more than one unit id.
fn identity_merges(
    ids: &Identities,
    ex: &Exposures,
    excl: &[Vec<bool>],
    together: &Pairs<'_>,
    names: &[&str],
    issues: &mut Issues,
) -> u64 {
    let mut merged = 0;
    let mut buf = vec![];
    for (person, units) in &ids.people {
        if units.len() < 2 {
            continue;
        }
        merged += 1;
        let mut all: Vec<(u32, u32, Entry)> = vec![];
        for &u in units {
            ex.of_unit(u as usize, &mut buf);
            all.extend(buf.iter().map(|(i, e)| (u, *i, *e)));
        }
        for (i, (ua, ia, a)) in all.iter().enumerate() {
            for (ub, ib, b) in &all[i + 1..] {
                if ua == ub {
                    continue;
                }
                // Exclusive experiments of one person's units conflict unless that is bucket reuse.
                let conflict = (a.exp == b.exp && a.var != b.var)
                    || (excl[a.exp as usize][b.exp as usize] && together.reused(ex, (*ia, a), (*ib, b)).is_none());
                if conflict {
                    let id = |u: u32| ex.unit_name(u as usize).to_string();
                    issues.add(IssueClass::IdentityMerge, || Issue::IdentityMerge {
                        person: person.to_string(),
                        units: [id(*ua), id(*ub)],
                        experiments: two(names, a.exp, b.exp),
                    });
                }
            }
        }
    }
    merged
}

/// Variant names in report order (the configured order, then any others), and the configured
/// weights when every variant seen is configured.
fn variant_order(
    name: &str,
    seen: &IndexSet<Box<str>>,
    design: Option<&dyn Design>,
) -> (Vec<String>, Option<Vec<f64>>) {
    let configured = design.and_then(|d| d.variants(name));
    let mut order: Vec<String> =
        configured.as_ref().map(|vs| vs.iter().map(|v| v.0.to_string()).collect()).unwrap_or_default();
    let all_configured = seen.iter().all(|v| order.iter().any(|o| o == &**v));
    for v in seen {
        if !order.iter().any(|o| o == &**v) {
            order.push(v.to_string());
        }
    }
    let weights = match &configured {
        Some(vs) if all_configured => Some(vs.iter().map(|v| v.1).collect()),
        _ => None,
    };
    if configured.is_none() {
        // Without a configuration the control is `control` if present, else the first seen.
        if let Some(i) = order.iter().position(|v| v == "control") {
            let c = order.remove(i);
            order.insert(0, c);
        }
    }
    (order, weights)
}

/// One experiment's report from its accumulators: `acc.cells[variant][metric]` holds the
/// moments of each metric, read as `kinds` says. The file path and the sufficient-statistics
/// path ([`rows`]) both end here.
fn experiment(
    name: &str,
    seen: &IndexSet<Box<str>>,
    acc: &ExpAcc,
    metric_names: &IndexSet<Box<str>>,
    kinds: &[MetricKind],
    design: Option<&dyn Design>,
    alpha: f64,
) -> ExperimentReport {
    let (order, weights) = variant_order(name, seen, design);
    let idx_of = |v: &str| seen.get_index_of(v);
    let counts: Vec<u64> = order.iter().map(|v| idx_of(v).map_or(0, |i| acc.counts[i])).collect();
    let (split, w) = match weights {
        Some(w) => (Split::Configured, w),
        None => (Split::Even, vec![1.0; order.len()]),
    };
    let counts_by_variant = || order.iter().cloned().zip(counts.iter().copied()).collect::<IndexMap<String, u64>>();
    let srm = match srm(&counts, &w) {
        Ok(r) => Srm::Tested {
            p_value: r.p_value,
            chi2: r.chi2,
            split,
            counts: counts_by_variant(),
            expected: order.iter().cloned().zip(r.expected.iter().copied()).collect(),
            warning: (r.p_value < SRM_THRESHOLD).then(|| format!(
                "sample ratio mismatch: p = {:.2e} < {SRM_THRESHOLD}; the assignment or the logging is broken, do not trust the results", r.p_value)),
        },
        Err(e) => Srm::Untestable { p_value: None, counts: counts_by_variant(), error: e.to_string() },
    };
    let control = order.first().cloned().unwrap_or_default();
    let mut out: IndexMap<String, MetricReport> = IndexMap::new();
    // (metric, comparison index) of every raw and CUPED p-value, for the corrections.
    let mut raw_p: Vec<(usize, usize, f64)> = vec![];
    let mut cuped_p: Vec<(usize, usize, f64)> = vec![];
    for (m, mname) in metric_names.iter().enumerate() {
        let kind = kinds.get(m).copied().unwrap_or(MetricKind::Mean { cuped: false });
        let cell = |v: &str| idx_of(v).map_or_else(Moments::default, |i| acc.cells[i][m]);
        let summary = |c: &Moments| match kind {
            MetricKind::Mean { .. } => Summary::of_y(c),
            MetricKind::Ratio => ratio(c),
        };
        let variants: IndexMap<String, VariantSummary> = order
            .iter()
            .map(|v| {
                let s = summary(&cell(v));
                (v.clone(), VariantSummary { n: s.n, mean: s.mean, sd: s.var.sqrt() })
            })
            .collect();
        let theta = match kind {
            MetricKind::Mean { cuped: true } => Some(cuped_theta(acc.cells.iter().map(|r| &r[m]))),
            _ => None,
        };
        let c0 = cell(&control);
        let mut comps: Vec<Comparison> = vec![];
        for v in order.iter().skip(1) {
            let c1 = cell(v);
            let (s1, s0) = (summary(&c1), summary(&c0));
            let mut o = Comparison {
                variant: v.clone(),
                control: control.clone(),
                diff: None,
                ci: None,
                se: None,
                p_value: None,
                error: None,
                relative: None,
                relative_ci: None,
                cuped: None,
                p_adjusted: None,
            };
            match welch(&s1, &s0, alpha) {
                Ok(w) => {
                    o.diff = Some(w.diff);
                    o.ci = Some(w.ci);
                    o.se = Some(w.se);
                    o.p_value = Some(w.p_value);
                    if w.p_value.is_finite() {
                        raw_p.push((m, comps.len(), w.p_value));
                    }
                }
                Err(e) => o.error = Some(e.to_string()),
            }
            if let Ok(r) = relative(&s1, &s0, alpha) {
                o.relative = Some(r.lift);
                o.relative_ci = Some(r.ci);
            }
            o.cuped = match theta.map(|t| cuped(&c1, &c0, t, alpha)) {
                Some(Ok(c)) => {
                    if c.welch.p_value.is_finite() {
                        cuped_p.push((m, comps.len(), c.welch.p_value));
                    }
                    Some(CupedReport::Estimate {
                        diff: c.welch.diff,
                        ci: c.welch.ci,
                        p_value: c.welch.p_value,
                        variance_reduction: c.variance_reduction,
                        theta: c.theta,
                        p_adjusted: None,
                    })
                }
                Some(Err(e)) => Some(CupedReport::Failed { error: e.to_string() }),
                None => None,
            };
            comps.push(o);
        }
        out.insert(mname.to_string(), MetricReport { variants, comparisons: comps });
    }
    for (list, of_cuped) in [(&raw_p, false), (&cuped_p, true)] {
        let p: Vec<f64> = list.iter().map(|x| x.2).collect();
        let adj: Vec<Vec<f64>> =
            [Method::Bonferroni, Method::Holm, Method::Bh].iter().map(|m| adjust(&p, *m)).collect();
        for (i, (m, ci, _)) in list.iter().enumerate() {
            let Some(c) = out.get_index_mut(*m).and_then(|(_, r)| r.comparisons.get_mut(*ci)) else { continue };
            let adjusted = Some(Adjusted { bonferroni: adj[0][i], holm: adj[1][i], bh: adj[2][i] });
            if !of_cuped {
                c.p_adjusted = adjusted;
            } else if let Some(CupedReport::Estimate { p_adjusted, .. }) = &mut c.cuped {
                *p_adjusted = adjusted;
            }
        }
    }
    ExperimentReport { variants: order, control, srm, variant_jumpers: acc.jumped, metrics: out }
}

fn interactions(
    pairs: &IndexMap<(u32, u32), PairAcc>,
    ex: &Exposures,
    names: &[&str],
    metric_names: &IndexSet<Box<str>>,
    should_be_exclusive: &dyn Fn(u32, u32) -> Option<bool>,
) -> Vec<Interaction> {
    let nm = metric_names.len();
    let mut out = vec![];
    // (pair, metric, p-value) of every contrast, in order.
    let mut all_p: Vec<(usize, usize, f64)> = vec![];
    for (&(a, b), p) in pairs {
        let (va, vb) = (&ex.variants[a as usize], &ex.variants[b as usize]);
        // Control first: `control` if present, else the first seen variant.
        let order = |vs: &IndexSet<Box<str>>| {
            let mut o: Vec<usize> = (0..vs.len()).collect();
            if let Some(c) = vs.get_index_of("control") {
                o.retain(|&i| i != c);
                o.insert(0, c);
            }
            o
        };
        let (oa, ob) = (order(va), order(vb));
        let mut per_metric: IndexMap<String, Vec<Contrast>> = IndexMap::new();
        for (m, mname) in metric_names.iter().enumerate() {
            let table: Vec<Vec<Summary>> = oa
                .iter()
                .map(|&i| ob.iter().map(|&j| Summary::of_y(&p.cells[(i * vb.len() + j) * nm + m])).collect())
                .collect();
            let list: Vec<Contrast> = contrasts(&table)
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    all_p.push((out.len(), m, c.p_value));
                    Contrast {
                        a_variant: va[oa[c.a]].to_string(),
                        b_variant: vb[ob[c.b]].to_string(),
                        estimate: c.estimate,
                        se: c.se,
                        p_value: c.p_value,
                        p_adjusted: f64::NAN,
                    }
                })
                .collect();
            per_metric.insert(mname.to_string(), list);
        }
        out.push(Interaction {
            experiments: two(names, a, b),
            units: p.units,
            should_be_exclusive: should_be_exclusive(a, b),
            metrics: per_metric,
            ran_together: Together { basis: Basis::Unknown, overlapped: true }.into(),
            reused_after_stop: 0,
        });
    }
    // Corrected for the number of interaction tests (pairs × metrics × contrasts), Holm.
    let ps: Vec<f64> = all_p.iter().map(|x| if x.2.is_finite() { x.2 } else { 1.0 }).collect();
    let adj = adjust(&ps, Method::Holm);
    let mut k: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for ((pair, m, _), q) in all_p.iter().zip(adj) {
        let i = k.entry((*pair, *m)).or_insert(0);
        if let Some(c) = out[*pair].metrics.get_index_mut(*m).and_then(|(_, l)| l.get_mut(*i)) {
            c.p_adjusted = q;
        }
        *i += 1;
    }
    out
}
