//! Snapshots with ETag, in-process evaluation equal to the server's, batched exposures.

use allot_core::eval::{NoSticky, Reason};
use allot_core::testing::edit;
use allot_server::{App, ChangeRequest, IfMatch};
use std::sync::Arc;

const KEY: &str = "sdk-admin-key-for-the-sdk-tests-0001";

const CONFIG: &str = r#"
units:
  user: {attribute: user_id}
surfaces: [home]
experiments:
  banner:
    unit: user
    surfaces: [home]
    share: 60%
    variants:
      control: {weight: 1, value: {"color": "blue"}}
      treatment: {weight: 1, value: {"color": "red"}}
    targeting: {attribute: country, in: [SE, NO]}
    include: {alice: treatment}
    owner: growth@example.com
    description: the red banner
    state: running
  upcoming:
    unit: user
    surfaces: [home]
    share: 10%
    variants:
      a: {weight: 1, value: "unreleased-copy"}
    include: {vip-customer-42: a}
    owner: secret-team@example.com
"#;

async fn change(app: &App, yaml: &str) {
    let raw = allot_core::config::parse_yaml(yaml).unwrap();
    let c = ChangeRequest {
        raw,
        if_match: IfMatch::Any,
        force: false,
        reason: None,
        actor: "test".into(),
        action: "test".into(),
    };
    assert!(app.change(c).await.unwrap().committed);
}

async fn serve() -> (tempfile::TempDir, Arc<App>, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("allot.db").display());
    let app = App::new(allot_store::open(&url).await.unwrap()).await.unwrap();
    app.bootstrap(Some(KEY)).await.unwrap();
    change(&app, CONFIG).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = allot_server::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (dir, app, format!("http://{addr}"))
}

#[tokio::test]
async fn evaluates_in_process_like_the_server() {
    let (_d, app, base) = serve().await;
    let sdk = allot_sdk::Client::connect(&base, KEY).await.unwrap();
    assert_eq!(sdk.version(), 1);
    let live = app.live();
    let mut seen = std::collections::HashSet::new();
    for u in 0..500 {
        let ctx = serde_json::json!({"user_id": format!("u{u}"), "country": if u % 3 == 0 { "US" } else { "SE" }});
        let ctx = ctx.as_object().unwrap();
        let got = sdk.evaluate("banner", ctx);
        let want = live.snapshot.evaluate_one(0, ctx, &NoSticky);
        assert_eq!(got.reason, Some(want.reason));
        assert_eq!(got.variant.as_deref(), live.snapshot.variant_name(0, &want));
        if let Some(v) = &got.value {
            assert!(v["color"].is_string());
        }
        seen.insert(want.reason);
    }
    assert!(
        seen.contains(&Reason::Assigned)
            && seen.contains(&Reason::TargetingMiss)
            && seen.contains(&Reason::NotAllocated)
    );
    let alice = serde_json::json!({"user_id": "alice", "country": "US"});
    assert_eq!(sdk.evaluate("banner", alice.as_object().unwrap()).reason, Some(Reason::Included));
    // A draft is not served: the SDK does not know it, as the server answers it unassigned.
    let draft = sdk.evaluate("upcoming", alice.as_object().unwrap());
    assert_eq!((draft.reason, draft.variant), (None, None));
    let unknown = sdk.evaluate("nope", &serde_json::Map::new());
    assert_eq!((unknown.reason, unknown.version), (None, 1));
}

#[tokio::test]
async fn refresh_uses_the_etag_and_picks_up_changes() {
    let (_d, app, base) = serve().await;
    let sdk = allot_sdk::Client::connect(&base, KEY).await.unwrap();
    assert!(!sdk.refresh().await.unwrap(), "unchanged: 304");
    change(&app, &edit(CONFIG, "share: 60%", "share: 70%")).await;
    assert!(sdk.refresh().await.unwrap());
    assert_eq!(sdk.version(), 2);
}

#[tokio::test]
async fn exposures_are_sent_in_batches() {
    let (_d, app, base) = serve().await;
    let sdk = allot_sdk::Client::connect(&base, KEY).await.unwrap();
    for u in 0..1500 {
        sdk.expose(&format!("u{u}"), "banner", "treatment");
    }
    // The 500th queued a background flush; flush sends whatever is left.
    let mut total = sdk.flush().await.unwrap();
    for _ in 0..1000 {
        let n = app.store().exposures(Some("banner"), 0, 10_000).await.unwrap().len();
        if n == 1500 {
            break;
        }
        total += sdk.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(total <= 1500);
    assert_eq!(app.store().exposures(Some("banner"), 0, 10_000).await.unwrap().len(), 1500);
}

#[tokio::test]
async fn a_wrong_key_is_an_error() {
    let (_d, _app, base) = serve().await;
    let e = allot_sdk::Client::connect(&base, "wrong").await.unwrap_err();
    assert!(matches!(e, allot_sdk::Error::Status { status: 401, .. }), "{e}");
}

/// What the OpenFeature providers of the in-process SDKs read: the experiments served, each one's
/// unit type and the unit id it reads, `targetingKey` as the unit of every unit type whose
/// attribute the context lacks, and OpenFeature's reasons.
#[test]
fn experiments_unit_types_units_and_targeting_keys() {
    let state =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../spec/assign/allot.state.json")).unwrap();
    let c = allot_sdk::Client::offline(&state, allot_sdk::Options::default()).unwrap();
    let ids = c.experiments();
    assert_eq!(ids.len(), 8, "{ids:?}");
    assert!(ids.iter().any(|e| e == "device-onboarding"));
    assert_eq!(c.unit_type_of("device-onboarding").as_deref(), Some("device"));
    assert_eq!(c.unit_type_of("nope"), None);
    let of = serde_json::json!({"device_id": "d9", "country": "SE"});
    let mut ctx = of.as_object().unwrap().clone();
    c.fill_targeting_key(&mut ctx, "k1");
    assert_eq!(
        serde_json::Value::Object(ctx.clone()),
        serde_json::json!({"device_id": "d9", "country": "SE", "user_id": "k1"})
    );
    assert_eq!(c.unit_of("home-feed-us", &ctx).as_deref(), Some("k1"));
    assert_eq!(c.unit_of("device-onboarding", &ctx).as_deref(), Some("d9"));
    assert_eq!(c.unit_of("home-feed-us", &serde_json::Map::new()), None);
    assert_eq!(Reason::Assigned.openfeature(), "SPLIT");
    assert_eq!(Reason::NotAllocated.openfeature(), "DEFAULT");
}

/// [`CONFIG`] and a sticky experiment.
fn with_sticky() -> String {
    format!("{CONFIG}  onboarding:\n    unit: user\n    share: 100%\n    variants: {{control: 1, treatment: 1}}\n    sticky: true\n    state: running\n")
}

/// The server's stored assignments of one unit, as an application could keep them.
struct Stored(Vec<(String, String)>);

impl allot_sdk::StickyStore for Stored {
    fn get(&self, _: &str, _: &str, experiment: &str) -> Option<String> {
        self.0.iter().find(|(e, _)| e == experiment).map(|(_, v)| v.clone())
    }
}

#[tokio::test]
async fn sticky_experiments_never_contradict_the_server() {
    let (_d, app, base) = serve().await;
    change(&app, &with_sticky()).await;
    let http = reqwest::Client::new();
    let ask = |u: usize| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let body = serde_json::json!({"context": {"user_id": format!("u{u}")}, "experiments": ["onboarding"]});
            let r: serde_json::Value = http
                .post(format!("{base}/api/v1/evaluate"))
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["assignments"]["onboarding"]["variant"].as_str().map(str::to_string)
        }
    };
    // The server stores each unit's variant, then the split is reweighted (forced: it moves
    // units without a stored assignment).
    let mut stored = vec![];
    for u in 0..200 {
        stored.push(ask(u).await.expect("assigned"));
    }
    let mut raw = app.live().config.clone();
    raw["experiments"]["onboarding"]["variants"] = serde_json::json!({"control": 1, "treatment": 9});
    let c = ChangeRequest {
        raw,
        if_match: IfMatch::Any,
        force: true,
        reason: Some("test".into()),
        actor: "test".into(),
        action: "test".into(),
    };
    assert!(app.change(c).await.unwrap().committed);
    let sdk = allot_sdk::Client::connect(&base, KEY).await.unwrap();
    let mut would_differ = 0;
    for (u, want) in stored.iter().enumerate() {
        let ctx = serde_json::json!({"user_id": format!("u{u}")});
        let ctx = ctx.as_object().unwrap();
        // By default: not decidable here, and no variant.
        let got = sdk.evaluate("onboarding", ctx);
        assert_eq!((got.reason, got.variant), (Some(Reason::StickyUnavailable), None), "u{u}");
        // Without the stored rows the reweighted split would answer another variant for some.
        let live = app.live();
        let i = live.snapshot.index_of("onboarding").unwrap();
        let fresh = live.snapshot.evaluate_one(i, ctx, &NoSticky);
        if live.snapshot.variant_name(i, &fresh) != Some(want.as_str()) {
            would_differ += 1;
        }
        // With the server's stored assignments: exactly the server's answer.
        let rows = app.store().sticky_for_unit("user", &format!("u{u}")).await.unwrap();
        let got = sdk.evaluate_with("onboarding", ctx, &Stored(rows));
        assert_eq!(got.variant.as_deref(), Some(want.as_str()), "u{u}");
        assert_eq!(ask(u).await.as_deref(), Some(want.as_str()), "the server keeps u{u}'s variant");
    }
    assert!(would_differ > 0, "the reweight must move some units without a stored assignment");
}

/// Exposure times come from the clock the application gives (the system clock by default): a
/// fixed clock pins them, and the server stores them as sent.
#[tokio::test]
async fn exposure_times_come_from_the_clock_the_app_gives() {
    let (_d, app, base) = serve().await;
    let at = time::OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap(); // 2026-01-01
    let sdk = allot_sdk::Client::connect_with_clock(&base, KEY, Arc::new(move || at)).await.unwrap();
    sdk.expose("u1", "banner", "treatment");
    sdk.expose("u2", "banner", "control");
    assert_eq!(sdk.flush().await.unwrap(), 2);
    let stored = app.store().exposures(Some("banner"), 0, 10).await.unwrap();
    let times: Vec<(&str, &str, &str)> =
        stored.iter().map(|(_, x)| (x.unit.as_str(), x.time.as_str(), x.day.as_str())).collect();
    assert_eq!(times, [("u1", "2026-01-01T00:00:00Z", "2026-01-01"), ("u2", "2026-01-01T00:00:00Z", "2026-01-01")]);
    // The default clock is the system's: today, not 2026-01-01 (unless the test runs that day).
    let sdk = allot_sdk::Client::connect(&base, KEY).await.unwrap();
    sdk.expose("u3", "banner", "treatment");
    sdk.flush().await.unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let stored = app.store().exposures(Some("banner"), 0, 10).await.unwrap();
    let u3 = stored.iter().find(|(_, x)| x.unit == "u3").unwrap();
    let t = time::OffsetDateTime::parse(&u3.1.time, &time::format_description::well_known::Rfc3339).unwrap();
    assert!((t.unix_timestamp() - now).abs() < 3600, "{}", u3.1.time);
}

/// The exposure queue is bounded: it stops at `queue_limit`, drops (and counts) what does not
/// fit, and sends what it kept.
#[tokio::test]
async fn the_exposure_queue_is_bounded_and_counts_what_it_drops() {
    let (_dir, _app, base) = serve().await;
    let options = allot_sdk::Options { queue_limit: 100, ..allot_sdk::Options::default() };
    let c = allot_sdk::Client::connect_with(&base, KEY, options).await.unwrap();
    for u in 0..150 {
        c.expose(&format!("u{u}"), "banner", "control");
    }
    assert_eq!((c.queued_exposures(), c.dropped_exposures()), (100, 50));
    assert_eq!(c.flush().await.unwrap(), 100);
    assert_eq!((c.queued_exposures(), c.dropped_exposures()), (0, 50));
}

/// `https://` servers: the SDK trusts a private CA given in `root_certificates` (and nothing
/// else with `only_these_roots`), and evaluates as over plain HTTP.
#[tokio::test]
async fn the_sdk_connects_over_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let tls =
        allot_server::http::Tls::from_pem_files(&dir.path().join("cert.pem"), &dir.path().join("key.pem")).unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("allot.db").display());
    let app = App::new(allot_store::open(&db).await.unwrap()).await.unwrap();
    app.bootstrap(Some(KEY)).await.unwrap();
    change(&app, CONFIG).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = allot_server::router(app.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = allot_server::http::Limits::default();
    let task =
        tokio::spawn(allot_server::http::serve_tls(listener, tls, router, limits, app.connections(), async move {
            let _ = stopped.await;
        }));
    let base = format!("https://localhost:{port}");
    // Without the CA the certificate is refused.
    let strict = allot_sdk::Options { only_these_roots: true, ..allot_sdk::Options::default() };
    assert!(allot_sdk::Client::connect_with(&base, KEY, strict).await.is_err());
    let options = allot_sdk::Options {
        root_certificates: vec![ca.pem().into_bytes()],
        only_these_roots: true,
        ..allot_sdk::Options::default()
    };
    let c = allot_sdk::Client::connect_with(&base, KEY, options).await.unwrap();
    let ctx = serde_json::json!({"user_id": "alice", "country": "SE"});
    let e = c.evaluate("banner", ctx.as_object().unwrap());
    assert_eq!((e.variant.as_deref(), e.reason), (Some("treatment"), Some(Reason::Included)));
    c.expose("alice", "banner", "treatment");
    assert_eq!(c.flush().await.unwrap(), 1);
    let _ = stop.send(());
    task.await.unwrap();
}

/// The same (unit, experiment, variant, UTC day) is queued once; another day, variant or unit is
/// another exposure; `dedup_limit: 0` turns it off.
#[test]
fn exposures_are_deduplicated_per_unit_experiment_variant_and_day() {
    let state =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../spec/assign/allot.state.json")).unwrap();
    let day = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let d = day.clone();
    let clock = Arc::new(move || {
        time::OffsetDateTime::from_unix_timestamp(1_767_310_200).unwrap()
            + time::Duration::days(d.load(std::sync::atomic::Ordering::SeqCst))
    });
    let c = allot_sdk::Client::offline(&state, allot_sdk::Options { clock, ..allot_sdk::Options::default() }).unwrap();
    let e = "home-feed-us";
    for _ in 0..3 {
        c.expose("u1", e, "control");
    }
    c.expose("u1", e, "treatment");
    c.expose("u2", e, "control");
    c.expose("u1x", e, "control");
    day.store(1, std::sync::atomic::Ordering::SeqCst);
    c.expose("u1", e, "control");
    assert_eq!((c.queued_exposures(), c.deduplicated_exposures()), (5, 2));
    // An experiment or variant the snapshot does not have is never queued (the server would
    // refuse the whole batch it travels in).
    c.expose("u1", "no-such-experiment", "control");
    c.expose("u1", e, "no-such-variant");
    assert_eq!((c.queued_exposures(), c.rejected_exposures()), (5, 2));
    let off = allot_sdk::Options { dedup_limit: 0, ..allot_sdk::Options::default() };
    let c = allot_sdk::Client::offline(&state, off).unwrap();
    c.expose("u1", e, "control");
    c.expose("u1", e, "control");
    assert_eq!((c.queued_exposures(), c.deduplicated_exposures()), (2, 0));
    // An exposure dropped because the queue was full is not marked seen: once there is room,
    // the same exposure is queued.
    let one = allot_sdk::Options { queue_limit: 1, ..allot_sdk::Options::default() };
    let c = allot_sdk::Client::offline(&state, one).unwrap();
    c.expose("u1", e, "control");
    c.expose("u2", e, "control");
    c.expose("u2", e, "control");
    assert_eq!((c.queued_exposures(), c.dropped_exposures(), c.deduplicated_exposures()), (1, 2, 0));
}

/// A client built from a state file evaluates as the core does (the golden assignments and
/// buckets of `spec/assign/`), and says it is offline instead of trying a server.
#[tokio::test]
async fn an_offline_client_gives_the_golden_assignments_and_buckets() {
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../../spec/assign/");
    let read = |f: &str| std::fs::read_to_string(format!("{spec}{f}")).unwrap();
    for state in ["allot.state.json", "resalted.state.json"] {
        let c = allot_sdk::Client::offline(&read(state), allot_sdk::Options::default()).unwrap();
        let units = read("units.jsonl");
        let (expected, buckets) = (read("expected.jsonl"), read("buckets-resalted.jsonl"));
        let mut n = 0;
        for ((line, want), bucket) in units.lines().zip(expected.lines()).zip(buckets.lines()) {
            let ctx: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
            let want: serde_json::Value = serde_json::from_str(want).unwrap();
            for (id, w) in want["assignments"].as_object().unwrap() {
                let e = c.evaluate(id, &ctx);
                let got = serde_json::json!({"variant": e.variant, "reason": e.reason.map(|r| r.as_str())});
                assert_eq!(&got, w, "{state} line {}: {id}", n + 1);
            }
            if state == "resalted.state.json" {
                let want: std::collections::BTreeMap<String, u32> = serde_json::from_str(bucket).unwrap();
                assert_eq!(c.buckets(&ctx), want, "{state} line {}", n + 1);
            }
            n += 1;
        }
        assert_eq!(n, 2000);
        assert!(matches!(c.refresh().await, Err(allot_sdk::Error::Offline)));
        assert!(matches!(c.flush().await, Err(allot_sdk::Error::Offline)));
    }
}
