//! An experiment's results from the service: `GET /api/v1/experiments/{id}/results` analyses the
//! store's own exposures with the metric tables `allot serve --analysis-tables FILE` maps (in the
//! same database as the store), and `POST` of the same path with a metrics CSV
//! (`unit,metric,value`) analyses them with that file instead. Both run allot-sql's analysis
//! query on the store's database (read-only; the CSV goes to a temporary table of that one
//! connection), so only one row per variant comes back, and allot-stats' analysis gives exactly
//! what `allot analyze --store URL` gives on the same data.
//!
//! At most [`MAX_ANALYSES`] run at once per node and each is bounded by [`ANALYSIS_TIMEOUT`]: the
//! analysis reads the exposure table, so it must not starve the store of connections.

use crate::analysis::ConfigDesign;
use crate::error::ApiError;
use crate::App;
use allot_sql::tables::{ExposureTable, Filter, Measure, Metric, TableName, TimeType, Window};
use allot_sql::{Dialect, Tables};
use allot_stats::analysis::rows::VariantStats;
use allot_store::warehouse::TempTable;
use axum::http::StatusCode;
use std::time::Duration;

/// Analyses running at once on a node.
pub const MAX_ANALYSES: usize = 2;
/// The longest one analysis may take (loading an uploaded CSV included).
pub const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest metrics CSV a `POST` may send.
pub const METRICS_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Where results come from: the store's database and, if configured, its metric tables.
#[derive(Debug, Clone)]
pub struct ResultsSource {
    /// The store's URL (`sqlite://…` or `postgres://…`, as `allot serve --database-url`).
    pub url: String,
    /// The metrics of `--analysis-tables` (exposures: the store's table), if given.
    pub tables: Option<Tables>,
}

impl ResultsSource {
    /// A source over the store at `url` with the metric mapping `tables_yaml` (a tables.yaml
    /// without `exposures`, as `allot analyze --store` reads), if any. Errors name the field.
    pub fn new(url: &str, tables_yaml: Option<&str>) -> Result<ResultsSource, String> {
        dialect(url).ok_or_else(|| format!("{url}: results need a sqlite:// or postgres:// store"))?;
        let tables = match tables_yaml {
            None => None,
            Some(text) => Some(
                allot_sql::tables::parse_metrics(text, store_exposures())
                    .map_err(|es| es.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?,
            ),
        };
        Ok(ResultsSource { url: url.to_string(), tables })
    }
}

/// The dialect of a store URL.
fn dialect(url: &str) -> Option<Dialect> {
    if allot_store::is_postgres(url) {
        Some(Dialect::Postgres)
    } else if url.starts_with("sqlite:") {
        Some(Dialect::Sqlite)
    } else {
        None
    }
}

/// The store's exposure table (allot-store's migrations): times as RFC 3339 text.
pub fn store_exposures() -> ExposureTable {
    let c = allot_store::warehouse::EXPOSURE_COLUMNS;
    ExposureTable {
        table: TableName(vec![allot_store::warehouse::EXPOSURE_TABLE.to_string()]),
        unit: c[0].into(),
        experiment: c[1].into(),
        variant: c[2].into(),
        time: c[3].into(),
        time_type: TimeType::Rfc3339Text,
    }
}

/// A metrics CSV (`unit,metric,value`, a header first; other columns ignored) as a temporary
/// table and its mapping: one sum metric per metric name, every row counted (the file path's
/// rule). `what` names the input in errors (`body`, a path), with the line and the column.
pub fn metrics_csv(rdr: impl std::io::Read, what: &str) -> Result<(TempTable, Vec<Metric>), String> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(rdr);
    let header = rdr.byte_headers().map_err(|e| format!("{what}: cannot read the header: {e}"))?.clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim_ascii() == name.as_bytes())
            .ok_or_else(|| format!("{what}: the header has no `{name}` column (expected unit,metric,value)"))
    };
    let (iu, im, iv) = (col("unit")?, col("metric")?, col("value")?);
    let mut names = indexmap::IndexSet::<String>::new();
    let mut rows = vec![];
    let mut rec = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(format!("{what}: malformed CSV: {e}")),
        }
        let line = rec.position().map_or(0, csv::Position::line);
        let field = |i: usize, name: &str| -> Result<String, String> {
            let v = rec.get(i).map(<[u8]>::trim_ascii).unwrap_or_default();
            let v = std::str::from_utf8(v).map_err(|_| format!("{what}: line {line}: `{name}` is not UTF-8"))?;
            if v.is_empty() {
                return Err(format!("{what}: line {line}: `{name}` is empty"));
            }
            Ok(v.to_string())
        };
        let (unit, metric, value) = (field(iu, "unit")?, field(im, "metric")?, field(iv, "value")?);
        let x: f64 = value
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite())
            .ok_or_else(|| format!("{what}: line {line}: `value` is not a finite number: {value:?}"))?;
        if !names.contains(&metric) {
            if !allot_sql::tables::is_metric_name(&metric) {
                return Err(format!(
                    "{what}: line {line}: metric {metric:?} is not a name SQL columns can carry ([A-Za-z_][A-Za-z0-9_]*, no `__`)"
                ));
            }
            names.insert(metric.clone());
        }
        rows.push(vec![unit, metric, format!("{x:?}")]);
    }
    if rows.is_empty() {
        return Err(format!("{what}: no metric rows after the header"));
    }
    let table = "allot_metrics";
    let metrics = names
        .iter()
        .map(|name| Metric {
            name: name.clone(),
            table: TableName(vec![table.into()]),
            unit: "unit".into(),
            time: "time".into(),
            time_type: TimeType::EpochSeconds,
            measure: Measure::Sum("value".into()),
            filter: Some(Filter { column: "metric".into(), equals: name.clone() }),
            cap: None,
            window: Window::All,
            cuped_days: None,
        })
        .collect();
    let temp = TempTable {
        name: table.into(),
        columns: vec!["unit".into(), "metric".into(), "value".into()],
        real: vec!["value".into()],
        rows,
    };
    Ok((temp, metrics))
}

/// Why rows of sufficient statistics could not be had.
#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    /// The database failed or refused the query.
    #[error(transparent)]
    Store(#[from] allot_store::StoreError),
    /// No row: no exposures of the experiments mapped.
    #[error("no rows of sufficient statistics (no exposures in the experiments mapped?)")]
    None,
    /// A row that does not decode (its line and column).
    #[error("{0}")]
    Bad(String),
    /// Over [`ANALYSIS_TIMEOUT`].
    #[error("the analysis took longer than {} s", ANALYSIS_TIMEOUT.as_secs())]
    TimedOut,
}

/// Decodes rows of sufficient statistics (`what` names their origin in errors).
pub fn decode_rows<E: Into<RowsError>>(
    columns: &[&str],
    rows: impl Iterator<Item = Result<(u64, Vec<String>), E>>,
    what: &str,
) -> Result<Vec<VariantStats>, RowsError> {
    let layout = allot_sql::rows::Layout::of(columns).map_err(|e| RowsError::Bad(format!("{what}: {e}")))?;
    let mut out = vec![];
    for r in rows {
        let (line, row) = r.map_err(Into::into)?;
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        out.push(layout.decode(&cells, line).map_err(|e| RowsError::Bad(format!("{what}: {e}")))?);
    }
    if out.is_empty() {
        return Err(RowsError::None);
    }
    Ok(out)
}

/// Runs the analysis query of `tables` on the store database `url` names (read-only), after
/// loading `temp` on the same connection.
pub async fn rows_on_store(
    url: &str,
    tables: &Tables,
    temp: Option<&TempTable>,
) -> Result<Vec<VariantStats>, RowsError> {
    let d = dialect(url).ok_or_else(|| RowsError::Bad(format!("{url}: not a sqlite:// or postgres:// URL")))?;
    let sql = allot_sql::compile(tables, d);
    let text = allot_store::warehouse::query(url, &sql, temp, d.settings()).await?;
    // No row: SQLite then names no columns either.
    if text.rows.is_empty() {
        return Err(RowsError::None);
    }
    let cols: Vec<&str> = text.columns.iter().map(String::as_str).collect();
    decode_rows(&cols, text.rows.into_iter().zip(1u64..).map(|(r, i)| Ok::<_, RowsError>((i, r))), "the query's rows")
}

fn failed(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Analysis { status, code, message: message.into() }
}

impl App {
    /// Where `/api/v1/experiments/{id}/results` reads (`allot serve` sets it from
    /// `--database-url` and `--analysis-tables`); without it, results answer 409 `NO_METRICS`.
    pub fn set_results_source(&self, source: ResultsSource) {
        self.results_source.store(Some(std::sync::Arc::new(source)));
    }

    /// The analysis of experiment `id` over the store's exposures, with the configured metric
    /// tables, or with `upload` (a metrics CSV) when given.
    pub(crate) async fn results(
        &self,
        id: &str,
        upload: Option<(TempTable, Vec<Metric>)>,
        alpha: f64,
    ) -> Result<allot_stats::analysis::Report, ApiError> {
        // The live configuration only: the console's view would also compute the exact audit
        // and the bars of the version, which an analysis does not read.
        let live = self.live();
        let cfg = allot_core::config::validate(&live.config)
            .map_err(|_| ApiError::Internal("the live configuration does not validate".into()))?;
        if !cfg.experiments.contains_key(id) {
            return Err(ApiError::NotFound(format!("experiment {id} does not exist at version {}", live.version)));
        }
        let Some(source) = self.results_source.load_full() else {
            return Err(failed(
                StatusCode::CONFLICT,
                "NO_METRICS",
                "this node has no results source: `allot serve` sets it for sqlite:// and postgres:// stores",
            ));
        };
        let (mut tables, temp) = match (upload, &source.tables) {
            (Some((temp, metrics)), _) => {
                (Tables { exposures: store_exposures(), experiments: Default::default(), metrics }, Some(temp))
            }
            (None, Some(t)) => (t.clone(), None),
            (None, None) => {
                return Err(failed(
                    StatusCode::CONFLICT,
                    "NO_METRICS",
                    "no metrics: start `allot serve` with --analysis-tables FILE (metric tables in the store's database), or POST a metrics CSV (unit,metric,value) to this path",
                ))
            }
        };
        let end = tables.experiments.get(id).copied().flatten();
        tables.experiments = [(id.to_string(), end)].into_iter().collect();
        let _permit = self.analyses.try_acquire().map_err(|_| {
            failed(
                StatusCode::SERVICE_UNAVAILABLE,
                "ANALYSIS_BUSY",
                format!("{MAX_ANALYSES} analyses are running on this node; retry when one has finished"),
            )
        })?;
        // On a thread of its own with a runtime of its own: sqlx's connection futures are not
        // `Send` through allot-store's generic query, and an analysis must not hold the serving
        // runtime's workers anyway. The timeout drops the query (and its connection) inside.
        let url = source.url.clone();
        let run = tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
                RowsError::Store(allot_store::StoreError::Database(format!("cannot start the analysis runtime: {e}")))
            })?;
            rt.block_on(async {
                tokio::time::timeout(ANALYSIS_TIMEOUT, rows_on_store(&url, &tables, temp.as_ref())).await
            })
            .map_err(|_| RowsError::TimedOut)?
        });
        let rows = match run.await.map_err(|e| ApiError::Internal(format!("the analysis thread failed: {e}")))? {
            Err(RowsError::TimedOut) => {
                return Err(failed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ANALYSIS_TIMEOUT",
                    format!("the analysis took longer than {} s", ANALYSIS_TIMEOUT.as_secs()),
                ))
            }
            Err(RowsError::None) => {
                return Err(failed(
                    StatusCode::CONFLICT,
                    "NO_EXPOSURES",
                    format!("no exposures of {id} are stored yet"),
                ))
            }
            Err(RowsError::Store(allot_store::StoreError::Unavailable(e))) => {
                tracing::warn!(error = %e, "results: the store cannot be reached");
                return Err(ApiError::StoreUnavailable);
            }
            Err(e) => {
                return Err(failed(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ANALYSIS_FAILED",
                    format!("the analysis query failed (do the metric tables match --analysis-tables?): {e}"),
                ))
            }
            Ok(rows) => rows,
        };
        let design = ConfigDesign(&cfg);
        allot_stats::analysis::rows::analyze_rows(&rows, Some(&design), alpha).map_err(|e| {
            failed(StatusCode::UNPROCESSABLE_ENTITY, "ANALYSIS_FAILED", format!("rows of sufficient statistics: {e}"))
        })
    }
}

/// `?alpha=` of the results.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResultsQuery {
    /// Significance level of the tests and intervals (default 0.05; 0 < alpha < 1).
    #[param(value_type = Option<f64>)]
    alpha: Option<String>,
}

fn alpha(
    q: Result<axum::extract::Query<ResultsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<f64, ApiError> {
    let q = q.map_err(|e| ApiError::field("query", e.body_text()))?.0;
    match q.alpha {
        None => Ok(0.05),
        Some(a) => {
            a.parse::<f64>().ok().filter(|x| *x > 0.0 && *x < 1.0).ok_or_else(|| {
                ApiError::field("alpha", format!("{a:?}: expected a number between 0 and 1 (exclusive)"))
            })
        }
    }
}

/// The routes (merged into [`crate::router`]).
pub(crate) fn routes() -> axum::Router<std::sync::Arc<App>> {
    axum::Router::new().route(
        "/api/v1/experiments/{id}/results",
        axum::routing::get(get_results)
            .post(post_results)
            .layer(axum::extract::DefaultBodyLimit::max(METRICS_BODY_LIMIT)),
    )
}

/// An experiment's results with the metric tables of `allot serve --analysis-tables` (in the
/// store's database), over the store's exposures: allot-stats' `Report` (as `allot analyze
/// --format json`) restricted to this experiment — per variant and metric the difference, its
/// interval, p-value and lift (CUPED where configured), the SRM test and the diagnostics.
#[utoipa::path(get, path = "/api/v1/experiments/{id}/results", tag = "reports",
    params(("id" = String, Path), ResultsQuery),
    responses((status = 200, description = "allot-stats' `Report` for this experiment (as `allot analyze --format json`)"),
        (status = 404, description = "no such experiment", body = crate::error::ErrorBody),
        (status = 409, description = "NO_METRICS: no --analysis-tables (POST a metrics CSV instead); NO_EXPOSURES: none stored yet", body = crate::error::ErrorBody),
        (status = 422, description = "INVALID: a bad `alpha`; ANALYSIS_FAILED: the query failed on the metric tables", body = crate::error::ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE; ANALYSIS_BUSY: 2 analyses already run on this node; ANALYSIS_TIMEOUT: over 120 s", body = crate::error::ErrorBody)))]
pub(crate) async fn get_results(
    axum::extract::State(app): axum::extract::State<std::sync::Arc<App>>,
    crate::body::ApiPath(id): crate::body::ApiPath<String>,
    q: Result<axum::extract::Query<ResultsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    let alpha = alpha(q)?;
    let report = app.results(&id, None, alpha).await?;
    Ok(axum::response::IntoResponse::into_response(axum::Json(report)))
}

/// The same analysis with the metrics of the body instead: a CSV `unit,metric,value` (a header
/// first; one sum metric per metric name, every row of a unit counted, as `allot analyze
/// --metrics`), at most 32 MiB. Nothing is stored: the rows go to a temporary table of the
/// analysis' own read-only connection.
#[utoipa::path(post, path = "/api/v1/experiments/{id}/results", tag = "reports",
    params(("id" = String, Path), ResultsQuery),
    request_body(content = String, content_type = "text/csv", description = "unit,metric,value"),
    responses((status = 200, description = "allot-stats' `Report` for this experiment"),
        (status = 404, description = "no such experiment", body = crate::error::ErrorBody),
        (status = 409, description = "NO_EXPOSURES: none stored yet", body = crate::error::ErrorBody),
        (status = 413, description = "TOO_LARGE: over 32 MiB", body = crate::error::ErrorBody),
        (status = 422, description = "INVALID: the CSV (its line and column) or `alpha`; ANALYSIS_FAILED", body = crate::error::ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE, ANALYSIS_BUSY or ANALYSIS_TIMEOUT", body = crate::error::ErrorBody)))]
pub(crate) async fn post_results(
    axum::extract::State(app): axum::extract::State<std::sync::Arc<App>>,
    crate::body::ApiPath(id): crate::body::ApiPath<String>,
    q: Result<axum::extract::Query<ResultsQuery>, axum::extract::rejection::QueryRejection>,
    req: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    let alpha = alpha(q)?;
    let bytes = crate::body::bytes(req, &app).await?;
    let upload = metrics_csv(&bytes[..], "body").map_err(|m| ApiError::field("body", m))?;
    let report = app.results(&id, Some(upload), alpha).await?;
    Ok(axum::response::IntoResponse::into_response(axum::Json(report)))
}
