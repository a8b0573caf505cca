//! Input limits at the edge: one unit id rule on every endpoint, integers the stores cannot hold,
//! one JSON value per body. Each is a 4xx naming the field, never a 500.

use crate::support::*;
use axum::http::StatusCode;
use serde_json::json;

/// The unit ids every endpoint refuses, with what the error must say.
pub fn bad_unit_ids() -> Vec<(String, &'static str)> {
    vec![
        ("nul\u{0}byte".to_string(), "control characters"),
        ("new\nline".to_string(), "control characters"),
        ("x".repeat(257), "at most 256 bytes"),
        ("é".repeat(129), "at most 256 bytes"),
        ("y".repeat(3000), "at most 256 bytes"),
    ]
}

const STICKY: &str = r#"
units:
  user: {attribute: user_id}
experiments:
  st: {unit: user, share: 100%, variants: {a: 1, b: 1}, sticky: true, state: running}
"#;

#[tokio::test]
async fn unit_ids_follow_one_rule_on_every_endpoint() {
    let s = server().await;
    assert_eq!(s.put_config(STICKY, "*", "").await.status, StatusCode::OK);
    for (unit, says) in bad_unit_ids() {
        for log in [false, true] {
            let body = json!({"context": {"user_id": unit}, "log_exposures": log});
            let r = s.post("/api/v1/evaluate", &body.to_string()).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
            let v = r.json();
            assert_eq!(v["errors"][0]["path"], "context.user_id", "{v}");
            assert!(v["errors"][0]["message"].as_str().unwrap().contains(says), "{v}");
        }
        let body = json!({"context": {"targetingKey": unit}});
        let r = s.post("/ofrep/v1/evaluate/flags/st", &body.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        let v = r.json();
        assert_eq!(v["errorCode"], "INVALID_CONTEXT", "{v}");
        assert!(v["errorDetails"].as_str().unwrap().starts_with("context.targetingKey: "), "{v}");
        let r = s.post("/ofrep/v1/evaluate/flags", &json!({"context": {"user_id": unit}}).to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert!(r.json()["errorDetails"].as_str().unwrap().starts_with("context.user_id: "), "{}", r.text);
        let body = json!({"exposures": [{"unit": unit, "experiment": "st", "variant": "a"}]});
        let r = s.post("/api/v1/exposures", &body.to_string()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        let v = r.json();
        assert_eq!(v["errors"][0]["path"], "exposures[0].unit", "{v}");
        assert!(v["errors"][0]["message"].as_str().unwrap().contains(says), "{v}");
    }
    // Nothing of it was stored; ids at the limit are fine everywhere.
    assert!(s.app.store().exposures(None, 0, 100).await.unwrap().is_empty());
    let longest = "z".repeat(256);
    let body = json!({"context": {"user_id": longest}, "log_exposures": true});
    assert_eq!(s.post("/api/v1/evaluate", &body.to_string()).await.status, StatusCode::OK);
    let body = json!({"exposures": [{"unit": "é".repeat(128), "experiment": "st", "variant": "a"}]});
    assert_eq!(s.post("/api/v1/exposures", &body.to_string()).await.status, StatusCode::OK);
    assert_eq!(s.app.store().exposures(None, 0, 100).await.unwrap().len(), 2);
}

#[tokio::test]
async fn integers_past_i64_are_a_4xx_naming_the_parameter() {
    let s = configured().await;
    let big = "9223372036854775808";
    let check = |r: Reply, field: &str| {
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {}", r.text);
        assert_eq!(r.json()["errors"][0]["path"], field, "{}", r.text);
    };
    check(s.get(&format!("/api/v1/versions/{big}")).await, "version");
    check(s.get(&format!("/api/v1/audit/{big}")).await, "version");
    check(s.get(&format!("/api/v1/audit?before={big}")).await, "before");
    check(s.get(&format!("/api/v1/exposures?after={big}")).await, "after");
    let tag = format!("\"{big}\"");
    check(s.put_config(CONFIG, &tag, "").await, "If-Match");
    check(s.call("PUT", "/api/v1/surfaces/x", Some(ADMIN), &[("if-match", &tag)], "").await, "If-Match");
    check(s.call("POST", "/api/v1/experiments/later/start", Some(ADMIN), &[("if-match", &tag)], "").await, "If-Match");
    let body = format!(
        r#"{{"exposures": [{{"unit": "u1", "experiment": "banner", "variant": "control", "version": {big}}}]}}"#
    );
    check(s.post("/api/v1/exposures", &body).await, "exposures[0].version");
    // The largest that fits is answered as usual.
    let max = "9223372036854775807";
    assert_eq!(s.get(&format!("/api/v1/versions/{max}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&format!("/api/v1/audit/{max}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&format!("/api/v1/audit?before={max}")).await.status, StatusCode::OK);
    assert_eq!(s.get(&format!("/api/v1/exposures?after={max}")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_json_body_is_one_value_and_nothing_after_it() {
    let s = configured().await;
    for body in [r#"{"context": {"user_id": "u1"}} trailing"#, r#"{"context": {"user_id": "u1"}}{}"#] {
        let r = s.post("/api/v1/evaluate", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.json()["code"], "MALFORMED", "{}", r.text);
        let r = s.post("/api/v1/exposures", r#"{"exposures": []} x"#).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        let r = s.post("/api/v1/keys", r#"{"name": "n", "role": "reader"} x"#).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        let r = s.post("/ofrep/v1/evaluate/flags/banner", r#"{"context": {"targetingKey": "a"}} x"#).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    }
    // Whitespace after the value is fine.
    let r = s.post("/api/v1/evaluate", "{\"context\": {\"user_id\": \"u1\"}}\n  \n").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
