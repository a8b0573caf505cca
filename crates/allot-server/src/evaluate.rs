//! The evaluation API: `POST /api/v1/evaluate` (assignments with variant, value, reason and the
//! configuration version), `GET /api/v1/snapshot` (the state reduced to what evaluation reads,
//! for in-process evaluation, with ETag/304) and `POST /api/v1/exposures`.
//!
//! Evaluation uses one [`Live`] snapshot for the whole request, so a request never sees half a
//! change. Sticky experiments read the unit's stored assignments before evaluating and store
//! new ones after.

use crate::body::ApiJson;
use crate::clock::now_and_day;
use crate::error::ApiError;
use crate::headers::{etag, parse_tag};
use crate::writer::Stored;
use crate::{App, Live, StickyKnown};
use allot_core::eval::{Assignment, Reason, StickyStore};
use allot_core::Context;
use allot_store::Exposure;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// Most attributes a context may have.
pub(crate) const MAX_ATTRIBUTES: usize = 256;

/// Most exposures in one `POST /api/v1/exposures`.
pub(crate) const MAX_EXPOSURES: usize = 1000;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/evaluate", post(evaluate)).route("/api/v1/snapshot", get(snapshot))
}

/// Longest unit id, in bytes of UTF-8, on every endpoint (evaluation contexts, OFREP, exposures).
pub(crate) const MAX_UNIT_ID_BYTES: usize = 256;

/// Checks a context's size; `path` names it in errors.
pub(crate) fn check_context(ctx: &Context, path: &str) -> Result<(), ApiError> {
    if ctx.len() > MAX_ATTRIBUTES {
        return Err(ApiError::field(path, format!("{} attributes; at most {MAX_ATTRIBUTES} are allowed", ctx.len())));
    }
    Ok(())
}

/// Why `unit` cannot be a unit id, if it cannot: the one rule of every endpoint, at most
/// [`MAX_UNIT_ID_BYTES`] bytes of UTF-8 and no control characters (NUL, newlines, ...). Checked
/// at the edge so that one client's id can never fail a batch of other clients' writes.
pub(crate) fn unit_id_problem(unit: &str) -> Option<String> {
    if unit.len() > MAX_UNIT_ID_BYTES {
        return Some(format!("a unit id is at most {MAX_UNIT_ID_BYTES} bytes of UTF-8; this one has {}", unit.len()));
    }
    if unit.chars().any(char::is_control) {
        return Some("a unit id cannot contain control characters (NUL, newlines, ...)".into());
    }
    None
}

/// Checks every unit id of `ctx` (the attribute of each unit type); errors name the attribute as
/// `<path>.<attribute>`.
pub(crate) fn check_units(live: &Live, ctx: &Context, path: &str) -> Result<(), ApiError> {
    let mut errors = vec![];
    for (s, space) in live.snapshot.spaces.iter().enumerate() {
        if let Some(unit) = live.snapshot.unit_id(s, ctx) {
            if let Some(problem) = unit_id_problem(&unit) {
                errors.push(allot_core::FieldError::new(format!("{path}.{}", space.attribute), problem));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// The sticky assignments one request evaluates with: what the store (or, while it cannot be
/// reached, this node's cache) holds for the request's units, and the units it could not tell.
/// `(unit type, unit)`.
type UnitKey = (String, String);

/// A request has one unit per unit type, so both are short lists.
#[derive(Debug, Default)]
struct StickyView {
    /// Per unit `(unit type, unit)`: its `(experiment, variant)` rows (also what the cache keeps).
    known: Vec<(UnitKey, Vec<(String, String)>)>,
    unknown: Vec<UnitKey>,
}

impl StickyStore for StickyView {
    fn get(&self, unit_type: &str, unit: &str, experiment: &str) -> Option<String> {
        let (_, rows) = self.known.iter().find(|((t, u), _)| t == unit_type && u == unit)?;
        rows.iter().find(|(e, _)| e == experiment).map(|(_, v)| v.clone())
    }

    fn knows(&self, unit_type: &str, unit: &str) -> bool {
        !self.unknown.iter().any(|(t, u)| t == unit_type && u == unit)
    }
}

/// Evaluates experiments `which` (all when `None`) for `ctx` on `live`, reading and writing
/// sticky assignments in the store.
///
/// While the database cannot be reached, a unit's sticky assignments come from this node's cache
/// when it holds them for the version being served ([`crate::StickyKnown`]); otherwise its sticky
/// experiments answer `STICKY_UNAVAILABLE`. New sticky assignments are then kept in memory and
/// written when the database is back.
///
/// Also says whether new sticky assignments were only buffered in memory.
pub(crate) async fn assign(
    app: &App,
    live: &Live,
    ctx: &Context,
    which: Option<&[usize]>,
) -> Result<(Vec<(usize, Assignment)>, Stored), ApiError> {
    let snap = &live.snapshot;
    let all: Vec<usize>;
    let which = match which {
        Some(w) => w,
        None => {
            all = (0..snap.experiments.len()).collect();
            &all
        }
    };
    let mut sticky = StickyView::default();
    let sticky_spaces: Vec<usize> = if live.any_sticky {
        let mut s: Vec<usize> = which
            .iter()
            .map(|&i| &snap.experiments[i])
            .filter(|e| e.sticky && e.running && !e.paused)
            .map(|e| e.space)
            .collect();
        s.sort_unstable();
        s.dedup();
        s
    } else {
        vec![]
    };
    for &s in &sticky_spaces {
        let Some(unit) = snap.unit_id(s, ctx) else { continue };
        let key = (snap.spaces[s].name.clone(), unit.to_string());
        let rows = match app.sticky_for_unit(&key.0, &key.1).await {
            Ok(rows) => rows,
            Err(ApiError::StoreUnavailable) => match app.sticky_cache.get(&key) {
                Some(k) if k.version == live.version => k.rows.clone(),
                _ => {
                    sticky.unknown.push(key);
                    continue;
                }
            },
            Err(e) => return Err(e),
        };
        sticky.known.push((key, rows));
    }
    let out: Vec<(usize, Assignment)> =
        if which.len() == snap.experiments.len() && which.iter().enumerate().all(|(a, b)| a == *b) {
            let mut v = Vec::with_capacity(which.len());
            snap.evaluate_all(ctx, &sticky, &mut v);
            v.into_iter().enumerate().collect()
        } else {
            which.iter().map(|&i| (i, snap.evaluate_one(i, ctx, &sticky))).collect()
        };
    let mut sticky_stored = Stored::Written;
    if !sticky.known.is_empty() {
        let mut rows = vec![];
        for (i, a) in &out {
            let e = &snap.experiments[*i];
            if e.sticky && a.reason == Reason::Assigned {
                if let (Some(unit), Some(v)) = (snap.unit_id(e.space, ctx), snap.variant_name(*i, a)) {
                    let space = &snap.spaces[e.space].name;
                    if let Some((_, held)) =
                        sticky.known.iter_mut().find(|((t, u), _)| t == space && u == unit.as_ref())
                    {
                        held.push((e.id.clone(), v.to_string()));
                    }
                    rows.push((space.clone(), unit.to_string(), e.id.clone(), v.to_string()));
                }
            }
        }
        for (key, rows) in sticky.known {
            app.sticky_cache.insert(key, Arc::new(StickyKnown { version: live.version, rows }));
        }
        sticky_stored = app.sticky_writer.submit(rows).await?;
    }
    for (_, a) in &out {
        app.metrics.evaluated(a.reason);
    }
    Ok((out, sticky_stored))
}

/// The value a variant serves: its declared `value`, else its name as a string.
pub(crate) fn value_of(live: &Live, i: usize, a: &Assignment) -> Option<Value> {
    live.snapshot.variant_value(i, a)
}

/// The snapshot's indices of the experiments a request names (`experiments`): every unknown id is
/// a field error naming its place (`experiments[2]`).
pub(crate) fn experiment_indices(snap: &allot_core::eval::Snapshot, ids: &[String]) -> Result<Vec<usize>, ApiError> {
    let mut idx = Vec::with_capacity(ids.len());
    let mut errors = vec![];
    for (k, id) in ids.iter().enumerate() {
        match snap.index_of(id) {
            Some(i) => idx.push(i),
            None => errors
                .push(allot_core::FieldError::new(format!("experiments[{k}]"), format!("unknown experiment `{id}`"))),
        }
    }
    if errors.is_empty() {
        Ok(idx)
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// `POST /api/v1/evaluate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EvaluateRequest {
    /// The attributes of the unit: `{"user_id": "u1", "country": "SE"}`.
    #[schema(value_type = Object)]
    context: Context,
    /// Only these experiments (default: every experiment).
    experiments: Option<Vec<String>>,
    /// Also record an exposure for every assignment with a variant.
    #[serde(default)]
    log_exposures: bool,
}

/// One assignment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AssignmentOut {
    /// The variant, if any.
    variant: Option<String>,
    /// The variant's value (its declared `value`, else its name), if any.
    #[schema(value_type = Option<Object>)]
    value: Option<Value>,
    /// Why: `INCLUDED`, `ASSIGNED`, `STICKY`, `HOLDOUT`, `NOT_ALLOCATED`, `TARGETING_MISS`,
    /// `PREREQUISITE_FAILED`, `NOT_RUNNING`, `PAUSED`, `MISSING_UNIT` or `STICKY_UNAVAILABLE` (the store of
    /// sticky assignments cannot be reached and this node does not hold the unit's: no variant).
    reason: &'static str,
}

/// The answer of `POST /api/v1/evaluate`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EvaluateResponse {
    /// The configuration version every assignment came from.
    version: u64,
    /// By experiment id, in configuration order (or request order).
    #[schema(value_type = std::collections::BTreeMap<String, AssignmentOut>)]
    assignments: IndexMap<String, AssignmentOut>,
}

/// Assigns a unit: every requested experiment's variant, value and reason.
#[utoipa::path(post, path = "/api/v1/evaluate", tag = "evaluation", request_body = EvaluateRequest,
    responses((status = 200, body = EvaluateResponse, description = "the assignments; `X-Allot-Buffered: exposures` and/or `sticky` when the database cannot be reached and those rows are kept in this node's memory only"), (status = 400, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody),
        (status = 422, description = "unknown experiment, wrong type, unknown field, oversized context, a unit id over 256 bytes or with control characters", body = crate::error::ErrorBody)))]
pub(crate) async fn evaluate(
    State(app): State<Arc<App>>,
    ApiJson(req): ApiJson<EvaluateRequest>,
) -> Result<Response, ApiError> {
    check_context(&req.context, "context")?;
    let live = app.live();
    check_units(&live, &req.context, "context")?;
    let snap = &live.snapshot;
    let which = req.experiments.as_deref().map(|ids| experiment_indices(snap, ids)).transpose()?;
    let (out, sticky_stored) = assign(&app, &live, &req.context, which.as_deref()).await?;
    let mut assignments = IndexMap::with_capacity(out.len());
    let mut exposures = vec![];
    let (time, day) = now_and_day();
    for (i, a) in &out {
        let e = &snap.experiments[*i];
        let variant = snap.variant_name(*i, a).map(str::to_string);
        if req.log_exposures {
            if let (Some(v), Some(unit)) = (&variant, snap.unit_id(e.space, &req.context)) {
                exposures.push(Exposure {
                    unit: unit.to_string(),
                    experiment: e.id.clone(),
                    variant: v.clone(),
                    day: day.clone(),
                    time: time.clone(),
                    version: live.version,
                });
            }
        }
        assignments
            .insert(e.id.clone(), AssignmentOut { variant, value: value_of(&live, *i, a), reason: a.reason.as_str() });
    }
    let exposures_stored = app.log_exposures(exposures).await?;
    let buffered: Vec<&str> = [(exposures_stored, "exposures"), (sticky_stored, "sticky")]
        .into_iter()
        .filter(|(s, _)| *s == Stored::Buffered)
        .map(|(_, what)| what)
        .collect();
    let mut res = Json(EvaluateResponse { version: live.version, assignments }).into_response();
    if !buffered.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&buffered.join(", ")) {
            res.headers_mut().insert(crate::BUFFERED_HEADER, v);
        }
    }
    Ok(res)
}

/// The recorded state reduced to what evaluation reads ([`crate::served`]), for in-process
/// evaluation (`allot-sdk` compiles it with the same core): running experiments, live
/// allocations, salts; no drafts, free text or change log.
#[utoipa::path(get, path = "/api/v1/snapshot", tag = "evaluation", params(("If-None-Match" = Option<String>, Header)),
    responses((status = 200, description = "the state JSON reduced to what evaluation reads (running experiments, live allocations, salts and re-salts; no drafts, descriptions, owners or change log), ETag = version"), (status = 304, description = "not modified")))]
pub(crate) async fn snapshot(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let live = app.live();
    let tag = etag(live.version);
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == "*" || parse_tag(t) == Some(live.version)));
    if fresh {
        return (StatusCode::NOT_MODIFIED, [(ETAG, tag)]).into_response();
    }
    (
        StatusCode::OK,
        [(ETAG, tag), (CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        live.state_json.clone(),
    )
        .into_response()
}

/// One exposure sent by a client.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExposureIn {
    /// Unit id.
    unit: String,
    /// Experiment id.
    experiment: String,
    /// Variant name.
    variant: String,
    /// When (RFC 3339; default: now). Its UTC day is the deduplication day.
    time: Option<String>,
    /// Configuration version of the assignment (default: the current one).
    version: Option<u64>,
}

/// `POST /api/v1/exposures`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExposuresIn {
    /// At most 1000.
    exposures: Vec<ExposureIn>,
}

/// Records exposures, deduplicated per unit, experiment, variant and UTC day.
#[utoipa::path(post, path = "/api/v1/exposures", tag = "evaluation", request_body = ExposuresIn,
    responses((status = 200, description = "{\"received\": n, \"new\": m}"),
        (status = 202, description = "the database cannot be reached: kept in this node's memory only (lost if it stops first), `X-Allot-Buffered: exposures`; {\"received\": n, \"new\": null, \"buffered\": n}"),
        (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn post_exposures(
    State(app): State<Arc<App>>,
    ApiJson(req): ApiJson<ExposuresIn>,
) -> Result<Response, ApiError> {
    if req.exposures.len() > MAX_EXPOSURES {
        return Err(ApiError::field(
            "exposures",
            format!("{} exposures; at most {MAX_EXPOSURES} per request", req.exposures.len()),
        ));
    }
    let live = app.live();
    let snap = &live.snapshot;
    let (now, today) = now_and_day();
    let mut errors = vec![];
    let mut rows = Vec::with_capacity(req.exposures.len());
    for (k, x) in req.exposures.into_iter().enumerate() {
        let at = |f: &str| format!("exposures[{k}].{f}");
        let Some(i) = snap.index_of(&x.experiment) else {
            errors
                .push(allot_core::FieldError::new(at("experiment"), format!("unknown experiment `{}`", x.experiment)));
            continue;
        };
        if !snap.experiments[i].split.names.contains(&x.variant) {
            errors.push(allot_core::FieldError::new(
                at("variant"),
                format!("`{}` is not a variant of `{}`", x.variant, x.experiment),
            ));
            continue;
        }
        if x.unit.is_empty() {
            errors.push(allot_core::FieldError::new(at("unit"), "a unit id is required"));
            continue;
        }
        if let Some(problem) = unit_id_problem(&x.unit) {
            errors.push(allot_core::FieldError::new(at("unit"), problem));
            continue;
        }
        if let Some(v) = x.version {
            if v > crate::body::MAX_INTEGER {
                errors.push(allot_core::FieldError::new(
                    at("version"),
                    format!("{v} is out of range: at most {}", crate::body::MAX_INTEGER),
                ));
                continue;
            }
        }
        let (time, day) = match x.time {
            None => (now.clone(), today.clone()),
            Some(t) => match time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339) {
                Ok(parsed) => {
                    let d = parsed.to_offset(time::UtcOffset::UTC).date();
                    (t, format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
                }
                Err(e) => {
                    errors.push(allot_core::FieldError::new(at("time"), format!("expected RFC 3339: {e}")));
                    continue;
                }
            },
        };
        rows.push(Exposure {
            unit: x.unit,
            experiment: x.experiment,
            variant: x.variant,
            day,
            time,
            version: x.version.unwrap_or(live.version),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    match app.record_exposures(&rows).await? {
        Some(new) => Ok(Json(serde_json::json!({"received": rows.len(), "new": new})).into_response()),
        // The database cannot be reached: kept in this node's memory only, and lost if it stops
        // before the database is back. Say so.
        None => Ok((
            StatusCode::ACCEPTED,
            [(crate::BUFFERED_HEADER, HeaderValue::from_static("exposures"))],
            Json(serde_json::json!({"received": rows.len(), "new": null, "buffered": rows.len()})),
        )
            .into_response()),
    }
}
