//! Benchmarks of the core, one per row of the performance table in `DESIGN.md` that concerns
//! the core (the CLI's bulk assignment is `bench/cli.sh`; memory is `examples/memory.rs`).
//!
//! Run: `cargo bench -p allot-core --bench core` (see `bench/README.md`).
//!
//! Every configuration is built in code as YAML text and applied with `plan::apply` to the empty
//! state, as `allot apply` would; contexts and unit ids are precomputed and rotated over so that
//! no single unit's path stays hot in the caches.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use allot_core::audit::audit;
use allot_core::config::{self, Config};
use allot_core::eval::{Assignment, NoSticky, Reason, Snapshot};
use allot_core::hash;
use allot_core::plan::{self, Options};
use allot_core::rng::SplitMix64;
use allot_core::state::State;
use allot_core::Context;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

/// Number of precomputed contexts / unit ids rotated over (a power of two).
const ROTATE: usize = 4096;

/// A pseudo-random 10-character unit id.
fn unit_id(g: &mut SplitMix64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..10).map(|_| ALPHABET[g.below(ALPHABET.len() as u64) as usize] as char).collect()
}

/// `ROTATE` contexts: a 10-character `user_id`, a `country` (half of them SE or NO) and an `age`
/// from 10 to 69 (about 87% of them 18 or over).
fn contexts(seed: u64) -> Vec<Context> {
    let mut g = SplitMix64::new(seed);
    let countries = ["SE", "NO", "DK", "US"];
    (0..ROTATE)
        .map(|_| {
            let mut c = Context::new();
            c.insert("user_id".into(), Value::String(unit_id(&mut g)));
            c.insert("country".into(), json!(countries[g.below(4) as usize]));
            c.insert("age".into(), json!(10 + g.below(60)));
            c
        })
        .collect()
}

/// Validates `yaml` and applies it over `state`; returns the new state, the config and its tree.
fn apply(state: &State, yaml: &str) -> (State, Config, Value) {
    let raw = config::parse_yaml(yaml).unwrap();
    let cfg = config::validate(&raw).unwrap();
    let plan = plan::apply(state, &cfg, &raw, &Options::default()).unwrap();
    (plan.state, cfg, raw)
}

/// One experiment on a surface under a 5% holdout, 30% of users, two targeting criteria.
fn one_experiment_yaml() -> String {
    r"
units:
  user: {attribute: user_id}
surfaces: [home, search]
holdouts:
  holdback: {unit: user, share: 5%, applies_to: [home]}
experiments:
  ranking-v2:
    unit: user
    surfaces: [home]
    share: 30%
    variants: {control: 1, treatment: 1}
    targeting: {all: [{attribute: country, in: [SE, NO]}, {attribute: age, gte: 18}]}
    state: running
"
    .to_string()
}

/// `n` running experiments over `surfaces` surfaces (experiment `i` on surface `i % surfaces`),
/// each `share` of all users, under a 5% holdout on surface `s0`. Every third experiment targets
/// `country in [SE, NO]`, every fifth `age >= 18` (every fifteenth both); every seventh has a third
/// variant.
fn many_experiments_yaml(n: usize, surfaces: usize, share: &str) -> String {
    let mut y = String::from("units:\n  user: {attribute: user_id}\nsurfaces: [");
    for s in 0..surfaces {
        let _ = write!(y, "{}s{s}", if s == 0 { "" } else { ", " });
    }
    y.push_str("]\nholdouts:\n  holdback: {unit: user, share: 5%, applies_to: [s0]}\nexperiments:\n");
    for i in 0..n {
        push_experiment(&mut y, &format!("exp-{i:04}"), &format!("s{}", i % surfaces), share, i);
    }
    y
}

/// Appends running experiment `id` (the `i`-th) to the `experiments:` map of `y`.
fn push_experiment(y: &mut String, id: &str, surface: &str, share: &str, i: usize) {
    let _ = writeln!(y, "  {id}:\n    unit: user\n    surfaces: [{surface}]\n    share: {share}\n    state: running");
    y.push_str(if i.is_multiple_of(7) {
        "    variants: {control: 1, a: 1, b: 1}\n"
    } else {
        "    variants: {control: 1, treatment: 1}\n"
    });
    match (i.is_multiple_of(3), i.is_multiple_of(5)) {
        (true, true) => {
            y.push_str("    targeting: {all: [{attribute: country, in: [SE, NO]}, {attribute: age, gte: 18}]}\n")
        }
        (true, false) => y.push_str("    targeting: {attribute: country, in: [SE, NO]}\n"),
        (false, true) => y.push_str("    targeting: {attribute: age, gte: 18}\n"),
        (false, false) => {}
    }
}

/// One experiment for one unit: holdout + surface + 2 targeting criteria. Target ≤ 100 ns median.
/// Over the contexts, about 65% end NOT_ALLOCATED, 5% HOLDOUT, 17% TARGETING_MISS, 13% ASSIGNED.
fn bench_evaluate_one(c: &mut Criterion) {
    c.bench_function("evaluate_one", |b| {
        let (state, _, _) = apply(&State::default(), &one_experiment_yaml());
        let snap = Snapshot::compile(&state).unwrap();
        let i = snap.index_of("ranking-v2").unwrap();
        let ctxs = contexts(1);
        // The contexts take every path of the order of operations, not one fast exit.
        let reasons: Vec<Reason> = ctxs.iter().map(|c| snap.evaluate_one(i, c, &NoSticky).reason).collect();
        for r in [Reason::Holdout, Reason::NotAllocated, Reason::TargetingMiss, Reason::Assigned] {
            assert!(reasons.contains(&r), "no context gets {r:?}");
        }
        let mut k = 0usize;
        b.iter(|| {
            k = (k + 1) & (ROTATE - 1);
            snap.evaluate_one(black_box(i), black_box(&ctxs[k]), &NoSticky)
        });
    });
}

/// The state of `evaluate_one` after a year of quarterly re-salts: each quarter a 40% `search`
/// experiment starts and the previous one stops, then the space is re-salted (classes of the
/// holdout, `ranking-v2` and the running `search` experiment). Prints the memory per re-salt.
fn resalted_year() -> &'static Snapshot {
    static SNAP: std::sync::OnceLock<Snapshot> = std::sync::OnceLock::new();
    SNAP.get_or_init(resalt_a_year)
}

fn resalt_a_year() -> Snapshot {
    let mut state = State::default();
    for q in 0..4 {
        let mut yaml = one_experiment_yaml();
        for p in 0..=q {
            let st = if p == q { "running" } else { "stopped" };
            let _ = writeln!(
                yaml,
                "  search-{p}: {{unit: user, surfaces: [search], share: 40%, variants: {{c: 1, t: 1}}, state: {st}}}"
            );
        }
        state = apply(&state, &yaml).0;
        state = allot_core::salt::resalt(&state, "user", "2026-01-01T00:00:00Z", None, None).unwrap().0;
    }
    let snap = Snapshot::compile(&state).unwrap();
    let bytes = snap.spaces[0].resalt_bytes();
    eprintln!("4 re-salts of 1,000,000 buckets: {bytes} bytes compiled ({} per re-salt)", bytes / 4);
    snap
}

/// `evaluate_one` after a year of quarterly re-salts. Target ≤ 100 ns median, like `evaluate_one`;
/// (this − `evaluate_one`) / 4 is the cost of one re-salt per evaluation.
fn bench_evaluate_one_resalted(c: &mut Criterion) {
    c.bench_function("evaluate_one_4_resalts", |b| {
        let snap = resalted_year();
        let i = snap.index_of("ranking-v2").unwrap();
        let ctxs = contexts(1);
        let mut k = 0usize;
        b.iter(|| {
            k = (k + 1) & (ROTATE - 1);
            snap.evaluate_one(black_box(i), black_box(&ctxs[k]), &NoSticky)
        });
    });
}

/// A unit's bucket through 4 re-salts (`CompiledSpace::bucket`): (this − `bucket_hash`) / 4 is the
/// cost of one re-salt alone.
fn bench_bucket_4_resalts(c: &mut Criterion) {
    c.bench_function("bucket_4_resalts", |b| {
        let snap = resalted_year();
        let mut g = SplitMix64::new(3);
        let units: Vec<String> = (0..ROTATE).map(|_| unit_id(&mut g)).collect();
        let mut k = 0usize;
        b.iter(|| {
            k = (k + 1) & (ROTATE - 1);
            snap.spaces[0].bucket(black_box(&units[k]))
        });
    });
}

/// 100 running experiments for one unit with `evaluate_all`. Target ≤ 5 µs.
fn bench_evaluate_100(c: &mut Criterion) {
    c.bench_function("evaluate_100", |b| {
        // 10 surfaces × 10 experiments × 9%: 90% of each surface, 95% free under the holdout.
        let (state, _, _) = apply(&State::default(), &many_experiments_yaml(100, 10, "9%"));
        let snap = Snapshot::compile(&state).unwrap();
        assert_eq!(snap.experiments.len(), 100);
        let ctxs = contexts(2);
        let mut out: Vec<Assignment> = Vec::with_capacity(100);
        snap.evaluate_all(&ctxs[0], &NoSticky, &mut out);
        assert!(out.iter().all(|a| a.reason != Reason::NotRunning));
        let mut k = 0usize;
        b.iter(|| {
            k = (k + 1) & (ROTATE - 1);
            snap.evaluate_all(black_box(&ctxs[k]), &NoSticky, &mut out);
            black_box(&out);
        });
    });
}

/// Plan and apply one new running experiment beside 500 live experiment allocations (the full
/// `plan::apply` of the configuration plus one experiment over the recorded state). Target ≤ 10 ms.
fn bench_allocate_beside_500(c: &mut Criterion) {
    c.bench_function("allocate_beside_500", |b| {
        // 50 surfaces × 10 experiments × 5% (plus the holdout): 500 live experiment allocations.
        let base = many_experiments_yaml(500, 50, "5%");
        let (state, _, _) = apply(&State::default(), &base);
        assert_eq!(state.allocations.iter().filter(|a| a.is_live()).count(), 501);
        // The same configuration and one new running experiment, 10% of users on surface s0.
        let mut next = base;
        push_experiment(&mut next, "new-exp", "s0", "10%", 1);
        let raw = config::parse_yaml(&next).unwrap();
        let cfg = config::validate(&raw).unwrap();
        let opts = Options::default();
        b.iter(|| plan::apply(black_box(&state), &cfg, &raw, &opts).unwrap());
    });
}

/// The exact audit of 1,000 live experiment allocations (every pair's shared buckets). Target ≤ 1 s.
fn bench_audit_1000(c: &mut Criterion) {
    c.bench_function("audit_1000", |b| {
        // 100 surfaces × 10 experiments × 5% (plus the holdout): 1,000 live experiment allocations.
        let (state, cfg, _) = apply(&State::default(), &many_experiments_yaml(1000, 100, "5%"));
        let report = audit(&state, &cfg);
        assert_eq!(report.experiments.len(), 1000);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        b.iter(|| audit(black_box(&state), &cfg));
    });
}

/// The frozen unit → bucket hash alone, for a 10-character unit id.
fn bench_bucket_hash(c: &mut Criterion) {
    c.bench_function("bucket_hash", |b| {
        let mut g = SplitMix64::new(3);
        let units: Vec<String> = (0..ROTATE).map(|_| unit_id(&mut g)).collect();
        let mut k = 0usize;
        b.iter(|| {
            k = (k + 1) & (ROTATE - 1);
            hash::bucket(black_box("user"), black_box(&units[k]), black_box(1_000_000))
        });
    });
}

criterion_group! {
    name = fast;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = bench_bucket_hash, bench_bucket_4_resalts, bench_evaluate_one, bench_evaluate_one_resalted, bench_evaluate_100
}
// Milliseconds to seconds per iteration: ten samples are enough.
criterion_group! {
    name = slow;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).sample_size(10);
    targets = bench_allocate_beside_500, bench_audit_1000
}
criterion_main!(fast, slow);
