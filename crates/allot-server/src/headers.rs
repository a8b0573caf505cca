//! HTTP header helpers shared by the admin and evaluation APIs (entity tags of configuration
//! versions), so that neither imports the other.

use crate::{body, ApiError, IfMatch};
use axum::http::header::IF_MATCH;
use axum::http::{HeaderMap, HeaderValue};

/// `ETag: "<version>"`.
pub(crate) fn etag(version: u64) -> HeaderValue {
    tag_value(&format!("\"{version}\""))
}

/// `tag` as a header value; a tag we made is always one (else logged, counted and `"0"`).
pub(crate) fn tag_value(tag: &str) -> HeaderValue {
    HeaderValue::from_str(tag).unwrap_or_else(|e| {
        crate::metrics::internal_error(crate::metrics::Site::Etag, &e);
        HeaderValue::from_static("\"0\"")
    })
}

/// Parses an entity tag (`"7"`, `W/"7"`, `7`) into a version.
pub(crate) fn parse_tag(tag: &str) -> Option<u64> {
    let t = tag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    t.trim_matches('"').parse().ok()
}

/// The request's `If-Match`: `None` when absent, else `*` or `"<version>"` (422 naming `If-Match`
/// for anything else).
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, ApiError> {
    let Some(v) = headers.get(IF_MATCH) else { return Ok(None) };
    let v = v.to_str().map_err(|_| ApiError::field("If-Match", "not ASCII"))?.trim();
    if v == "*" {
        return Ok(Some(IfMatch::Any));
    }
    let version = parse_tag(v).ok_or_else(|| {
        ApiError::field("If-Match", format!("expected \"<version>\" (the ETag of a read) or *, got {v}"))
    })?;
    body::integer(version, "If-Match").map(|v| Some(IfMatch::Version(v)))
}
