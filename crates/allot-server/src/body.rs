//! Request bodies: a JSON extractor whose every rejection is an [`ApiError`] with a JSON body
//! naming the field (malformed JSON, wrong types, unknown fields, too large).

use crate::error::ApiError;
use crate::http::BodyDeadline;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

/// Default limit of request bodies (evaluation, exposures, keys).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Limit of `POST /api/v1/exposures` bodies (up to 1000 exposures).
pub const EXPOSURES_BODY_LIMIT: usize = 1024 * 1024;

/// Limit of configuration bodies (`PUT /api/v1/config`, previews, entities).
pub const CONFIG_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A JSON body, parsed with the path of the first error.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Reads the body as bytes, mapping the limit to 413 and, when the request carries a
/// [`BodyDeadline`] (set by [`crate::http::serve`]), a body still incomplete at that deadline to
/// 408 [`ApiError::BodyTimeout`].
pub async fn bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let deadline = req.extensions().get::<BodyDeadline>().copied();
    let read = Bytes::from_request(req, state);
    let r = match deadline {
        Some(BodyDeadline(at)) => tokio::time::timeout_at(at, read).await.map_err(|_| ApiError::BodyTimeout)?,
        None => read.await,
    };
    r.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::Malformed { path: "body".into(), message: e.body_text() }
        }
    })
}

/// Parses JSON with the path of the error (`context.user_id: invalid type ...`). The body must be
/// one JSON value: anything but whitespace after it is malformed.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let v = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let path = if path == "." { "body".to_string() } else { path };
        if inner.is_syntax() || inner.is_eof() {
            ApiError::Malformed { path: "body".into(), message: format!("malformed JSON: {inner}") }
        } else {
            ApiError::field(path, inner.to_string())
        }
    })?;
    de.end().map_err(|e| ApiError::Malformed {
        path: "body".into(),
        message: format!("malformed JSON: {e} (one JSON value per body)"),
    })?;
    Ok(v)
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let b = bytes(req, state).await?;
        parse(&b).map(ApiJson)
    }
}

/// A path parameter whose rejection (bad percent-encoding, wrong type) is an [`ApiError`].
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(t)| ApiPath(t))
            .map_err(|e| ApiError::field("path", e.body_text()))
    }
}

/// Largest configuration version, exposure id or cursor the API takes: the stores keep them as
/// signed 64-bit integers.
pub const MAX_INTEGER: u64 = i64::MAX as u64;

/// `v` if the stores can hold it, else a 422 naming `param`.
pub fn integer(v: u64, param: &str) -> Result<u64, ApiError> {
    if v > MAX_INTEGER {
        return Err(ApiError::field(param, format!("{v} is out of range: at most {MAX_INTEGER}")));
    }
    Ok(v)
}
