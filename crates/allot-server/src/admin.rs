//! The admin API under `/api/v1`: the configuration as a whole (YAML export and import),
//! entities one by one (unit types, surfaces, segments, holdouts, groups, experiments) with
//! their lifecycle, impact previews, the audit log, versions, keys and exposures read back.
//!
//! Every write is a whole-configuration change planned by the core's change control
//! ([`App::change`]): an entity write edits the current configuration tree and submits it. Reads
//! answer with `ETag: "<version>"`; writes need `If-Match` (`"<version>"` or `*`) and answer 412
//! when another change landed first.

use crate::auth::Caller;
use crate::body::{self, ApiJson, ApiPath, CONFIG_BODY_LIMIT};
use crate::error::ApiError;
use crate::headers::etag;
use crate::{App, ChangeRequest, Changed, IfMatch};
use allot_store::Role;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::header::{CONTENT_TYPE, ETAG};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<App>> {
    let big = || DefaultBodyLimit::max(CONFIG_BODY_LIMIT);
    Router::new()
        .route("/api/v1/config", get(get_config).put(put_config).layer(big()))
        .route("/api/v1/changes/preview", post(preview).layer(big()))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/audit/{version}", get(audit_entry))
        .route("/api/v1/versions/{version}", get(version))
        .route("/api/v1/keys", get(list_keys).post(create_key))
        .route("/api/v1/keys/{id}", axum::routing::delete(revoke_key))
        .route("/api/v1/{collection}", get(list_entities))
        .route("/api/v1/{collection}/{id}", get(get_entity).put(put_entity).delete(delete_entity).layer(big()))
        .route("/api/v1/experiments/{id}/{action}", post(lifecycle))
}

fn if_match(headers: &HeaderMap) -> Result<IfMatch, ApiError> {
    crate::headers::if_match(headers)?.ok_or(ApiError::IfMatchRequired)
}

/// `?force=true&reason=...` of a change.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeQuery {
    /// Apply despite refusals; needs `reason`, recorded in the audit log.
    #[serde(default)]
    force: bool,
    /// Why (required with `force`).
    reason: Option<String>,
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t).map_err(|e| ApiError::field("query", e.body_text()))
}

/// The answer to a change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ChangeResponse {
    /// The current version after the change.
    version: u64,
    /// Whether a new version was committed (false: the configuration was already so).
    committed: bool,
    /// The plan: changes, impact on running experiments, warnings, refusals overridden.
    #[schema(value_type = Object)]
    plan: Value,
}

fn changed(c: Changed) -> Result<Response, ApiError> {
    let plan = serde_json::to_value(&c.plan).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        StatusCode::OK,
        [(ETAG, etag(c.version))],
        Json(ChangeResponse { version: c.version, committed: c.committed, plan }),
    )
        .into_response())
}

fn actor(caller: &Caller) -> String {
    caller.0.name.clone()
}

async fn config_text(req: Request, state: &Arc<App>) -> Result<Value, ApiError> {
    let bytes = body::bytes(req, state).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::Malformed {
        path: "body".into(),
        message: "the configuration is not UTF-8 text".into(),
    })?;
    let raw = allot_core::config::parse_yaml(text)
        .map_err(|e| ApiError::Malformed { path: "body".into(), message: e.message })?;
    if !raw.is_object() {
        return Err(ApiError::field("body", "the configuration must be a mapping"));
    }
    Ok(raw)
}

/// Export: the applied configuration as YAML (or JSON with `Accept: application/json`).
#[utoipa::path(get, path = "/api/v1/config", tag = "config",
    responses((status = 200, description = "the configuration (YAML; JSON if asked), ETag = version", content_type = "application/yaml")))]
pub(crate) async fn get_config(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let live = app.live();
    let wants_json =
        headers.get("accept").and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/json"));
    if wants_json {
        return Ok(([(ETAG, etag(live.version))], Json(json!({"version": live.version, "config": live.config})))
            .into_response());
    }
    let yaml = crate::yaml::to_yaml(&live.config);
    Ok(([(ETAG, etag(live.version)), (CONTENT_TYPE, HeaderValue::from_static("application/yaml"))], yaml)
        .into_response())
}

/// Import: replaces the whole configuration (YAML or JSON body) through change control.
#[utoipa::path(put, path = "/api/v1/config", tag = "config", params(ChangeQuery, ("If-Match" = String, Header, description = "\"<version>\" or *")),
    request_body(content = String, content_type = "application/yaml", description = "the whole configuration"),
    responses((status = 200, body = ChangeResponse), (status = 409, description = "refused by change control; the plan says why", body = crate::error::ErrorBody),
        (status = 412, description = "another change landed first", body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
        (status = 428, body = crate::error::ErrorBody), (status = 503, description = "STORE_UNAVAILABLE: the database cannot be reached; PLAN_BUSY or PLAN_TIMEOUT: no planner was free, or the plan ran past the plan budget (`budget_ms`); nothing was written", body = crate::error::ErrorBody)))]
pub(crate) async fn put_config(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<ChangeQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let m = if_match(req.headers())?;
    let raw = config_text(req, &app).await?;
    let c = app
        .change(ChangeRequest {
            raw,
            if_match: m,
            force: q.force,
            reason: q.reason,
            actor: actor(&caller),
            action: "config.put".into(),
        })
        .await?;
    changed(c)
}

/// The exact report applying this configuration would give, without applying it.
#[utoipa::path(post, path = "/api/v1/changes/preview", tag = "config", params(ChangeQuery),
    request_body(content = String, content_type = "application/yaml", description = "the whole configuration"),
    responses((status = 200, description = "the plan: version, changes, impact, refusals, warnings"), (status = 422, body = crate::error::ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the database cannot be reached; PLAN_BUSY or PLAN_TIMEOUT: no planner was free, or the plan ran past the plan budget (`budget_ms`); nothing was written", body = crate::error::ErrorBody)))]
pub(crate) async fn preview(
    State(app): State<Arc<App>>,
    q: Result<Query<ChangeQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let raw = config_text(req, &app).await?;
    let plan = app.preview(&raw, q.force, q.reason).await?;
    Ok(Json(plan).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    /// Only entries (or exposures) before this version (after this id, for exposures).
    before: Option<u64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

/// The audit log, newest first: who, when, what, why, forced, and the versions before and after.
#[utoipa::path(get, path = "/api/v1/audit", tag = "config", params(Page), responses((status = 200, description = "{\"entries\": [...]}")))]
pub(crate) async fn audit(
    State(app): State<Arc<App>>,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let before = q.before.map(|b| body::integer(b, "before")).transpose()?;
    let entries = app.store().audit(before, q.limit.unwrap_or(100).min(1000)).await?;
    Ok(Json(json!({"entries": entries})).into_response())
}

/// One audit entry with the configuration before and after it: who, when, what, why, and the
/// whole configuration on both sides of the change.
#[utoipa::path(get, path = "/api/v1/audit/{version}", tag = "config", params(("version" = u64, Path)),
    responses((status = 200, description = "{\"entry\": {...}, \"before\": <config or null>, \"after\": <config>}"),
        (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn audit_entry(
    State(app): State<Arc<App>>,
    v: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path(v) = v.map_err(|e| ApiError::field("version", e.body_text()))?;
    let v = body::integer(v, "version")?;
    // `before` past the stores' range means no bound.
    let entries = app.store().audit(v.checked_add(1).filter(|b| *b <= body::MAX_INTEGER), 1).await?;
    let Some(entry) = entries.into_iter().find(|e| e.after_version == v) else {
        return Err(ApiError::NotFound(format!("no audit entry recorded version {v}")));
    };
    let config_at = |state: Option<allot_core::state::State>| state.and_then(|s| s.config);
    let before =
        if entry.before_version == 0 { None } else { config_at(app.store().load_version(entry.before_version).await?) };
    let after = config_at(app.store().load_version(v).await?);
    Ok(Json(json!({"entry": entry, "before": before, "after": after})).into_response())
}

/// The configuration recorded at a version (immutable): what an audit entry's before and after were.
#[utoipa::path(get, path = "/api/v1/versions/{version}", tag = "config", params(("version" = u64, Path)),
    responses((status = 200, description = "{\"version\", \"config\"}"), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn version(
    State(app): State<Arc<App>>,
    v: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path(v) = v.map_err(|e| ApiError::field("version", e.body_text()))?;
    let v = body::integer(v, "version")?;
    let Some(state) = app.store().load_version(v).await? else {
        return Err(ApiError::NotFound(format!("version {v} does not exist")));
    };
    Ok(([(ETAG, etag(v))], Json(json!({"version": v, "config": state.config}))).into_response())
}

/// A new key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    /// Name, recorded as the actor of changes made with it.
    name: String,
    /// `admin`, `editor`, `reader` or `evaluator`.
    #[schema(value_type = String)]
    role: Role,
}

/// Every key (never the secrets).
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", responses((status = 200, description = "{\"keys\": [...]}")))]
pub(crate) async fn list_keys(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    Ok(Json(json!({"keys": app.store().list_keys().await?})).into_response())
}

/// Creates a key; its secret is in this answer only (the store keeps a keyed hash of it).
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, description = "{\"key\": {...}, \"secret\": \"allot_...\"}"), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn create_key(State(app): State<Arc<App>>, ApiJson(k): ApiJson<NewKey>) -> Result<Response, ApiError> {
    let (info, secret) = app.create_key(&k.name, k.role).await?;
    Ok((StatusCode::CREATED, Json(json!({"key": info, "secret": secret}))).into_response())
}

/// Revokes a key (the last live admin key cannot be revoked).
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 204, description = "revoked"), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn revoke_key(
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    app.revoke_key(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExposureQuery {
    /// Only this experiment.
    experiment: Option<String>,
    /// After this exposure id (cursor; 0 from the start).
    after: Option<u64>,
    /// At most this many (default 1000, at most 10000).
    limit: Option<u32>,
}

/// Stored exposures, oldest first, for analysis.
#[utoipa::path(get, path = "/api/v1/exposures", tag = "evaluation", params(ExposureQuery),
    responses((status = 200, description = "{\"exposures\": [{\"id\", \"unit\", \"experiment\", \"variant\", \"day\", \"time\", \"version\"}], \"next\": cursor}")))]
pub(crate) async fn list_exposures(
    State(app): State<Arc<App>>,
    q: Result<Query<ExposureQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let after = body::integer(q.after.unwrap_or(0), "after")?;
    let rows = app.store().exposures(q.experiment.as_deref(), after, q.limit.unwrap_or(1000).min(10_000)).await?;
    let next = rows.last().map_or(after, |r| r.0);
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(id, x)| {
            let mut v = serde_json::to_value(x).unwrap_or_else(|e| {
                crate::metrics::internal_error(crate::metrics::Site::Json, &e);
                Value::Null
            });
            if let Some(o) = v.as_object_mut() {
                o.insert("id".into(), id.into());
            }
            v
        })
        .collect();
    Ok(Json(json!({"exposures": items, "next": next})).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExposureCsvQuery {
    /// Only this experiment.
    experiment: Option<String>,
    /// For a spreadsheet: every cell that a spreadsheet would read as a formula (it begins with
    /// `=`, `+`, `-`, `@`, a tab or a carriage return) is prefixed with `'` (OWASP's advice on CSV
    /// injection), so a unit id such as `=HYPERLINK(…)` stays text. Off by default: the exact
    /// file is what `allot analyze --exposures` and warehouses read, and ids such as `-17` are data.
    #[serde(default)]
    spreadsheet: bool,
}

/// Rows per store read while streaming `exposures.csv`.
const CSV_PAGE: u32 = 10_000;

/// One CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180); with
/// `spreadsheet`, a leading formula character is neutralised first (`ExposureCsvQuery`).
fn csv_field(s: &str, spreadsheet: bool) -> std::borrow::Cow<'_, str> {
    let s: std::borrow::Cow<'_, str> =
        if spreadsheet && s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}").into() } else { s.into() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s
    }
}

/// A page of exposures as CSV lines.
fn csv_lines(rows: &[(u64, allot_store::Exposure)], spreadsheet: bool) -> String {
    let mut out = String::with_capacity(rows.len() * 64);
    let f = |s| csv_field(s, spreadsheet);
    for (_, x) in rows {
        let line = [f(&x.unit), f(&x.experiment), f(&x.variant), f(&x.time)].join(",");
        out.push_str(&line);
        out.push(',');
        out.push_str(&x.version.to_string());
        out.push('\n');
    }
    out
}

/// Every stored exposure as the CSV `allot analyze --exposures` reads
/// (`unit,experiment,variant,timestamp,version`), oldest first, streamed page by page from the
/// store: memory stays one page whatever the table's size. The first page is read before the
/// answer starts, so that a store failure is an error status; a failure later ends the stream
/// early (the client sees a truncated chunked body, never a silently short file).
#[utoipa::path(get, path = "/api/v1/exposures.csv", tag = "evaluation", params(ExposureCsvQuery),
    responses((status = 200, description = "text/csv: `unit,experiment,variant,timestamp,version`, one row per stored exposure", content_type = "text/csv"),
        (status = 503, body = crate::error::ErrorBody)))]
pub(crate) async fn exposures_csv(
    State(app): State<Arc<App>>,
    q: Result<Query<ExposureCsvQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let first = app.store().exposures(q.experiment.as_deref(), 0, CSV_PAGE).await?;
    let sheet = q.spreadsheet;
    let head = format!("unit,experiment,variant,timestamp,version\n{}", csv_lines(&first, sheet));
    let after = (first.len() == CSV_PAGE as usize).then(|| first.last().map_or(0, |r| r.0));
    let state = (app, q.experiment, after);
    let rest = futures_util::stream::unfold(state, move |(app, experiment, after)| async move {
        let after = after?;
        match app.store().exposures(experiment.as_deref(), after, CSV_PAGE).await {
            Ok(rows) if rows.is_empty() => None,
            Ok(rows) => {
                let next = (rows.len() == CSV_PAGE as usize).then(|| rows.last().map_or(after, |r| r.0));
                Some((Ok::<_, allot_store::StoreError>(csv_lines(&rows, sheet)), (app, experiment, next)))
            }
            Err(e) => {
                tracing::warn!(error = %e, "exposures.csv: the store failed mid-stream; the answer is cut short");
                Some((Err(e), (app, experiment, None)))
            }
        }
    });
    let body = futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(head) }), rest);
    let mut res = axum::body::Body::from_stream(body).into_response();
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    // A browser saves it as a file instead of rendering it in a tab of the service's origin.
    res.headers_mut().insert(
        axum::http::header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"exposures.csv\""),
    );
    Ok(res)
}

/// The entity collections of the configuration.
const COLLECTIONS: [&str; 6] = ["units", "surfaces", "segments", "holdouts", "groups", "experiments"];

fn collection(name: &str) -> Result<&'static str, ApiError> {
    COLLECTIONS.iter().find(|c| **c == name).copied().ok_or_else(|| {
        ApiError::NotFound(format!("/api/v1/{name}: no such endpoint (collections: {})", COLLECTIONS.join(", ")))
    })
}

/// Every entity of a collection, as in the configuration.
#[utoipa::path(get, path = "/api/v1/{collection}", tag = "entities",
    params(("collection" = String, Path, description = "units, surfaces, segments, holdouts, groups or experiments")),
    responses((status = 200, description = "the collection (a mapping; a list for surfaces), ETag = version"), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn list_entities(
    State(app): State<Arc<App>>,
    ApiPath(c): ApiPath<String>,
) -> Result<Response, ApiError> {
    let c = collection(&c)?;
    let live = app.live();
    let v = live.config.get(c).cloned().unwrap_or(if c == "surfaces" { json!([]) } else { json!({}) });
    Ok(([(ETAG, etag(live.version))], Json(v)).into_response())
}

/// One entity.
#[utoipa::path(get, path = "/api/v1/{collection}/{id}", tag = "entities",
    params(("collection" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "the entity as in the configuration, ETag = version"), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn get_entity(
    State(app): State<Arc<App>>,
    ApiPath((c, id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let c = collection(&c)?;
    let live = app.live();
    let found = match live.config.get(c) {
        Some(Value::Array(list)) => list.iter().any(|s| s.as_str() == Some(&id)).then(|| json!(id)),
        Some(Value::Object(m)) => m.get(&id).cloned(),
        _ => None,
    };
    let v = found.ok_or_else(|| ApiError::NotFound(format!("{c}.{id} does not exist")))?;
    Ok(([(ETAG, etag(live.version))], Json(v)).into_response())
}

async fn edit(
    app: &App,
    caller: &Caller,
    m: IfMatch,
    q: ChangeQuery,
    action: String,
    f: impl FnOnce(&mut serde_json::Map<String, Value>) -> Result<(), ApiError>,
) -> Result<Response, ApiError> {
    // Edit the configuration of the version the change is made against. With `*`, that is the
    // current one, and the commit still checks it is current: an edit never overwrites a
    // change that landed in between.
    let (m, base) = match m {
        IfMatch::Version(v) => match app.store().load_version(v).await? {
            Some(s) => (m, s.config),
            None if v == 0 => (m, None),
            None => {
                return Err(ApiError::VersionMismatch { expected: v, current: app.store().current_version().await? })
            }
        },
        IfMatch::Any => {
            let (v, state) = app.store().load_current().await?;
            (IfMatch::Version(v), state.config)
        }
    };
    let mut raw = match base {
        Some(Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    f(&mut raw)?;
    let c = app
        .change(ChangeRequest {
            raw: Value::Object(raw),
            if_match: m,
            force: q.force,
            reason: q.reason,
            actor: actor(caller),
            action,
        })
        .await?;
    changed(c)
}

/// Creates or replaces an entity (for `surfaces`, the body is ignored) through change control.
#[utoipa::path(put, path = "/api/v1/{collection}/{id}", tag = "entities",
    params(("collection" = String, Path), ("id" = String, Path), ChangeQuery, ("If-Match" = String, Header)),
    request_body(content = Object, description = "the entity, as in the configuration file"),
    responses((status = 200, body = ChangeResponse), (status = 409, body = crate::error::ErrorBody), (status = 412, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 428, body = crate::error::ErrorBody), (status = 503, description = "STORE_UNAVAILABLE: the database cannot be reached; PLAN_BUSY or PLAN_TIMEOUT: no planner was free, or the plan ran past the plan budget (`budget_ms`); nothing was written", body = crate::error::ErrorBody)))]
pub(crate) async fn put_entity(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiPath((c, id)): ApiPath<(String, String)>,
    q: Result<Query<ChangeQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let c = collection(&c)?;
    let q = query(q)?;
    let m = if_match(req.headers())?;
    let entity: Option<Value> = if c == "surfaces" {
        None
    } else {
        let b = body::bytes(req, &app).await?;
        let v: Value = body::parse(&b)?;
        if !v.is_object() {
            return Err(ApiError::field(
                "body",
                format!("expected a mapping: the {c} entry as in the configuration file"),
            ));
        }
        Some(v)
    };
    edit(&app, &caller, m, q, format!("{c}.put"), |raw| {
        match entity {
            None => {
                let list = raw.entry("surfaces").or_insert_with(|| json!([]));
                if let Value::Array(l) = list {
                    if !l.iter().any(|s| s.as_str() == Some(&id)) {
                        l.push(json!(id));
                    }
                }
            }
            Some(v) => {
                let map = raw.entry(c).or_insert_with(|| json!({}));
                if let Value::Object(m) = map {
                    m.insert(id, v);
                }
            }
        }
        Ok(())
    })
    .await
}

/// Deletes an entity through change control (refused while running experiments depend on it).
#[utoipa::path(delete, path = "/api/v1/{collection}/{id}", tag = "entities",
    params(("collection" = String, Path), ("id" = String, Path), ChangeQuery, ("If-Match" = String, Header)),
    responses((status = 200, body = ChangeResponse), (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "IN_USE: running experiments use the unit type, surface or group (`rule`, `used_by`); CHANGE_REFUSED: refused by change control (a holdout in use: `holdout-in-use`)", body = crate::error::ErrorBody),
        (status = 412, body = crate::error::ErrorBody), (status = 428, body = crate::error::ErrorBody), (status = 503, description = "STORE_UNAVAILABLE: the database cannot be reached; PLAN_BUSY or PLAN_TIMEOUT: no planner was free, or the plan ran past the plan budget (`budget_ms`); nothing was written", body = crate::error::ErrorBody)))]
pub(crate) async fn delete_entity(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiPath((c, id)): ApiPath<(String, String)>,
    q: Result<Query<ChangeQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let c = collection(&c)?;
    let q = query(q)?;
    let m = if_match(&headers)?;
    edit(&app, &caller, m, q, format!("{c}.delete"), |raw| {
        refuse_if_in_use(raw, c, &id)?;
        let gone = match raw.get_mut(c) {
            Some(Value::Array(l)) => {
                let n = l.len();
                l.retain(|s| s.as_str() != Some(&id));
                l.len() < n
            }
            Some(Value::Object(m)) => m.shift_remove(&id).is_some(),
            _ => false,
        };
        if gone {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("{c}.{id} does not exist")))
        }
    })
    .await
}

/// Refuses deleting a unit type, surface or group that running experiments use (409 `IN_USE`,
/// naming the rule and the experiments). Without this, the deletion would reach validation as a
/// cascade of "unknown group" errors on the experiments. Holdouts are refused by the core's change
/// control (`holdout-in-use`, 409 `CHANGE_REFUSED`, which `force` overrides).
fn refuse_if_in_use(raw: &serde_json::Map<String, Value>, c: &str, id: &str) -> Result<(), ApiError> {
    let Ok(cfg) = allot_core::config::validate(&Value::Object(raw.clone())) else { return Ok(()) };
    let running = cfg.experiments.iter().filter(|(_, e)| e.state == allot_core::config::ExpState::Running);
    let (rule, what, users): (&'static str, &str, Vec<String>) = match c {
        "units" => {
            ("unit-in-use", "unit type", running.filter(|(_, e)| e.unit == id).map(|(k, _)| k.clone()).collect())
        }
        "surfaces" => (
            "surface-in-use",
            "surface",
            running
                .filter(|(_, e)| e.surfaces.iter().chain(&e.tags).chain(&e.exclusive_to).any(|s| s == id))
                .map(|(k, _)| k.clone())
                .collect(),
        ),
        "groups" => (
            "group-in-use",
            "group",
            running.filter(|(_, e)| e.groups.iter().any(|g| g.group == id)).map(|(k, _)| k.clone()).collect(),
        ),
        _ => return Ok(()),
    };
    if users.is_empty() {
        return Ok(());
    }
    Err(ApiError::InUse {
        path: format!("{c}.{id}"),
        rule,
        message: format!(
            "{what} `{id}` cannot be deleted while running experiments use it: {}; stop them or move them off it first",
            users.join(", ")
        ),
        used_by: users,
    })
}

/// Moves an experiment through its lifecycle: `start` (running), `pause` (paused: it keeps its
/// buckets and serves nobody), `resume` (running again: every unit gets what it had), `stop`
/// (stopped, final), `archive`.
#[utoipa::path(post, path = "/api/v1/experiments/{id}/{action}", tag = "entities",
    params(("id" = String, Path), ("action" = String, Path, description = "start, pause, resume, stop or archive"), ChangeQuery, ("If-Match" = String, Header)),
    responses((status = 200, body = ChangeResponse), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
        (status = 412, body = crate::error::ErrorBody), (status = 428, body = crate::error::ErrorBody), (status = 503, description = "STORE_UNAVAILABLE: the database cannot be reached; PLAN_BUSY or PLAN_TIMEOUT: no planner was free, or the plan ran past the plan budget (`budget_ms`); nothing was written", body = crate::error::ErrorBody)))]
pub(crate) async fn lifecycle(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiPath((id, action)): ApiPath<(String, String)>,
    q: Result<Query<ChangeQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let state = match action.as_str() {
        "start" => "running",
        // Running, holding its buckets, serving nobody; `resume` serves every unit what it had.
        "pause" => "paused",
        "resume" => "running",
        "stop" => "stopped",
        "archive" => "archived",
        _ => {
            return Err(ApiError::NotFound(format!(
                "experiments/{id}/{action}: the actions are start, pause, resume, stop and archive"
            )))
        }
    };
    let q = query(q)?;
    let m = if_match(&headers)?;
    edit(&app, &caller, m, q, format!("experiment.{action}"), |raw| {
        match raw.get_mut("experiments").and_then(|e| e.get_mut(&id)).and_then(Value::as_object_mut) {
            Some(e) => {
                let now = e.get("state").and_then(Value::as_str).unwrap_or("draft");
                if let Some(why) = allot_core::config::lifecycle_action_refused(&action, now) {
                    return Err(ApiError::Invalid(vec![allot_core::FieldError::new(
                        format!("experiments.{id}.state"),
                        format!("{action}: experiment `{id}` is {now}; {why}"),
                    )]));
                }
                e.insert("state".into(), json!(state));
                Ok(())
            }
            None => Err(ApiError::NotFound(format!("experiments.{id} does not exist"))),
        }
    })
    .await
}
