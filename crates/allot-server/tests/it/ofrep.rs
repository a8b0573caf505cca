//! OFREP: single and bulk evaluation, reasons, values, error codes, ETag/304.

use crate::support::*;
use allot_core::testing::edit;
use axum::http::StatusCode;
use serde_json::json;

async fn flag(s: &Server, key: &str, body: &str) -> (StatusCode, serde_json::Value) {
    let r = s.post(&format!("/ofrep/v1/evaluate/flags/{key}"), body).await;
    (r.status, r.json())
}

#[tokio::test]
async fn single_flags_map_reasons_and_values() {
    let s = configured().await;
    let (st, b) = flag(&s, "banner", r#"{"context": {"targetingKey": "alice"}}"#).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b["key"], "banner");
    assert_eq!(
        (b["reason"].as_str(), b["variant"].as_str(), &b["value"]),
        (Some("TARGETING_MATCH"), Some("treatment"), &json!(true))
    );
    assert_eq!(
        b["metadata"],
        json!({"allotReason": "INCLUDED", "configVersion": 1, "experiment": "banner", "variant": "treatment",
            "unitType": "user", "scopes": "home", "holdouts": "hold"})
    );
    let (_, b) = flag(&s, "color", r#"{"context": {"targetingKey": "u1"}}"#).await;
    assert_eq!(b["reason"], "SPLIT");
    assert_eq!(b["value"], b["variant"]);
    assert_eq!(b["metadata"]["variant"], b["variant"]);
    // Not running: the code default (no value, no variant), the reason kept.
    let (st, b) = flag(&s, "later", r#"{"context": {"targetingKey": "u1"}}"#).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b["reason"], "DISABLED");
    assert!(b.get("value").is_none() && b.get("variant").is_none(), "{b}");
    assert_eq!(b["metadata"]["allotReason"], "NOT_RUNNING");
    assert!(b["metadata"].get("variant").is_none(), "{b}");
    // The earlier answer, asked for by the request: the first variant and its value.
    let r = s
        .call(
            "POST",
            "/ofrep/v1/evaluate/flags/later",
            Some(ADMIN),
            &[("x-allot-ofrep-unassigned", "first-variant")],
            r#"{"context": {"targetingKey": "u1"}}"#,
        )
        .await;
    let b = r.json();
    assert_eq!((b["reason"].as_str(), b["variant"].as_str(), &b["value"]), (Some("DISABLED"), Some("a"), &json!("a")));
    assert!(b["metadata"].get("variant").is_none(), "the unit has no variant: {b}");
    let r = s
        .call(
            "POST",
            "/ofrep/v1/evaluate/flags/later",
            Some(ADMIN),
            &[("x-allot-ofrep-unassigned", "control")],
            r#"{"context": {"targetingKey": "u1"}}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_CONTEXT")),
        "{}",
        r.text
    );
    assert!(r.json()["errorDetails"].as_str().unwrap().contains("x-allot-ofrep-unassigned"), "{}", r.text);
    // someone outside banner's 50%: DEFAULT with the code default; with the switch, the first variant
    let mut seen_default = false;
    for u in 0..50 {
        let body = json!({"context": {"targetingKey": format!("u{u}")}}).to_string();
        let (_, b) = flag(&s, "banner", &body).await;
        if b["reason"] == "DEFAULT" {
            assert!(b.get("value").is_none() && b.get("variant").is_none(), "{b}");
            assert!(["NOT_ALLOCATED", "HOLDOUT"].contains(&b["metadata"]["allotReason"].as_str().unwrap()), "{b}");
            let r = s
                .call(
                    "POST",
                    "/ofrep/v1/evaluate/flags/banner",
                    Some(ADMIN),
                    &[("x-allot-ofrep-unassigned", "first-variant")],
                    &body,
                )
                .await;
            let b = r.json();
            assert_eq!(
                (b["reason"].as_str(), b["variant"].as_str(), &b["value"]),
                (Some("DEFAULT"), Some("control"), &json!(false))
            );
            seen_default = true;
        } else {
            assert_eq!(b["reason"], "SPLIT");
            assert!(b["value"].is_boolean());
        }
    }
    assert!(seen_default);
    // the context's own unit attribute wins over targetingKey
    let (_, b) = flag(&s, "banner", r#"{"context": {"targetingKey": "u1", "user_id": "alice"}}"#).await;
    assert_eq!(b["reason"], "TARGETING_MATCH");
}

#[tokio::test]
async fn single_flag_errors_use_the_spec_codes() {
    let s = configured().await;
    let cases = [
        ("banner", "{", StatusCode::BAD_REQUEST, "PARSE_ERROR"),
        ("banner", r#"{"context": []}"#, StatusCode::BAD_REQUEST, "INVALID_CONTEXT"),
        ("banner", r#"{"context": {"targetingKey": 7}}"#, StatusCode::BAD_REQUEST, "INVALID_CONTEXT"),
        ("banner", r#"{"context": {}}"#, StatusCode::BAD_REQUEST, "TARGETING_KEY_MISSING"),
        ("nope", r#"{"context": {"targetingKey": "u1"}}"#, StatusCode::NOT_FOUND, "FLAG_NOT_FOUND"),
    ];
    for (key, body, status, code) in cases {
        let (st, b) = flag(&s, key, body).await;
        assert_eq!((st, b["errorCode"].as_str()), (status, Some(code)), "{body}: {b}");
        assert_eq!(b["key"], key);
        assert!(b["errorDetails"].is_string());
    }
}

#[tokio::test]
async fn bulk_evaluates_every_flag_with_etag_and_304() {
    let s = configured().await;
    let body = r#"{"context": {"targetingKey": "alice"}}"#;
    let r = s.post("/ofrep/v1/evaluate/flags", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let flags = r.json()["flags"].as_array().unwrap().clone();
    assert_eq!(flags.len(), 3);
    assert_eq!(flags[0]["key"], "banner");
    let tag = r.etag();
    assert!(tag.starts_with("\"1-"), "{tag}");
    let r = s.call("POST", "/ofrep/v1/evaluate/flags", Some(ADMIN), &[("if-none-match", &tag)], body).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    // another context, or a new version, is a new ETag
    let r = s
        .call(
            "POST",
            "/ofrep/v1/evaluate/flags",
            Some(ADMIN),
            &[("if-none-match", &tag)],
            r#"{"context": {"targetingKey": "bob"}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let grown = edit(CONFIG, "share: 50%", "share: 60%");
    assert_eq!(s.put_config(&grown, "\"1\"", "").await.status, StatusCode::OK);
    let r = s.call("POST", "/ofrep/v1/evaluate/flags", Some(ADMIN), &[("if-none-match", &tag)], body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.etag().starts_with("\"2-"));
    // whole-request errors
    let r = s.post("/ofrep/v1/evaluate/flags", "nope").await;
    assert_eq!((r.status, r.json()["errorCode"].as_str()), (StatusCode::BAD_REQUEST, Some("PARSE_ERROR")));
    // per-flag errors
    let r = s.post("/ofrep/v1/evaluate/flags", r#"{"context": {}}"#).await;
    assert_eq!(r.json()["flags"][0]["errorCode"], "TARGETING_KEY_MISSING");
}

/// The bulk ETag is frozen: the same for the same version and context on every node, build and
/// Rust release (it once came from `DefaultHasher`, which promises none of that), and whatever
/// order the attributes were sent in.
#[tokio::test]
async fn the_bulk_etag_is_frozen_and_ignores_attribute_order() {
    let s = configured().await;
    let a = s.post("/ofrep/v1/evaluate/flags", r#"{"context": {"targetingKey": "alice", "country": "SE"}}"#).await;
    let b = s.post("/ofrep/v1/evaluate/flags", r#"{"context": {"country": "SE", "targetingKey": "alice"}}"#).await;
    assert_eq!(a.etag(), b.etag());
    assert_eq!(a.etag(), GOLDEN_ETAG, "the bulk ETag changed: clients' caches would all miss after an upgrade");
}

/// MurmurHash3 x64_128 (seed 0) of `[["country","SE"],["user_id","alice"]]` at version 1.
const GOLDEN_ETAG: &str = "\"1-7b9029e5d794de604ad63c85752f5eb3\"";
