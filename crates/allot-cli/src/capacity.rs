//! `allot capacity`: bandwidth planning. For each planned experiment, the units and days it needs
//! at its share of the traffic; for each exclusion scope, how many of its experiments can run at
//! once and a schedule that respects exclusivity and holdouts; and what CUPED saves.
//!
//! Scheduling rule (greedy list scheduling, in the order of the traffic file): experiment X with
//! reach `s` may run during `[t, t + days)` if at every moment of it `s + Σ reach(Y) ≤ room(X)`
//! (its slots for a group member, else the space outside its holdouts and the groups reserved in
//! its scope), summed over the experiments Y that compete with X ([`competes`]) and are scheduled
//! (or already running, which occupy their share indefinitely) at that moment. X starts at the earliest such `t` among 0 and the end days of those Y. The rule is
//! conservative: two experiments that are each exclusive to X but not to each other could share
//! units, and are still counted twice.

use crate::{Cli, Format};
use allot_core::config::{self, Config};
use allot_stats::power::{sample_size, Design, Metric, Sides};
use allot_stats::schedule::{
    earliest_start, finite, scope_plan, waits_for, Baseline, Booking, CapacityReport, ExperimentPlan, Saved,
    UnitsAndDays,
};
use anyhow::{bail, Context as _, Result};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `allot capacity`.
#[derive(Debug, clap::Args)]
pub struct CapacityArgs {
    /// Traffic file (YAML; see docs/stats.md): daily units per unit type and the planned
    /// experiments' metrics, MDE, α, power and optional ρ.
    #[arg(long)]
    pub traffic: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// The traffic file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// New units per day, per unit type.
    pub daily_units: IndexMap<String, f64>,
    /// Planned experiments, in priority order.
    pub experiments: IndexMap<String, Planned>,
}

/// The metric of a planned experiment.
#[derive(Debug, Deserialize)]
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
#[derive(Debug, Deserialize)]
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
    pub sides: Sides,
    /// Pre-period correlation for CUPED [default 0: none].
    #[serde(default)]
    pub rho: f64,
    /// Share of the unit type to plan with, overriding the configuration: the syntax of
    /// `allot.yaml` (`20%` or `0.2`).
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

/// Runs `allot capacity`.
pub fn run(cli: &Cli, args: &CapacityArgs) -> Result<ExitCode> {
    let text = crate::files::read_config(&cli.config)?;
    let cfg = match config::load(&text) {
        Ok(c) => c,
        Err(es) => {
            let list: Vec<String> = es.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
            bail!("configuration {} is invalid:\n  {}", cli.config.display(), list.join("\n  "))
        }
    };
    let ttext = std::fs::read_to_string(&args.traffic)
        .with_context(|| format!("cannot read traffic file {}", args.traffic.display()))?;
    let de = serde_yaml_ng::Deserializer::from_str(&ttext);
    let traffic: Traffic = serde_path_to_error::deserialize(de)
        .map_err(|e| anyhow::anyhow!("traffic file {}: {}: {}", args.traffic.display(), e.path(), e.inner()))?;
    let report = match plan(&cfg, &traffic) {
        Ok(r) => r,
        Err(e) => match e.downcast::<TrafficErrors>() {
            Ok(errs) => {
                match args.format {
                    Format::Json => println!(
                        "{}",
                        json!({"ok": false, "errors": errs.0.iter().map(|m| json!({"message": m})).collect::<Vec<_>>()})
                    ),
                    Format::Text => eprintln!("{errs}"),
                }
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => return Err(e),
        },
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", text_report(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Every error found in a traffic file (they are all reported, exit 1).
#[derive(Debug)]
pub struct TrafficErrors(pub Vec<String>);

impl std::fmt::Display for TrafficErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.0 {
            writeln!(f, "traffic file: {e}")?;
        }
        write!(f, "{} error(s)", self.0.len())
    }
}

impl std::error::Error for TrafficErrors {}

/// Units and days per experiment, and the schedule.
pub fn plan(cfg: &Config, traffic: &Traffic) -> Result<CapacityReport> {
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
    let mut errors: Vec<String> = vec![];
    for (id, p) in &traffic.experiments {
        let at = |f: &str| format!("experiments.{id}.{f}");
        let Some(e) = cfg.experiments.get(id) else {
            errors.push(format!("experiments.{id}: not in the configuration"));
            continue;
        };
        let Some(&daily) = traffic.daily_units.get(&e.unit) else {
            errors.push(format!("daily_units.{}: missing (experiment {id} randomises by it)", e.unit));
            continue;
        };
        if !(daily > 0.0 && daily.is_finite()) {
            errors.push(format!("daily_units.{}: must be positive", e.unit));
            continue;
        }
        let metric = match (p.metric.rate, p.metric.mean, p.metric.sd) {
            (Some(rate), None, None) => Metric::Proportion { baseline: rate },
            (None, Some(mean), Some(sd)) => Metric::Mean { mean, sd },
            _ => {
                errors.push(format!("{}: give either `rate`, or `mean` and `sd`", at("metric")));
                continue;
            }
        };
        let mde_abs = match (p.mde, p.mde_absolute) {
            (Some(r), None) => r * metric.baseline().abs(),
            (None, Some(a)) => a,
            _ => {
                errors.push(format!("{}: give exactly one of `mde` (relative) and `mde_absolute`", at("mde")));
                continue;
            }
        };
        let share = match &p.share {
            None => None,
            Some(v) => match config::Share::parse(v) {
                Ok(s) if s.num > 0 => Some(s.fraction()),
                Ok(_) => {
                    errors.push(format!("{}: must be more than 0%", at("share")));
                    continue;
                }
                Err(m) => {
                    errors.push(format!("{}: {m}", at("share")));
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
                errors.push(format!("experiments.{id}: {err}"));
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
        return Err(TrafficErrors(errors).into());
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

fn text_report(r: &CapacityReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<24} {:>7} {:>12} {:>6} {:>6} {:>6}  status",
        "experiment", "reach", "units", "days", "start", "CUPED-"
    );
    let d = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x}"));
    for (id, e) in &r.experiments {
        let _ = writeln!(
            s,
            "{id:<24} {:>6.2}% {:>12} {:>6} {:>6} {:>6}  {}{}",
            100.0 * e.reach,
            d(finite(e.units_needed)),
            d(e.days),
            d(e.start_day),
            d(e.cuped_saves.days),
            e.status,
            e.reason.as_ref().map(|w| format!(": {w}")).unwrap_or_default()
        );
    }
    let _ = writeln!(s, "\nExclusion scopes");
    let list = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
    for (k, v) in &r.scopes {
        let _ = writeln!(
            s,
            "  {k}: {} planned, at most {} at once; start now: {}; wait: {}; all done by day {}",
            v.experiments.len(),
            v.at_once,
            list(&v.start_now),
            serde_json::to_string(&v.wait).unwrap_or_default(),
            serde_json::to_string(&v.all_done_day).unwrap_or_default()
        );
    }
    if !r.already_running.is_empty() {
        let _ = writeln!(
            s,
            "\n{} running experiment(s) not in the traffic file keep their share: {}",
            r.already_running.len(),
            list(&r.already_running)
        );
    }
    s
}
