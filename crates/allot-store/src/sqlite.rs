//! The SQLite store: one file, WAL journal, `synchronous=FULL` (a committed transaction survives
//! a crash of the process or of the machine), embedded migrations from `migrations/sqlite/`.
//!
//! Commits of configuration versions are serialised in the process by a mutex and checked in
//! the transaction (the current version must be the expected one, and `version` is the primary
//! key), so two writers planning from the same version cannot both win, even across processes.

use crate::{AuditEntry, AuditRecord, BoxFuture, Exposure, KeyInfo, Result, Role, StickyRow, Store, StoreError};
use allot_core::state::State;
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// Migrations in order: `(version, name, SQL)`. Applied once each, recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "init", include_str!("../migrations/sqlite/0001_init.sql"))];

/// A store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: tokio::sync::Mutex<()>,
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{v} is out of range")))
}

fn to_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative number {v}")))
}

fn parse_state(text: &str, version: i64) -> Result<State> {
    State::from_json(text).map_err(|e| StoreError::Corrupt(format!("version {version}: {e}")))
}

fn key_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<KeyInfo> {
    let role: String = row.try_get("role")?;
    Ok(KeyInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role}")))?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl SqliteStore {
    /// Opens (and migrates) the store at `url` (`sqlite://allot.db?mode=rwc`, `sqlite::memory:`).
    pub fn open(url: &str) -> BoxFuture<'_, Result<SqliteStore>> {
        Box::pin(SqliteStore::open_inner(url))
    }

    async fn open_inner(url: &str) -> Result<SqliteStore> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("database URL: {e}")))?
            .journal_mode(if memory { SqliteJournalMode::Memory } else { SqliteJournalMode::Wal })
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // An in-memory database exists per connection: keep exactly one.
        let pool = SqlitePoolOptions::new().max_connections(if memory { 1 } else { 8 }).connect_with(opts).await?;
        let store = SqliteStore { pool, writer: tokio::sync::Mutex::new(()) };
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
        if let Some(newest) = done.iter().max() {
            let known = MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0);
            if *newest > known {
                return Err(StoreError::Unsupported(format!(
                    "the database has schema version {newest}; this allot knows up to {known}"
                )));
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn load_current(&self) -> Result<(u64, State)> {
        let row = sqlx::query("SELECT version, state FROM config_versions ORDER BY version DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok((0, State::default())),
            Some(r) => {
                let v: i64 = r.try_get("version")?;
                let text: String = r.try_get("state")?;
                Ok((to_u64(v)?, parse_state(&text, v)?))
            }
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
        let v = to_i64(version)?;
        let row = sqlx::query("SELECT state FROM config_versions WHERE version = ?")
            .bind(v)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(parse_state(&r.try_get::<String, _>("state")?, v)?)),
        }
    }

    async fn commit(&self, expected: u64, state: &State, audit: &AuditEntry) -> Result<u64> {
        if state.version <= expected {
            return Err(StoreError::Invalid(format!(
                "state version {} is not newer than the expected version {expected}",
                state.version
            )));
        }
        let text = serde_json::to_string(state).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let changes = audit.changes.to_string();
        let overridden = audit.overridden.to_string();
        let (new, exp) = (to_i64(state.version)?, to_i64(expected)?);
        let pool = self.pool.clone();
        let audit = audit.clone();
        let _w = self.writer.lock().await;
        // Run the transaction to its end even if the caller goes away.
        let task = tokio::spawn(async move {
            // IMMEDIATE: the write lock is taken before the version is read, so a writer in another
            // process waits (busy timeout) and then sees its commit, rather than failing on a stale
            // snapshot.
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM config_versions")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if current != exp {
                return Err(StoreError::Conflict { expected: to_u64(exp)?, current: to_u64(current)? });
            }
            let inserted = sqlx::query("INSERT INTO config_versions (version, state, created_at) VALUES (?, ?, ?)")
                .bind(new)
                .bind(&text)
                .bind(&audit.time)
                .execute(&mut *tx)
                .await;
            if let Err(sqlx::Error::Database(e)) = &inserted {
                if e.is_unique_violation() {
                    return Err(StoreError::Conflict { expected: to_u64(exp)?, current: to_u64(new)? });
                }
            }
            inserted?;
            sqlx::query(
                "INSERT INTO audit_log (after_version, before_version, actor, time, action, reason, forced, changes, overridden) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(new)
            .bind(exp)
            .bind(&audit.actor)
            .bind(&audit.time)
            .bind(&audit.action)
            .bind(&audit.reason)
            .bind(audit.forced)
            .bind(&changes)
            .bind(&overridden)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        });
        task.await.map_err(|e| StoreError::Database(format!("commit task: {e}")))??;
        Ok(state.version)
    }

    async fn audit(&self, before: Option<u64>, limit: u32) -> Result<Vec<AuditRecord>> {
        let before = match before {
            Some(b) => to_i64(b)?,
            None => i64::MAX,
        };
        let rows = sqlx::query(
            "SELECT after_version, before_version, actor, time, action, reason, forced, changes, overridden \
             FROM audit_log WHERE after_version < ? ORDER BY after_version DESC LIMIT ?",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    before_version: to_u64(r.try_get("before_version")?)?,
                    after_version: to_u64(r.try_get("after_version")?)?,
                    entry: AuditEntry {
                        actor: r.try_get("actor")?,
                        time: r.try_get("time")?,
                        action: r.try_get("action")?,
                        reason: r.try_get("reason")?,
                        forced: r.try_get("forced")?,
                        changes: json(&r.try_get::<String, _>("changes")?)?,
                        overridden: json(&r.try_get::<String, _>("overridden")?)?,
                    },
                })
            })
            .collect()
    }

    async fn key_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM api_keys").fetch_one(&self.pool).await?.try_get(0)?;
        to_u64(n)
    }

    async fn create_key(&self, info: &KeyInfo, secret: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, role, secret_sha256, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&info.id)
        .bind(&info.name)
        .bind(info.role.as_str())
        .bind(crate::hash_secret(secret))
        .bind(&info.created_at)
        .bind(&info.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn bootstrap_key(&self, info: &KeyInfo, secret: &str) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO api_keys (id, name, role, secret_sha256, created_at, revoked_at) \
             SELECT ?, ?, ?, ?, ?, NULL WHERE NOT EXISTS (SELECT 1 FROM api_keys)",
        )
        .bind(&info.id)
        .bind(&info.name)
        .bind(info.role.as_str())
        .bind(crate::hash_secret(secret))
        .bind(&info.created_at)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn find_key(&self, secret: &str) -> Result<Option<KeyInfo>> {
        let row = sqlx::query(
            "SELECT id, name, role, created_at, revoked_at FROM api_keys WHERE secret_sha256 = ? AND revoked_at IS NULL",
        )
        .bind(crate::hash_secret(secret))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let rows = sqlx::query("SELECT id, name, role, created_at, revoked_at FROM api_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, id: &str, at: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
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
        rows.iter().map(|r| Ok((r.try_get("experiment")?, r.try_get("variant")?))).collect()
    }

    async fn sticky_put(&self, rows: &[(String, String, String, String)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (t, u, e, v) in rows {
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
    }

    async fn record_exposures(&self, exposures: &[Exposure]) -> Result<u64> {
        if exposures.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let mut new = 0;
        for x in exposures {
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
        rows.iter()
            .map(|r| {
                Ok((
                    to_u64(r.try_get("id")?)?,
                    Exposure {
                        unit: r.try_get("unit")?,
                        experiment: r.try_get("experiment")?,
                        variant: r.try_get("variant")?,
                        day: r.try_get("day")?,
                        time: r.try_get("time")?,
                        version: to_u64(r.try_get("version")?)?,
                    },
                ))
            })
            .collect()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn export_keys(&self) -> Result<Vec<(KeyInfo, String)>> {
        let rows = sqlx::query(
            "SELECT id, name, role, created_at, revoked_at, secret_sha256 FROM api_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((key_from_row(r)?, r.try_get("secret_sha256")?))).collect()
    }

    async fn import_key(&self, info: &KeyInfo, secret_sha256: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, role, secret_sha256, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&info.id)
        .bind(&info.name)
        .bind(info.role.as_str())
        .bind(secret_sha256)
        .bind(&info.created_at)
        .bind(&info.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
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
        rows.iter()
            .map(|r| Ok((r.try_get("unit_type")?, r.try_get("unit")?, r.try_get("experiment")?, r.try_get("variant")?)))
            .collect()
    }
}
