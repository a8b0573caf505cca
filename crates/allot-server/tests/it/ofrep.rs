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

/// The next server-sent event of `body` (`id` and parsed `data`), skipping comments; `None` when
/// the stream ended. Bounded: a stream that says nothing for 30 s fails the test.
async fn next_event(body: &mut axum::body::Body) -> Option<(String, serde_json::Value)> {
    use http_body_util::BodyExt;
    let mut text = String::new();
    loop {
        let frame =
            tokio::time::timeout(std::time::Duration::from_secs(30), body.frame()).await.expect("no event within 30 s");
        let frame = frame?;
        let Ok(data) = frame.unwrap().into_data() else { continue };
        text.push_str(std::str::from_utf8(&data).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let (mut id, mut data) = (None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str(v.trim()).unwrap());
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                return Some((id, data));
            }
        }
    }
}

/// Opens the event stream at `uri` (no Authorization header, as a browser's EventSource).
async fn open_stream(s: &Server, uri: &str, last: Option<&str>) -> (StatusCode, axum::body::Body) {
    use tower::ServiceExt;
    let mut b = axum::http::Request::builder().method("GET").uri(uri);
    if let Some(l) = last {
        b = b.header("last-event-id", l);
    }
    let res = allot_server::router(s.app.clone()).oneshot(b.body(axum::body::Body::empty()).unwrap()).await.unwrap();
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    let status = res.status();
    if status == StatusCode::OK {
        assert_eq!(ct.as_deref(), Some("text/event-stream"));
    }
    (status, res.into_body())
}

async fn stream_uri(s: &Server, key: &str) -> String {
    let r = s.call("POST", "/ofrep/v1/evaluate/flags", Some(key), &[], r#"{"context": {"targetingKey": "u1"}}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let streams = r.json()["eventStreams"].clone();
    assert_eq!(streams[0]["type"], "sse", "{streams}");
    assert_eq!(streams[0]["inactivityDelaySec"], 120, "{streams}");
    streams[0]["endpoint"]["requestUri"].as_str().unwrap().to_string()
}

/// ADR 0008: the bulk answer advertises a stream that announces each new version with
/// `refetchEvaluation` and its ETag; a reconnect with `Last-Event-ID` gets what it missed.
#[tokio::test]
async fn change_events_announce_each_version() {
    let s = configured().await;
    let uri = stream_uri(&s, ADMIN).await;
    assert!(uri.starts_with("/ofrep/v1/events?key="), "{uri}");
    let (st, mut body) = open_stream(&s, &uri, None).await;
    assert_eq!(st, StatusCode::OK);
    // A new stream opens with the current version: a change just before the connect is not missed.
    assert_eq!(next_event(&mut body).await.unwrap().0, "1");
    let v2 = edit(CONFIG, "variants: {a: 1}", "variants: {a: 1, b: 1}");
    assert_eq!(s.put_config(&v2, "\"1\"", "").await.status, StatusCode::OK);
    let (id, data) = next_event(&mut body).await.expect("an event for version 2");
    assert_eq!(id, "2");
    assert_eq!(data["type"], "refetchEvaluation");
    assert_eq!(data["etag"], "\"2\"");
    assert!(data["lastModified"].as_u64().unwrap() > 1_700_000_000, "{data}");
    // A client that saw version 1 reconnects: version 2 is announced at once.
    let (_, mut again) = open_stream(&s, &uri, Some("1")).await;
    assert_eq!(next_event(&mut again).await.unwrap().0, "2");
    // One that saw version 2 gets nothing until version 3.
    let (_, mut current) = open_stream(&s, &uri, Some("2")).await;
    let v3 = edit(&v2, "variants: {a: 1, b: 1}", "variants: {a: 1, b: 2}");
    assert_eq!(s.put_config(&v3, "\"2\"", "").await.status, StatusCode::OK);
    assert_eq!(next_event(&mut current).await.unwrap().0, "3");
    assert_eq!(next_event(&mut body).await.unwrap().0, "3");
    // Shutting down ends every stream.
    s.app.close_event_streams();
    assert!(next_event(&mut body).await.is_none());
}

/// The stream's credential: a token bound to the key; a wrong token, no token, a revoked key or a
/// reader's key cannot listen, and revoking a key ends its open streams.
#[tokio::test]
async fn change_events_need_a_live_key_token() {
    let s = configured().await;
    let evaluator = s.key("evaluator").await;
    let uri = stream_uri(&s, &evaluator).await;
    let (st, mut body) = open_stream(&s, &uri, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(next_event(&mut body).await.unwrap().0, "1");
    let flipped = if uri.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{flipped}", &uri[..uri.len() - 1]);
    assert_eq!(open_stream(&s, &tampered, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(open_stream(&s, "/ofrep/v1/events", None).await.0, StatusCode::UNAUTHORIZED);
    let admin_uri = stream_uri(&s, ADMIN).await;
    let (key_id, token) = admin_uri.split_once("&token=").unwrap();
    let other = s.key("evaluator").await;
    let other_uri = stream_uri(&s, &other).await;
    let (other_id, _) = other_uri.split_once("&token=").unwrap();
    assert_ne!(key_id, other_id);
    assert_eq!(open_stream(&s, &format!("{other_id}&token={token}"), None).await.0, StatusCode::UNAUTHORIZED);
    // Revoke the evaluator: its open stream ends at the next event, and it cannot reconnect.
    let id = uri.split("key=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let r = s.call("DELETE", &format!("/api/v1/keys/{id}"), Some(ADMIN), &[], "").await;
    assert!(r.status.is_success(), "{}", r.text);
    let v2 = edit(CONFIG, "variants: {a: 1}", "variants: {a: 1, b: 1}");
    assert_eq!(s.put_config(&v2, "\"1\"", "").await.status, StatusCode::OK);
    assert!(next_event(&mut body).await.is_none(), "a revoked key's stream must end");
    assert_eq!(open_stream(&s, &uri, None).await.0, StatusCode::UNAUTHORIZED);
}

/// After an event, a node that has not caught up reads the store before answering
/// (`flagConfigEtag`): the answer is never older than the event that asked for it.
#[tokio::test]
async fn a_refetch_after_an_event_is_not_older_than_the_event() {
    let s = configured().await;
    let store = s.app.store().clone();
    let other = allot_server::App::new(store).await.unwrap();
    let v2 = edit(CONFIG, "variants: {a: 1}", "variants: {a: 1, b: 1}");
    assert_eq!(s.put_config(&v2, "\"1\"", "").await.status, StatusCode::OK);
    assert_eq!(other.live().version, 1, "the second node has not refreshed");
    let body = r#"{"context": {"targetingKey": "u1"}}"#;
    let call = |q: &'static str| {
        let other = other.clone();
        async move {
            use http_body_util::BodyExt;
            use tower::ServiceExt;
            let req = axum::http::Request::builder()
                .method("POST")
                .uri(format!("/ofrep/v1/evaluate/flags{q}"))
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(axum::body::Body::from(body))
                .unwrap();
            let res = allot_server::router(other).oneshot(req).await.unwrap();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        }
    };
    assert_eq!(call("").await["metadata"]["configVersion"], 1, "without the event's version: what it serves");
    assert_eq!(call("?flagConfigEtag=%222%22&flagConfigLastModified=1").await["metadata"]["configVersion"], 2);
}

/// `--rate-limit`: past the allowance a key gets 429 with `Retry-After`, in both vocabularies;
/// other keys and `/metrics` are not held back.
#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let s = configured().await;
    s.app.set_policy(allot_server::Policy {
        rate_limit: Some("2/min".parse().unwrap()),
        ..allot_server::Policy::default()
    });
    let evaluator = s.key("evaluator").await;
    let body = r#"{"context": {"targetingKey": "u1"}}"#;
    for _ in 0..2 {
        let r = s.call("POST", "/ofrep/v1/evaluate/flags/color", Some(&evaluator), &[], body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let r = s.call("POST", "/ofrep/v1/evaluate/flags/color", Some(&evaluator), &[], body).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(r.json()["errorCode"].as_str(), Some("GENERAL"), "OFREP's body on an OFREP path: {}", r.text);
    assert_eq!(r.json()["code"].as_str(), Some("RATE_LIMITED"), "the API's fields stay: {}", r.text);
    let r = s.call("POST", "/api/v1/evaluate", Some(&evaluator), &[], body).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("RATE_LIMITED")),
        "{}",
        r.text
    );
    assert_eq!(s.call("GET", "/metrics", Some(&evaluator), &[], "").await.status, StatusCode::OK);
    let other = s.key("evaluator").await;
    let r = s.call("POST", "/ofrep/v1/evaluate/flags/color", Some(&other), &[], body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for bad in ["0", "x/s", "5/h", "-1"] {
        assert!(bad.parse::<allot_server::RateLimit>().is_err(), "{bad}");
    }
}

/// Streams are bounded per node: past `max_event_streams`, 503 with `Retry-After`; a closed
/// stream gives its slot back.
#[tokio::test]
async fn event_streams_are_bounded_per_node() {
    let s = configured().await;
    s.app.set_policy(allot_server::Policy { max_event_streams: 2, ..allot_server::Policy::default() });
    let uri = stream_uri(&s, ADMIN).await;
    let (a, _first) = open_stream(&s, &uri, None).await;
    let (b, second) = open_stream(&s, &uri, None).await;
    assert_eq!((a, b), (StatusCode::OK, StatusCode::OK));
    use tower::ServiceExt;
    let req = axum::http::Request::builder().uri(&uri).body(axum::body::Body::empty()).unwrap();
    let res = allot_server::router(s.app.clone()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "5");
    drop(second);
    assert_eq!(open_stream(&s, &uri, None).await.0, StatusCode::OK, "the dropped stream's slot is free again");
}

/// Errors made before an OFREP handler runs (no key, a reader's key, a body over the limit)
/// carry OFREP's fields too; the `first-variant` answer has an ETag of its own.
#[tokio::test]
async fn ofrep_errors_and_tags_are_in_ofrep_terms() {
    let s = configured().await;
    let body = r#"{"context": {"targetingKey": "u1"}}"#;
    let r = s.call("POST", "/ofrep/v1/evaluate/flags/color", None, &[], body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        (r.json()["errorCode"].as_str(), r.json()["key"].as_str()),
        (Some("GENERAL"), Some("color")),
        "{}",
        r.text
    );
    assert!(r.json()["errorDetails"].is_string());
    let reader = s.key("reader").await;
    let r = s.call("POST", "/ofrep/v1/evaluate/flags", Some(&reader), &[], body).await;
    assert_eq!((r.status, r.json()["errorCode"].as_str()), (StatusCode::FORBIDDEN, Some("GENERAL")), "{}", r.text);
    let big = format!(r#"{{"context": {{"targetingKey": "u1", "x": "{}"}}}}"#, "y".repeat(200_000));
    let r = s.call("POST", "/ofrep/v1/evaluate/flags/color", Some(ADMIN), &[], &big).await;
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("INVALID_CONTEXT")),
        "{}",
        r.text
    );
    let plain = s.call("POST", "/ofrep/v1/evaluate/flags", Some(ADMIN), &[], body).await.etag();
    let fv = s
        .call("POST", "/ofrep/v1/evaluate/flags", Some(ADMIN), &[("x-allot-ofrep-unassigned", "first-variant")], body)
        .await
        .etag();
    assert_eq!(fv, format!("{}-fv\"", &plain[..plain.len() - 1]));
    let r = s
        .call(
            "POST",
            "/ofrep/v1/evaluate/flags",
            Some(ADMIN),
            &[("if-none-match", &plain), ("x-allot-ofrep-unassigned", "first-variant")],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "a tag of the other answer is not fresh");
}

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

async fn expose(s: &Server, key: &str, body: &serde_json::Value) -> (StatusCode, serde_json::Value) {
    let r = s
        .call("POST", "/ofrep/v1/exposures", Some(key), &[("content-type", "application/json")], &body.to_string())
        .await;
    (r.status, r.json())
}

async fn recorded_exposures(s: &Server) -> Vec<(String, String, String)> {
    let back = s.get("/api/v1/exposures").await.json();
    back["exposures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let f = |k: &str| x[k].as_str().unwrap().to_string();
            (f("unit"), f("experiment"), f("variant"))
        })
        .collect()
}

/// The variant OFREP serves `unit` for `flag`, if any.
async fn served(s: &Server, flag_key: &str, unit: &str) -> Option<String> {
    let (_, b) = flag(s, flag_key, &json!({"context": {"targetingKey": unit}}).to_string()).await;
    b["variant"].as_str().map(str::to_string)
}

#[tokio::test]
async fn ofrep_exposures_record_only_the_variant_the_unit_is_assigned() {
    let s = configured().await;
    // A unit banner does not assign (outside its 50%, or held out): the code default.
    let mut unassigned = None;
    for u in 0..100 {
        let unit = format!("u{u}");
        if served(&s, "banner", &unit).await.is_none() {
            unassigned = Some(unit);
            break;
        }
    }
    let unassigned = unassigned.expect("some unit outside banner's 50%");
    let color = served(&s, "color", "bob").await.unwrap();
    let other = if color == "blue" { "green" } else { "blue" };
    let body = json!({"context": {"targetingKey": "alice"}, "flags": [
        {"key": "banner", "variant": "treatment"},
        {"key": "banner", "variant": "control"},
        {"key": "nope", "variant": "x"},
        {"key": "later", "variant": "a"},
    ]});
    let (st, b) = expose(&s, ADMIN, &body).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        json!({"flags": [
            {"key": "banner", "recorded": true},
            {"key": "banner", "recorded": false, "reason": "VARIANT_MISMATCH"},
            {"key": "nope", "recorded": false, "reason": "FLAG_NOT_FOUND"},
            {"key": "later", "recorded": false, "reason": "NOT_ASSIGNED"},
        ]})
    );
    // The unit outside banner: its first variant ("control", what a provider that invents a
    // value would report) is not an exposure.
    let body = json!({"context": {"targetingKey": unassigned}, "flags": [{"key": "banner", "variant": "control"}]});
    let (_, b) = expose(&s, ADMIN, &body).await;
    assert_eq!(b["flags"][0], json!({"key": "banner", "recorded": false, "reason": "NOT_ASSIGNED"}));
    // The context's own unit attribute wins over targetingKey, as in evaluation.
    let body = json!({"context": {"targetingKey": "x", "user_id": "bob"}, "flags": [
        {"key": "color", "variant": color}, {"key": "color", "variant": other}]});
    let (_, b) = expose(&s, ADMIN, &body).await;
    assert_eq!(b["flags"][0]["recorded"], true, "{b}");
    assert_eq!(b["flags"][1]["reason"], "VARIANT_MISMATCH", "{b}");
    let mut got = recorded_exposures(&s).await;
    got.sort();
    assert_eq!(
        got,
        [("alice".into(), "banner".into(), "treatment".into()), ("bob".into(), "color".into(), color.clone())]
    );
    // The same use again the same day: answered recorded, kept once.
    let body = json!({"context": {"targetingKey": "alice"}, "flags": [{"key": "banner", "variant": "treatment"}]});
    for _ in 0..3 {
        let (st, b) = expose(&s, ADMIN, &body).await;
        assert_eq!((st, &b["flags"][0]["recorded"]), (StatusCode::OK, &json!(true)), "{b}");
    }
    assert_eq!(recorded_exposures(&s).await.len(), 2);
}

#[tokio::test]
async fn ofrep_evaluation_alone_records_no_exposure() {
    let s = configured().await;
    for u in ["alice", "bob", "u1", "u2", "u3"] {
        let body = json!({"context": {"targetingKey": u}}).to_string();
        let r = s.post("/ofrep/v1/evaluate/flags", &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        for key in ["banner", "color", "later"] {
            flag(&s, key, &body).await;
        }
    }
    assert_eq!(recorded_exposures(&s).await, []);
}

#[tokio::test]
async fn ofrep_exposures_need_an_evaluating_key() {
    let s = configured().await;
    let body = json!({"context": {"targetingKey": "alice"}, "flags": [{"key": "banner", "variant": "treatment"}]});
    let reader = s.key("reader").await;
    let (st, b) = expose(&s, &reader, &body).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert!(b["errorCode"].is_string() && b["errorDetails"].is_string(), "{b}");
    let (st, _) = expose(&s, "not-a-key", &body).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(recorded_exposures(&s).await, []);
    for role in ["evaluator", "editor"] {
        let key = s.key(role).await;
        let (st, b) = expose(&s, &key, &body).await;
        assert_eq!((st, &b["flags"][0]["recorded"]), (StatusCode::OK, &json!(true)), "{role}: {b}");
    }
    assert_eq!(recorded_exposures(&s).await.len(), 1);
}

#[tokio::test]
async fn ofrep_exposures_are_bounded_and_errors_are_ofrep_shaped() {
    let s = configured().await;
    let many: Vec<_> = (0..101).map(|_| json!({"key": "banner", "variant": "treatment"})).collect();
    let (st, b) = expose(&s, ADMIN, &json!({"context": {"targetingKey": "alice"}, "flags": many})).await;
    assert_eq!((st, b["errorCode"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("INVALID_CONTEXT")), "{b}");
    assert_eq!(b["errors"][0]["path"], "flags", "{b}");
    assert!(b["errorDetails"].as_str().unwrap().contains("at most 100"), "{b}");
    // 100 is fine.
    let hundred: Vec<_> = (0..100).map(|_| json!({"key": "banner", "variant": "treatment"})).collect();
    let (st, b) = expose(&s, ADMIN, &json!({"context": {"targetingKey": "alice"}, "flags": hundred})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["flags"].as_array().unwrap().len(), 100);
    let cases = [
        ("{", StatusCode::BAD_REQUEST, "PARSE_ERROR", None),
        (r#"{"context": [], "flags": []}"#, StatusCode::BAD_REQUEST, "INVALID_CONTEXT", None),
        (r#"{"context": {"targetingKey": 7}, "flags": []}"#, StatusCode::BAD_REQUEST, "INVALID_CONTEXT", None),
        (
            r#"{"context": {}, "flags": [{"key": "banner", "variant": "control"}]}"#,
            StatusCode::BAD_REQUEST,
            "TARGETING_KEY_MISSING",
            None,
        ),
        (r#"{"context": {"targetingKey": "u1"}}"#, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_CONTEXT", Some("flags")),
        (
            r#"{"context": {"targetingKey": "u1"}, "flags": {}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_CONTEXT",
            Some("flags"),
        ),
        (
            r#"{"context": {"targetingKey": "u1"}, "flags": [{"key": "banner"}]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_CONTEXT",
            Some("flags[0].variant"),
        ),
        (
            r#"{"context": {"targetingKey": "u1"}, "flags": [{"key": "banner", "variant": "a"}, 3]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_CONTEXT",
            Some("flags[1]"),
        ),
    ];
    for (body, status, code, path) in cases {
        let r = s.call("POST", "/ofrep/v1/exposures", Some(ADMIN), &[], body).await;
        let b = r.json();
        assert_eq!((r.status, b["errorCode"].as_str()), (status, Some(code)), "{body}: {b}");
        assert!(b["errorDetails"].is_string(), "{body}: {b}");
        if let Some(path) = path {
            assert_eq!(b["errors"][0]["path"], path, "{body}: {b}");
        }
    }
    // An empty list records nothing and is no error.
    let (st, b) = expose(&s, ADMIN, &json!({"context": {"targetingKey": "u1"}, "flags": []})).await;
    assert_eq!((st, b), (StatusCode::OK, json!({"flags": []})));
    assert_eq!(recorded_exposures(&s).await.len(), 1, "only alice's banner from the 100");
}
