//! Keys (admin only): `GET /console/keys` lists every key with its role, when it was created and
//! revoked, and when this node last saw it used; `POST /console/keys` creates one with a role
//! (its secret is shown once, on the page that answers); `POST /console/keys/{id}/revoke`
//! revokes one, which ends its console sessions at once. Through the same functions as
//! `POST /api/v1/keys` and `DELETE /api/v1/keys/{id}` ([`App::create_key`], [`App::revoke_key`]).
//!
//! People sign in with keys of their own: a key's name is the person (it is the actor of every
//! change they make) and its role is theirs. There are no separate console users.

use crate::auth::Need;
use crate::console::page::{html, Chrome, Problem};
use crate::console::session::{self, Signed};
use crate::error::ApiError;
use crate::App;
use allot_store::Role;
use askama::Template;
use axum::extract::{rejection::FormRejection, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use std::sync::Arc;

struct KeyRow {
    id: String,
    name: String,
    role: &'static str,
    created: String,
    revoked: Option<String>,
    last_used: String,
    yours: bool,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct Page {
    chrome: Chrome,
    keys: Vec<KeyRow>,
    /// A key just created: its name and secret, shown once.
    created: Option<(String, String)>,
    errors: Vec<String>,
    name: String,
    role: String,
    done: Option<String>,
}

fn unix_to_rfc3339(t: u64) -> String {
    i64::try_from(t)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

async fn admin(app: &App, headers: &HeaderMap) -> Result<Signed, Problem> {
    let signed = super::signed(app, headers).await?;
    if !Need::Keys.allows(signed.key.role) {
        return Err(Problem::forbidden(format!(
            "a key with role `{}` cannot manage keys; that needs an admin key",
            signed.key.role.as_str()
        )));
    }
    Ok(signed)
}

async fn page(app: &App, signed: &Signed) -> Result<Page, Problem> {
    let keys = app.store.list_keys().await?;
    let mut chrome = Chrome::new("Keys", Some(signed));
    chrome.version = Some(app.live().version);
    Ok(Page {
        chrome,
        keys: keys
            .into_iter()
            .map(|k| KeyRow {
                last_used: app.keys.last_used(&k.id).map(unix_to_rfc3339).unwrap_or_else(|| "–".into()),
                yours: k.id == signed.key.id,
                id: k.id,
                name: k.name,
                role: k.role.as_str(),
                created: k.created_at,
                revoked: k.revoked_at,
            })
            .collect(),
        created: None,
        errors: vec![],
        name: String::new(),
        role: "reader".into(),
        done: None,
    })
}

/// `GET /console/keys`.
pub(crate) async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Problem> {
    let signed = admin(&app, &headers).await?;
    Ok(html(StatusCode::OK, &page(&app, &signed).await?))
}

/// What the key forms send.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct KeyForm {
    csrf: Option<String>,
    name: Option<String>,
    role: Option<String>,
}

/// `POST /console/keys`: creates a key; the page shows its secret once.
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    form: Result<Form<KeyForm>, FormRejection>,
) -> Result<Response, Problem> {
    let signed = admin(&app, &headers).await?;
    let form = form.map(|Form(f)| f).ok();
    session::check_csrf(&headers, &signed, form.as_ref().and_then(|f| f.csrf.as_deref()))?;
    let form = form.ok_or_else(|| Problem::bad_request("the form is malformed"))?;
    let name = form.name.unwrap_or_default();
    let role_text = form.role.unwrap_or_default();
    let result = match Role::parse(&role_text) {
        Some(role) => app.create_key(&name, role).await,
        None => Err(ApiError::field("role", "the roles are admin, editor, reader and evaluator")),
    };
    match result {
        Ok((info, secret)) => {
            let mut p = page(&app, &signed).await?;
            p.created = Some((info.name, secret));
            Ok(html(StatusCode::CREATED, &p))
        }
        Err(ApiError::Invalid(es)) => {
            let mut p = page(&app, &signed).await?;
            p.errors = es.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
            p.name = name;
            p.role = role_text;
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &p))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /console/keys/{id}/revoke`.
pub(crate) async fn revoke(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<KeyForm>, FormRejection>,
) -> Result<Response, Problem> {
    let signed = admin(&app, &headers).await?;
    let form = form.map(|Form(f)| f).ok();
    session::check_csrf(&headers, &signed, form.as_ref().and_then(|f| f.csrf.as_deref()))?;
    match app.revoke_key(&id).await {
        // Revoking one's own key ends this session too: on to the sign-in page.
        Ok(()) if id == signed.key.id => Ok(Redirect::to("/console/sign-in").into_response()),
        Ok(()) => {
            let mut p = page(&app, &signed).await?;
            p.done = Some(format!("Key {id} revoked: it is refused from now on and its sessions have ended."));
            Ok(html(StatusCode::OK, &p))
        }
        Err(ApiError::Invalid(es)) => {
            let mut p = page(&app, &signed).await?;
            p.errors = es.iter().map(|e| e.message.clone()).collect();
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &p))
        }
        Err(e) => Err(e.into()),
    }
}
