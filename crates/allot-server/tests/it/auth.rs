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
    assert_eq!(app.bootstrap(Some("other")).await.unwrap(), Bootstrap::Existing);
    assert_eq!(app.key(&secret).await.unwrap().unwrap().role, allot_store::Role::Admin);
    assert_eq!(app.key("other").await.unwrap(), None);
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
