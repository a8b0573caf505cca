//! Console sessions: sign-in with an API key, a cookie, CSRF protection.
//!
//! - **Sign-in** takes an API key on a form. An evaluator key cannot sign in (it may only
//!   evaluate); admin, editor and reader keys can, and the console then allows what the API
//!   allows their role ([`crate::auth::Need`]).
//! - **The session** is a random 256-bit token in the cookie [`COOKIE`] (`HttpOnly`,
//!   `SameSite=Strict`, `Path=/console`, `Secure` when the request came over TLS, `Max-Age` of
//!   [`LIFETIME`]). The store keeps only its SHA-256, the key's id and an absolute expiry
//!   (`sessions` table), so sessions work on every node of one PostgreSQL and survive restarts.
//! - **On every request** the session is looked up by the token's hash and its key is checked in
//!   the node's key table ([`App::key_by_id`]): revoking the key ends its sessions at once (the
//!   store also deletes them). Sign-out deletes the session.
//! - **CSRF**: every state-changing form carries the session's token [`Signed::csrf`] (derived
//!   from the session token, so nothing more is stored), compared in constant time on every
//!   POST; and a POST whose `Origin` is another site, or whose `Sec-Fetch-Site` is not
//!   `same-origin`, is refused before anything else (the sign-in form too, which has no session
//!   yet). Either failure is a 403 page.

use super::page::Problem;
use crate::auth::Need;
use crate::clock::now;
use crate::http::OverTls;
use crate::App;
use allot_store::{KeyInfo, Role, Session};
use axum::http::{header, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "allot_session";

/// How long a session lives from sign-in, whatever happens (absolute, not sliding): 12 hours.
pub(crate) const LIFETIME: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// A signed-in request: who, and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    pub(crate) key: Arc<KeyInfo>,
    pub(crate) csrf: String,
    token_hash: String,
}

impl Signed {
    /// Whether this role may change the configuration (only then are actions shown).
    pub(crate) fn can_act(&self) -> bool {
        Need::Write.allows(self.key.role)
    }

    /// A 403 page unless this role may change the configuration.
    pub(crate) fn must_act(&self) -> Result<(), Problem> {
        if self.can_act() {
            return Ok(());
        }
        let names: Vec<&str> = Need::Write.roles().iter().map(Role::as_str).collect();
        Err(Problem::forbidden(format!(
            "a key with role `{}` cannot change the configuration; that needs one of: {}",
            self.key.role.as_str(),
            names.join(", ")
        )))
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the store keeps of a session token.
fn token_hash(token: &str) -> String {
    allot_store::sha256_hex(token)
}

/// The CSRF token of the session whose token is `token`: a hash of it under its own label, so
/// that the store's hash of the token does not give it away.
fn csrf_of(token: &str) -> String {
    hex(&Sha256::digest(format!("allot-console-csrf\0{token}").as_bytes()))
}

/// The session token in the request's cookies, if any.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The request's session, if it has a live one whose key is live and may read.
pub(crate) async fn current(app: &App, headers: &HeaderMap) -> Result<Option<Signed>, Problem> {
    let Some(token) = cookie_token(headers) else { return Ok(None) };
    let hash = token_hash(&token);
    let found = app.store.find_session(&hash, unix_now()).await;
    app.observe(&found);
    let Some(session) = found? else { return Ok(None) };
    let Some(key) = app.key_by_id(&session.key_id).await.map_err(Problem::from)? else { return Ok(None) };
    if !Need::Read.allows(key.role) {
        return Ok(None);
    }
    Ok(Some(Signed { key, csrf: csrf_of(&token), token_hash: hash }))
}

/// Why a sign-in failed (shown on the form).
#[derive(Debug)]
pub(crate) enum Refused {
    /// Unknown or revoked key.
    Unknown,
    /// An evaluator key.
    Evaluator,
}

impl Refused {
    pub(crate) fn message(&self) -> &'static str {
        match self {
            Refused::Unknown => "This key is unknown or revoked.",
            Refused::Evaluator => {
                "An evaluator key can only evaluate flags: it cannot sign in to the console. Sign in with an admin, editor or reader key."
            }
        }
    }
}

/// Signs in with `secret`: a new session, and the `Set-Cookie` value that carries it.
pub(crate) async fn sign_in(app: &App, secret: &str, over_tls: bool) -> Result<Result<HeaderValue, Refused>, Problem> {
    let Some(key) = app.key(secret.trim()).await.map_err(Problem::from)? else { return Ok(Err(Refused::Unknown)) };
    if !Need::Read.allows(key.role) {
        return Ok(Err(Refused::Evaluator));
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| Problem::internal(format!("random: {e}")))?;
    let token = hex(&raw);
    let now_unix = unix_now();
    let session = Session {
        token_hash: token_hash(&token),
        key_id: key.id.clone(),
        created_at: now(),
        expires_at: now_unix.saturating_add(i64::try_from(LIFETIME.as_secs()).unwrap_or(i64::MAX)),
    };
    let created = app.store.create_session(&session, now_unix).await;
    app.observe(&created);
    created?;
    tracing::info!(key = %key.id, "console sign-in");
    Ok(Ok(cookie(&token, LIFETIME.as_secs(), over_tls)))
}

/// Signs out: deletes the session. Returns the `Set-Cookie` value that clears the cookie.
pub(crate) async fn sign_out(app: &App, signed: &Signed, over_tls: bool) -> Result<HeaderValue, Problem> {
    let r = app.store.delete_session(&signed.token_hash).await;
    app.observe(&r);
    r?;
    Ok(cookie("", 0, over_tls))
}

fn cookie(token: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={max_age}{secure}");
    // Hex digits and fixed text only.
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("allot_session=; Max-Age=0"))
}

/// Whether the request came over TLS ([`crate::http::serve_tls`] marks it).
pub(crate) fn over_tls(ext: &axum::http::Extensions) -> bool {
    ext.get::<OverTls>().is_some()
}

/// The cross-site check of every POST: an `Origin` of another host, or a `Sec-Fetch-Site` other
/// than `same-origin`, is refused. (Browsers send at least one of them on a form POST; a client
/// that sends neither is no browser and still needs the session's CSRF token.)
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), Problem> {
    let refuse = |why: String| Err(Problem::forbidden(format!("cross-site request refused: {why}")));
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if site != "same-origin" {
            return refuse(format!("Sec-Fetch-Site is `{site}`, not `same-origin`"));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or("");
        if host.is_empty() || !authority.eq_ignore_ascii_case(host) {
            return refuse(format!("the request comes from {origin}, not from this console ({host})"));
        }
    }
    Ok(())
}

/// The CSRF check of a signed-in POST: the same-origin check, then the form's token against the
/// session's, in constant time.
pub(crate) fn check_csrf(headers: &HeaderMap, signed: &Signed, sent: Option<&str>) -> Result<(), Problem> {
    same_origin(headers)?;
    let sent = sent.unwrap_or("");
    let ok: bool = subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), signed.csrf.as_bytes()).into();
    if !ok {
        return Err(Problem::forbidden(
            "this form has no valid CSRF token (it may come from another site, or from a session that ended): reload the page and try again"
                .to_string(),
        ));
    }
    Ok(())
}
