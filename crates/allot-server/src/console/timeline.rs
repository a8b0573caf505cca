//! The timeline of each exclusion scope: who held buckets of it from which version to which, read
//! from the recorded allocations (an allocation's first draw is its start, later draws its growths
//! or forced shrinks, its release its end), the re-salts of its unit type (the state's
//! `spaces.<unit>.resalts`), and, when the traffic is given, each draft's planned start and
//! duration from the capacity planner ([`crate::capacity::plan`], as `allot capacity` and
//! `POST /api/v1/capacity` compute them). Dates come from the change log (each version's time).
//!
//! The picture is a Gantt chart in two parts: the past over versions (evenly spaced: each version
//! one step, so that a busy day does not crowd out a quiet month), then, after "now", the plan over
//! days. The table beside it has the same rows with versions and dates.

use crate::capacity::CapacityReport;
use crate::console::space::UnitView;
use allot_core::config::{Config, ExpState};
use allot_core::state::{DrawOp, OwnerKind, State};

/// Width of the past part of the chart, in SVG units.
pub(crate) const PAST_W: f64 = 720.0;
/// Width of the planned part (only when something is planned).
pub(crate) const PLAN_W: f64 = 280.0;
/// Where the bars start (the labels' column).
pub(crate) const LABEL_W: f64 = 200.0;
/// Height of a row.
pub(crate) const ROW_H: f64 = 26.0;

/// One bar of the chart.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    /// The owner: an experiment or a holdout.
    pub(crate) owner: String,
    /// `experiment`, `holdout` or `planned`.
    pub(crate) kind: &'static str,
    /// The owner's colour class (`c0`..`c5`) for experiments; a pattern for the others.
    pub(crate) class: String,
    /// First version it held buckets (for a planned draft: none).
    pub(crate) from: Option<u64>,
    /// Version it released them (none: still holds them).
    pub(crate) to: Option<u64>,
    /// The versions it grew (or was shrunk by force) at.
    pub(crate) growths: Vec<(u64, &'static str)>,
    /// Planned: start day and end day from now (end none: cannot run with this traffic).
    pub(crate) plan: Option<(f64, Option<f64>, &'static str)>,
    /// The row's text (table and tooltip).
    pub(crate) text: String,
    /// SVG geometry: x, width, y of the bar; tick x of each growth.
    pub(crate) x: f64,
    pub(crate) w: f64,
    pub(crate) y: f64,
    pub(crate) ticks: Vec<f64>,
    /// The bar runs on past "now".
    pub(crate) open: bool,
}

/// One scope's timeline.
#[derive(Debug, Clone)]
pub(crate) struct ScopeTimeline {
    pub(crate) unit: String,
    pub(crate) kind: &'static str,
    pub(crate) name: String,
    pub(crate) anchor: String,
    pub(crate) bars: Vec<Bar>,
    /// Re-salts of the unit type: version and x.
    pub(crate) resalts: Vec<(u64, f64)>,
    /// SVG size.
    pub(crate) width: f64,
    pub(crate) height: f64,
    /// x of "now".
    pub(crate) now_x: f64,
    /// Labels of the axis: x and text.
    pub(crate) axis: Vec<(f64, String)>,
    /// Drafts of the scope with no plan (no traffic given, or not in the plan).
    pub(crate) unplanned: Vec<String>,
}

/// The time of each version, from the change log.
fn time_of(state: &State, v: u64) -> String {
    state.log.iter().find(|l| l.version == v).map(|l| l.time.clone()).unwrap_or_default()
}

/// `2026-12-01T17:52:32.87Z` → `2026-12-01 17:52`.
pub(crate) fn short(t: &str) -> String {
    match (t.get(..10), t.get(11..16)) {
        (Some(d), Some(h)) => format!("{d} {h}"),
        _ => t.to_string(),
    }
}

/// The timeline of every scope of every unit type.
pub(crate) fn timelines(
    state: &State,
    cfg: &Config,
    spaces: &[UnitView],
    plan: Option<&CapacityReport>,
) -> Vec<ScopeTimeline> {
    let current = state.version.max(1);
    // Versions 1..=current, each one step; the bar of version v starts at the left of step v.
    let step = PAST_W / current as f64;
    let vx = |v: u64| LABEL_W + (v.saturating_sub(1)) as f64 * step;
    let now_x = LABEL_W + PAST_W;
    let horizon = plan
        .map(|p| p.experiments.values().filter_map(|e| e.end_day.or(e.start_day)).fold(0.0_f64, f64::max))
        .unwrap_or(0.0)
        .max(1.0);
    let dx = |d: f64| now_x + (d / horizon).min(1.0) * PLAN_W;
    let mut out = vec![];
    for unit in spaces {
        let resalts: Vec<(u64, f64)> = state
            .spaces
            .get(&unit.unit)
            .map(|s| s.resalts.iter().map(|r| (r.version, vx(r.version))).collect())
            .unwrap_or_default();
        for scope in &unit.scopes {
            let mut bars = vec![];
            let mut unplanned = vec![];
            for (i, id) in scope.members.iter().enumerate() {
                let class = format!("c{}", i % 6);
                for a in state
                    .allocations
                    .iter()
                    .filter(|a| a.kind == OwnerKind::Experiment && a.owner == *id && a.space == unit.unit)
                {
                    let Some(first) = a.draws.first() else { continue };
                    let growths: Vec<(u64, &'static str)> = a
                        .draws
                        .iter()
                        .skip(1)
                        .map(|d| (d.version, if d.op == DrawOp::Remove { "shrunk (forced)" } else { "grown" }))
                        .collect();
                    bars.push(Bar {
                        owner: id.clone(),
                        kind: "experiment",
                        class: class.clone(),
                        from: Some(first.version),
                        to: a.released,
                        growths,
                        plan: None,
                        text: String::new(),
                        x: 0.0,
                        w: 0.0,
                        y: 0.0,
                        ticks: vec![],
                        open: a.released.is_none(),
                    });
                }
                if cfg.experiments.get(id).is_some_and(|e| e.state == ExpState::Draft) {
                    match plan.and_then(|p| p.experiments.get(id)) {
                        Some(p) => bars.push(Bar {
                            owner: id.clone(),
                            kind: "planned",
                            class: class.clone(),
                            from: None,
                            to: None,
                            growths: vec![],
                            plan: Some((p.start_day.unwrap_or(0.0), p.end_day, p.status)),
                            text: String::new(),
                            x: 0.0,
                            w: 0.0,
                            y: 0.0,
                            ticks: vec![],
                            open: false,
                        }),
                        None => unplanned.push(id.clone()),
                    }
                }
            }
            for (hid, h) in &cfg.holdouts {
                if h.unit != unit.unit || !scope.members.iter().any(|m| cfg.holdout_applies(h, m)) {
                    continue;
                }
                for a in state.allocations.iter().filter(|a| a.kind == OwnerKind::Holdout && a.owner == *hid) {
                    let Some(first) = a.draws.first() else { continue };
                    bars.push(Bar {
                        owner: hid.clone(),
                        kind: "holdout",
                        class: "seg-holdout".into(),
                        from: Some(first.version),
                        to: a.released,
                        growths: vec![],
                        plan: None,
                        text: String::new(),
                        x: 0.0,
                        w: 0.0,
                        y: 0.0,
                        ticks: vec![],
                        open: a.released.is_none(),
                    });
                }
            }
            let planned = bars.iter().any(|b| b.plan.is_some());
            for (row, b) in bars.iter_mut().enumerate() {
                b.y = 24.0 + row as f64 * ROW_H;
                if let Some((start, end, status)) = b.plan {
                    b.x = dx(start);
                    b.w = match end {
                        Some(e) => (dx(e) - b.x).max(2.0),
                        None => (now_x + PLAN_W - b.x).max(2.0),
                    };
                    b.open = end.is_none();
                    b.text = match end {
                        Some(e) => format!(
                            "draft {}: planned from day {:.0} to day {:.0} ({:.0} days, {status})",
                            b.owner,
                            start,
                            e,
                            e - start
                        ),
                        None => format!("draft {}: {status} with this traffic", b.owner),
                    };
                    continue;
                }
                let from = b.from.unwrap_or(1);
                b.x = vx(from);
                b.w = match b.to {
                    Some(to) => (vx(to) - b.x).max(2.0),
                    None => (now_x - b.x).max(2.0),
                };
                b.ticks = b.growths.iter().map(|(v, _)| vx(*v)).collect();
                let until = match b.to {
                    Some(to) => format!("to version {to} ({})", short(&time_of(state, to))),
                    None => "and still holds them".into(),
                };
                let grown: Vec<String> = b.growths.iter().map(|(v, what)| format!("{what} at version {v}")).collect();
                b.text = format!(
                    "{} {}: from version {from} ({}) {until}{}",
                    b.kind,
                    b.owner,
                    short(&time_of(state, from)),
                    if grown.is_empty() { String::new() } else { format!("; {}", grown.join(", ")) }
                );
            }
            let mut axis = vec![(LABEL_W, format!("v1 {}", short(&time_of(state, 1)).get(..10).unwrap_or("")))];
            axis.push((now_x, format!("now: v{current}")));
            if planned {
                axis.push((now_x + PLAN_W, format!("day {horizon:.0}")));
            }
            out.push(ScopeTimeline {
                unit: unit.unit.clone(),
                kind: scope.kind,
                name: scope.name.clone(),
                anchor: format!("timeline-{}", scope.anchor),
                height: 24.0 + bars.len().max(1) as f64 * ROW_H + 24.0,
                width: LABEL_W + PAST_W + if planned { PLAN_W + 60.0 } else { 60.0 },
                bars,
                resalts: resalts.clone(),
                now_x,
                axis,
                unplanned,
            });
        }
    }
    out
}
