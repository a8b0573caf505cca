//! `tables.yaml`: where the exposures and the metrics are, which columns mean what, and how each
//! metric is aggregated per unit. Parsed into a raw tree, then validated into [`Tables`] with
//! every error at once, each with the path of its field.

use indexmap::IndexMap;
use serde::Deserialize;
use std::fmt;

/// How a time column is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeType {
    /// A timestamp type (`TIMESTAMP`, `TIMESTAMPTZ`, …).
    #[default]
    Timestamp,
    /// A number of seconds since the epoch.
    EpochSeconds,
    /// RFC 3339 text (`2026-01-01T00:00:00Z`), as allot's store keeps it.
    Rfc3339Text,
}

/// How a metric's events are aggregated per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Σ value (an exposed unit without events counts 0).
    Sum,
    /// Number of events.
    Count,
    /// Σ numerator / Σ denominator over the units (delta method).
    Ratio,
}

/// Where a window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Until {
    /// At the experiment's end: `experiments.<id>.end`, else its last exposure.
    End,
}

/// The raw file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTables {
    exposures: Option<RawExposures>,
    #[serde(default)]
    experiments: IndexMap<String, RawExperiment>,
    metrics: IndexMap<String, RawMetric>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExposures {
    table: String,
    #[serde(default = "default_unit")]
    unit: String,
    #[serde(default = "default_experiment")]
    experiment: String,
    #[serde(default = "default_variant")]
    variant: String,
    #[serde(default = "default_time")]
    time: String,
    #[serde(default)]
    time_type: TimeType,
}

fn default_unit() -> String {
    "unit".into()
}
fn default_experiment() -> String {
    "experiment".into()
}
fn default_variant() -> String {
    "variant".into()
}
fn default_time() -> String {
    "time".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    end: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    table: String,
    #[serde(default = "default_unit")]
    unit: String,
    #[serde(default = "default_time")]
    time: String,
    #[serde(default)]
    time_type: TimeType,
    aggregate: Aggregate,
    value: Option<String>,
    numerator: Option<String>,
    denominator: Option<String>,
    #[serde(rename = "where")]
    filter: Option<RawFilter>,
    cap: Option<f64>,
    window: Option<RawWindow>,
    cuped: Option<RawCuped>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    column: String,
    equals: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    #[serde(default)]
    delay: Option<String>,
    duration: Option<String>,
    until: Option<Until>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCuped {
    days: u32,
}

/// A table name, `name` or `schema.name` or `project.dataset.name`: validated parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName(pub Vec<String>);

/// The exposure table.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposureTable {
    /// The table.
    pub table: TableName,
    /// Unit id column.
    pub unit: String,
    /// Experiment id column.
    pub experiment: String,
    /// Variant column.
    pub variant: String,
    /// Exposure time column.
    pub time: String,
    /// How the time is stored.
    pub time_type: TimeType,
}

/// Which events of a unit count, relative to its first exposure `t₀`, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// Every event of the unit, whenever it happened (the file path's rule).
    All,
    /// `[t₀ + delay, t₀ + delay + duration)`.
    For {
        /// Seconds after the first exposure.
        delay: f64,
        /// Seconds from there.
        duration: f64,
    },
    /// `[t₀ + delay, ∞)`.
    After {
        /// Seconds after the first exposure.
        delay: f64,
    },
    /// `[t₀ + delay, end]`, `end` the experiment's.
    ToEnd {
        /// Seconds after the first exposure.
        delay: f64,
    },
}

/// An equality filter on the metric table (`where: {column, equals}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The column.
    pub column: String,
    /// The text it must equal.
    pub equals: String,
}

/// What is aggregated per unit.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// Σ of a column.
    Sum(String),
    /// Number of events.
    Count,
    /// Σ numerator and Σ denominator.
    Ratio {
        /// Numerator column.
        numerator: String,
        /// Denominator column.
        denominator: String,
    },
}

/// One metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Its name (an identifier: it names the output columns).
    pub name: String,
    /// Its event table.
    pub table: TableName,
    /// Unit id column.
    pub unit: String,
    /// Event time column.
    pub time: String,
    /// How the time is stored.
    pub time_type: TimeType,
    /// What is aggregated.
    pub measure: Measure,
    /// Only events with `column = equals`.
    pub filter: Option<Filter>,
    /// The per-unit value is capped at this (winsorised from above).
    pub cap: Option<f64>,
    /// Which events count.
    pub window: Window,
    /// The CUPED pre-period: this many days before each unit's first exposure.
    pub cuped_days: Option<u32>,
}

/// The validated mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Tables {
    /// The exposures.
    pub exposures: ExposureTable,
    /// Experiments to analyse (all when empty) with their end (seconds since the epoch), if given.
    pub experiments: IndexMap<String, Option<f64>>,
    /// The metrics, in file order.
    pub metrics: Vec<Metric>,
}

/// An error of `tables.yaml`, with the path of its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablesError {
    /// Dotted path (`metrics.revenue.value`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TablesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Whether `s` is a plain identifier: `[A-Za-z_][A-Za-z0-9_$]*`.
fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '$')
}

/// The longest duration accepted: 100 years (so that sums of durations stay finite numbers in
/// the SQL text).
pub const MAX_DURATION_SECONDS: f64 = 100.0 * 365.25 * 86400.0;

/// Seconds of a duration `<number><unit>`, unit one of `s m h d w` (`0` alone is 0), at most
/// [`MAX_DURATION_SECONDS`].
pub fn duration(s: &str) -> Option<f64> {
    let s = s.trim();
    if s == "0" {
        return Some(0.0);
    }
    let unit = s.chars().last()?;
    let per = match unit {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3600.0,
        'd' => 86400.0,
        'w' => 604800.0,
        _ => return None,
    };
    let n: f64 = s[..s.len() - 1].trim().parse().ok()?;
    let secs = n * per;
    (n.is_finite() && n >= 0.0 && secs <= MAX_DURATION_SECONDS).then_some(secs)
}

struct Errors(Vec<TablesError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(TablesError { path: path.into(), message: message.into() });
    }

    fn ident(&mut self, path: String, s: &str) -> String {
        if !is_ident(s) {
            self.add(path, format!("{s:?} is not a plain identifier ([A-Za-z_][A-Za-z0-9_$]*)"));
        }
        s.to_string()
    }

    fn table(&mut self, path: String, s: &str) -> TableName {
        let parts: Vec<String> = s.split('.').map(str::to_string).collect();
        if parts.len() > 3 || parts.iter().any(|p| !is_ident(p)) {
            self.add(path, format!("{s:?} is not a table name (up to three dot-separated plain identifiers)"));
        }
        TableName(parts)
    }
}

fn raw(text: &str) -> Result<RawTables, Vec<TablesError>> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "tables.yaml".to_string() } else { path };
        vec![TablesError { path, message: e.into_inner().to_string() }]
    })
}

/// Parses and validates `tables.yaml`: every error at once.
pub fn parse(text: &str) -> Result<Tables, Vec<TablesError>> {
    validate(raw(text)?, None)
}

/// Parses and validates a `tables.yaml` of metrics only, for exposures that are known already
/// (allot's store): an `exposures` section is an error.
pub fn parse_metrics(text: &str, exposures: ExposureTable) -> Result<Tables, Vec<TablesError>> {
    validate(raw(text)?, Some(exposures))
}

/// Whether `name` can name a metric's output columns: an identifier without `$` or `__`.
pub fn is_metric_name(name: &str) -> bool {
    is_ident(name) && !name.contains('$') && !name.contains("__")
}

fn validate(raw: RawTables, known: Option<ExposureTable>) -> Result<Tables, Vec<TablesError>> {
    let mut errs = Errors(vec![]);
    let exposures = match (&raw.exposures, known) {
        (Some(x), None) => ExposureTable {
            table: errs.table("exposures.table".into(), &x.table),
            unit: errs.ident("exposures.unit".into(), &x.unit),
            experiment: errs.ident("exposures.experiment".into(), &x.experiment),
            variant: errs.ident("exposures.variant".into(), &x.variant),
            time: errs.ident("exposures.time".into(), &x.time),
            time_type: x.time_type,
        },
        (None, Some(k)) => k,
        (Some(_), Some(k)) => {
            errs.add("exposures", "not used here: the exposures are the store's own table");
            k
        }
        (None, None) => {
            errs.add("exposures", "missing: the table of exposures and its columns");
            ExposureTable {
                table: TableName(vec![]),
                unit: String::new(),
                experiment: String::new(),
                variant: String::new(),
                time: String::new(),
                time_type: TimeType::Timestamp,
            }
        }
    };
    let mut experiments = IndexMap::new();
    for (id, e) in &raw.experiments {
        let end = e.end.as_deref().and_then(|t| match rfc3339(t) {
            Some(s) => Some(s),
            None => {
                errs.add(format!("experiments.{id}.end"), format!("{t:?} is not an RFC 3339 time"));
                None
            }
        });
        experiments.insert(id.clone(), end);
    }
    if raw.metrics.is_empty() {
        errs.add("metrics", "no metrics: name at least one");
    }
    let mut metrics = vec![];
    for (name, m) in &raw.metrics {
        let p = |f: &str| format!("metrics.{name}.{f}");
        if !is_metric_name(name) {
            errs.add(
                format!("metrics.{name}"),
                "a metric name must be an identifier [A-Za-z_][A-Za-z0-9_]* without `__` (it names output columns)",
            );
        }
        let measure = match m.aggregate {
            Aggregate::Sum => match &m.value {
                Some(v) => Measure::Sum(errs.ident(p("value"), v)),
                None => {
                    errs.add(p("value"), "required with `aggregate: sum` (the column summed)");
                    Measure::Count
                }
            },
            Aggregate::Count => {
                if m.value.is_some() {
                    errs.add(p("value"), "not used with `aggregate: count` (it counts events)");
                }
                Measure::Count
            }
            Aggregate::Ratio => {
                let mut col = |f: &str, v: &Option<String>| match v {
                    Some(v) => errs.ident(p(f), v),
                    None => {
                        errs.add(p(f), "required with `aggregate: ratio`");
                        String::new()
                    }
                };
                Measure::Ratio {
                    numerator: col("numerator", &m.numerator),
                    denominator: col("denominator", &m.denominator),
                }
            }
        };
        if m.aggregate != Aggregate::Ratio && (m.numerator.is_some() || m.denominator.is_some()) {
            errs.add(p("aggregate"), "`numerator` and `denominator` need `aggregate: ratio`");
        }
        if m.aggregate == Aggregate::Ratio {
            if m.value.is_some() {
                errs.add(p("value"), "not used with `aggregate: ratio` (give numerator and denominator)");
            }
            if m.cap.is_some() {
                errs.add(p("cap"), "a ratio metric cannot be capped (cap its numerator as a sum metric instead)");
            }
            if m.cuped.is_some() {
                errs.add(p("cuped"), "CUPED is not available for ratio metrics");
            }
        }
        if let Some(c) = m.cap {
            if !c.is_finite() {
                errs.add(p("cap"), format!("{c} is not a finite number"));
            }
        }
        let mut dur = |f: &str, v: &Option<String>| -> Option<f64> {
            let v = v.as_ref()?;
            let d = duration(v);
            if d.is_none() {
                errs.add(
                    p(f),
                    format!("{v:?} is not a duration (a number and s, m, h, d or w: `7d`; at most 100 years)"),
                );
            }
            d
        };
        let window = match &m.window {
            None => Window::All,
            Some(w) => {
                let delay = dur("window.delay", &w.delay).unwrap_or(0.0);
                let duration = dur("window.duration", &w.duration);
                match (duration, w.until) {
                    (Some(_), Some(_)) => {
                        errs.add(p("window"), "give `duration` or `until: end`, not both");
                        Window::All
                    }
                    (Some(duration), None) => Window::For { delay, duration },
                    (None, Some(Until::End)) => Window::ToEnd { delay },
                    (None, None) => Window::After { delay },
                }
            }
        };
        if let Some(c) = &m.cuped {
            if c.days == 0 {
                errs.add(p("cuped.days"), "must be at least 1");
            }
            if window == Window::All {
                errs.add(
                    p("window"),
                    "CUPED needs a window starting at the first exposure (e.g. `window: {delay: 0s}`): \
                     without one the pre-period events would count in the metric too",
                );
            }
        }
        let filter = m
            .filter
            .as_ref()
            .map(|f| Filter { column: errs.ident(p("where.column"), &f.column), equals: f.equals.clone() });
        metrics.push(Metric {
            name: name.clone(),
            table: errs.table(p("table"), &m.table),
            unit: errs.ident(p("unit"), &m.unit),
            time: errs.ident(p("time"), &m.time),
            time_type: m.time_type,
            measure,
            filter,
            cap: m.cap,
            window,
            cuped_days: m.cuped.as_ref().map(|c| c.days),
        });
    }
    if errs.0.is_empty() {
        Ok(Tables { exposures, experiments, metrics })
    } else {
        Err(errs.0)
    }
}

/// Seconds since the epoch of an RFC 3339 time.
fn rfc3339(s: &str) -> Option<f64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
}
