//! An accepted commit can never stop the service from starting: random configurations and change
//! sequences are committed through [`App::change`] into a fresh SQLite store, then a new [`App`]
//! is started on that store the way `allot serve` starts (`App::new`, `bootstrap`, `refresh`)
//! and must answer `/healthz`, an evaluation and its snapshot.
//!
//! The generator is compact and its own: 1–2 unit types with small spaces, 3 surfaces, segments
//! that nest (also twice over the previous one), holdouts, groups with slots, experiments with
//! surfaces, shares, group memberships, targeting (direct or through segments), inclusions,
//! prerequisites and lifecycle moves; deletions of every kind; a quarter of the changes forced
//! with a reason. Most random changes are refused or invalid — those are simply not committed.
//!
//! 32 cases by default (a few seconds in a debug build); `PROPTEST_CASES` raises them. Failures are
//! persisted in `proptest-regressions/start.txt` beside this file.

use crate::support::ADMIN;
use allot_core::eval::{NoSticky, Snapshot};
use allot_core::state::State;
use allot_core::Context;
use allot_server::{router, App, ChangeRequest, IfMatch};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tower::ServiceExt;

const REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/proptest-regressions/start.txt");

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

const UNITS: [&str; 2] = ["user", "device"];
const SURFACES: [&str; 3] = ["s0", "s1", "s2"];
const COUNTRIES: [&str; 4] = ["SE", "NO", "US", "DE"];
const STATES: [&str; 4] = ["draft", "running", "stopped", "archived"];

/// One random change to the configuration tree.
#[derive(Debug, Clone)]
enum Change {
    Segment(usize, Value),
    Holdout(usize, Value),
    Group(usize, Value),
    Experiment(usize, Value),
    Lifecycle(usize, &'static str),
    Delete(&'static str, usize),
}

fn unit() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => Just(UNITS[0]), 1 => Just(UNITS[1])]
}

fn share(max: u32) -> impl Strategy<Value = String> {
    (1..=max).prop_map(|p| format!("{p}%"))
}

fn surfaces() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(SURFACES.to_vec(), 0..=2)
}

/// A targeting expression over `country` and `age`, with references to segments `seg0..seg<n>`.
fn targeting(segments: usize) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        proptest::sample::subsequence(COUNTRIES.to_vec(), 1..=3).prop_map(|c| json!({"attribute": "country", "in": c})),
        (0u32..60).prop_map(|a| json!({"attribute": "age", "gte": a})),
        (0..segments.max(1)).prop_map(move |i| if segments == 0 {
            json!({"attribute": "country", "eq": "SE"})
        } else {
            json!({"segment": format!("seg{i}")})
        }),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(|v| json!({"all": v})),
            proptest::collection::vec(inner.clone(), 0..3).prop_map(|v| json!({"any": v})),
            inner.prop_map(|v| json!({"not": v})),
        ]
    })
}

fn segment(i: usize) -> impl Strategy<Value = Value> {
    // A segment refers only to earlier ones (a later one referring back would be a cycle: that is
    // generated too, rarely, and must be refused).
    prop_oneof![
        3 => targeting(i),
        1 => Just(if i == 0 { json!({"attribute": "country", "eq": "NO"}) } else {
            json!({"all": [{"segment": format!("seg{}", i - 1)}, {"segment": format!("seg{}", i - 1)}]})
        }),
        1 => Just(json!({"segment": format!("seg{}", (i + 1) % 4)})),
    ]
}

fn holdout() -> impl Strategy<Value = Value> {
    (unit(), share(20), prop_oneof![Just(vec!["all"]), surfaces(), Just(vec!["g0"]), Just(vec!["e0"])])
        .prop_map(|(u, s, a)| json!({"unit": u, "share": s, "applies_to": a, "description": "hold back"}))
}

fn group() -> impl Strategy<Value = Value> {
    (unit(), share(60), proptest::collection::vec(10u32..60, 1..4), surfaces()).prop_map(|(u, s, slots, surf)| {
        let slots: Vec<String> = slots.iter().map(|p| format!("{}%", p / 2)).collect();
        json!({"unit": u, "share": s, "slots": slots, "surfaces": surf})
    })
}

fn experiment() -> impl Strategy<Value = Value> {
    (
        unit(),
        surfaces(),
        prop::option::weighted(0.8, share(30)),
        prop::option::weighted(0.25, (0usize..2, proptest::collection::vec(1usize..3, 1..3))),
        proptest::collection::vec(0u32..4, 1..4),
        prop::option::weighted(0.5, targeting(2)),
        prop::option::weighted(0.3, 0usize..3),
        prop::option::weighted(0.15, 0usize..6),
        prop_oneof![1 => Just("draft"), 3 => Just("running"), 1 => Just("stopped")],
        any::<bool>(),
    )
        .prop_map(|(u, surf, share, group, weights, targeting, include, requires, state, values)| {
            let mut e = Map::new();
            e.insert("unit".into(), json!(u));
            e.insert("surfaces".into(), json!(surf));
            if let Some(s) = share {
                e.insert("share".into(), json!(s));
            }
            if let Some((g, slots)) = group {
                e.insert("group".into(), json!(format!("g{g}")));
                e.insert("slots".into(), json!(slots));
            }
            let mut variants = Map::new();
            for (i, w) in weights.iter().enumerate() {
                let w = if i == 0 { w + 1 } else { *w };
                variants.insert(
                    format!("v{i}"),
                    if values { json!({"weight": w, "value": format!("secret-{i}")}) } else { json!(w) },
                );
            }
            e.insert("variants".into(), Value::Object(variants));
            if let Some(t) = targeting {
                e.insert("targeting".into(), t);
            }
            if let Some(i) = include {
                e.insert("include".into(), json!({format!("u{i}"): "v0"}));
            }
            if let Some(r) = requires {
                e.insert("requires".into(), json!({format!("e{r}"): ["v0"]}));
            }
            e.insert("state".into(), json!(state));
            e.insert("owner".into(), json!("someone@example.com"));
            e.insert("description".into(), json!("what it tests"));
            Value::Object(e)
        })
}

fn change() -> impl Strategy<Value = (Change, bool)> {
    let c = prop_oneof![
        2 => (0usize..4).prop_flat_map(|i| segment(i).prop_map(move |v| Change::Segment(i, v))),
        1 => (0usize..2, holdout()).prop_map(|(i, v)| Change::Holdout(i, v)),
        1 => (0usize..2, group()).prop_map(|(i, v)| Change::Group(i, v)),
        4 => (0usize..6, experiment()).prop_map(|(i, v)| Change::Experiment(i, v)),
        3 => (0usize..6, proptest::sample::select(STATES.to_vec())).prop_map(|(i, s)| Change::Lifecycle(i, s)),
        1 => (proptest::sample::select(vec!["segments", "holdouts", "groups", "experiments", "surfaces", "units"]), 0usize..6)
            .prop_map(|(c, i)| Change::Delete(c, i)),
    ];
    (c, proptest::bool::weighted(0.25))
}

fn base() -> Value {
    json!({
        "units": {
            "user": {"attribute": "user_id", "buckets": 10000},
            "device": {"attribute": "device_id", "buckets": 2000},
        },
        "surfaces": SURFACES,
        "segments": {"seg0": {"attribute": "country", "in": ["SE", "NO"]}, "seg1": {"all": [{"segment": "seg0"}, {"segment": "seg0"}]}},
        "holdouts": {"h0": {"unit": "user", "share": "5%", "applies_to": ["s0"], "description": "x"}},
        "groups": {"g0": {"unit": "user", "share": "20%", "slots": ["50%", "50%"], "surfaces": ["s1"]}},
        "experiments": {
            "e0": {"unit": "user", "surfaces": ["s0"], "share": "20%", "variants": {"v0": {"weight": 1, "value": "a"}, "v1": 1},
                   "targeting": {"segment": "seg1"}, "include": {"u1": "v1"}, "state": "running", "owner": "o", "description": "d"},
            "e1": {"unit": "user", "group": "g0", "slots": [1], "variants": {"v0": 1, "v1": 1}, "state": "running"},
            "e2": {"unit": "device", "share": "30%", "variants": {"v0": 1}, "requires": {"e3": ["v0"]}, "state": "running"},
            "e3": {"unit": "device", "share": "10%", "variants": {"v0": {"weight": 1, "value": "draft-secret"}}, "include": {"d7": "v0"}},
        },
    })
}

fn apply(cfg: &Value, c: &Change) -> Value {
    let mut cfg = cfg.clone();
    let Some(o) = cfg.as_object_mut() else { return cfg };
    let mut put = |coll: &str, id: String, v: Value| {
        let m = o.entry(coll).or_insert_with(|| json!({}));
        if let Some(m) = m.as_object_mut() {
            m.insert(id, v);
        }
    };
    match c {
        Change::Segment(i, v) => put("segments", format!("seg{i}"), v.clone()),
        Change::Holdout(i, v) => put("holdouts", format!("h{i}"), v.clone()),
        Change::Group(i, v) => put("groups", format!("g{i}"), v.clone()),
        Change::Experiment(i, v) => put("experiments", format!("e{i}"), v.clone()),
        Change::Lifecycle(i, s) => {
            if let Some(e) =
                o.get_mut("experiments").and_then(|e| e.get_mut(format!("e{i}"))).and_then(Value::as_object_mut)
            {
                e.insert("state".into(), json!(s));
            }
        }
        Change::Delete(coll, i) => match o.get_mut(*coll) {
            Some(Value::Array(l)) if !l.is_empty() => {
                l.remove(i % l.len());
            }
            Some(Value::Object(m)) if !m.is_empty() => {
                let k = m.keys().nth(i % m.len()).cloned().unwrap_or_default();
                m.shift_remove(&k);
            }
            _ => {}
        },
    }
    cfg
}

async fn call(app: &Arc<App>, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Commits what is accepted of `changes`, then starts a new app on the store; returns the version
/// committed last.
async fn commit_then_restart(changes: &[(Change, bool)]) -> Result<u64, TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("allot.db").display());
    let app = App::new(allot_store::open(&url).await.unwrap()).await.unwrap();
    app.bootstrap(Some(ADMIN)).await.unwrap();
    let mut cfg = base();
    let first = app.change(request(cfg.clone(), false)).await;
    prop_assert!(first.is_ok(), "the base configuration is accepted: {:?}", first.err());
    for (c, force) in changes {
        let next = apply(&cfg, c);
        match app.change(request(next.clone(), *force)).await {
            Ok(_) => cfg = next,
            Err(allot_server::ApiError::Invalid(_) | allot_server::ApiError::Refused(_)) => {}
            Err(e) => return Err(TestCaseError::fail(format!("a change failed other than by refusal: {e}"))),
        }
    }
    let committed = app.live().version;
    drop(app);

    // Start as `allot serve` does.
    let store = allot_store::open(&url).await.unwrap();
    let app = match App::new(store).await {
        Ok(a) => a,
        Err(e) => return Err(TestCaseError::fail(format!("the service does not start on version {committed}: {e}"))),
    };
    app.bootstrap(None).await.unwrap();
    app.refresh().await.unwrap();
    prop_assert_eq!(app.live().version, committed);
    let (status, _) = call(&app, "GET", "/healthz", "").await;
    prop_assert_eq!(status, StatusCode::OK);
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/evaluate",
        r#"{"context": {"user_id": "u1", "device_id": "d1", "country": "SE", "age": 30}}"#,
    )
    .await;
    prop_assert_eq!(status, StatusCode::OK, "{}", body);
    prop_assert_eq!(&body["version"], &json!(committed));
    let (status, body) = call(&app, "GET", "/api/v1/snapshot", "").await;
    prop_assert_eq!(status, StatusCode::OK, "{}", body);
    // What evaluators are served evaluates exactly as the whole state, at every version.
    for v in 1..=committed {
        let full = app.store().load_version(v).await.unwrap().unwrap();
        same_answers(&full)?;
    }
    Ok(committed)
}

/// The reduced snapshot of `full` compiles (also after a JSON round trip, as the SDK reads it)
/// and answers every unit as `full` does; what it leaves out is not running.
fn same_answers(full: &State) -> Result<(), TestCaseError> {
    let reduced = allot_server::served::for_evaluation(full);
    let text = serde_json::to_string(&reduced).unwrap();
    let reduced = State::from_json(&text)
        .map_err(|e| TestCaseError::fail(format!("the served state does not read back: {e}")))?;
    prop_assert!(reduced.log.is_empty());
    let a = Snapshot::compile(full).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    let b = Snapshot::compile(&reduced).map_err(|e| {
        TestCaseError::fail(format!("the served state of version {} does not compile: {e:?}", full.version))
    })?;
    for i in 0..300 {
        let mut ctx = Context::new();
        ctx.insert("user_id".into(), json!(format!("u{i}")));
        ctx.insert("device_id".into(), json!(format!("d{i}")));
        ctx.insert("country".into(), json!(COUNTRIES[i % COUNTRIES.len()]));
        ctx.insert("age".into(), json!(i % 70));
        for (j, e) in a.experiments.iter().enumerate() {
            let x = a.evaluate_one(j, &ctx, &NoSticky);
            match b.index_of(&e.id) {
                Some(k) => {
                    let y = b.evaluate_one(k, &ctx, &NoSticky);
                    prop_assert_eq!(a.variant_name(j, &x), b.variant_name(k, &y), "{} for u{}", e.id, i);
                    prop_assert_eq!(x.reason, y.reason, "{} for u{}", e.id, i);
                }
                None => {
                    prop_assert!(!e.running && x.variant.is_none(), "{} is served nothing but assigns u{}", e.id, i)
                }
            }
        }
    }
    Ok(())
}

fn request(raw: Value, force: bool) -> ChangeRequest {
    ChangeRequest {
        raw,
        if_match: IfMatch::Any,
        force,
        reason: force.then(|| "property test".into()),
        actor: "proptest".into(),
        action: "config.put".into(),
    }
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn the_service_starts_on_every_state_it_committed(changes in proptest::collection::vec(change(), 4..14)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(commit_then_restart(&changes))?;
    }
}

/// The configuration of issue 14: segments that each use the previous one twice. Up to the bound
/// it is accepted and the service restarts on it; past it, it is refused with the field named and
/// nothing is committed.
#[tokio::test]
async fn a_doubling_chain_of_segments_is_accepted_up_to_the_bound_and_restarts() {
    fn chain(levels: usize) -> Value {
        let mut segments = Map::new();
        segments.insert("s0".into(), json!({"attribute": "country", "in": ["SE", "NO"]}));
        for i in 1..levels {
            let prev = format!("s{}", i - 1);
            segments.insert(format!("s{i}"), json!({"any": [{"segment": prev}, {"not": {"segment": prev}}]}));
        }
        let mut cfg = base();
        cfg["segments"] = Value::Object(segments);
        cfg["experiments"] = json!({"deep": {"unit": "user", "share": "50%", "variants": {"a": 1, "b": 1},
            "targeting": {"segment": format!("s{}", levels - 1)}, "state": "running"}});
        cfg
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("allot.db").display());
    let app = App::new(allot_store::open(&url).await.unwrap()).await.unwrap();
    app.bootstrap(Some(ADMIN)).await.unwrap();
    app.change(request(chain(11), false)).await.unwrap();
    match app.change(request(chain(26), false)).await {
        Err(allot_server::ApiError::Invalid(es)) => {
            assert!(es.iter().any(|e| e.path.starts_with("segments.s") && e.message.contains("nodes")), "{es:?}")
        }
        other => panic!("a chain of 26 doubling segments must be refused: {other:?}"),
    }
    assert_eq!(app.live().version, 1);
    drop(app);
    let app = App::new(allot_store::open(&url).await.unwrap()).await.unwrap();
    let (status, body) =
        call(&app, "POST", "/api/v1/evaluate", r#"{"context": {"user_id": "u1", "country": "US"}}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1);
    assert_ne!(body["assignments"]["deep"]["reason"], "NOT_RUNNING", "{body}");
}

/// A re-salt's classes are rebuilt from the allocations it names; one of them stopped since is
/// no longer live, and the served state must still carry its buckets (under a neutral name) so
/// that an SDK puts every unit in the bucket the server does.
#[test]
fn the_served_state_keeps_what_a_resalt_needs() {
    use allot_core::plan::{self, Options};
    let exp = |id: &str, share: &str, state: &str| {
        format!("  {id}: {{unit: user, surfaces: [home], share: {share}, variants: {{c: 1, t: 1}}, state: {state}}}\n")
    };
    let head = "units: {user: {attribute: user_id, buckets: 10000}}\nsurfaces: [home, search]\nexperiments:\n";
    let step = |st: &State, yaml: String| {
        let raw = allot_core::config::parse_yaml(&yaml).unwrap();
        let cfg = allot_core::config::validate(&raw).unwrap();
        plan::apply(st, &cfg, &raw, &Options::default()).unwrap().state
    };
    let search = "  s: {unit: user, surfaces: [search], share: 50%, variants: {c: 1, t: 1}, state: running}\n";
    let s1 = step(&State::default(), format!("{head}{}{search}", exp("a", "40%", "running")));
    let (s2, _) = allot_core::salt::resalt(&s1, "user", "2026-01-01T00:00:00Z", None, None).unwrap();
    let s3 = step(&s2, format!("{head}{}{search}{}", exp("a", "40%", "stopped"), exp("b", "50%", "running")));
    let served = allot_server::served::for_evaluation(&s3);
    assert!(served.allocations.iter().all(|a| !a.owner.contains('a') || a.owner.starts_with("resalt class ")));
    same_answers(&s3).unwrap();
    let (a, b) = (Snapshot::compile(&s3).unwrap(), Snapshot::compile(&served).unwrap());
    for i in 0..2000 {
        let u = format!("u{i}");
        assert_eq!(a.spaces[0].bucket(&u), b.spaces[0].bucket(&u), "{u}");
    }
}

/// An imported Amplitude experiment that stopped but is still a prerequisite is served as a
/// skeleton: without its Amplitude split (its salt, shared with its unit type, goes with it), so
/// the served state validates and answers as the full one.
#[test]
fn a_stopped_amplitude_prerequisite_is_served_as_a_skeleton_that_validates() {
    use allot_core::plan::{self, Options};
    let yaml = r#"
units:
  amp: {attribute: user_id, salt: s1, hash: amplitude}
experiments:
  g:
    unit: amp
    share: 100%
    salt: s1
    split_hash: amplitude
    state: STATE
    variants:
      slot-1: {ranges: [[0, 21474836]]}
      slot-2: {ranges: [[21474836, 42949673]]}
  e:
    unit: amp
    share: 50%
    requires: [{experiment: g, variants: [slot-1]}]
    state: running
    variants: {on: 1}
"#;
    let step = |st: &State, state: &str| {
        let raw = allot_core::config::parse_yaml(&yaml.replace("STATE", state)).unwrap();
        let cfg = allot_core::config::validate(&raw).unwrap();
        plan::apply(st, &cfg, &raw, &Options::default()).unwrap().state
    };
    let running = step(&State::default(), "running");
    same_answers(&running).unwrap();
    let stopped = step(&running, "stopped");
    same_answers(&stopped).unwrap();
}
