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

/// The error bodies, as clients see them (one table: status, code, message, field paths).
#[tokio::test]
async fn error_bodies() {
    let s = configured().await;
    let reader = s.key("reader").await;
    let mut out = serde_json::Map::new();
    let mut record = |name: &str, r: Reply| {
        out.insert(name.into(), serde_json::json!({"status": r.status.as_u16(), "body": r.json()}));
    };
    record("401 no key", s.call("GET", "/api/v1/config", None, &[], "").await);
    record("403 reader writes", s.call("PUT", "/api/v1/config", Some(&reader), &[("if-match", "*")], CONFIG).await);
    record("404 endpoint", s.get("/api/v1/nothing/here/at/all").await);
    record("400 malformed", s.post("/api/v1/evaluate", "{").await);
    record("422 unknown experiment", s.post("/api/v1/evaluate", r#"{"context": {}, "experiments": ["nope"]}"#).await);
    record(
        "422 wrong type",
        s.post("/api/v1/evaluate", r#"{"context": {"user_id": "u"}, "log_exposures": "yes"}"#).await,
    );
    record("428 no if-match", s.call("PUT", "/api/v1/config", Some(ADMIN), &[], CONFIG).await);
    record("412 stale", s.put_config(CONFIG, "\"0\"", "").await);
    record("422 bad path", s.get("/api/v1/experiments/%FF%FE").await);
    record("405 method", s.call("DELETE", "/api/v1/audit", Some(ADMIN), &[], "").await);
    record("413 too large", s.post("/api/v1/evaluate", &"x".repeat(70_000)).await);
    insta::assert_json_snapshot!(serde_json::Value::Object(out));
}

/// Random methods and paths, with and without a key, cannot grow `/metrics`: every label comes
/// from a closed set (methods folded to `other`, paths to the matched route or `unmatched`).
#[tokio::test]
async fn metrics_labels_are_a_closed_set_whatever_clients_send() {
    let s = configured().await;
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    s.get("/metrics").await;
    random_requests(&s, &mut seed, 100).await;
    let before = s.get("/metrics").await.text;
    random_requests(&s, &mut seed, 400).await;
    let after = s.get("/metrics").await.text;
    let series = |t: &str| t.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(series(&before), series(&after), "new series appeared:\n{after}");
    for line in after.lines().filter(|l| l.starts_with("allot_http_requests_total{")) {
        let method = line.split("method=\"").nth(1).and_then(|r| r.split('"').next()).unwrap();
        assert!(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"].contains(&method), "{line}");
        let route = line.split("route=\"").nth(1).and_then(|r| r.split('"').next()).unwrap();
        let generated = |seg: &str| {
            seg.len() > 1 && seg.starts_with(['x', 'e', 'f']) && seg[1..].bytes().all(|b| b.is_ascii_digit())
        };
        assert!(!route.split('/').any(generated), "a path sent became a label: {line}");
    }
    assert!(after.contains(r#"method="other""#), "{after}");
}

async fn random_requests(s: &Server, seed: &mut u64, n: usize) {
    for _ in 0..n {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let r = *seed;
        let method = format!("M{:x}", r % 1_000_000);
        let path = match r % 4 {
            0 => format!("/x{}", r % 100_000),
            1 => format!("/api/v1/experiments/e{}", r % 100_000),
            2 => "/api/v1/evaluate".to_string(),
            _ => format!("/ofrep/v1/evaluate/flags/f{}", r % 100_000),
        };
        let key = if r.is_multiple_of(3) { None } else { Some(ADMIN) };
        s.call(&method, &path, key, &[], "").await;
        s.call("GET", &path, key, &[], "").await;
    }
}

async fn preflight(router: axum::Router, origin: &str) -> axum::http::Response<axum::body::Body> {
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method("OPTIONS")
        .uri("/api/v1/evaluate")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .body(axum::body::Body::empty())
        .unwrap();
    router.oneshot(req).await.unwrap()
}

#[tokio::test]
async fn cors_is_off_by_default_and_allows_only_the_configured_origins() {
    let s = server().await;
    let plain = allot_server::router(s.app.clone());
    let r = preflight(plain, "https://app.example.com").await;
    assert!(r.headers().get("access-control-allow-origin").is_none(), "off by default: {:?}", r.headers());
    let origins = vec!["https://app.example.com".to_string()];
    let cors = || allot_server::with_cors(allot_server::router(s.app.clone()), &origins).unwrap();
    let r = preflight(cors(), "https://app.example.com").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
    let allowed = r.headers()["access-control-allow-headers"].to_str().unwrap().to_string();
    assert!(allowed.contains("authorization") && allowed.contains("if-match"), "{allowed}");
    let r = preflight(cors(), "https://evil.example.com").await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
    for bad in ["app.example.com", "https://app.example.com/", "https://a\nb"] {
        assert!(allot_server::with_cors(axum::Router::new(), &[bad.to_string()]).is_err(), "{bad}");
    }
}

/// Every operation lists the statuses it can answer, not only its happy path.
#[test]
fn the_openapi_document_lists_every_status_an_operation_can_answer() {
    let doc: serde_json::Value = serde_json::from_str(&allot_server::openapi::document()).unwrap();
    let statuses = |method: &str, path: &str| -> Vec<String> {
        let r = doc["paths"][path][method]["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}"));
        r.keys().cloned().collect()
    };
    let expect = [
        ("post", "/api/v1/evaluate", &["200", "400", "401", "403", "408", "413", "422", "500", "503"][..]),
        ("put", "/api/v1/config", &["200", "400", "401", "403", "408", "409", "412", "413", "422", "428", "503"]),
        ("post", "/api/v1/exposures", &["200", "202", "400", "401", "403", "413", "422", "503"]),
        ("get", "/api/v1/versions/{version}", &["200", "401", "403", "404", "422", "503"]),
        ("delete", "/api/v1/keys/{id}", &["204", "401", "403", "404", "422", "503"]),
        ("get", "/metrics", &["200", "401", "503"]),
        ("get", "/healthz", &["200"]),
        ("post", "/ofrep/v1/evaluate/flags", &["200", "304", "400", "401", "403", "408", "413", "500", "503"]),
    ];
    for (method, path, want) in expect {
        let got = statuses(method, path);
        for w in want {
            assert!(got.iter().any(|g| g == w), "{method} {path} does not list {w}: {got:?}");
        }
    }
    assert!(!statuses("get", "/healthz").contains(&"401".to_string()), "health needs no key");
    assert!(!statuses("get", "/metrics").contains(&"403".to_string()), "every role may read metrics");
}
