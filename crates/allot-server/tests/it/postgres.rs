//! The service on PostgreSQL (`ALLOT_TEST_POSTGRES_URL`, a fresh schema per test): what
//! PostgreSQL refuses to store (NUL bytes, index rows over ~2.7 KB) is refused at the edge, so
//! that it never reaches, and fails, a batch shared with other clients' writes.

use crate::limits::bad_unit_ids;
use crate::support::*;
use axum::http::StatusCode;
use serde_json::json;
use std::sync::Arc;

const STICKY: &str = r#"
units:
  user: {attribute: user_id}
experiments:
  plain: {unit: user, share: 100%, variants: {a: 1, b: 1}, state: running}
  st: {unit: user, share: 100%, variants: {a: 1, b: 1}, sticky: true, state: running}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_unit_ids_fail_only_their_own_request_on_postgres() {
    let Some((s, url, schema)) = postgres_server().await else { return };
    assert_eq!(s.put_config(STICKY, "*", "").await.status, StatusCode::OK);
    // PostgreSQL itself refuses such rows: a batch holding one would fail as a whole.
    let nul = allot_store::Exposure {
        unit: "nul\u{0}byte".into(),
        experiment: "plain".into(),
        variant: "a".into(),
        day: "2026-01-01".into(),
        time: "2026-01-01T00:00:00Z".into(),
        version: 1,
    };
    assert!(s.app.store().record_exposures(&[nul]).await.is_err(), "PostgreSQL stores NUL bytes now?");
    let s = Arc::new(s);
    let mut tasks = vec![];
    for i in 0..64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"context": {"user_id": format!("u{i}")}, "log_exposures": true});
            let r = s.post("/api/v1/evaluate", &body.to_string()).await;
            (r.status, StatusCode::OK, r.text)
        }));
    }
    for (unit, _) in bad_unit_ids() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"context": {"user_id": unit}, "log_exposures": true});
            let r = s.post("/api/v1/evaluate", &body.to_string()).await;
            (r.status, StatusCode::UNPROCESSABLE_ENTITY, r.text)
        }));
    }
    for t in tasks {
        let (got, want, text) = t.await.unwrap();
        assert_eq!(got, want, "{text}");
    }
    let logged = s.app.store().exposures(None, 0, 10_000).await.unwrap();
    assert_eq!(logged.len(), 64 * 2, "every innocent request's exposures were written");
    for i in 0..64 {
        let rows = s.app.store().sticky_for_unit("user", &format!("u{i}")).await.unwrap();
        assert_eq!(rows.len(), 1, "u{i}'s sticky assignment was written");
    }
    drop(s);
    allot_store::postgres::PgStore::drop_schema(&url, &schema).await.unwrap();
}
