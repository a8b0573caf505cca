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

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "allot", description = "Coordinates and assigns mutually exclusive experiments. Every endpoint but /healthz and /readyz needs `Authorization: Bearer <key>`."),
    modifiers(&Security),
    security(("bearer" = [])),
    paths(
        crate::health, crate::ready, crate::metrics::render,
        crate::admin::get_config, crate::admin::put_config, crate::admin::preview, crate::admin::audit, crate::admin::audit_entry, crate::admin::version,
        crate::admin::list_keys, crate::admin::create_key, crate::admin::revoke_key,
        crate::admin::list_entities, crate::admin::get_entity, crate::admin::put_entity, crate::admin::delete_entity, crate::admin::lifecycle,
        crate::evaluate::evaluate, crate::evaluate::snapshot, crate::evaluate::post_exposures, crate::admin::list_exposures,
        crate::ofrep::evaluate_flag, crate::ofrep::evaluate_flags,
        openapi_json,
    ),
    tags(
        (name = "config", description = "the configuration as a whole, previews, audit log, versions"),
        (name = "entities", description = "unit types, surfaces, segments, holdouts, groups, experiments and their lifecycle"),
        (name = "keys", description = "API keys (admin only)"),
        (name = "evaluation", description = "assignments, snapshots, exposures"),
        (name = "ofrep", description = "OpenFeature Remote Evaluation Protocol"),
        (name = "operations", description = "health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON (what `docs/openapi.json` holds).
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
