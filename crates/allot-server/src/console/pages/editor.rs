//! Config as code from the console: `GET /console/config` (every entity of the current version,
//! collection by collection), the entity forms (`/console/new/{collection}`,
//! `/console/edit/{collection}/{id}`: one input per field, module [`super::form`], or with
//! `?as=yaml` the entity as in the configuration file; either way with the same validation errors
//! the API returns shown at the input or field they name), YAML export
//! (`/console/export.yaml`) and import (`/console/import`). Every form posts to the preview of
//! [`super::change`]; nothing is written before its confirmation.

use super::change::{self, collection, ChangeForm, Proposal};
use super::form::{self, Values};
use crate::console::page::{html, Chrome, Problem};
use crate::console::session::Signed;
use crate::App;
use allot_core::error::FieldError;
use askama::Template;
use axum::extract::{rejection::FormRejection, rejection::RawFormRejection, Path, Query, RawForm, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde_json::Value;
use std::sync::Arc;

/// A field error as the form shows it: at the name field for `id`, else at the YAML, with a path
/// into the configuration made relative to the entity.
pub(crate) struct FieldProblem {
    pub(crate) path: String,
    pub(crate) message: String,
}

#[derive(Template)]
#[template(path = "editor.html")]
struct Editor {
    chrome: Chrome,
    title: String,
    /// Where the form posts (its preview).
    action: String,
    collection: &'static str,
    one: &'static str,
    /// The id, editable when creating.
    id: String,
    create: bool,
    import: bool,
    yaml: String,
    /// The form has no YAML (a surface is only a name).
    nameonly: bool,
    note: Option<&'static str>,
    /// Why this entity is edited as YAML rather than field by field.
    why_yaml: Option<String>,
    /// The per-field form of the same entity, if it has one.
    fields_url: Option<String>,
    id_errors: Vec<FieldProblem>,
    yaml_errors: Vec<FieldProblem>,
    version: u64,
    back: String,
}

/// The per-field form of an entity.
#[derive(Template)]
#[template(path = "form.html")]
struct FieldsPage {
    chrome: Chrome,
    title: String,
    action: String,
    collection: &'static str,
    one: &'static str,
    id: String,
    create: bool,
    note: Option<&'static str>,
    parts: Vec<form::Part>,
    lists: Vec<form::Suggestions>,
    id_errors: Vec<FieldProblem>,
    /// Errors that name no input of the form (another entity, the whole configuration).
    errors: Vec<FieldProblem>,
    /// The YAML editor of the same entity.
    yaml_url: String,
    version: u64,
    back: String,
}

/// The per-field form of entity `id` of collection `c` with the inputs `values`, and `errors`
/// (from the validator, paths of the configuration, or from reading the inputs) at their inputs.
#[allow(clippy::too_many_arguments)]
fn fields_page(
    signed: &Signed,
    c: &'static str,
    id: &str,
    create: bool,
    version: u64,
    config: &Value,
    values: Values,
    errors: Vec<FieldError>,
) -> FieldsPage {
    let mut base = editor(signed, c, id, String::new(), create, version, vec![]);
    let (id_errors, inside, elsewhere) = sort(errors, c, id);
    let ctx = form::Context { config, editing: (!create).then_some(id) };
    let (mut parts, lists) = form::parts(c, &values, &ctx);
    let unplaced = form::place(c, &mut parts, &values, inside);
    let errors = unplaced
        .into_iter()
        .map(|e| FieldProblem {
            path: if e.path.is_empty() { "(the whole entry)".into() } else { e.path },
            message: e.message,
        })
        .chain(elsewhere.into_iter().map(|e| FieldProblem { path: e.path, message: e.message }))
        .collect();
    let yaml_url = if create {
        format!("/console/new/{c}?as=yaml")
    } else {
        format!("/console/edit/{c}/{}?as=yaml", change::urlencode(id))
    };
    base.chrome.title = base.title.clone();
    FieldsPage {
        chrome: base.chrome,
        title: base.title,
        action: base.action,
        collection: c,
        one: base.one,
        id: id.to_string(),
        create,
        note: base.note,
        parts,
        lists,
        id_errors,
        errors,
        yaml_url,
        version,
        back: base.back,
    }
}

/// What the form says of a collection.
fn note(c: &str) -> Option<&'static str> {
    match c {
        "groups" => Some(
            "A group's unit type, share and slots are fixed once it is created (rule slots-fixed): change control refuses any change to them. To change them, create a new group.",
        ),
        "holdouts" => Some(
            "A holdout's buckets never change while an experiment it applies to runs: a different share or unit type is refused while it is in use.",
        ),
        "experiments" => Some(
            "A running experiment's buckets never move: only growing its share is allowed; anything that would move its units is refused with the exact share that would move, unless forced with a reason.",
        ),
        "units" => Some("A unit type's bucket count and attribute are fixed while experiments use it."),
        "surfaces" => Some("A surface is only a name: experiments join it by listing it in `surfaces`."),
        _ => None,
    }
}

/// A starting point for a new entity, from what the configuration has.
fn template(c: &str, cfg: &Value) -> String {
    let unit = cfg.get("units").and_then(Value::as_object).and_then(|u| u.keys().next().cloned());
    let unit = unit.unwrap_or_else(|| "user".into());
    let surface = cfg.get("surfaces").and_then(Value::as_array).and_then(|s| s.first()).and_then(Value::as_str);
    match c {
        "experiments" => {
            let surfaces = surface.map(|s| format!("surfaces: [{s}]\n")).unwrap_or_default();
            format!("unit: {unit}\n{surfaces}share: 10%\nvariants: {{control: 1, treatment: 1}}\nstate: draft\n")
        }
        "holdouts" => format!("unit: {unit}\nshare: 1%\napplies_to: [all]\n"),
        "groups" => format!("unit: {unit}\nshare: 20%\nslots: [50%, 50%]\n"),
        "segments" => "attribute: country\nin: [SE, NO]\n".into(),
        "units" => "attribute: account_id\n".into(),
        _ => String::new(),
    }
}

/// Errors by where they go: at the name (`id`), inside the entity (paths made relative to it),
/// elsewhere (the paths as they are).
fn sort(errors: Vec<FieldError>, collection: &str, id: &str) -> (Vec<FieldProblem>, Vec<FieldError>, Vec<FieldError>) {
    let prefix = format!("{collection}.{id}");
    let (mut at_id, mut inside, mut elsewhere) = (vec![], vec![], vec![]);
    for e in errors {
        if e.path == "id" {
            at_id.push(FieldProblem { path: e.path, message: e.message });
        } else if e.path == "yaml" {
            inside.push(FieldError::new("", e.message));
        } else {
            match e.path.strip_prefix(&prefix) {
                Some(rest) if rest.is_empty() || rest.starts_with('.') || rest.starts_with('[') => {
                    inside.push(FieldError::new(rest.trim_start_matches('.'), e.message))
                }
                _ => elsewhere.push(e),
            }
        }
    }
    (at_id, inside, elsewhere)
}

fn split(errors: Vec<FieldError>, collection: &str, id: &str) -> (Vec<FieldProblem>, Vec<FieldProblem>) {
    let prefix = format!("{collection}.{id}");
    let (mut at_id, mut at_yaml) = (vec![], vec![]);
    for e in errors {
        if e.path == "id" {
            at_id.push(FieldProblem { path: e.path, message: e.message });
        } else {
            let path = match e.path.strip_prefix(&prefix) {
                Some("") => "(the whole entry)".to_string(),
                Some(rest) => rest.trim_start_matches('.').to_string(),
                None => e.path,
            };
            at_yaml.push(FieldProblem { path, message: e.message });
        }
    }
    (at_id, at_yaml)
}

#[allow(clippy::too_many_arguments)]
fn editor(
    signed: &Signed,
    c: &'static str,
    id: &str,
    yaml: String,
    create: bool,
    version: u64,
    errors: Vec<FieldError>,
) -> Editor {
    let one = collection(c).map(|(_, one)| one).unwrap_or("entity");
    let p = Proposal::Put { collection: c, id: id.to_string(), yaml: String::new(), create, fields: false };
    let title = if create { format!("New {one}") } else { format!("Edit {one} {id}") };
    let mut chrome = Chrome::new(title.clone(), Some(signed));
    chrome.version = Some(version);
    let (id_errors, yaml_errors) = split(errors, c, id);
    Editor {
        chrome,
        title,
        action: p.preview_url(),
        collection: c,
        one,
        id: id.to_string(),
        create,
        import: false,
        yaml,
        nameonly: c == "surfaces",
        note: note(c),
        why_yaml: None,
        fields_url: (c != "surfaces").then(|| {
            if create {
                format!("/console/new/{c}")
            } else {
                format!("/console/edit/{c}/{}", change::urlencode(id))
            }
        }),
        id_errors,
        yaml_errors,
        version,
        back: if c == "experiments" && !create {
            format!("/console/experiments/{}", change::urlencode(id))
        } else {
            "/console/config".into()
        },
    }
}

fn import_page(signed: &Signed, yaml: String, version: u64, errors: Vec<FieldError>) -> Editor {
    let mut chrome = Chrome::new("Import a configuration", Some(signed));
    chrome.version = Some(version);
    Editor {
        chrome,
        title: "Import a configuration".into(),
        action: "/console/import".into(),
        collection: "",
        one: "configuration",
        id: String::new(),
        create: false,
        import: true,
        yaml,
        nameonly: false,
        note: Some(
            "The whole configuration, as `allot apply` takes it: what it changes is previewed first, with its impact on running experiments.",
        ),
        why_yaml: None,
        fields_url: None,
        id_errors: vec![],
        yaml_errors: errors
            .into_iter()
            .map(|e| FieldProblem { path: e.path, message: e.message })
            .collect(),
        version,
        back: "/console/config".into(),
    }
}

/// The form again, with the errors at their fields (after a preview or confirmation whose
/// proposal does not validate).
pub(crate) async fn again(
    app: &App,
    signed: &Signed,
    p: &Proposal,
    version: u64,
    errors: Vec<FieldError>,
) -> Result<Response, Problem> {
    let page = match p {
        Proposal::Put { collection, id, yaml, create, fields: true } => {
            let entity = allot_core::config::parse_yaml(yaml).ok();
            let values = entity.as_ref().and_then(|e| form::values_of(collection, e).ok());
            match values {
                Some(values) => {
                    let live = app.live();
                    return Ok(html(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &fields_page(signed, collection, id, *create, version, &live.config, values, errors),
                    ));
                }
                None => editor(signed, collection, id, yaml.clone(), *create, version, errors),
            }
        }
        Proposal::Put { collection, id, yaml, create, .. } => {
            editor(signed, collection, id, yaml.clone(), *create, version, errors)
        }
        Proposal::Import { yaml } => import_page(signed, yaml.clone(), version, errors),
        _ => return Err(Problem::internal("an entity form for a lifecycle change")),
    };
    Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &page))
}

/// `?as=yaml`: the YAML editor instead of the per-field form.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct As {
    #[serde(rename = "as")]
    mode: Option<String>,
}

fn as_yaml(q: &Result<Query<As>, axum::extract::rejection::QueryRejection>) -> bool {
    matches!(q, Ok(Query(As { mode: Some(m) })) if m == "yaml")
}

/// `GET /console/new/{collection}[?as=yaml]`: the per-field form (or the YAML editor).
pub(crate) async fn new_form(
    State(app): State<Arc<App>>,
    Path(c): Path<String>,
    q: Result<Query<As>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    signed.must_act()?;
    let (c, _) = collection(&c)?;
    let live = app.live();
    let start = template(c, &live.config);
    if c != "surfaces" && !as_yaml(&q) {
        let values = allot_core::config::parse_yaml(&start).ok().and_then(|e| form::values_of(c, &e).ok());
        if let Some(values) = values {
            let page = fields_page(&signed, c, "", true, live.version, &live.config, values, vec![]);
            return Ok(html(StatusCode::OK, &page));
        }
    }
    Ok(html(StatusCode::OK, &editor(&signed, c, "", start, true, live.version, vec![])))
}

/// `GET /console/edit/{collection}/{id}[?as=yaml]`: the per-field form, or the YAML editor when
/// asked for or when the entity uses what the form cannot show (the page says what).
pub(crate) async fn edit_form(
    State(app): State<Arc<App>>,
    Path((c, id)): Path<(String, String)>,
    q: Result<Query<As>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    signed.must_act()?;
    let (c, one) = collection(&c)?;
    if c == "surfaces" {
        return Err(Problem::not_found("a surface is only a name: there is nothing to edit"));
    }
    let live = app.live();
    let Some(entity) = live.config.get(c).and_then(|m| m.get(&id)) else {
        return Err(Problem::not_found(format!("there is no {one} `{id}` in version {}", live.version)));
    };
    let yaml = crate::yaml::to_yaml(entity);
    if as_yaml(&q) {
        return Ok(html(StatusCode::OK, &editor(&signed, c, &id, yaml, false, live.version, vec![])));
    }
    match form::values_of(c, entity) {
        Ok(values) => {
            Ok(html(StatusCode::OK, &fields_page(&signed, c, &id, false, live.version, &live.config, values, vec![])))
        }
        Err(why) => {
            let mut page = editor(&signed, c, &id, yaml, false, live.version, vec![]);
            page.why_yaml = Some(format!("This {one} is edited as YAML: {why}."));
            Ok(html(StatusCode::OK, &page))
        }
    }
}

/// The proposal of an entity form: its YAML as posted (the YAML editor, and the confirmation of
/// either form), or written from the per-field form's inputs. Inputs whose text cannot be read
/// give the form again, with the errors at them.
#[allow(clippy::too_many_arguments)]
fn put(
    app: &App,
    signed: &Signed,
    c: &'static str,
    id: String,
    form: &ChangeForm,
    inputs: Vec<(String, String)>,
    create: bool,
) -> Result<Proposal, Box<Response>> {
    let fields = form.mode.as_deref() == Some("fields");
    if let Some(yaml) = form.yaml.clone() {
        return Ok(Proposal::Put { collection: c, id, yaml, create, fields });
    }
    if !fields {
        return Ok(Proposal::Put { collection: c, id, yaml: String::new(), create, fields });
    }
    let values = Values::new(inputs);
    match form::entity_of(c, &values) {
        Ok(entity) => Ok(Proposal::Put { collection: c, id, yaml: crate::yaml::to_yaml(&entity), create, fields }),
        Err(errors) => {
            // Paths of inputs, made paths inside the entity like the validator's.
            let errors =
                errors.into_iter().map(|e| FieldError::new(format!("{c}.{id}.{}", e.path), e.message)).collect();
            let live = app.live();
            let version = form.version.unwrap_or(live.version);
            let page = fields_page(signed, c, &id, create, version, &live.config, values, errors);
            Err(Box::new(html(StatusCode::UNPROCESSABLE_ENTITY, &page)))
        }
    }
}

/// `POST /console/new/{collection}`: the preview.
pub(crate) async fn new_preview(
    State(app): State<Arc<App>>,
    Path(c): Path<String>,
    headers: HeaderMap,
    form: Result<RawForm, RawFormRejection>,
) -> Result<Response, Problem> {
    new_post(app, c, headers, form, false).await
}

/// `POST /console/new/{collection}/confirm`.
pub(crate) async fn new_confirm(
    State(app): State<Arc<App>>,
    Path(c): Path<String>,
    headers: HeaderMap,
    form: Result<RawForm, RawFormRejection>,
) -> Result<Response, Problem> {
    new_post(app, c, headers, form, true).await
}

async fn new_post(
    app: Arc<App>,
    c: String,
    headers: HeaderMap,
    form: Result<RawForm, RawFormRejection>,
    confirm: bool,
) -> Result<Response, Problem> {
    let (signed, form, inputs) = change::checked_inputs(&app, &headers, form).await?;
    let (c, _) = collection(&c)?;
    let id = form.id.clone().unwrap_or_default().trim().to_string();
    let p = match put(&app, &signed, c, id, &form, inputs, true) {
        Ok(p) => p,
        Err(page) => return Ok(*page),
    };
    if confirm {
        change::make(&app, &signed, &p, &form).await
    } else {
        change::show(&app, &signed, &p, &form).await
    }
}

/// `POST /console/edit/{collection}/{id}`: the preview.
pub(crate) async fn edit_preview(
    State(app): State<Arc<App>>,
    Path(ci): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<RawForm, RawFormRejection>,
) -> Result<Response, Problem> {
    edit_post(app, ci, headers, form, false).await
}

/// `POST /console/edit/{collection}/{id}/confirm`.
pub(crate) async fn edit_confirm(
    State(app): State<Arc<App>>,
    Path(ci): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<RawForm, RawFormRejection>,
) -> Result<Response, Problem> {
    edit_post(app, ci, headers, form, true).await
}

async fn edit_post(
    app: Arc<App>,
    (c, id): (String, String),
    headers: HeaderMap,
    form: Result<RawForm, RawFormRejection>,
    confirm: bool,
) -> Result<Response, Problem> {
    let (signed, form, inputs) = change::checked_inputs(&app, &headers, form).await?;
    let (c, _) = collection(&c)?;
    let p = match put(&app, &signed, c, id, &form, inputs, false) {
        Ok(p) => p,
        Err(page) => return Ok(*page),
    };
    if confirm {
        change::make(&app, &signed, &p, &form).await
    } else {
        change::show(&app, &signed, &p, &form).await
    }
}

/// `GET /console/import`.
pub(crate) async fn import_form(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    signed.must_act()?;
    let live = app.live();
    Ok(html(StatusCode::OK, &import_page(&signed, crate::yaml::to_yaml(&live.config), live.version, vec![])))
}

/// `POST /console/import`: the preview.
pub(crate) async fn import_preview(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Result<Response, Problem> {
    import_post(app, headers, form, false).await
}

/// `POST /console/import/confirm`.
pub(crate) async fn import_confirm(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Result<Response, Problem> {
    import_post(app, headers, form, true).await
}

async fn import_post(
    app: Arc<App>,
    headers: HeaderMap,
    form: Result<Form<ChangeForm>, FormRejection>,
    confirm: bool,
) -> Result<Response, Problem> {
    let (signed, form) = change::checked(&app, &headers, form).await?;
    let p = Proposal::Import { yaml: form.yaml.clone().unwrap_or_default() };
    if confirm {
        change::make(&app, &signed, &p, &form).await
    } else {
        change::show(&app, &signed, &p, &form).await
    }
}

/// `?version=` of the export.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Version {
    version: Option<u64>,
}

/// `GET /console/export.yaml[?version=N]`: the configuration of the current (or a recorded)
/// version as YAML, to download.
pub(crate) async fn export(
    State(app): State<Arc<App>>,
    q: Result<Query<Version>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    super::signed(&app, &headers).await?;
    let asked = q.ok().and_then(|Query(v)| v.version);
    let (version, config) = match asked {
        None => {
            let live = app.live();
            (live.version, live.config.clone())
        }
        Some(v) => {
            let Some(st) = app.store.load_version(v).await? else {
                return Err(Problem::not_found(format!("version {v} does not exist")));
            };
            (v, st.config.unwrap_or(Value::Null))
        }
    };
    let yaml = crate::yaml::to_yaml(&config);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/yaml; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"allot-v{version}.yaml\"")),
        ],
        yaml,
    )
        .into_response())
}

struct Entities {
    collection: &'static str,
    one: &'static str,
    ids: Vec<String>,
}

#[derive(Template)]
#[template(path = "config.html")]
struct ConfigPage {
    chrome: Chrome,
    can_act: bool,
    collections: Vec<Entities>,
    done: Option<String>,
}

/// `?done=` after a change.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Done {
    done: Option<u64>,
}

/// `GET /console/config`: every entity of the current version, with its form.
pub(crate) async fn config(
    State(app): State<Arc<App>>,
    q: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    let live = app.live();
    let mut chrome = Chrome::new("Configuration", Some(&signed));
    chrome.version = Some(live.version);
    let collections = change::COLLECTIONS
        .iter()
        .map(|(c, one)| Entities {
            collection: c,
            one,
            ids: match live.config.get(*c) {
                Some(Value::Object(m)) => m.keys().cloned().collect(),
                Some(Value::Array(l)) => l.iter().filter_map(|s| s.as_str().map(String::from)).collect(),
                _ => vec![],
            },
        })
        .collect();
    let page = ConfigPage {
        chrome,
        can_act: signed.can_act(),
        collections,
        done: q.ok().and_then(|Query(d)| d.done).map(|v| format!("Committed as version {v}.")),
    };
    Ok(html(StatusCode::OK, &page))
}
