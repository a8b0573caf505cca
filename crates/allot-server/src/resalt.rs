//! `POST /api/v1/resalt`: the salt machine (allot-core's `salt::resalt`, as `allot resalt` runs
//! it) through the service's change control: `If-Match`, a dry run that commits nothing, one
//! commit with its audit entry (actor = the key's name, the reason), checked against the version
//! it was made from, then published like any other version.

use crate::auth::Caller;
use crate::body;
use crate::clock::now;
use crate::error::ApiError;
use crate::headers::etag;
use crate::{planner, App, IfMatch};
use allot_core::salt::ResaltReport;
use allot_store::AuditEntry;
use axum::extract::{Extension, Query, Request, State};
use axum::http::header::ETAG;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/resalt", post(resalt))
}

/// A re-salt, as `allot resalt` and `POST /api/v1/resalt` make it.
#[derive(Debug, Clone)]
pub struct ResaltRequest {
    /// One unit type (default: every unit type, in the state's order, one version each).
    pub unit_type: Option<String>,
    /// Why (recorded in the log and the audit entry).
    pub reason: Option<String>,
    /// Who (the key's name).
    pub actor: String,
    /// The version it was made against (`None`: not checked; only for a dry run).
    pub if_match: Option<IfMatch>,
    /// Report what a re-salt would do, commit nothing.
    pub dry_run: bool,
}

/// What a re-salt did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Resalted {
    /// The current version after the re-salt (the version it was made against in a dry run).
    pub version: u64,
    /// Whether a new version was committed (false in a dry run).
    pub committed: bool,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// One report per re-salted unit type, as `allot resalt --format json` prints them: its new
    /// version, the classes of buckets every live allocation treats alike, the buckets whose
    /// units were re-randomised and those kept, and per scope (surface or group) its free and
    /// re-randomised buckets.
    #[schema(value_type = Vec<Object>)]
    pub reports: Vec<ResaltReport>,
}

impl App {
    /// Re-salts one unit type (or every one) of the current version with the core's salt
    /// machine, and, unless a dry run, commits the new state with its audit entry in one
    /// transaction checked against the version it was made from, and makes it current.
    pub async fn resalt(&self, req: ResaltRequest) -> Result<Resalted, ApiError> {
        let loaded = self.store.load_current().await;
        self.observe(&loaded);
        let (current, state) = loaded?;
        if let Some(IfMatch::Version(expected)) = req.if_match {
            if expected != current {
                return Err(ApiError::VersionMismatch { expected, current });
            }
        }
        if req.if_match.is_none() && !req.dry_run {
            return Err(ApiError::IfMatchRequired);
        }
        let time = now();
        let (reason, actor) = (req.reason.clone(), req.actor.clone());
        let unit_type = req.unit_type.clone();
        let t = time.clone();
        let (after, reports, changes) = self
            .planner
            .run(move || {
                let (st, reports) = allot_core::salt::resalt_all(&state, unit_type.as_deref(), &t, reason, Some(actor))
                    .map_err(|e| ApiError::field(e.path, e.message))?;
                // One log entry per re-salt, the last ones.
                let mut changes = vec![];
                let entries = &st.log[st.log.len().saturating_sub(reports.len())..];
                for (r, e) in reports.iter().zip(entries) {
                    for line in &e.changes {
                        changes.push(allot_core::plan::Change {
                            entity: "unit".into(),
                            id: r.space.clone(),
                            action: "resalt".into(),
                            detail: line.clone(),
                        });
                    }
                }
                Ok((st, reports, changes))
            })
            .await?;
        if req.dry_run {
            return Ok(Resalted { version: current, committed: false, dry_run: true, reports });
        }
        let entry = AuditEntry {
            actor: req.actor,
            time,
            action: "resalt".into(),
            reason: req.reason,
            forced: false,
            changes: serde_json::to_value(&changes).map_err(|e| ApiError::Internal(e.to_string()))?,
            overridden: serde_json::json!([]),
        };
        let committed = self.store.commit(current, &after, &entry).await;
        self.observe(&committed);
        let version = committed?;
        tracing::info!(version, spaces = reports.len(), actor = %entry.actor, "re-salt committed");
        let compiled = planner::compile_off_runtime(after).await?;
        self.publish(compiled)?;
        Ok(Resalted { version, committed: true, dry_run: false, reports })
    }
}

/// `?dry_run=true` of `POST /api/v1/resalt`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResaltQuery {
    /// Report what the re-salt would do; commit nothing (also a body field).
    #[serde(default)]
    dry_run: bool,
}

/// The body of `POST /api/v1/resalt` (optional: an empty body re-salts every unit type).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResaltBody {
    /// One unit type (default: every unit type, one version each, in one commit).
    unit_type: Option<String>,
    /// Why (recorded in the change log and the audit entry).
    reason: Option<String>,
    /// Report what the re-salt would do; commit nothing (as `?dry_run=true`).
    #[serde(default)]
    dry_run: bool,
}

/// Re-randomises which units sit in the buckets that every live allocation treats alike (the
/// salt machine, as `allot resalt`): no running experiment, holdout or group gains or loses a
/// unit, while the units of stopped experiments' former buckets are spread over their class.
/// Through change control like every write: `If-Match` (optional for a dry run, checked when
/// given), one commit with its audit entry (`action: resalt`, the key's name, the reason), 412
/// if another change landed first.
#[utoipa::path(post, path = "/api/v1/resalt", tag = "config",
    params(ResaltQuery, ("If-Match" = Option<String>, Header, description = "\"<version>\" or *; required unless dry_run")),
    request_body(content = ResaltBody, description = "optional: {\"unit_type\"?, \"reason\"?, \"dry_run\"?}"),
    responses((status = 200, body = Resalted, description = "the re-salt reports; ETag = the new version (the current one for a dry run)"),
        (status = 412, description = "VERSION_MISMATCH: another change landed first; nothing was written", body = crate::error::ErrorBody),
        (status = 422, description = "INVALID: an unknown unit type, nothing applied yet, an unknown field; the error names it", body = crate::error::ErrorBody),
        (status = 428, description = "IF_MATCH_REQUIRED: a re-salt that commits needs If-Match", body = crate::error::ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the database cannot be reached; PLAN_BUSY or PLAN_TIMEOUT: no planner was free, or the re-salt ran past the plan budget (`budget_ms`); nothing was written", body = crate::error::ErrorBody)))]
pub(crate) async fn resalt(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<ResaltQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let q = q.map(|Query(q)| q).map_err(|e| ApiError::field("query", e.body_text()))?;
    let if_match = crate::headers::if_match(req.headers())?;
    let bytes = body::bytes(req, &app).await?;
    let b: ResaltBody =
        if bytes.iter().all(u8::is_ascii_whitespace) { ResaltBody::default() } else { body::parse(&bytes)? };
    let r = app
        .resalt(ResaltRequest {
            unit_type: b.unit_type,
            reason: b.reason.filter(|r| !r.trim().is_empty()),
            actor: caller.0.name.clone(),
            if_match,
            dry_run: q.dry_run || b.dry_run,
        })
        .await?;
    Ok(([(ETAG, etag(r.version))], Json(r)).into_response())
}
