//! `allot analyze --reuse-health`: which units of the population are in each experiment's drawn
//! buckets and in which earlier experiments' buckets they had been, from the recorded state's
//! bucket history (`allot_core::history`, through every re-salt), fed to
//! `allot_stats::reuse` with the population's pre-period values (the `--covariates` file).

use allot_core::eval::Snapshot;
use allot_core::history::unit_history_in;
use allot_core::state::{OwnerKind, State};
use allot_stats::reuse::{ReuseAcc, ReuseHealth};
use anyhow::{bail, Context as _, Result};
use indexmap::{IndexMap, IndexSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `allot reuse-health`.
#[derive(Debug, clap::Args)]
pub struct ReuseArgs {
    /// The population's pre-period values: CSV `unit,metric,value` (every unit, exposed or not).
    #[arg(long)]
    pub covariates: PathBuf,
    /// An experiment to measure (repeatable) [default: every experiment with an allocation of its
    /// own that is live in the recorded state].
    #[arg(long = "experiment")]
    pub experiments: Vec<String>,
    /// Significance level of the intervals and tests.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::Format::Text)]
    pub format: crate::Format,
}

/// Runs `allot reuse-health`.
pub fn run(state_file: &Path, args: &ReuseArgs) -> Result<ExitCode> {
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        bail!("--alpha {} is not in (0, 1)", args.alpha);
    }
    if !state_file.exists() {
        bail!("state file {} does not exist: apply the configuration first", state_file.display());
    }
    let state = crate::files::read_state(state_file)?;
    let names: Vec<&str> = if args.experiments.is_empty() {
        let mut v: Vec<&str> = state
            .allocations
            .iter()
            .filter(|a| a.kind == OwnerKind::Experiment && a.is_live())
            .map(|a| a.owner.as_str())
            .collect();
        v.dedup();
        v
    } else {
        args.experiments.iter().map(String::as_str).collect()
    };
    let list = health(&state, &args.covariates, &names, args.alpha)?;
    match args.format {
        crate::Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        crate::Format::Text => print!("{}", text(&list)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The population: every unit of the covariates file (exposed or not) with its summed value of
/// each metric (0 where it has no row).
struct Population {
    metrics: IndexSet<String>,
    units: IndexMap<String, Vec<f64>>,
}

fn read_population(path: &Path) -> Result<Population> {
    let (mut rdr, idx) =
        crate::analyze::open_csv(path, "covariates", &[("unit", true), ("metric", true), ("value", true)])?;
    let (iu, im, iv) = (idx[0].unwrap_or(0), idx[1].unwrap_or(0), idx[2].unwrap_or(0));
    let pb = crate::analyze::progress(path, "population");
    let mut pop = Population { metrics: IndexSet::new(), units: IndexMap::new() };
    let mut rec = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut rec).with_context(|| format!("{}: malformed CSV", path.display()))? {
        let unit = crate::analyze::field(&rec, iu, "unit", path)?;
        let metric = crate::analyze::field(&rec, im, "metric", path)?;
        let value = crate::analyze::number(crate::analyze::field(&rec, iv, "value", path)?, "value", &rec, path)?;
        let (m, _) = pop.metrics.insert_full(metric.to_string());
        let row = pop.units.entry(unit.to_string()).or_default();
        if row.len() <= m {
            row.resize(m + 1, 0.0);
        }
        row[m] += value;
    }
    pb.finish_and_clear();
    Ok(pop)
}

/// One experiment to measure: its allocation, when it was drawn, and the allocations of the
/// experiments released by then in its space, by owner.
struct Target<'a> {
    name: &'a str,
    space: &'a str,
    allocation: u64,
    priors: IndexMap<&'a str, Vec<u64>>,
    acc: ReuseAcc,
}

/// The bucket-reuse health of each of `experiments` (in order) against the population of
/// `covariates`, from the recorded state.
pub fn health(state: &State, covariates: &Path, experiments: &[&str], alpha: f64) -> Result<Vec<ReuseHealth>> {
    let snap = Snapshot::compile(state).map_err(|es| {
        let list: Vec<String> = es.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
        anyhow::anyhow!("the recorded state does not compile:\n  {}", list.join("\n  "))
    })?;
    let pop = read_population(covariates)?;
    if pop.units.is_empty() {
        bail!("--reuse-health: covariates file {} has no units", covariates.display());
    }
    let metrics: Vec<String> = pop.metrics.iter().cloned().collect();
    let mut out: Vec<Option<ReuseHealth>> = vec![None; experiments.len()];
    let mut targets: Vec<(usize, Target<'_>)> = vec![];
    for (i, name) in experiments.iter().enumerate() {
        let Some(a) = state.allocations.iter().rev().find(|a| a.kind == OwnerKind::Experiment && a.owner == *name)
        else {
            out[i] = Some(ReuseHealth::unavailable(
                name,
                "no allocation of its own in the recorded state (not applied, or drawn from a group's slots)",
            ));
            continue;
        };
        let drawn = a.draws.first().map_or(0, |d| d.version);
        let mut priors: IndexMap<&str, Vec<u64>> = IndexMap::new();
        for p in &state.allocations {
            if p.kind == OwnerKind::Experiment
                && p.owner != *name
                && p.space == a.space
                && p.released.is_some_and(|r| r <= drawn)
            {
                priors.entry(p.owner.as_str()).or_default().push(p.id);
            }
        }
        let acc = ReuseAcc::new(metrics.clone(), priors.keys().map(|s| s.to_string()).collect());
        targets.push((i, Target { name, space: &a.space, allocation: a.id, priors, acc }));
    }
    let spaces: IndexSet<&str> = targets.iter().map(|t| t.1.space).collect();
    for space in spaces {
        for (unit, values) in &pop.units {
            let hist = unit_history_in(state, &snap, space, unit)
                .map_err(|e| anyhow::anyhow!("bucket history of unit {unit}: {}: {}", e.path, e.message))?;
            for (_, t) in targets.iter_mut().filter(|t| t.1.space == space) {
                let inside = hist.iter().any(|h| h.span.allocation == t.allocation);
                let flags: Vec<bool> =
                    t.priors.values().map(|ids| hist.iter().any(|h| ids.contains(&h.span.allocation))).collect();
                t.acc.push(inside, values, &flags);
            }
        }
    }
    for (i, t) in targets {
        out[i] = Some(t.acc.finish(t.name, alpha));
    }
    Ok(out.into_iter().flatten().collect())
}

/// The text of the health report.
pub fn text(list: &[ReuseHealth]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "Bucket-reuse health (the experiment's buckets against the rest of the population)");
    let f = |x: Option<f64>| x.filter(|x| x.is_finite()).map_or_else(|| "-".to_string(), |x| format!("{x:.4}"));
    let pv = |p: f64| if p < 1e-4 { format!("{p:.1e}") } else { format!("{p:.4}") };
    for h in list {
        if let Some(e) = &h.error {
            let _ = writeln!(s, "  {}: not measured: {e}", h.experiment);
            continue;
        }
        let _ = writeln!(s, "  {}: {} units in its buckets, {} outside", h.experiment, h.units_in, h.units_out);
        for b in &h.pre_period {
            let ci = |i: usize| b.ci.map(|c| c[i]);
            let _ = writeln!(
                s,
                "    pre-period {}: {} vs {}  diff {} [{}, {}] p {}  standardized {}",
                b.metric,
                f(Some(b.mean_in)),
                f(Some(b.mean_out)),
                f(b.diff),
                f(ci(0)),
                f(ci(1)),
                b.p_value.map_or_else(|| "-".to_string(), pv),
                f(b.smd)
            );
        }
        for p in &h.past_treatment {
            let _ = writeln!(
                s,
                "    past treatment {}: {:.2}% vs {:.2}%  diff {} [{}, {}] p {}",
                p.experiment,
                100.0 * p.share_in,
                100.0 * p.share_out,
                f(Some(p.diff)),
                f(Some(p.ci[0])),
                f(Some(p.ci[1])),
                pv(p.p_value)
            );
        }
        if h.past_treatment.is_empty() {
            let _ =
                writeln!(s, "    past treatment: no earlier experiment's buckets were released before it was drawn");
        }
        for w in &h.warnings {
            let _ = writeln!(s, "    WARNING: {w}");
        }
    }
    s
}
