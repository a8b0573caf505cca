//! Keys and roles. Every request but `/healthz` and `/readyz` needs a key
//! (`Authorization: Bearer <key>`, or `X-API-Key: <key>` as OFREP allows). What a role may do:
//!
//! | need | roles |
//! |---|---|
//! | evaluate: `/api/v1/evaluate`, `/ofrep/*` (`POST /ofrep/v1/exposures` too), `GET /api/v1/snapshot`, `POST /api/v1/exposures` | admin, editor, evaluator |
//! | read: other `GET`s under `/api/v1` (`GET /api/v1/exposures.csv` included), `POST /api/v1/changes/preview`, `POST /api/v1/capacity`, `POST /api/v1/evaluate/trace`, `POST /api/v1/experiments/{id}/results` | admin, editor, reader |
//! | write: other `POST`/`PUT`/`DELETE`s under `/api/v1` | admin, editor |
//! | keys: `/api/v1/keys` | admin |
//! | any key: `/metrics`, `/api/v1/openapi.json` | every role |
//! | its own token (from the bulk answer): `GET /ofrep/v1/events` | admin, editor, evaluator |
//! | the console: `/`, `/console/...` | its own sessions (module `console`): admin, editor and reader sign in; only admin and editor act |
//!
//! No key, or an unknown or revoked one → 401 `UNAUTHENTICATED`; a valid key whose role may not
//! do this → 403 `FORBIDDEN`, naming the roles that may.

use crate::error::ApiError;
use crate::App;
use allot_store::{KeyInfo, Role};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Nothing (health).
    Nothing,
    /// The console (`/`, `/console/...`): it authenticates with its own sessions
    /// (`crate::console::session`), not with keys in headers.
    Console,
    /// Any valid key.
    AnyKey,
    /// Evaluate and send exposures.
    Evaluate,
    /// Read configuration, audit log, exposures.
    Read,
    /// Change configuration.
    Write,
    /// Manage keys.
    Keys,
}

impl Need {
    pub(crate) fn roles(self) -> &'static [Role] {
        match self {
            Need::Nothing | Need::Console | Need::AnyKey => &[Role::Admin, Role::Editor, Role::Reader, Role::Evaluator],
            Need::Evaluate => &[Role::Admin, Role::Editor, Role::Evaluator],
            Need::Read => &[Role::Admin, Role::Editor, Role::Reader],
            Need::Write => &[Role::Admin, Role::Editor],
            Need::Keys => &[Role::Admin],
        }
    }

    /// Whether a key of `role` may do what this needs (the console asks this too).
    pub(crate) fn allows(self, role: Role) -> bool {
        self.roles().contains(&role)
    }

    pub(crate) fn verb(self) -> &'static str {
        match self {
            Need::Nothing | Need::Console | Need::AnyKey => "call this endpoint",
            Need::Evaluate => "evaluate or send exposures",
            Need::Read => "read the configuration",
            Need::Write => "change the configuration",
            Need::Keys => "manage keys",
        }
    }
}

/// What `method path` needs.
pub(crate) fn need(method: &Method, path: &str) -> Need {
    let get = method == Method::GET || method == Method::HEAD;
    match path {
        "/healthz" | "/readyz" => Need::Nothing,
        // OFREP's event stream authenticates its own token (browsers' EventSource sends no header).
        crate::ofrep_events::PATH if get => Need::Nothing,
        "/" | "/console" => Need::Console,
        p if p.starts_with("/console/") => Need::Console,
        "/metrics" | "/api/v1/openapi.json" => Need::AnyKey,
        "/api/v1/evaluate" => Need::Evaluate,
        "/api/v1/snapshot" if get => Need::Evaluate,
        "/api/v1/exposures" if !get => Need::Evaluate,
        "/api/v1/changes/preview" | "/api/v1/capacity" | "/api/v1/evaluate/trace" => Need::Read,
        // An analysis with an uploaded metrics file reads; it writes nothing.
        p if p.starts_with("/api/v1/experiments/") && p.ends_with("/results") => Need::Read,
        p if p.starts_with("/ofrep/") => Need::Evaluate,
        p if p == "/api/v1/keys" || p.starts_with("/api/v1/keys/") => Need::Keys,
        _ if get => Need::Read,
        _ => Need::Write,
    }
}

/// The caller of a request, in its extensions.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) Arc<KeyInfo>);

fn secret(req: &Request) -> Option<&str> {
    let h = req.headers();
    if let Some(v) = h.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        return if scheme.eq_ignore_ascii_case("bearer") { Some(rest.trim()) } else { None };
    }
    h.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Authenticates the key and checks the role; puts the [`Caller`] in the request.
pub(crate) async fn authenticate(
    State(app): State<Arc<App>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let need = need(req.method(), req.uri().path());
    if need == Need::Nothing || need == Need::Console {
        return Ok(next.run(req).await);
    }
    let has_header =
        req.headers().contains_key(axum::http::header::AUTHORIZATION) || req.headers().contains_key("x-api-key");
    let key = match secret(&req) {
        Some(s) if !s.is_empty() => app.key(s).await?,
        _ if has_header => {
            return Err(ApiError::Unauthenticated("malformed credentials: send `Authorization: Bearer <key>`".into()))
        }
        _ => {
            return Err(ApiError::Unauthenticated(
                "this endpoint needs a key: send `Authorization: Bearer <key>`".into(),
            ))
        }
    };
    let Some(key) = key else {
        return Err(ApiError::Unauthenticated("the key is unknown or revoked".into()));
    };
    let roles = need.roles();
    if !roles.contains(&key.role) {
        let names: Vec<&str> = roles.iter().map(Role::as_str).collect();
        return Err(ApiError::Forbidden(format!(
            "a key with role `{}` cannot {}; that needs one of: {}",
            key.role.as_str(),
            need.verb(),
            names.join(", ")
        )));
    }
    if need != Need::AnyKey {
        if let Err(wait) = app.rate.check(&key.id) {
            let limit = app.policy.load().rate_limit.map(|l| l.to_string()).unwrap_or_default();
            return Err(ApiError::RateLimited { limit, retry_after: crate::ratelimit::retry_after(wait) });
        }
    }
    req.extensions_mut().insert(Caller(key));
    Ok(next.run(req).await)
}
