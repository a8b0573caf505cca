//! The OpenFeature Remote Evaluation Protocol (OFREP v1): every experiment is a flag whose key is
//! the experiment id and whose value is the assigned variant's `value` (its name when it
//! declares none).
//!
//! `targetingKey` is the unit id for every unit type whose attribute the context does not carry
//! itself. Reasons: [`Reason::openfeature`] (`ASSIGNED` → `SPLIT`; `INCLUDED` → `TARGETING_MATCH`;
//! `STICKY` → `STATIC`; `NOT_RUNNING`, `PAUSED` → `DISABLED`; `HOLDOUT`, `NOT_ALLOCATED`, `TARGETING_MISS`,
//! `PREREQUISITE_FAILED` → `DEFAULT`), shared with the SDKs' OpenFeature providers.
//!
//! `POST /ofrep/v1/exposures` ([`record_exposures`]) records the exposures of the flags an
//! application used (issue 12's contract): evaluation never records any by itself.
//!
//! **A unit the experiment does not assign** (`DISABLED`, `DEFAULT`) gets the protocol's code
//! default (its ADR 0006): no `value` and no `variant`, the reason kept, so the application serves
//! the default it wrote in code and an exposure logger that sees every evaluation cannot mistake
//! the unit for one of the control group. The published providers take it (the web provider and
//! the Python provider serve the code default with the reason) except `@openfeature/ofrep-provider`
//! 0.1.3 for Node servers, which reports `TYPE_MISMATCH` for an answer without a value: for it,
//! `allot serve --ofrep-unassigned first-variant` or the request header
//! `X-Allot-Ofrep-Unassigned: first-variant` (set with the provider's `headers` option) keeps the
//! earlier answer, the experiment's first variant and its value ([`Unassigned`]).
//!
//! Every answer carries `metadata` ([`flag_metadata`]): `allotReason`, `experiment`, `unitType`,
//! `variant` (when assigned), `scopes`, `group` and `slots`, `holdouts`, `configVersion`.
//!
//! Errors: malformed JSON → 400 `PARSE_ERROR`; a context that is not an object, a `targetingKey`
//! that is not a string, an oversized context → 400 `INVALID_CONTEXT`; no unit id → 400
//! `TARGETING_KEY_MISSING`; unknown key → 404 `FLAG_NOT_FOUND`; store failure → 500 `GENERAL`;
//! a sticky experiment whose stored assignments cannot be read (`STICKY_UNAVAILABLE`: the database
//! is unreachable and this node does not hold the unit's assignments) → `GENERAL` (500 for one
//! flag, a failure item in bulk), so that the client serves its code default.
//!
//! Every error answer carries OFREP's error body, `{"key", "errorCode", "errorDetails"}` for one
//! flag and `{"errorCode", "errorDetails"}` in bulk, including those produced outside these
//! handlers (authentication 401/403, the body limit 413, the body timeout 408, an unknown method
//! 405, the store 503, a bug 500): [`error_bodies`] rewrites any [`ApiError`] answer on an OFREP
//! path with the code [`OfrepCode::of_api_error`] gives and the API error's status.
//!
//! The bulk endpoint answers with `ETag: "<version>-<hash of the context>"` (`…-fv"` for the
//! `first-variant` answer, whose shape differs) and 304 when
//! `If-None-Match` matches: the flags can only change with the configuration or the context.
//! A degraded answer (any `STICKY_UNAVAILABLE`) carries no `ETag`. It advertises the change
//! events of [`crate::ofrep_events`] in `eventStreams`.

use crate::auth::Caller;
use crate::body::ApiPath;
use crate::error::{ApiError, OfrepCode, OfrepFallback};
use crate::evaluate::{assign, check_context, unit_id_problem, value_of, MAX_ATTRIBUTES};
use crate::{App, Live};
use allot_core::eval::{Assignment, Reason, Snapshot};

use allot_core::Context;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(evaluate_flag))
        .route("/ofrep/v1/evaluate/flags", post(evaluate_flags))
        .route(EXPOSURES_PATH, post(record_exposures))
        .route(crate::ofrep_events::PATH, axum::routing::get(crate::ofrep_events::stream))
}

/// An OFREP error: its code (the status is the code's in the table, [`OfrepCode`]) and details.
struct Failure(OfrepCode, String);

impl Failure {
    fn of(code: OfrepCode, details: String) -> Failure {
        Failure(code, details)
    }
}

/// The OFREP error body: with the flag's `key` for one flag, without for bulk.
fn error_body(key: Option<&str>, code: OfrepCode, details: &str) -> Value {
    let mut m = Map::new();
    if let Some(key) = key {
        m.insert("key".into(), json!(key));
    }
    m.insert("errorCode".into(), json!(code.as_str()));
    m.insert("errorDetails".into(), json!(details));
    Value::Object(m)
}

/// An OFREP error answer with the status of its code in the table.
fn failure(key: Option<&str>, Failure(code, details): Failure) -> Response {
    (code.status_code().0, Json(error_body(key, code, &details))).into_response()
}

/// An OFREP error answer for an [`ApiError`]: its status, the code the table gives it.
fn api_failure(key: Option<&str>, e: &ApiError) -> Response {
    (e.status_code().0, Json(error_body(key, OfrepCode::of_api_error(e), &e.to_string()))).into_response()
}

/// The flag key of an OFREP path (`/ofrep/v1/evaluate/flags/{key}`, percent-decoded), `None` for
/// the bulk path and anything else.
fn path_key(path: &str) -> Option<String> {
    let raw = path.strip_prefix("/ofrep/v1/evaluate/flags/")?;
    (!raw.is_empty() && !raw.contains('/'))
        .then(|| percent_encoding::percent_decode_str(raw).decode_utf8_lossy().into_owned())
}

/// Middleware over the whole router: an answer on an OFREP path that an [`ApiError`] produced
/// (it carries [`OfrepFallback`]) gets OFREP's error fields, keeping its status, its headers and
/// the API error's own fields.
pub(crate) async fn error_bodies(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !path.starts_with("/ofrep/") {
        return next.run(req).await;
    }
    let key = path_key(path);
    let response = next.run(req).await;
    let Some(fallback) = response.extensions().get::<OfrepFallback>().cloned() else { return response };
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    // allot's own fields (`code`, `message`, ...) stay beside OFREP's: clients of either read theirs.
    let own = match axum::body::to_bytes(body, 1024 * 1024).await {
        Ok(bytes) => serde_json::from_slice::<Map<String, Value>>(&bytes).unwrap_or_default(),
        Err(_) => Map::new(),
    };
    let mut body = error_body(key.as_deref(), fallback.code, &fallback.details);
    if let Value::Object(m) = &mut body {
        for (k, v) in own {
            m.entry(k).or_insert(v);
        }
    }
    match serde_json::to_vec(&body) {
        Ok(bytes) => Response::from_parts(parts, Body::from(bytes)),
        Err(e) => {
            crate::metrics::internal_error(crate::metrics::Site::Json, &e);
            Response::from_parts(parts, Body::empty())
        }
    }
}

/// Parses `{"context": {...}}` into an allot context with `targetingKey` mapped to the units.
fn context(body: &[u8], live: &Live) -> Result<Context, Failure> {
    context_of(body_object(body)?, live)
}

/// The request body as a JSON object (`PARSE_ERROR` when it is not JSON).
fn body_object(body: &[u8]) -> Result<Map<String, Value>, Failure> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| Failure::of(OfrepCode::ParseError, format!("malformed JSON: {e}")))?;
    let Value::Object(top) = v else {
        return Err(Failure::of(OfrepCode::InvalidContext, "the body must be an object {\"context\": {...}}".into()));
    };
    Ok(top)
}

/// The `context` of a request body object, with `targetingKey` mapped to the units.
fn context_of(mut top: Map<String, Value>, live: &Live) -> Result<Context, Failure> {
    let mut ctx = match top.remove("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(c)) => c,
        Some(_) => return Err(Failure::of(OfrepCode::InvalidContext, "context: expected an object".into())),
    };
    if check_context(&ctx, "context").is_err() {
        return Err(Failure::of(
            OfrepCode::InvalidContext,
            format!("context: {} attributes; at most {MAX_ATTRIBUTES} are allowed", ctx.len()),
        ));
    }
    let explicit: Vec<String> = ctx.keys().cloned().collect();
    let mut given = None;
    match ctx.remove("targetingKey") {
        None | Some(Value::Null) => {}
        Some(Value::String(k)) => {
            live.snapshot.fill_targeting_key(&mut ctx, &k);
            given = Some(k);
        }
        Some(_) => {
            return Err(Failure::of(OfrepCode::InvalidContext, "context.targetingKey: expected a string".into()))
        }
    }
    for (s, space) in live.snapshot.spaces.iter().enumerate() {
        if let Some(unit) = live.snapshot.unit_id(s, &ctx) {
            if let Some(problem) = unit_id_problem(&unit) {
                let field = if given.as_deref() == Some(unit.as_ref()) && !explicit.contains(&space.attribute) {
                    "targetingKey".to_string()
                } else {
                    space.attribute.clone()
                };
                return Err(Failure::of(OfrepCode::InvalidContext, format!("context.{field}: {problem}")));
            }
        }
    }
    Ok(ctx)
}

/// OFREP's answer for a unit the experiment does not assign (`allot serve --ofrep-unassigned`;
/// per request, the header [`UNASSIGNED_HEADER`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Unassigned {
    /// No `value`, no `variant`, the reason kept: the application's code default (ADR 0006).
    #[default]
    CodeDefault,
    /// The experiment's first variant and its value, the reason kept (for providers that need a
    /// value in every success, such as `@openfeature/ofrep-provider` 0.1.3).
    FirstVariant,
}

/// The request header that chooses [`Unassigned`] for one request.
pub const UNASSIGNED_HEADER: &str = "x-allot-ofrep-unassigned";

impl std::str::FromStr for Unassigned {
    type Err = String;
    fn from_str(s: &str) -> Result<Unassigned, String> {
        match s.trim() {
            "code-default" => Ok(Unassigned::CodeDefault),
            "first-variant" => Ok(Unassigned::FirstVariant),
            other => Err(format!("`{other}`: expected code-default or first-variant")),
        }
    }
}

/// The answer for unassigned units that a request asks for: its header, else the node's policy.
fn unassigned(app: &App, headers: &HeaderMap) -> Result<Unassigned, Failure> {
    match headers.get(UNASSIGNED_HEADER) {
        None => Ok(app.policy.load().ofrep_unassigned),
        Some(v) => v
            .to_str()
            .map_err(|_| "not text".to_string())
            .and_then(str::parse)
            .map_err(|e| Failure::of(OfrepCode::InvalidContext, format!("header {UNASSIGNED_HEADER}: {e}"))),
    }
}

/// The metadata every answer for each experiment carries, beside the reason and the variant: in
/// the snapshot's experiment order. OFREP's metadata values are strings, numbers or booleans, so
/// lists are joined with `,` (and the slots of several groups with `;`, in the order of `group`).
pub(crate) fn flag_metadata(state: &allot_core::state::State, snapshot: &Snapshot) -> Vec<Map<String, Value>> {
    let cfg = allot_core::state::applied_config(state).ok().flatten().unwrap_or_default();
    snapshot
        .experiments
        .iter()
        .map(|ce| {
            let mut m = Map::new();
            m.insert("experiment".into(), json!(ce.id));
            m.insert("unitType".into(), json!(snapshot.spaces[ce.space].name));
            m.insert("configVersion".into(), json!(snapshot.version));
            let Some(e) = cfg.experiments.get(&ce.id) else { return m };
            let mut scopes = cfg.tags_of(e);
            scopes.sort();
            scopes.dedup();
            if !scopes.is_empty() {
                m.insert("scopes".into(), json!(scopes.join(",")));
            }
            if !e.groups.is_empty() {
                let groups: Vec<&str> = e.groups.iter().map(|g| g.group.as_str()).collect();
                let slots: Vec<String> = e
                    .groups
                    .iter()
                    .map(|g| g.slots.iter().map(|s| (s + 1).to_string()).collect::<Vec<_>>().join(","))
                    .collect();
                m.insert("group".into(), json!(groups.join(",")));
                m.insert("slots".into(), json!(slots.join(";")));
            }
            let holdouts: Vec<&str> = cfg
                .holdouts
                .iter()
                .filter(|(_, h)| cfg.holdout_applies(h, &ce.id))
                .map(|(id, _)| id.as_str())
                .collect();
            if !holdouts.is_empty() {
                m.insert("holdouts".into(), json!(holdouts.join(",")));
            }
            m
        })
        .collect()
}

/// One flag's OFREP result: `Ok` a success object, `Err` a failure object.
fn flag(live: &Live, i: usize, a: &Assignment, unassigned: Unassigned) -> Result<Value, Value> {
    let e = &live.snapshot.experiments[i];
    let mut metadata = live.ofrep_meta.get(i).cloned().unwrap_or_default();
    metadata.insert("allotReason".into(), json!(a.reason.as_str()));
    metadata.insert("configVersion".into(), json!(live.version));
    if a.reason == Reason::MissingUnit {
        let attr = &live.snapshot.spaces[e.space].attribute;
        return Err(json!({
            "key": e.id,
            "errorCode": OfrepCode::TargetingKeyMissing.as_str(),
            "errorDetails": format!("the context has no targetingKey (nor `{attr}`) to identify the unit"),
            "metadata": metadata,
        }));
    }
    if a.reason == Reason::StickyUnavailable {
        return Err(json!({
            "key": e.id,
            "errorCode": OfrepCode::General.as_str(),
            "errorDetails": "the unit's sticky assignments cannot be read (the store is unreachable): use the default",
            "metadata": metadata,
        }));
    }
    let mut out = Map::new();
    out.insert("key".into(), json!(e.id));
    out.insert("reason".into(), json!(a.reason.openfeature()));
    if let Some(v) = live.snapshot.variant_name(i, a) {
        metadata.insert("variant".into(), json!(v));
    }
    let shown = match (a.variant, unassigned) {
        (Some(_), _) => Some(*a),
        (None, Unassigned::CodeDefault) => None,
        // The earlier answer: the first variant (by convention the control) and its value.
        (None, Unassigned::FirstVariant) => Some(Assignment { variant: Some(0), reason: a.reason }),
    };
    if let Some(shown) = shown {
        if let Some(v) = live.snapshot.variant_name(i, &shown) {
            out.insert("variant".into(), json!(v));
        }
        if let Some(v) = value_of(live, i, &shown) {
            out.insert("value".into(), v);
        }
    }
    out.insert("metadata".into(), Value::Object(metadata));
    Ok(Value::Object(out))
}

/// Evaluates one flag (experiment) for a context.
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags/{key}", tag = "ofrep", params(("key" = String, Path, description = "the experiment id"),
        ("X-Allot-Ofrep-Unassigned" = Option<String>, Header, description = "code-default (the default) or first-variant: the answer for units an experiment does not assign")),
    request_body(content = Object, description = "{\"context\": {\"targetingKey\": \"user-1\", ...}}"),
    responses((status = 200, description = "{key, reason, variant, value, metadata}; no value and no variant for a unit the experiment does not assign (the code default)"), (status = 400, description = "{key, errorCode, errorDetails}"),
        (status = 404, description = "FLAG_NOT_FOUND"), (status = 500, description = "GENERAL")))]
pub(crate) async fn evaluate_flag(
    State(app): State<Arc<App>>,
    ApiPath(key): ApiPath<String>,
    req: Request,
) -> Response {
    let headers: HeaderMap = req.headers().clone();
    let body = match crate::body::bytes(req, &app).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let live = app.live();
    let fail = |f: Failure| {
        app.metrics.evaluation_error();
        failure(Some(&key), f)
    };
    let unassigned = match unassigned(&app, &headers) {
        Ok(u) => u,
        Err(f) => return fail(f),
    };
    let ctx = match context(&body, &live) {
        Ok(c) => c,
        Err(f) => return fail(f),
    };
    let Some(i) = live.snapshot.index_of(&key) else {
        return fail(Failure::of(OfrepCode::FlagNotFound, format!("flag `{key}` was not found")));
    };
    let out = match assign(&app, &live, &ctx, Some(&[i])).await {
        Ok((o, _)) => o,
        Err(e) => {
            tracing::error!(error = %e, "OFREP evaluation failed");
            app.metrics.evaluation_error();
            return api_failure(Some(&key), &e);
        }
    };
    let Some((_, a)) = out.first() else {
        crate::metrics::internal_error(crate::metrics::Site::Evaluation, &format_args!("no result for flag `{key}`"));
        return fail(Failure::of(OfrepCode::General, "no result".into()));
    };
    match flag(&live, i, a, unassigned) {
        Ok(v) => Json(v).into_response(),
        Err(v) => {
            app.metrics.evaluation_error();
            // A unit that cannot be evaluated now (GENERAL) is the server's failure, not the request's.
            let code =
                if a.reason == Reason::StickyUnavailable { OfrepCode::General } else { OfrepCode::TargetingKeyMissing };
            let status = code.status_code().0;
            (status, Json(v)).into_response()
        }
    }
}

/// `"<version>-<hash>"`: the hash is allot's frozen MurmurHash3 (x64, 128 bits) of the context's
/// attributes in key order, so the tag is the same on every node, build and Rust release, and
/// whatever order the client sent the attributes in.
pub(crate) fn bulk_etag(version: u64, ctx: &Context) -> String {
    let mut attrs: Vec<(&String, &Value)> = ctx.iter().collect();
    attrs.sort_by(|a, b| a.0.cmp(b.0));
    let canonical = serde_json::to_vec(&attrs).unwrap_or_else(|e| {
        crate::metrics::internal_error(crate::metrics::Site::Json, &e);
        Vec::new()
    });
    let (h1, h2) = allot_core::hash::murmur3_x64_128(&canonical, 0);
    format!("\"{version}-{h1:016x}{h2:016x}\"")
}

/// Evaluates every flag for a context (`ETag`; 304 on a matching `If-None-Match`).
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags", tag = "ofrep", params(("If-None-Match" = Option<String>, Header),
        ("X-Allot-Ofrep-Unassigned" = Option<String>, Header, description = "code-default (the default) or first-variant: the answer for units an experiment does not assign"),
        ("flagConfigEtag" = Option<String>, Query, description = "the etag of the change event that asked for this refetch (ADR 0008): a node that does not serve that version yet reads the store first"),
        ("flagConfigLastModified" = Option<String>, Query, description = "the lastModified of that event (accepted, not used)")),
    request_body(content = Object, description = "{\"context\": {\"targetingKey\": \"user-1\", ...}}"),
    responses((status = 200, description = "{flags: [...], metadata, eventStreams: [{type: sse, endpoint: {requestUri: /ofrep/v1/events?key=…&token=…}, inactivityDelaySec}]}"), (status = 304, description = "not modified"),
        (status = 400, description = "{errorCode, errorDetails}"), (status = 500, description = "GENERAL")))]
pub(crate) async fn evaluate_flags(State(app): State<Arc<App>>, req: Request) -> Response {
    let headers: HeaderMap = req.headers().clone();
    let caller = req.extensions().get::<Caller>().cloned();
    let announced = crate::ofrep_events::announced_version(req.uri().query());
    let body = match crate::body::bytes(req, &app).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let fail = |f: Failure| failure(None, f);
    let unassigned = match unassigned(&app, &headers) {
        Ok(u) => u,
        Err(f) => return fail(f),
    };
    if let Some(v) = announced {
        // An event announced a version this node may not serve yet: read the store first, so
        // that the answer to the event is not older than the event.
        crate::ofrep_events::catch_up(&app, v).await;
    }
    let live = app.live();
    let ctx = match context(&body, &live) {
        Ok(c) => c,
        Err(f) => return failure(None, f),
    };
    let mut tag = bulk_etag(live.version, &ctx);
    if unassigned == Unassigned::FirstVariant {
        // The answer's shape differs: a client revalidating across the switch must not keep the other.
        tag.insert_str(tag.len() - 1, "-fv");
    }
    let tag_value = crate::headers::tag_value(&tag);
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == tag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, [(ETAG, tag_value)]).into_response();
    }
    let out = match assign(&app, &live, &ctx, None).await {
        Ok((o, _)) => o,
        Err(e) => {
            tracing::error!(error = %e, "OFREP bulk evaluation failed");
            app.metrics.evaluation_error();
            return api_failure(None, &e);
        }
    };
    let flags: Vec<Value> = out
        .iter()
        .map(|(i, a)| {
            flag(&live, *i, a, unassigned).unwrap_or_else(|v| {
                app.metrics.evaluation_error();
                v
            })
        })
        .collect();
    let mut answer = json!({"flags": flags, "metadata": {"configVersion": live.version}});
    if let Some(caller) = &caller {
        answer["eventStreams"] = crate::ofrep_events::stream_for(&app, caller);
    }
    let body = Json(answer);
    if out.iter().any(|(_, a)| a.reason == Reason::StickyUnavailable) {
        // A degraded answer must not be cached by the client as if it were the version's.
        return (StatusCode::OK, body).into_response();
    }
    (StatusCode::OK, [(ETAG, tag_value)], body).into_response()
}

/// Where OFREP clients record exposures (the flags an application used).
pub(crate) const EXPOSURES_PATH: &str = "/ofrep/v1/exposures";

/// Most flags in one `POST /ofrep/v1/exposures`.
pub(crate) const MAX_EXPOSED_FLAGS: usize = 100;

/// Why a flag of `POST /ofrep/v1/exposures` recorded nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotRecorded {
    /// No experiment has that key.
    FlagNotFound,
    /// The experiment assigns the unit no variant (the unit gets the code default).
    NotAssigned,
    /// The experiment assigns the unit another variant.
    VariantMismatch,
    /// The unit's stored sticky assignment could not be read (the store is down and it is not
    /// cached): not recorded now, worth sending again later.
    StickyUnavailable,
}

impl NotRecorded {
    fn as_str(self) -> &'static str {
        match self {
            NotRecorded::FlagNotFound => "FLAG_NOT_FOUND",
            NotRecorded::NotAssigned => "NOT_ASSIGNED",
            NotRecorded::VariantMismatch => "VARIANT_MISMATCH",
            NotRecorded::StickyUnavailable => "STICKY_UNAVAILABLE",
        }
    }
}

/// The 422 of a bad `flags` list: OFREP's error fields (`INVALID_CONTEXT`, the closest code the
/// protocol has) beside allot's own (`INVALID`, every field with its path).
fn invalid_flags(errors: Vec<allot_core::FieldError>) -> Response {
    let details = crate::error::summary(&errors);
    let mut body = error_body(None, OfrepCode::InvalidContext, &details);
    if let Value::Object(m) = &mut body {
        m.insert("code".into(), json!("INVALID"));
        m.insert("message".into(), json!(details));
        m.insert("errors".into(), json!(errors));
    }
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// The `flags` of an exposure request: `(key, variant)` in request order, or each bad field
/// (`flags`, `flags[3].variant`) for the 422.
fn exposed_flags(flags: Option<Value>) -> Result<Vec<(String, String)>, Vec<allot_core::FieldError>> {
    use allot_core::FieldError;
    let list = match flags {
        Some(Value::Array(list)) => list,
        None | Some(Value::Null) => {
            return Err(vec![FieldError::new("flags", "required: [{\"key\": ..., \"variant\": ...}]")])
        }
        Some(_) => return Err(vec![FieldError::new("flags", "expected a list")]),
    };
    if list.len() > MAX_EXPOSED_FLAGS {
        return Err(vec![FieldError::new(
            "flags",
            format!("{} flags; at most {MAX_EXPOSED_FLAGS} per request", list.len()),
        )]);
    }
    let mut out = Vec::with_capacity(list.len());
    let mut errors = vec![];
    for (k, item) in list.into_iter().enumerate() {
        let Value::Object(mut item) = item else {
            errors.push(FieldError::new(format!("flags[{k}]"), "expected an object {\"key\": ..., \"variant\": ...}"));
            continue;
        };
        let mut text = |field: &str| match item.remove(field) {
            Some(Value::String(v)) if !v.is_empty() => Some(v),
            _ => {
                errors.push(FieldError::new(format!("flags[{k}].{field}"), "required: a non-empty string"));
                None
            }
        };
        let (key, variant) = (text("key"), text("variant"));
        if let Some(extra) = item.keys().next() {
            errors.push(FieldError::new(format!("flags[{k}].{extra}"), "unknown field (expected key and variant)"));
        }
        if let (Some(key), Some(variant)) = (key, variant) {
            out.push((key, variant));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Records an exposure for each flag the application used, when the server's own evaluation of
/// the flag for the context gives exactly that variant (one per unit, experiment, variant and
/// UTC day; written with evaluation's group commit, buffered like it while the database cannot
/// be reached: `X-Allot-Buffered: exposures`). Evaluation never records by itself.
#[utoipa::path(post, path = "/ofrep/v1/exposures", tag = "ofrep",
    request_body(content = Object, description = "{\"context\": {\"targetingKey\": \"u1\", ...}, \"flags\": [{\"key\": \"ranking-v2\", \"variant\": \"treatment\"}]} (at most 100 flags)"),
    responses((status = 200, description = "{flags: [{key, recorded: true} | {key, recorded: false, reason: FLAG_NOT_FOUND | NOT_ASSIGNED | VARIANT_MISMATCH | STICKY_UNAVAILABLE}]}, in request order"),
        (status = 400, description = "{errorCode, errorDetails}: PARSE_ERROR, INVALID_CONTEXT, TARGETING_KEY_MISSING"),
        (status = 422, description = "{errorCode: INVALID_CONTEXT, errorDetails, errors: [{path, message}]}: `flags` missing, over 100, or an item without a key or variant"),
        (status = 500, description = "GENERAL")))]
pub(crate) async fn record_exposures(State(app): State<Arc<App>>, req: Request) -> Response {
    let body = match crate::body::bytes(req, &app).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let live = app.live();
    let mut top = match body_object(&body) {
        Ok(t) => t,
        Err(f) => return failure(None, f),
    };
    let flags = top.remove("flags");
    let ctx = match context_of(top, &live) {
        Ok(c) => c,
        Err(f) => return failure(None, f),
    };
    let flags = match exposed_flags(flags) {
        Ok(f) => f,
        Err(errors) => return invalid_flags(errors),
    };
    let snap = &live.snapshot;
    let mut which: Vec<usize> = flags.iter().filter_map(|(key, _)| snap.index_of(key)).collect();
    which.sort_unstable();
    which.dedup();
    let out = match assign(&app, &live, &ctx, Some(&which)).await {
        Ok((o, _)) => o,
        Err(e) => {
            tracing::error!(error = %e, "OFREP exposure evaluation failed");
            return api_failure(None, &e);
        }
    };
    let (time, day) = crate::clock::now_and_day();
    let mut rows = vec![];
    let mut answers = Vec::with_capacity(flags.len());
    for (k, (key, variant)) in flags.iter().enumerate() {
        let found = snap.index_of(key).and_then(|i| out.iter().find(|(j, _)| *j == i).map(|(_, a)| (i, a)));
        let outcome = match found {
            None => Err(NotRecorded::FlagNotFound),
            Some((i, a)) => {
                let e = &snap.experiments[i];
                let Some(unit) = snap.unit_id(e.space, &ctx) else {
                    let attr = &snap.spaces[e.space].attribute;
                    return failure(
                        None,
                        Failure::of(
                            OfrepCode::TargetingKeyMissing,
                            format!("flags[{k}] ({key}): the context has no targetingKey (nor `{attr}`) to identify the unit"),
                        ),
                    );
                };
                match snap.variant_name(i, a) {
                    None if a.reason == allot_core::eval::Reason::StickyUnavailable => {
                        Err(NotRecorded::StickyUnavailable)
                    }
                    None => Err(NotRecorded::NotAssigned),
                    Some(v) if v != variant => Err(NotRecorded::VariantMismatch),
                    Some(v) => {
                        rows.push(allot_store::Exposure {
                            unit: unit.to_string(),
                            experiment: e.id.clone(),
                            variant: v.to_string(),
                            day: day.clone(),
                            time: time.clone(),
                            version: live.version,
                        });
                        Ok(())
                    }
                }
            }
        };
        answers.push(match outcome {
            Ok(()) => json!({"key": key, "recorded": true}),
            Err(r) => json!({"key": key, "recorded": false, "reason": r.as_str()}),
        });
    }
    let stored = match app.log_exposures(rows).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "recording OFREP exposures failed");
            return api_failure(None, &e);
        }
    };
    let body = Json(json!({"flags": answers}));
    if stored == crate::writer::Stored::Buffered {
        return (StatusCode::OK, [(crate::BUFFERED_HEADER, axum::http::HeaderValue::from_static("exposures"))], body)
            .into_response();
    }
    body.into_response()
}
