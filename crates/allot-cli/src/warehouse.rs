//! `allot analyze` where the data lives: the query of `--tables` printed (`--emit-sql`), run on
//! PostgreSQL (`--warehouse`) or on the store's own exposures (`--store`), or its rows read back
//! from a CSV (`--from-stats`). The SQL is allot-sql's, the connection allot-store's, the
//! statistics `allot_stats::analysis::rows`; this module only chooses and wires.

use crate::analyze::AnalyzeArgs;
use allot_server::results;
use allot_sql::tables::Metric;
use allot_sql::{Dialect, Tables};
use allot_stats::analysis::rows::{analyze_rows, VariantStats};
use allot_stats::analysis::{Design, Report};
use allot_store::warehouse::TempTable;
use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};

/// Where `allot analyze` reads from.
#[derive(Debug)]
pub enum Source {
    /// `--exposures` and `--metrics` files.
    Files {
        /// Exposures CSV.
        exposures: PathBuf,
        /// Metrics CSV.
        metrics: PathBuf,
    },
    /// `--emit-sql DIALECT --tables`.
    EmitSql {
        /// The dialect's name.
        dialect: String,
        /// tables.yaml.
        tables: PathBuf,
    },
    /// `--warehouse URL --tables`.
    Warehouse {
        /// The database.
        url: String,
        /// tables.yaml.
        tables: PathBuf,
    },
    /// `--from-stats rows.csv`.
    FromStats {
        /// The rows.
        rows: PathBuf,
    },
    /// `--store URL` with `--tables` (metrics in the same database) or `--metrics`.
    Store {
        /// The store.
        url: String,
        /// tables.yaml without `exposures`.
        tables: Option<PathBuf>,
        /// A metrics CSV.
        metrics: Option<PathBuf>,
    },
}

impl Source {
    /// The one source the flags name, or an error saying what to give.
    pub fn of(a: &AnalyzeArgs) -> Result<Source> {
        let given: Vec<&str> = [
            (a.exposures.is_some(), "--exposures"),
            (a.emit_sql.is_some(), "--emit-sql"),
            (a.warehouse.is_some(), "--warehouse"),
            (a.from_stats.is_some(), "--from-stats"),
            (a.store.is_some(), "--store"),
        ]
        .iter()
        .filter(|g| g.0)
        .map(|g| g.1)
        .collect();
        if given.len() > 1 {
            bail!("give one source of data, not {}", given.join(" and "));
        }
        let files_only = [(a.covariates.is_some(), "--covariates"), (a.identities.is_some(), "--identities")];
        if a.exposures.is_none() {
            if let Some((_, flag)) = files_only.iter().find(|f| f.0) {
                bail!("{flag} needs --exposures and --metrics (files); tables.yaml's `cuped` gives covariates in SQL");
            }
        }
        let needs_tables = |flag: &str| -> Result<PathBuf> {
            a.tables
                .clone()
                .with_context(|| format!("{flag} needs --tables tables.yaml (docs/stats.md, \"The warehouse path\")"))
        };
        let no_tables = |flag: &str| -> Result<()> {
            if a.tables.is_some() {
                bail!("--tables is not used with {flag}");
            }
            Ok(())
        };
        let no_metrics = |flag: &str| -> Result<()> {
            if a.metrics.is_some() {
                bail!("--metrics is not used with {flag}");
            }
            Ok(())
        };
        Ok(match given.first().copied() {
            Some("--exposures") => {
                no_tables("--exposures")?;
                let Some(metrics) = a.metrics.clone() else { bail!("--exposures needs --metrics") };
                Source::Files { exposures: a.exposures.clone().unwrap_or_default(), metrics }
            }
            Some("--emit-sql") => {
                no_metrics("--emit-sql")?;
                Source::EmitSql { dialect: a.emit_sql.clone().unwrap_or_default(), tables: needs_tables("--emit-sql")? }
            }
            Some("--warehouse") => {
                no_metrics("--warehouse")?;
                Source::Warehouse { url: a.warehouse.clone().unwrap_or_default(), tables: needs_tables("--warehouse")? }
            }
            Some("--from-stats") => {
                no_tables("--from-stats")?;
                no_metrics("--from-stats")?;
                Source::FromStats { rows: a.from_stats.clone().unwrap_or_default() }
            }
            Some(_) => {
                if a.tables.is_some() == a.metrics.is_some() {
                    bail!("--store needs either --tables (metric tables in the same database) or --metrics (a metrics CSV)");
                }
                Source::Store { url: a.store.clone().unwrap_or_default(), tables: a.tables.clone(), metrics: a.metrics.clone() }
            }
            None => bail!(
                "no data to analyse: give --exposures and --metrics (files), --warehouse URL --tables tables.yaml, \
                 --store URL (with --tables or --metrics), --from-stats rows.csv, or --emit-sql DIALECT --tables tables.yaml"
            ),
        })
    }
}

/// Reads and validates tables.yaml (every error, each with its field).
fn read_tables(path: &Path, for_store: bool) -> Result<Tables> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let parsed = if for_store {
        allot_sql::tables::parse_metrics(&text, results::store_exposures())
    } else {
        allot_sql::parse(&text)
    };
    parsed.map_err(|es| {
        let list: Vec<String> = es.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{} is invalid:\n  {}", path.display(), list.join("\n  "))
    })
}

/// `--emit-sql`: the query of the mapping in the dialect.
pub fn emit_sql(dialect: &str, tables: &Path) -> Result<String> {
    let d = Dialect::from_name(dialect).with_context(|| format!("unknown dialect {dialect}"))?;
    Ok(allot_sql::compile(&read_tables(tables, false)?, d))
}

/// Decodes rows of sufficient statistics (`what` names their origin in errors).
fn decode(columns: &[&str], rows: Vec<(u64, Vec<String>)>, what: &str) -> Result<Vec<VariantStats>> {
    results::decode_rows(columns, rows.into_iter().map(Ok::<_, results::RowsError>), what).map_err(|e| match e {
        results::RowsError::None => anyhow::anyhow!("{what}: {e}"),
        e => anyhow::anyhow!(e),
    })
}

/// Runs the analysis query of `tables` on the database (the store's, or a PostgreSQL warehouse)
/// and decodes its rows: the service's results run the same function.
fn run_query(url: &str, tables: &Tables, temp: Option<&TempTable>) -> Result<Vec<VariantStats>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(results::rows_on_store(url, tables, temp)).map_err(|e| match e {
        results::RowsError::Store(e) => anyhow::anyhow!(e).context("running the analysis query"),
        e => anyhow::anyhow!("the query's rows: {e}"),
    })
}

/// The mapping of a metrics CSV loaded into a temporary table (`allot_server::results::metrics_csv`).
fn csv_metrics(path: &Path) -> Result<(TempTable, Vec<Metric>)> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot read metrics file {}", path.display()))?;
    results::metrics_csv(std::io::BufReader::new(f), &path.display().to_string()).map_err(|e| anyhow::anyhow!(e))
}

/// Reads `--from-stats` rows.
fn read_rows(path: &Path) -> Result<Vec<VariantStats>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .with_context(|| format!("cannot read rows file {}", path.display()))?;
    let header: Vec<String> = rdr
        .headers()
        .with_context(|| format!("{}: cannot read the header", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let cols: Vec<&str> = header.iter().map(String::as_str).collect();
    let rows = rdr
        .records()
        .map(|r| {
            let r = r.with_context(|| format!("{}: malformed CSV", path.display()))?;
            let line = r.position().map_or(0, csv::Position::line);
            Ok((line, r.iter().map(str::to_string).collect()))
        })
        .collect::<Result<Vec<_>>>()?;
    decode(&cols, rows, &path.display().to_string())
}

/// The report of a source other than files.
pub fn analyze(source: &Source, args: &AnalyzeArgs, design: Option<&dyn Design>) -> Result<Report> {
    let rows = match source {
        Source::Files { .. } | Source::EmitSql { .. } => bail!("not a source of rows"),
        Source::FromStats { rows } => read_rows(rows)?,
        Source::Warehouse { url, tables } => {
            if !allot_store::is_postgres(url) {
                bail!("--warehouse {url}: expected postgres://USER@HOST/DB (for other engines: --emit-sql and --from-stats)");
            }
            let tables = read_tables(tables, false)?;
            run_query(url, &tables, None)?
        }
        Source::Store { url, tables, metrics } => {
            if !allot_store::is_postgres(url) && !url.starts_with("sqlite:") {
                bail!("--store {url}: expected sqlite://PATH or postgres://USER@HOST/DB");
            }
            let (tables, temp) = match (tables, metrics) {
                (Some(t), _) => (read_tables(t, true)?, None),
                (None, Some(m)) => {
                    let (temp, metrics) = csv_metrics(m)?;
                    (
                        Tables { exposures: results::store_exposures(), experiments: Default::default(), metrics },
                        Some(temp),
                    )
                }
                (None, None) => bail!("--store needs --tables or --metrics"),
            };
            run_query(url, &tables, temp.as_ref())?
        }
    };
    analyze_rows(&rows, design, args.alpha).map_err(|e| anyhow::anyhow!("rows of sufficient statistics: {e}"))
}
