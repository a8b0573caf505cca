//! The PostgreSQL store: several `allot serve` nodes on one database, embedded migrations from
//! `migrations/postgres/`.
//!
//! A commit of a configuration version takes `LOCK TABLE config_versions IN EXCLUSIVE MODE` in its
//! transaction (readers are not blocked), then checks that the current version is still the
//! expected one: of concurrent commits from the same version, on any node, exactly one wins and
//! the others get [`StoreError::Conflict`]. The same transaction sends `NOTIFY allot_config` with
//! the new version, delivered to listeners when it commits.
//!
//! Sticky assignments and exposures are written as multi-row inserts with `ON CONFLICT DO
//! NOTHING`: the unique keys do the deduplication, across nodes too.
//!
//! TLS: the URL's `sslmode` (`disable`, `prefer` (the default), `require`, `verify-ca`,
//! `verify-full`) and `sslrootcert=PATH` are libpq's, done by sqlx with rustls, checked first
//! (`pg_tls.rs`); every connection of the pool, the `LISTEN` one included, uses them.

use crate::common::{self, to_i64, to_u64, Columns, Commit, Migration};
use crate::pg_tls;
use crate::{
    AuditEntry, AuditRecord, BoxFuture, Exposure, KeyInfo, Result, Revoke, Session, StickyRow, Store, StoreError,
};
use allot_core::state::State;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres, QueryBuilder, Row};
use std::time::Duration;

/// Migrations in order.
const MIGRATIONS: &[Migration] = &[
    (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
    (2, "keyed_key_hashes", include_str!("../migrations/postgres/0002_keyed_key_hashes.sql")),
    (3, "log_once", include_str!("../migrations/postgres/0003_log_once.sql")),
    (4, "sessions", include_str!("../migrations/postgres/0004_sessions.sql")),
];

/// The channel on which each commit announces its version. Notifications are database-wide, so the
/// payload is `<schema> <version>` and listeners keep those of their own schema.
pub const NOTIFY_CHANNEL: &str = "allot_config";

/// Advisory lock key taken while migrating, so that nodes starting together migrate once.
const MIGRATION_LOCK: i64 = 0x616c_6c6f_745f_6d69; // "allot_mi"

/// Rows per multi-row insert (PostgreSQL allows 65,535 bind parameters per statement).
const BATCH_ROWS: usize = 1000;

/// A store in a PostgreSQL database (optionally in one schema of it).
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    options: PgConnectOptions,
    /// The salt of [`crate::keyed_hash`], read (or made) when the store is opened.
    salt: std::sync::Arc<std::sync::RwLock<String>>,
}

/// By hand: the derived form would print the connection options' password and the key salt.
impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("host", &self.options.get_host())
            .field("port", &self.options.get_port())
            .field("database", &self.options.get_database())
            .field("user", &self.options.get_username())
            .field("ssl_mode", &self.options.get_ssl_mode())
            .finish_non_exhaustive()
    }
}

/// Whether `name` is safe to use as a schema name unquoted: ASCII letters, digits and `_`, not
/// starting with a digit.
pub(crate) fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Connections each node's pool opens at most, unless the URL says `pool=N`.
pub const DEFAULT_POOL: u32 = 16;

/// allot's own parameters of a PostgreSQL URL, which PostgreSQL does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Params {
    /// `schema=NAME`: the schema of the store's tables.
    pub(crate) schema: Option<String>,
    /// `pool=N`: connections the pool opens at most.
    pool: u32,
}

/// Takes allot's parameters (`schema=NAME`, `pool=N`) out of a URL: `(URL without them, them)`.
pub(crate) fn split_params(url: &str) -> Result<(String, Params)> {
    let mut params = Params { schema: None, pool: DEFAULT_POOL };
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), params)) };
    let mut rest = vec![];
    for p in query.split('&') {
        if let Some(name) = p.strip_prefix("schema=") {
            params.schema = Some(name.to_string());
        } else if let Some(n) = p.strip_prefix("pool=") {
            params.pool = n.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                StoreError::Invalid(format!("database URL: pool={n}: expected 1 to 1000 connections"))
            })?;
        } else {
            rest.push(p);
        }
    }
    if rest.is_empty() {
        Ok((base.to_string(), params))
    } else {
        Ok((format!("{base}?{}", rest.join("&")), params))
    }
}

impl PgStore {
    /// Opens (and migrates) the store at `url` (`postgres://user@host:5432/db`). A `schema=NAME`
    /// query parameter puts the store's tables in that schema (created if missing); otherwise they
    /// go where the connection's `search_path` says (`public` by default). `pool=N` sets how many
    /// connections the node opens at most (default [`DEFAULT_POOL`]). TLS as libpq's
    /// `sslmode` and `sslrootcert` say (`?sslmode=verify-full&sslrootcert=/etc/allot/ca.pem`).
    pub fn open(url: &str) -> BoxFuture<'_, Result<PgStore>> {
        Box::pin(async move {
            let (url, params) = split_params(url)?;
            PgStore::open_schema(&url, params.schema.as_deref(), params.pool).await
        })
    }

    /// Opens (and migrates) the store at `url` in `schema`, created if missing (tests use one
    /// fresh schema each).
    pub fn open_in_schema<'a>(url: &'a str, schema: Option<&'a str>) -> BoxFuture<'a, Result<PgStore>> {
        Box::pin(PgStore::open_schema(url, schema, DEFAULT_POOL))
    }

    async fn open_schema(url: &str, schema: Option<&str>, pool: u32) -> Result<PgStore> {
        let mut options = pg_tls::connect_options(url)?;
        if let Some(schema) = schema {
            if !valid_schema(schema) {
                return Err(StoreError::Invalid(format!("schema name {schema:?}")));
            }
            let mut conn =
                sqlx::PgConnection::connect_with(&options).await.map_err(|e| pg_tls::connect_error(e, &options))?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&mut conn).await?;
            conn.close().await?;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(pool)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await
            .map_err(|e| pg_tls::connect_error(e, &options))?;
        let store = PgStore { pool, options, salt: std::sync::Arc::default() };
        store.migrate().await?;
        Ok(store)
    }

    /// Drops `schema` and everything in it (for tests).
    pub fn drop_schema<'a>(url: &'a str, schema: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(PgStore::drop_schema_inner(url, schema))
    }

    async fn drop_schema_inner(url: &str, schema: &str) -> Result<()> {
        if !valid_schema(schema) {
            return Err(StoreError::Invalid(format!("schema name {schema:?}")));
        }
        let options = pg_tls::connect_options(url)?;
        let mut conn =
            sqlx::PgConnection::connect_with(&options).await.map_err(|e| pg_tls::connect_error(e, &options))?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut conn).await?;
        conn.close().await?;
        Ok(())
    }

    /// The connection options this store uses (the schema included), e.g. for a `LISTEN` connection.
    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)")
            .execute(&mut *tx)
            .await?;
        let done: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        common::check_schema_version(&done, MIGRATIONS)?;
        for (version, name, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            sqlx::Executor::execute(&mut *tx, *sql).await?;
            sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
                .bind(version)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
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
                let text: String = sqlx::query("SELECT state FROM config_versions WHERE version = $1")
                    .bind(v)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
                let state = common::parse_state(&text, v)?;
                if let Some((bare, entries)) = common::convert_legacy(&state, &before)? {
                    sqlx::query("UPDATE config_versions SET state = $1, log_entries = $2 WHERE version = $3")
                        .bind(bare)
                        .bind(entries)
                        .bind(v)
                        .execute(&mut *tx)
                        .await?;
                }
                before = state.log;
            }
        }
        // Under the migration lock: one node makes the salt, every node reads the same.
        sqlx::query("INSERT INTO key_hash_salt (id, salt) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
            .bind(crate::new_salt()?)
            .execute(&mut *tx)
            .await?;
        let salt: String =
            sqlx::query("SELECT salt FROM key_hash_salt WHERE id = 1").fetch_one(&mut *tx).await?.try_get(0)?;
        // Keys stored as a bare SHA-256 by the first schema: convert them (they keep working).
        let old = sqlx::query("SELECT id, secret_hash FROM api_keys WHERE hash_scheme = 1").fetch_all(&mut *tx).await?;
        for r in &old {
            let (id, sha): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            sqlx::query("UPDATE api_keys SET secret_hash = $1, hash_scheme = $2 WHERE id = $3 AND hash_scheme = 1")
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

impl PgStore {
    /// The state recorded at `version` (the newest with `None`), its log rebuilt from the rows up
    /// to it: from the nearest row at or before it that still carries the whole log (a row of the
    /// first schemas the conversion left as it was; usually none), then each row's own entries.
    async fn load(&self, version: Option<i64>) -> Result<Option<State>> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT version, state, log_entries FROM config_versions WHERE version = $1")
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
            "SELECT version, state FROM config_versions WHERE version <= $1 AND log_entries IS NULL ORDER BY version DESC LIMIT 1",
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
            "SELECT version, log_entries FROM config_versions WHERE version > $1 AND version <= $2 ORDER BY version",
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
impl Store for PgStore {
    async fn load_current(&self) -> Result<(u64, State)> {
        match self.load(None).await? {
            None => Ok((0, State::default())),
            Some(state) => Ok((state.version, state)),
        }
    }

    async fn current_version(&self) -> Result<u64> {
        let v: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0)::BIGINT FROM config_versions")
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
        common::run_to_end(async move {
            let mut tx = pool.begin().await?;
            sqlx::query("LOCK TABLE config_versions IN EXCLUSIVE MODE").execute(&mut *tx).await?;
            let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0)::BIGINT FROM config_versions")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            c.check_current(current)?;
            sqlx::query("INSERT INTO config_versions (version, state, log_entries, created_at) VALUES ($1, $2, $3, $4)")
                .bind(c.new)
                .bind(&c.state)
                .bind(&c.log_entries)
                .bind(&c.audit.time)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO audit_log (after_version, before_version, actor, time, action, reason, forced, changes, overridden) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
            sqlx::query("SELECT pg_notify($1, current_schema() || ' ' || $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(c.new.to_string())
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
             FROM audit_log WHERE after_version < $1 ORDER BY after_version DESC LIMIT $2",
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
        // Serialised so that two nodes starting together cannot both bootstrap.
        let (pool, info, secret) = (self.pool.clone(), info.clone(), self.hash_secret(secret));
        common::run_to_end(async move {
            let mut tx = pool.begin().await?;
            sqlx::query("LOCK TABLE api_keys IN EXCLUSIVE MODE").execute(&mut *tx).await?;
            let r = sqlx::query(
                "INSERT INTO api_keys (id, name, role, secret_hash, created_at, revoked_at, hash_scheme) \
             SELECT $1, $2, $3, $4, $5, NULL, 2 WHERE NOT EXISTS (SELECT 1 FROM api_keys)",
            )
            .bind(&info.id)
            .bind(&info.name)
            .bind(info.role.as_str())
            .bind(&secret)
            .bind(&info.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    async fn find_key(&self, secret: &str) -> Result<Option<KeyInfo>> {
        let row = sqlx::query(
            "SELECT id, name, role, created_at, revoked_at FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL",
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
        let (pool, salt) = (self.pool.clone(), salt.to_string());
        let stored = salt.clone();
        common::run_to_end(async move {
            let mut tx = pool.begin().await?;
            sqlx::query("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
            let n: i64 = sqlx::query("SELECT COUNT(*) FROM api_keys").fetch_one(&mut *tx).await?.try_get(0)?;
            if n > 0 {
                return Err(StoreError::Invalid("the key salt of a store with keys cannot change".into()));
            }
            sqlx::query("UPDATE key_hash_salt SET salt = $1 WHERE id = 1").bind(&stored).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        *self.salt.write().unwrap_or_else(std::sync::PoisonError::into_inner) = salt;
        Ok(())
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let rows = sqlx::query("SELECT id, name, role, created_at, revoked_at FROM api_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(common::key_row).collect()
    }

    async fn revoke_key(&self, id: &str, at: &str) -> Result<Revoke> {
        let (pool, id, at) = (self.pool.clone(), id.to_string(), at.to_string());
        common::run_to_end(async move {
            let mut tx = pool.begin().await?;
            // Revocations (and key creations) take turns: under READ COMMITTED, two concurrent
            // revocations of the last two admin keys would each count two live admins.
            sqlx::query("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
            let r = sqlx::query(&format!("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND {}", crate::REVOCABLE))
                .bind(&at)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            let outcome = if r.rows_affected() == 1 {
                sqlx::query("DELETE FROM sessions WHERE key_id = $1").bind(&id).execute(&mut *tx).await?;
                Revoke::Revoked
            } else {
                let live = sqlx::query("SELECT role FROM api_keys WHERE id = $1 AND revoked_at IS NULL")
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if live.is_some() {
                    Revoke::LastAdmin
                } else {
                    Revoke::NotFound
                }
            };
            tx.commit().await?;
            Ok(outcome)
        })
        .await
    }

    async fn create_session(&self, session: &Session, now: i64) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now).execute(&self.pool).await?;
        sqlx::query("INSERT INTO sessions (token_hash, key_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
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
            "SELECT token_hash, key_id, created_at, expires_at FROM sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(common::session_row).transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(&self.pool).await?;
        Ok(())
    }

    async fn sticky_get(&self, unit_type: &str, unit: &str, experiment: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT variant FROM sticky_assignments WHERE unit_type = $1 AND unit = $2 AND experiment = $3",
        )
        .bind(unit_type)
        .bind(unit)
        .bind(experiment)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("variant")).transpose()?)
    }

    async fn sticky_for_unit(&self, unit_type: &str, unit: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT experiment, variant FROM sticky_assignments WHERE unit_type = $1 AND unit = $2 ORDER BY experiment",
        )
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
        // First of each key wins; keys in order, so that concurrent batches cannot deadlock.
        let mut sorted: Vec<(String, String, String, String)> = rows.to_vec();
        sorted.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
        sorted.dedup_by(|b, a| (&a.0, &a.1, &a.2) == (&b.0, &b.1, &b.2));
        let pool = self.pool.clone();
        common::run_to_end(async move {
            let mut tx = pool.begin().await?;
            for chunk in sorted.chunks(BATCH_ROWS) {
                let mut q: QueryBuilder<Postgres> =
                    QueryBuilder::new("INSERT INTO sticky_assignments (unit_type, unit, experiment, variant) ");
                q.push_values(chunk, |mut b, (t, u, e, v)| {
                    b.push_bind(t).push_bind(u).push_bind(e).push_bind(v);
                });
                q.push(" ON CONFLICT DO NOTHING");
                q.build().execute(&mut *tx).await?;
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
        fn key(x: &Exposure) -> (&str, &str, &str, &str) {
            (&x.unit, &x.experiment, &x.variant, &x.day)
        }
        // Keys in order (concurrent batches cannot deadlock), the first of each key kept.
        let mut sorted: Vec<(usize, &Exposure)> = exposures.iter().enumerate().collect();
        sorted.sort_by(|a, b| key(a.1).cmp(&key(b.1)).then(a.0.cmp(&b.0)));
        sorted.dedup_by(|b, a| key(a.1) == key(b.1));
        let rows: Vec<(Exposure, i64)> =
            sorted.into_iter().map(|(_, x)| Ok((x.clone(), to_i64(x.version)?))).collect::<Result<_>>()?;
        let pool = self.pool.clone();
        common::run_to_end(async move {
            let mut tx = pool.begin().await?;
            let mut new = 0;
            for chunk in rows.chunks(BATCH_ROWS) {
                let mut q: QueryBuilder<Postgres> =
                    QueryBuilder::new("INSERT INTO exposures (unit, experiment, variant, day, time, version) ");
                q.push_values(chunk, |mut b, (x, v)| {
                    b.push_bind(&x.unit)
                        .push_bind(&x.experiment)
                        .push_bind(&x.variant)
                        .push_bind(&x.day)
                        .push_bind(&x.time)
                        .push_bind(*v);
                });
                q.push(" ON CONFLICT DO NOTHING");
                new += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Ok(new)
        })
        .await
    }

    async fn exposures(&self, experiment: Option<&str>, after: u64, limit: u32) -> Result<Vec<(u64, Exposure)>> {
        let rows = sqlx::query(
            "SELECT id, unit, experiment, variant, day, time, version FROM exposures \
             WHERE id > $1 AND ($2::TEXT IS NULL OR experiment = $2) ORDER BY id LIMIT $3",
        )
        .bind(to_i64(after)?)
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

    fn changes(&self) -> Option<tokio::sync::mpsc::Receiver<u64>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(listen(self.pool.clone(), tx));
        Some(rx)
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
            "INSERT INTO api_keys (id, name, role, secret_hash, created_at, revoked_at, hash_scheme) VALUES ($1, $2, $3, $4, $5, $6, 2)",
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
                     ORDER BY unit_type, unit, experiment LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            Some((t, u, e, _)) => {
                sqlx::query(
                    "SELECT unit_type, unit, experiment, variant FROM sticky_assignments \
                     WHERE (unit_type, unit, experiment) > ($1, $2, $3) ORDER BY unit_type, unit, experiment LIMIT $4",
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

/// Forwards `NOTIFY allot_config` payloads to `tx` until it is closed; reconnects (every second
/// while the database is unreachable) and sends `0` each time it starts listening.
async fn listen(pool: PgPool, tx: tokio::sync::mpsc::Sender<u64>) {
    // The schema this store's tables are in (the first of the search path that exists).
    let schema: String = loop {
        let q = sqlx::query_scalar::<_, String>("SELECT current_schema()").fetch_one(&pool);
        tokio::select! {
            _ = tx.closed() => return,
            r = q => match r {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            },
        }
    };
    loop {
        let connected = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            _ = tx.closed() => return,
            l = connected => match l {
                Ok(l) => l,
                Err(_) => {
                    tokio::select! {
                        _ = tx.closed() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        // Listening from now on; notifications sent before are lost: ask for a check.
        let _ = tx.try_send(0);
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                r = listener.try_recv() => match r {
                    Ok(Some(n)) => {
                        if let Some((from, version)) = n.payload().split_once(' ') {
                            if from == schema {
                                let _ = tx.try_send(version.parse().unwrap_or(0));
                            }
                        }
                    }
                    Ok(None) => {
                        let _ = tx.try_send(0);
                    }
                    Err(_) => break,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allots_parameters_are_taken_out_of_the_url() {
        let p = |schema: Option<&str>, pool| Params { schema: schema.map(str::to_string), pool };
        assert_eq!(split_params("postgres://h/db").unwrap(), ("postgres://h/db".into(), p(None, DEFAULT_POOL)));
        assert_eq!(
            split_params("postgres://h/db?schema=a").unwrap(),
            ("postgres://h/db".into(), p(Some("a"), DEFAULT_POOL))
        );
        assert_eq!(
            split_params("postgres://h/db?sslmode=disable&schema=a&pool=32&x=1").unwrap(),
            ("postgres://h/db?sslmode=disable&x=1".into(), p(Some("a"), 32))
        );
        for bad in ["pool=0", "pool=many", "pool=5000"] {
            let e = split_params(&format!("postgres://h/db?{bad}")).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("1 to 1000"), "{e}");
        }
        assert!(valid_schema("allot_test_1"));
        assert!(!valid_schema("a;drop"));
        assert!(!valid_schema("1a"));
    }
}
