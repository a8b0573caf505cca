//! The console in a real browser: `tests/browser/console.cjs` (npm `playwright-core`, node_modules
//! in `ALLOT_PLAYWRIGHT_NODE_MODULES`) drives Debian's chromium (`/usr/bin/chromium`, or
//! `ALLOT_CHROMIUM`) against a server started here over a real socket, on the configuration of
//! `examples/advanced.yaml` with one experiment stopped; then the same script in Debian's Firefox
//! ESR (`/usr/bin/firefox-esr`, or `ALLOT_FIREFOX`; playwright-core in
//! `ALLOT_PLAYWRIGHT_FIREFOX_NODE_MODULES`) against a second server. `.ci/run` installs them; without them
//! the test says it skipped, unless `ALLOT_REQUIRE_BROWSER=1` (as `.ci/run` sets): then it fails.
//!
//! With `ALLOT_CONSOLE_SCREENSHOTS=DIR` the script also writes screenshots of the main pages
//! there (`docs/console.md` says how to regenerate `docs/console/*.png`).

use crate::support::{server, ADMIN};
use axum::http::StatusCode;
use std::path::Path;

fn skip(why: &str) {
    if std::env::var("ALLOT_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("ALLOT_REQUIRE_BROWSER=1 but {why}");
    }
    eprintln!("skipped: {why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let Some(modules) =
        std::env::var("ALLOT_PLAYWRIGHT_NODE_MODULES").ok().filter(|p| Path::new(p).join("playwright-core").exists())
    else {
        return skip("the browser test needs playwright-core: set ALLOT_PLAYWRIGHT_NODE_MODULES (see .ci/run)");
    };
    let chromium = std::env::var("ALLOT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return skip(&format!("the browser test needs chromium at {chromium} (apt-get install chromium)"));
    }
    run_console_script(modules, "chromium", chromium, std::env::var("ALLOT_CONSOLE_SCREENSHOTS").ok()).await;
}

/// The same script in Firefox (Debian's `firefox-esr`, driven over WebDriver BiDi by
/// playwright-core's `moz-firefox` channel; that needs a playwright-core that speaks the ESR's
/// BiDi, pinned in `.ci/run` apart from the Chromium one: `ALLOT_PLAYWRIGHT_FIREFOX_NODE_MODULES`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_firefox() {
    let Some(modules) = std::env::var("ALLOT_PLAYWRIGHT_FIREFOX_NODE_MODULES")
        .ok()
        .filter(|p| Path::new(p).join("playwright-core").exists())
    else {
        return skip(
            "the Firefox browser test needs playwright-core: set ALLOT_PLAYWRIGHT_FIREFOX_NODE_MODULES (see .ci/run)",
        );
    };
    let firefox = std::env::var("ALLOT_FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".into());
    if !Path::new(&firefox).exists() {
        return skip(&format!("the Firefox browser test needs firefox at {firefox} (apt-get install firefox-esr)"));
    }
    run_console_script(modules, "firefox", firefox, None).await;
}

/// Runs `tests/browser/console.cjs` in `browser` (its executable at `executable`) against a
/// server of its own (the script changes the configuration as it goes).
async fn run_console_script(modules: String, browser: &str, executable: String, screenshots: Option<String>) {
    if std::process::Command::new("node").arg("--version").output().is_err() {
        return skip("the browser test needs node");
    }
    let s = server().await;
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/advanced.yaml")).unwrap();
    let r = s.put_config(&yaml, "*", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let stopped = "search-suggest";
    let r = s.call("POST", &format!("/api/v1/experiments/{stopped}/stop"), Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // A draft, for the timeline's plan.
    let draft = r#"{"unit": "user", "surfaces": ["checkout"], "share": "20%", "variants": {"a": 1, "b": 1}}"#;
    let r = s
        .call(
            "PUT",
            "/api/v1/experiments/checkout-redesign",
            Some(ADMIN),
            &[("if-match", "*"), ("content-type", "application/json")],
            draft,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Results of price-test: 120 units' exposures and a purchases table in the store's own
    // database, with the store as the results source (allot serve --analysis-tables).
    let exposed: Vec<allot_store::Exposure> = (0..120)
        .map(|i| allot_store::Exposure {
            unit: format!("u{i}"),
            experiment: "price-test".into(),
            variant: if i % 2 == 0 { "control" } else { "higher" }.into(),
            day: "2026-01-01".into(),
            time: "2026-01-01T10:00:00Z".into(),
            version: 1,
        })
        .collect();
    s.app.store().record_exposures(&exposed).await.unwrap();
    let db = format!("sqlite://{}", s._dir.path().join("allot.db").display());
    {
        use sqlx::Connection as _;
        let mut c = sqlx::SqliteConnection::connect(&db).await.unwrap();
        sqlx::query("CREATE TABLE purchases (user_id TEXT, amount DOUBLE PRECISION, at TEXT)")
            .execute(&mut c)
            .await
            .unwrap();
        for i in 0..120 {
            let amount = f64::from(i % 9) + if i % 2 == 1 { 2.0 } else { 0.0 };
            sqlx::query("INSERT INTO purchases VALUES (?, ?, '2026-01-02T09:00:00Z')")
                .bind(format!("u{i}"))
                .bind(amount)
                .execute(&mut c)
                .await
                .unwrap();
        }
        c.close().await.unwrap();
    }
    let tables = "metrics:\n  revenue: {table: purchases, unit: user_id, time: at, time_type: rfc3339_text, aggregate: sum, value: amount, window: {delay: 0s, duration: 7d}}\n";
    s.app.set_results_source(allot_server::results::ResultsSource::new(&db, Some(tables)).unwrap());
    let (editor, reader, evaluator) = (s.key("editor").await, s.key("reader").await, s.key("evaluator").await);
    let (_, state) = s.app.store().load_current().await.unwrap();
    let cfg = allot_core::state::applied_config(&state).unwrap().unwrap();
    let audit = allot_core::audit::audit(&state, &cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(allot_server::http::serve(
        listener,
        allot_server::router(s.app.clone()),
        allot_server::http::Limits::default(),
        s.app.connections(),
        async move {
            let _ = stopped_rx.await;
        },
    ));
    let dir = tempfile::tempdir().unwrap();
    let expected = dir.path().join("expected.json");
    let spec = serde_json::json!({
        "base": base,
        "browser": browser,
        "executable": executable,
        "keys": {"admin": ADMIN, "editor": editor, "reader": reader, "evaluator": evaluator},
        "audit": audit,
        "experiments_all": cfg.experiments.keys().map(|k| (k.clone(), serde_json::json!(true))).collect::<serde_json::Map<_, _>>(),
        "space": state.spaces.iter().map(|(u, sp)| (u.clone(), serde_json::json!(sp.buckets))).collect::<serde_json::Map<_, _>>(),
        "stopped": stopped,
        "stop": "search-ranking",
        "screenshots": screenshots,
        "results": {"experiment": "price-test", "units": {"control": 60, "higher": 60}},
    });
    std::fs::write(&expected, spec.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/console.cjs");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node").arg(script).arg(&expected).env("NODE_PATH", &modules).output().unwrap()
    })
    .await
    .unwrap();
    let _ = stop.send(());
    let _ = server.await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed in {browser}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
