//! `allot analyze`: results of experiments from exposure and metric files (the warehouse, the
//! store's exposures and rows of sufficient statistics: `crate::warehouse`).
//!
//! The analysis itself is `allot_stats::analysis` (pure, with a typed report); this module reads
//! the files into it row by row (one pass over each, with a progress bar on a terminal), tells it
//! what the configuration ([`Design`] over allot-core's `Config`) and the recorded state
//! ([`allot_stats::analysis::Recorded`]) say, and renders the report as text or JSON (HTML: `crate::html`).

use crate::{Cli, Format};
use allot_core::config::{self, Config};
use allot_core::state::State;
use allot_server::analysis::{recorded, rfc3339_seconds, ConfigDesign};
use allot_stats::analysis::{self, Design, Exposures, Identities, Inputs, Report, Srm, UnitValues};
use anyhow::{bail, Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What `allot analyze --help` says about time.
const TIME_HELP: &str = "\
Time: two experiments \"ran at the same time\" if, on the most precise evidence known for both:
  1. the recorded state (allot.state.json beside the configuration, or --state): each experiment
     runs from the version its allocation was drawn to the version it was released; stopped at
     version v and the next started at v on its buckets is never at the same time;
  2. else the `version` column: first to last version of each experiment's exposures;
  3. else the `timestamp` column: first to last exposure of each experiment;
  4. else they are assumed to have run together.
With a configuration, an experiment in `state: running` runs on past its last exposure.
Units of two exclusive experiments that never ran together, or that came to one after the other
had stopped, are bucket reuse (`diagnostics.reused_after_stop`), not a violation, and get no
interaction test; pairs that never ran together get none either (`interactions_skipped`, with
the reason). Exclusive experiments that ran together and share units are still violations.

Exposures from the service: GET /api/v1/exposures gives `time` and `version` per row (see
docs/stats.md for the export as CSV).";

/// Arguments of `allot analyze`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = TIME_HELP)]
pub struct AnalyzeArgs {
    /// Exposures CSV with header `unit,experiment,variant,timestamp,version` (`timestamp` and
    /// `version` optional: RFC 3339 or epoch seconds; the configuration version evaluated, as
    /// the service's `GET /api/v1/exposures` gives it).
    #[arg(long)]
    pub exposures: Option<PathBuf>,
    /// Metrics CSV with header `unit,metric,value` (post-exposure; rows of a unit are summed).
    /// With `--store`: the metrics of the store's exposures (loaded into a temporary table).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Pre-period covariates CSV with header `unit,metric,value`, for CUPED.
    #[arg(long)]
    pub covariates: Option<PathBuf>,
    /// Identities CSV with header `unit,person`: unit ids that belong to one person.
    #[arg(long)]
    pub identities: Option<PathBuf>,
    /// Significance level of the intervals and tests.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write a self-contained HTML report (inline SVG, no network) to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Sequential looks (`--sequential`, `--looks`, ...).
    #[command(flatten)]
    pub sequential: crate::sequential::SequentialArgs,
    /// Bucket-reuse health: each experiment's drawn buckets against the rest of the population
    /// (every unit of --covariates) on the pre-period metrics and on past treatment (the earlier
    /// experiments whose buckets it reused), from the recorded state's bucket history.
    #[arg(long, requires = "covariates")]
    pub reuse_health: bool,
    /// The mapping of exposure and metric tables (docs/stats.md, "The warehouse path"), for
    /// `--warehouse`, `--emit-sql` and `--store`.
    #[arg(long)]
    pub tables: Option<PathBuf>,
    /// Run the analysis in this PostgreSQL database (`postgres://user@host:5432/db`; TLS
    /// parameters as for `serve --store`): only one row per experiment × variant comes back.
    #[arg(long, value_name = "URL")]
    pub warehouse: Option<String>,
    /// Print the analysis query of `--tables` in this dialect and exit.
    #[arg(long, value_name = "DIALECT", value_parser = ["spark", "duckdb", "postgres", "bigquery", "snowflake", "sqlite"])]
    pub emit_sql: Option<String>,
    /// Analyse rows of sufficient statistics, as the query of `--emit-sql` returns them (CSV).
    #[arg(long, value_name = "ROWS_CSV")]
    pub from_stats: Option<PathBuf>,
    /// Analyse the exposures of allot's own store (`sqlite://PATH` or `postgres://…`) through the
    /// same query; metrics from `--tables` (tables in the same database) or `--metrics`.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

/// Opens a CSV file and finds the named columns (`None` for an optional column that is absent).
pub(crate) fn open_csv(
    path: &Path,
    what: &str,
    columns: &[(&str, bool)],
) -> Result<(csv::Reader<File>, Vec<Option<usize>>)> {
    let file = File::open(path).with_context(|| format!("cannot read {what} file {}", path.display()))?;
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(file);
    let header = rdr.headers().with_context(|| format!("{}: cannot read the header", path.display()))?.clone();
    let mut idx = vec![];
    for &(name, required) in columns {
        let i = header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
        if i.is_none() && required {
            bail!(
                "{}: missing column `{name}` (header is `{}`; expected `{}`)",
                path.display(),
                header.iter().collect::<Vec<_>>().join(","),
                columns.iter().map(|c| c.0).collect::<Vec<_>>().join(",")
            );
        }
        idx.push(i);
    }
    Ok((rdr, idx))
}

pub(crate) fn field<'a>(rec: &'a csv::ByteRecord, i: usize, name: &str, path: &Path) -> Result<&'a str> {
    let line = rec.position().map_or(0, csv::Position::line);
    let raw = rec.get(i).unwrap_or_default();
    let s =
        std::str::from_utf8(raw).map_err(|_| anyhow::anyhow!("{}:{line}: `{name}` is not UTF-8", path.display()))?;
    let s = s.trim();
    if s.is_empty() {
        bail!("{}:{line}: `{name}` is empty", path.display());
    }
    Ok(s)
}

pub(crate) fn number(s: &str, name: &str, rec: &csv::ByteRecord, path: &Path) -> Result<f64> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => {
            let line = rec.position().map_or(0, csv::Position::line);
            bail!("{}:{line}: `{name}` is not a finite number: {s:?}", path.display())
        }
    }
}

/// Seconds since the epoch from a number or an RFC 3339 time.
fn timestamp(s: &str, rec: &csv::ByteRecord, path: &Path) -> Result<f64> {
    if let Ok(v) = s.parse::<f64>() {
        if v.is_finite() {
            return Ok(v);
        }
    }
    match rfc3339_seconds(s) {
        Some(t) => Ok(t),
        None => {
            let line = rec.position().map_or(0, csv::Position::line);
            bail!("{}:{line}: `timestamp` is neither RFC 3339 nor seconds since the epoch: {s:?}", path.display())
        }
    }
}

/// A progress bar over a file's bytes, drawn only on a terminal.
pub(crate) fn progress(path: &Path, what: &str) -> ProgressBar {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let pb = ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg:>12} [{bar:40}] {bytes}/{total_bytes} {elapsed}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// A configuration version: a non-negative integer.
fn version(s: &str, rec: &csv::ByteRecord, path: &Path) -> Result<u64> {
    s.parse::<u64>().map_err(|_| {
        let line = rec.position().map_or(0, csv::Position::line);
        anyhow::anyhow!(
            "{}:{line}: `version` is not a configuration version (a non-negative integer): {s:?}",
            path.display()
        )
    })
}

fn read_exposures(path: &Path) -> Result<Exposures> {
    let (mut rdr, idx) = open_csv(
        path,
        "exposures",
        &[("unit", true), ("experiment", true), ("variant", true), ("timestamp", false), ("version", false)],
    )?;
    let (iu, ie, iv) = (idx[0].unwrap_or(0), idx[1].unwrap_or(0), idx[2].unwrap_or(0));
    let pb = progress(path, "exposures");
    let mut ex = Exposures::new(idx[3].is_some(), idx[4].is_some(), std::hash::RandomState::new());
    let mut rec = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut rec).with_context(|| format!("{}: malformed CSV", path.display()))? {
        let unit = field(&rec, iu, "unit", path)?;
        let exp = field(&rec, ie, "experiment", path)?;
        let var = field(&rec, iv, "variant", path)?;
        let t = match idx[3] {
            Some(i) => timestamp(field(&rec, i, "timestamp", path)?, &rec, path)?,
            None => f64::NAN,
        };
        let v = match idx[4] {
            Some(i) => Some(version(field(&rec, i, "version", path)?, &rec, path)?),
            None => None,
        };
        ex.add(unit, exp, var, t, v);
        if ex.rows().is_multiple_of(65_536) {
            pb.set_position(rec.position().map_or(0, csv::Position::byte));
        }
    }
    pb.finish_and_clear();
    Ok(ex)
}

/// Per-unit sums of each metric of a `unit,metric,value` file, over the exposed units.
fn read_values(path: &Path, what: &str, ex: &Exposures) -> Result<UnitValues> {
    let (mut rdr, idx) = open_csv(path, what, &[("unit", true), ("metric", true), ("value", true)])?;
    let (iu, im, iv) = (idx[0].unwrap_or(0), idx[1].unwrap_or(0), idx[2].unwrap_or(0));
    let pb = progress(path, what);
    let mut out = UnitValues::default();
    let mut rec = csv::ByteRecord::new();
    let mut rows = 0u64;
    while rdr.read_byte_record(&mut rec).with_context(|| format!("{}: malformed CSV", path.display()))? {
        rows += 1;
        if rows.is_multiple_of(65_536) {
            pb.set_position(rec.position().map_or(0, csv::Position::byte));
        }
        let unit = field(&rec, iu, "unit", path)?;
        let metric = field(&rec, im, "metric", path)?;
        let value = number(field(&rec, iv, "value", path)?, "value", &rec, path)?;
        out.add(ex, unit, metric, value);
    }
    pb.finish_and_clear();
    Ok(out)
}

/// Reads `unit,person`.
fn read_identities(path: &Path, ex: &Exposures) -> Result<Identities> {
    let (mut rdr, idx) = open_csv(path, "identities", &[("unit", true), ("person", true)])?;
    let (iu, ip) = (idx[0].unwrap_or(0), idx[1].unwrap_or(0));
    let mut out = Identities::default();
    let mut rec = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut rec).with_context(|| format!("{}: malformed CSV", path.display()))? {
        let unit = field(&rec, iu, "unit", path)?;
        let person = field(&rec, ip, "person", path)?;
        out.add(ex, unit, person);
    }
    Ok(out)
}

/// Loads the configuration when the file exists or was named explicitly.
pub(crate) fn optional_config(path: &Path) -> Result<Option<Config>> {
    if !path.exists() {
        if path == Path::new("allot.yaml") {
            return Ok(None);
        }
        bail!("configuration {} does not exist", path.display());
    }
    let text = crate::files::read_config(path)?;
    match config::load(&text) {
        Ok(c) => Ok(Some(c)),
        Err(es) => {
            let list: Vec<String> = es.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
            bail!("configuration {} is invalid:\n  {}", path.display(), list.join("\n  "))
        }
    }
}

/// Runs `allot analyze`.
pub fn run(cli: &Cli, args: &AnalyzeArgs) -> Result<ExitCode> {
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        bail!("--alpha {} is not in (0, 1)", args.alpha);
    }
    let cfg = optional_config(&cli.config)?;
    // The recorded state: beside the configuration, or named by --state (then it must exist).
    let state = if cfg.is_some() || cli.state.is_some() {
        let path = crate::files::state_path(&cli.config, cli.state.as_ref());
        if cli.state.is_some() && !path.exists() {
            bail!("state file {} does not exist", path.display());
        }
        Some(crate::files::read_state(&path)?)
    } else {
        None
    };
    let source = crate::warehouse::Source::of(args)?;
    if let crate::warehouse::Source::EmitSql { dialect, tables } = &source {
        print!("{}", crate::warehouse::emit_sql(dialect, tables)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut report = match source {
        crate::warehouse::Source::Files { exposures, metrics } => {
            analyze(&exposures, &metrics, args, cfg.as_ref(), state.as_ref())?
        }
        other => {
            crate::warehouse::analyze(&other, args, cfg.as_ref().map(ConfigDesign).as_ref().map(|d| d as &dyn Design))?
        }
    };
    crate::sequential::run(&args.sequential, cfg.as_ref(), args.alpha, &mut report)?;
    if args.reuse_health {
        let (Some(st), Some(cov)) = (state.as_ref(), args.covariates.as_ref()) else {
            bail!("--reuse-health needs the recorded state (allot.state.json beside the configuration, or --state)");
        };
        let names: Vec<&str> = report.experiments.keys().map(String::as_str).collect();
        report.reuse_health = Some(crate::reuse::health(st, cov, &names, args.alpha)?);
    }
    match args.format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            // The SRM warning must not be missed when the output goes to a program.
            for (id, e) in &report.experiments {
                if let Some(w) = e.srm.warning() {
                    eprintln!("warning: experiment {id}: {w}");
                }
            }
        }
        Format::Text => print!("{}", text(&report)),
    }
    if let Some(path) = &args.html {
        std::fs::write(path, crate::html::report(&report))
            .with_context(|| format!("cannot write HTML report {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the files and analyses them. `state` is the recorded state, if known: its change log
/// gives the times of configuration changes, its allocations when each experiment ran.
pub fn analyze(
    exposures: &Path,
    metrics: &Path,
    args: &AnalyzeArgs,
    cfg: Option<&Config>,
    state: Option<&State>,
) -> Result<Report> {
    let recorded = state.map(recorded);
    let ex = read_exposures(exposures)?;
    let metrics = read_values(metrics, "metrics", &ex)?;
    let covariates = match &args.covariates {
        Some(p) => Some(read_values(p, "covariates", &ex)?),
        None => None,
    };
    let identities = match &args.identities {
        Some(p) => Some(read_identities(p, &ex)?),
        None => None,
    };
    let design = cfg.map(ConfigDesign);
    Ok(analysis::analyze(Inputs {
        exposures: &ex,
        metrics: &metrics,
        covariates: covariates.as_ref(),
        identities: identities.as_ref(),
        design: design.as_ref().map(|d| d as &dyn Design),
        recorded: recorded.as_ref(),
        alpha: args.alpha,
    }))
}

/// A statistic with four decimals, `-` when it could not be computed.
fn f(x: Option<f64>) -> String {
    x.filter(|x| x.is_finite()).map_or_else(|| "-".to_string(), |x| format!("{x:.4}"))
}

/// A p-value: four decimals, or in scientific notation below 10⁻⁴; `-` when not computed.
fn pv(x: Option<f64>) -> String {
    x.filter(|x| x.is_finite())
        .map_or_else(|| "-".to_string(), |x| if x < 1e-4 { format!("{x:.1e}") } else { format!("{x:.4}") })
}

/// An example as the text report shows it: its compact JSON.
fn example(x: &impl serde::Serialize) -> String {
    serde_json::to_string(x).unwrap_or_default()
}

/// The report for people.
pub fn text(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for (id, e) in &r.experiments {
        let _ = writeln!(s, "Experiment {id}");
        let counts: Vec<String> = e.srm.counts().iter().map(|(k, v)| format!("{k} {v}")).collect();
        let split = match &e.srm {
            Srm::Tested { split: analysis::Split::Configured, .. } => "configured",
            _ => "even",
        };
        let _ = writeln!(s, "  SRM ({split} split): p = {}  [{}]", pv(e.srm.p_value()), counts.join(", "));
        if let Some(w) = e.srm.warning() {
            let _ = writeln!(s, "  WARNING: {w}");
        }
        for (m, mv) in &e.metrics {
            let _ = writeln!(s, "  metric {m}");
            for (v, x) in &mv.variants {
                let _ = writeln!(s, "    {v:<14} n {}  mean {}", x.n, f(Some(x.mean)));
            }
            for c in &mv.comparisons {
                let ci = |i: usize| c.ci.map(|ci| ci[i]);
                let rci = |i: usize| c.relative_ci.map(|ci| ci[i]);
                let _ = writeln!(
                    s,
                    "    {} vs {}: diff {} [{}, {}] p {} (holm {})  lift {} [{}, {}]",
                    c.variant,
                    c.control,
                    f(c.diff),
                    f(ci(0)),
                    f(ci(1)),
                    pv(c.p_value),
                    pv(c.p_adjusted.map(|a| a.holm)),
                    f(c.relative),
                    f(rci(0)),
                    f(rci(1)),
                );
                if let Some(analysis::CupedReport::Estimate { diff, ci, p_value, variance_reduction, .. }) = &c.cuped {
                    let reduction = if variance_reduction.is_finite() { *variance_reduction } else { 0.0 };
                    let _ = writeln!(
                        s,
                        "      CUPED: diff {} [{}, {}] p {}  variance reduction {:.1}%",
                        f(Some(*diff)),
                        f(Some(ci[0])),
                        f(Some(ci[1])),
                        pv(Some(*p_value)),
                        100.0 * reduction
                    );
                }
            }
        }
    }
    if !r.interactions.is_empty() || !r.interactions_skipped.is_empty() {
        let _ = writeln!(s, "Interactions");
        for i in &r.interactions {
            let flag = if i.should_be_exclusive == Some(true) { "  SHOULD HAVE BEEN EXCLUSIVE" } else { "" };
            let _ = writeln!(s, "  {} × {}: {} shared units{flag}", i.experiments[0], i.experiments[1], i.units);
            for (m, list) in &i.metrics {
                for c in list {
                    let _ = writeln!(
                        s,
                        "    {m} {}×{}: contrast {} ± {} p {} (adjusted {})",
                        c.a_variant,
                        c.b_variant,
                        f(Some(c.estimate)),
                        f(Some(c.se)),
                        pv(Some(c.p_value)),
                        pv(Some(c.p_adjusted))
                    );
                }
            }
            if i.reused_after_stop > 0 {
                let _ = writeln!(
                    s,
                    "    ({} more shared units came to one after the other had stopped: bucket reuse, left out)",
                    i.reused_after_stop
                );
            }
        }
        for i in &r.interactions_skipped {
            let _ = writeln!(
                s,
                "  {} × {}: {} shared units, no interaction test: {}",
                i.experiments[0], i.experiments[1], i.units, i.reason
            );
        }
    }
    let d = &r.diagnostics;
    let _ = writeln!(
        s,
        "Diagnostics: {} exposure rows, {} units, {} metric rows without exposure",
        d.exposure_rows, d.units, d.metric_rows_without_exposure
    );
    if let Some(n) = d.exposure_rows_left_out.filter(|n| *n > 0) {
        let _ = writeln!(s, "  exposure rows without a unit, variant or time, left out: {n}");
    }
    for (k, v) in &d.exposure_issues {
        if v.count > 0 {
            let first = v.examples.first().map_or_else(|| "null".to_string(), example);
            let _ = writeln!(s, "  {}: {}  e.g. {first}", k.key(), v.count);
        }
    }
    let reused = &d.reused_after_stop;
    if reused.count > 0 {
        let first = reused.examples.first().map_or_else(|| "null".to_string(), example);
        let _ = writeln!(
            s,
            "  reused_after_stop: {} (not a violation: units of exclusive experiments that did not run at once, bucket reuse)  e.g. {first}",
            reused.count
        );
    }
    if !d.config {
        let _ = writeln!(s, "  (no configuration: exclusivity not checked, SRM against an even split)");
    }
    if let Some(q) = &r.sequential {
        s.push_str(&crate::sequential::text(q));
    }
    if let Some(h) = &r.reuse_health {
        s.push_str(&crate::reuse::text(h));
    }
    s
}
