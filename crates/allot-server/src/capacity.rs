//! Capacity planning, as `allot capacity` and `POST /api/v1/capacity` do it: for each planned
//! experiment, the units and days it needs at its share of the traffic; for each exclusion scope,
//! how many of its experiments can run at once and a schedule that respects exclusivity and
//! holdouts; and what CUPED saves. The CLI reads the configuration and the traffic file, the
//! service the live configuration and the request body; both call [`plan`] and render the same
//! [`CapacityReport`].
//!
//! Scheduling rule (greedy list scheduling, in the order of the traffic file): experiment X with
//! reach `s` may run during `[t, t + days)` if at every moment of it `s + Σ reach(Y) ≤ room(X)`
//! (its slots for a group member, else the space outside its holdouts and the groups reserved in
//! its scope), summed over the experiments Y that compete with X (`competes`) and are scheduled
//! (or already running, which occupy their share indefinitely) at that moment. X starts at the
//! earliest such `t` among 0 and the end days of those Y. The rule is conservative: two
//! experiments that are each exclusive to X but not to each other could share units, and are
//! still counted twice.

use allot_core::config::{self, Config};
use allot_core::FieldError;
use allot_stats::power::{sample_size, Design, Metric, Sides};
pub use allot_stats::schedule::CapacityReport;
use allot_stats::schedule::{
    earliest_start, finite, scope_plan, waits_for, Baseline, Booking, ExperimentPlan, Saved, UnitsAndDays,
};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

/// The traffic file.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// New units per day, per unit type.
    #[schema(value_type = std::collections::BTreeMap<String, f64>)]
    pub daily_units: IndexMap<String, f64>,
    /// Planned experiments, in priority order.
    #[schema(value_type = std::collections::BTreeMap<String, Planned>)]
    pub experiments: IndexMap<String, Planned>,
}

/// The metric of a planned experiment.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannedMetric {
    /// Baseline conversion rate (a proportion metric).
    pub rate: Option<f64>,
    /// Baseline mean (a mean metric, with `sd`).
    pub mean: Option<f64>,
    /// Standard deviation per unit (a mean metric).
    pub sd: Option<f64>,
}

/// One planned experiment.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Planned {
    /// Its metric.
    pub metric: PlannedMetric,
    /// Minimum detectable effect relative to the baseline (0.02 = 2%).
    pub mde: Option<f64>,
    /// Minimum detectable effect in the metric's units.
    pub mde_absolute: Option<f64>,
    /// Significance level [default 0.05].
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Power [default 0.8].
    #[serde(default = "default_power")]
    pub power: f64,
    /// `one` or `two` sided [default two].
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub sides: Sides,
    /// Pre-period correlation for CUPED [default 0: none].
    #[serde(default)]
    pub rho: f64,
    /// Share of the unit type to plan with, overriding the configuration: the syntax of
    /// `allot.yaml` (`20%` or `0.2`).
    #[schema(value_type = Option<Object>)]
    pub share: Option<Value>,
}

fn default_alpha() -> f64 {
    0.05
}
fn default_power() -> f64 {
    0.8
}

/// The share of all units an experiment reaches, and the room it competes for: for a group
/// member, its slots (the intersection of its groups' slots, which are drawn independently:
/// `{g1: [1], g2: [1]}` with 50% slots of whole-space groups reaches 25%); for anyone else, the
/// space outside the groups that reserve their share in its scope. Both less the holdouts that
/// apply to it.
fn reach_and_capacity(cfg: &Config, id: &str, override_share: Option<f64>) -> (f64, f64) {
    let Some(e) = cfg.experiments.get(id) else { return (0.0, 1.0) };
    let held: f64 = cfg.holdouts.values().filter(|h| cfg.holdout_applies(h, id)).map(|h| h.share.fraction()).sum();
    let outside_holdouts = (1.0 - held).max(0.0);
    let capacity = if e.groups.is_empty() {
        let reserved: f64 = cfg.groups.values().filter(|g| cfg.in_group_scope(e, g)).map(|g| g.share.fraction()).sum();
        (outside_holdouts - reserved).max(0.0)
    } else {
        // Groups that share a surface are drawn disjoint: their slots do not intersect.
        let groups: Vec<&config::Group> = e.groups.iter().filter_map(|g| cfg.groups.get(&g.group)).collect();
        let disjoint = groups
            .iter()
            .enumerate()
            .any(|(i, a)| groups[i + 1..].iter().any(|b| a.surfaces.iter().any(|s| b.surfaces.contains(s))));
        let slots: f64 = e
            .groups
            .iter()
            .filter_map(|g| cfg.groups.get(&g.group).map(|gr| (g, gr)))
            .map(|(g, gr)| {
                gr.share.fraction() * g.slots.iter().filter_map(|&i| gr.slots.get(i)).map(|s| s.fraction()).sum::<f64>()
            })
            .product();
        if disjoint {
            0.0
        } else {
            slots * outside_holdouts
        }
    };
    if let Some(s) = override_share {
        return (s, capacity);
    }
    if let Some(s) = &e.share {
        // An explicit share is drawn outside the holdouts: reach equals share.
        return (s.fraction(), capacity);
    }
    (capacity, capacity)
}

/// Whether scheduled experiment `other` takes room from `id`: they are exclusive, and they
/// compete for the same buckets — members of one group only when their slots in it meet;
/// outsiders of a group never compete with its members (the group reserves its share).
fn competes(cfg: &Config, id: &str, other: &str) -> bool {
    let (Some(a), Some(b)) = (cfg.experiments.get(id), cfg.experiments.get(other)) else { return false };
    if !cfg.exclusive(id, other) {
        return false;
    }
    match (a.groups.is_empty(), b.groups.is_empty()) {
        (true, true) => true,
        (false, false) => a
            .groups
            .iter()
            .any(|g| b.groups.iter().any(|h| h.group == g.group && h.slots.iter().any(|s| g.slots.contains(s)))),
        // A member and an outsider of its group compete only if the outsider is outside the
        // group's scope, i.e. it is exclusive to the member through another tag.
        (false, true) => !a.groups.iter().filter_map(|g| cfg.groups.get(&g.group)).any(|g| cfg.in_group_scope(b, g)),
        (true, false) => !b.groups.iter().filter_map(|g| cfg.groups.get(&g.group)).any(|g| cfg.in_group_scope(a, g)),
    }
}

/// Units and days per experiment, and the schedule.
///
/// Every error of the traffic at once, each naming its field (`experiments.<id>.mde`,
/// `daily_units.<unit type>`), none for a valid traffic.
pub fn plan(cfg: &Config, traffic: &Traffic) -> Result<CapacityReport, Vec<FieldError>> {
    let mut exps = IndexMap::new();
    let mut slots: Vec<Booking> = vec![];
    // Running experiments not being planned occupy their share indefinitely.
    for (id, e) in &cfg.experiments {
        if e.state == config::ExpState::Running && !traffic.experiments.contains_key(id) {
            let (reach, _) = reach_and_capacity(cfg, id, None);
            slots.push(Booking { id: id.clone(), reach, start: f64::NEG_INFINITY, end: f64::INFINITY });
        }
    }
    let running: Vec<String> = slots.iter().map(|s| s.id.clone()).collect();
    // Every error of the traffic file, reported at once.
    let mut errors: Vec<FieldError> = vec![];
    for (id, p) in &traffic.experiments {
        let at = |f: &str| format!("experiments.{id}.{f}");
        let Some(e) = cfg.experiments.get(id) else {
            errors.push(FieldError::new(format!("experiments.{id}"), "not in the configuration"));
            continue;
        };
        let Some(&daily) = traffic.daily_units.get(&e.unit) else {
            errors.push(FieldError::new(
                format!("daily_units.{}", e.unit),
                format!("missing (experiment {id} randomises by it)"),
            ));
            continue;
        };
        if !(daily > 0.0 && daily.is_finite()) {
            errors.push(FieldError::new(format!("daily_units.{}", e.unit), "must be positive"));
            continue;
        }
        let metric = match (p.metric.rate, p.metric.mean, p.metric.sd) {
            (Some(rate), None, None) => Metric::Proportion { baseline: rate },
            (None, Some(mean), Some(sd)) => Metric::Mean { mean, sd },
            _ => {
                errors.push(FieldError::new(at("metric"), "give either `rate`, or `mean` and `sd`"));
                continue;
            }
        };
        let mde_abs = match (p.mde, p.mde_absolute) {
            (Some(r), None) => r * metric.baseline().abs(),
            (None, Some(a)) => a,
            _ => {
                errors.push(FieldError::new(at("mde"), "give exactly one of `mde` (relative) and `mde_absolute`"));
                continue;
            }
        };
        let share = match &p.share {
            None => None,
            Some(v) => match config::Share::parse(v) {
                Ok(s) if s.num > 0 => Some(s.fraction()),
                Ok(_) => {
                    errors.push(FieldError::new(at("share"), "must be more than 0%"));
                    continue;
                }
                Err(m) => {
                    errors.push(FieldError::new(at("share"), m));
                    continue;
                }
            },
        };
        // Control first: `control` if configured, else the first variant.
        let mut weights: Vec<f64> = e.variants.values().map(|v| f64::from(v.weight)).collect();
        if let Some(i) = e.variants.get_index_of("control") {
            let c = weights.remove(i);
            weights.insert(0, c);
        }
        if weights.len() < 2 {
            weights = vec![1.0, 1.0];
        }
        let design = Design { alpha: p.alpha, sides: p.sides, weights: weights.clone(), rho: p.rho };
        let (n, n_raw) = match (
            sample_size(&metric, &design, mde_abs, p.power),
            sample_size(&metric, &Design { rho: 0.0, ..design.clone() }, mde_abs, p.power),
        ) {
            (Ok(n), Ok(r)) => (n, r),
            (Err(err), _) | (_, Err(err)) => {
                errors.push(FieldError::new(format!("experiments.{id}"), err.to_string()));
                continue;
            }
        };
        let (reach, capacity) = reach_and_capacity(cfg, id, share);
        let per_day = daily * reach;
        let units = n.ceil();
        let days = if per_day > 0.0 { (units / per_day).ceil() } else { f64::INFINITY };
        let days_raw = if per_day > 0.0 { (n_raw.ceil() / per_day).ceil() } else { f64::INFINITY };

        // Schedule.
        let blockers: Vec<&Booking> = slots.iter().filter(|s| competes(cfg, id, &s.id)).collect();
        let start = earliest_start(&blockers, reach, capacity, days);
        let waits_for = waits_for(&blockers, start);
        let status = match start {
            Some(0.0) => "starts now",
            Some(_) => "waits",
            None => "cannot run",
        };
        if let Some(t) = start {
            slots.push(Booking { id: id.clone(), reach, start: t, end: t + days });
        }
        let why = match start {
            None if !days.is_finite() => Some("its reach is 0".to_string()),
            None => Some(format!(
                "its reach {:.2}% does not fit beside the running experiments it excludes (free {:.2}%)",
                100.0 * reach,
                100.0 * capacity
            )),
            _ => None,
        };
        exps.insert(
            id.clone(),
            ExperimentPlan {
                unit: e.unit.clone(),
                reach,
                daily_units: per_day,
                metric: match metric {
                    Metric::Proportion { baseline } => Baseline::Rate { rate: baseline },
                    Metric::Mean { mean, sd } => Baseline::Mean { mean, sd },
                },
                mde_absolute: mde_abs,
                alpha: p.alpha,
                power: p.power,
                rho: p.rho,
                arms: weights.len(),
                units_needed: units,
                days: finite(days),
                status,
                start_day: start,
                end_day: start.map(|t| t + days),
                waits_for,
                reason: why,
                without_cuped: UnitsAndDays { units_needed: n_raw.ceil(), days: finite(days_raw) },
                cuped_saves: Saved { units: n_raw.ceil() - units, days: finite(days_raw - days) },
            },
        );
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    // Per exclusion scope: the planned experiments that carry the tag or group.
    let mut scopes: IndexMap<String, Vec<String>> = IndexMap::new();
    for id in traffic.experiments.keys() {
        if let Some(e) = cfg.experiments.get(id) {
            let mut tags = cfg.tags_of(e);
            tags.extend(cfg.exclusive_to_of(e));
            tags.extend(e.groups.iter().map(|g| format!("group {}", g.group)));
            tags.sort();
            tags.dedup();
            for t in tags {
                scopes.entry(t).or_default().push(id.clone());
            }
        }
    }
    let scopes = scopes.into_iter().map(|(scope, ids)| (scope, scope_plan(&slots, &ids))).collect();
    Ok(CapacityReport { experiments: exps, scopes, already_running: running })
}
