//! OFREP change events (the protocol's ADR 0008, "SSE for bulk evaluation changes"): the bulk
//! answer advertises an event stream, `GET /ofrep/v1/events`, that announces every new
//! configuration version with `{"type": "refetchEvaluation", "etag": "\"<version>\"",
//! "lastModified": <unix seconds>}`; the provider then fetches the bulk evaluation again.
//!
//! - Event ids are the configuration version, so they are the same on every node. A stream opens
//!   with an event for the current version (so a change between the bulk answer and the connect,
//!   perhaps on another node, is never missed; the refetch it causes is a 304 when nothing
//!   changed), unless `Last-Event-ID` already names it: the events only ever say "fetch again",
//!   so the newest one replays every missed one.
//! - Streams hold connections, so they are bounded: at most [`crate::Policy::max_event_streams`]
//!   per node (past it `503` with `Retry-After`), each opening counts against the key's rate limit,
//!   and a stream ends after [`STREAM_LIFETIME`] (the client reconnects, told to wait
//!   [`RECONNECT`], with `Last-Event-ID`), so slots recycle.
//! - Browsers' `EventSource` cannot send an `Authorization` header, so the advertised address
//!   carries its own credential: `?key=<key id>&token=<HMAC of the key id under the store's key
//!   salt>`. It opens this stream and nothing else, for keys whose role may evaluate; revoking
//!   the key closes its streams (checked on every event and every keep-alive) and refuses it
//!   afterwards. The address is as sensitive as a key: allot logs request paths, never queries.
//! - A comment every [`KEEP_ALIVE`] keeps proxies from closing an idle stream; streams end when the
//!   server begins to shut down, so they never hold up the drain.
//! - `flagConfigEtag=<version>` on a bulk request (what providers send after an event) that names
//!   a version newer than this node serves makes the node read the store first ([`catch_up`]), so
//!   the answer after an event is never older than the event. One read at a time per node, at
//!   most one every [`CATCH_UP_EVERY`], none while the store is unreachable, and bounded by
//!   [`CATCH_UP_TIMEOUT`]: a forged tag costs the store no more than the version poll does.

use crate::auth::Caller;
use crate::App;
use allot_store::Role;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::Mac;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The path of the stream.
pub(crate) const PATH: &str = "/ofrep/v1/events";
/// How often an idle stream sends a comment.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// What the bulk answer suggests as `inactivityDelaySec` (the ADR's default).
const INACTIVITY_SEC: u64 = 120;
/// How long one stream lasts before the server ends it (the client reconnects).
pub(crate) const STREAM_LIFETIME: Duration = Duration::from_secs(600);
/// The reconnection delay a stream asks of its client (SSE `retry:`).
pub(crate) const RECONNECT: Duration = Duration::from_secs(1);
/// Default of [`crate::Policy::max_event_streams`].
pub const DEFAULT_MAX_STREAMS: usize = 1024;
/// At most one store read for `flagConfigEtag` this often.
pub(crate) const CATCH_UP_EVERY: Duration = Duration::from_millis(100);
/// How long a request waits for that read.
pub(crate) const CATCH_UP_TIMEOUT: Duration = Duration::from_millis(250);

/// The versions announced to streams, the signal that ends them, the slots they take.
#[derive(Debug)]
pub(crate) struct Events {
    versions: watch::Sender<(u64, u64)>,
    closing: watch::Sender<bool>,
    slots: arc_swap::ArcSwap<tokio::sync::Semaphore>,
    /// When the last `flagConfigEtag` read of the store began (one at a time).
    catch_up: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl Default for Events {
    fn default() -> Events {
        Events {
            versions: watch::Sender::new((0, 0)),
            closing: watch::Sender::new(false),
            slots: arc_swap::ArcSwap::from_pointee(tokio::sync::Semaphore::new(DEFAULT_MAX_STREAMS)),
            catch_up: tokio::sync::Mutex::new(None),
        }
    }
}

impl Events {
    /// Announces `version`, published at `unix` seconds, unless a newer one already was.
    pub(crate) fn announce(&self, version: u64, unix: u64) {
        self.versions.send_if_modified(|cur| {
            let newer = version > cur.0;
            if newer {
                *cur = (version, unix);
            }
            newer
        });
    }

    /// Ends every stream (the server is shutting down).
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }

    /// At most `max` streams open at once from now on (streams already open keep their slots).
    pub(crate) fn set_max_streams(&self, max: usize) {
        self.slots.store(Arc::new(tokio::sync::Semaphore::new(max)));
    }
}

/// Reads the store when a bulk request's `flagConfigEtag` names version `announced`, newer than
/// this node serves (see the module for the bounds).
pub(crate) async fn catch_up(app: &App, announced: u64) {
    if announced <= app.live().version || !app.store_up() {
        return;
    }
    let Ok(mut last) = tokio::time::timeout(CATCH_UP_TIMEOUT, app.ofrep_events.catch_up.lock()).await else { return };
    if announced <= app.live().version || last.is_some_and(|t| t.elapsed() < CATCH_UP_EVERY) {
        return;
    }
    *last = Some(std::time::Instant::now());
    match tokio::time::timeout(CATCH_UP_TIMEOUT, app.refresh()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "OFREP: the announced version could not be read"),
        Err(_) => tracing::debug!("OFREP: reading the announced version took too long"),
    }
}

type Hmac = hmac::Hmac<sha2::Sha256>;

fn mac(app: &App, key_id: &str) -> Hmac {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut m = Hmac::new_from_slice(app.store.key_salt().as_bytes()).unwrap_or_else(|_| {
        crate::metrics::internal_error(crate::metrics::Site::Evaluation, &"HMAC refused a key");
        Hmac::new_from_slice(b"-").unwrap_or_else(|_| unreachable!())
    });
    m.update(b"allot-ofrep-events|");
    m.update(key_id.as_bytes());
    m
}

/// The stream's address for the caller's key, relative to the OFREP base URL.
pub(crate) fn stream_for(app: &App, caller: &Caller) -> serde_json::Value {
    let id = &caller.0.id;
    let token: String = mac(app, id).finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    json!([{
        "type": "sse",
        "endpoint": {"requestUri": format!("{PATH}?key={id}&token={token}")},
        "inactivityDelaySec": INACTIVITY_SEC,
    }])
}

/// The stream's query.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamQuery {
    key: Option<String>,
    token: Option<String>,
}

fn refused(status: StatusCode, code: &str, details: &str) -> Response {
    (status, Json(json!({"errorCode": code, "errorDetails": details}))).into_response()
}

/// Whether `key_id` is a live key whose role may evaluate.
fn may_listen(app: &App, key_id: &str) -> bool {
    app.keys.live_by_id(key_id).is_some_and(|k| matches!(k.role, Role::Admin | Role::Editor | Role::Evaluator))
}

/// Server-sent events announcing each new configuration version (`refetchEvaluation`, id = the
/// version), for the address the bulk answer's `eventStreams` gives.
#[utoipa::path(get, path = "/ofrep/v1/events", tag = "ofrep", operation_id = "ofrepEvents", security(()),
    params(("key" = String, Query, description = "the key id, as the bulk answer's eventStreams gives it"),
        ("token" = String, Query, description = "the stream token, as the bulk answer's eventStreams gives it"),
        ("Last-Event-ID" = Option<String>, Header, description = "the last version received: a newer current version is announced at once")),
    responses((status = 200, description = "text/event-stream of `refetchEvaluation` events", content_type = "text/event-stream"),
        (status = 401, description = "{errorCode: UNAUTHENTICATED}: missing, malformed or revoked"),
        (status = 429, description = "RATE_LIMITED: the key's rate limit counts stream openings; `Retry-After`"),
        (status = 503, description = "GENERAL: as many streams as `--max-event-streams` are open; `Retry-After`")))]
pub(crate) async fn stream(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<StreamQuery>) -> Response {
    let (Some(key), Some(token)) = (q.key, q.token) else {
        return refused(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "the stream needs `key` and `token` (from the bulk evaluation's eventStreams)",
        );
    };
    let valid = decode_hex(&token).is_some_and(|t| mac(&app, &key).verify_slice(&t).is_ok());
    if !valid || !may_listen(&app, &key) {
        return refused(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "the stream's key is unknown or revoked, or its token does not match",
        );
    }
    if let Err(wait) = app.rate.check(&key) {
        let limit = app.policy.load().rate_limit.map(|l| l.to_string()).unwrap_or_default();
        return crate::ApiError::RateLimited { limit, retry_after: crate::ratelimit::retry_after(wait) }
            .into_response();
    }
    let Ok(slot) = app.ofrep_events.slots.load_full().try_acquire_owned() else {
        let mut r = refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "GENERAL",
            "this node serves as many event streams as it allows (--max-event-streams); retry later",
        );
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
        return r;
    };
    let last: Option<u64> =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let versions = app.ofrep_events.versions.subscribe();
    let closing = app.ofrep_events.closing.subscribe();
    // Announce the current version at once, unless the client says it has it.
    let pending = last.is_none_or(|seen| versions.borrow().0 > seen);
    let deadline = tokio::time::Instant::now() + STREAM_LIFETIME;
    let first = true;
    let state = (app, versions, closing, key, pending, first, slot);
    let events = futures_util::stream::unfold(
        state,
        move |(app, mut versions, mut closing, key, pending, first, slot)| async move {
            if !pending {
                loop {
                    if *closing.borrow() || !may_listen(&app, &key) {
                        return None;
                    }
                    tokio::select! {
                        changed = versions.changed() => if changed.is_err() { return None } else { break },
                        _ = closing.changed() => return None,
                        _ = tokio::time::sleep_until(deadline) => return None,
                        // Revocation is looked at while the stream is idle too.
                        _ = tokio::time::sleep(KEEP_ALIVE) => {}
                    }
                }
            }
            if !may_listen(&app, &key) {
                return None;
            }
            let (version, unix) = *versions.borrow_and_update();
            let data = json!({"type": "refetchEvaluation", "etag": format!("\"{version}\""), "lastModified": unix});
            let mut event = Event::default().id(version.to_string()).event("message").data(data.to_string());
            if first {
                event = event.retry(RECONNECT);
            }
            Some((Ok::<_, std::convert::Infallible>(event), (app, versions, closing, key, false, false, slot)))
        },
    );
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// `flagConfigEtag` of a bulk request: the version an event announced, when it names one.
pub(crate) fn announced_version(query: Option<&str>) -> Option<u64> {
    let q = query?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "flagConfigEtag").then(|| v.replace("%22", "").trim_matches('"').parse().ok()).flatten()
    })
}
