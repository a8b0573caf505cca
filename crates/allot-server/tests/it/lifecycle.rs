//! The `allot serve` lifecycle in-process ([`allot_server::lifecycle`]): the first admin key, a
//! changed bootstrap key on a store that has keys, `--state` import then serving it over TCP,
//! `--config` found already applied, a `--state` that does not fit the store, the final flush.

use crate::support::{ADMIN, CONFIG};
use allot_core::testing::edit;
use allot_server::http::Limits;
use allot_server::lifecycle::{self, Flushed, Options, StartError};
use allot_server::{App, Bootstrap, ChangeRequest, IfMatch};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

fn options() -> Options {
    Options {
        bootstrap_key: None,
        state: None,
        config: None,
        force: false,
        reason: None,
        actor: None,
        plan_budget: allot_server::planner::DEFAULT_BUDGET,
        policy: allot_server::Policy::default(),
        poll: Duration::from_millis(50),
        show_generated_key: |_| {},
    }
}

async fn store(dir: &Path, name: &str) -> Arc<dyn allot_store::Store> {
    allot_store::open(&format!("sqlite://{}?mode=rwc", dir.join(name).display())).await.unwrap()
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// The state of a store with `yaml` applied once (version 1), as `allot serve --state` reads it.
async fn recorded_state(dir: &Path, yaml: &str) -> allot_core::state::State {
    let app = App::new(store(dir, "source.db").await).await.unwrap();
    let raw = allot_core::config::parse_yaml(yaml).unwrap();
    let req = ChangeRequest {
        raw,
        if_match: IfMatch::Any,
        force: false,
        reason: None,
        actor: "test".into(),
        action: "config.put".into(),
    };
    assert!(app.change(req).await.unwrap().committed);
    app.store().load_current().await.unwrap().1
}

static SHOWN: AtomicUsize = AtomicUsize::new(0);

#[tokio::test]
async fn an_empty_store_gets_one_generated_key_shown_once() {
    let dir = tempfile::tempdir().unwrap();
    let before = SHOWN.load(Ordering::SeqCst);
    let opts = Options { show_generated_key: |_| _ = SHOWN.fetch_add(1, Ordering::SeqCst), ..options() };
    let started = lifecycle::start(listener().await, store(dir.path(), "a.db").await, opts.clone()).await.unwrap();
    let Bootstrap::Generated(secret) = &started.bootstrap else {
        panic!("expected a generated key: {:?}", started.bootstrap)
    };
    assert!(started.app.key(secret).await.unwrap().is_some(), "the generated key is an admin key");
    assert_eq!(SHOWN.load(Ordering::SeqCst), before + 1, "shown exactly once");
    drop(started);
    // Started again on the same store: nothing is created, nothing shown.
    let again = lifecycle::start(listener().await, store(dir.path(), "a.db").await, opts).await.unwrap();
    assert_eq!(again.bootstrap, Bootstrap::Existing);
    assert_eq!(SHOWN.load(Ordering::SeqCst), before + 1);
    assert_eq!(again.app.store().key_count().await.unwrap(), 1);
}

#[tokio::test]
async fn a_changed_bootstrap_key_on_a_store_with_keys_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let first = Options { bootstrap_key: Some(ADMIN.into()), ..options() };
    let s = lifecycle::start(listener().await, store(dir.path(), "a.db").await, first).await.unwrap();
    assert_eq!(s.bootstrap, Bootstrap::FromEnvironment);
    drop(s);
    let other = "another-admin-secret-that-is-long-enough-0002";
    let second = Options { bootstrap_key: Some(other.into()), ..options() };
    let s = lifecycle::start(listener().await, store(dir.path(), "a.db").await, second).await.unwrap();
    assert_eq!(s.bootstrap, Bootstrap::Ignored);
    assert!(s.app.key(ADMIN).await.unwrap().is_some(), "the first key still works");
    assert!(s.app.key(other).await.unwrap().is_none(), "the changed key was not created");
    assert_eq!(s.app.store().key_count().await.unwrap(), 1);
}

#[tokio::test]
async fn an_unfit_bootstrap_key_stops_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { bootstrap_key: Some("short".into()), ..options() };
    let e = lifecycle::start(listener().await, store(dir.path(), "a.db").await, opts).await.unwrap_err();
    assert!(matches!(e, StartError::BootstrapKey(_)), "{e:?}");
    assert!(e.to_string().contains("ALLOT_BOOTSTRAP_ADMIN_KEY"), "{e}");
}

#[tokio::test]
async fn state_import_then_config_already_applied_then_serve_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let state = recorded_state(dir.path(), CONFIG).await;
    let config = dir.path().join("allot.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let opts = Options {
        bootstrap_key: Some(ADMIN.into()),
        state: Some((dir.path().join("allot.state.json"), state.clone())),
        config: Some(config),
        ..options()
    };
    let started = lifecycle::start(listener().await, store(dir.path(), "served.db").await, opts).await.unwrap();
    let app = started.app.clone();
    assert_eq!(app.live().version, 1, "the imported version is served");
    assert_eq!(app.store().load_current().await.unwrap(), (1, state), "the recorded state, imported exactly");
    assert_eq!(app.store().current_version().await.unwrap(), 1, "the same file applied again commits nothing");
    let addr = started.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = allot_server::router(app.clone());
    let serving = tokio::spawn(started.serve(router, None, Limits::default(), async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let r = client
        .post(format!("http://{addr}/api/v1/evaluate"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"context": {"user_id": "alice"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["version"], 1, "{body}");
    assert_eq!(body["assignments"]["banner"]["variant"], "treatment", "{body}");
    // Impossible paths are counted by site, and none was taken.
    let metrics = client.get(format!("http://{addr}/metrics")).bearer_auth(ADMIN).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    for site in allot_server::metrics::Site::ALL {
        let line = format!("allot_internal_errors_total{{site=\"{}\"}} 0", site.as_str());
        assert!(metrics.lines().any(|l| l == line), "{line} missing from\n{metrics}");
    }
    stop.send(()).unwrap();
    assert_eq!(serving.await.unwrap(), Flushed::Nothing);
}

#[tokio::test]
async fn a_state_that_does_not_fit_the_store_stops_start_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = recorded_state(dir.path(), CONFIG).await;
    // The served store already has another version 1.
    let served = store(dir.path(), "served.db").await;
    let other = edit(CONFIG, "share: 50%", "share: 40%");
    let app = App::new(served.clone()).await.unwrap();
    let raw = allot_core::config::parse_yaml(&other).unwrap();
    let req = ChangeRequest {
        raw,
        if_match: IfMatch::Any,
        force: false,
        reason: None,
        actor: "test".into(),
        action: "config.put".into(),
    };
    app.change(req).await.unwrap();
    let before = served.load_current().await.unwrap();
    let opts = Options {
        bootstrap_key: Some(ADMIN.into()),
        state: Some((dir.path().join("allot.state.json"), state)),
        ..options()
    };
    let e = lifecycle::start(listener().await, served.clone(), opts).await.unwrap_err();
    assert!(matches!(e, StartError::State { .. }), "{e:?}");
    assert!(e.to_string().starts_with("--state "), "{e}");
    assert_eq!(served.load_current().await.unwrap(), before, "nothing was written");
}

#[tokio::test]
async fn the_final_flush_with_nothing_buffered_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(store(dir.path(), "a.db").await).await.unwrap();
    assert_eq!(lifecycle::final_flush(&app, lifecycle::FINAL_FLUSH_TIMEOUT).await, Flushed::Nothing);
}

#[tokio::test]
async fn the_final_flush_writes_what_an_outage_buffered_or_says_what_is_lost() {
    let (s, faulty) = crate::writes::faulty_server().await;
    let row = allot_store::Exposure {
        unit: "u1".into(),
        experiment: "plain".into(),
        variant: "a".into(),
        day: "2026-01-01".into(),
        time: "2026-01-01T00:00:00Z".into(),
        version: 1,
    };
    faulty.down.store(true, Ordering::SeqCst);
    assert_eq!(s.app.record_exposures(std::slice::from_ref(&row)).await.unwrap(), None, "buffered");
    assert_eq!(
        lifecycle::final_flush(&s.app, lifecycle::FINAL_FLUSH_TIMEOUT).await,
        Flushed::Lost { exposures: 1, sticky: 0 },
        "still down: said lost"
    );
    assert_eq!(s.app.pending_exposures(), 1, "a failed flush keeps the row");
    faulty.down.store(false, Ordering::SeqCst);
    assert_eq!(
        lifecycle::final_flush(&s.app, lifecycle::FINAL_FLUSH_TIMEOUT).await,
        Flushed::Written { exposures: 1, sticky: 0 }
    );
    assert_eq!(s.app.pending_exposures(), 0);
    let stored = s.app.store().exposures(None, 0, 10).await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].1, row);
}
