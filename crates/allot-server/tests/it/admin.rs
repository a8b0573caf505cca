//! The admin API: change control, optimistic concurrency, audit, export/import, entities.

use crate::support::*;
use allot_core::testing::edit;
use axum::http::StatusCode;

#[tokio::test]
async fn config_is_exported_and_imported_as_yaml_with_etags() {
    let s = configured().await;
    let r = s.get("/api/v1/config").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.etag(), "\"1\"");
    assert_eq!(r.headers["content-type"], "application/yaml");
    let exported = r.text.clone();
    assert!(exported.contains("banner:"), "{exported}");
    // Importing the export changes nothing.
    let r = s.put_config(&exported, "\"1\"", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["committed"], false);
    assert_eq!(r.json()["version"], 1);
    let r = s.call("GET", "/api/v1/config", Some(ADMIN), &[("accept", "application/json")], "").await;
    assert_eq!(r.json()["config"]["experiments"]["banner"]["share"], "50%");
}

#[tokio::test]
async fn writes_need_if_match_and_stale_ones_get_412() {
    let s = configured().await;
    let grown = edit(CONFIG, "share: 50%", "share: 60%");
    let r = s.put_config(&grown, "", "").await;
    // An empty If-Match is not a version.
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = s.call("PUT", "/api/v1/config", Some(ADMIN), &[], &grown).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(r.json()["code"], "IF_MATCH_REQUIRED");
    let r = s.put_config(&grown, "\"0\"", "").await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.json()["code"], "VERSION_MISMATCH");
    assert_eq!(r.json()["current"], 1);
    let r = s.put_config(&grown, "\"1\"", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.etag(), "\"2\"");
    assert_eq!(s.app.live().version, 2, "evaluation sees the change as soon as it is committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_do_not_lose_updates() {
    let s = std::sync::Arc::new(configured().await);
    let mut tasks = vec![];
    for i in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let cfg = edit(CONFIG, "share: 50%", &format!("share: {}%", 51 + i));
            s.put_config(&cfg, "\"1\"", "").await.status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::PRECONDITION_FAILED => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(ok, 1, "exactly one writer wins from version 1");
    let log = s.get("/api/v1/audit").await.json();
    assert_eq!(log["entries"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_refused_change_is_reported_and_writes_nothing() {
    let s = configured().await;
    let shrunk = edit(CONFIG, "share: 50%", "share: 40%");
    let r = s.put_config(&shrunk, "\"1\"", "").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let body = r.json();
    assert_eq!(body["code"], "CHANGE_REFUSED");
    assert!(!body["plan"]["refusals"].as_array().unwrap().is_empty());
    assert_eq!(s.app.live().version, 1);
    assert_eq!(s.get("/api/v1/audit").await.json()["entries"].as_array().unwrap().len(), 1);
    // force needs a reason
    let r = s.put_config(&shrunk, "\"1\"", "?force=true").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.json()["errors"][0]["path"], "reason");
    let message = r.json()["errors"][0]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("reason=") && !message.contains("--"),
        "names the query parameter, not CLI flags: {message}"
    );
    let r = s.put_config(&shrunk, "\"1\"", "?force=true&reason=%20").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "a blank reason is no reason: {}", r.text);
    let r = s.put_config(&shrunk, "\"1\"", "?force=true&reason=traffic%20cut").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let log = s.get("/api/v1/audit").await.json();
    let e = &log["entries"][0];
    assert_eq!(
        (e["forced"].as_bool(), e["reason"].as_str(), e["actor"].as_str()),
        (Some(true), Some("traffic cut"), Some("bootstrap-admin"))
    );
    assert_eq!((e["before_version"].as_u64(), e["after_version"].as_u64()), (Some(1), Some(2)));
    assert!(!e["overridden"].as_array().unwrap().is_empty());
    // One entry with the configuration on both sides of the change.
    let one = s.get("/api/v1/audit/2").await.json();
    assert_eq!(one["entry"]["reason"], "traffic cut");
    let share = |c: &serde_json::Value| c.to_string().contains("\"share\":\"40%\"");
    assert!(!share(&one["before"]) && share(&one["after"]), "{one}");
    assert!(s.get("/api/v1/audit/1").await.json()["before"].is_null());
    assert_eq!(s.get("/api/v1/audit/99").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn preview_returns_the_exact_impact_report_and_changes_nothing() {
    let s = configured().await;
    let reweighted = edit(CONFIG, "treatment: {weight: 1, value: true}", "treatment: {weight: 3, value: true}");
    let r = s.post("/api/v1/changes/preview", &reweighted).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let plan = r.json();
    assert_eq!(plan["version"], 2);
    let moved = plan["impact"]["banner"]["moved_by_split"].as_f64().unwrap();
    assert!((moved - 0.25).abs() < 1e-9, "{plan}");
    assert!(!plan["refusals"].as_array().unwrap().is_empty());
    assert_eq!(s.app.live().version, 1);
    let r = s.put_config(&reweighted, "\"1\"", "").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["plan"]["impact"], plan["impact"], "the refusal reports the previewed impact");
}

#[tokio::test]
async fn invalid_configurations_name_the_field() {
    let s = configured().await;
    let r = s.put_config(&edit(CONFIG, "share: 100%", "share: 140%"), "*", "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.json()["errors"][0]["path"].as_str().unwrap().starts_with("experiments.color"), "{}", r.text);
    let r = s.put_config("units: [unclosed", "*", "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], "MALFORMED");
    let r = s.put_config("- a list", "*", "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = s.put_config(CONFIG, "*", "?forse=true").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(s.app.live().version, 1);
}

#[tokio::test]
async fn entities_are_read_written_and_moved_through_their_lifecycle() {
    let s = configured().await;
    let r = s.get("/api/v1/experiments/banner").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["share"], "50%");
    assert_eq!(s.get("/api/v1/experiments").await.json().as_object().unwrap().len(), 3);
    assert_eq!(s.get("/api/v1/surfaces").await.json(), serde_json::json!(["home", "search"]));
    assert_eq!(s.get("/api/v1/experiments/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/v1/widgets").await.status, StatusCode::NOT_FOUND);
    // create a surface and an experiment on it
    let r = s.call("PUT", "/api/v1/surfaces/checkout", Some(ADMIN), &[("if-match", "\"1\"")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let exp = r#"{"unit": "user", "surfaces": ["checkout"], "share": "20%", "variants": {"a": 1, "b": 1}}"#;
    let r = s.call("PUT", "/api/v1/experiments/pay", Some(ADMIN), &[("if-match", "\"2\"")], exp).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.etag(), "\"3\"");
    // start, stop, archive
    let r = s.call("POST", "/api/v1/experiments/pay/start", Some(ADMIN), &[("if-match", "\"3\"")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ev = s.post("/api/v1/evaluate", r#"{"context": {"user_id": "u1"}, "experiments": ["pay"]}"#).await.json();
    assert_ne!(ev["assignments"]["pay"]["reason"], "NOT_RUNNING", "{ev}");
    // going back to draft is refused
    let r = s.call("PUT", "/api/v1/experiments/pay", Some(ADMIN), &[("if-match", "\"4\"")], exp).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let r = s.call("POST", "/api/v1/experiments/pay/stop", Some(ADMIN), &[("if-match", "\"4\"")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s.call("POST", "/api/v1/experiments/pay/archive", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(s.get("/api/v1/experiments/pay").await.json()["state"], "archived");
    let r = s.call("POST", "/api/v1/experiments/pay/restart", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // deleting a running experiment is refused; a draft one is not
    let r = s.call("DELETE", "/api/v1/experiments/banner", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let r = s.call("DELETE", "/api/v1/experiments/later", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let log = s.get("/api/v1/audit?limit=2").await.json();
    assert_eq!(log["entries"][0]["action"], "experiments.delete");
    assert_eq!(log["entries"][1]["action"], "experiment.archive");
    // every version stays readable
    let v = s.get("/api/v1/versions/1").await.json();
    assert!(v["config"]["experiments"]["later"].is_object());
    assert_eq!(s.get("/api/v1/versions/99").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_process_picks_up_a_commit_on_refresh() {
    let s = configured().await;
    let other = allot_server::App::new(s.app.store().clone()).await.unwrap();
    assert_eq!(other.live().version, 1);
    let grown = edit(CONFIG, "share: 50%", "share: 60%");
    assert_eq!(s.put_config(&grown, "\"1\"", "").await.status, StatusCode::OK);
    assert_eq!(other.live().version, 1, "until it polls");
    other.refresh().await.unwrap();
    assert_eq!(other.live().version, 2);
    assert_eq!(other.live().config["experiments"]["banner"]["share"], "60%");
}

#[tokio::test]
async fn deleting_what_running_experiments_use_is_409_naming_the_rule() {
    let s = configured().await;
    let grouped = format!(
        "{CONFIG}  slotted:\n    unit: user\n    group: mutex\n    slots: [1]\n    variants: {{a: 1}}\n    state: running\ngroups:\n  mutex: {{unit: user, share: 10%, slots: [50%, 50%]}}\n"
    );
    let r = s.put_config(&grouped, "*", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for (path, rule, users) in [
        ("groups/mutex", "group-in-use", vec!["slotted"]),
        ("surfaces/search", "surface-in-use", vec!["color"]),
        ("units/user", "unit-in-use", vec!["banner", "color", "slotted"]),
    ] {
        for query in ["", "?force=true&reason=cleanup"] {
            let r = s.call("DELETE", &format!("/api/v1/{path}{query}"), Some(ADMIN), &[("if-match", "*")], "").await;
            assert_eq!(r.status, StatusCode::CONFLICT, "{path}{query}: {}", r.text);
            let b = r.json();
            assert_eq!((b["code"].as_str(), b["rule"].as_str()), (Some("IN_USE"), Some(rule)), "{path}: {b}");
            assert_eq!(b["used_by"], serde_json::json!(users), "{path}: {b}");
            assert!(!b["message"].as_str().unwrap().contains("unknown"), "{path}: {b}");
        }
    }
    // The holdout is refused by change control, with its rule.
    let r = s.call("DELETE", "/api/v1/holdouts/hold", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json()["plan"]["refusals"][0]["rule"], "holdout-in-use", "{}", r.text);
    assert_eq!(s.app.live().version, 2, "nothing was written");
    // Once nothing running uses it, it goes.
    let r = s.call("POST", "/api/v1/experiments/slotted/stop", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s.call("DELETE", "/api/v1/experiments/slotted", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s.call("DELETE", "/api/v1/groups/mutex", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// YAML 1.1 readers (PyYAML) read `on`, `off`, `yes`, `no`, `y`, `n` as booleans: the export
/// quotes them (and anything else a reader could take for another type), so it round-trips.
#[tokio::test]
async fn the_yaml_export_round_trips_through_yaml_1_1_readers() {
    let s = configured().await;
    let tricky = CONFIG.to_string()
        + r#"  switch:
    unit: user
    share: 10%
    variants:
      "on": {weight: 1, value: "yes"}
      "off": {weight: 1, value: {"n": "y", "v": "8.2.0", "t": "12:30", "e": "", "s": "a: b # c"}}
    targeting: {attribute: country, in: ["NO", "no", "Y", "null", "~", "1e3"]}
    description: "multi\nline"
    state: running
"#;
    let r = s.put_config(&tricky, "\"1\"", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let exported = s.get("/api/v1/config").await.text;
    for word in
        ["\"on\":", "\"off\":", "\"yes\"", "\"NO\"", "\"no\"", "\"Y\"", "\"null\"", "\"~\"", "\"1e3\"", "\"8.2.0\""]
    {
        assert!(exported.contains(word), "{word} is not quoted in:\n{exported}");
    }
    let want = s.call("GET", "/api/v1/config", Some(ADMIN), &[("accept", "application/json")], "").await.json()
        ["config"]
        .clone();
    // allot's own reader gets the same tree back…
    assert_eq!(allot_core::config::parse_yaml(&exported).unwrap(), want);
    // …and so does PyYAML, a YAML 1.1 reader, where it is installed.
    let py = "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))";
    let run = std::process::Command::new("python3")
        .args(["-c", py])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = run else {
        eprintln!("skipped the PyYAML check: no python3");
        return;
    };
    use std::io::Write;
    child.stdin.take().unwrap().write_all(exported.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("No module named 'yaml'") {
        eprintln!("skipped the PyYAML check: PyYAML is not installed");
        return;
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, want, "PyYAML read:\n{exported}");
}

/// The service stores every assignment its sticky experiments serve, so a reweight or a
/// narrowing moves none of them: change control lets it through unforced (the CLI, with no
/// store, refuses it), and every unit served before keeps its variant. Bucket moves stay refused.
#[tokio::test]
async fn a_sticky_experiment_is_refused_only_what_really_moves() {
    let s = server().await;
    let yaml = r#"
units: {user: {attribute: user_id}}
experiments:
  onboarding:
    unit: user
    share: 100%
    variants: {control: 1, treatment: 1}
    targeting: {attribute: country, in: [SE, NO]}
    sticky: true
    state: running
"#;
    let r = s.put_config(yaml, "*", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ask = |u: usize| {
        let body = serde_json::json!({"context": {"user_id": format!("u{u}"), "country": "SE"}});
        body.to_string()
    };
    let mut before = vec![];
    for u in 0..100 {
        let r = s.post("/api/v1/evaluate", &ask(u)).await;
        before.push(r.json()["assignments"]["onboarding"]["variant"].clone());
    }
    let changed = edit(&edit(yaml, "{control: 1, treatment: 1}", "{control: 1, treatment: 9}"), "[SE, NO]", "[SE]");
    // The preview counts where stickiness lives: the 100 units served hold a stored assignment.
    let r = s.post("/api/v1/changes/preview", &changed).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["impact"]["onboarding"]["stored_assignments"], 100, "{}", r.text);
    assert_eq!(r.json()["impact"]["onboarding"]["sticky"], true, "{}", r.text);
    let r = s.put_config(&changed, "\"1\"", "").await;
    assert_eq!(r.status, StatusCode::OK, "a sticky reweight and narrowing are not refused: {}", r.text);
    assert_eq!(r.json()["committed"], true, "{}", r.text);
    for (u, want) in before.iter().enumerate() {
        let r = s.post("/api/v1/evaluate", &ask(u)).await;
        assert_eq!(&r.json()["assignments"]["onboarding"]["variant"], want, "u{u} keeps its stored variant");
        assert_eq!(r.json()["assignments"]["onboarding"]["reason"], "STICKY");
    }
    // Moving buckets is still refused: a stored unit whose bucket leaves is not kept.
    let shrunk = edit(&changed, "share: 100%", "share: 50%");
    let r = s.put_config(&shrunk, "\"2\"", "").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
}

/// What `/api/v1/evaluate` answers for experiment `banner`, user by user.
async fn banner_answers(s: &Server, users: &[String]) -> Vec<serde_json::Value> {
    let mut out = vec![];
    for u in users {
        let body = serde_json::json!({"context": {"user_id": u}, "experiments": ["banner"]}).to_string();
        let r = s.post("/api/v1/evaluate", &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        out.push(r.json()["assignments"]["banner"].clone());
    }
    out
}

/// Pause and resume (issue 15 req 3): a paused experiment keeps its buckets (no other experiment
/// can take them, the audit shows it holding them), serves nobody — included units too — with
/// `PAUSED` and, over OFREP, the code default; resuming serves every unit exactly its variant from
/// before. Stop stays final; change control lists both.
#[tokio::test]
async fn a_paused_experiment_keeps_its_buckets_serves_nobody_and_resumes_exactly() {
    let s = configured().await;
    let users: Vec<String> = (0..300).map(|i| format!("u{i}")).chain(["alice".to_string()]).collect();
    let before = banner_answers(&s, &users).await;
    assert!(
        before.iter().any(|a| a["variant"] == "treatment") && before.iter().any(|a| a["variant"] == "control"),
        "{before:?}"
    );
    let buckets = s.get("/api/v1/traffic").await.json()["experiments"]["banner"]["buckets"].clone();

    let r = s.call("POST", "/api/v1/experiments/banner/pause", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("\"pause\""), "change control lists the pause: {}", r.text);
    assert_eq!(s.app.live().config["experiments"]["banner"]["state"], "paused");
    for a in banner_answers(&s, &users).await {
        assert_eq!(
            (a["variant"].clone(), a["reason"].clone()),
            (serde_json::Value::Null, serde_json::json!("PAUSED")),
            "{a}"
        );
    }
    let ofrep = s
        .post("/ofrep/v1/evaluate/flags/banner", r#"{"context": {"targetingKey": "alice", "user_id": "alice"}}"#)
        .await;
    assert_eq!(ofrep.status, StatusCode::OK, "{}", ofrep.text);
    let o = ofrep.json();
    assert_eq!(o["reason"], "DISABLED", "{o}");
    assert!(o.get("value").is_none() && o.get("variant").is_none(), "the code default: {o}");
    assert_eq!(o["metadata"]["allotReason"], "PAUSED", "{o}");
    let traffic = s.get("/api/v1/traffic").await.json();
    assert_eq!(traffic["experiments"]["banner"]["buckets"], buckets, "a paused experiment keeps its buckets");
    assert_eq!(traffic["experiments"]["banner"]["paused"], true);
    // SDKs get it as a stopped skeleton: every SDK, earlier ones too, serves it to nobody.
    let served = s.get("/api/v1/snapshot").await;
    let state = allot_core::state::State::from_json(&served.text).unwrap();
    assert_eq!(state.config.as_ref().unwrap()["experiments"]["banner"]["state"], "stopped", "{}", served.text);
    assert!(!served.text.contains("alice"), "no inclusion list of a paused experiment is served");
    let snap = allot_core::eval::Snapshot::compile(&state).unwrap();
    let i = snap.index_of("banner").unwrap();
    for u in &users {
        let ctx = serde_json::json!({"user_id": u});
        let a = snap.evaluate_one(i, ctx.as_object().unwrap(), &allot_core::eval::NoSticky);
        assert_eq!((a.variant, a.reason), (None, allot_core::eval::Reason::NotRunning));
    }
    // Resume applies to a paused experiment only, pause to a running one.
    let r = s.call("POST", "/api/v1/experiments/later/resume", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("experiments.later.state") && r.text.contains("only a paused experiment"), "{}", r.text);
    let r = s.call("POST", "/api/v1/experiments/later/pause", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    // Its buckets are not free: an experiment on the same surface cannot take them.
    let r = s
        .put_config(
            &crate::support::CONFIG.replace("state: running\n  color:", "state: paused\n  grab:\n    unit: user\n    surfaces: [home]\n    share: 60%\n    variants: {a: 1}\n    state: running\n  color:"),
            "*",
            "",
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "60% next to a paused 50% on one surface does not fit: {}",
        r.text
    );
    assert!(r.text.contains("experiments.grab") && r.text.contains("banner"), "the error names the holder: {}", r.text);

    let r = s.call("POST", "/api/v1/experiments/banner/resume", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("\"resume\""), "{}", r.text);
    assert_eq!(banner_answers(&s, &users).await, before, "resuming serves every unit exactly what it had");

    // Paused, then stopped: final, as from running.
    let r = s.call("POST", "/api/v1/experiments/banner/pause", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s.call("POST", "/api/v1/experiments/banner/stop", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s.call("POST", "/api/v1/experiments/banner/resume", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "a stopped experiment cannot resume: {}", r.text);
    assert!(r.text.contains("only a paused experiment can be resumed"), "{}", r.text);
}
