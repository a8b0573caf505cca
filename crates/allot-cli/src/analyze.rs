//! `allot analyze`: results of experiments from exposure and metric files.
//!
//! One pass over each file. Exposures go into a compact per-unit map (unit → its experiments and
//! variants, first and last exposure time): this grows with the number of distinct units and
//! their experiments, not with rows. Metric and covariate rows are summed per unit into one `f64`
//! per unit and metric. A final pass over the units streams those values into the sufficient
//! statistics of `allot-stats` ([`Moments`] per experiment, variant and metric, and per pair of
//! overlapping experiments and cell), from which every estimate is computed.
//!
//! Whether two experiments ran at the same time is decided by `allot_stats::timeline` from the
//! recorded state, else the versions, else the times of the exposures: units of two exclusive
//! experiments that never ran at once (one stopped, the next started on its buckets) are bucket
//! reuse, not a violation, and pairs that never ran at once get no interaction test.

use crate::{Cli, Format};
use allot_core::config::{self, Config, ExpState};
use allot_core::state::{OwnerKind, State};
use allot_stats::correct::{adjust, Method};
use allot_stats::estimate::{cuped, cuped_theta, relative, welch, Summary};
use allot_stats::interaction::contrasts;
use allot_stats::srm::{srm, SRM_THRESHOLD};
use allot_stats::timeline::{self, Basis, Interval, Runs, Seen, Together};
use allot_stats::Moments;
use anyhow::{bail, Context as _, Result};
use indexmap::{IndexMap, IndexSet};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs::File;
use std::hash::BuildHasher as _;
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
    pub exposures: PathBuf,
    /// Metrics CSV with header `unit,metric,value` (post-exposure; rows of a unit are summed).
    #[arg(long)]
    pub metrics: PathBuf,
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
}

const NONE: u32 = u32::MAX;

/// One unit's exposure to one experiment.
#[derive(Debug, Clone, Copy)]
struct Entry {
    exp: u32,
    var: u32,
    next: u32,
    jumped: bool,
    first: f64,
    last: f64,
}

/// Interned unit ids: the bytes of all ids in one buffer and a hash table of their indices, about
/// 20 bytes per unit beyond the id itself (a set of boxed strings costs several times that).
#[derive(Default)]
pub(crate) struct UnitIds {
    table: hashbrown::HashTable<u32>,
    bytes: Vec<u8>,
    ends: Vec<usize>,
    hasher: std::hash::RandomState,
}

impl UnitIds {
    fn span(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// The index of `id`, if seen.
    fn get(&self, id: &str) -> Option<usize> {
        let h = self.hasher.hash_one(id.as_bytes());
        self.table.find(h, |&i| self.span(i as usize) == id.as_bytes()).map(|&i| i as usize)
    }

    /// The index of `id`, added if new.
    fn get_or_insert(&mut self, id: &str) -> usize {
        let h = self.hasher.hash_one(id.as_bytes());
        let (bytes, ends) = (&self.bytes, &self.ends);
        let span = |i: usize| &bytes[if i == 0 { 0 } else { ends[i - 1] }..ends[i]];
        if let Some(&i) = self.table.find(h, |&i| span(i as usize) == id.as_bytes()) {
            return i as usize;
        }
        let i = self.ends.len();
        self.bytes.extend_from_slice(id.as_bytes());
        self.ends.push(self.bytes.len());
        let (hasher, bytes, ends) = (&self.hasher, &self.bytes, &self.ends);
        self.table.insert_unique(h, i as u32, |&j| {
            let j = j as usize;
            hasher.hash_one(&bytes[if j == 0 { 0 } else { ends[j - 1] }..ends[j]])
        });
        i
    }

    /// The id of unit `i`.
    fn name(&self, i: usize) -> &str {
        std::str::from_utf8(self.span(i)).unwrap_or("")
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// Every unit's experiments and variants, compactly: one linked list of entries per unit.
#[derive(Default)]
struct Exposures {
    units: UnitIds,
    head: Vec<u32>,
    entries: Vec<Entry>,
    /// First and last configuration version of each entry, when the file has a `version` column
    /// (kept beside the entries so that files without one cost nothing more).
    versions: Vec<[u64; 2]>,
    experiments: IndexSet<Box<str>>,
    variants: Vec<IndexSet<Box<str>>>,
    /// First and last exposure time of each experiment (NaN without a `timestamp` column).
    exp_times: Vec<[f64; 2]>,
    /// First and last configuration version of each experiment (with a `version` column).
    exp_versions: Vec<[u64; 2]>,
    has_times: bool,
    has_versions: bool,
    rows: u64,
}

impl Exposures {
    fn add(&mut self, unit: &str, exp: &str, var: &str, time: f64, version: Option<u64>) {
        self.rows += 1;
        let u = self.units.get_or_insert(unit);
        if u == self.head.len() {
            self.head.push(NONE);
        }
        let e = match self.experiments.get_index_of(exp) {
            Some(e) => e,
            None => {
                self.experiments.insert(exp.into());
                self.variants.push(IndexSet::new());
                self.exp_times.push([time, time]);
                self.exp_versions.push(version.map_or([0, 0], |v| [v, v]));
                self.experiments.len() - 1
            }
        };
        let span = &mut self.exp_times[e];
        *span = [span[0].min(time), span[1].max(time)];
        if let Some(v) = version {
            let span = &mut self.exp_versions[e];
            *span = [span[0].min(v), span[1].max(v)];
        }
        let vs = &mut self.variants[e];
        let v = match vs.get_index_of(var) {
            Some(v) => v,
            None => vs.insert_full(var.into()).0,
        };
        let (e, v) = (e as u32, v as u32);
        let mut i = self.head[u];
        while i != NONE {
            let en = &mut self.entries[i as usize];
            if en.exp == e {
                if en.var != v {
                    en.jumped = true;
                }
                en.first = en.first.min(time);
                en.last = en.last.max(time);
                if let (Some(v), Some(span)) = (version, self.versions.get_mut(i as usize)) {
                    *span = [span[0].min(v), span[1].max(v)];
                }
                return;
            }
            i = en.next;
        }
        self.entries.push(Entry { exp: e, var: v, next: self.head[u], jumped: false, first: time, last: time });
        if let Some(v) = version {
            self.versions.push([v, v]);
        }
        self.head[u] = (self.entries.len() - 1) as u32;
    }

    /// The unit's entries with their indices, in experiment order.
    fn of_unit(&self, u: usize, out: &mut Vec<(u32, Entry)>) {
        out.clear();
        let mut i = self.head[u];
        while i != NONE {
            let e = self.entries[i as usize];
            out.push((i, e));
            i = e.next;
        }
        // Lists are built newest first; experiments in index order make pairs canonical.
        out.sort_by_key(|e| e.1.exp);
    }

    /// What the exposures of entry `i` say about when its unit saw its experiment.
    fn seen(&self, i: u32, e: &Entry) -> Seen {
        Seen {
            versions: self.versions.get(i as usize).map(|v| (v[0], v[1])),
            times: self.has_times.then_some((e.first, e.last)),
        }
    }
}

/// Opens a CSV file and finds the named columns (`None` for an optional column that is absent).
fn open_csv(path: &Path, what: &str, columns: &[(&str, bool)]) -> Result<(csv::Reader<File>, Vec<Option<usize>>)> {
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

fn field<'a>(rec: &'a csv::ByteRecord, i: usize, name: &str, path: &Path) -> Result<&'a str> {
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

fn number(s: &str, name: &str, rec: &csv::ByteRecord, path: &Path) -> Result<f64> {
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
    match time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        Ok(t) => Ok(t.unix_timestamp_nanos() as f64 / 1e9),
        Err(_) => {
            let line = rec.position().map_or(0, csv::Position::line);
            bail!("{}:{line}: `timestamp` is neither RFC 3339 nor seconds since the epoch: {s:?}", path.display())
        }
    }
}

/// A progress bar over a file's bytes, drawn only on a terminal.
fn progress(path: &Path, what: &str) -> ProgressBar {
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
    let mut ex = Exposures { has_times: idx[3].is_some(), has_versions: idx[4].is_some(), ..Exposures::default() };
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
        if ex.rows.is_multiple_of(65_536) {
            pb.set_position(rec.position().map_or(0, csv::Position::byte));
        }
    }
    pb.finish_and_clear();
    Ok(ex)
}

/// Per-unit sums of each metric: `values[metric][unit]`.
struct UnitValues {
    names: IndexSet<Box<str>>,
    values: Vec<Vec<f64>>,
    rows: u64,
    orphan_rows: u64,
}

fn read_values(path: &Path, what: &str, units: &UnitIds) -> Result<UnitValues> {
    let (mut rdr, idx) = open_csv(path, what, &[("unit", true), ("metric", true), ("value", true)])?;
    let (iu, im, iv) = (idx[0].unwrap_or(0), idx[1].unwrap_or(0), idx[2].unwrap_or(0));
    let pb = progress(path, what);
    let mut out = UnitValues { names: IndexSet::new(), values: vec![], rows: 0, orphan_rows: 0 };
    let mut rec = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut rec).with_context(|| format!("{}: malformed CSV", path.display()))? {
        out.rows += 1;
        if out.rows.is_multiple_of(65_536) {
            pb.set_position(rec.position().map_or(0, csv::Position::byte));
        }
        let unit = field(&rec, iu, "unit", path)?;
        let metric = field(&rec, im, "metric", path)?;
        let value = number(field(&rec, iv, "value", path)?, "value", &rec, path)?;
        let Some(u) = units.get(unit) else {
            out.orphan_rows += 1;
            continue;
        };
        let m = match out.names.get_index_of(metric) {
            Some(m) => m,
            None => {
                out.names.insert(metric.into());
                out.values.push(vec![0.0; units.len()]);
                out.names.len() - 1
            }
        };
        out.values[m][u] += value;
    }
    pb.finish_and_clear();
    Ok(out)
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

/// Exposure-diagnostic classes, in report order.
const CLASSES: [&str; 5] = ["inclusion", "identity_merge", "variant_jumping", "config_change", "unexplained"];
const MAX_EXAMPLES: usize = 5;

/// A count and its first few examples.
#[derive(Default)]
struct Examples {
    count: u64,
    list: Vec<Value>,
}

impl Examples {
    fn add(&mut self, example: impl FnOnce() -> Value) {
        self.count += 1;
        if self.list.len() < MAX_EXAMPLES {
            self.list.push(example());
        }
    }
}

#[derive(Default)]
struct Diagnostics {
    classes: IndexMap<&'static str, (u64, Vec<Value>)>,
}

impl Diagnostics {
    fn new() -> Diagnostics {
        Diagnostics { classes: CLASSES.iter().map(|c| (*c, (0, vec![]))).collect() }
    }
    fn add(&mut self, class: &'static str, example: impl FnOnce() -> Value) {
        if let Some((n, ex)) = self.classes.get_mut(class) {
            *n += 1;
            if ex.len() < MAX_EXAMPLES {
                ex.push(example());
            }
        }
    }
}

/// The exclusion scope two experiments share: a common group, or a tag one is exclusive to.
fn scope_of(cfg: &Config, a: &str, b: &str) -> String {
    let (Some(ea), Some(eb)) = (cfg.experiments.get(a), cfg.experiments.get(b)) else { return String::new() };
    if let Some(g) = ea.groups.iter().find(|g| eb.groups.iter().any(|h| h.group == g.group)) {
        return format!("group {}", g.group);
    }
    let (ta, tb) = (cfg.tags_of(ea), cfg.tags_of(eb));
    cfg.exclusive_to_of(ea)
        .into_iter()
        .find(|x| tb.contains(x))
        .or_else(|| cfg.exclusive_to_of(eb).into_iter().find(|x| ta.contains(x)))
        .unwrap_or_default()
}

/// Loads the configuration when the file exists or was named explicitly.
fn optional_config(path: &Path) -> Result<Option<Config>> {
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
    let report = analyze(args, cfg.as_ref(), state.as_ref())?;
    match args.format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            // The SRM warning must not be missed when the output goes to a program.
            for (id, e) in report["experiments"].as_object().into_iter().flatten() {
                if let Some(w) = e["srm"]["warning"].as_str() {
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

/// Seconds since the epoch of an RFC 3339 time.
fn rfc3339(s: &str) -> Option<f64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
}

/// When each experiment seen ran, on every axis known: the recorded state's allocations (in
/// versions, and in times when the change log gives the time of every version used), and the
/// first and last version and time of its exposures, open-ended when the configuration says it
/// is running.
fn runs_of(ex: &Exposures, names: &[&str], cfg: Option<&Config>, state: Option<&State>) -> Vec<Runs> {
    let times: HashMap<u64, f64> = state
        .map(|st| st.log.iter().filter_map(|l| Some((l.version, rfc3339(&l.time)?))).collect())
        .unwrap_or_default();
    names
        .iter()
        .enumerate()
        .map(|(e, name)| {
            let recorded: Vec<Interval<u64>> = state
                .map(|st| {
                    st.allocations
                        .iter()
                        .filter(|a| a.kind == OwnerKind::Experiment && a.owner == *name)
                        .filter_map(|a| Some(Interval::recorded(a.draws.first()?.version, a.released)))
                        .collect()
                })
                .unwrap_or_default();
            let in_times = |i: &Interval<u64>| -> Option<Interval<f64>> {
                let end = match i.end {
                    timeline::End::Before(v) => Some(*times.get(&v)?),
                    _ => None,
                };
                Some(Interval::recorded(*times.get(&i.start)?, end))
            };
            let state_times: Option<Vec<Interval<f64>>> = recorded.iter().map(in_times).collect();
            let running = cfg.and_then(|c| c.experiments.get(*name)).is_some_and(|x| x.state == ExpState::Running);
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
    cache: std::cell::RefCell<HashMap<(u32, u32), Together>>,
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

/// `[start, end]` of an interval in the report; `end` is null while running.
fn interval_json<T: serde::Serialize + Copy>(i: &Interval<T>) -> Value {
    let end = match i.end {
        timeline::End::Open => Value::Null,
        timeline::End::Before(e) | timeline::End::At(e) => json!(e),
    };
    json!([i.start, end])
}

/// An experiment's runs in the report (`diagnostics.runs`).
fn runs_json(r: &Runs) -> Value {
    json!({
        "state_versions": r.state_versions.as_ref().map(|v| v.iter().map(interval_json).collect::<Vec<_>>()),
        "seen_versions": r.seen_versions.as_ref().map(interval_json),
        "seen_times": r.seen_times.as_ref().map(interval_json),
    })
}

fn together_json(t: Together) -> Value {
    json!({"overlapped": t.overlapped, "basis": t.basis})
}

/// Reads the files and builds the report (the JSON document). `state` is the recorded state, if
/// known: its change log gives the times of configuration changes, its allocations when each
/// experiment ran.
pub fn analyze(args: &AnalyzeArgs, cfg: Option<&Config>, state: Option<&State>) -> Result<Value> {
    // Times of recorded configuration changes, when the state has any.
    let changes: Option<Vec<f64>> = state.map(|st| st.log.iter().filter_map(|l| rfc3339(&l.time)).collect::<Vec<_>>());
    let changes = changes.filter(|c| !c.is_empty());
    let changes = changes.as_deref();
    let ex = read_exposures(&args.exposures)?;
    let metrics = read_values(&args.metrics, "metrics", &ex.units)?;
    let covs = match &args.covariates {
        Some(p) => Some(read_values(p, "covariates", &ex.units)?),
        None => None,
    };
    // Covariate of each metric, by name.
    let cov_of: Vec<Option<&Vec<f64>>> = metrics
        .names
        .iter()
        .map(|m| covs.as_ref().and_then(|c| c.names.get_index_of(m).map(|i| &c.values[i])))
        .collect();
    let nm = metrics.names.len();
    let ne = ex.experiments.len();
    let names: Vec<&str> = ex.experiments.iter().map(|s| &**s).collect();

    // Exclusivity between the experiments seen, from the configuration.
    let excl: Vec<Vec<bool>> =
        (0..ne).map(|a| (0..ne).map(|b| cfg.is_some_and(|c| c.exclusive(names[a], names[b]))).collect()).collect();

    let mut accs: Vec<ExpAcc> = ex
        .variants
        .iter()
        .map(|vs| ExpAcc { counts: vec![0; vs.len()], jumped: 0, cells: vec![vec![Moments::default(); nm]; vs.len()] })
        .collect();
    let runs = runs_of(&ex, &names, cfg, state);
    let together = Pairs { runs: &runs, cache: Default::default() };
    let mut pairs: IndexMap<(u32, u32), PairAcc> = IndexMap::new();
    // Units of pairs left out of the interaction tests: of pairs that never ran together, and of
    // exclusive pairs, units reused after a stop.
    let mut apart: IndexMap<(u32, u32), u64> = IndexMap::new();
    let mut reused_in: IndexMap<(u32, u32), u64> = IndexMap::new();
    let mut reused = Examples::default();
    let mut diag = Diagnostics::new();
    let mut buf = vec![];
    for u in 0..ex.units.len() {
        ex.of_unit(u, &mut buf);
        let unit_id = || ex.units.name(u).to_string();
        for (_, e) in &buf {
            let acc = &mut accs[e.exp as usize];
            acc.counts[e.var as usize] += 1;
            if e.jumped {
                acc.jumped += 1;
                diag.add("variant_jumping", || json!({"unit": unit_id(), "experiment": names[e.exp as usize]}));
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
                    if let Some(basis) = together.reused(&ex, (*ia, a), (*ib, b)) {
                        *reused_in.entry(key).or_insert(0) += 1;
                        reused.add(|| {
                            json!({"unit": unit_id(), "experiments": [names[a.exp as usize], names[b.exp as usize]],
                                   "basis": basis})
                        });
                        continue;
                    }
                    let class = classify(cfg, changes, &unit_id(), names[a.exp as usize], names[b.exp as usize], a, b);
                    diag.add(class, || {
                        json!({"unit": unit_id(), "experiments": [names[a.exp as usize], names[b.exp as usize]],
                               "scope": cfg.map(|c| scope_of(c, names[a.exp as usize], names[b.exp as usize]))})
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
    let persons = match &args.identities {
        Some(p) => Some(identity_merges(p, &ex, &excl, &together, &names, &mut diag)?),
        None => None,
    };

    // Per-experiment results.
    let mut exps = serde_json::Map::new();
    // Configured experiments in file order, then the others as first seen.
    let mut order: Vec<usize> = cfg
        .map(|c| c.experiments.keys().filter_map(|k| ex.experiments.get_index_of(k.as_str())).collect())
        .unwrap_or_default();
    order.extend((0..ne).filter(|e| !order.contains(e)).collect::<Vec<_>>());
    for e in order {
        let acc = &accs[e];
        exps.insert(
            names[e].to_string(),
            experiment(names[e], &ex.variants[e], acc, &metrics.names, &cov_of, cfg, args.alpha),
        );
    }
    let mut interactions = interactions(&pairs, &ex, &names, &metrics.names, &excl, cfg.is_some());
    for (entry, key) in interactions.as_array_mut().into_iter().flatten().zip(pairs.keys()) {
        entry["ran_together"] = together_json(together.together(key.0, key.1));
        entry["reused_after_stop"] = json!(reused_in.get(key).copied().unwrap_or(0));
    }
    // Pairs with shared units and no interaction test, with why.
    let mut skipped_keys: Vec<(u32, u32)> = apart.keys().chain(reused_in.keys()).copied().collect();
    skipped_keys.sort_unstable();
    skipped_keys.dedup();
    let skipped: Vec<Value> = skipped_keys
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
            json!({
                "experiments": [names[a as usize], names[b as usize]],
                "units": units,
                "should_be_exclusive": if cfg.is_some() { json!(excl[a as usize][b as usize]) } else { Value::Null },
                "ran_together": together_json(t),
                "reused_after_stop": reused_in.get(&(a, b)).copied().unwrap_or(0),
                "reason": reason,
            })
        })
        .collect();
    let runs_json: serde_json::Map<String, Value> =
        names.iter().zip(&runs).map(|(name, r)| (name.to_string(), runs_json(r))).collect();
    let overlaps: Value = diag
        .classes
        .iter()
        .map(|(k, (n, ex))| (k.to_string(), json!({"count": n, "examples": ex})))
        .collect::<serde_json::Map<_, _>>()
        .into();
    Ok(json!({
        "experiments": exps,
        "interactions": interactions,
        "interactions_skipped": skipped,
        "diagnostics": {
            "exposure_times": ex.has_times,
            "exposure_versions": ex.has_versions,
            "state": state.is_some_and(|s| !s.allocations.is_empty()),
            "runs": runs_json,
            "reused_after_stop": {"count": reused.count, "examples": reused.list},
            "exposure_rows": ex.rows,
            "units": ex.units.len(),
            "metric_rows": metrics.rows,
            "metric_rows_without_exposure": metrics.orphan_rows,
            "covariate_rows": covs.as_ref().map(|c| c.rows),
            "covariate_rows_without_exposure": covs.as_ref().map(|c| c.orphan_rows),
            "config": cfg.is_some(),
            "identities": persons,
            "exposure_issues": overlaps,
            "alpha": args.alpha,
        },
    }))
}

/// Why a unit saw two experiments that exclude each other: an inclusion in either; else, when its
/// exposures to the two do not overlap in time and a recorded change falls between them (or no
/// change log is available), a configuration change; else unexplained.
fn classify(
    cfg: Option<&Config>,
    changes: Option<&[f64]>,
    unit: &str,
    a: &str,
    b: &str,
    ea: &Entry,
    eb: &Entry,
) -> &'static str {
    let included = |id: &str| cfg.and_then(|c| c.experiments.get(id)).is_some_and(|e| e.include.contains_key(unit));
    let gap = if ea.last < eb.first {
        Some((ea.last, eb.first))
    } else if eb.last < ea.first {
        Some((eb.last, ea.first))
    } else {
        None
    };
    let changed = gap.is_some_and(|(from, to)| changes.is_none_or(|c| c.iter().any(|&t| t > from && t <= to)));
    if included(a) || included(b) {
        "inclusion"
    } else if changed {
        "config_change"
    } else {
        "unexplained"
    }
}

/// Reads `unit,person` and records persons whose several unit ids saw exclusive experiments or
/// several variants of one experiment. Returns the number of persons with more than one unit id.
fn identity_merges(
    path: &Path,
    ex: &Exposures,
    excl: &[Vec<bool>],
    together: &Pairs<'_>,
    names: &[&str],
    diag: &mut Diagnostics,
) -> Result<u64> {
    let (mut rdr, idx) = open_csv(path, "identities", &[("unit", true), ("person", true)])?;
    let (iu, ip) = (idx[0].unwrap_or(0), idx[1].unwrap_or(0));
    let mut people: IndexMap<Box<str>, Vec<u32>> = IndexMap::new();
    let mut rec = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut rec).with_context(|| format!("{}: malformed CSV", path.display()))? {
        let unit = field(&rec, iu, "unit", path)?;
        let person = field(&rec, ip, "person", path)?;
        if let Some(u) = ex.units.get(unit) {
            let v = people.entry(person.into()).or_default();
            if !v.contains(&(u as u32)) {
                v.push(u as u32);
            }
        }
    }
    let mut merged = 0;
    let mut buf = vec![];
    for (person, units) in &people {
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
                    let id = |u: u32| ex.units.name(u as usize).to_string();
                    diag.add("identity_merge", || {
                        json!({"person": &**person, "units": [id(*ua), id(*ub)],
                               "experiments": [names[a.exp as usize], names[b.exp as usize]]})
                    });
                }
            }
        }
    }
    Ok(merged)
}

/// Variant names in report order (the configured order, then any others), and the control.
fn variant_order(name: &str, seen: &IndexSet<Box<str>>, cfg: Option<&Config>) -> (Vec<String>, Option<Vec<f64>>) {
    let configured = cfg.and_then(|c| c.experiments.get(name));
    let mut order: Vec<String> = configured.map(|e| e.variants.keys().cloned().collect()).unwrap_or_default();
    let all_configured = seen.iter().all(|v| order.iter().any(|o| o == &**v));
    for v in seen {
        if !order.iter().any(|o| o == &**v) {
            order.push(v.to_string());
        }
    }
    let weights = match configured {
        Some(e) if all_configured => Some(e.variants.values().map(|v| f64::from(v.weight)).collect()),
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

fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

#[allow(clippy::too_many_arguments)]
fn experiment(
    name: &str,
    seen: &IndexSet<Box<str>>,
    acc: &ExpAcc,
    metric_names: &IndexSet<Box<str>>,
    cov_of: &[Option<&Vec<f64>>],
    cfg: Option<&Config>,
    alpha: f64,
) -> Value {
    let (order, weights) = variant_order(name, seen, cfg);
    let idx_of = |v: &str| seen.get_index_of(v);
    let counts: Vec<u64> = order.iter().map(|v| idx_of(v).map_or(0, |i| acc.counts[i])).collect();
    let (split, w) = match weights {
        Some(w) => ("configured", w),
        None => ("even", vec![1.0; order.len()]),
    };
    let srm_v = match srm(&counts, &w) {
        Ok(r) => json!({
            "p_value": num(r.p_value), "chi2": num(r.chi2), "split": split,
            "counts": order.iter().cloned().zip(counts.iter().copied()).collect::<IndexMap<String, u64>>(),
            "expected": order.iter().cloned().zip(r.expected.iter().copied()).collect::<IndexMap<String, f64>>(),
            "warning": (r.p_value < SRM_THRESHOLD).then(|| format!(
                "sample ratio mismatch: p = {:.2e} < {SRM_THRESHOLD}; the assignment or the logging is broken, do not trust the results", r.p_value)),
        }),
        Err(e) => {
            json!({"p_value": null, "counts": order.iter().cloned().zip(counts.iter().copied()).collect::<IndexMap<String, u64>>(), "error": e.to_string()})
        }
    };
    let control = order.first().cloned().unwrap_or_default();
    let mut metrics = serde_json::Map::new();
    // (metric, comparison index) of every raw and CUPED p-value, for the corrections.
    let mut raw_p: Vec<(String, usize, f64)> = vec![];
    let mut cuped_p: Vec<(String, usize, f64)> = vec![];
    for (m, mname) in metric_names.iter().enumerate() {
        let cell = |v: &str| idx_of(v).map_or_else(Moments::default, |i| acc.cells[i][m]);
        let variants: IndexMap<String, Value> = order
            .iter()
            .map(|v| {
                let c = cell(v);
                (v.clone(), json!({"n": c.n, "mean": num(c.mean_y), "sd": num(c.var_y().sqrt())}))
            })
            .collect();
        let theta = cov_of[m].map(|_| cuped_theta(acc.cells.iter().map(|r| &r[m])));
        let c0 = cell(&control);
        let mut comps = vec![];
        for v in order.iter().skip(1) {
            let c1 = cell(v);
            let (s1, s0) = (Summary::of_y(&c1), Summary::of_y(&c0));
            let mut o = json!({"variant": v, "control": control});
            match welch(&s1, &s0, alpha) {
                Ok(w) => {
                    o["diff"] = num(w.diff);
                    o["ci"] = json!([num(w.ci[0]), num(w.ci[1])]);
                    o["se"] = num(w.se);
                    o["p_value"] = num(w.p_value);
                    if w.p_value.is_finite() {
                        raw_p.push((mname.to_string(), comps.len(), w.p_value));
                    }
                }
                Err(e) => o["error"] = json!(e.to_string()),
            }
            match relative(&s1, &s0, alpha) {
                Ok(r) => {
                    o["relative"] = num(r.lift);
                    o["relative_ci"] = json!([num(r.ci[0]), num(r.ci[1])]);
                }
                Err(_) => {
                    o["relative"] = Value::Null;
                    o["relative_ci"] = Value::Null;
                }
            }
            o["cuped"] = match theta.map(|t| cuped(&c1, &c0, t, alpha)) {
                Some(Ok(c)) => {
                    if c.welch.p_value.is_finite() {
                        cuped_p.push((mname.to_string(), comps.len(), c.welch.p_value));
                    }
                    json!({"diff": num(c.welch.diff), "ci": [num(c.welch.ci[0]), num(c.welch.ci[1])],
                           "p_value": num(c.welch.p_value), "variance_reduction": num(c.variance_reduction),
                           "theta": num(c.theta)})
                }
                Some(Err(e)) => json!({"error": e.to_string()}),
                None => Value::Null,
            };
            comps.push(o);
        }
        metrics.insert(mname.to_string(), json!({"variants": variants, "comparisons": comps}));
    }
    for (list, key) in [(&raw_p, None), (&cuped_p, Some("cuped"))] {
        let p: Vec<f64> = list.iter().map(|x| x.2).collect();
        let adj: Vec<Vec<f64>> =
            [Method::Bonferroni, Method::Holm, Method::Bh].iter().map(|m| adjust(&p, *m)).collect();
        for (i, (metric, ci, _)) in list.iter().enumerate() {
            let Some(c) = metrics.get_mut(metric).and_then(|v| v["comparisons"].get_mut(*ci)) else { continue };
            let target = match key {
                Some(k) => &mut c[k],
                None => c,
            };
            target["p_adjusted"] = json!({"bonferroni": adj[0][i], "holm": adj[1][i], "bh": adj[2][i]});
        }
    }
    json!({"variants": order, "control": control, "srm": srm_v, "variant_jumpers": acc.jumped, "metrics": metrics})
}

fn interactions(
    pairs: &IndexMap<(u32, u32), PairAcc>,
    ex: &Exposures,
    names: &[&str],
    metric_names: &IndexSet<Box<str>>,
    excl: &[Vec<bool>],
    have_config: bool,
) -> Value {
    let nm = metric_names.len();
    let mut out = vec![];
    let mut all_p = vec![];
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
        let mut per_metric = serde_json::Map::new();
        for (m, mname) in metric_names.iter().enumerate() {
            let table: Vec<Vec<Summary>> = oa
                .iter()
                .map(|&i| ob.iter().map(|&j| Summary::of_y(&p.cells[(i * vb.len() + j) * nm + m])).collect())
                .collect();
            let list: Vec<Value> = contrasts(&table)
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    all_p.push((out.len(), mname.to_string(), c.p_value));
                    json!({"a_variant": &*va[oa[c.a]], "b_variant": &*vb[ob[c.b]], "estimate": num(c.estimate),
                           "se": num(c.se), "p_value": num(c.p_value)})
                })
                .collect();
            per_metric.insert(mname.to_string(), json!(list));
        }
        out.push(json!({
            "experiments": [names[a as usize], names[b as usize]],
            "units": p.units,
            "should_be_exclusive": if have_config { json!(excl[a as usize][b as usize]) } else { Value::Null },
            "metrics": per_metric,
        }));
    }
    // Corrected for the number of interaction tests (pairs × metrics × contrasts), Holm.
    let ps: Vec<f64> = all_p.iter().map(|x| if x.2.is_finite() { x.2 } else { 1.0 }).collect();
    let adj = adjust(&ps, Method::Holm);
    let mut k: HashMap<(usize, String), usize> = HashMap::new();
    for ((pair, metric, _), q) in all_p.iter().zip(adj) {
        let i = k.entry((*pair, metric.clone())).or_insert(0);
        if let Some(c) = out[*pair]["metrics"][metric.as_str()].get_mut(*i) {
            c["p_adjusted"] = json!(q);
        }
        *i += 1;
    }
    json!(out)
}

fn f(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".to_string(), |x| format!("{x:.4}"))
}

fn pv(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".to_string(), |x| if x < 1e-4 { format!("{x:.1e}") } else { format!("{x:.4}") })
}

/// The report for people.
pub fn text(r: &Value) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let empty = serde_json::Map::new();
    for (id, e) in r["experiments"].as_object().unwrap_or(&empty) {
        let _ = writeln!(s, "Experiment {id}");
        let srm = &e["srm"];
        let counts: Vec<String> =
            srm["counts"].as_object().unwrap_or(&empty).iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            s,
            "  SRM ({} split): p = {}  [{}]",
            srm["split"].as_str().unwrap_or("even"),
            pv(&srm["p_value"]),
            counts.join(", ")
        );
        if let Some(w) = srm["warning"].as_str() {
            let _ = writeln!(s, "  WARNING: {w}");
        }
        for (m, mv) in e["metrics"].as_object().unwrap_or(&empty) {
            let _ = writeln!(s, "  metric {m}");
            for (v, x) in mv["variants"].as_object().unwrap_or(&empty) {
                let _ = writeln!(s, "    {v:<14} n {:>9}  mean {}", x["n"], f(&x["mean"]));
            }
            for c in mv["comparisons"].as_array().map_or(&[][..], |a| a) {
                let _ = writeln!(
                    s,
                    "    {} vs {}: diff {} [{}, {}] p {} (holm {})  lift {} [{}, {}]",
                    c["variant"].as_str().unwrap_or(""),
                    c["control"].as_str().unwrap_or(""),
                    f(&c["diff"]),
                    f(&c["ci"][0]),
                    f(&c["ci"][1]),
                    pv(&c["p_value"]),
                    pv(&c["p_adjusted"]["holm"]),
                    f(&c["relative"]),
                    f(&c["relative_ci"][0]),
                    f(&c["relative_ci"][1]),
                );
                let cu = &c["cuped"];
                if cu.is_object() && cu.get("error").is_none() {
                    let _ = writeln!(
                        s,
                        "      CUPED: diff {} [{}, {}] p {}  variance reduction {:.1}%",
                        f(&cu["diff"]),
                        f(&cu["ci"][0]),
                        f(&cu["ci"][1]),
                        pv(&cu["p_value"]),
                        100.0 * cu["variance_reduction"].as_f64().unwrap_or(0.0)
                    );
                }
            }
        }
    }
    let inter = r["interactions"].as_array().map_or(&[][..], |a| a);
    let skipped = r["interactions_skipped"].as_array().map_or(&[][..], |a| a);
    if !inter.is_empty() || !skipped.is_empty() {
        let _ = writeln!(s, "Interactions");
        for i in inter {
            let flag = if i["should_be_exclusive"] == json!(true) { "  SHOULD HAVE BEEN EXCLUSIVE" } else { "" };
            let _ = writeln!(
                s,
                "  {} × {}: {} shared units{flag}",
                i["experiments"][0].as_str().unwrap_or(""),
                i["experiments"][1].as_str().unwrap_or(""),
                i["units"]
            );
            for (m, list) in i["metrics"].as_object().unwrap_or(&empty) {
                for c in list.as_array().map_or(&[][..], |a| a) {
                    let _ = writeln!(
                        s,
                        "    {m} {}×{}: contrast {} ± {} p {} (adjusted {})",
                        c["a_variant"].as_str().unwrap_or(""),
                        c["b_variant"].as_str().unwrap_or(""),
                        f(&c["estimate"]),
                        f(&c["se"]),
                        pv(&c["p_value"]),
                        pv(&c["p_adjusted"])
                    );
                }
            }
            if i["reused_after_stop"].as_u64().unwrap_or(0) > 0 {
                let _ = writeln!(
                    s,
                    "    ({} more shared units came to one after the other had stopped: bucket reuse, left out)",
                    i["reused_after_stop"]
                );
            }
        }
        for i in skipped {
            let _ = writeln!(
                s,
                "  {} × {}: {} shared units, no interaction test: {}",
                i["experiments"][0].as_str().unwrap_or(""),
                i["experiments"][1].as_str().unwrap_or(""),
                i["units"],
                i["reason"].as_str().unwrap_or("")
            );
        }
    }
    let d = &r["diagnostics"];
    let _ = writeln!(
        s,
        "Diagnostics: {} exposure rows, {} units, {} metric rows without exposure",
        d["exposure_rows"], d["units"], d["metric_rows_without_exposure"]
    );
    for (k, v) in d["exposure_issues"].as_object().unwrap_or(&empty) {
        if v["count"].as_u64().unwrap_or(0) > 0 {
            let _ = writeln!(s, "  {k}: {}  e.g. {}", v["count"], v["examples"][0]);
        }
    }
    let reused = &d["reused_after_stop"];
    if reused["count"].as_u64().unwrap_or(0) > 0 {
        let _ = writeln!(
            s,
            "  reused_after_stop: {} (not a violation: units of exclusive experiments that did not run at once, bucket reuse)  e.g. {}",
            reused["count"],
            reused["examples"][0]
        );
    }
    if d["config"] == json!(false) {
        let _ = writeln!(s, "  (no configuration: exclusivity not checked, SRM against an even split)");
    }
    s
}
