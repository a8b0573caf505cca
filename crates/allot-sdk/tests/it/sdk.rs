//! Snapshots with ETag, in-process evaluation equal to the server's, batched exposures.

use allot_core::eval::{NoSticky, Reason};
use allot_server::{App, ChangeRequest, IfMatch};
use std::sync::Arc;

const KEY: &str = "sdk-admin-key-for-the-sdk-tests-0001";

const CONFIG: &str = r#"
units:
  user: {attribute: user_id}
surfaces: [home]
experiments:
  banner:
    unit: user
    surfaces: [home]
    share: 60%
    variants:
      control: {weight: 1, value: {"color": "blue"}}
      treatment: {weight: 1, value: {"color": "red"}}
    targeting: {attribute: country, in: [SE, NO]}
    state: running
"#;

async fn change(app: &App, yaml: &str) {
    let raw = allot_core::config::parse_yaml(yaml).unwrap();
    let c = ChangeRequest {
        raw,
        if_match: IfMatch::Any,
        force: false,
        reason: None,
        actor: "test".into(),
        action: "test".into(),
    };
    assert!(app.change(c).await.unwrap().committed);
}

async fn serve() -> (tempfile::TempDir, Arc<App>, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("allot.db").display());
    let app = App::new(allot_store::open(&url).await.unwrap()).await.unwrap();
    app.bootstrap(Some(KEY)).await.unwrap();
    change(&app, CONFIG).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = allot_server::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (dir, app, format!("http://{addr}"))
}

#[tokio::test]
async fn evaluates_in_process_like_the_server() {
    let (_d, app, base) = serve().await;
    let sdk = allot_sdk::Client::connect(&base, KEY).await.unwrap();
    assert_eq!(sdk.version(), 1);
    let live = app.live();
    let mut seen = std::collections::HashSet::new();
    for u in 0..500 {
        let ctx = serde_json::json!({"user_id": format!("u{u}"), "country": if u % 3 == 0 { "US" } else { "SE" }});
        let ctx = ctx.as_object().unwrap();
        let got = sdk.evaluate("banner", ctx);
        let want = live.snapshot.evaluate_one(0, ctx, &NoSticky);
        assert_eq!(got.reason, Some(want.reason));
        assert_eq!(got.variant.as_deref(), live.snapshot.variant_name(0, &want));
        if let Some(v) = &got.value {
            assert!(v["color"].is_string());
        }
        seen.insert(want.reason);
    }
    assert!(
        seen.contains(&Reason::Assigned)
            && seen.contains(&Reason::TargetingMiss)
            && seen.contains(&Reason::NotAllocated)
    );
    let unknown = sdk.evaluate("nope", &serde_json::Map::new());
    assert_eq!((unknown.reason, unknown.version), (None, 1));
}

#[tokio::test]
async fn refresh_uses_the_etag_and_picks_up_changes() {
    let (_d, app, base) = serve().await;
    let sdk = allot_sdk::Client::connect(&base, KEY).await.unwrap();
    assert!(!sdk.refresh().await.unwrap(), "unchanged: 304");
    change(&app, &CONFIG.replace("share: 60%", "share: 70%")).await;
    assert!(sdk.refresh().await.unwrap());
    assert_eq!(sdk.version(), 2);
}

#[tokio::test]
async fn exposures_are_sent_in_batches() {
    let (_d, app, base) = serve().await;
    let sdk = allot_sdk::Client::connect(&base, KEY).await.unwrap();
    for u in 0..1500 {
        sdk.expose(&format!("u{u}"), "banner", "treatment");
    }
    // The 500th queued a background flush; flush sends whatever is left.
    let mut total = sdk.flush().await.unwrap();
    for _ in 0..1000 {
        let n = app.store().exposures(Some("banner"), 0, 10_000).await.unwrap().len();
        if n == 1500 {
            break;
        }
        total += sdk.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(total <= 1500);
    assert_eq!(app.store().exposures(Some("banner"), 0, 10_000).await.unwrap().len(), 1500);
}

#[tokio::test]
async fn a_wrong_key_is_an_error() {
    let (_d, _app, base) = serve().await;
    let e = allot_sdk::Client::connect(&base, "wrong").await.unwrap_err();
    assert!(matches!(e, allot_sdk::Error::Status { status: 401, .. }), "{e}");
}
