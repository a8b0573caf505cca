//! The console's overview over 1,000 running experiments in 20 scopes (DESIGN.md: ≤ 200 ms to
//! render on the server), through the router in-process: `GET /console` with a session.
//!
//! - `console_overview_1000_cached`: the view of the version already computed (what every
//!   request but the first after a change costs): rendering the page.
//! - `console_overview_1000_cold`: the first request after a change: loading the state, the
//!   exact audit (every pair of experiments), the spaces, then rendering.
//!
//! `cargo bench -p allot-server --bench console`; figures in bench/README.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use allot_server::{router, App};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const KEY: &str = "admin-secret-for-the-console-bench-0001";

/// 20 surfaces × 50 experiments × 1.5%, a 5% holdout on everything, a group of 4 slots on one
/// surface: 1,000 running experiments in 21 scopes.
fn yaml() -> String {
    let surfaces: Vec<String> = (0..20).map(|s| format!("s{s}")).collect();
    let mut y = format!(
        "units:\n  user: {{attribute: user_id}}\nsurfaces: [{}]\nholdouts:\n  hold: {{unit: user, share: 5%, applies_to: [all]}}\ngroups:\n  g: {{unit: user, share: 8%, slots: [25%, 25%, 25%, 25%], surfaces: [s0]}}\nexperiments:\n",
        surfaces.join(", ")
    );
    for i in 0..1000 {
        y.push_str(&format!(
            "  e{i}:\n    unit: user\n    surfaces: [s{}]\n    share: 1.5%\n    variants: {{control: 1, treatment: 1}}\n    targeting: {{attribute: country, in: [SE, NO]}}\n    state: running\n",
            i % 20
        ));
    }
    y
}

async fn call(app: &Arc<App>, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, usize) {
    let res = router(app.clone()).oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let n = res.into_body().collect().await.unwrap().to_bytes().len();
    (status, headers, n)
}

async fn setup(dir: &std::path::Path) -> (Arc<App>, String) {
    let url = format!("sqlite://{}?mode=rwc", dir.join("allot.db").display());
    let app = App::new(allot_store::open(&url).await.unwrap()).await.unwrap();
    app.bootstrap(Some(KEY)).await.unwrap();
    app.set_plan_budget(Duration::from_secs(600));
    let put = Request::put("/api/v1/config")
        .header("authorization", format!("Bearer {KEY}"))
        .header("if-match", "*")
        .body(Body::from(yaml()))
        .unwrap();
    assert_eq!(call(&app, put).await.0, StatusCode::OK);
    let sign_in = Request::post("/console/sign-in")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("key={KEY}")))
        .unwrap();
    let (status, headers, _) = call(&app, sign_in).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    (app, cookie)
}

fn overview(app: &Arc<App>, cookie: &str, rt: &tokio::runtime::Runtime) -> usize {
    let req = Request::get("/console").header("cookie", cookie).body(Body::empty()).unwrap();
    let (status, _, n) = rt.block_on(call(app, req));
    assert_eq!(status, StatusCode::OK);
    n
}

fn bench_overview(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, cookie) = rt.block_on(setup(dir.path()));
    let bytes = overview(&app, &cookie, &rt);
    eprintln!("the overview of 1,000 experiments: {bytes} bytes of HTML");
    c.bench_function("console_overview_1000_cached", |b| b.iter(|| overview(&app, &cookie, &rt)));
    c.bench_function("console_overview_1000_cold", |b| {
        b.iter(|| {
            app.forget_console_view();
            overview(&app, &cookie, &rt)
        })
    });
}

criterion_group! {
    name = console;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).sample_size(10);
    targets = bench_overview
}
criterion_main!(console);
