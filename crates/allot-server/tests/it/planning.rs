//! Plans, previews and compiles run off the evaluation path, bounded in number and in time.

use crate::support::*;
use allot_core::testing::edit;
use axum::http::StatusCode;
use std::time::Duration;

#[tokio::test]
async fn a_plan_past_its_budget_answers_503_commits_nothing_and_never_stalls_evaluation() {
    let s = configured().await;
    s.app.set_plan_budget(Duration::from_millis(200));
    let reweighted = edit(CONFIG, "share: 10%\n    variants: {a: 1}", "share: 20%\n    variants: {a: 1}");
    assert_ne!(reweighted, CONFIG);
    // While planning is held, no plan can finish: the budget, not the plan, decides the answer.
    let paused = s.app.pause_planning().await;

    let r = s.put_config(&reweighted, "\"1\"", "").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json()["code"], "PLAN_TIMEOUT", "{}", r.text);
    assert_eq!(r.json()["budget_ms"], 200, "{}", r.text);
    assert!(r.json()["message"].as_str().unwrap().contains("200 ms plan budget"), "{}", r.text);

    // The timed-out plan still holds the node's only planner: the next one waits, then gives up.
    let r = s.post("/api/v1/changes/preview", &reweighted).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json()["code"], "PLAN_BUSY", "{}", r.text);

    // Evaluation goes on meanwhile, on the version it had.
    let r = s.post("/api/v1/evaluate", r#"{"context": {"user_id": "alice"}}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["version"], 1, "{}", r.text);
    assert_eq!(s.get("/healthz").await.status, StatusCode::OK);

    drop(paused);
    s.app.set_plan_budget(allot_server::planner::DEFAULT_BUDGET);
    // The discarded plan finishes in the background and frees the planner; it committed nothing.
    let r = s.post("/api/v1/changes/preview", &reweighted).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(s.app.live().version, 1);
    assert_eq!(s.app.store().current_version().await.unwrap(), 1);
    let r = s.put_config(&reweighted, "\"1\"", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["version"], 2, "{}", r.text);
}
