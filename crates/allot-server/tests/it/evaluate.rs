//! The evaluation API, snapshots, sticky assignments and exposures; bad input.

use crate::support::*;
use allot_core::eval::Snapshot;
use allot_core::state::State;
use allot_core::testing::edit;
use axum::http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn evaluate_returns_every_assignment_with_the_version() {
    let s = configured().await;
    let r = s.post("/api/v1/evaluate", r#"{"context": {"user_id": "alice"}}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let b = r.json();
    assert_eq!(b["version"], 1);
    assert_eq!(b["assignments"]["banner"], json!({"variant": "treatment", "value": true, "reason": "INCLUDED"}));
    let color = &b["assignments"]["color"];
    assert_eq!(color["reason"], "ASSIGNED");
    assert_eq!(color["value"], color["variant"], "a variant without a value serves its name");
    assert_eq!(b["assignments"]["later"], json!({"variant": null, "value": null, "reason": "NOT_RUNNING"}));
    let r = s.post("/api/v1/evaluate", r#"{"context": {}, "experiments": ["color"]}"#).await;
    assert_eq!(r.json()["assignments"], json!({"color": {"variant": null, "value": null, "reason": "MISSING_UNIT"}}));
}

#[tokio::test]
async fn evaluation_over_http_equals_the_core_on_the_snapshot() {
    let s = configured().await;
    let r = s.get("/api/v1/snapshot").await;
    assert_eq!(r.status, StatusCode::OK);
    let snap = Snapshot::compile(&State::from_json(&r.text).unwrap()).unwrap();
    for u in 0..200 {
        let ctx = json!({"user_id": format!("u{u}")});
        let body = s.post("/api/v1/evaluate", &json!({"context": ctx}).to_string()).await.json();
        let mut out = vec![];
        snap.evaluate_all(ctx.as_object().unwrap(), &allot_core::eval::NoSticky, &mut out);
        for (i, a) in out.iter().enumerate() {
            let got = &body["assignments"][&snap.experiments[i].id];
            assert_eq!(got["reason"], a.reason.as_str());
            assert_eq!(got["variant"].as_str(), snap.variant_name(i, a));
        }
    }
}

#[tokio::test]
async fn snapshot_has_an_etag_and_304() {
    let s = configured().await;
    let r = s.get("/api/v1/snapshot").await;
    assert_eq!(r.etag(), "\"1\"");
    let r = s.call("GET", "/api/v1/snapshot", Some(ADMIN), &[("if-none-match", "\"1\"")], "").await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.text.is_empty());
    let r = s.call("GET", "/api/v1/snapshot", Some(ADMIN), &[("if-none-match", "\"0\"")], "").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn an_evaluator_is_served_only_what_evaluation_needs() {
    let s = configured().await;
    // Version 2: free text everywhere, a draft with a secret value and an inclusion; version 3:
    // `color` stopped (its allocation released, its inclusion list gone with it).
    let v2 = edit(
        CONFIG,
        "    include: {alice: treatment}\n",
        "    include: {alice: treatment}\n    owner: growth@example.com\n    description: banner copy test\n",
    );
    let v2 = edit(
        &v2,
        "    variants: {a: 1}\n",
        "    variants:\n      a: {weight: 1, value: unreleased-copy}\n    include: {vip-customer-42: a}\n    owner: secret-team\n",
    );
    let v2 = edit(&v2, "applies_to: [home]}", "applies_to: [home], description: long-term control}");
    assert_ne!(v2, CONFIG);
    assert_eq!(s.put_config(&v2, "*", "").await.status, StatusCode::OK);
    let v3 = edit(
        &v2,
        "    variants: {blue: 1, green: 1}\n    state: running",
        "    variants: {blue: 1, green: 1}\n    include: {bob: green}\n    state: stopped",
    );
    assert_ne!(v3, v2);
    let r = s.put_config(&v3, "*", "?force=true&reason=ended").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let evaluator = s.key("evaluator").await;

    let r = s.call("GET", "/api/v1/snapshot", Some(&evaluator), &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.etag(), "\"3\"");
    let snap = r.json();
    for secret in [
        "later",
        "unreleased-copy",
        "vip-customer-42",
        "secret-team",
        "growth@example.com",
        "banner copy test",
        "long-term control",
        "color",
        "bob",
        "ended",
    ] {
        assert!(!r.text.contains(secret), "the snapshot leaks {secret}: {}", r.text);
    }
    assert_eq!(snap["log"], serde_json::json!([]));
    let exps = snap["config"]["experiments"].as_object().unwrap();
    assert_eq!(exps.keys().collect::<Vec<_>>(), ["banner"]);
    assert_eq!(
        exps["banner"]["include"],
        serde_json::json!({"alice": "treatment"}),
        "a running experiment's inclusions are kept"
    );
    for a in snap["allocations"].as_array().unwrap() {
        assert!(a.get("released").is_none(), "{a}");
        assert!(a["kind"] != "experiment" || a["owner"] == "banner", "{a}");
    }
    // And it still evaluates as the server does.
    let state = allot_core::state::State::from_json(&r.text).unwrap();
    let reduced = allot_core::eval::Snapshot::compile(&state).unwrap();
    let live = s.app.live();
    let (i, j) = (live.snapshot.index_of("banner").unwrap(), reduced.index_of("banner").unwrap());
    for u in ["alice", "u1", "u2", "u3", "u4", "u5"] {
        let ctx = serde_json::json!({"user_id": u});
        let ctx = ctx.as_object().unwrap();
        let (a, b) = (
            live.snapshot.evaluate_one(i, ctx, &allot_core::eval::NoSticky),
            reduced.evaluate_one(j, ctx, &allot_core::eval::NoSticky),
        );
        assert_eq!((a.reason, live.snapshot.variant_name(i, &a)), (b.reason, reduced.variant_name(j, &b)), "{u}");
    }
}

#[tokio::test]
async fn bad_input_gets_4xx_naming_the_field() {
    let s = configured().await;
    let cases: [(&str, StatusCode, &str); 7] = [
        ("{", StatusCode::BAD_REQUEST, "body"),
        ("[]", StatusCode::UNPROCESSABLE_ENTITY, "body"),
        (r#"{"context": 3}"#, StatusCode::UNPROCESSABLE_ENTITY, "context"),
        (r#"{"context": {}, "experimentz": []}"#, StatusCode::UNPROCESSABLE_ENTITY, "experimentz"),
        (r#"{"context": {}, "experiments": ["color", "nope"]}"#, StatusCode::UNPROCESSABLE_ENTITY, "experiments[1]"),
        (r#"{"context": {}, "experiments": "color"}"#, StatusCode::UNPROCESSABLE_ENTITY, "experiments"),
        (r#"{"experiments": []}"#, StatusCode::UNPROCESSABLE_ENTITY, "body"),
    ];
    for (body, status, path) in cases {
        let r = s.post("/api/v1/evaluate", body).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        let b = r.json();
        assert_eq!(b["errors"][0]["path"], path, "{body}: {b}");
        assert!(!b["errors"][0]["message"].as_str().unwrap().is_empty());
    }
    let many: serde_json::Map<String, serde_json::Value> = (0..300).map(|i| (format!("a{i}"), json!(i))).collect();
    let r = s.post("/api/v1/evaluate", &json!({"context": many}).to_string()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["errors"][0]["path"], "context");
    let huge = json!({"context": {"user_id": "x".repeat(100_000)}}).to_string();
    let r = s.post("/api/v1/evaluate", &huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["code"], "TOO_LARGE");
}

const STICKY: &str = r#"
units:
  user: {attribute: user_id}
experiments:
  sticky:
    unit: user
    share: 100%
    variants: {a: 1, b: 1}
    sticky: true
    state: running
"#;

#[tokio::test]
async fn sticky_assignments_are_stored_and_survive_a_reweight() {
    let s = server().await;
    assert_eq!(s.put_config(STICKY, "*", "").await.status, StatusCode::OK);
    let mut first = vec![];
    for u in 0..40 {
        let r = s.post("/api/v1/evaluate", &json!({"context": {"user_id": format!("u{u}")}}).to_string()).await.json();
        assert_eq!(r["assignments"]["sticky"]["reason"], "ASSIGNED");
        first.push(r["assignments"]["sticky"]["variant"].as_str().unwrap().to_string());
    }
    let reweighted = edit(STICKY, "{a: 1, b: 1}", "{a: 0, b: 1}");
    let r = s.put_config(&reweighted, "\"1\"", "?force=true&reason=all%20to%20b").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for (u, v) in first.iter().enumerate() {
        let r = s.post("/api/v1/evaluate", &json!({"context": {"user_id": format!("u{u}")}}).to_string()).await.json();
        assert_eq!(r["assignments"]["sticky"]["reason"], "STICKY");
        assert_eq!(r["assignments"]["sticky"]["variant"], v.as_str());
    }
    let r = s.post("/api/v1/evaluate", r#"{"context": {"user_id": "new"}}"#).await.json();
    assert_eq!(r["assignments"]["sticky"], json!({"variant": "b", "value": "b", "reason": "ASSIGNED"}));
}

#[tokio::test]
async fn exposures_are_deduplicated_and_read_back() {
    let s = configured().await;
    let batch = json!({"exposures": [
        {"unit": "u1", "experiment": "color", "variant": "blue", "time": "2026-01-01T10:00:00Z"},
        {"unit": "u1", "experiment": "color", "variant": "blue", "time": "2026-01-01T23:00:00+00:00"},
        {"unit": "u1", "experiment": "color", "variant": "blue", "time": "2026-01-02T01:00:00+02:00"},
        {"unit": "u1", "experiment": "color", "variant": "blue", "time": "2026-01-02T10:00:00Z"},
    ]});
    let r = s.post("/api/v1/exposures", &batch.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json(), json!({"received": 4, "new": 2}));
    let r = s
        .post("/api/v1/evaluate", r#"{"context": {"user_id": "u2"}, "experiments": ["color"], "log_exposures": true}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let back = s.get("/api/v1/exposures?experiment=color").await.json();
    let xs = back["exposures"].as_array().unwrap();
    assert_eq!(xs.len(), 3, "{back}");
    assert_eq!(xs[0]["day"], "2026-01-01");
    assert_eq!(xs[1]["day"], "2026-01-02");
    assert_eq!(xs[2]["unit"], "u2");
    let bad = json!({"exposures": [
        {"unit": "u1", "experiment": "nope", "variant": "blue"},
        {"unit": "u1", "experiment": "color", "variant": "red"},
        {"unit": "u1", "experiment": "color", "variant": "blue", "time": "yesterday"},
    ]});
    let r = s.post("/api/v1/exposures", &bad.to_string()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<String> =
        r.json()["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(paths, ["exposures[0].experiment", "exposures[1].variant", "exposures[2].time"]);
    assert_eq!(
        s.get("/api/v1/exposures").await.json()["exposures"].as_array().unwrap().len(),
        3,
        "nothing half-written"
    );
}

#[tokio::test]
async fn exposures_stream_as_the_csv_analyze_reads() {
    let s = configured().await;
    // More than one page of the stream (10,000 rows), and a unit id that needs quoting.
    let mut rows: Vec<allot_store::Exposure> = (0..10_050)
        .map(|i| allot_store::Exposure {
            unit: format!("u{i}"),
            experiment: "color".into(),
            variant: "blue".into(),
            day: "2026-01-01".into(),
            time: "2026-01-01T10:00:00Z".into(),
            version: 1,
        })
        .collect();
    rows[3].unit = "a,\"b\"".into();
    rows[5].unit = "=HYPERLINK(\"http://evil\",\"x\")".into();
    rows[6].unit = "-17".into();
    s.app.store().record_exposures(&rows).await.unwrap();
    let reader = s.key("reader").await;
    let r = s.call("GET", "/api/v1/exposures.csv?experiment=color", Some(&reader), &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["content-type"], "text/csv; charset=utf-8");
    let lines: Vec<&str> = r.text.lines().collect();
    assert_eq!(lines[0], "unit,experiment,variant,timestamp,version");
    assert_eq!(lines.len(), 10_051, "every row, across pages, once");
    assert_eq!(lines[1], "u0,color,blue,2026-01-01T10:00:00Z,1");
    assert_eq!(lines[4], "\"a,\"\"b\"\"\",color,blue,2026-01-01T10:00:00Z,1");
    assert_eq!(lines[10_050], "u10049,color,blue,2026-01-01T10:00:00Z,1");
    assert_eq!(r.headers["content-disposition"], "attachment; filename=\"exposures.csv\"");
    // Exact by default (the file `allot analyze` reads: ids are data) ...
    assert_eq!(lines[6], "\"=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",color,blue,2026-01-01T10:00:00Z,1");
    assert_eq!(lines[7], "-17,color,blue,2026-01-01T10:00:00Z,1");
    // ... and safe for a spreadsheet on request: a formula's first character is neutralised.
    let r = s.call("GET", "/api/v1/exposures.csv?experiment=color&spreadsheet=true", Some(&reader), &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let lines: Vec<&str> = r.text.lines().collect();
    assert_eq!(lines.len(), 10_051);
    assert_eq!(lines[6], "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",color,blue,2026-01-01T10:00:00Z,1");
    assert_eq!(lines[7], "'-17,color,blue,2026-01-01T10:00:00Z,1");
    assert_eq!(lines[1], "u0,color,blue,2026-01-01T10:00:00Z,1");
    let evaluator = s.key("evaluator").await;
    let r = s.call("GET", "/api/v1/exposures.csv", Some(&evaluator), &[], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s.call("GET", "/api/v1/exposures.csv?colour=x", Some(&reader), &[], "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let spec = s.get("/api/v1/openapi.json").await.json();
    assert!(spec["paths"]["/api/v1/exposures.csv"]["get"].is_object());
}
