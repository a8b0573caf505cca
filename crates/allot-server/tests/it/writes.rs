//! Writes made by evaluation, over a store that the tests can take down or hold: group commit of
//! logged exposures and sticky assignments, and sticky experiments while the database is
//! unreachable (the same behaviour the PostgreSQL outage test shows end to end, here on SQLite so
//! that it runs everywhere).

use crate::support::{Server, ADMIN};
use allot_core::state::State;
use allot_server::App;
use allot_store::{AuditEntry, AuditRecord, Exposure, KeyInfo, Result, StickyRow, Store, StoreError};
use async_trait::async_trait;
use axum::http::StatusCode;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A unit id that passes the edge's checks but that [`Faulty`] refuses to write (as PostgreSQL
/// refuses some rows): the whole multi-row insert it is in fails.
pub(crate) const POISON: &str = "poison-unit";

/// A store that fails with `Unavailable` while `down`, counts the batches of sticky assignments
/// and exposures it is asked to write, and holds each exposure write until `gate` gives a permit
/// (when `held`).
pub(crate) struct Faulty {
    inner: Arc<dyn Store>,
    pub(crate) down: AtomicBool,
    held: AtomicBool,
    gate: Semaphore,
    /// Exposures in writes waiting at the gate.
    held_rows: AtomicUsize,
    exposure_writes: AtomicUsize,
    sticky_writes: AtomicUsize,
}

impl Faulty {
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("connection refused (test)".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for Faulty {
    async fn load_current(&self) -> Result<(u64, State)> {
        self.check()?;
        self.inner.load_current().await
    }
    async fn current_version(&self) -> Result<u64> {
        self.check()?;
        self.inner.current_version().await
    }
    async fn load_version(&self, version: u64) -> Result<Option<State>> {
        self.check()?;
        self.inner.load_version(version).await
    }
    async fn commit(&self, expected: u64, state: &State, audit: &AuditEntry) -> Result<u64> {
        self.check()?;
        self.inner.commit(expected, state, audit).await
    }
    async fn audit(&self, before: Option<u64>, limit: u32) -> Result<Vec<AuditRecord>> {
        self.check()?;
        self.inner.audit(before, limit).await
    }
    async fn key_count(&self) -> Result<u64> {
        self.check()?;
        self.inner.key_count().await
    }
    async fn create_key(&self, info: &KeyInfo, secret: &str) -> Result<()> {
        self.check()?;
        self.inner.create_key(info, secret).await
    }
    async fn bootstrap_key(&self, info: &KeyInfo, secret: &str) -> Result<bool> {
        self.check()?;
        self.inner.bootstrap_key(info, secret).await
    }
    async fn create_session(&self, session: &allot_store::Session, now: i64) -> Result<()> {
        self.check()?;
        self.inner.create_session(session, now).await
    }
    async fn find_session(&self, token_hash: &str, now: i64) -> Result<Option<allot_store::Session>> {
        self.check()?;
        self.inner.find_session(token_hash, now).await
    }
    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        self.check()?;
        self.inner.delete_session(token_hash).await
    }
    async fn find_key(&self, secret: &str) -> Result<Option<KeyInfo>> {
        self.check()?;
        self.inner.find_key(secret).await
    }
    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.check()?;
        self.inner.list_keys().await
    }
    async fn revoke_key(&self, id: &str, at: &str) -> Result<allot_store::Revoke> {
        self.check()?;
        self.inner.revoke_key(id, at).await
    }
    async fn sticky_get(&self, unit_type: &str, unit: &str, experiment: &str) -> Result<Option<String>> {
        self.check()?;
        self.inner.sticky_get(unit_type, unit, experiment).await
    }
    async fn sticky_for_unit(&self, unit_type: &str, unit: &str) -> Result<Vec<(String, String)>> {
        self.check()?;
        self.inner.sticky_for_unit(unit_type, unit).await
    }
    async fn sticky_put(&self, rows: &[StickyRow]) -> Result<()> {
        self.check()?;
        if rows.iter().any(|r| r.1 == POISON) {
            return Err(StoreError::Database("value too long for the index (test)".into()));
        }
        self.sticky_writes.fetch_add(1, Ordering::SeqCst);
        self.inner.sticky_put(rows).await
    }
    async fn record_exposures(&self, exposures: &[Exposure]) -> Result<u64> {
        self.check()?;
        if self.held.load(Ordering::SeqCst) {
            self.held_rows.fetch_add(exposures.len(), Ordering::SeqCst);
            self.gate.acquire().await.unwrap().forget();
        }
        self.exposure_writes.fetch_add(1, Ordering::SeqCst);
        if exposures.iter().any(|x| x.unit == POISON) {
            return Err(StoreError::Database("value too long for the index (test)".into()));
        }
        self.inner.record_exposures(exposures).await
    }
    async fn exposures(&self, experiment: Option<&str>, after: u64, limit: u32) -> Result<Vec<(u64, Exposure)>> {
        self.check()?;
        self.inner.exposures(experiment, after, limit).await
    }
    async fn ping(&self) -> Result<()> {
        self.check()?;
        self.inner.ping().await
    }
    async fn export_keys(&self) -> Result<Vec<(KeyInfo, String)>> {
        self.check()?;
        self.inner.export_keys().await
    }
    async fn import_key(&self, info: &KeyInfo, secret_sha256: &str) -> Result<()> {
        self.check()?;
        self.inner.import_key(info, secret_sha256).await
    }
    fn key_salt(&self) -> String {
        self.inner.key_salt()
    }
    async fn set_key_salt(&self, salt: &str) -> Result<()> {
        self.check()?;
        self.inner.set_key_salt(salt).await
    }
    async fn sticky_page(&self, after: Option<&StickyRow>, limit: u32) -> Result<Vec<StickyRow>> {
        self.check()?;
        self.inner.sticky_page(after, limit).await
    }
}

const STICKY: &str = r#"
units:
  user: {attribute: user_id}
experiments:
  plain: {unit: user, share: 100%, variants: {a: 1, b: 1}, state: running}
  st1: {unit: user, share: 100%, variants: {a: 1, b: 1}, sticky: true, state: running}
  st2: {unit: user, share: 100%, variants: {a: 1, b: 1}, sticky: true, state: running}
"#;

pub(crate) async fn faulty_server() -> (Server, Arc<Faulty>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("allot.db").display());
    let faulty = Arc::new(Faulty {
        inner: allot_store::open(&url).await.unwrap(),
        down: AtomicBool::new(false),
        held: AtomicBool::new(false),
        gate: Semaphore::new(0),
        held_rows: AtomicUsize::new(0),
        exposure_writes: AtomicUsize::new(0),
        sticky_writes: AtomicUsize::new(0),
    });
    let app = App::new(faulty.clone()).await.unwrap();
    app.bootstrap(Some(ADMIN)).await.unwrap();
    let s = Server { app, _dir: dir };
    let r = s.put_config(STICKY, "*", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    (s, faulty)
}

async fn assignments(s: &Server, unit: &str, only: Option<&str>) -> serde_json::Value {
    let mut body = json!({"context": {"user_id": unit}});
    if let Some(e) = only {
        body["experiments"] = json!([e]);
    }
    let r = s.post("/api/v1/evaluate", &body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["assignments"].clone()
}

/// Waits (bounded) until `check` holds.
async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..3000 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_one_batch_of_exposures() {
    let (s, faulty) = faulty_server().await;
    let s = Arc::new(s);
    faulty.held.store(true, Ordering::SeqCst);
    let request = |i: usize| {
        let s = s.clone();
        tokio::spawn(async move {
            let body =
                json!({"context": {"user_id": format!("u{i}")}, "experiments": ["plain"], "log_exposures": true});
            let r = s.post("/api/v1/evaluate", &body.to_string()).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        })
    };
    // The first request's write is held at the gate; 63 more queue up behind it meanwhile.
    let mut tasks = vec![request(0)];
    until("the first write is held", || faulty.held_rows.load(Ordering::SeqCst) == 1).await;
    tasks.extend((1..64).map(request));
    until("63 requests wait for the next batch", || s.app.queued_writes() == 63).await;
    assert!(s.get("/metrics").await.text.contains("allot_write_queue 63"));
    faulty.gate.add_permits(2);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(faulty.exposure_writes.load(Ordering::SeqCst), 2, "one write for the first request, one for the rest");
    let logged = s.app.store().exposures(None, 0, 1000).await.unwrap();
    assert_eq!(logged.len(), 64, "every request's exposure was written");
    assert_eq!(s.app.queued_writes(), 0);
}

#[tokio::test]
async fn sticky_experiments_serve_what_the_node_knows_while_the_store_is_down() {
    let (s, faulty) = faulty_server().await;
    let first = assignments(&s, "u1", Some("st1")).await;
    assert_eq!(first["st1"]["reason"], "ASSIGNED");
    let writes = faulty.sticky_writes.load(Ordering::SeqCst);

    faulty.down.store(true, Ordering::SeqCst);
    let during = assignments(&s, "u1", None).await;
    assert_eq!((&during["st1"]["reason"], &during["st1"]["variant"]), (&json!("STICKY"), &first["st1"]["variant"]));
    assert_eq!(during["st2"]["reason"], "ASSIGNED", "known unit, nothing stored in st2");
    assert_eq!(s.app.pending_sticky(), 1, "st2's new assignment waits in memory");
    let stranger = assignments(&s, "u2", None).await;
    assert_eq!(stranger["st1"], json!({"variant": null, "value": null, "reason": "STICKY_UNAVAILABLE"}));
    assert_eq!(stranger["st2"]["reason"], "STICKY_UNAVAILABLE");
    assert_eq!(stranger["plain"]["reason"], "ASSIGNED", "other experiments are not affected");
    // OFREP: GENERAL, so that the client serves its code default; a degraded bulk answer has no ETag.
    let ctx = r#"{"context": {"targetingKey": "u2"}}"#;
    let r = s.post("/ofrep/v1/evaluate/flags/st1", ctx).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert_eq!(r.json()["errorCode"], "GENERAL");
    let r = s.post("/ofrep/v1/evaluate/flags", ctx).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.headers.get("etag").is_none(), "a degraded answer must not be cached");
    let flags = r.json()["flags"].clone();
    let st1 = flags.as_array().unwrap().iter().find(|f| f["key"] == "st1").unwrap();
    assert_eq!(st1["errorCode"], "GENERAL");
    let plain = flags.as_array().unwrap().iter().find(|f| f["key"] == "plain").unwrap();
    assert_eq!(plain["reason"], "SPLIT");
    // An exposure of such a flag is not recorded, and says why: send it again later (not
    // NOT_ASSIGNED, which would be final); the other flags of the same request are recorded.
    let plain_variant = plain["variant"].as_str().unwrap();
    let body = json!({"context": {"targetingKey": "u2"},
        "flags": [{"key": "st1", "variant": "a"}, {"key": "plain", "variant": plain_variant}]});
    let r = s.post("/ofrep/v1/exposures", &body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["flags"][0], json!({"key": "st1", "recorded": false, "reason": "STICKY_UNAVAILABLE"}));
    assert_eq!(r.json()["flags"][1], json!({"key": "plain", "recorded": true}));
    assert_eq!(r.headers.get("x-allot-buffered").map(|v| v.to_str().unwrap()), Some("exposures"), "the store is down");

    faulty.down.store(false, Ordering::SeqCst);
    s.app.refresh().await.unwrap();
    s.app.flush_pending().await.unwrap();
    assert_eq!(s.app.pending_sticky(), 0);
    assert_eq!(faulty.sticky_writes.load(Ordering::SeqCst), writes + 1);
    let mut stored = s.app.store().sticky_for_unit("user", "u1").await.unwrap();
    stored.sort();
    let variant = |a: &serde_json::Value| a.as_str().unwrap().to_string();
    assert_eq!(
        stored,
        vec![("st1".into(), variant(&first["st1"]["variant"])), ("st2".into(), variant(&during["st2"]["variant"]))]
    );
    let after = assignments(&s, "u2", None).await;
    assert_eq!(after["st1"]["reason"], "ASSIGNED");
    let r = s.post("/ofrep/v1/evaluate/flags", ctx).await;
    assert!(r.headers.get("etag").is_some());
}

#[tokio::test]
async fn a_unit_known_at_an_older_version_is_not_trusted_during_an_outage() {
    let (s, faulty) = faulty_server().await;
    assert_eq!(assignments(&s, "u1", None).await["st1"]["reason"], "ASSIGNED");
    // A new version: what the node knew of u1 was read at version 1.
    let more = format!("{STICKY}  other: {{unit: user, share: 10%, variants: {{a: 1}}, state: running}}\n");
    let r = s.put_config(&more, "*", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    faulty.down.store(true, Ordering::SeqCst);
    let during = assignments(&s, "u1", None).await;
    assert_eq!(during["st1"]["reason"], "STICKY_UNAVAILABLE", "{during}");
}

/// One request whose row fails the shared batch fails alone: the batch is written again request
/// by request, every other request gets 200 and its rows are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_that_fails_its_batch_fails_only_its_own_request() {
    let (s, faulty) = faulty_server().await;
    let s = Arc::new(s);
    faulty.held.store(true, Ordering::SeqCst);
    let request = |unit: String, experiment: &'static str| {
        let s = s.clone();
        tokio::spawn(async move {
            let body = json!({"context": {"user_id": unit}, "experiments": [experiment], "log_exposures": true});
            s.post("/api/v1/evaluate", &body.to_string()).await.status
        })
    };
    let first = request("u0".into(), "plain");
    until("the first write is held", || faulty.held_rows.load(Ordering::SeqCst) == 1).await;
    // 15 innocent requests and one poisoned one queue up behind it: one batch of 16.
    let mut innocent: Vec<_> = (1..16).map(|i| request(format!("u{i}"), "plain")).collect();
    let poisoned = request(POISON.into(), "plain");
    until("16 requests wait for the next batch", || s.app.queued_writes() == 16).await;
    faulty.gate.add_permits(100);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert_eq!(poisoned.await.unwrap(), StatusCode::INTERNAL_SERVER_ERROR);
    for t in innocent.drain(..) {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let logged = s.app.store().exposures(None, 0, 1000).await.unwrap();
    assert_eq!(logged.len(), 16, "every innocent request's exposure was written");
    assert!(logged.iter().all(|(_, x)| x.unit != POISON));
    // The same for sticky assignments.
    faulty.held.store(false, Ordering::SeqCst);
    let sticky = (0..8).map(|i| request(format!("s{i}"), "st1")).collect::<Vec<_>>();
    let bad = request(POISON.into(), "st1");
    for t in sticky {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(bad.await.unwrap(), StatusCode::INTERNAL_SERVER_ERROR);
    for i in 0..8 {
        let rows = s.app.store().sticky_for_unit("user", &format!("s{i}")).await.unwrap();
        assert_eq!(rows.len(), 1, "s{i}'s sticky assignment was written");
    }
}

/// While the database cannot be reached, a node keeps accepting every key it knew live (also one
/// never used, also one created on another node before the outage) and keeps refusing every key
/// it knew revoked (also one revoked on this node a moment before); a key it never saw gets 503.
#[tokio::test]
async fn keys_through_an_outage() {
    let (s, faulty) = faulty_server().await;
    let unused = s.key("evaluator").await;
    let revoked = s.key("evaluator").await;
    let eval = |key: String| {
        let s = &s;
        async move {
            let body = json!({"context": {"user_id": "u1"}, "experiments": ["plain"]});
            s.call("POST", "/api/v1/evaluate", Some(&key), &[("content-type", "application/json")], &body.to_string())
                .await
                .status
        }
    };
    assert_eq!(eval(revoked.clone()).await, StatusCode::OK);
    let list = s.get("/api/v1/keys").await.json();
    let id = list["keys"].as_array().unwrap().last().unwrap()["id"].as_str().unwrap().to_string();
    let r = s.call("DELETE", &format!("/api/v1/keys/{id}"), Some(ADMIN), &[], "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // A key made on another node, and one revoked there, seen by this node's periodic read.
    let info = |id: &str| KeyInfo {
        id: id.into(),
        name: id.into(),
        role: allot_store::Role::Evaluator,
        created_at: "2026-01-01T00:00:00Z".into(),
        revoked_at: None,
    };
    let elsewhere = "a-key-created-on-another-node-000001";
    let gone_elsewhere = "a-key-revoked-on-another-node-000001";
    s.app.store().create_key(&info("k_elsewhere"), elsewhere).await.unwrap();
    s.app.store().create_key(&info("k_gone"), gone_elsewhere).await.unwrap();
    assert_eq!(eval(gone_elsewhere.into()).await, StatusCode::OK);
    s.app.store().revoke_key("k_gone", "2026-01-02T00:00:00Z").await.unwrap();
    s.app.refresh_keys().await.unwrap();

    faulty.down.store(true, Ordering::SeqCst);
    assert_eq!(eval(unused).await, StatusCode::OK, "a live key never used still works");
    assert_eq!(eval(elsewhere.into()).await, StatusCode::OK, "a key created elsewhere before the outage works");
    assert_eq!(eval(revoked).await, StatusCode::UNAUTHORIZED, "a key revoked here stays revoked");
    assert_eq!(eval(gone_elsewhere.into()).await, StatusCode::UNAUTHORIZED, "a key revoked elsewhere stays revoked");
    assert_eq!(eval(ADMIN.into()).await, StatusCode::OK);
    assert_eq!(eval("never-seen-key-000000000000000000000".into()).await, StatusCode::SERVICE_UNAVAILABLE);
    // A failed read of the key table keeps what was known.
    assert!(s.app.refresh_keys().await.is_err());
    assert_eq!(eval(ADMIN.into()).await, StatusCode::OK);
    faulty.down.store(false, Ordering::SeqCst);
    assert_eq!(eval("never-seen-key-000000000000000000000".into()).await, StatusCode::UNAUTHORIZED);
}

/// Rows kept only in memory during an outage (lost if the node stops first) are announced to the
/// client: `202` and `X-Allot-Buffered` on `POST /api/v1/exposures`, the header on evaluation.
#[tokio::test]
async fn clients_are_told_when_their_rows_are_only_buffered() {
    let (s, faulty) = faulty_server().await;
    let body = json!({"context": {"user_id": "u1"}, "log_exposures": true}).to_string();
    let exposure = r#"{"exposures": [{"unit": "u1", "experiment": "plain", "variant": "a"}]}"#;
    let r = s.post("/api/v1/evaluate", &body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("x-allot-buffered").is_none(), "written: no header");
    let r = s.post("/api/v1/exposures", exposure).await;
    assert_eq!((r.status, r.json()["new"].as_u64()), (StatusCode::OK, Some(0)), "{}", r.text);
    // u3's sticky assignments are known to this node (st1 only, so far).
    assignments(&s, "u3", Some("st1")).await;
    faulty.down.store(true, Ordering::SeqCst);
    let r = s.post("/api/v1/evaluate", &json!({"context": {"user_id": "u2"}, "log_exposures": true}).to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["x-allot-buffered"], "exposures", "{:?}", r.headers);
    // u3 gets st2 now: a new sticky assignment, buffered too.
    let r = s.post("/api/v1/evaluate", &json!({"context": {"user_id": "u3"}, "log_exposures": true}).to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["assignments"]["st2"]["reason"], "ASSIGNED", "{}", r.text);
    assert_eq!(r.headers["x-allot-buffered"], "exposures, sticky", "{:?}", r.headers);
    let r = s.post("/api/v1/exposures", exposure).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.headers["x-allot-buffered"], "exposures");
    assert_eq!(r.json()["buffered"], 1);
}
