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
    assert_eq!(b["metadata"], json!({"allotReason": "INCLUDED", "configVersion": 1}));
    let (_, b) = flag(&s, "color", r#"{"context": {"targetingKey": "u1"}}"#).await;
    assert_eq!(b["reason"], "SPLIT");
    assert_eq!(b["value"], b["variant"]);
    let (_, b) = flag(&s, "later", r#"{"context": {"targetingKey": "u1"}}"#).await;
    assert_eq!(b["reason"], "DISABLED");
    assert_eq!((b["variant"].as_str(), &b["value"]), (Some("a"), &json!("a")), "the first variant is the default");
    // someone outside banner's 50%: DEFAULT with the first variant and its value
    let mut seen_default = false;
    for u in 0..50 {
        let (_, b) = flag(&s, "banner", &json!({"context": {"targetingKey": format!("u{u}")}}).to_string()).await;
        if b["reason"] == "DEFAULT" {
            assert_eq!((b["variant"].as_str(), &b["value"]), (Some("control"), &json!(false)));
            assert!(["NOT_ALLOCATED", "HOLDOUT"].contains(&b["metadata"]["allotReason"].as_str().unwrap()), "{b}");
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

/// Every OFREP error answer carries OFREP's error body (`key` for one flag, `errorCode`,
/// `errorDetails`) with the status of the error, also those made outside the handlers: refused
/// keys (401), a body past the limit (413), an unknown method (405), a failing write (500) and an
/// unreachable store (503).
#[tokio::test]
async fn every_error_answer_carries_the_ofrep_error_body() {
    use crate::writes::{faulty_server, POISON};
    use std::sync::atomic::Ordering;
    let (s, faulty) = faulty_server().await;
    let ok = r#"{"context": {"targetingKey": "u1"}}"#.to_string();
    let poisoned = json!({"context": {"targetingKey": POISON}}).to_string();
    let big = json!({"context": {"targetingKey": "u1", "x": "a".repeat(70 * 1024)}}).to_string();
    let json_type = [("content-type", "application/json")];
    let never_seen = "never-seen-key-000000000000000000000";
    // (what, path, key, method, body, status, errorCode)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, &'a str, StatusCode, &'a str);
    let mut cases: Vec<Case> = vec![];
    for path in ["/ofrep/v1/evaluate/flags/st1", "/ofrep/v1/evaluate/flags"] {
        cases.extend([
            ("no key", path, None, "POST", ok.as_str(), StatusCode::UNAUTHORIZED, "GENERAL"),
            ("an unknown key", path, Some(never_seen), "POST", ok.as_str(), StatusCode::UNAUTHORIZED, "GENERAL"),
            ("too large", path, Some(ADMIN), "POST", big.as_str(), StatusCode::PAYLOAD_TOO_LARGE, "INVALID_CONTEXT"),
            ("GET", path, Some(ADMIN), "GET", "", StatusCode::METHOD_NOT_ALLOWED, "GENERAL"),
            (
                "a write that fails",
                path,
                Some(ADMIN),
                "POST",
                poisoned.as_str(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "GENERAL",
            ),
            ("not JSON", path, Some(ADMIN), "POST", "{", StatusCode::BAD_REQUEST, "PARSE_ERROR"),
        ]);
    }
    let mut failures = vec![];
    let mut check = |what: &str, path: &str, r: &crate::support::Reply, status: StatusCode, code: &str| {
        let b: serde_json::Value = serde_json::from_str(&r.text).unwrap_or_default();
        let single = path.ends_with("/st1");
        let ok = r.status == status
            && b["errorCode"] == code
            && b["errorDetails"].as_str().is_some_and(|d| !d.is_empty())
            && (if single { b["key"] == "st1" } else { b.get("key").is_none() });
        if !ok {
            failures.push(format!("{what} on {path}: {} {}", r.status, r.text));
        }
    };
    for &(what, path, key, method, body, status, code) in &cases {
        let r = s.call(method, path, key, &json_type, body).await;
        check(what, path, &r, status, code);
    }
    // The store down: a key this node never saw cannot be checked.
    faulty.down.store(true, Ordering::SeqCst);
    for path in ["/ofrep/v1/evaluate/flags/st1", "/ofrep/v1/evaluate/flags"] {
        let r = s.call("POST", path, Some(never_seen), &json_type, &ok).await;
        check("the store down", path, &r, StatusCode::SERVICE_UNAVAILABLE, "GENERAL");
    }
    faulty.down.store(false, Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} of {} answers lack OFREP's error body:\n{}",
        failures.len(),
        cases.len() + 2,
        failures.join("\n")
    );
    // A key with escapes is named decoded; allot's own fields stay beside OFREP's.
    let r = s.call("POST", "/ofrep/v1/evaluate/flags/st%201", None, &json_type, &ok).await;
    assert_eq!((r.status, r.json()["key"].as_str()), (StatusCode::UNAUTHORIZED, Some("st 1")), "{}", r.text);
    assert_eq!(r.json()["code"], "UNAUTHENTICATED", "{}", r.text);
}
