//! The console's static assets, embedded in the binary: one stylesheet, one small script, an icon.
//! Each is served at a path that carries a hash of its content
//! (`/console/assets/console.<hash>.css`), with a year-long immutable cache and that hash as its
//! ETag: a new build changes the path, so a browser never keeps a stale asset.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const ICON: &str = include_str!("assets/icon.svg");

struct Asset {
    path: String,
    etag: String,
    body: &'static str,
    content_type: &'static str,
}

fn asset(stem: &str, ext: &str, body: &'static str, content_type: &'static str) -> Asset {
    let digest = Sha256::digest(body.as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Asset { path: format!("/console/assets/{stem}.{hash}.{ext}"), etag: format!("\"{hash}\""), body, content_type }
}

static ASSETS: LazyLock<[Asset; 3]> = LazyLock::new(|| {
    [
        asset("console", "css", CSS, "text/css; charset=utf-8"),
        asset("console", "js", JS, "text/javascript; charset=utf-8"),
        asset("icon", "svg", ICON, "image/svg+xml"),
    ]
});

/// Where the stylesheet is served.
pub(crate) fn css_path() -> &'static str {
    &ASSETS[0].path
}

/// Where the script is served.
pub(crate) fn js_path() -> &'static str {
    &ASSETS[1].path
}

/// Where the icon is served.
pub(crate) fn icon_path() -> &'static str {
    &ASSETS[2].path
}

/// `GET /console/assets/{name}`.
pub(crate) async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.path.rsplit('/').next() == Some(name.as_str())) else {
        return super::page::Problem::not_found(format!("/console/assets/{name}: no such asset")).into_response();
    };
    let etag = HeaderValue::from_str(&a.etag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    let cache = HeaderValue::from_static("public, max-age=31536000, immutable");
    if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == a.etag.as_bytes()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), (header::CACHE_CONTROL, cache)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(a.content_type)),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
        ],
        a.body,
    )
        .into_response()
}
