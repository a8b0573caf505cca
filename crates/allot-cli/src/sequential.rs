//! `allot analyze --sequential`: the flags, the looks file, the planned maximum sample from the
//! capacity plan, and the text of the looks. What is decided at each look is
//! `allot_stats::looks` (pure); this reads and writes the files.

use allot_core::config::Config;
use allot_stats::analysis::Report;
use allot_stats::looks::{self, Decision, Method, SequentialReport};
use allot_stats::power::Sides;
use allot_stats::sequential::{inflation, Spending};
use anyhow::{bail, Context as _, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The sequential method, as `--sequential` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeqMethod {
    /// Group-sequential test, Lan-DeMets O'Brien-Fleming-type alpha spending.
    Obf,
    /// Group-sequential test, Lan-DeMets Pocock-type alpha spending.
    Pocock,
    /// mSPRT (normal mixture): always-valid p-values and confidence sequences.
    Msprt,
}

/// One- or two-sided, as `--sides` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeqSides {
    /// H₁: treatment − control > 0.
    One,
    /// H₁: treatment − control ≠ 0.
    Two,
}

/// The sequential flags of `allot analyze`.
#[derive(Debug, clap::Args)]
pub struct SequentialArgs {
    /// Sequential test of every comparison over its looks: `obf` or `pocock` (group-sequential,
    /// bounds for the actual information fractions) or `msprt` (always valid). Each run is one
    /// look; earlier looks come from --looks.
    #[arg(long, value_enum)]
    pub sequential: Option<SeqMethod>,
    /// One- or two-sided group-sequential test (mSPRT is two-sided).
    #[arg(long, value_enum, default_value_t = SeqSides::Two, requires = "sequential")]
    pub sides: SeqSides,
    /// Planned maximum sample of every experiment, in units (all arms): the `units_needed` of
    /// `allot capacity`.
    #[arg(long, requires = "sequential")]
    pub max_units: Option<f64>,
    /// Traffic file of `allot capacity`: each planned experiment's maximum sample is its
    /// `units_needed` in the capacity plan, and its mSPRT τ its absolute MDE.
    #[arg(long, requires = "sequential")]
    pub traffic: Option<PathBuf>,
    /// Planned number of equally spaced looks of a group-sequential test: the capacity plan's
    /// fixed-horizon `units_needed` (--traffic) is multiplied by the design's inflation factor, so
    /// that the sequential test keeps the planned power.
    #[arg(long, requires = "traffic")]
    pub planned_looks: Option<u32>,
    /// mSPRT mixing standard deviation τ of the effect, in the metric's units (default: the
    /// planned absolute MDE from --traffic).
    #[arg(long, requires = "sequential")]
    pub tau: Option<f64>,
    /// Looks file (JSON): the looks recorded by earlier runs, if it exists; this look is added
    /// (a look with as many units as the last replaces it) and the file rewritten.
    #[arg(long, requires = "sequential")]
    pub looks: Option<PathBuf>,
}

/// The planned maximum units and the planned absolute MDE of each experiment of the traffic
/// file, from the capacity plan (`allot capacity`'s own): its fixed-horizon `units_needed`, times
/// the inflation factor of `looks` equally spaced looks with `spending` when given.
fn planned(
    cfg: Option<&Config>,
    traffic: &Path,
    looks: Option<(u32, Spending, Sides)>,
) -> Result<BTreeMap<String, (f64, f64)>> {
    let Some(cfg) = cfg else { bail!("--traffic needs the configuration (-c allot.yaml) to plan with") };
    let t = crate::capacity::read_traffic(traffic)?;
    let plan = allot_server::capacity::plan(cfg, &t).map_err(|errs| {
        let list: Vec<String> = errs.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
        anyhow::anyhow!("traffic file {}:\n  {}", traffic.display(), list.join("\n  "))
    })?;
    let mut out = BTreeMap::new();
    for (k, e) in plan.experiments {
        let r = match looks {
            Some((n, spending, sides)) => {
                let fractions: Vec<f64> = (1..=n).map(|i| f64::from(i) / f64::from(n)).collect();
                let alpha = e.alpha / e.arms.saturating_sub(1).max(1) as f64;
                inflation(spending, alpha, sides, &fractions, e.power)
                    .map_err(|err| anyhow::anyhow!("--planned-looks for {k}: {err}"))?
            }
            None => 1.0,
        };
        out.insert(k, (e.units_needed * r, e.mde_absolute));
    }
    Ok(out)
}

/// Adds this look to the report (`report.sequential`) and to the looks file.
pub fn run(args: &SequentialArgs, cfg: Option<&Config>, alpha: f64, report: &mut Report) -> Result<()> {
    let Some(method) = args.sequential else { return Ok(()) };
    let method = match method {
        SeqMethod::Obf => Method::Obf,
        SeqMethod::Pocock => Method::Pocock,
        SeqMethod::Msprt => Method::Msprt,
    };
    if let Some(m) = args.max_units.filter(|m| !(m.is_finite() && *m > 0.0)) {
        bail!("--max-units {m} is not a positive number of units");
    }
    if let Some(t) = args.tau.filter(|t| !(t.is_finite() && *t > 0.0)) {
        bail!("--tau {t} is not positive");
    }
    let sides = match args.sides {
        SeqSides::One => Sides::One,
        SeqSides::Two => Sides::Two,
    };
    if args.planned_looks == Some(0) {
        bail!("--planned-looks must be at least 1");
    }
    let looks = match (args.planned_looks, method.spending()) {
        (Some(n), Some(sp)) => Some((n, sp, sides)),
        (Some(_), None) => bail!("--planned-looks is for the group-sequential methods (obf, pocock), not msprt"),
        _ => None,
    };
    let planned = match &args.traffic {
        Some(p) => planned(cfg, p, looks)?,
        None => BTreeMap::new(),
    };
    if method != Method::Msprt && args.max_units.is_none() && args.traffic.is_none() {
        bail!("--sequential {} needs the planned maximum sample: --max-units N or --traffic FILE", method.name());
    }
    if method == Method::Msprt && args.tau.is_none() && args.traffic.is_none() {
        bail!("--sequential msprt needs the mixing standard deviation: --tau X or --traffic FILE (its MDE)");
    }
    let recorded: Option<SequentialReport> = match &args.looks {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read looks file {}", p.display()))?;
            let de = &mut serde_json::Deserializer::from_str(&text);
            Some(
                serde_path_to_error::deserialize(de)
                    .map_err(|e| anyhow::anyhow!("looks file {}: {}: {}", p.display(), e.path(), e.inner()))?,
            )
        }
        _ => None,
    };
    let max_units = |e: &str| args.max_units.or_else(|| planned.get(e).map(|p| p.0));
    let tau = |e: &str, _m: &str| args.tau.or_else(|| planned.get(e).map(|p| p.1));
    let plan = looks::Plan { method, alpha, sides, max_units: &max_units, tau: &tau };
    let seq = looks::update(&plan, recorded.as_ref(), report).map_err(|e| {
        let file = args.looks.as_ref().map(|p| format!(" (looks file {})", p.display())).unwrap_or_default();
        anyhow::anyhow!("--sequential: {e}{file}")
    })?;
    if let Some(p) = &args.looks {
        // Written beside the target and renamed over it: a crash leaves the old looks intact.
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write looks file {}", p.display()))?;
        serde_json::to_writer_pretty(&mut tmp, &seq)?;
        tmp.persist(p).with_context(|| format!("cannot write looks file {}", p.display()))?;
    }
    report.sequential = Some(seq);
    Ok(())
}

/// A decision as the text report says it.
pub fn decision(d: Option<Decision>) -> &'static str {
    match d {
        Some(Decision::Continue) | None => "continue",
        Some(Decision::Reject) => "REJECT: significant, stop",
        Some(Decision::NoEffect) => "final look: not significant, stop",
        Some(Decision::Stopped) => "stopped at an earlier look",
    }
}

/// The text of the looks.
pub fn text(s: &SequentialReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let sides = match s.sides {
        Sides::One => "one-sided",
        Sides::Two => "two-sided",
    };
    let _ = writeln!(out, "Sequential ({}, {sides}, α = {})", s.method.name(), s.alpha);
    let f4 = |x: f64| format!("{x:.4}");
    for x in &s.series {
        let _ = write!(out, "  {} {}: {} vs {}", x.experiment, x.metric, x.variant, x.control);
        if let Some(m) = x.max_units {
            let _ = write!(out, ", planned maximum {m:.0} units");
        }
        if let Some(t) = x.tau {
            let _ = write!(out, ", τ = {t}");
        }
        let _ = writeln!(out, ", α = {}: {}", x.alpha, decision(x.decision));
        if let Some(e) = &x.error {
            let _ = writeln!(out, "    not computed: {e}");
        }
        for l in &x.looks {
            let _ = write!(out, "    look {}: {} units", l.look, l.units);
            if let Some(t) = l.fraction {
                let _ = write!(out, " (t = {t:.3})");
            }
            let _ = write!(out, "  diff {}  z {:.3}", f4(l.diff), l.z);
            match (l.bound, l.fraction) {
                (Some(b), _) => {
                    let pm = if s.sides == Sides::Two { "±" } else { "" };
                    let _ = write!(out, "  bound {pm}{b:.3}");
                }
                (None, Some(_)) => {
                    let _ = write!(out, "  no bound (the α to spend underflows: cannot reject this early)");
                }
                _ => {}
            }
            if let Some(p) = l.p_value {
                let _ = write!(out, "  always-valid p {}", if p < 1e-4 { format!("{p:.1e}") } else { f4(p) });
            }
            if let Some(ci) = l.ci {
                let _ = write!(out, "  [{}, {}]", f4(ci[0]), f4(ci[1]));
            }
            let _ = writeln!(out, "  → {}", decision(Some(l.decision)));
        }
    }
    out
}
