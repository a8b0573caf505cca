//! Operations: readiness, metrics, request ids, the OpenAPI document.

use crate::support::*;
use axum::http::StatusCode;

#[tokio::test]
async fn metrics_count_requests_evaluations_and_version() {
    let s = configured().await;
    s.post("/api/v1/evaluate", r#"{"context": {"user_id": "alice"}}"#).await;
    s.post("/ofrep/v1/evaluate/flags/nope", r#"{"context": {"targetingKey": "a"}}"#).await;
    let r = s.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    let t = &r.text;
    assert!(t.contains(r#"allot_http_requests_total{method="POST",route="/api/v1/evaluate",status="200"} 1"#), "{t}");
    assert!(
        t.contains(r#"allot_http_request_duration_seconds_count{method="POST",route="/api/v1/evaluate"} 1"#),
        "{t}"
    );
    assert!(t.contains(r#"allot_evaluations_total{reason="INCLUDED"} 1"#), "{t}");
    assert!(t.contains(r#"allot_evaluations_total{reason="ERROR"} 1"#), "{t}");
    assert!(t.contains("allot_config_version 1"), "{t}");
}

#[tokio::test]
async fn requests_carry_ids() {
    let s = server().await;
    let r = s.call("GET", "/healthz", None, &[], "").await;
    assert!(!r.headers["x-request-id"].is_empty());
    let r = s.call("GET", "/healthz", None, &[("x-request-id", "abc-1")], "").await;
    assert_eq!(r.headers["x-request-id"], "abc-1");
    assert_eq!(s.get("/nowhere").await.json()["code"], "NOT_FOUND");
}

#[tokio::test]
async fn the_committed_openapi_document_is_the_served_one() {
    let s = server().await;
    let r = s.get("/api/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let served: serde_json::Value = r.json();
    let generated = allot_server::openapi::document();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    if std::env::var_os("ALLOT_UPDATE_OPENAPI").is_some() {
        std::fs::write(path, format!("{generated}\n")).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed.trim_end() == generated,
        "docs/openapi.json drifted from the code: run `ALLOT_UPDATE_OPENAPI=1 cargo test -p allot-server openapi` and commit it"
    );
    assert_eq!(served, serde_json::from_str::<serde_json::Value>(&generated).unwrap());
    for p in ["/api/v1/evaluate", "/ofrep/v1/evaluate/flags/{key}", "/api/v1/config", "/api/v1/keys"] {
        assert!(served["paths"].get(p).is_some(), "{p} is documented");
    }
}
