//! The lifecycle of an experiment through the preview: `POST /console/experiments/{id}/{action}`
//! (start, stop, archive) shows exactly what the change would do — the changes, the share of each
//! running experiment's units that would move, every refusal with its rule — and asks for
//! confirmation; `POST .../confirm` makes it through change control against the version that was
//! previewed. A change made by someone else in between is a conflict: nothing is written and the
//! page says so, with a link to the new state. A refused change can be forced with a reason,
//! which the log records.

use crate::app::{ChangeRequest, IfMatch};
use crate::console::page::{html, Chrome, Problem};
use crate::console::session::{self, Signed};
use crate::error::ApiError;
use crate::App;
use allot_core::plan::Plan;
use askama::Template;
use axum::extract::{rejection::FormRejection, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde_json::{json, Value};
use std::sync::Arc;

/// What the action and confirmation forms send.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ChangeForm {
    csrf: Option<String>,
    /// The version the page showed.
    version: Option<u64>,
    force: Option<String>,
    reason: Option<String>,
}

struct ImpactRow {
    experiment: String,
    moved: String,
    before: u64,
    after: u64,
    sticky: bool,
}

#[derive(Template)]
#[template(path = "preview.html")]
struct Preview {
    chrome: Chrome,
    id: String,
    action: String,
    version: u64,
    changes: Vec<String>,
    impact: Vec<ImpactRow>,
    refusals: Vec<(String, String, String)>,
    warnings: Vec<String>,
    errors: Vec<String>,
    conflict: Option<String>,
    reason: String,
}

fn target_state(action: &str) -> Option<&'static str> {
    match action {
        "start" => Some("running"),
        "stop" => Some("stopped"),
        "archive" => Some("archived"),
        _ => None,
    }
}

/// Checks the session, the role, the CSRF token and the action; returns the signed caller, the
/// form and the target state.
async fn checked(
    app: &App,
    headers: &HeaderMap,
    action: &str,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Result<(Signed, ChangeForm, &'static str), Problem> {
    let signed = super::signed(app, headers).await?;
    let form = form.map(|Form(f)| f).ok();
    session::check_csrf(headers, &signed, form.as_ref().and_then(|f| f.csrf.as_deref()))?;
    signed.must_act()?;
    let state = target_state(action)
        .ok_or_else(|| Problem::not_found(format!("{action}: the actions are start, stop and archive")))?;
    let form = form.ok_or_else(|| Problem::bad_request("the form is malformed"))?;
    Ok((signed, form, state))
}

/// The configuration of `version` with experiment `id` in `state`.
async fn edited(app: &App, version: u64, id: &str, state: &str) -> Result<Value, Problem> {
    let Some(st) = app.store.load_version(version).await? else {
        let current = app.store.current_version().await?;
        return Err(Problem::from(ApiError::VersionMismatch { expected: version, current }));
    };
    let mut raw = match st.config {
        Some(Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    match raw.get_mut("experiments").and_then(|e| e.get_mut(id)).and_then(Value::as_object_mut) {
        Some(e) => {
            e.insert("state".into(), json!(state));
        }
        None => return Err(Problem::not_found(format!("there is no experiment `{id}` in version {version}"))),
    }
    Ok(Value::Object(raw))
}

fn page(signed: &Signed, id: &str, action: &str, version: u64, plan: Option<&Plan>) -> Preview {
    let mut chrome = Chrome::new(format!("{action} {id}: preview"), Some(signed));
    chrome.version = Some(version);
    Preview {
        chrome,
        id: id.to_string(),
        action: action.to_string(),
        version,
        changes: plan
            .map(|p| p.changes.iter().map(|c| format!("{} {} {}: {}", c.action, c.entity, c.id, c.detail)).collect())
            .unwrap_or_default(),
        impact: plan
            .map(|p| {
                p.impact
                    .iter()
                    .map(|(e, i)| ImpactRow {
                        experiment: e.clone(),
                        moved: crate::console::space::pct(i.moved_share),
                        before: i.buckets_before,
                        after: i.buckets_after,
                        sticky: i.sticky,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        refusals: plan
            .map(|p| p.refusals.iter().map(|r| (r.rule.clone(), r.path.clone(), r.message.clone())).collect())
            .unwrap_or_default(),
        warnings: plan.map(|p| p.warnings.clone()).unwrap_or_default(),
        errors: vec![],
        conflict: None,
        reason: String::new(),
    }
}

/// The preview of an action: nothing is written.
pub(crate) async fn preview(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Result<Response, Problem> {
    let (signed, form, state) = checked(&app, &headers, &action, form).await?;
    let version = form.version.unwrap_or(app.live().version);
    let raw = edited(&app, version, &id, state).await?;
    match app.preview(&raw, false, None).await {
        Ok(plan) => Ok(html(StatusCode::OK, &page(&signed, &id, &action, version, Some(&plan)))),
        Err(ApiError::Invalid(es)) => {
            let mut p = page(&signed, &id, &action, version, None);
            p.errors = es.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &p))
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes the previewed change, against the version previewed.
pub(crate) async fn confirm(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Result<Response, Problem> {
    let (signed, form, state) = checked(&app, &headers, &action, form).await?;
    let version = form.version.ok_or_else(|| Problem::bad_request("the form names no version"))?;
    let force = form.force.as_deref() == Some("on");
    let reason = form.reason.clone().filter(|r| !r.trim().is_empty());
    if force && reason.is_none() {
        let raw = edited(&app, version, &id, state).await?;
        let plan = app.preview(&raw, false, None).await?;
        let mut p = page(&signed, &id, &action, version, Some(&plan));
        p.errors = vec!["reason: a forced change needs a reason, which is recorded in the log".into()];
        return Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &p));
    }
    let raw = match edited(&app, version, &id, state).await {
        Ok(r) => r,
        Err(p) if p.status == StatusCode::PRECONDITION_FAILED => {
            return Ok(conflict(&app, &signed, &id, &action, version).await)
        }
        Err(p) => return Err(p),
    };
    let r = app
        .change(ChangeRequest {
            raw,
            if_match: IfMatch::Version(version),
            force,
            reason: reason.clone(),
            actor: signed.key.name.clone(),
            action: format!("experiment.{action}"),
        })
        .await;
    match r {
        Ok(c) => {
            Ok(Redirect::to(&format!("/console/experiments/{}?done={}", urlencode(&id), c.version)).into_response())
        }
        Err(ApiError::Refused(plan)) => {
            let mut p = page(&signed, &id, &action, version, Some(&plan));
            p.errors = vec!["the change was refused: nothing was written".into()];
            p.reason = reason.unwrap_or_default();
            Ok(html(StatusCode::CONFLICT, &p))
        }
        Err(ApiError::VersionMismatch { .. }) => Ok(conflict(&app, &signed, &id, &action, version).await),
        Err(ApiError::Invalid(es)) => {
            let mut p = page(&signed, &id, &action, version, None);
            p.errors = es.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &p))
        }
        Err(e) => Err(e.into()),
    }
}

async fn conflict(app: &App, signed: &Signed, id: &str, action: &str, version: u64) -> Response {
    let current = app.live().version;
    let mut p = page(signed, id, action, version, None);
    p.conflict = Some(format!(
        "Someone else changed the configuration first: you previewed version {version}, it is now at version {current}. Nothing was written. Look at the new state and preview again."
    ));
    html(StatusCode::CONFLICT, &p)
}

/// Percent-encodes an id for a path segment.
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
