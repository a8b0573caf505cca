//! Every change through the preview. A change form proposes one edit of the configuration of the
//! version the page showed ([`Proposal`]): an experiment's lifecycle (start, stop, archive), growing
//! its share, creating or editing any entity (its YAML), importing a whole configuration. Posting
//! the form shows exactly what the change would do — the core's plan through [`App::preview`]: the
//! changes, the share of each running experiment's units that would move, every refusal with its
//! rule — and asks for confirmation; `.../confirm` makes it through [`App::change`] against the
//! version that was previewed (the API's code paths: there is no second change control here). A
//! change made by someone else in between is a conflict: nothing is written and the page shows what
//! changed meanwhile. A refused change can be forced with a reason, which the log records.
//!
//! Re-salting has its own engine (allot-core's salt machine through [`App::resalt`]) and so its own
//! preview: module [`super::resalt`].

use crate::app::{ChangeRequest, IfMatch};
use crate::console::page::{html, Chrome, Problem};
use crate::console::session::{self, Signed};
use crate::error::ApiError;
use crate::App;
use allot_core::error::FieldError;
use allot_core::plan::Plan;
use askama::Template;
use axum::extract::{rejection::FormRejection, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// What the change forms send (each form only the fields of its kind of change).
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ChangeForm {
    pub(crate) csrf: Option<String>,
    /// The version the page showed.
    pub(crate) version: Option<u64>,
    pub(crate) force: Option<String>,
    pub(crate) reason: Option<String>,
    /// Grow: the new share (`35%`).
    pub(crate) share: Option<String>,
    /// Create, edit, import: the entity (or the whole configuration) as YAML.
    pub(crate) yaml: Option<String>,
    /// Create: the new entity's id.
    pub(crate) id: Option<String>,
    /// Re-salt: one unit type (empty: every one).
    pub(crate) unit: Option<String>,
    /// Create, edit: `fields` when the entity comes from the per-field form (its other inputs
    /// are read by [`super::form`]); the YAML editor sends `yaml` instead.
    pub(crate) mode: Option<String>,
}

/// The collections of the configuration the console edits, with what the pages call them.
pub(crate) const COLLECTIONS: [(&str, &str); 6] = [
    ("experiments", "experiment"),
    ("surfaces", "surface"),
    ("segments", "segment"),
    ("groups", "group"),
    ("holdouts", "holdout"),
    ("units", "unit type"),
];

/// The collection named `name` and what one of it is called.
pub(crate) fn collection(name: &str) -> Result<(&'static str, &'static str), Problem> {
    COLLECTIONS.iter().find(|(c, _)| *c == name).copied().ok_or_else(|| {
        let names: Vec<&str> = COLLECTIONS.iter().map(|(c, _)| *c).collect();
        Problem::not_found(format!("{name}: no such collection (the collections are {})", names.join(", ")))
    })
}

/// One proposed edit of a configuration.
#[derive(Debug, Clone)]
pub(crate) enum Proposal {
    /// Start, stop or archive an experiment.
    Lifecycle { id: String, action: &'static str, state: &'static str },
    /// Set a running experiment's share (growing only adds units; shrinking is refused).
    Grow { id: String, share: String },
    /// Create or replace one entity with its YAML (a surface has no body: only its name);
    /// `fields` when the YAML was written from the per-field form (which is shown again on an
    /// error).
    Put { collection: &'static str, id: String, yaml: String, create: bool, fields: bool },
    /// Replace the whole configuration (config as code).
    Import { yaml: String },
}

impl Proposal {
    /// The lifecycle action or grow `action` of experiment `id`.
    pub(crate) fn of_action(id: &str, action: &str, form: &ChangeForm) -> Result<Proposal, Problem> {
        let lifecycle = |action, state| Ok(Proposal::Lifecycle { id: id.to_string(), action, state });
        match action {
            "start" => lifecycle("start", "running"),
            "pause" => lifecycle("pause", "paused"),
            "resume" => lifecycle("resume", "running"),
            "stop" => lifecycle("stop", "stopped"),
            "archive" => lifecycle("archive", "archived"),
            "grow" => Ok(Proposal::Grow { id: id.to_string(), share: form.share.clone().unwrap_or_default() }),
            _ => Err(Problem::not_found(format!(
                "{action}: the actions are start, pause, resume, stop, archive and grow"
            ))),
        }
    }

    /// What the pages call the change.
    pub(crate) fn title(&self) -> String {
        match self {
            Proposal::Lifecycle { id, action, .. } => format!("{action} experiment {id}"),
            Proposal::Grow { id, share } => format!("set the share of experiment {id} to {share}"),
            Proposal::Put { collection, id, create, .. } => {
                let one = collection_label(collection);
                if *create {
                    format!("create {one} {id}")
                } else {
                    format!("edit {one} {id}")
                }
            }
            Proposal::Import { .. } => "import a configuration".into(),
        }
    }

    /// The audit log's `action`, as the API names it.
    fn audit_action(&self) -> String {
        match self {
            Proposal::Lifecycle { action, .. } => format!("experiment.{action}"),
            Proposal::Grow { .. } => "experiments.put".into(),
            Proposal::Put { collection, .. } => format!("{collection}.put"),
            Proposal::Import { .. } => "config.put".into(),
        }
    }

    /// Where the form of this change posts its preview.
    pub(crate) fn preview_url(&self) -> String {
        match self {
            Proposal::Lifecycle { id, action, .. } => format!("/console/experiments/{}/{action}", urlencode(id)),
            Proposal::Grow { id, .. } => format!("/console/experiments/{}/grow", urlencode(id)),
            Proposal::Put { collection, create: true, .. } => format!("/console/new/{collection}"),
            Proposal::Put { collection, id, .. } => format!("/console/edit/{collection}/{}", urlencode(id)),
            Proposal::Import { .. } => "/console/import".into(),
        }
    }

    /// The page of what the change is about (cancel, conflict, done).
    pub(crate) fn subject_url(&self) -> String {
        match self {
            Proposal::Lifecycle { id, .. } | Proposal::Grow { id, .. } => {
                format!("/console/experiments/{}", urlencode(id))
            }
            Proposal::Put { collection: "experiments", id, .. } => format!("/console/experiments/{}", urlencode(id)),
            Proposal::Put { .. } | Proposal::Import { .. } => "/console/config".into(),
        }
    }

    /// The fields the confirmation form carries again, besides the CSRF token and the version.
    fn hidden(&self) -> Vec<(&'static str, String)> {
        match self {
            Proposal::Lifecycle { .. } => vec![],
            Proposal::Grow { share, .. } => vec![("share", share.clone())],
            Proposal::Put { id, yaml, create, fields, .. } => {
                let mut h = vec![("yaml", yaml.clone())];
                if *create {
                    h.push(("id", id.clone()));
                }
                if *fields {
                    h.push(("mode", "fields".into()));
                }
                h
            }
            Proposal::Import { yaml } => vec![("yaml", yaml.clone())],
        }
    }

    /// The YAML the change proposes, if it has any, to show on the preview.
    fn proposed_yaml(&self) -> Option<String> {
        match self {
            Proposal::Put { yaml, collection, .. } if *collection != "surfaces" => Some(yaml.clone()),
            Proposal::Import { yaml } => Some(yaml.clone()),
            _ => None,
        }
    }

    /// Applies the edit to the raw configuration `raw` of a version. Errors name the field of
    /// the form (`yaml`, `share`, `id`) or the entity.
    fn apply(&self, raw: &mut Map<String, Value>, version: u64) -> Result<(), Vec<FieldError>> {
        match self {
            Proposal::Lifecycle { id, action, state } => {
                let e = experiment_mut(raw, id, version)?;
                let now = e.get("state").and_then(Value::as_str).unwrap_or("draft").to_string();
                if let Some(why) = allot_core::config::lifecycle_action_refused(action, &now) {
                    return Err(vec![FieldError::new(
                        format!("experiments.{id}.state"),
                        format!("{action}: experiment `{id}` is {now}; {why}"),
                    )]);
                }
                e.insert("state".into(), json!(state));
                Ok(())
            }
            Proposal::Grow { id, share } => {
                let e = experiment_mut(raw, id, version)?;
                let share = share.trim();
                if share.is_empty() {
                    return Err(vec![FieldError::new("share", "a share is required, e.g. 35%")]);
                }
                e.insert("share".into(), json!(share));
                Ok(())
            }
            Proposal::Put { collection, id, yaml, create, .. } => {
                check_id(id)?;
                let exists = match raw.get(*collection) {
                    Some(Value::Array(l)) => l.iter().any(|s| s.as_str() == Some(id)),
                    Some(Value::Object(m)) => m.contains_key(id),
                    _ => false,
                };
                if *create && exists {
                    return Err(vec![FieldError::new(
                        "id",
                        format!("{} `{id}` already exists in version {version}", collection_label(collection)),
                    )]);
                }
                if !*create && !exists {
                    return Err(vec![FieldError::new(
                        format!("{collection}.{id}"),
                        format!("there is no {} `{id}` in version {version}", collection_label(collection)),
                    )]);
                }
                if *collection == "surfaces" {
                    let list = raw.entry("surfaces").or_insert_with(|| json!([]));
                    if let Value::Array(l) = list {
                        l.push(json!(id));
                    }
                    return Ok(());
                }
                let v = parse_yaml(yaml)?;
                if !v.is_object() {
                    return Err(vec![FieldError::new(
                        "yaml",
                        format!("a {} is a mapping, as in the configuration file", collection_label(collection)),
                    )]);
                }
                let map = raw.entry(*collection).or_insert_with(|| json!({}));
                if let Value::Object(m) = map {
                    m.insert(id.clone(), v);
                }
                Ok(())
            }
            Proposal::Import { yaml } => {
                let Value::Object(v) = parse_yaml(yaml)? else {
                    return Err(vec![FieldError::new("yaml", "the configuration must be a mapping")]);
                };
                *raw = v;
                Ok(())
            }
        }
    }
}

/// The raw experiment `id` of a configuration.
fn experiment_mut<'a>(
    raw: &'a mut Map<String, Value>,
    id: &str,
    version: u64,
) -> Result<&'a mut Map<String, Value>, Vec<FieldError>> {
    raw.get_mut("experiments").and_then(|e| e.get_mut(id)).and_then(Value::as_object_mut).ok_or_else(|| {
        vec![FieldError::new(
            format!("experiments.{id}"),
            format!("there is no experiment `{id}` in version {version}"),
        )]
    })
}

fn collection_label(c: &str) -> &'static str {
    COLLECTIONS.iter().find(|(n, _)| *n == c).map(|(_, l)| *l).unwrap_or("entity")
}

fn check_id(id: &str) -> Result<(), Vec<FieldError>> {
    if id.trim().is_empty() {
        return Err(vec![FieldError::new("id", "a name is required")]);
    }
    if id.chars().any(char::is_control) || id != id.trim() {
        return Err(vec![FieldError::new("id", "a name cannot contain control characters or surrounding spaces")]);
    }
    Ok(())
}

fn parse_yaml(yaml: &str) -> Result<Value, Vec<FieldError>> {
    allot_core::config::parse_yaml(yaml).map_err(|e| vec![FieldError::new("yaml", e.message)])
}

/// A row of the impact table.
pub(crate) struct ImpactRow {
    pub(crate) experiment: String,
    pub(crate) moved: String,
    pub(crate) before: u64,
    pub(crate) after: u64,
    pub(crate) sticky: bool,
}

/// A change recorded after the version a page showed.
pub(crate) struct Since {
    pub(crate) version: u64,
    pub(crate) time: String,
    pub(crate) actor: String,
    pub(crate) changes: Vec<String>,
}

#[derive(Template)]
#[template(path = "preview.html")]
struct Preview {
    chrome: Chrome,
    title: String,
    subject: String,
    confirm: String,
    hidden: Vec<(&'static str, String)>,
    yaml: Option<String>,
    version: u64,
    changes: Vec<String>,
    impact: Vec<ImpactRow>,
    refusals: Vec<(String, String, String)>,
    warnings: Vec<String>,
    errors: Vec<String>,
    conflict: Option<String>,
    since: Vec<Since>,
    reason: String,
}

/// Checks the session, the CSRF token and the role; returns the signed caller and the form.
pub(crate) async fn checked(
    app: &App,
    headers: &HeaderMap,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Result<(Signed, ChangeForm), Problem> {
    let signed = super::signed(app, headers).await?;
    let form = form.map(|Form(f)| f).ok();
    session::check_csrf(headers, &signed, form.as_ref().and_then(|f| f.csrf.as_deref()))?;
    signed.must_act()?;
    let form = form.ok_or_else(|| Problem::bad_request("the form is malformed"))?;
    Ok((signed, form))
}

/// [`checked`] for a form whose inputs are read by name as well (the per-field entity forms):
/// the signed caller, the change form, and every posted input in order.
pub(crate) async fn checked_inputs(
    app: &App,
    headers: &HeaderMap,
    form: Result<axum::extract::RawForm, axum::extract::rejection::RawFormRejection>,
) -> Result<(Signed, ChangeForm, Vec<(String, String)>), Problem> {
    let bytes = form.ok().map(|axum::extract::RawForm(b)| b);
    let parsed = bytes.as_ref().and_then(|b| {
        let form = serde_urlencoded::from_bytes::<ChangeForm>(b).ok()?;
        let inputs = serde_urlencoded::from_bytes::<Vec<(String, String)>>(b).ok()?;
        Some((form, inputs))
    });
    let signed = super::signed(app, headers).await?;
    session::check_csrf(headers, &signed, parsed.as_ref().and_then(|(f, _)| f.csrf.as_deref()))?;
    signed.must_act()?;
    let (form, inputs) = parsed.ok_or_else(|| Problem::bad_request("the form is malformed"))?;
    Ok((signed, form, inputs))
}

/// What editing the configuration of `version` gave: the new raw configuration, or why not.
enum Edited {
    Raw(Value),
    /// The form's fields are wrong (shown at the field).
    Invalid(Vec<FieldError>),
    /// The version is not there (a conflict).
    Gone,
}

/// The configuration of `version` with the proposal applied.
async fn edited(app: &App, version: u64, p: &Proposal) -> Result<Edited, Problem> {
    let Some(st) = app.store.load_version(version).await? else { return Ok(Edited::Gone) };
    let mut raw = match st.config {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    Ok(match p.apply(&mut raw, version) {
        Ok(()) => Edited::Raw(Value::Object(raw)),
        Err(es) => Edited::Invalid(es),
    })
}

fn page(signed: &Signed, p: &Proposal, version: u64, plan: Option<&Plan>) -> Preview {
    let mut chrome = Chrome::new(format!("{}: preview", p.title()), Some(signed));
    chrome.version = Some(version);
    Preview {
        chrome,
        title: p.title(),
        subject: p.subject_url(),
        confirm: format!("{}/confirm", p.preview_url()),
        hidden: p.hidden(),
        yaml: p.proposed_yaml(),
        version,
        changes: plan
            .map(|p| p.changes.iter().map(|c| format!("{} {} {}: {}", c.action, c.entity, c.id, c.detail)).collect())
            .unwrap_or_default(),
        impact: plan.map(impact_rows).unwrap_or_default(),
        refusals: plan
            .map(|p| p.refusals.iter().map(|r| (r.rule.clone(), r.path.clone(), r.message.clone())).collect())
            .unwrap_or_default(),
        warnings: plan.map(|p| p.warnings.clone()).unwrap_or_default(),
        errors: vec![],
        conflict: None,
        since: vec![],
        reason: String::new(),
    }
}

/// The plan's impact on running experiments, as table rows.
pub(crate) fn impact_rows(p: &Plan) -> Vec<ImpactRow> {
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
}

/// Where field errors are shown: on the entity editor for a create, edit or import (the form the
/// person typed in), else on the preview.
async fn invalid(
    app: &App,
    signed: &Signed,
    p: &Proposal,
    version: u64,
    errors: Vec<FieldError>,
) -> Result<Response, Problem> {
    match p {
        Proposal::Put { .. } | Proposal::Import { .. } => super::editor::again(app, signed, p, version, errors).await,
        _ => {
            let mut page = page(signed, p, version, None);
            page.errors = errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

/// The preview of a proposal: nothing is written.
pub(crate) async fn show(app: &App, signed: &Signed, p: &Proposal, form: &ChangeForm) -> Result<Response, Problem> {
    let version = form.version.unwrap_or(app.live().version);
    let raw = match edited(app, version, p).await? {
        Edited::Raw(r) => r,
        Edited::Invalid(es) => return invalid(app, signed, p, version, es).await,
        Edited::Gone => return Ok(conflict(app, signed, p, version).await),
    };
    match app.preview(&raw, false, None).await {
        Ok(plan) => Ok(html(StatusCode::OK, &page(signed, p, version, Some(&plan)))),
        Err(ApiError::Invalid(es)) => invalid(app, signed, p, version, es).await,
        Err(e) => Err(e.into()),
    }
}

/// Makes the previewed change, against the version previewed.
pub(crate) async fn make(app: &App, signed: &Signed, p: &Proposal, form: &ChangeForm) -> Result<Response, Problem> {
    let version = form.version.ok_or_else(|| Problem::bad_request("the form names no version"))?;
    let force = form.force.as_deref() == Some("on");
    let reason = form.reason.clone().filter(|r| !r.trim().is_empty());
    let raw = match edited(app, version, p).await? {
        Edited::Raw(r) => r,
        Edited::Invalid(es) => return invalid(app, signed, p, version, es).await,
        Edited::Gone => return Ok(conflict(app, signed, p, version).await),
    };
    if force && reason.is_none() {
        let plan = app.preview(&raw, false, None).await?;
        let mut page = page(signed, p, version, Some(&plan));
        page.errors = vec!["reason: a forced change needs a reason, which is recorded in the log".into()];
        return Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let r = app
        .change(ChangeRequest {
            raw,
            if_match: IfMatch::Version(version),
            force,
            reason: reason.clone(),
            actor: signed.key.name.clone(),
            action: p.audit_action(),
        })
        .await;
    match r {
        Ok(c) => {
            let url = p.subject_url();
            let sep = if url.contains('?') { '&' } else { '?' };
            Ok(Redirect::to(&format!("{url}{sep}done={}", c.version)).into_response())
        }
        Err(ApiError::Refused(plan)) => {
            let mut page = page(signed, p, version, Some(&plan));
            page.errors = vec!["the change was refused: nothing was written".into()];
            page.reason = reason.unwrap_or_default();
            Ok(html(StatusCode::CONFLICT, &page))
        }
        Err(ApiError::VersionMismatch { .. }) => Ok(conflict(app, signed, p, version).await),
        Err(ApiError::Invalid(es)) => invalid(app, signed, p, version, es).await,
        Err(e) => Err(e.into()),
    }
}

/// The changes recorded after `version`, newest last, from the current state's log.
pub(crate) async fn since(app: &App, version: u64) -> Vec<Since> {
    let Ok(view) = app.console_view().await else { return vec![] };
    view.state
        .log
        .iter()
        .filter(|l| l.version > version)
        .map(|l| Since {
            version: l.version,
            time: l.time.clone(),
            actor: l.actor.clone().unwrap_or_else(|| "–".into()),
            changes: l.changes.clone(),
        })
        .collect()
}

async fn conflict(app: &App, signed: &Signed, p: &Proposal, version: u64) -> Response {
    let current = app.live().version;
    let mut page = page(signed, p, version, None);
    page.conflict = Some(format!(
        "Someone else changed the configuration first: you previewed version {version}, it is now at version {current}. Nothing was written. Here is what changed meanwhile; look at the new state and preview again."
    ));
    page.since = since(app, version).await;
    html(StatusCode::CONFLICT, &page)
}

/// `POST /console/experiments/{id}/{action}`: the preview of a lifecycle action or a grow.
pub(crate) async fn preview(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Result<Response, Problem> {
    let (signed, form) = checked(&app, &headers, form).await?;
    let p = Proposal::of_action(&id, &action, &form)?;
    show(&app, &signed, &p, &form).await
}

/// `POST /console/experiments/{id}/{action}/confirm`.
pub(crate) async fn confirm(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Result<Response, Problem> {
    let (signed, form) = checked(&app, &headers, form).await?;
    let p = Proposal::of_action(&id, &action, &form)?;
    make(&app, &signed, &p, &form).await
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
