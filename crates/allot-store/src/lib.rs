//! Storage for the allot service, behind the [`Store`] trait.
//!
//! What is stored: every configuration version as the core [`State`] without its change log
//! (immutable rows keyed by version), beside the log entries that version added; reads rebuild
//! the whole log from the rows up to the version, so storage grows linearly with versions (not
//! with their square, as when every row held the whole log). Then the audit log (one entry per committed version), API keys (keyed hashes only),
//! sticky assignments and exposures (deduplicated per unit, experiment, variant and day).
//!
//! Nothing above this trait knows which database it talks to: [`open`] picks the backend from
//! the URL: SQLite ([`sqlite::SqliteStore`]) or PostgreSQL ([`postgres::PgStore`]). Both run the
//! same trait-level tests (`tests/it/`).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod common;
pub mod copy;
pub mod import;
mod pg_tls;
pub mod postgres;
pub mod sqlite;
pub mod warehouse;

use allot_core::state::State;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another change was committed after the version the caller planned from.
    #[error("conflict: the current version is {current}, the change was planned from version {expected}")]
    Conflict {
        /// Version the caller planned from.
        expected: u64,
        /// Version found in the store.
        current: u64,
    },
    /// The caller passed something the store cannot record.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The URL names a backend this build does not have.
    #[error("unsupported database URL: {0}")]
    Unsupported(String),
    /// A stored row could not be read back.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(String),
    /// The database cannot be reached (connection refused, lost or timed out; the server shutting
    /// down or terminating the connection). Worth retrying once it is back.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let unavailable = match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // Class 08: connection exception; 57P01-57P03: the server shut down or terminated the
            // connection, or cannot take connections now.
            sqlx::Error::Database(d) => {
                d.code().is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03"))
            }
            _ => false,
        };
        if unavailable {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Database(e.to_string())
        }
    }
}

impl StoreError {
    /// Whether this is [`StoreError::Unavailable`]: the database cannot be reached.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// The audit record of one committed change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Who (the API key's name, or `config-file` for `serve --config`).
    pub actor: String,
    /// When (RFC 3339).
    pub time: String,
    /// What kind of change: `config.put`, `config.file`, `experiment.start`, ...
    pub action: String,
    /// Why, if given (required when forced).
    pub reason: Option<String>,
    /// Whether refusals were overridden.
    pub forced: bool,
    /// What changed: the plan's changes as JSON.
    pub changes: serde_json::Value,
    /// Refusals that were overridden.
    pub overridden: serde_json::Value,
}

/// An audit entry as stored, with the versions before and after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Version before the change.
    pub before_version: u64,
    /// Version the change recorded.
    pub after_version: u64,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// A role of an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including keys.
    Admin,
    /// Reads and changes the configuration.
    Editor,
    /// Reads the configuration, audit log and exposures.
    Reader,
    /// Evaluates and sends exposures only.
    Evaluator,
}

impl Role {
    /// Wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Reader => "reader",
            Role::Evaluator => "evaluator",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "editor" => Some(Role::Editor),
            "reader" => Some(Role::Reader),
            "evaluator" => Some(Role::Evaluator),
            _ => None,
        }
    }
}

/// An API key as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Public id.
    pub id: String,
    /// Name, recorded as the actor of changes made with it.
    pub name: String,
    /// Role.
    pub role: Role,
    /// When created (RFC 3339).
    pub created_at: String,
    /// When revoked, if it was.
    pub revoked_at: Option<String>,
}

/// The SHA-256 of a key secret, hex-encoded: what the first schema stored, and what the keyed
/// hash ([`keyed_hash`]) is computed over.
pub fn sha256_hex(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// What a store keeps of a key secret: `HMAC-SHA256(salt, sha256_hex(secret))`, hex-encoded, with
/// the store's random salt ([`Store::key_salt`]). Keyed, so that a copy of the key table alone
/// does not allow checking guesses against precomputed tables; over the SHA-256, so that rows
/// stored as a bare SHA-256 before could be converted without their secrets.
pub fn keyed_hash(salt: &str, sha256_hex: &str) -> String {
    use hmac::Mac;
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    match hmac::Hmac::<Sha256>::new_from_slice(salt.as_bytes()) {
        Ok(mut mac) => {
            mac.update(sha256_hex.as_bytes());
            hex(&mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// A new random salt for [`keyed_hash`]: 32 bytes, hex-encoded.
pub(crate) fn new_salt() -> Result<String> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Database(format!("random: {e}")))?;
    Ok(hex(&buf))
}

/// The outcome of [`Store::revoke_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoke {
    /// The key is revoked now.
    Revoked,
    /// There is no live key with that id.
    NotFound,
    /// The key is the last live admin key: not revoked.
    LastAdmin,
}

/// The condition under which `UPDATE api_keys SET revoked_at = .. WHERE id = ..` may revoke: the
/// key is live, and not the last live admin key.
pub(crate) const REVOCABLE: &str = "revoked_at IS NULL AND (role <> 'admin' OR \
     (SELECT COUNT(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL) > 1)";

/// A console session (`allot serve`'s web console): who signed in, until when. The token itself
/// is never stored, only its SHA-256 ([`sha256_hex`]): a copy of the table cannot be replayed as
/// a cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// SHA-256 (hex) of the session token the browser holds in its cookie.
    pub token_hash: String,
    /// The API key that signed in: the session lives only while the key does.
    pub key_id: String,
    /// When created (RFC 3339).
    pub created_at: String,
    /// When it ends whatever happens (Unix seconds): the expiry is absolute, not sliding.
    pub expires_at: i64,
}

/// One exposure: a unit saw a variant of an experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    /// Unit id.
    pub unit: String,
    /// Experiment id.
    pub experiment: String,
    /// Variant name.
    pub variant: String,
    /// Day (`YYYY-MM-DD`, UTC): exposures are deduplicated per unit, experiment, variant and day.
    pub day: String,
    /// When first seen that day (RFC 3339).
    pub time: String,
    /// Configuration version the assignment came from.
    pub version: u64,
}

/// Storage of the service. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current version and its state (`0` and the empty state before the first commit).
    async fn load_current(&self) -> Result<(u64, State)>;

    /// The current version only (cheap: for polling).
    async fn current_version(&self) -> Result<u64>;

    /// The state recorded at `version`, if any.
    async fn load_version(&self, version: u64) -> Result<Option<State>>;

    /// Records `state` (whose `version` must be greater than `expected`) and its audit entry in
    /// one transaction, if and only if the current version is still `expected`; otherwise
    /// [`StoreError::Conflict`]. Of concurrent commits from the same version exactly one wins.
    async fn commit(&self, expected: u64, state: &State, audit: &AuditEntry) -> Result<u64>;

    /// Audit records, newest first, with `after_version < before` when given.
    async fn audit(&self, before: Option<u64>, limit: u32) -> Result<Vec<AuditRecord>>;

    /// Number of keys, revoked included.
    async fn key_count(&self) -> Result<u64>;

    /// Stores a new key with the hash of `secret`.
    async fn create_key(&self, info: &KeyInfo, secret: &str) -> Result<()>;

    /// What this store keeps of `secret` ([`keyed_hash`] with its salt): the key of the key table.
    fn hash_secret(&self, secret: &str) -> String {
        keyed_hash(&self.key_salt(), &sha256_hex(secret))
    }

    /// This store's salt of [`keyed_hash`] (random, made when the store was first opened).
    fn key_salt(&self) -> String;

    /// Adopts another store's salt, so that keys copied from it ([`copy::copy_store`]) keep
    /// working; only while this store has no key.
    async fn set_key_salt(&self, salt: &str) -> Result<()>;

    /// Stores `info` with `secret` only if the store has no key at all (first start). True when stored.
    async fn bootstrap_key(&self, info: &KeyInfo, secret: &str) -> Result<bool>;

    /// The live (not revoked) key whose secret this is.
    async fn find_key(&self, secret: &str) -> Result<Option<KeyInfo>>;

    /// Every key, oldest first.
    async fn list_keys(&self) -> Result<Vec<KeyInfo>>;

    /// Revokes a key, unless it is the last live admin key: checked and done in one transaction,
    /// so that concurrent revocations (on any node) can never leave the store without an admin.
    /// A revoked key's console sessions are deleted.
    async fn revoke_key(&self, id: &str, at: &str) -> Result<Revoke>;

    /// Stores a new console session, and deletes the sessions that expired by `now` (Unix
    /// seconds).
    async fn create_session(&self, session: &Session, now: i64) -> Result<()>;

    /// The session whose token has this hash, unless it expired by `now` (Unix seconds).
    async fn find_session(&self, token_hash: &str, now: i64) -> Result<Option<Session>>;

    /// Deletes the session whose token has this hash (sign-out); nothing when there is none.
    async fn delete_session(&self, token_hash: &str) -> Result<()>;

    /// The stored sticky variant of a unit in an experiment.
    async fn sticky_get(&self, unit_type: &str, unit: &str, experiment: &str) -> Result<Option<String>>;

    /// Every stored sticky assignment of a unit: `(experiment, variant)`.
    async fn sticky_for_unit(&self, unit_type: &str, unit: &str) -> Result<Vec<(String, String)>>;

    /// Stores sticky assignments `(unit_type, unit, experiment, variant)`; an existing one is kept.
    async fn sticky_put(&self, rows: &[(String, String, String, String)]) -> Result<()>;

    /// Records exposures; duplicates (same unit, experiment, variant, day) are ignored. Returns how
    /// many were new.
    async fn record_exposures(&self, exposures: &[Exposure]) -> Result<u64>;

    /// Exposures, oldest first, optionally of one experiment, after a cursor (`id`).
    async fn exposures(&self, experiment: Option<&str>, after: u64, limit: u32) -> Result<Vec<(u64, Exposure)>>;

    /// Whether the store answers.
    async fn ping(&self) -> Result<()>;

    /// Announcements of versions committed by any process on this database, when the backend can
    /// push them (PostgreSQL: `LISTEN`/`NOTIFY`); `None` when it cannot (SQLite), and then
    /// [`Store::current_version`] must be polled. Each message is a version, or `0` each time the
    /// listening connection is (re-)established (what came before may have been missed: check).
    /// Needs a tokio runtime; the listening task stops when the receiver is dropped.
    fn changes(&self) -> Option<tokio::sync::mpsc::Receiver<u64>> {
        None
    }

    /// Every key with the hash of its secret ([`Store::hash_secret`]), oldest first (for
    /// [`copy::copy_store`], and for the service's table of known keys).
    async fn export_keys(&self) -> Result<Vec<(KeyInfo, String)>>;

    /// Stores a key as exported: its secret's hash and its revocation (for [`copy::copy_store`],
    /// after [`Store::set_key_salt`]).
    async fn import_key(&self, info: &KeyInfo, secret_hash: &str) -> Result<()>;

    /// Sticky assignments `(unit_type, unit, experiment, variant)` in key order, those after the
    /// key of `after` when given (for [`copy::copy_store`]).
    async fn sticky_page(&self, after: Option<&StickyRow>, limit: u32) -> Result<Vec<StickyRow>>;

    /// How many stored sticky assignments each experiment holds (experiments with none are
    /// absent): the units a sticky experiment keeps whatever its split or targeting becomes. The
    /// backends count in SQL; this default pages through [`Store::sticky_page`].
    async fn sticky_counts(&self) -> Result<Vec<(String, u64)>> {
        let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        let mut after: Option<StickyRow> = None;
        loop {
            let page = self.sticky_page(after.as_ref(), 1000).await?;
            for r in &page {
                *counts.entry(r.2.clone()).or_default() += 1;
            }
            match page.into_iter().last() {
                Some(last) => after = Some(last),
                None => break,
            }
        }
        Ok(counts.into_iter().collect())
    }
}

/// A sticky assignment: `(unit_type, unit, experiment, variant)`.
pub type StickyRow = (String, String, String, String);

/// Opens the store a URL names: `sqlite://path?mode=rwc` (created if missing), `sqlite::memory:`.
/// `postgres://user@host:5432/db` (migrated on open; several nodes may share it).
///
/// The future is boxed and `Send`, so that it can be awaited in spawned tasks.
pub fn open(url: &str) -> BoxFuture<'_, Result<Arc<dyn Store>>> {
    Box::pin(open_store(url))
}

/// A boxed `Send` future.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

async fn open_store(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if is_postgres(url) {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    } else {
        Err(StoreError::Unsupported("expected sqlite://PATH or postgres://USER@HOST/DB".into()))
    }
}

/// Whether the URL names PostgreSQL (`postgres://` or `postgresql://`).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}
