//! The whole HTTP interface: [`router`] merges the routes of [`crate::admin`],
//! [`crate::evaluate`], [`crate::ofrep`], [`crate::openapi`] and the console with health, readiness and
//! metrics, behind authentication ([`crate::auth`]), the body limit and request metrics;
//! [`with_cors`] adds CORS. The transport (timeouts, TLS, drain) is [`crate::http`].

use crate::error::ApiError;
use crate::{admin, auth, body, console, evaluate, metrics, ofrep, openapi, reports, resalt, App};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

/// The whole HTTP interface over `app`.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .merge(admin::routes())
        .merge(reports::routes())
        .merge(resalt::routes())
        .merge(crate::results::routes())
        .merge(evaluate::routes())
        // Reading exposures is admin, recording them is evaluation: one route, two modules.
        .route(
            "/api/v1/exposures",
            axum::routing::get(admin::list_exposures)
                .post(evaluate::post_exposures)
                .layer(axum::extract::DefaultBodyLimit::max(body::EXPOSURES_BODY_LIMIT)),
        )
        .route("/api/v1/exposures.csv", axum::routing::get(admin::exposures_csv))
        .merge(ofrep::routes())
        .merge(openapi::routes())
        .merge(console::routes())
        .route("/healthz", axum::routing::get(health))
        .route("/readyz", axum::routing::get(ready))
        .route("/metrics", axum::routing::get(metrics::render))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(app.clone(), auth::authenticate))
        // Outside authentication: its refusals on OFREP paths get OFREP's error body too.
        .layer(axum::middleware::from_fn(ofrep::error_bodies))
        .layer(axum::extract::DefaultBodyLimit::max(body::BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(app.clone(), metrics::track));
    metrics::with_request_ids(api).with_state(app)
}

/// `router` answering cross-origin requests from `origins` (`https://app.example.com`, or `*` for
/// any origin): CORS preflights are answered before authentication, and the API's request and
/// response headers (`Authorization`, `If-Match`, `ETag`, ...) are allowed. No origins: `router`
/// unchanged, and browsers refuse cross-origin calls (the default). Errors name a malformed origin.
pub fn with_cors(router: Router, origins: &[String]) -> Result<Router, String> {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return Ok(router);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let mut list = Vec::with_capacity(origins.len());
        for o in origins {
            let ok = (o.starts_with("http://") || o.starts_with("https://")) && !o.ends_with('/');
            match HeaderValue::from_str(o) {
                Ok(v) if ok => list.push(v),
                _ => {
                    return Err(format!("--cors-origin {o}: expected an origin such as https://app.example.com, or *"))
                }
            }
        }
        AllowOrigin::list(list)
    };
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-allot-ofrep-unassigned"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::ETAG,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-allot-buffered"),
            header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(600));
    Ok(router.layer(layer))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{}: {method} is not allowed here", uri.path()))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("{}: no such endpoint", uri.path()))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub(crate) async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: a configuration version is loaded, so evaluation can answer. `{"status": "ready"}`
/// when the store answers too; `{"status": "degraded"}` (still 200: evaluation keeps serving the
/// last snapshot) when it does not, and then admin writes get 503 `STORE_UNAVAILABLE`.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready, or degraded: the store does not answer but evaluation serves the last snapshot")))]
pub(crate) async fn ready(axum::extract::State(app): axum::extract::State<Arc<App>>) -> axum::Json<serde_json::Value> {
    let pinged = app.store.ping().await;
    app.observe(&pinged);
    let version = app.live().version;
    match pinged {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready", "version": version})),
        Err(e) => {
            tracing::warn!(error = %e, "store ping failed");
            axum::Json(serde_json::json!({
                "status": "degraded",
                "version": version,
                "store": "unavailable",
                "message": "the store does not answer: evaluation serves the last snapshot, admin writes get 503",
                "pending_exposures": app.pending_exposures(),
                "pending_sticky": app.pending_sticky(),
            }))
        }
    }
}
