//! What the SQLite and PostgreSQL stores share: number conversions, the mapping of rows to the
//! crate's types, the (de)serialisation of states and audit entries, the checks and preparation of
//! a commit, and the schema version check of migrations.
//!
//! Only what differs between the backends stays in `sqlite.rs` and `postgres.rs`: the SQL text
//! (placeholders `?` or `$1`), transactions and locking, batching, `NOTIFY` and schemas.

use crate::{AuditEntry, AuditRecord, Exposure, KeyInfo, Result, Role, Session, StickyRow, StoreError};
use allot_core::state::{LogEntry, State};
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::future::Future;

/// A migration: `(version, name, SQL)`. Applied once each, recorded in `schema_migrations`.
pub(crate) type Migration = (i64, &'static str, &'static str);

/// A number as the databases store it.
pub(crate) fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{v} is out of range")))
}

/// A stored number back; a negative one is corrupt.
pub(crate) fn to_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative number {v}")))
}

/// The error of a database URL that does not parse.
pub(crate) fn invalid_url(e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("database URL: {e}"))
}

/// The state stored as JSON at `version`.
pub(crate) fn parse_state(text: &str, version: i64) -> Result<State> {
    State::from_json(text).map_err(|e| StoreError::Corrupt(format!("version {version}: {e}")))
}

/// The log entries a version's row records (a JSON array).
pub(crate) fn parse_entries(text: &str, version: i64) -> Result<Vec<LogEntry>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("version {version}: log entries: {e}")))
}

/// What a version's row stores: the state without its log, as JSON, and the log entries the
/// version added (those newer than `expected`, the version it was planned from), as JSON. The log
/// is stored once, spread over the rows, instead of whole in every version (which grew with the
/// square of the number of versions).
pub(crate) fn split_log(state: &State, expected: u64) -> Result<(String, String)> {
    let added: Vec<&LogEntry> = state.log.iter().filter(|e| e.version > expected).collect();
    let entries = serde_json::to_string(&added).map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok((state_without_log(state)?, entries))
}

fn state_without_log(state: &State) -> Result<String> {
    let bare = State {
        format: state.format,
        version: state.version,
        config: state.config.clone(),
        spaces: state.spaces.clone(),
        allocations: state.allocations.clone(),
        log: vec![],
    };
    serde_json::to_string(&bare).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// Converts a row of the first schemas (its state carries the whole log) given the log of the
/// version before it: the state without the log and the entries it added, or `None` when its log
/// does not continue `before` (the row is then left as it is and stands for the log up to it).
pub(crate) fn convert_legacy(state: &State, before: &[LogEntry]) -> Result<Option<(String, String)>> {
    if !state.log.starts_with(before) {
        return Ok(None);
    }
    let entries = serde_json::to_string(&state.log[before.len()..]).map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(Some((state_without_log(state)?, entries)))
}

/// A stored JSON value (the changes and overridden refusals of an audit entry).
fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Fails with [`StoreError::Unsupported`] when the database has a migration newer than any this
/// build knows.
pub(crate) fn check_schema_version(done: &[i64], migrations: &[Migration]) -> Result<()> {
    if let Some(newest) = done.iter().max() {
        let known = migrations.iter().map(|m| m.0).max().unwrap_or(0);
        if *newest > known {
            return Err(StoreError::Unsupported(format!(
                "the database has schema version {newest}; this allot knows up to {known}"
            )));
        }
    }
    Ok(())
}

/// Typed reads of named columns, the same on a SQLite and a PostgreSQL row.
pub(crate) trait Columns {
    /// A `TEXT NOT NULL` column.
    fn text(&self, column: &str) -> Result<String>;
    /// A nullable `TEXT` column.
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    /// An integer column.
    fn int(&self, column: &str) -> Result<i64>;
    /// A boolean column.
    fn flag(&self, column: &str) -> Result<bool>;
}

impl<R> Columns for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String> {
        Ok(self.try_get(column)?)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }

    fn int(&self, column: &str) -> Result<i64> {
        Ok(self.try_get(column)?)
    }

    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.try_get(column)?)
    }
}

/// An `api_keys` row of `id, name, role, created_at, revoked_at`.
pub(crate) fn key_row(r: &impl Columns) -> Result<KeyInfo> {
    let role = r.text("role")?;
    Ok(KeyInfo {
        id: r.text("id")?,
        name: r.text("name")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role}")))?,
        created_at: r.text("created_at")?,
        revoked_at: r.opt_text("revoked_at")?,
    })
}

/// A `sessions` row of `token_hash, key_id, created_at, expires_at`.
pub(crate) fn session_row(r: &impl Columns) -> Result<Session> {
    Ok(Session {
        token_hash: r.text("token_hash")?,
        key_id: r.text("key_id")?,
        created_at: r.text("created_at")?,
        expires_at: r.int("expires_at")?,
    })
}

/// An `api_keys` row of [`key_row`]'s columns and `secret_hash`.
pub(crate) fn exported_key_row(r: &impl Columns) -> Result<(KeyInfo, String)> {
    Ok((key_row(r)?, r.text("secret_hash")?))
}

/// `hash_scheme` of a row whose `secret_hash` is [`crate::keyed_hash`] (1: a bare SHA-256,
/// converted when the store opens).
pub(crate) const KEYED: i64 = 2;

/// An `audit_log` row of every column.
pub(crate) fn audit_row(r: &impl Columns) -> Result<AuditRecord> {
    Ok(AuditRecord {
        before_version: to_u64(r.int("before_version")?)?,
        after_version: to_u64(r.int("after_version")?)?,
        entry: AuditEntry {
            actor: r.text("actor")?,
            time: r.text("time")?,
            action: r.text("action")?,
            reason: r.opt_text("reason")?,
            forced: r.flag("forced")?,
            changes: json(&r.text("changes")?)?,
            overridden: json(&r.text("overridden")?)?,
        },
    })
}

/// An `exposures` row of every column: `(id, exposure)`.
pub(crate) fn exposure_row(r: &impl Columns) -> Result<(u64, Exposure)> {
    Ok((
        to_u64(r.int("id")?)?,
        Exposure {
            unit: r.text("unit")?,
            experiment: r.text("experiment")?,
            variant: r.text("variant")?,
            day: r.text("day")?,
            time: r.text("time")?,
            version: to_u64(r.int("version")?)?,
        },
    ))
}

/// A `sticky_assignments` row of every column.
pub(crate) fn sticky_row(r: &impl Columns) -> Result<StickyRow> {
    Ok((r.text("unit_type")?, r.text("unit")?, r.text("experiment")?, r.text("variant")?))
}

/// A `sticky_assignments` row of `experiment, variant`.
pub(crate) fn sticky_variant_row(r: &impl Columns) -> Result<(String, String)> {
    Ok((r.text("experiment")?, r.text("variant")?))
}

/// [`crate::Store::sticky_counts`] in SQL, the same on both backends.
pub(crate) const STICKY_COUNTS: &str =
    "SELECT experiment, COUNT(*) AS n FROM sticky_assignments GROUP BY experiment ORDER BY experiment";

/// A row of [`STICKY_COUNTS`]: `experiment, n`.
pub(crate) fn sticky_count_row(r: &impl Columns) -> Result<(String, u64)> {
    Ok((r.text("experiment")?, to_u64(r.int("n")?)?))
}

/// The bound of [`crate::Store::audit`]'s `after_version < before` (no bound: `i64::MAX`).
pub(crate) fn audit_before(before: Option<u64>) -> Result<i64> {
    match before {
        Some(b) => to_i64(b),
        None => Ok(i64::MAX),
    }
}

/// A commit checked and serialised, ready for a backend's transaction (owned: the transaction
/// runs in a task of its own).
#[derive(Debug)]
pub(crate) struct Commit {
    /// The new version.
    pub(crate) new: i64,
    /// The version the caller planned from, which must still be the current one.
    pub(crate) expected: i64,
    /// The state without its log, as JSON.
    pub(crate) state: String,
    /// The log entries this version adds, as JSON.
    pub(crate) log_entries: String,
    /// The audit entry's changes as JSON.
    pub(crate) changes: String,
    /// The audit entry's overridden refusals as JSON.
    pub(crate) overridden: String,
    /// The audit entry.
    pub(crate) audit: AuditEntry,
}

impl Commit {
    /// Checks that `state` is newer than `expected` and serialises what is stored.
    pub(crate) fn prepare(expected: u64, state: &State, audit: &AuditEntry) -> Result<Commit> {
        if state.version <= expected {
            return Err(StoreError::Invalid(format!(
                "state version {} is not newer than the expected version {expected}",
                state.version
            )));
        }
        let (text, log_entries) = split_log(state, expected)?;
        let changes = audit.changes.to_string();
        let overridden = audit.overridden.to_string();
        let (new, exp) = (to_i64(state.version)?, to_i64(expected)?);
        Ok(Commit { new, expected: exp, state: text, log_entries, changes, overridden, audit: audit.clone() })
    }

    /// [`StoreError::Conflict`] unless the store's `current` version is the expected one.
    pub(crate) fn check_current(&self, current: i64) -> Result<()> {
        if current != self.expected {
            return Err(self.conflict(current));
        }
        Ok(())
    }

    /// The [`StoreError::Conflict`] of finding `current` instead of the expected version.
    pub(crate) fn conflict(&self, current: i64) -> StoreError {
        match (to_u64(self.expected), to_u64(current)) {
            (Ok(expected), Ok(current)) => StoreError::Conflict { expected, current },
            (Err(e), _) | (_, Err(e)) => e,
        }
    }
}

/// Runs a transaction in a task of its own, to its end even if the caller goes away (a client
/// that disconnects cancels its request's future). Besides keeping a commit whole, this keeps
/// connections clean: a `begin()` cancelled halfway can return its connection to the pool with a
/// transaction still open (sqlx 0.8, launchbadge/sqlx#4393), and the next user of that connection
/// would then run inside it.
pub(crate) async fn run_to_end<T, F>(transaction: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    tokio::spawn(transaction).await.map_err(|e| StoreError::Database(format!("transaction task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuditEntry {
        AuditEntry {
            actor: "a".into(),
            time: "2024-01-01T00:00:00Z".into(),
            action: "config.put".into(),
            reason: None,
            forced: false,
            changes: serde_json::json!([{"op": "add"}]),
            overridden: serde_json::json!([]),
        }
    }

    #[test]
    fn numbers_out_of_range_are_invalid_or_corrupt() {
        assert!(matches!(to_i64(u64::MAX), Err(StoreError::Invalid(_))));
        assert!(matches!(to_u64(-1), Err(StoreError::Corrupt(_))));
        assert_eq!(to_u64(7).ok(), Some(7));
        assert_eq!(audit_before(None).ok(), Some(i64::MAX));
        assert_eq!(audit_before(Some(3)).ok(), Some(3));
        assert!(matches!(audit_before(Some(u64::MAX)), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn a_commit_must_be_newer_and_conflicts_name_both_versions() {
        let state = State { version: 2, ..State::default() };
        assert!(matches!(Commit::prepare(2, &state, &entry()), Err(StoreError::Invalid(_))));
        let c = Commit::prepare(1, &state, &entry()).unwrap();
        assert_eq!((c.new, c.expected), (2, 1));
        assert_eq!(c.changes, r#"[{"op":"add"}]"#);
        assert_eq!(c.overridden, "[]");
        assert_eq!(parse_state(&c.state, 2).unwrap(), state);
        assert!(c.check_current(1).is_ok());
        assert!(matches!(c.check_current(5), Err(StoreError::Conflict { expected: 1, current: 5 })));
        assert!(matches!(c.conflict(-1), StoreError::Corrupt(_)));
    }

    #[test]
    fn a_newer_schema_is_unsupported() {
        const M: &[Migration] = &[(1, "init", ""), (2, "next", "")];
        assert!(check_schema_version(&[], M).is_ok());
        assert!(check_schema_version(&[1, 2], M).is_ok());
        assert!(matches!(check_schema_version(&[1, 3], M), Err(StoreError::Unsupported(_))));
    }

    #[test]
    fn stored_json_must_parse() {
        assert_eq!(json("[1]").unwrap(), serde_json::json!([1]));
        assert!(matches!(json("{"), Err(StoreError::Corrupt(_))));
        assert!(matches!(parse_state("{", 4), Err(StoreError::Corrupt(m)) if m.starts_with("version 4")));
    }
}
