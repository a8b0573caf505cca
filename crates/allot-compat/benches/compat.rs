//! Per-flag cost of the adapters on the conformance data itself.
//!
//! - `confidence_resolve`: every flag of `spec/confidence/resolver_state.json` (the state Confidence
//!   publishes to local resolvers; demo account, its client secret) resolved for 1,000 visitors
//!   (`{"visitor_id": ...}`, as its rules bucket on), one request per visitor.
//! - `confidence_native`: the same requests through Spotify's own resolver (`confidence_resolver`
//!   0.26.1, the dev-dependency the differential test uses), in the same run, and the ratio of
//!   the two per-flag CPU costs.
//! - `amplitude_evaluate`: every flag of the 30 configurations of
//!   `spec/amplitude/generated-cases.json` over their 200 contexts each, in dependency order.
//!
//! Throughput is in flags, so criterion's `thrpt` is flags per second; each bench also prints
//! its mean nanoseconds per flag.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use allot_compat::amplitude::Flags;
use allot_compat::confidence::State;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{Map, Value};
use std::hint::black_box;
use std::time::Instant;

const SECRET: &str = "mkjJruAATQWjeY7foFIWfVAcBWnci2YF";

fn spec(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../../spec/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Nanoseconds this thread has spent on a CPU (Linux `schedstat`): unlike wall time, it does not
/// count time the thread waited for a core, so it stays meaningful on a busy machine.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// Nanoseconds per flag (on CPU where the platform tells, wall otherwise).
fn per_flag(name: &str, flags: u64, mut run: impl FnMut()) -> f64 {
    run();
    let rounds = 50;
    let cpu = thread_cpu_ns();
    let start = Instant::now();
    for _ in 0..rounds {
        run();
    }
    let n = rounds as f64 * flags as f64;
    let wall = start.elapsed().as_nanos() as f64 / n;
    match (cpu, thread_cpu_ns()) {
        (Some(a), Some(b)) => {
            let cpu = (b - a) as f64 / n;
            println!("{name}: {cpu:.1} ns per flag on CPU, {wall:.1} ns wall ({flags} flags per round)");
            cpu
        }
        _ => {
            println!("{name}: {wall:.1} ns per flag wall ({flags} flags per round)");
            wall
        }
    }
}

mod native {
    //! The resolver's own API, as a local-resolver host calls it: a resolver per request (the
    //! client's context merged), then `resolve_flags` without materializations and with
    //! `apply: true` (so no resolve token is encrypted; logging is a no-op).
    use confidence_resolver::proto::confidence::flags::admin::v1::ResolverState as ResolverStatePb;
    use confidence_resolver::proto::confidence::flags::resolver::v1 as pb;
    use confidence_resolver::proto::google::Struct;
    use confidence_resolver::{Client, FlagToApply, Host, ResolvedValue, ResolverState};

    pub struct NoLogs;
    impl Host for NoLogs {
        fn log_resolve(_: &str, _: &Struct, _: &[ResolvedValue<'_>], _: &Client) {}
        fn log_assign(_: &str, _: &[FlagToApply<'_>], _: &Client, _: &Option<pb::Sdk>) {}
    }

    pub fn load(text: &str, account: &str) -> ResolverState {
        ResolverState::from_proto(serde_json::from_str::<ResolverStatePb>(text).unwrap(), account, None).unwrap()
    }

    /// Resolves every flag of the client for `ctx`; returns how many resolved.
    pub fn resolve(state: &ResolverState, secret: &str, ctx: &Struct, key: &bytes::Bytes) -> usize {
        let resolver = state.get_resolver::<NoLogs>(secret, ctx.clone(), key).unwrap();
        let req = pb::ResolveFlagsRequest {
            flags: Vec::new(),
            evaluation_context: None,
            client_secret: secret.to_string(),
            apply: true,
            sdk: None,
        };
        let response = resolver.resolve_flags(pb::ResolveProcessRequest::without_materializations(req)).unwrap();
        match response.result {
            Some(pb::resolve_process_response::Result::Resolved(r)) => r.response.unwrap().resolved_flags.len(),
            _ => panic!("suspended"),
        }
    }
}

fn confidence(c: &mut Criterion) {
    let state = State::parse(&spec("confidence/resolver_state.json"), Some("confidence-demo-june")).unwrap();
    let mut contexts: Vec<Map<String, Value>> = (0..999)
        .map(|i| {
            let mut m = Map::new();
            m.insert("visitor_id".into(), Value::String(format!("visitor-{i}")));
            m
        })
        .collect();
    let mut m = Map::new();
    m.insert("visitor_id".into(), Value::String("tutorial_visitor".into()));
    contexts.push(m);
    let per_request = state.resolve_context(SECRET, &[], &contexts[0], None).unwrap().len() as u64;
    assert_eq!(per_request, 3);
    let flags = per_request * contexts.len() as u64;
    let run = || {
        for ctx in &contexts {
            black_box(state.resolve_context(SECRET, &[], black_box(ctx), None).unwrap());
        }
    };
    let allot_ns = per_flag("confidence_resolve", flags, run);

    let native_state = native::load(&spec("confidence/resolver_state.json"), "confidence-demo-june");
    let structs: Vec<confidence_resolver::proto::google::Struct> =
        contexts.iter().map(|c| serde_json::from_value(Value::Object(c.clone())).unwrap()).collect();
    let key = bytes::Bytes::from_static(&[0; 16]);
    assert_eq!(native::resolve(&native_state, SECRET, &structs[0], &key) as u64, per_request);
    let native_run = || {
        for ctx in &structs {
            black_box(native::resolve(&native_state, SECRET, black_box(ctx), &key));
        }
    };
    let native_ns = per_flag("confidence_native", flags, native_run);
    println!("confidence: the native resolver costs {:.1}x allot's per flag", native_ns / allot_ns);

    let mut g = c.benchmark_group("compat");
    g.throughput(Throughput::Elements(flags));
    g.bench_function("confidence_resolve", |b| b.iter(run));
    g.bench_function("confidence_native", |b| b.iter(native_run));
    g.finish();
}

fn amplitude(c: &mut Criterion) {
    let data: Value = serde_json::from_str(&spec("amplitude/generated-cases.json")).unwrap();
    let cases: Vec<(Flags, Vec<Value>)> = data["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| (Flags::from_json(case["flags"].clone()).unwrap(), case["contexts"].as_array().unwrap().clone()))
        .collect();
    let flags: u64 = cases.iter().map(|(f, ctxs)| (f.len() * ctxs.len()) as u64).sum();
    let mut results = Vec::new();
    let mut run = || {
        for (f, ctxs) in &cases {
            for ctx in ctxs {
                black_box(f.evaluate_into(black_box(ctx), &mut results));
            }
        }
    };
    per_flag("amplitude_evaluate", flags, &mut run);
    let mut g = c.benchmark_group("compat");
    g.throughput(Throughput::Elements(flags));
    g.bench_function("amplitude_evaluate", |b| b.iter(&mut run));
    g.finish();
}

criterion_group!(benches, confidence, amplitude);
criterion_main!(benches);
