//! The SQLite store: one file, WAL journal, `synchronous=FULL` (a committed transaction survives
//! a crash of the process or of the machine), embedded migrations from `migrations/sqlite/`.
//!
//! Commits of configuration versions are serialised in the process by a mutex and checked in
//! the transaction (the current version must be the expected one, and `version` is the primary
//! key), so two writers planning from the same version cannot both win, even across processes.

use crate::common::{self, to_i64, to_u64, Columns, Commit, Migration};
use crate::{
    AuditEntry, AuditRecord, BoxFuture, Exposure, KeyInfo, Result, Revoke, Session, StickyRow, Store, StoreError,
};
use allot_core::state::State;
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// Migrations in order.
const MIGRATIONS: &[Migration] = &[
    (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
    (2, "keyed_key_hashes", include_str!("../migrations/sqlite/0002_keyed_key_hashes.sql")),
    (3, "log_once", include_str!("../migrations/sqlite/0003_log_once.sql")),
    (4, "sessions", include_str!("../migrations/sqlite/0004_sessions.sql")),
];

/// A store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: tokio::sync::Mutex<()>,
    /// The salt of [`crate::keyed_hash`], read (or made) when the store is opened.
    salt: std::sync::RwLock<String>,
}

impl SqliteStore {
    /// Opens (and migrates) the store at `url` (`sqlite://allot.db?mode=rwc`, `sqlite::memory:`).
    pub fn open(url: &str) -> BoxFuture<'_, Result<SqliteStore>> {
        Box::pin(SqliteStore::open_inner(url))
    }

    async fn open_inner(url: &str) -> Result<SqliteStore> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut opts = SqliteConnectOptions::from_str(url).map_err(common::invalid_url)?;
        // `sqlite://./my.db`, `sqlite:///abs/path.db`, `sqlite:my.db`: the file is created unless
        // the URL asks otherwise (`mode=ro`, `mode=rw`).
        let creates = !memory && (!url.contains("mode=") || url.contains("mode=rwc"));
        if creates {
            create_private(opts.get_filename())?;
            opts = opts.create_if_missing(true);
        }
        let opts = opts
            .journal_mode(if memory { SqliteJournalMode::Memory } else { SqliteJournalMode::Wal })
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // An in-memory database exists per connection: keep exactly one.
        let pool = SqlitePoolOptions::new().max_connections(if memory { 1 } else { 8 }).connect_with(opts).await?;
        let store = SqliteStore { pool, writer: tokio::sync::Mutex::new(()), salt: std::sync::RwLock::default() };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
            .execute(&mut *tx)
            .await?;
        let done: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .filter_map(|r| r.try_get(0).ok())
            .collect();
        for (version, name, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            sqlx::Executor::execute(&mut *tx, *sql).await?;
            sqlx::query("INSERT INTO schema_migrations (version, name) VALUES (?, ?)")
                .bind(version)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        common::check_schema_version(&done, MIGRATIONS)?;
        if !done.contains(&3) {
            // Rows of the first schemas carry the whole log in every state: split it off.
            let versions: Vec<i64> = sqlx::query("SELECT version FROM config_versions ORDER BY version")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
            let mut before = vec![];
            for v in versions {
                let text: String = sqlx::query("SELECT state FROM config_versions WHERE version = ?")
                    .bind(v)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
                let state = common::parse_state(&text, v)?;
                if let Some((bare, entries)) = common::convert_legacy(&state, &before)? {
                    sqlx::query("UPDATE config_versions SET state = ?, log_entries = ? WHERE version = ?")
                        .bind(bare)
                        .bind(entries)
                        .bind(v)
                        .execute(&mut *tx)
                        .await?;
                }
                before = state.log;
            }
        }
        let salt: Option<String> = sqlx::query("SELECT salt FROM key_hash_salt WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let salt = match salt {
            Some(s) => s,
            None => {
                let s = crate::new_salt()?;
                sqlx::query("INSERT INTO key_hash_salt (id, salt) VALUES (1, ?)").bind(&s).execute(&mut *tx).await?;
                s
            }
        };
        // Keys stored as a bare SHA-256 by the first schema: convert them (they keep working).
        let old = sqlx::query("SELECT id, secret_hash FROM api_keys WHERE hash_scheme = 1").fetch_all(&mut *tx).await?;
        for r in &old {
            let (id, sha): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            sqlx::query("UPDATE api_keys SET secret_hash = ?, hash_scheme = ? WHERE id = ? AND hash_scheme = 1")
                .bind(crate::keyed_hash(&salt, &sha))
                .bind(common::KEYED)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        *self.salt.write().unwrap_or_else(std::sync::PoisonError::into_inner) = salt;
        Ok(())
    }
}

/// Creates the database file at `path` if it is missing, readable and writable by its owner only
/// (mode 0600 on Unix: it holds the hashes of API keys); an existing file is left as it is. A
/// missing directory is an error that names it.
fn create_private(path: &std::path::Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(StoreError::Invalid(format!(
            "database URL: the directory {} of {} does not exist",
            dir.display(),
            path.display()
        )));
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Invalid(format!("database URL: cannot create {}: {e}", path.display()))),
    }
}

impl SqliteStore {
    /// The state recorded at `version` (the newest with `None`), its log rebuilt from the rows up
    /// to it: from the nearest row at or before it that still carries the whole log (a row of the
    /// first schemas the conversion left as it was; usually none), then each row's own entries.
    async fn load(&self, version: Option<i64>) -> Result<Option<State>> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT version, state, log_entries FROM config_versions WHERE version = ?")
                    .bind(v)
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT version, state, log_entries FROM config_versions ORDER BY version DESC LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        let Some(r) = row else { return Ok(None) };
        let v = r.int("version")?;
        let mut state = common::parse_state(&r.text("state")?, v)?;
        if r.opt_text("log_entries")?.is_none() {
            return Ok(Some(state));
        }
        let base = sqlx::query(
            "SELECT version, state FROM config_versions WHERE version <= ? AND log_entries IS NULL ORDER BY version DESC LIMIT 1",
        )
        .bind(v)
        .fetch_optional(&self.pool)
        .await?;
        let (from, mut log) = match base {
            Some(b) => {
                let bv = b.int("version")?;
                (bv, common::parse_state(&b.text("state")?, bv)?.log)
            }
            None => (0, vec![]),
        };
        let rows = sqlx::query(
            "SELECT version, log_entries FROM config_versions WHERE version > ? AND version <= ? ORDER BY version",
        )
        .bind(from)
        .bind(v)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            if let Some(text) = r.opt_text("log_entries")? {
                log.extend(common::parse_entries(&text, r.int("version")?)?);
            }
        }
        state.log = log;
        Ok(Some(state))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn load_current(&self) -> Result<(u64, State)> {
        match self.load(None).await? {
            None => Ok((0, State::default())),
            Some(state) => Ok((state.version, state)),
        }
    }

    async fn current_version(&self) -> Result<u64> {
        let v: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM config_versions")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        to_u64(v)
    }

    async fn load_version(&self, version: u64) -> Result<Option<State>> {
        self.load(Some(to_i64(version)?)).await
    }

    async fn commit(&self, expected: u64, state: &State, audit: &AuditEntry) -> Result<u64> {
        let c = Commit::prepare(expected, state, audit)?;
        let pool = self.pool.clone();
        let _w = self.writer.lock().await;
        common::run_to_end(async move {
            // IMMEDIATE: the write lock is taken before the version is read, so a writer in another
            // process waits (busy timeout) and then sees its commit, rather than failing on a stale
            // snapshot.
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM config_versions")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            c.check_current(current)?;
            let inserted = sqlx::query("INSERT INTO config_versions (version, state, log_entries, created_at) VALUES (?, ?, ?, ?)")
                .bind(c.new)
                .bind(&c.state)
                .bind(&c.log_entries)
                .bind(&c.audit.time)
                .execute(&mut *tx)
                .await;
            if let Err(sqlx::Error::Database(e)) = &inserted {
                if e.is_unique_violation() {
                    return Err(c.conflict(c.new));
                }
            }
            inserted?;
            sqlx::query(
                "INSERT INTO audit_log (after_version, before_version, actor, time, action, reason, forced, changes, overridden) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(c.new)
            .bind(c.expected)
            .bind(&c.audit.actor)
            .bind(&c.audit.time)
            .bind(&c.audit.action)
            .bind(&c.audit.reason)
            .bind(c.audit.forced)
            .bind(&c.changes)
            .bind(&c.overridden)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        Ok(state.version)
    }

    async fn audit(&self, before: Option<u64>, limit: u32) -> Result<Vec<AuditRecord>> {
        let before = common::audit_before(before)?;
        let rows = sqlx::query(
            "SELECT after_version, before_version, actor, time, action, reason, forced, changes, overridden \
             FROM audit_log WHERE after_version < ? ORDER BY after_version DESC LIMIT ?",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(common::audit_row).collect()
    }

    async fn key_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM api_keys").fetch_one(&self.pool).await?.try_get(0)?;
        to_u64(n)
    }

    async fn create_key(&self, info: &KeyInfo, secret: &str) -> Result<()> {
        self.import_key(info, &self.hash_secret(secret)).await
    }

    async fn bootstrap_key(&self, info: &KeyInfo, secret: &str) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO api_keys (id, name, role, secret_hash, created_at, revoked_at, hash_scheme) \
             SELECT ?, ?, ?, ?, ?, NULL, 2 WHERE NOT EXISTS (SELECT 1 FROM api_keys)",
        )
        .bind(&info.id)
        .bind(&info.name)
        .bind(info.role.as_str())
        .bind(self.hash_secret(secret))
        .bind(&info.created_at)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn find_key(&self, secret: &str) -> Result<Option<KeyInfo>> {
        let row = sqlx::query(
            "SELECT id, name, role, created_at, revoked_at FROM api_keys WHERE secret_hash = ? AND revoked_at IS NULL",
        )
        .bind(self.hash_secret(secret))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(common::key_row).transpose()
    }

    fn key_salt(&self) -> String {
        self.salt.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    async fn set_key_salt(&self, salt: &str) -> Result<()> {
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM api_keys").fetch_one(&mut *tx).await?.try_get(0)?;
        if n > 0 {
            return Err(StoreError::Invalid("the key salt of a store with keys cannot change".into()));
        }
        sqlx::query("UPDATE key_hash_salt SET salt = ? WHERE id = 1").bind(salt).execute(&mut *tx).await?;
        tx.commit().await?;
        *self.salt.write().unwrap_or_else(std::sync::PoisonError::into_inner) = salt.to_string();
        Ok(())
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let rows = sqlx::query("SELECT id, name, role, created_at, revoked_at FROM api_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(common::key_row).collect()
    }

    async fn revoke_key(&self, id: &str, at: &str) -> Result<Revoke> {
        // One statement: SQLite runs it under the database's write lock, so the count of live
        // admin keys it checks cannot change before it writes (on any handle or process).
        let r = sqlx::query(&format!("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND {}", crate::REVOCABLE))
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 1 {
            // After the revocation: a session of a revoked key is refused anyway (the console
            // checks the key on every request), so this needs no transaction with it.
            sqlx::query("DELETE FROM sessions WHERE key_id = ?").bind(id).execute(&self.pool).await?;
            return Ok(Revoke::Revoked);
        }
        let live: Option<String> = sqlx::query("SELECT role FROM api_keys WHERE id = ? AND revoked_at IS NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        Ok(if live.is_some() { Revoke::LastAdmin } else { Revoke::NotFound })
    }

    async fn create_session(&self, session: &Session, now: i64) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= ?").bind(now).execute(&self.pool).await?;
        sqlx::query("INSERT INTO sessions (token_hash, key_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(&session.token_hash)
            .bind(&session.key_id)
            .bind(&session.created_at)
            .bind(session.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_session(&self, token_hash: &str, now: i64) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT token_hash, key_id, created_at, expires_at FROM sessions WHERE token_hash = ? AND expires_at > ?",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(common::session_row).transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?").bind(token_hash).execute(&self.pool).await?;
        Ok(())
    }

    async fn sticky_get(&self, unit_type: &str, unit: &str, experiment: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT variant FROM sticky_assignments WHERE unit_type = ? AND unit = ? AND experiment = ?")
                .bind(unit_type)
                .bind(unit)
                .bind(experiment)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get("variant")).transpose()?)
    }

    async fn sticky_for_unit(&self, unit_type: &str, unit: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT experiment, variant FROM sticky_assignments WHERE unit_type = ? AND unit = ?")
            .bind(unit_type)
            .bind(unit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(common::sticky_variant_row).collect()
    }

    async fn sticky_put(&self, rows: &[(String, String, String, String)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let (pool, rows) = (self.pool.clone(), rows.to_vec());
        common::run_to_end(async move {
            let mut tx = pool.begin().await?;
            for (t, u, e, v) in &rows {
                sqlx::query(
                "INSERT OR IGNORE INTO sticky_assignments (unit_type, unit, experiment, variant) VALUES (?, ?, ?, ?)",
            )
            .bind(t)
            .bind(u)
            .bind(e)
            .bind(v)
            .execute(&mut *tx)
            .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn record_exposures(&self, exposures: &[Exposure]) -> Result<u64> {
        if exposures.is_empty() {
            return Ok(0);
        }
        let (pool, exposures) = (self.pool.clone(), exposures.to_vec());
        common::run_to_end(async move {
        let mut tx = pool.begin().await?;
        let mut new = 0;
        for x in &exposures {
            let r = sqlx::query(
                "INSERT OR IGNORE INTO exposures (unit, experiment, variant, day, time, version) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&x.unit)
            .bind(&x.experiment)
            .bind(&x.variant)
            .bind(&x.day)
            .bind(&x.time)
            .bind(to_i64(x.version)?)
            .execute(&mut *tx)
            .await?;
            new += r.rows_affected();
        }
        tx.commit().await?;
        Ok(new)
        })
        .await
    }

    async fn exposures(&self, experiment: Option<&str>, after: u64, limit: u32) -> Result<Vec<(u64, Exposure)>> {
        let rows = sqlx::query(
            "SELECT id, unit, experiment, variant, day, time, version FROM exposures \
             WHERE id > ? AND (? IS NULL OR experiment = ?) ORDER BY id LIMIT ?",
        )
        .bind(to_i64(after)?)
        .bind(experiment)
        .bind(experiment)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(common::exposure_row).collect()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn export_keys(&self) -> Result<Vec<(KeyInfo, String)>> {
        let rows = sqlx::query(
            "SELECT id, name, role, created_at, revoked_at, secret_hash FROM api_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(common::exported_key_row).collect()
    }

    async fn import_key(&self, info: &KeyInfo, secret_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, role, secret_hash, created_at, revoked_at, hash_scheme) VALUES (?, ?, ?, ?, ?, ?, 2)",
        )
        .bind(&info.id)
        .bind(&info.name)
        .bind(info.role.as_str())
        .bind(secret_hash)
        .bind(&info.created_at)
        .bind(&info.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn sticky_counts(&self) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query(common::STICKY_COUNTS).fetch_all(&self.pool).await?;
        rows.iter().map(common::sticky_count_row).collect()
    }

    async fn sticky_page(&self, after: Option<&StickyRow>, limit: u32) -> Result<Vec<StickyRow>> {
        let rows = match after {
            None => {
                sqlx::query(
                    "SELECT unit_type, unit, experiment, variant FROM sticky_assignments \
                     ORDER BY unit_type, unit, experiment LIMIT ?",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            Some((t, u, e, _)) => {
                sqlx::query(
                    "SELECT unit_type, unit, experiment, variant FROM sticky_assignments \
                     WHERE (unit_type, unit, experiment) > (?, ?, ?) ORDER BY unit_type, unit, experiment LIMIT ?",
                )
                .bind(t)
                .bind(u)
                .bind(e)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(common::sticky_row).collect()
    }
}
