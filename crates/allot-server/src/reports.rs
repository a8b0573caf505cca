//! What the CLI reports, over the service's state: the exact traffic audit
//! (`GET /api/v1/traffic`, `allot audit`), bucket and unit history (`GET /api/v1/history`,
//! `allot history`), capacity planning (`POST /api/v1/capacity`, `allot capacity`) and the
//! evaluation trace of one context (`POST /api/v1/evaluate/trace`). Each answers with the same
//! typed report the CLI prints as JSON (allot-core's `Audit`, `UnitReport`, `BucketReport`,
//! `Trace`; allot-stats' `CapacityReport`): one home for every wire shape. All are reads.

use crate::body::{self, ApiJson};
use crate::error::ApiError;
use crate::headers::etag;
use crate::App;
use allot_core::state::State;
use axum::extract::{DefaultBodyLimit, Query, State as AxState};
use axum::http::header::ETAG;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/traffic", get(traffic))
        .route("/api/v1/history", get(history))
        .route("/api/v1/capacity", post(capacity).layer(DefaultBodyLimit::max(body::CONFIG_BODY_LIMIT)))
        .route("/api/v1/evaluate/trace", post(trace))
}

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn query<T>(q: QueryResult<T>) -> Result<T, ApiError> {
    q.map(|Query(t)| t).map_err(|e| ApiError::field("query", e.body_text()))
}

/// The state recorded at `version`, or the current one; 404 for a version never recorded.
async fn state_at(app: &App, version: Option<u64>) -> Result<(u64, State), ApiError> {
    match version {
        None => {
            let loaded = app.store().load_current().await;
            app.observe(&loaded);
            Ok(loaded?)
        }
        Some(v) => {
            let v = body::integer(v, "version")?;
            match app.store().load_version(v).await? {
                Some(s) => Ok((v, s)),
                None => Err(ApiError::NotFound(format!("version {v} does not exist"))),
            }
        }
    }
}

/// The state of the live version (the empty state before the first change).
async fn live_state(app: &App, version: u64) -> Result<State, ApiError> {
    if version == 0 {
        return Ok(State::default());
    }
    Ok(state_at(app, Some(version)).await?.1)
}

/// The configuration a recorded state was applied with (the default before the first change).
fn applied(state: &State) -> Result<allot_core::config::Config, ApiError> {
    allot_core::plan::applied_config(state)
        .map(Option::unwrap_or_default)
        .map_err(|es| ApiError::Internal(format!("a recorded state does not validate: {}", crate::summary(&es))))
}

/// `?version=N` of `GET /api/v1/traffic`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrafficQuery {
    /// An older version (default: the current one).
    version: Option<u64>,
}

/// The exact traffic audit of a version, as `allot audit --format json` prints it: every
/// experiment's share and reach in buckets, pairwise overlaps (exclusive pairs with their proof,
/// others with the count independent draws expect), holdouts, groups and their slots, per-space
/// totals, warnings and violations (none: the exclusivity proof holds).
#[utoipa::path(get, path = "/api/v1/traffic", tag = "reports", params(TrafficQuery),
    responses((status = 200, description = "the audit (allot-core's `Audit`, as `allot audit --format json`), ETag = its version"),
        (status = 404, description = "no such version", body = crate::error::ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the database cannot be reached; PLAN_BUSY or PLAN_TIMEOUT: the audit waited for, or ran past, the plan budget", body = crate::error::ErrorBody)))]
pub(crate) async fn traffic(
    AxState(app): AxState<Arc<App>>,
    q: QueryResult<TrafficQuery>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let (version, state) = state_at(&app, q.version).await?;
    // An audit of a large state takes CPU: off the runtime, bounded like a plan.
    let audit = app
        .planner
        .run(move || {
            let cfg = applied(&state)?;
            Ok(allot_core::audit::audit(&state, &cfg))
        })
        .await?;
    Ok(([(ETAG, etag(version))], Json(audit)).into_response())
}

/// `GET /api/v1/history` parameters, read as text so that a bad number names its parameter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    /// A unit id: who held the buckets it was in, through every re-salt.
    unit: Option<String>,
    /// A bucket number (0 to the space's buckets − 1): who held it. Give `unit` or `bucket`.
    #[param(value_type = Option<u32>)]
    bucket: Option<String>,
    /// The unit type (default: the only one; required when there are several).
    unit_type: Option<String>,
}

/// A unit's or a bucket's history at the current version, as `allot history --unit` /
/// `--bucket` print it (JSON): `{"unit_type", "unit", "bucket", "history": [{"bucket",
/// "allocation", "kind", "owner", "from_version", "until_version"}]}` or
/// `{"unit_type", "bucket", "history": [...]}`.
#[utoipa::path(get, path = "/api/v1/history", tag = "reports", params(HistoryQuery),
    responses((status = 200, description = "allot-core's `UnitReport` or `BucketReport`, ETag = the version"),
        (status = 422, description = "INVALID: no `unit` nor `bucket`, both, a bucket that is not a number or outside the space, an unknown `unit_type`, or one missing while there are several; the error names the parameter", body = crate::error::ErrorBody)))]
pub(crate) async fn history(
    AxState(app): AxState<Arc<App>>,
    q: QueryResult<HistoryQuery>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let bucket = match &q.bucket {
        None => None,
        Some(b) => Some(b.trim().parse::<u32>().map_err(|_| {
            ApiError::field("bucket", format!("expected a bucket number (0 to 4294967295), got `{b}`"))
        })?),
    };
    let live = app.live();
    let unit_type = q.unit_type.as_deref();
    match (&q.unit, bucket) {
        (None, None) => Err(ApiError::field("unit", "give `unit` (a unit id) or `bucket` (a bucket number)")),
        (Some(_), Some(_)) => Err(ApiError::field("bucket", "give `unit` or `bucket`, not both")),
        (Some(u), None) => {
            if u.is_empty() {
                return Err(ApiError::field("unit", "a unit id is required"));
            }
            if let Some(problem) = crate::evaluate::unit_id_problem(u) {
                return Err(ApiError::field("unit", problem));
            }
            // The live snapshot buckets the unit; the state of the same version names the holders.
            let state = live_state(&app, live.version).await?;
            let r = allot_core::history::unit_report(&state, &live.snapshot, unit_type, u)
                .map_err(|e| ApiError::Invalid(vec![e]))?;
            Ok(([(ETAG, etag(live.version))], Json(r)).into_response())
        }
        (None, Some(b)) => {
            let state = live_state(&app, live.version).await?;
            let r = allot_core::history::bucket_report(&state, unit_type, b).map_err(|e| ApiError::Invalid(vec![e]))?;
            Ok(([(ETAG, etag(live.version))], Json(r)).into_response())
        }
    }
}

/// Capacity planning on the live configuration, as `allot capacity --format json` prints it: the
/// body is the traffic file of `allot capacity --traffic` as JSON (`daily_units` per unit type,
/// and the planned experiments in priority order with their metric, MDE, α, power, ρ and an
/// optional share); the answer, allot-stats' `CapacityReport`: units and days per experiment,
/// its earliest start beside what runs, a schedule per exclusion scope and what CUPED saves.
#[utoipa::path(post, path = "/api/v1/capacity", tag = "reports", request_body = crate::capacity::Traffic,
    responses((status = 200, description = "the capacity report (allot-stats' `CapacityReport`, as `allot capacity --format json`), ETag = the version planned on"),
        (status = 422, description = "INVALID: every error of the traffic at once, each naming its field (`experiments.<id>.mde`, `daily_units.<unit type>`, an experiment not in the configuration, an unknown field)", body = crate::error::ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the database cannot be reached; PLAN_BUSY or PLAN_TIMEOUT: the planning waited for, or ran past, the plan budget", body = crate::error::ErrorBody)))]
pub(crate) async fn capacity(
    AxState(app): AxState<Arc<App>>,
    ApiJson(traffic): ApiJson<crate::capacity::Traffic>,
) -> Result<Response, ApiError> {
    let live = app.live();
    let raw = live.config.clone();
    let report = app
        .planner
        .run(move || {
            let cfg = allot_core::config::validate(&raw).map_err(|es| {
                ApiError::Internal(format!("the live configuration does not validate: {}", crate::summary(&es)))
            })?;
            crate::capacity::plan(&cfg, &traffic).map_err(ApiError::Invalid)
        })
        .await?;
    Ok(([(ETAG, etag(live.version))], Json(report)).into_response())
}

/// `POST /api/v1/evaluate/trace`: `/api/v1/evaluate`'s body without `log_exposures` (a trace
/// records nothing).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TraceRequest {
    /// The attributes of the unit: `{"user_id": "u1", "country": "SE"}`.
    #[schema(value_type = Object)]
    context: allot_core::Context,
    /// Only these experiments (default: every experiment).
    experiments: Option<Vec<String>>,
}

/// The stored sticky assignments a trace reads (and never writes): as evaluation reads them, from
/// the store, else, while it cannot be reached, from this node's cache of the version served.
#[derive(Debug, Default)]
struct StickyRead {
    /// Per `(unit type, unit)`: its `(experiment, variant)` rows.
    known: Vec<(UnitKey, Vec<(String, String)>)>,
    unknown: Vec<UnitKey>,
}

/// `(unit type, unit)`.
type UnitKey = (String, String);

impl allot_core::eval::StickyStore for StickyRead {
    fn get(&self, unit_type: &str, unit: &str, experiment: &str) -> Option<String> {
        let (_, rows) = self.known.iter().find(|((t, u), _)| t == unit_type && u == unit)?;
        rows.iter().find(|(e, _)| e == experiment).map(|(_, v)| v.clone())
    }

    fn knows(&self, unit_type: &str, unit: &str) -> bool {
        !self.unknown.iter().any(|(t, u)| t == unit_type && u == unit)
    }
}

/// The evaluation trace of one context: per experiment, the steps evaluation took in its order
/// of operations — running?, the unit id and its bucket (with every live allocation holding it),
/// inclusion, holdouts, allocation (with the group slots holding the bucket), the stored sticky
/// assignment, each prerequisite, targeting with each condition's result, the split — and the
/// final variant and reason, which are exactly what `POST /api/v1/evaluate` answers. Records no
/// exposure and no sticky assignment. Readers may trace; evaluator keys may not (a trace shows
/// the configuration).
#[utoipa::path(post, path = "/api/v1/evaluate/trace", tag = "reports", request_body = TraceRequest,
    responses((status = 200, description = "allot-core's `Trace`: `{\"version\", \"experiments\": {\"<id>\": {\"steps\": [{\"step\": \"running\" | \"unit\" | \"inclusion\" | \"holdout\" | \"allocation\" | \"sticky\" | \"prerequisite\" | \"targeting\" | \"split\", ...}], \"variant\", \"reason\"}}}`"),
        (status = 422, description = "unknown experiment, wrong type, unknown field, oversized context, a unit id over 256 bytes or with control characters", body = crate::error::ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the database cannot be reached; PLAN_BUSY or PLAN_TIMEOUT: the trace waited for, or ran past, the plan budget", body = crate::error::ErrorBody)))]
pub(crate) async fn trace(
    AxState(app): AxState<Arc<App>>,
    ApiJson(req): ApiJson<TraceRequest>,
) -> Result<Response, ApiError> {
    let (version, t) = app.trace(req.context, req.experiments).await?;
    Ok(([(ETAG, etag(version))], Json(t)).into_response())
}

impl App {
    /// The evaluation trace of `context` over the live version (experiments `experiments`, or
    /// every one), as `POST /api/v1/evaluate/trace` and the console's "why is this unit in it"
    /// answer it: the version and the trace.
    pub(crate) async fn trace(
        &self,
        context: allot_core::Context,
        experiments: Option<Vec<String>>,
    ) -> Result<(u64, allot_core::trace::Trace), ApiError> {
        let app = self;
        let req = TraceRequest { context, experiments };
        crate::evaluate::check_context(&req.context, "context")?;
        let live = app.live();
        crate::evaluate::check_units(&live, &req.context, "context")?;
        let snap = &live.snapshot;
        let which = req.experiments.as_deref().map(|ids| crate::evaluate::experiment_indices(snap, ids)).transpose()?;
        let mut sticky = StickyRead::default();
        if live.any_sticky {
            let mut spaces: Vec<usize> =
                snap.experiments.iter().filter(|e| e.sticky && e.running && !e.paused).map(|e| e.space).collect();
            spaces.sort_unstable();
            spaces.dedup();
            for s in spaces {
                let Some(unit) = snap.unit_id(s, &req.context) else { continue };
                let key = (snap.spaces[s].name.clone(), unit.to_string());
                match app.sticky_for_unit(&key.0, &key.1).await {
                    Ok(rows) => sticky.known.push((key, rows)),
                    Err(ApiError::StoreUnavailable) => match app.sticky_cache.get(&key) {
                        Some(k) if k.version == live.version => sticky.known.push((key, k.rows.clone())),
                        _ => sticky.unknown.push(key),
                    },
                    Err(e) => return Err(e),
                }
            }
        }
        let state = live_state(app, live.version).await?;
        let traced = live.clone();
        let t = app
            .planner
            .run(move || {
                let cfg = applied(&state)?;
                let ctx = &req.context;
                Ok(allot_core::trace::trace(&traced.snapshot, &state, &cfg, ctx, &sticky, which.as_deref()))
            })
            .await?;
        Ok((live.version, t))
    }
}
