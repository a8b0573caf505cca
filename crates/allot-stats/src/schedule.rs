//! The capacity schedule of `allot capacity`: when each planned experiment can start beside the
//! experiments it competes with, and the typed report the CLI renders (text or JSON).
//!
//! The rule (docs/stats.md, "capacity"): experiments are taken in priority order; each starts at
//! the earliest day — day 0 or a day a competitor ends — from which, for its whole run, its reach
//! plus the reach of the competitors running at the same time stays within the room it competes
//! for. What competes and how much room there is come from the configuration (the CLI works them
//! out with allot-core); this module only schedules.

use indexmap::IndexMap;
use serde::Serialize;

/// An experiment holding room in the schedule, from day `start` to day `end` (running ones hold
/// it from −∞ to +∞).
#[derive(Debug, Clone, PartialEq)]
pub struct Booking {
    /// Experiment id.
    pub id: String,
    /// Share of all units it reaches.
    pub reach: f64,
    /// First day.
    pub start: f64,
    /// Day after its last.
    pub end: f64,
}

/// The earliest start of an experiment of `reach` that runs `days` beside `blockers` (the
/// bookings it competes with) within `capacity`; `None` when it never fits or never finishes.
pub fn earliest_start(blockers: &[&Booking], reach: f64, capacity: f64, days: f64) -> Option<f64> {
    if !days.is_finite() {
        return None;
    }
    let fits_at = |t: f64| {
        let mut points = vec![t];
        points.extend(blockers.iter().map(|b| b.start).filter(|&s| s > t && s < t + days));
        points.iter().all(|&q| {
            let load: f64 = blockers.iter().filter(|b| b.start <= q && q < b.end).map(|b| b.reach).sum();
            reach + load <= capacity + 1e-12
        })
    };
    let mut candidates = vec![0.0];
    candidates.extend(blockers.iter().map(|b| b.end).filter(|e| e.is_finite() && *e > 0.0));
    candidates.sort_by(f64::total_cmp);
    candidates.into_iter().find(|&t| fits_at(t))
}

/// The blockers still running when an experiment that waited starts on day `start`.
pub fn waits_for(blockers: &[&Booking], start: Option<f64>) -> Vec<String> {
    match start {
        Some(t) if t > 0.0 => blockers.iter().filter(|b| b.start < t && b.end >= t).map(|b| b.id.clone()).collect(),
        _ => vec![],
    }
}

/// The report of `allot capacity`.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    /// Each planned experiment, in priority order.
    pub experiments: IndexMap<String, ExperimentPlan>,
    /// Each exclusion scope (tag, or `group <name>`) of the planned experiments.
    pub scopes: IndexMap<String, ScopePlan>,
    /// Running experiments not in the traffic file: they keep their share indefinitely.
    pub already_running: Vec<String>,
}

/// The baseline of a planned metric.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub enum Baseline {
    /// A proportion.
    Rate {
        /// Baseline conversion rate.
        rate: f64,
    },
    /// A mean.
    Mean {
        /// Baseline mean.
        mean: f64,
        /// Standard deviation per unit.
        sd: f64,
    },
}

/// Units and days without CUPED.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct UnitsAndDays {
    /// Units needed.
    pub units_needed: f64,
    /// Days (null when it never finishes).
    pub days: Option<f64>,
}

/// What CUPED saves.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Saved {
    /// Units saved.
    pub units: f64,
    /// Days saved (null when either never finishes).
    pub days: Option<f64>,
}

/// One planned experiment.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentPlan {
    /// Unit type.
    pub unit: String,
    /// Share of all units it reaches.
    pub reach: f64,
    /// Units it reaches per day.
    pub daily_units: f64,
    /// Its metric's baseline.
    pub metric: Baseline,
    /// Minimum detectable effect in the metric's units.
    pub mde_absolute: f64,
    /// Significance level.
    pub alpha: f64,
    /// Power.
    pub power: f64,
    /// CUPED's pre-period correlation.
    pub rho: f64,
    /// Arms.
    pub arms: usize,
    /// Units needed (with CUPED when `rho` > 0).
    pub units_needed: f64,
    /// Days needed (null when its reach is 0).
    pub days: Option<f64>,
    /// `starts now`, `waits` or `cannot run`.
    pub status: &'static str,
    /// First day, if it can run.
    pub start_day: Option<f64>,
    /// Day after its last, if it can run.
    pub end_day: Option<f64>,
    /// The competitors it waits for.
    pub waits_for: Vec<String>,
    /// Why it cannot run.
    pub reason: Option<String>,
    /// Without CUPED.
    pub without_cuped: UnitsAndDays,
    /// What CUPED saves.
    pub cuped_saves: Saved,
}

/// One exclusion scope.
#[derive(Debug, Clone, Serialize)]
pub struct ScopePlan {
    /// Planned experiments in it.
    pub experiments: Vec<String>,
    /// Most of them running at once.
    pub at_once: usize,
    /// Those that start on day 0.
    pub start_now: Vec<String>,
    /// Those that wait, with their start day.
    pub wait: Vec<Wait>,
    /// Those that cannot run.
    pub cannot_run: Vec<String>,
    /// The day all of them are done.
    pub all_done_day: f64,
}

/// An experiment that waits.
#[derive(Debug, Clone, Serialize)]
pub struct Wait {
    /// Experiment id.
    pub experiment: String,
    /// Its start day.
    pub start_day: f64,
}

/// The scope report of the planned experiments `ids` among `bookings`.
pub fn scope_plan(bookings: &[Booking], ids: &[String]) -> ScopePlan {
    let mine: Vec<&Booking> = bookings.iter().filter(|s| ids.contains(&s.id)).collect();
    let at_once =
        mine.iter().map(|s| mine.iter().filter(|o| o.start <= s.start && s.start < o.end).count()).max().unwrap_or(0);
    ScopePlan {
        experiments: ids.to_vec(),
        at_once,
        start_now: mine.iter().filter(|s| s.start == 0.0).map(|s| s.id.clone()).collect(),
        wait: mine
            .iter()
            .filter(|s| s.start > 0.0)
            .map(|s| Wait { experiment: s.id.clone(), start_day: s.start })
            .collect(),
        cannot_run: ids.iter().filter(|i| !mine.iter().any(|s| &s.id == *i)).cloned().collect(),
        all_done_day: mine.iter().map(|s| s.end).fold(0.0_f64, f64::max),
    }
}

/// `x` when finite (JSON has no infinity).
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}
