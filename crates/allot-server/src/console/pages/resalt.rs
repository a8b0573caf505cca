//! The salt machine from the console: `GET /console/resalt` (the form), `POST /console/resalt`
//! (its dry run: what a re-salt of one unit type, or every one, would re-randomise, scope by
//! scope; nothing is written) and `POST /console/resalt/confirm` (the re-salt, through
//! [`App::resalt`] against the version previewed, as `POST /api/v1/resalt` makes it; a change in
//! between is a conflict and writes nothing).

use super::change::{self, ChangeForm, Since};
use crate::app::IfMatch;
use crate::console::page::{html, Chrome, Problem};
use crate::console::session::Signed;
use crate::error::ApiError;
use crate::resalt::ResaltRequest;
use crate::App;
use allot_core::salt::ResaltReport;
use askama::Template;
use axum::extract::{rejection::FormRejection, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "resalt.html")]
struct Page {
    chrome: Chrome,
    units: Vec<String>,
    unit: String,
    reason: String,
    version: u64,
    /// The dry run's reports (none on the form).
    reports: Option<Vec<ResaltReport>>,
    errors: Vec<String>,
    conflict: Option<String>,
    since: Vec<Since>,
}

fn page(app: &App, signed: &Signed, version: u64, form: Option<&ChangeForm>) -> Page {
    let mut chrome = Chrome::new("Re-salt", Some(signed));
    chrome.version = Some(version);
    let live = app.live();
    let units = live
        .config
        .get("units")
        .and_then(serde_json::Value::as_object)
        .map(|u| u.keys().cloned().collect())
        .unwrap_or_default();
    Page {
        chrome,
        units,
        unit: form.and_then(|f| f.unit.clone()).unwrap_or_default(),
        reason: form.and_then(|f| f.reason.clone()).unwrap_or_default(),
        version,
        reports: None,
        errors: vec![],
        conflict: None,
        since: vec![],
    }
}

/// `GET /console/resalt`.
pub(crate) async fn form(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    signed.must_act()?;
    let version = app.live().version;
    Ok(html(StatusCode::OK, &page(&app, &signed, version, None)))
}

fn request(signed: &Signed, form: &ChangeForm, version: u64, dry_run: bool) -> ResaltRequest {
    ResaltRequest {
        unit_type: form.unit.clone().filter(|u| !u.is_empty()),
        reason: form.reason.clone().filter(|r| !r.trim().is_empty()),
        actor: signed.key.name.clone(),
        if_match: Some(IfMatch::Version(version)),
        dry_run,
    }
}

async fn run(app: &App, signed: &Signed, form: &ChangeForm, dry_run: bool) -> Result<Response, Problem> {
    let version = form.version.unwrap_or(app.live().version);
    let mut p = page(app, signed, version, Some(form));
    match app.resalt(request(signed, form, version, dry_run)).await {
        Ok(r) if r.committed => Ok(Redirect::to(&format!("/console/audit/{}", r.version)).into_response()),
        Ok(r) => {
            p.reports = Some(r.reports);
            Ok(html(StatusCode::OK, &p))
        }
        Err(ApiError::VersionMismatch { current, .. }) => {
            p.conflict = Some(format!(
                "Someone else changed the configuration first: you previewed version {version}, it is now at version {current}. Nothing was written. Preview the re-salt again."
            ));
            p.since = change::since(app, version).await;
            Ok(html(StatusCode::CONFLICT, &p))
        }
        Err(ApiError::Invalid(es)) => {
            p.errors = es.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &p))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /console/resalt`: the dry run.
pub(crate) async fn preview(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Result<Response, Problem> {
    let (signed, form) = change::checked(&app, &headers, form).await?;
    run(&app, &signed, &form, true).await
}

/// `POST /console/resalt/confirm`: the re-salt.
pub(crate) async fn confirm(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Result<Response, Problem> {
    let (signed, form) = change::checked(&app, &headers, form).await?;
    if form.version.is_none() {
        return Err(Problem::bad_request("the form names no version"));
    }
    run(&app, &signed, &form, false).await
}
