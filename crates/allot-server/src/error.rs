//! The one table of public errors: every error the API returns has an HTTP status, a stable
//! code and a message, and a JSON body `{"code", "message", "errors"?, ...}`. Internal errors
//! are logged and answered with a generic message: nothing internal leaks.
//!
//! OFREP answers in its own vocabulary (`errorCode`, `errorDetails`): [`OfrepCode`] is the one
//! table of those codes and their statuses, including the code of an [`ApiError`] answered on an
//! OFREP path ([`OfrepCode::of_api_error`]).

use allot_core::plan::Plan;
use allot_core::FieldError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

/// An error of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No key, or a key that is unknown or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// The key's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// The endpoint exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body is not well-formed JSON or YAML.
    #[error("{message}")]
    Malformed {
        /// Where (`body`, or a path into it).
        path: String,
        /// What.
        message: String,
    },
    /// The body is larger than the limit.
    #[error("body: the request body is larger than this endpoint's limit")]
    TooLarge,
    /// The body did not arrive in full within the body timeout (`allot serve --body-timeout-ms`).
    #[error("body: the request body did not arrive within the body timeout")]
    BodyTimeout,
    /// Fields of the input are invalid; every error with its path.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// Change control refused the change; the plan says why.
    #[error("change refused")]
    Refused(Box<Plan>),
    /// A deletion of something running experiments use (a unit type, surface or group).
    #[error("{message}")]
    InUse {
        /// The entity (`groups.checkout`).
        path: String,
        /// The rule (`group-in-use`, `surface-in-use`, `unit-in-use`).
        rule: &'static str,
        /// For people: what and who uses it.
        message: String,
        /// The running experiments that use it.
        used_by: Vec<String>,
    },
    /// `If-Match` names a version that is no longer current.
    #[error("the configuration is at version {current}; the change was made against version {expected}")]
    VersionMismatch {
        /// Version the caller had.
        expected: u64,
        /// Version now.
        current: u64,
    },
    /// A write without `If-Match`.
    #[error("writes need an If-Match header with the version (ETag) they were made against, or If-Match: *")]
    IfMatchRequired,
    /// The database cannot be reached: the change (or read) was not made; retry when it is back.
    /// Evaluation keeps serving the last snapshot meanwhile.
    #[error("the database cannot be reached; nothing was written. Evaluation keeps serving the last configuration version it has; retry when the database is back")]
    StoreUnavailable,
    /// Every planner of the node stayed busy for the whole budget: nothing was planned or written.
    #[error("the server is busy planning other changes: no planner was free within the {budget_ms} ms plan budget; nothing was written, retry later")]
    PlanBusy {
        /// The budget (`allot serve --plan-budget-ms`).
        budget_ms: u64,
    },
    /// The plan did not finish within the budget: nothing was written (its result is discarded).
    #[error("planning this change took longer than the {budget_ms} ms plan budget; nothing was written. Split the change, or simplify the configuration (segments, targeting)")]
    PlanTimeout {
        /// The budget (`allot serve --plan-budget-ms`).
        budget_ms: u64,
    },
    /// The key made more requests than `allot serve --rate-limit` allows: retry after the seconds
    /// given (also in `Retry-After`).
    #[error("this key made more requests than the limit of {limit}; retry after {retry_after} s")]
    RateLimited {
        /// The limit (`100/s`).
        limit: String,
        /// Whole seconds to wait.
        retry_after: u64,
    },
    /// `/api/v1/experiments/{id}/results` could not analyse: no metrics configured or sent
    /// (409 `NO_METRICS`), the analysis query failed (422 `ANALYSIS_FAILED`: the metric tables do
    /// not match the mapping), too many analyses at once or one too slow (503 `ANALYSIS_BUSY`,
    /// `ANALYSIS_TIMEOUT`).
    #[error("{message}")]
    Analysis {
        /// The status.
        status: StatusCode,
        /// The stable code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// A bug or a failure of the store: logged, not shown.
    #[error("internal error")]
    Internal(String),
}

/// The wire form of an error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable code, e.g. `INVALID`, `VERSION_MISMATCH`.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// Every field error with its path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    /// An error at one field.
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Invalid(vec![FieldError::new(path, message)])
    }

    /// The table: status and public code of each error.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            ApiError::Malformed { .. } => (StatusCode::BAD_REQUEST, "MALFORMED"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "TOO_LARGE"),
            ApiError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "BODY_TIMEOUT"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID"),
            ApiError::Refused(_) => (StatusCode::CONFLICT, "CHANGE_REFUSED"),
            ApiError::InUse { .. } => (StatusCode::CONFLICT, "IN_USE"),
            ApiError::VersionMismatch { .. } => (StatusCode::PRECONDITION_FAILED, "VERSION_MISMATCH"),
            ApiError::IfMatchRequired => (StatusCode::PRECONDITION_REQUIRED, "IF_MATCH_REQUIRED"),
            ApiError::StoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE"),
            ApiError::PlanBusy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "PLAN_BUSY"),
            ApiError::PlanTimeout { .. } => (StatusCode::SERVICE_UNAVAILABLE, "PLAN_TIMEOUT"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            ApiError::Analysis { status, code, .. } => (*status, code),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

/// The OFREP error codes allot answers, each with its HTTP status (the status of a single-flag
/// answer; in a bulk answer, a failed flag is an item of a 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfrepCode {
    /// The body is not JSON.
    ParseError,
    /// The context is not an object, `targetingKey` not a string, too many attributes, a bad unit id.
    InvalidContext,
    /// No unit id for the flag's unit type.
    TargetingKeyMissing,
    /// No experiment has this key.
    FlagNotFound,
    /// The server could not evaluate (store failure, sticky assignments unreadable).
    General,
}

impl OfrepCode {
    /// The table: HTTP status and wire code.
    pub fn status_code(self) -> (StatusCode, &'static str) {
        match self {
            OfrepCode::ParseError => (StatusCode::BAD_REQUEST, "PARSE_ERROR"),
            OfrepCode::InvalidContext => (StatusCode::BAD_REQUEST, "INVALID_CONTEXT"),
            OfrepCode::TargetingKeyMissing => (StatusCode::BAD_REQUEST, "TARGETING_KEY_MISSING"),
            OfrepCode::FlagNotFound => (StatusCode::NOT_FOUND, "FLAG_NOT_FOUND"),
            OfrepCode::General => (StatusCode::INTERNAL_SERVER_ERROR, "GENERAL"),
        }
    }

    /// The wire code (`errorCode`).
    pub fn as_str(self) -> &'static str {
        self.status_code().1
    }

    /// The code of an [`ApiError`] met on an OFREP path (authentication, the body, the store, a
    /// bug): a body that is not JSON is `PARSE_ERROR`, one past the limit `INVALID_CONTEXT` (the
    /// context is too large), anything else `GENERAL`. The HTTP status stays the API error's
    /// (401, 403, 405, 408, 413, 503, 500...).
    pub fn of_api_error(e: &ApiError) -> OfrepCode {
        match e {
            ApiError::Malformed { .. } => OfrepCode::ParseError,
            ApiError::TooLarge => OfrepCode::InvalidContext,
            _ => OfrepCode::General,
        }
    }
}

/// Carried by every [`ApiError`] response, so that an answer on an OFREP path can be given in
/// OFREP's vocabulary (`crate::ofrep::error_bodies`) whatever layer produced it.
#[derive(Debug, Clone)]
pub(crate) struct OfrepFallback {
    /// The OFREP code ([`OfrepCode::of_api_error`]).
    pub(crate) code: OfrepCode,
    /// The API error's message (never internal details: [`ApiError::Internal`] says only
    /// "internal error").
    pub(crate) details: String,
}

impl From<allot_store::StoreError> for ApiError {
    fn from(e: allot_store::StoreError) -> Self {
        match e {
            allot_store::StoreError::Conflict { expected, current } => ApiError::VersionMismatch { expected, current },
            allot_store::StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "the database cannot be reached");
                ApiError::StoreUnavailable
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let message = self.to_string();
        let ofrep = OfrepFallback { code: OfrepCode::of_api_error(&self), details: message.clone() };
        let body = match self {
            ApiError::Malformed { path, message: m } => {
                json!({"code": code, "message": format!("{path}: {m}"), "errors": [{"path": path, "message": m}]})
            }
            ApiError::Invalid(errors) => json!({"code": code, "message": summary(&errors), "errors": errors}),
            ApiError::Refused(plan) => json!({
                "code": code,
                "message": format!(
                    "change control refused the change ({} refusal(s)); nothing was written. Fix it, or retry with force=true and a reason",
                    plan.refusals.len()
                ),
                "plan": plan,
            }),
            ApiError::InUse { path, rule, message: m, used_by } => json!({
                "code": code, "message": m, "rule": rule, "used_by": used_by,
                "errors": [{"path": path, "message": m}],
            }),
            ApiError::VersionMismatch { expected, current } => {
                json!({"code": code, "message": message, "expected": expected, "current": current})
            }
            ApiError::PlanBusy { budget_ms } | ApiError::PlanTimeout { budget_ms } => {
                json!({"code": code, "message": message, "budget_ms": budget_ms})
            }
            ApiError::RateLimited { retry_after, .. } => {
                // OFREP's fields beside the API's, so that every client reads it in its own terms.
                let body = json!({"code": code, "message": message, "retry_after": retry_after,
                    "errorCode": "GENERAL", "errorDetails": message});
                let header = [(axum::http::header::RETRY_AFTER, retry_after.to_string())];
                return (status, header, axum::Json(body)).into_response();
            }
            _ => json!({"code": code, "message": message}),
        };
        let mut response = (status, axum::Json(body)).into_response();
        response.extensions_mut().insert(ofrep);
        response
    }
}

/// One line for a list of field errors.
pub fn summary(errors: &[FieldError]) -> String {
    match errors {
        [] => "invalid".into(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}
