//! Rendering pages: the chrome every page shares ([`Chrome`]), [`html`] for a rendered template,
//! [`Problem`] for error pages (never JSON, never a 5xx for bad input), and the security headers
//! of every console response ([`secure`]).

use super::assets;
use super::session::Signed;
use crate::error::ApiError;
use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// What the base template needs: the title, the assets, who is signed in.
#[derive(Debug, Clone)]
pub(crate) struct Chrome {
    pub(crate) title: String,
    pub(crate) css: &'static str,
    pub(crate) js: &'static str,
    pub(crate) icon: &'static str,
    /// The signed-in key's name and role, if any.
    pub(crate) who: Option<(String, &'static str)>,
    /// The session's CSRF token (sign-out form).
    pub(crate) csrf: String,
    /// The configuration version shown.
    pub(crate) version: Option<u64>,
    /// Whether the signed-in key may manage keys (the navigation shows the keys page).
    pub(crate) admin: bool,
}

impl Chrome {
    pub(crate) fn new(title: impl Into<String>, signed: Option<&Signed>) -> Chrome {
        Chrome {
            title: title.into(),
            css: assets::css_path(),
            js: assets::js_path(),
            icon: assets::icon_path(),
            who: signed.map(|s| (s.key.name.clone(), s.key.role.as_str())),
            csrf: signed.map(|s| s.csrf.clone()).unwrap_or_default(),
            version: None,
            admin: signed.is_some_and(|s| crate::auth::Need::Keys.allows(s.key.role)),
        }
    }
}

/// A rendered template as a page with `status`.
pub(crate) fn html(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(e) => {
            crate::metrics::internal_error(crate::metrics::Site::Console, &e);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// A page that cannot be shown: its status and what to tell the person.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// Sign in first (instead of an error page).
    pub(crate) sign_in: bool,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    reason: &'static str,
    message: String,
}

impl Problem {
    pub(crate) fn forbidden(message: impl Into<String>) -> Problem {
        Problem { status: StatusCode::FORBIDDEN, message: message.into(), sign_in: false }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Problem {
        Problem { status: StatusCode::NOT_FOUND, message: message.into(), sign_in: false }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Problem {
        Problem { status: StatusCode::BAD_REQUEST, message: message.into(), sign_in: false }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Problem {
        let message = message.into();
        tracing::error!(%message, "console");
        Problem { status: StatusCode::INTERNAL_SERVER_ERROR, message: "internal error".into(), sign_in: false }
    }

    /// Not signed in: to the sign-in page.
    pub(crate) fn sign_in() -> Problem {
        Problem { status: StatusCode::SEE_OTHER, message: String::new(), sign_in: true }
    }
}

impl From<allot_store::StoreError> for Problem {
    fn from(e: allot_store::StoreError) -> Problem {
        Problem::from(ApiError::from(e))
    }
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Problem {
        let status = e.status_code().0;
        let message = match &e {
            ApiError::Internal(_) => {
                tracing::error!(error = %e, "console");
                "internal error".to_string()
            }
            _ => e.to_string(),
        };
        Problem { status, message, sign_in: false }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        if self.sign_in {
            return Redirect::to("/console/sign-in").into_response();
        }
        let page = ErrorPage {
            chrome: Chrome::new(self.status.canonical_reason().unwrap_or("Error"), None),
            status: self.status.as_u16(),
            reason: self.status.canonical_reason().unwrap_or("Error"),
            message: self.message,
        };
        html(self.status, &page)
    }
}

/// The Content-Security-Policy of every console response: nothing from elsewhere, no inline
/// script or style, no framing, forms only to the console itself.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every console response (pages get `no-store`; assets keep
/// their long cache).
pub(crate) async fn secure(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let asset = req.uri().path().starts_with("/console/assets/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if !asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}
