//! `GET` / `POST /api/v1/experiments/{id}/results`: the analysis of the store's own exposures
//! with the metric tables of `--analysis-tables` (here a table in the same SQLite database) or an
//! uploaded metrics CSV; the numbers checked against their definition, and every refusal.

use crate::support::*;
use allot_server::results::ResultsSource;
use axum::http::StatusCode;
use serde_json::Value;

const CONFIG: &str = r"
units:
  user: {attribute: user_id}
experiments:
  color:
    unit: user
    share: 100%
    variants: {blue: 1, green: 1}
    state: running
  other: {unit: user, share: 10%, variants: {a: 1}, state: draft}
";

/// 400 units, alternately blue and green, exposed at 10:00; unit `u{i}` spent `i % 7` (blue) or
/// `i % 7 + 1` (green) in two purchases.
async fn with_exposures() -> (Server, String, Vec<(String, String, f64)>) {
    let s = server().await;
    let r = s.put_config(CONFIG, "*", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rows: Vec<allot_store::Exposure> = (0..400)
        .map(|i| allot_store::Exposure {
            unit: format!("u{i}"),
            experiment: "color".into(),
            variant: if i % 2 == 0 { "blue" } else { "green" }.into(),
            day: "2026-01-01".into(),
            time: "2026-01-01T10:00:00Z".into(),
            version: 1,
        })
        .collect();
    s.app.store().record_exposures(&rows).await.unwrap();
    let spend: Vec<(String, String, f64)> = (0..400)
        .map(|i| {
            let v = f64::from(i % 7) + if i % 2 == 1 { 1.0 } else { 0.0 };
            (format!("u{i}"), if i % 2 == 0 { "blue" } else { "green" }.to_string(), v)
        })
        .collect();
    let url = format!("sqlite://{}", s._dir.path().join("allot.db").display());
    (s, url, spend)
}

/// The per-variant mean and sample sd of `spend`.
fn expected(spend: &[(String, String, f64)], variant: &str) -> (u64, f64, f64) {
    let xs: Vec<f64> = spend.iter().filter(|s| s.1 == variant).map(|s| s.2).collect();
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (xs.len() as u64, mean, var.sqrt())
}

fn check(report: &Value, metric: &str, spend: &[(String, String, f64)]) {
    let m = &report["experiments"]["color"]["metrics"][metric];
    for v in ["blue", "green"] {
        let (n, mean, sd) = expected(spend, v);
        let got = &m["variants"][v];
        assert_eq!(got["n"], n, "{v}: {got}");
        assert!((got["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{v}: {got} want mean {mean}");
        assert!((got["sd"].as_f64().unwrap() - sd).abs() < 1e-9, "{v}: {got} want sd {sd}");
    }
    let c = &m["comparisons"][0];
    assert_eq!((c["variant"].as_str(), c["control"].as_str()), (Some("green"), Some("blue")), "{c}");
    let diff = expected(spend, "green").1 - expected(spend, "blue").1;
    assert!((c["diff"].as_f64().unwrap() - diff).abs() < 1e-9, "{c}");
    assert!(c["p_value"].as_f64().unwrap() < 0.05, "a difference of 1 over 400 units: {c}");
    assert_eq!(report["experiments"].as_object().unwrap().len(), 1, "only this experiment");
}

#[tokio::test]
async fn results_from_an_uploaded_metrics_csv() {
    let (s, url, spend) = with_exposures().await;
    let reader = s.key("reader").await;
    let path = "/api/v1/experiments/color/results";
    // Not yet a source: the node says how to get one.
    let r = s.call("GET", path, Some(&reader), &[], "").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (StatusCode::CONFLICT, Some("NO_METRICS")), "{}", r.text);
    s.app.set_results_source(ResultsSource::new(&url, None).unwrap());
    let r = s.call("GET", path, Some(&reader), &[], "").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.json()["message"].as_str().unwrap().contains("--analysis-tables"), "{}", r.text);

    // Two purchases per unit of half the spend each: a sum metric counts every row of a unit.
    let mut csv = String::from("unit,metric,value\n");
    for (u, _, v) in &spend {
        csv += &format!("{u},spend,{}\n{u},spend,{}\n", v / 2.0, v / 2.0);
    }
    let csv_type = [("content-type", "text/csv")];
    let r = s.call("POST", path, Some(&reader), &csv_type, &csv).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    check(&r.json(), "spend", &spend);
    // Nothing was stored: the upload went to a temporary table of the analysis' connection.
    let r = s.call("GET", path, Some(&reader), &[], "").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);

    // Refusals name what is wrong.
    let bad = |body: &'static str| async { s.call("POST", path, Some(&reader), &csv_type, body).await };
    let r = bad("unit,metric,value\nu1,spend,abc\n").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("line 2") && r.text.contains("`value` is not a finite number"), "{}", r.text);
    let r = bad("unit,value\nu1,3\n").await;
    assert!(r.status == StatusCode::UNPROCESSABLE_ENTITY && r.text.contains("no `metric` column"), "{}", r.text);
    let r = bad("unit,metric,value\nu1,bad name,3\n").await;
    assert!(r.status == StatusCode::UNPROCESSABLE_ENTITY && r.text.contains("bad name"), "{}", r.text);
    let r = bad("unit,metric,value\n").await;
    assert!(r.status == StatusCode::UNPROCESSABLE_ENTITY && r.text.contains("no metric rows"), "{}", r.text);
    let r = s.call("POST", &format!("{path}?alpha=2"), Some(&reader), &csv_type, &csv).await;
    assert!(r.status == StatusCode::UNPROCESSABLE_ENTITY && r.text.contains("alpha"), "{}", r.text);
    let r = s.call("POST", &format!("{path}?colour=1"), Some(&reader), &csv_type, &csv).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = s.call("POST", "/api/v1/experiments/nope/results", Some(&reader), &csv_type, &csv).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = s.call("POST", "/api/v1/experiments/other/results", Some(&reader), &csv_type, &csv).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (StatusCode::CONFLICT, Some("NO_EXPOSURES")), "{}", r.text);
    let evaluator = s.key("evaluator").await;
    let r = s.call("POST", path, Some(&evaluator), &csv_type, &csv).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    // Served in the OpenAPI document.
    let spec = s.get("/api/v1/openapi.json").await.json();
    assert!(spec["paths"]["/api/v1/experiments/{id}/results"]["post"].is_object());
}

#[tokio::test]
async fn results_from_the_configured_metric_tables() {
    let (s, url, spend) = with_exposures().await;
    // A purchases table in the store's own database, with a time: one purchase per unit on the
    // day after exposure, and one before it (outside a window that starts at exposure).
    {
        use sqlx::Connection as _;
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE purchases (user_id TEXT, amount DOUBLE PRECISION, at TEXT)")
            .execute(&mut c)
            .await
            .unwrap();
        for (u, _, v) in &spend {
            sqlx::query(
                "INSERT INTO purchases VALUES (?, ?, '2026-01-02T09:00:00Z'), (?, 100.0, '2025-12-30T09:00:00Z')",
            )
            .bind(u)
            .bind(v)
            .bind(u)
            .execute(&mut c)
            .await
            .unwrap();
        }
        c.close().await.unwrap();
    }
    let tables = r"
metrics:
  revenue: {table: purchases, unit: user_id, time: at, time_type: rfc3339_text, aggregate: sum, value: amount, window: {delay: 0s, duration: 7d}}
";
    s.app.set_results_source(ResultsSource::new(&url, Some(tables)).unwrap());
    let reader = s.key("reader").await;
    let r = s.call("GET", "/api/v1/experiments/color/results", Some(&reader), &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    check(&r.json(), "revenue", &spend);
    let r = s.call("GET", "/api/v1/experiments/color/results?alpha=0.01", Some(&reader), &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The console shows the same numbers, linked from the experiment page.
    let mut b = crate::console::Browser::new(&s);
    b.sign_in(&reader).await;
    let page = b.get("/console/experiments/color").await;
    assert!(page.text.contains("/console/experiments/color/results"), "{}", page.text);
    let page = b.get("/console/experiments/color/results").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let (n, mean, _) = expected(&spend, "green");
    assert!(page.text.contains("Metric <bdi>revenue</bdi>"), "{}", page.text);
    assert!(
        page.text.contains(&format!("<td class=\"num\">{n}</td><td class=\"num\">{mean:.4}</td>")),
        "{}",
        page.text
    );
    assert!(page.text.contains("significant") && page.text.contains("95% intervals"), "{}", page.text);
    let page = b.get("/console/experiments/color/results?alpha=0.01").await;
    assert!(page.text.contains("99% intervals"), "{}", page.text);
    let page = b.get("/console/experiments/color/results?alpha=7").await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", page.text);
    // A mapping that does not match the tables: the query's own error, as a 422.
    let wrong = "metrics:\n  revenue: {table: nowhere, unit: user_id, time: at, time_type: rfc3339_text, aggregate: sum, value: amount, window: {delay: 0s, duration: 7d}}\n";
    s.app.set_results_source(ResultsSource::new(&url, Some(wrong)).unwrap());
    let r = s.call("GET", "/api/v1/experiments/color/results", Some(&reader), &[], "").await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("ANALYSIS_FAILED")),
        "{}",
        r.text
    );
    assert!(r.text.contains("nowhere"), "{}", r.text);
    let page = b.get("/console/experiments/color/results").await;
    assert!(page.status == StatusCode::OK && page.text.contains("id=\"results-unavailable\""), "{}", page.text);
    // A bad mapping is refused when the source is made (allot serve: before the port is bound).
    let e = ResultsSource::new(&url, Some("metrics:\n  revenue: {table: purchases}\n")).unwrap_err();
    assert!(e.contains("metrics.revenue"), "{e}");
}
