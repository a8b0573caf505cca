//! Keys and roles: 401 vs 403, hashing, revocation, bootstrap.

use crate::support::*;
use allot_server::{App, Bootstrap};
use axum::http::StatusCode;

#[tokio::test]
async fn health_needs_no_key_and_everything_else_does() {
    let s = server().await;
    assert_eq!(s.call("GET", "/healthz", None, &[], "").await.status, StatusCode::OK);
    assert_eq!(s.call("GET", "/readyz", None, &[], "").await.status, StatusCode::OK);
    for (m, p) in [
        ("GET", "/api/v1/config"),
        ("POST", "/api/v1/evaluate"),
        ("POST", "/ofrep/v1/evaluate/flags/x"),
        ("GET", "/metrics"),
    ] {
        let r = s.call(m, p, None, &[], "{}").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {p}");
        assert_eq!(r.json()["code"], "UNAUTHENTICATED");
    }
    let r = s.call("GET", "/api/v1/config", Some("wrong"), &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.json()["message"].as_str().unwrap().contains("unknown or revoked"));
    let r = s.call("GET", "/api/v1/config", None, &[("authorization", "Basic abc")], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn roles_are_enforced_with_403() {
    let s = configured().await;
    let reader = s.key("reader").await;
    let evaluator = s.key("evaluator").await;
    let editor = s.key("editor").await;
    let eval = r#"{"context": {"user_id": "u1"}}"#;
    // evaluator: evaluate only
    assert_eq!(s.call("POST", "/api/v1/evaluate", Some(&evaluator), &[], eval).await.status, StatusCode::OK);
    let r = s.call("GET", "/api/v1/config", Some(&evaluator), &[], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["code"], "FORBIDDEN");
    assert!(r.json()["message"].as_str().unwrap().contains("evaluator"), "{}", r.text);
    // reader: reads, no evaluation, no change
    assert_eq!(s.call("GET", "/api/v1/config", Some(&reader), &[], "").await.status, StatusCode::OK);
    assert_eq!(s.call("POST", "/api/v1/evaluate", Some(&reader), &[], eval).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        s.call("PUT", "/api/v1/config", Some(&reader), &[("if-match", "*")], CONFIG).await.status,
        StatusCode::FORBIDDEN
    );
    // editor: changes, but no keys
    assert_eq!(
        s.call("PUT", "/api/v1/config", Some(&editor), &[("if-match", "*")], CONFIG).await.status,
        StatusCode::OK
    );
    assert_eq!(s.call("GET", "/api/v1/keys", Some(&editor), &[], "").await.status, StatusCode::FORBIDDEN);
    // any key: metrics
    assert_eq!(s.call("GET", "/metrics", Some(&evaluator), &[], "").await.status, StatusCode::OK);
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked() {
    let s = server().await;
    let secret = s.key("reader").await;
    assert!(secret.starts_with("allot_"));
    let list = s.get("/api/v1/keys").await.json();
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(!list.to_string().contains(&secret), "secrets are never listed");
    let id = keys.iter().find(|k| k["role"] == "reader").unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(s.call("GET", "/api/v1/config", Some(&secret), &[], "").await.status, StatusCode::OK);
    assert_eq!(
        s.call("DELETE", &format!("/api/v1/keys/{id}"), Some(ADMIN), &[], "").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.call("GET", "/api/v1/config", Some(&secret), &[], "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.call("DELETE", &format!("/api/v1/keys/{id}"), Some(ADMIN), &[], "").await.status,
        StatusCode::NOT_FOUND
    );
    let r = s.post("/api/v1/keys", r#"{"name": "x", "role": "owner"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["errors"][0]["path"], "role");
}

#[tokio::test]
async fn the_last_admin_key_cannot_be_revoked() {
    let s = server().await;
    let id = s.get("/api/v1/keys").await.json()["keys"][0]["id"].as_str().unwrap().to_string();
    let r = s.call("DELETE", &format!("/api/v1/keys/{id}"), Some(ADMIN), &[], "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}

#[tokio::test]
async fn bootstrap_generates_a_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("allot.db").display());
    let app = App::new(allot_store::open(&url).await.unwrap()).await.unwrap();
    let Bootstrap::Generated(secret) = app.bootstrap(None).await.unwrap() else { panic!("expected a generated key") };
    assert!(secret.starts_with("allot_") && secret.len() == 70);
    assert_eq!(app.bootstrap(None).await.unwrap(), Bootstrap::Existing);
    assert_eq!(app.bootstrap(Some(&secret)).await.unwrap(), Bootstrap::Existing, "the same key: nothing to say");
    let other = "another-key-of-at-least-32-characters";
    assert_eq!(app.bootstrap(Some(other)).await.unwrap(), Bootstrap::Ignored, "a changed key is reported ignored");
    assert_eq!(app.key(&secret).await.unwrap().unwrap().role, allot_store::Role::Admin);
    assert_eq!(app.key(other).await.unwrap(), None);
}

#[tokio::test]
async fn x_api_key_is_accepted_as_ofrep_allows() {
    let s = configured().await;
    let r = s
        .call(
            "POST",
            "/ofrep/v1/evaluate/flags/color",
            None,
            &[("x-api-key", ADMIN)],
            r#"{"context": {"targetingKey": "u1"}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s.call("POST", "/ofrep/v1/evaluate/flags/color", None, &[("x-api-key", "nope")], "{}").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_bootstrap_key_needs_32_characters() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("allot.db").display());
    let app = App::new(allot_store::open(&url).await.unwrap()).await.unwrap();
    for short in ["dev-key", "x".repeat(31).as_str()] {
        let e = app.bootstrap(Some(short)).await.unwrap_err();
        let text = format!("{:?}", e);
        assert!(text.contains("ALLOT_BOOTSTRAP_ADMIN_KEY") && text.contains("at least 32 characters"), "{text}");
    }
    assert_eq!(app.store().key_count().await.unwrap(), 0, "nothing was stored");
    let ok = "y".repeat(32);
    assert_eq!(app.bootstrap(Some(&ok)).await.unwrap(), Bootstrap::FromEnvironment);
}

#[tokio::test]
async fn key_names_cannot_forge_log_lines() {
    let s = server().await;
    for name in [
        "evil\nlevel=INFO msg=\"key revoked\"".to_string(),
        "tab\there".into(),
        "esc\u{1b}[31m".into(),
        "n".repeat(101),
    ] {
        let body = serde_json::json!({"name": name, "role": "reader"});
        let r = s.post("/api/v1/keys", &body.to_string()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {}", r.text);
        assert_eq!(r.json()["errors"][0]["path"], "name");
    }
    assert_eq!(s.get("/api/v1/keys").await.json()["keys"].as_array().unwrap().len(), 1, "none was created");
}

/// Two admins revoke each other's keys (the last two) at once: exactly one revocation succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revocations_of_the_last_two_admin_keys_leave_one() {
    let s = std::sync::Arc::new(server().await);
    let other = s.key("admin").await;
    let keys = s.get("/api/v1/keys").await.json();
    let ids: Vec<String> =
        keys["keys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_string()).collect();
    let (first, second) = (ids[0].clone(), ids[1].clone());
    let (a, b) = (s.clone(), s.clone());
    let (ra, rb) = tokio::join!(
        tokio::spawn(
            async move { a.call("DELETE", &format!("/api/v1/keys/{second}"), Some(ADMIN), &[], "").await.status }
        ),
        tokio::spawn(
            async move { b.call("DELETE", &format!("/api/v1/keys/{first}"), Some(&other), &[], "").await.status }
        ),
    );
    let mut got = [ra.unwrap(), rb.unwrap()];
    got.sort();
    // The loser is refused as the last admin (422), or, if the winner revoked its own key first,
    // unauthenticated (401): never two 204s.
    assert_eq!(got[0], StatusCode::NO_CONTENT, "{got:?}");
    assert_ne!(got[1], StatusCode::NO_CONTENT, "{got:?}");
    let live = s.app.store().list_keys().await.unwrap().into_iter().filter(|k| k.revoked_at.is_none()).count();
    assert_eq!(live, 1);
}
