//! HTTP header helpers shared by the admin and evaluation APIs (entity tags of configuration
//! versions), so that neither imports the other.

use axum::http::HeaderValue;

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
