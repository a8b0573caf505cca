//! The OpenAPI document, generated from the handlers' annotations (`utoipa`), served at
//! `/api/v1/openapi.json` and committed at `docs/openapi.json` (a test fails when they differ).

use crate::App;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Adds to every operation the answers that do not depend on its handler, from the same rules
/// the service applies: 401/403 from the roles table ([`crate::auth::need`]), 400/408/413 where a
/// body is read, 429 where the per-key rate limit counts, 422 where a parameter or body can be invalid, 503 (`STORE_UNAVAILABLE`: also
/// authentication of a key this node has never seen, while the database cannot be reached) and
/// 500 everywhere a key is needed. A handler's own description of a status is kept.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use crate::auth::{need, Need};
        use axum::http::Method;
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                (Method::GET, item.get.as_mut()),
                (Method::PUT, item.put.as_mut()),
                (Method::POST, item.post.as_mut()),
                (Method::DELETE, item.delete.as_mut()),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                let n = need(&method, path);
                let ofrep = path.starts_with("/ofrep/");
                let mut add: Vec<(&str, &str)> = vec![];
                if n != Need::Nothing {
                    add.push(("401", "UNAUTHENTICATED: no key, or an unknown or revoked one"));
                    if n != Need::AnyKey {
                        add.push(("403", "FORBIDDEN: the key's role may not do this"));
                    }
                    add.push(("500", "INTERNAL: logged, not shown"));
                    if n != Need::AnyKey {
                        add.push((
                            "429",
                            "RATE_LIMITED: past `allot serve --rate-limit`; `Retry-After` says when to retry",
                        ));
                    }
                    add.push(("503", "STORE_UNAVAILABLE: the database cannot be reached"));
                }
                if op.request_body.is_some() {
                    add.push(("400", "MALFORMED: not well-formed JSON or YAML (or anything after the JSON value)"));
                    add.push(("408", "BODY_TIMEOUT: the body did not arrive within the body timeout"));
                    add.push(("413", "TOO_LARGE: the body is larger than this endpoint's limit"));
                }
                let has_params = op.parameters.as_ref().is_some_and(|ps| {
                    use utoipa::openapi::path::ParameterIn;
                    ps.iter().any(|p| matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query))
                });
                if !ofrep && (op.request_body.is_some() || has_params) {
                    add.push(("422", "INVALID: every invalid field with its path"));
                }
                for (status, description) in add {
                    op.responses.responses.entry(status.to_string()).or_insert_with(|| {
                        utoipa::openapi::ResponseBuilder::new()
                            .description(description)
                            .content(
                                "application/json",
                                utoipa::openapi::ContentBuilder::new()
                                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .build()
                            .into()
                    });
                }
            }
        }
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "allot", description = "Coordinates and assigns mutually exclusive experiments. Every endpoint but /healthz and /readyz needs `Authorization: Bearer <key>`."),
    modifiers(&Security, &CommonResponses),
    security(("bearer" = [])),
    paths(
        crate::router::health, crate::router::ready, crate::metrics::render,
        crate::admin::get_config, crate::admin::put_config, crate::admin::preview, crate::admin::audit, crate::admin::audit_entry, crate::admin::version,
        crate::admin::list_keys, crate::admin::create_key, crate::admin::revoke_key,
        crate::admin::list_entities, crate::admin::get_entity, crate::admin::put_entity, crate::admin::delete_entity, crate::admin::lifecycle,
        crate::evaluate::evaluate, crate::evaluate::snapshot, crate::evaluate::post_exposures, crate::admin::list_exposures, crate::admin::exposures_csv,
        crate::ofrep::evaluate_flag, crate::ofrep::evaluate_flags, crate::ofrep::record_exposures, crate::ofrep_events::stream,
        crate::reports::traffic, crate::reports::history, crate::reports::capacity, crate::resalt::resalt, crate::reports::trace,
        crate::results::get_results, crate::results::post_results,
        openapi_json,
    ),
    tags(
        (name = "config", description = "the configuration as a whole, previews, audit log, versions"),
        (name = "entities", description = "unit types, surfaces, segments, holdouts, groups, experiments and their lifecycle"),
        (name = "reports", description = "what the CLI reports: the traffic audit, history, capacity, evaluation traces"),
        (name = "keys", description = "API keys (admin only)"),
        (name = "evaluation", description = "assignments, snapshots, exposures"),
        (name = "ofrep", description = "OpenFeature Remote Evaluation Protocol"),
        (name = "operations", description = "health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON (what `docs/openapi.json` holds).
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| {
        crate::metrics::internal_error(crate::metrics::Site::Json, &e);
        String::new()
    })
}

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
