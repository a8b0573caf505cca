//! What the CLI does, over HTTP: the traffic audit, history, the salt machine, capacity planning
//! and the evaluation trace, each compared with what the core (the CLI's code) computes on the
//! same state; the roles of each new path; bad parameters.

use crate::support::*;
use allot_core::eval::Snapshot;
use allot_core::state::State;
use axum::http::StatusCode;
use serde_json::json;

async fn current(s: &Server) -> State {
    s.app.store().load_current().await.unwrap().1
}

fn cfg_of(state: &State) -> allot_core::config::Config {
    allot_core::plan::applied_config(state).unwrap().unwrap_or_default()
}

fn field(r: &Reply) -> String {
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.json()["code"], "INVALID", "{}", r.text);
    r.json()["errors"][0]["path"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn traffic_is_the_audit_the_cli_prints() {
    let s = configured().await;
    let r = s.get("/api/v1/traffic").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.etag(), "\"1\"");
    let v1 = current(&s).await;
    let want = serde_json::to_value(allot_core::audit::audit(&v1, &cfg_of(&v1))).unwrap();
    assert_eq!(r.json(), want);
    // Shares, reach, overlaps, holdouts and the proof are there, as the CLI has them.
    let a = r.json();
    assert_eq!(a["experiments"]["banner"]["buckets"], 500_000);
    assert_eq!(a["holdouts"]["hold"]["buckets"], 100_000);
    assert!(a["overlaps"].as_array().unwrap().iter().any(|o| o["a"] == "banner" && o["b"] == "color"));
    assert_eq!(a["violations"], json!([]));
    // A change later, the old version still answers as it was.
    let grown = CONFIG.replace("share: 50%", "share: 60%");
    assert_eq!(s.put_config(&grown, "\"1\"", "").await.status, StatusCode::OK);
    let now = s.get("/api/v1/traffic").await;
    assert_eq!(now.etag(), "\"2\"");
    assert_eq!(now.json()["experiments"]["banner"]["buckets"], 600_000);
    let old = s.get("/api/v1/traffic?version=1").await;
    assert_eq!(old.status, StatusCode::OK);
    assert_eq!(old.etag(), "\"1\"");
    assert_eq!(old.json(), want);
    // Bad parameters.
    assert_eq!(s.get("/api/v1/traffic?version=9").await.status, StatusCode::NOT_FOUND);
    assert_eq!(field(&s.get("/api/v1/traffic?version=x").await), "query");
    assert!(s.get("/api/v1/traffic?version=x").await.text.contains("version"));
    assert!(s.get("/api/v1/traffic?nope=1").await.text.contains("nope"));
}

#[tokio::test]
async fn history_is_what_the_cli_prints() {
    let s = configured().await;
    let state = current(&s).await;
    let snap = Snapshot::compile(&state).unwrap();
    for unit in ["u1", "alice", "someone else"] {
        let r = s.get(&format!("/api/v1/history?unit={}", unit.replace(' ', "%20"))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let want = allot_core::history::unit_report(&state, &snap, None, unit).unwrap();
        assert_eq!(r.json(), serde_json::to_value(&want).unwrap());
        assert_eq!(r.json()["unit"], unit);
        let typed = s.get(&format!("/api/v1/history?unit={}&unit_type=user", unit.replace(' ', "%20"))).await;
        assert_eq!(typed.json(), r.json());
    }
    let b = snap.spaces[0].bucket("u1");
    let r = s.get(&format!("/api/v1/history?bucket={b}&unit_type=user")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let want = allot_core::history::bucket_report(&state, Some("user"), b).unwrap();
    assert_eq!(r.json(), serde_json::to_value(&want).unwrap());
    assert_eq!(r.etag(), "\"1\"");
    // Bad or missing parameters: 422 naming the parameter.
    assert_eq!(field(&s.get("/api/v1/history").await), "unit");
    assert_eq!(field(&s.get("/api/v1/history?unit=").await), "unit");
    assert_eq!(field(&s.get("/api/v1/history?bucket=abc").await), "bucket");
    assert_eq!(field(&s.get("/api/v1/history?bucket=-1").await), "bucket");
    assert_eq!(field(&s.get("/api/v1/history?bucket=1000000").await), "bucket");
    assert_eq!(field(&s.get("/api/v1/history?unit=u1&bucket=3").await), "bucket");
    assert_eq!(field(&s.get("/api/v1/history?unit=u1&unit_type=device").await), "unit_type");
    assert_eq!(field(&s.get("/api/v1/history?unit=u1%0A").await), "unit");
    assert_eq!(field(&s.get("/api/v1/history?unit=u1&color=red").await), "query");
}

#[tokio::test]
async fn history_needs_a_unit_type_when_there_are_several() {
    let s = server().await;
    let two = "units: {user: {attribute: user_id}, device: {attribute: device_id}}\nsurfaces: [home]\n";
    assert_eq!(s.put_config(two, "*", "").await.status, StatusCode::OK);
    assert_eq!(field(&s.get("/api/v1/history?unit=u1").await), "unit_type");
    assert_eq!(s.get("/api/v1/history?unit=u1&unit_type=device").await.json()["unit_type"], "device");
    // Nothing applied at all: still a 422 naming the parameter, never a 5xx.
    let empty = server().await;
    assert_eq!(field(&empty.get("/api/v1/history?unit=u1").await), "unit_type");
    assert_eq!(field(&empty.get("/api/v1/history?bucket=1").await), "unit_type");
}

const TRAFFIC: &str = r#"{
  "daily_units": {"user": 40000},
  "experiments": {
    "later": {"metric": {"rate": 0.12}, "mde": 0.05, "rho": 0.5},
    "banner": {"metric": {"mean": 3.2, "sd": 6.0}, "mde_absolute": 0.15, "sides": "one"}
  }
}"#;

#[tokio::test]
async fn capacity_is_what_the_cli_plans_on_the_live_state() {
    let s = configured().await;
    let r = s.post("/api/v1/capacity", TRAFFIC).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let traffic: allot_server::capacity::Traffic = serde_json::from_str(TRAFFIC).unwrap();
    let want = allot_server::capacity::plan(&cfg_of(&current(&s).await), &traffic).unwrap();
    assert_eq!(r.json(), serde_json::to_value(&want).unwrap());
    // `color` runs and is not planned: it keeps its 100% of search, where `later` cannot run;
    // `banner` is planned at its share.
    assert_eq!(r.json()["already_running"], json!(["color"]));
    assert_eq!(r.json()["experiments"]["later"]["status"], "cannot run");
    assert_eq!(r.json()["experiments"]["banner"]["status"], "starts now");
    assert_eq!(r.etag(), "\"1\"");
    // Every error at once, each naming its field.
    let bad = r#"{"daily_units": {"user": 1000}, "experiments": {
        "nope": {"metric": {"rate": 0.1}, "mde": 0.05},
        "banner": {"metric": {"rate": 0.1}, "mde": 0.05, "share": "-5%"},
        "later": {"metric": {"rate": 0.1}}}}"#;
    let r = s.post("/api/v1/capacity", bad).await;
    assert_eq!(field(&r), "experiments.nope");
    let paths: Vec<String> =
        r.json()["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(paths, ["experiments.nope", "experiments.banner.share", "experiments.later.mde"]);
    let r = s
        .post(
            "/api/v1/capacity",
            r#"{"daily_units": {}, "experiments": {"later": {"metric": {"rate": 0.1}, "mde": 0.05}}}"#,
        )
        .await;
    assert_eq!(field(&r), "daily_units.user");
    let r = s.post("/api/v1/capacity", r#"{"daily_units": {"user": 1}, "experiments": {"later": {"metric": {"rate": 0.1}, "mde": 0.05, "alpah": 1}}}"#).await;
    assert!(field(&r).starts_with("experiments.later"), "{}", r.text);
    assert!(r.text.contains("alpah"));
    assert_eq!(field(&s.post("/api/v1/capacity", r#"{"experiments": {}}"#).await), "body");
    assert_eq!(s.post("/api/v1/capacity", "{").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn resalt_goes_through_change_control_and_is_audited() {
    let s = configured().await;
    // Stop `color`, so that its buckets have units to re-spread.
    let stopped = CONFIG.replace(
        "share: 100%\n    variants: {blue: 1, green: 1}\n    state: running",
        "share: 100%\n    variants: {blue: 1, green: 1}\n    state: stopped",
    );
    assert_eq!(s.put_config(&stopped, "\"1\"", "").await.status, StatusCode::OK);
    let before = current(&s).await;
    let post = |h: Vec<(&'static str, String)>, q: &'static str, body: &'static str| {
        let s = &s;
        async move {
            let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
            headers.extend(h.iter().map(|(k, v)| (*k, v.as_str())));
            s.call("POST", &format!("/api/v1/resalt{q}"), Some(ADMIN), &headers, body).await
        }
    };
    // A dry run: the report, nothing written.
    let dry = post(vec![("if-match", "\"2\"".into())], "?dry_run=true", r#"{"reason": "spread"}"#).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.text);
    assert_eq!(dry.json()["committed"], false);
    assert_eq!(dry.json()["dry_run"], true);
    assert_eq!(dry.etag(), "\"2\"");
    let (_, want) = allot_core::salt::resalt(&before, "user", "t", None, None).unwrap();
    assert_eq!(dry.json()["reports"], json!([serde_json::to_value(&want).unwrap()]));
    assert!(want.resalted_buckets > 0, "{want:?}");
    assert_eq!(s.app.store().current_version().await.unwrap(), 2);
    // The body field says the same as the query.
    let dry2 = post(vec![], "", r#"{"dry_run": true}"#).await;
    assert_eq!(dry2.json()["reports"], dry.json()["reports"]);
    // A write needs If-Match, and a current one.
    assert_eq!(post(vec![], "", "").await.status, StatusCode::PRECONDITION_REQUIRED);
    let stale = post(vec![("if-match", "\"1\"".into())], "", "").await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.text);
    assert_eq!(stale.json()["code"], "VERSION_MISMATCH");
    assert_eq!(s.app.store().current_version().await.unwrap(), 2);
    // Committed: a new version, the same report, an audit entry with actor and reason.
    let r = post(
        vec![("if-match", "\"2\"".into())],
        "",
        r#"{"unit_type": "user", "reason": "spread the stopped buckets"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["committed"], true);
    assert_eq!(r.json()["version"], 3);
    assert_eq!(r.etag(), "\"3\"");
    assert_eq!(r.json()["reports"], dry.json()["reports"]);
    let after = current(&s).await;
    assert_eq!(after.version, 3);
    assert_eq!(after.spaces["user"].resalts.len(), 1);
    assert_eq!(after.log.last().unwrap().reason.as_deref(), Some("spread the stopped buckets"));
    assert_eq!(s.app.live().version, 3, "published");
    let audit = s.get("/api/v1/audit?limit=1").await.json();
    let e = &audit["entries"][0];
    assert_eq!(e["action"], "resalt");
    assert_eq!(e["actor"], "bootstrap-admin");
    assert_eq!(e["reason"], "spread the stopped buckets");
    assert_eq!(e["after_version"], 3);
    assert_eq!(e["changes"][0]["action"], "resalt");
    // The audit of the new version still proves exclusivity; the running experiment kept its units.
    assert_eq!(s.get("/api/v1/traffic").await.json()["violations"], json!([]));
    let snap_before = Snapshot::compile(&before).unwrap();
    let snap_after = Snapshot::compile(&after).unwrap();
    for k in 0..200 {
        let ctx = json!({"user_id": format!("u{k}")}).as_object().unwrap().clone();
        let i = snap_before.index_of("banner").unwrap();
        let a = snap_before.evaluate_one(i, &ctx, &allot_core::eval::NoSticky);
        let b = snap_after.evaluate_one(i, &ctx, &allot_core::eval::NoSticky);
        assert_eq!(a, b, "u{k}");
    }
    // Stale again; bad input names the field.
    assert_eq!(post(vec![("if-match", "\"2\"".into())], "", "").await.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(field(&post(vec![("if-match", "*".into())], "", r#"{"unit_type": "device"}"#).await), "unit_type");
    assert_eq!(field(&post(vec![("if-match", "*".into())], "", r#"{"salt": "x"}"#).await), "salt");
    assert_eq!(field(&post(vec![("if-match", "*".into())], "?dry=1", "").await), "query");
    assert_eq!(s.app.store().current_version().await.unwrap(), 3);
    // Nothing applied yet: a 422, not a 5xx.
    let empty = server().await;
    let r = empty.call("POST", "/api/v1/resalt", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(field(&r), "unit_type");
}

/// Every new path under every role (tests/it/auth.rs's rules): reads for admin, editor and
/// reader; the re-salt for admin and editor; nothing for an evaluator; 401 without a key.
#[tokio::test]
async fn the_new_paths_keep_the_roles() {
    let s = configured().await;
    let keys = [
        ("admin", Some(ADMIN.to_string())),
        ("editor", Some(s.key("editor").await)),
        ("reader", Some(s.key("reader").await)),
        ("evaluator", Some(s.key("evaluator").await)),
        ("none", None),
    ];
    let trace = r#"{"context": {"user_id": "u1"}}"#;
    let calls: [(&str, &str, &str, bool); 6] = [
        ("GET", "/api/v1/traffic", "", false),
        ("GET", "/api/v1/history?unit=u1", "", false),
        ("POST", "/api/v1/capacity", TRAFFIC, false),
        ("POST", "/api/v1/evaluate/trace", trace, false),
        ("POST", "/api/v1/resalt?dry_run=true", "", true),
        ("POST", "/api/v1/resalt", "", true),
    ];
    for (role, key) in &keys {
        for (method, path, body, write) in calls {
            let headers = [("content-type", "application/json"), ("if-match", "*")];
            let r = s.call(method, path, key.as_deref(), &headers, body).await;
            let want = match *role {
                "none" => StatusCode::UNAUTHORIZED,
                "evaluator" => StatusCode::FORBIDDEN,
                "reader" if write => StatusCode::FORBIDDEN,
                _ => StatusCode::OK,
            };
            assert_eq!(r.status, want, "{role}: {method} {path}: {}", r.text);
        }
    }
}

#[tokio::test]
async fn the_openapi_document_lists_the_new_paths() {
    let s = server().await;
    let doc = s.get("/api/v1/openapi.json").await.json();
    for (p, m) in [
        ("/api/v1/traffic", "get"),
        ("/api/v1/history", "get"),
        ("/api/v1/resalt", "post"),
        ("/api/v1/capacity", "post"),
        ("/api/v1/evaluate/trace", "post"),
    ] {
        let op = &doc["paths"][p][m];
        assert!(op.is_object(), "{m} {p} is documented");
        for status in ["200", "401", "403", "422", "500", "503"] {
            assert!(op["responses"].get(status).is_some(), "{m} {p} documents {status}");
        }
    }
    assert!(doc["paths"]["/api/v1/resalt"]["post"]["responses"].get("412").is_some());
    assert!(doc["paths"]["/api/v1/resalt"]["post"]["responses"].get("428").is_some());
}

/// The trace's final answer is evaluation's, over HTTP too, and says how it got there.
#[tokio::test]
async fn trace_answers_as_evaluation_step_by_step() {
    let s = configured().await;
    for unit in ["alice", "u1", "u2", "u3", "u4", "u5", "u6", "u7"] {
        let ctx = format!(r#"{{"context": {{"user_id": "{unit}"}}}}"#);
        let eval = s.post("/api/v1/evaluate", &ctx).await.json();
        let r = s.post("/api/v1/evaluate/trace", &ctx).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let t = r.json();
        assert_eq!(t["version"], eval["version"]);
        for (id, a) in eval["assignments"].as_object().unwrap() {
            let e = &t["experiments"][id];
            assert_eq!(e["variant"], a["variant"], "{unit} {id}: {e}");
            assert_eq!(e["reason"], a["reason"], "{unit} {id}: {e}");
            assert!(!e["steps"].as_array().unwrap().is_empty());
        }
    }
    // alice is included in banner: the trace stops at the inclusion.
    let t = s
        .post("/api/v1/evaluate/trace", r#"{"context": {"user_id": "alice"}, "experiments": ["banner"]}"#)
        .await
        .json();
    let steps = t["experiments"]["banner"]["steps"].as_array().unwrap();
    assert_eq!(steps.last().unwrap()["step"], "inclusion", "{steps:?}");
    assert_eq!(t["experiments"].as_object().unwrap().len(), 1);
    // No unit id: said at the unit step.
    let t =
        s.post("/api/v1/evaluate/trace", r#"{"context": {"country": "SE"}, "experiments": ["color"]}"#).await.json();
    assert_eq!(t["experiments"]["color"]["reason"], "MISSING_UNIT");
    // Bad input as for evaluation.
    assert_eq!(
        field(&s.post("/api/v1/evaluate/trace", r#"{"context": {}, "experiments": ["nope"]}"#).await),
        "experiments[0]"
    );
    assert_eq!(
        field(&s.post("/api/v1/evaluate/trace", r#"{"context": {}, "log_exposures": true}"#).await),
        "log_exposures"
    );
    assert_eq!(
        field(&s.post("/api/v1/evaluate/trace", r#"{"context": {"user_id": "a\nb"}}"#).await),
        "context.user_id"
    );
}

/// Every unit type at once: one version each, in one commit, all kept by the store.
#[tokio::test]
async fn resalt_of_every_unit_type_is_one_commit() {
    let s = server().await;
    let two = "units: {user: {attribute: user_id}, device: {attribute: device_id}}\nsurfaces: [home]\n";
    assert_eq!(s.put_config(two, "*", "").await.status, StatusCode::OK);
    let r = s.call("POST", "/api/v1/resalt", Some(ADMIN), &[("if-match", "\"1\"")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["reports"].as_array().unwrap().len(), 2);
    assert_eq!(r.json()["version"], 3);
    let state = current(&s).await;
    assert_eq!(state.log.iter().filter(|e| e.changes.iter().any(|c| c.starts_with("resalt"))).count(), 2);
    assert!(state.spaces.values().all(|sp| sp.resalts.len() == 1));
    assert_eq!(s.get("/api/v1/audit?limit=1").await.json()["entries"][0]["changes"].as_array().unwrap().len(), 2);
    // A new node on the same store serves the re-salted version.
    let again = allot_server::App::new(s.app.store().clone()).await.unwrap();
    assert_eq!(again.live().version, 3);
    assert_eq!(again.live().snapshot.spaces[0].bucket("u1"), s.app.live().snapshot.spaces[0].bucket("u1"));
}
