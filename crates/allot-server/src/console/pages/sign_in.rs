//! `GET/POST /console/sign-in`, `POST /console/sign-out`.

use crate::console::page::{html, Chrome, Problem};
use crate::console::session;
use crate::App;
use askama::Template;
use axum::extract::{rejection::FormRejection, State};
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignIn {
    chrome: Chrome,
    error: Option<&'static str>,
}

/// The sign-in form (or the overview, when already signed in).
pub(crate) async fn form(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Problem> {
    if session::current(&app, &headers).await?.is_some() {
        return Ok(Redirect::to("/console").into_response());
    }
    Ok(html(StatusCode::OK, &SignIn { chrome: Chrome::new("Sign in", None), error: None }))
}

/// What the sign-in form sends.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct SignInForm {
    key: String,
}

/// Signs in: a session cookie and on to the overview; or the form again with why not.
pub(crate) async fn post(
    State(app): State<Arc<App>>,
    ext: Extensions,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Result<Response, Problem> {
    session::same_origin(&headers)?;
    let Form(f) = form.map_err(|e| Problem::bad_request(format!("the sign-in form: {e}")))?;
    match session::sign_in(&app, &f.key, session::over_tls(&ext)).await? {
        Ok(cookie) => Ok((
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/console".parse().map_err(|_| Problem::internal("location"))?),
                (header::SET_COOKIE, cookie),
            ],
        )
            .into_response()),
        Err(refused) => {
            let status = match refused {
                session::Refused::Unknown => StatusCode::UNAUTHORIZED,
                session::Refused::Evaluator => StatusCode::FORBIDDEN,
            };
            Ok(html(status, &SignIn { chrome: Chrome::new("Sign in", None), error: Some(refused.message()) }))
        }
    }
}

/// What the sign-out form sends.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct CsrfForm {
    csrf: Option<String>,
}

/// Signs out: the session is deleted and the cookie cleared.
pub(crate) async fn sign_out(
    State(app): State<Arc<App>>,
    ext: Extensions,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    session::check_csrf(&headers, &signed, csrf.as_deref())?;
    let cookie = session::sign_out(&app, &signed, session::over_tls(&ext)).await?;
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, axum::http::HeaderValue::from_static("/console/sign-in")), (header::SET_COOKIE, cookie)],
    )
        .into_response())
}
