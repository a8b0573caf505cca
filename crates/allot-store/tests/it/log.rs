//! The change log is stored once: each version's row keeps its state without the log and the
//! entries it added; reads rebuild the whole log. Stores of the earlier schema are converted.

use crate::backend::Ctx;
use allot_core::state::{LogEntry, State};
use allot_store::AuditEntry;

on_every_backend!(the_log_is_stored_once_and_rebuilt_whole, a_store_of_the_old_schema_is_converted,);

const VERSIONS: u64 = 300;

/// Version `v` of a history of small changes: the configuration changes a little, the log grows
/// by one entry per version.
fn state(v: u64) -> State {
    let log = (1..=v)
        .map(|i| LogEntry {
            version: i,
            time: "2026-01-01T00:00:00Z".into(),
            actor: Some("tester".into()),
            forced: false,
            reason: None,
            changes: vec![format!("~ experiment banner: weight {i} → {}, a change line of realistic length", i + 1)],
            overridden: vec![],
        })
        .collect();
    State { version: v, config: Some(serde_json::json!({"weight": v})), log, ..State::default() }
}

fn entry() -> AuditEntry {
    AuditEntry {
        actor: "tester".into(),
        time: "2026-01-01T00:00:00Z".into(),
        action: "config.put".into(),
        reason: None,
        forced: false,
        changes: serde_json::json!([]),
        overridden: serde_json::json!([]),
    }
}

/// Runs SQL on the backend directly; returns the first column of the first row as an integer.
async fn sql(ctx: &Ctx, text: &str) -> Option<i64> {
    use sqlx::Row;
    match ctx {
        Ctx::Sqlite { url, .. } => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            let rows = sqlx::raw_sql(text).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows.first().and_then(|r| r.try_get::<i64, _>(0).ok())
        }
        Ctx::Postgres { url, schema, .. } => {
            // Not through `PgStore`: opening it would run the migrations.
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let text = format!("SET search_path TO \"{schema}\"; {text}");
            let rows = sqlx::raw_sql(&text).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows.first().and_then(|r| r.try_get::<i64, _>(0).ok())
        }
    }
}

/// Bytes stored for version `v` (its state and its log entries).
async fn row_bytes(ctx: &Ctx, v: u64) -> i64 {
    let len = if matches!(ctx, Ctx::Sqlite { .. }) { "length" } else { "octet_length" };
    sql(ctx, &format!("SELECT CAST({len}(state) + COALESCE({len}(log_entries), 0) AS BIGINT) FROM config_versions WHERE version = {v}"))
        .await
        .unwrap()
}

async fn commit_history(ctx: &Ctx) {
    let s = ctx.store();
    for v in 1..=VERSIONS {
        s.commit(v - 1, &state(v), &entry()).await.unwrap();
    }
}

async fn every_version_reads_back_whole(ctx: &Ctx) {
    let s = ctx.reopen().await;
    let (v, current) = s.load_current().await.unwrap();
    assert_eq!(v, VERSIONS);
    assert_eq!(current, state(VERSIONS), "the current state comes back with its whole log");
    for v in [1, 2, 17, 150, VERSIONS - 1, VERSIONS] {
        assert_eq!(s.load_version(v).await.unwrap(), Some(state(v)), "version {v}");
    }
    // Linear, not quadratic: the newest row is about the size of the first.
    let (first, last) = (row_bytes(ctx, 1).await, row_bytes(ctx, VERSIONS).await);
    assert!(last <= 2 * first + 256, "version {VERSIONS} stores {last} bytes, version 1 stores {first}");
}

async fn the_log_is_stored_once_and_rebuilt_whole(ctx: Ctx) {
    commit_history(&ctx).await;
    every_version_reads_back_whole(&ctx).await;
}

/// A store as the earlier schema left it: every row holds the whole state, log included.
async fn a_store_of_the_old_schema_is_converted(ctx: Ctx) {
    commit_history(&ctx).await;
    for v in 1..=VERSIONS {
        let full = serde_json::to_string(&state(v)).unwrap().replace('\'', "''");
        sql(&ctx, &format!("UPDATE config_versions SET state = '{full}' WHERE version = {v}")).await;
    }
    sql(&ctx, "ALTER TABLE config_versions DROP COLUMN log_entries").await;
    sql(&ctx, "DELETE FROM schema_migrations WHERE version = 3").await;
    assert!(row_bytes_legacy(&ctx, VERSIONS).await > 10 * row_bytes_legacy(&ctx, 1).await, "the old rows grow");
    every_version_reads_back_whole(&ctx).await;
    // And a commit after the conversion continues the log.
    let s = ctx.reopen().await;
    s.commit(VERSIONS, &state(VERSIONS + 1), &entry()).await.unwrap();
    assert_eq!(s.load_current().await.unwrap().1, state(VERSIONS + 1));
}

async fn row_bytes_legacy(ctx: &Ctx, v: u64) -> i64 {
    let len = if matches!(ctx, Ctx::Sqlite { .. }) { "length" } else { "octet_length" };
    sql(ctx, &format!("SELECT CAST({len}(state) AS BIGINT) FROM config_versions WHERE version = {v}")).await.unwrap()
}
