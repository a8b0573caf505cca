//! allot against Amplitude's own evaluation engine (`@amplitude/experiment-core`, run by Node),
//! side by side on random flag configurations and hostile contexts.
//!
//! The random test draws `PROPTEST_CASES` configurations (default [`DEFAULT_CASES`]) from a fixed
//! seed (`ALLOT_DIFF_SEED` to change it), each with [`CONTEXTS_PER_CASE`] contexts: holdout and
//! mutual exclusion group flags (not deployed, bucketed, as Amplitude writes them), experiments
//! and flags depending on them through `result` selectors, every operator (regular expressions
//! included) over every kind of value, duplicate keys, keys JavaScript orders first, dependency
//! cycles. All cases go to one Node process in one stream; every (context, flag) is compared
//! and counted, and only then does the test assert, listing every disagreement. A disagreement
//! is then shrunk by proptest (one case per line to the same process) and its seed written to
//! `tests/it/amplitude_differential.proptest-regressions`, replayed first on every run.
//!
//! Without Node or the package the test says it skipped, unless `ALLOT_REQUIRE_AMPLITUDE_ORACLE=1`
//! or `ALLOT_REQUIRE_OFREP_CLIENTS=1` (as in CI): then it fails.

use crate::amplitude_oracle::{evaluate_allot, Oracle, Outcome};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{json, Map, Value};
use std::cell::RefCell;

const DEFAULT_CASES: u32 = 300;
const CONTEXTS_PER_CASE: usize = 16;
const FULL: u64 = 42_949_673;

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &[T]) -> impl Strategy<Value = T> {
    proptest::sample::select(items.to_vec())
}

// ---------------------------------------------------------------------------------------------
// Contexts
// ---------------------------------------------------------------------------------------------

const PROPERTIES: [&str; 10] = ["country", "age", "tier", "version", "tags", "on", "empty", "obj", "list", "Straße"];

const STRINGS: [&str; 40] = [
    "SE",
    "se",
    "US",
    "",
    " ",
    "true",
    "False",
    "TRUE",
    "(none)",
    "null",
    "gold",
    "Gold-Plus",
    "10",
    "9",
    "1e3",
    " 7 ",
    "0x1f",
    "-0",
    "Infinity",
    "NaN",
    "1.2.3",
    "1.10.0",
    "1.2",
    "1.2.3-rc.1",
    "1.2.3-beta",
    "01.002.3",
    "1.2.3.4",
    "v1.2.3",
    "[\"SE\",\"US\"]",
    "[1,2.0,null,\"\"]",
    "[",
    "[]",
    " [\"SE\"]",
    "{\"a\":1}",
    "😀",
    "Straße",
    "ΣΑΣ",
    "a\nb",
    "foo bar",
    "u1",
];

const NUMBERS: [f64; 16] =
    [0.0, -0.0, 1.0, -1.0, 1.5, 7.0, 9.0, 10.0, 42.0, 1e21, 1e-7, 123_456_789_012_345_680.0, 0.1, 2.5e-5, 1e300, -3.75];

fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        2 => any::<bool>().prop_map(Value::Bool),
        3 => pick(&NUMBERS).prop_map(num),
        1 => (-20i64..20).prop_map(|i| json!(i)),
        1 => Just(json!(12_345_678_901_234_567_890u64)),
        8 => pick(&STRINGS).prop_map(|s| json!(s)),
        1 => "[a-zA-Z0-9 .:+-]{0,8}".prop_map(Value::String),
    ]
}

fn context_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            3 => vec(inner.clone(), 0..4).prop_map(Value::Array),
            1 => btree_map(pick(&["a", "b", "10", "2"]), inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn unit() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        20 => pick(&["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "d-9", "😀"]).prop_map(|u| Some(json!(u))),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => Just(Some(json!(""))),
        1 => Just(Some(json!(0))),
        1 => Just(Some(json!(false))),
        1 => Just(Some(json!(1.5))),
        1 => Just(Some(json!(["u1"]))),
        1 => Just(Some(json!({"id": "u1"}))),
    ]
}

fn context() -> impl Strategy<Value = Value> {
    let user = (unit(), unit(), proptest::option::weighted(0.9, btree_map(pick(&PROPERTIES), context_value(), 0..6)))
        .prop_map(|(user_id, device_id, props)| {
            let mut u = Map::new();
            if let Some(v) = user_id {
                u.insert("user_id".into(), v);
            }
            if let Some(v) = device_id {
                u.insert("device_id".into(), v);
            }
            if let Some(p) = props {
                u.insert(
                    "user_properties".into(),
                    Value::Object(p.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
                );
            }
            Value::Object(u)
        });
    prop_oneof![
        30 => user.prop_map(|u| json!({"user": u})),
        1 => Just(json!({})),
        1 => Just(json!({"user": null})),
        1 => Just(json!({"user": "u1"})),
        1 => Just(json!({"user": [{"user_id": "u1"}]})),
    ]
}

// ---------------------------------------------------------------------------------------------
// Flag configurations
// ---------------------------------------------------------------------------------------------

/// A selector, with flags named by index (resolved to keys once every key is known).
#[derive(Debug, Clone)]
enum Sel {
    Context(&'static [&'static str]),
    /// `result.<flag>.key`
    ResultKey(usize),
    /// `result.<flag>.<field...>`
    Result(usize, &'static [&'static str]),
}

const CONTEXT_SELECTORS: [&[&str]; 22] = [
    &["context", "user", "user_id"],
    &["context", "user", "device_id"],
    &["context", "user", "user_properties", "country"],
    &["context", "user", "user_properties", "age"],
    &["context", "user", "user_properties", "tier"],
    &["context", "user", "user_properties", "version"],
    &["context", "user", "user_properties", "tags"],
    &["context", "user", "user_properties", "on"],
    &["context", "user", "user_properties", "empty"],
    &["context", "user", "user_properties", "obj"],
    &["context", "user", "user_properties", "obj", "a"],
    &["context", "user", "user_properties", "obj", "10"],
    &["context", "user", "user_properties", "list"],
    &["context", "user", "user_properties", "list", "0"],
    &["context", "user", "user_properties", "list", "00"],
    &["context", "user", "user_properties", "list", "length"],
    &["context", "user", "user_properties", "Straße"],
    &["context", "user", "user_properties", "missing"],
    &["context", "user"],
    &["context", "user", ""],
    &["user", "user_id"],
    &[],
];

fn selector(flags: usize) -> impl Strategy<Value = Sel> {
    prop_oneof![
        12 => pick(&CONTEXT_SELECTORS).prop_map(Sel::Context),
        4 => (0..flags).prop_map(Sel::ResultKey),
        2 => (0..flags, pick(&RESULT_PATHS)).prop_map(|(f, p)| Sel::Result(f, p)),
    ]
}

/// Paths below `result.<flag>`: the variant's own fields, its metadata as the engine merges it
/// (flag, segment, variant), and the whole variant.
const RESULT_PATHS: [&[&str]; 9] = [
    &["value"],
    &["payload"],
    &["payload", "a"],
    &["key", "length"],
    &[],
    &["metadata"],
    &["metadata", "default"],
    &["metadata", "flagType"],
    &["metadata", "segmentName"],
];

const OPERATORS: [&str; 21] = [
    "is",
    "is not",
    "contains",
    "does not contain",
    "less",
    "less or equal",
    "greater",
    "greater or equal",
    "version less",
    "version less or equal",
    "version greater",
    "version greater or equal",
    "set is",
    "set is not",
    "set contains",
    "set does not contain",
    "set contains any",
    "set does not contain any",
    "regex match",
    "regex does not match",
    "no such operator",
];

const VALUES: [&str; 30] = [
    "SE",
    "se",
    "US",
    "(none)",
    "",
    "true",
    "FALSE",
    "gold",
    "old",
    "PLUS",
    "10",
    "9.5",
    "1e3",
    "0x1f",
    "-0",
    "abc",
    "1.2.3",
    "1.10",
    "1.2.3-rc.2",
    "1.2.3-beta",
    "2",
    "on",
    "off",
    "holdout",
    "slot-1",
    "slot-2",
    "control",
    "treatment",
    "u1",
    "😀",
];

/// Patterns Amplitude accepts: JavaScript syntax, no flags.
const PATTERNS: [&str; 30] = [
    "^S",
    "E$",
    "[0-9]+",
    "^\\d{2}$",
    "^(gold|plus)",
    "(?:x)?y",
    "Gold-\\w+",
    "^$",
    "^.$",
    ".",
    "[\\s\\S]{3}",
    "\\bbar",
    "^[^a-z]+$",
    "o{2,}",
    "(?<n>[a-z])\\k<n>",
    "\\u0053",
    "\\x53",
    "(?=1)1\\.",
    "(?<!a)b",
    "^u[1-4]$",
    "\\[",
    "^\\[.*\\]$",
    "ß",
    "\\p{L}",
    "a|",
    "\\.",
    "^1\\.(2|10)",
    "[😀]",
    // Alternation under a repetition with alternatives that start differently (allowed).
    "^(gold|plus)+$",
    "(?:u|x)+\\d",
];

#[derive(Debug, Clone)]
struct Cond {
    sel: Sel,
    op: &'static str,
    values: Vec<&'static str>,
}

fn condition(flags: usize) -> impl Strategy<Value = Cond> {
    (selector(flags), pick(&OPERATORS)).prop_flat_map(|(sel, op)| {
        let values =
            if op.starts_with("regex") { vec(pick(&PATTERNS), 1..3).boxed() } else { vec(pick(&VALUES), 0..4).boxed() };
        values.prop_map(move |values| Cond { sel: sel.clone(), op, values })
    })
}

#[derive(Debug, Clone)]
struct Bucket {
    sel: Sel,
    salt: &'static str,
    /// Allocation ranges over `hash % 100`, each with distribution cuts (fractions of the full
    /// range, in per mille) and the variant index of each part (one past the last: unknown).
    allocations: Vec<AllocationSpec>,
}

/// An allocation range (ends in either order) and its distribution cuts with their variants.
type AllocationSpec = ((u8, u8), Vec<(u16, usize)>);

fn bucket(flags: usize, variants: usize) -> impl Strategy<Value = Bucket> {
    (
        prop_oneof![
            6 => pick(&CONTEXT_SELECTORS[..2]).prop_map(Sel::Context),
            1 => pick(&CONTEXT_SELECTORS).prop_map(Sel::Context),
            1 => (0..flags).prop_map(Sel::ResultKey),
        ],
        pick(&["", "salt", "ab12cd", "😀"]),
        vec(((0u8..101, 0u8..101), vec((0u16..1001, 0..variants + 1), 1..4)), 1..3),
    )
        .prop_map(|(sel, salt, allocations)| Bucket { sel, salt, allocations })
}

#[derive(Debug, Clone)]
struct Segment {
    conditions: Option<Vec<Vec<Cond>>>,
    bucket: Option<Bucket>,
    /// Index into the variants; one past the last: a variant the flag lacks.
    variant: Option<usize>,
    /// `metadata.segmentName`, if any.
    name: Option<&'static str>,
}

fn segment(flags: usize, variants: usize) -> impl Strategy<Value = Segment> {
    (
        proptest::option::weighted(0.7, vec(vec(condition(flags), 1..3), 0..3)),
        proptest::option::weighted(0.5, bucket(flags, variants)),
        proptest::option::weighted(0.8, prop_oneof![12 => 0..variants, 1 => Just(variants)]),
        proptest::option::weighted(0.3, pick(&["targeted", "All Other Users", "flagType"])),
    )
        .prop_map(|(conditions, bucket, variant, name)| Segment { conditions, bucket, variant, name })
}

#[derive(Debug, Clone)]
enum Kind {
    /// A holdout group: not deployed, `holdout` for `pct`% of device ids, `on` for the rest.
    Holdout { salt: &'static str, pct: u8 },
    /// A mutual exclusion group: not deployed, `slots` slots over 0..100 by device id, then
    /// unallocated space.
    Mutex { salt: &'static str, slots: usize, width: u8 },
    /// A flag or experiment of random segments.
    Random { variants: Vec<VariantSpec>, segments: Vec<Segment> },
}

#[derive(Debug, Clone)]
struct VariantSpec {
    name: &'static str,
    /// 0: `key` = name; 1: no `key`; 2: another key.
    key: u8,
    value: Option<Value>,
    payload: Option<Value>,
    default: bool,
}

fn variant_spec(name: &'static str) -> impl Strategy<Value = VariantSpec> {
    (
        prop_oneof![12 => Just(0u8), 1 => Just(1), 1 => Just(2)],
        proptest::option::weighted(0.8, prop_oneof![Just(json!(name)), Just(json!(1.0)), Just(json!(true))]),
        proptest::option::weighted(0.3, prop_oneof![Just(json!({"a": 1.5})), Just(json!([1, "x"])), Just(json!("p"))]),
        proptest::bool::weighted(0.2),
    )
        .prop_map(move |(key, value, payload, default)| VariantSpec { name, key, value, payload, default })
}

const VARIANT_NAMES: [&str; 4] = ["off", "on", "control", "treatment"];

fn kind(flags: usize) -> impl Strategy<Value = Kind> {
    prop_oneof![
        1 => (pick(&["h1", "h2"]), 0u8..30).prop_map(|(salt, pct)| Kind::Holdout { salt, pct }),
        1 => (pick(&["m1", "m2"]), 1usize..5, 5u8..40).prop_map(|(salt, slots, width)| Kind::Mutex { salt, slots, width }),
        4 => (1usize..5).prop_flat_map(move |n| {
            let specs: Vec<_> = VARIANT_NAMES[..n].iter().map(|name| variant_spec(name)).collect();
            (specs, vec(segment(flags, n), 0..4)).prop_map(|(variants, segments)| Kind::Random { variants, segments })
        }),
    ]
}

#[derive(Debug, Clone)]
struct FlagSpec {
    /// 0: `f<i>`; otherwise a key from [`ODD_KEYS`] (duplicates, keys JavaScript orders first).
    key: usize,
    kind: Kind,
    /// Flags this one depends on, as indices (mostly earlier flags; sometimes any: cycles).
    deps: Vec<usize>,
    deployed: Option<bool>,
}

const ODD_KEYS: [&str; 4] = ["f0", "7", "10", "f1"];

fn flag_spec(flags: usize) -> impl Strategy<Value = FlagSpec> {
    (
        prop_oneof![20 => Just(0usize), 1 => 1..ODD_KEYS.len() + 1],
        kind(flags),
        vec(prop_oneof![30 => Just(None), 1 => (0..flags).prop_map(Some)], 0..3),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(key, kind, deps, deployed)| FlagSpec {
            key,
            kind,
            deps: deps.into_iter().flatten().collect(),
            deployed,
        })
}

/// A case: the configuration and the contexts to evaluate.
#[derive(Debug, Clone)]
pub struct Case {
    pub flags: Value,
    pub contexts: Vec<Value>,
}

pub(crate) fn case() -> impl Strategy<Value = Case> {
    (1usize..7)
        .prop_flat_map(|n| (vec(flag_spec(n), n..=n), vec(context(), CONTEXTS_PER_CASE..=CONTEXTS_PER_CASE)))
        .prop_map(|(specs, contexts)| Case { flags: build(&specs), contexts })
}

fn build(specs: &[FlagSpec]) -> Value {
    let keys: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| if s.key == 0 { format!("f{i}") } else { ODD_KEYS[s.key - 1].to_string() })
        .collect();
    let sel = |s: &Sel| -> Value {
        match s {
            Sel::Context(p) => json!(p),
            Sel::ResultKey(f) => json!(["result", keys[*f], "key"]),
            Sel::Result(f, p) => {
                let mut v = vec![json!("result"), json!(keys[*f])];
                v.extend(p.iter().map(|x| json!(x)));
                Value::Array(v)
            }
        }
    };
    let mut out = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        // An experiment depends on the flags its `result` selectors read (as Amplitude writes
        // it), and on those drawn.
        let mut deps: Vec<String> = s.deps.iter().map(|d| keys[*d].clone()).collect();
        let mut flag = json!({"key": keys[i]});
        match &s.kind {
            Kind::Holdout { salt, pct } => {
                let cut = FULL * u64::from(*pct) / 100;
                flag["variants"] = json!({"holdout": {"key": "holdout"}, "on": {"key": "on"}});
                flag["segments"] = json!([{"bucket": {"selector": ["context", "user", "device_id"], "salt": salt,
                    "allocations": [{"range": [0, 100], "distributions": [
                        {"variant": "holdout", "range": [0, cut]}, {"variant": "on", "range": [cut, FULL]}]}]}}]);
                flag["metadata"] = json!({"deployed": false, "flagType": "holdout-group"});
            }
            Kind::Mutex { salt, slots, width } => {
                let mut variants = Map::new();
                let mut allocations = Vec::new();
                for k in 0..*slots {
                    let name = format!("slot-{}", k + 1);
                    variants.insert(name.clone(), json!({"key": name}));
                    let lo = (k as u64 * u64::from(*width)).min(100);
                    let hi = ((k as u64 + 1) * u64::from(*width)).min(100);
                    allocations
                        .push(json!({"range": [lo, hi], "distributions": [{"variant": name, "range": [0, FULL]}]}));
                }
                variants.insert("unallocated".into(), json!({"key": "unallocated"}));
                flag["variants"] = Value::Object(variants);
                flag["segments"] = json!([{"bucket": {"selector": ["context", "user", "device_id"], "salt": salt,
                    "allocations": allocations}, "variant": "unallocated"}]);
                flag["metadata"] = json!({"deployed": false, "flagType": "mutual-exclusion-group"});
            }
            Kind::Random { variants, segments } => {
                let mut vs = Map::new();
                for v in variants {
                    let mut o = Map::new();
                    match v.key {
                        0 => {
                            o.insert("key".into(), json!(v.name));
                        }
                        1 => {}
                        _ => {
                            o.insert("key".into(), json!(format!("{}-key", v.name)));
                        }
                    }
                    if let Some(x) = &v.value {
                        o.insert("value".into(), x.clone());
                    }
                    if let Some(x) = &v.payload {
                        o.insert("payload".into(), x.clone());
                    }
                    if v.default {
                        o.insert("metadata".into(), json!({"default": true}));
                    }
                    vs.insert(v.name.to_string(), Value::Object(o));
                }
                let name = |i: usize| variants.get(i).map_or("no-such-variant", |v| v.name);
                let mut segs = Vec::new();
                for seg in segments {
                    let mut o = Map::new();
                    if let Some(ors) = &seg.conditions {
                        let ors: Vec<Value> = ors
                            .iter()
                            .map(|ands| {
                                Value::Array(
                                    ands.iter()
                                        .map(|c| {
                                            if let Sel::ResultKey(f) | Sel::Result(f, _) = c.sel {
                                                if !deps.contains(&keys[f]) && f != i {
                                                    deps.push(keys[f].clone());
                                                }
                                            }
                                            json!({"selector": sel(&c.sel), "op": c.op, "values": c.values})
                                        })
                                        .collect(),
                                )
                            })
                            .collect();
                        o.insert("conditions".into(), Value::Array(ors));
                    }
                    if let Some(b) = &seg.bucket {
                        let allocations: Vec<Value> = b
                            .allocations
                            .iter()
                            .map(|((lo, hi), parts)| {
                                let mut cuts: Vec<(u64, usize)> =
                                    parts.iter().map(|(c, v)| (FULL * u64::from(*c) / 1000, *v)).collect();
                                cuts.sort_by_key(|c| c.0);
                                let mut start = 0;
                                let distributions: Vec<Value> = cuts
                                    .iter()
                                    .enumerate()
                                    .map(|(k, (cut, v))| {
                                        let end = if k + 1 == cuts.len() { FULL } else { *cut };
                                        let d = json!({"variant": name(*v), "range": [start, end]});
                                        start = end;
                                        d
                                    })
                                    .collect();
                                json!({"range": [lo.min(hi), lo.max(hi)], "distributions": distributions})
                            })
                            .collect();
                        o.insert(
                            "bucket".into(),
                            json!({"selector": sel(&b.sel), "salt": b.salt, "allocations": allocations}),
                        );
                    }
                    if let Some(v) = seg.variant {
                        o.insert("variant".into(), json!(name(v)));
                    }
                    if let Some(n) = seg.name {
                        o.insert("metadata".into(), json!({"segmentName": n}));
                    }
                    segs.push(Value::Object(o));
                }
                flag["variants"] = Value::Object(vs);
                flag["segments"] = Value::Array(segs);
                if let Some(d) = s.deployed {
                    flag["metadata"] = json!({"deployed": d});
                }
            }
        }
        if !deps.is_empty() {
            flag["dependencies"] = json!(deps);
        }
        out.push(flag);
    }
    Value::Array(out)
}

// ---------------------------------------------------------------------------------------------
// Comparing
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    cases: usize,
    refused_by_both: usize,
    compared: usize,
    agreed: usize,
    with_variant: usize,
    disagreements: Vec<String>,
}

/// Compares one case's answers; returns the number of disagreements found.
fn compare(case: &Case, native: &[Outcome], tally: &mut Tally) -> usize {
    let allot = evaluate_allot(&case.flags, &case.contexts);
    tally.cases += 1;
    let mut found = 0;
    if native.iter().all(|o| *o == Outcome::Refused) && allot.iter().all(|o| *o == Outcome::Refused) {
        tally.refused_by_both += 1;
    }
    let keys: Vec<&str> = case.flags.as_array().into_iter().flatten().filter_map(|f| f["key"].as_str()).collect();
    for ((ctx, n), a) in case.contexts.iter().zip(native).zip(&allot) {
        match (n, a) {
            (Outcome::Flags(nf), Outcome::Flags(af)) => {
                let mut seen = std::collections::BTreeSet::new();
                for key in keys.iter().copied().chain(nf.keys().map(String::as_str)) {
                    if !seen.insert(key) {
                        continue;
                    }
                    tally.compared += 1;
                    if nf.get(key) == af.get(key) {
                        tally.agreed += 1;
                        tally.with_variant += usize::from(nf.contains_key(key));
                    } else {
                        found += 1;
                        tally.disagreements.push(format!(
                            "flag {key}, context {ctx}:\n  engine {:?}\n  allot  {:?}\n  flags {}",
                            nf.get(key),
                            af.get(key),
                            case.flags
                        ));
                    }
                }
            }
            _ => {
                tally.compared += 1;
                if n == a {
                    tally.agreed += 1;
                } else {
                    found += 1;
                    tally
                        .disagreements
                        .push(format!("context {ctx}:\n  engine {n:?}\n  allot  {a:?}\n  flags {}", case.flags));
                }
            }
        }
    }
    found
}

fn runner(cases: u32) -> TestRunner {
    let seed: u64 = std::env::var("ALLOT_DIFF_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_201);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/it/amplitude_differential.proptest-regressions",
        ))),
        max_shrink_iters: 300,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// Random configurations and contexts: allot must give every flag the variant the engine gives.
#[test]
fn random_configurations_evaluate_as_the_engine_evaluates_them() {
    let run = std::thread::Builder::new().stack_size(64 << 20).spawn(differential).unwrap();
    if let Err(panic) = run.join() {
        std::panic::resume_unwind(panic);
    }
}

fn differential() {
    let Some(mut oracle) = Oracle::start() else { return };
    let cases: u32 = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_CASES);
    // First draw every case (the persisted regressions first), then evaluate them all in one stream.
    let drawn = RefCell::new(Vec::new());
    let _ = runner(cases).run(&case(), |c| {
        drawn.borrow_mut().push(c);
        Ok(())
    });
    let drawn = drawn.into_inner();
    let batch: Vec<(&Value, &[Value])> = drawn.iter().map(|c| (&c.flags, c.contexts.as_slice())).collect();
    let native = oracle.evaluate(&batch);
    let mut t = Tally::default();
    for (c, n) in drawn.iter().zip(&native) {
        compare(c, n, &mut t);
    }
    let pct = 100.0 * t.agreed as f64 / t.compared.max(1) as f64;
    eprintln!(
        "amplitude differential (engine {}): {} configurations ({} refused by both), {} comparisons, {} agree ({pct:.2}%), {} of them with a variant",
        oracle.version, t.cases, t.refused_by_both, t.compared, t.agreed, t.with_variant
    );
    if t.disagreements.is_empty() {
        return;
    }
    // Then shrink the first disagreement to a small case and persist its seed.
    let oracle = RefCell::new(oracle);
    let shrunk = runner(cases).run(&case(), |c| {
        let native = oracle.borrow_mut().evaluate(&[(&c.flags, c.contexts.as_slice())]);
        let mut scratch = Tally::default();
        if compare(&c, &native[0], &mut scratch) > 0 {
            Err(TestCaseError::fail(scratch.disagreements.join("\n")))
        } else {
            Ok(())
        }
    });
    let shrunk = match shrunk {
        Err(proptest::test_runner::TestError::Fail(why, _)) => why.to_string(),
        other => format!("{:?}", other.map_err(|e| e.to_string())),
    };
    panic!(
        "{} of {} comparisons disagree ({pct:.2}% agree), the first 10:\n{}\n\nsmallest failing case:\n{shrunk}",
        t.disagreements.len(),
        t.compared,
        t.disagreements.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Pinned examples: each disagreement the differential found (and fixed), checked on allot
// always and on the engine when it is available
// ---------------------------------------------------------------------------------------------

/// One flag `p` with one segment: `conditions` (or none), bucketed by `bucket` (or not), variant
/// `on` (100% when bucketed).
fn pinned(conditions: Option<Value>, bucket: Option<Value>) -> Value {
    let mut seg = json!({"variant": "on"});
    if let Some(c) = conditions {
        seg["conditions"] = c;
    }
    if let Some(selector) = bucket {
        seg["bucket"] = json!({"selector": selector, "salt": "s", "allocations": [
            {"range": [0, 100], "distributions": [{"variant": "treatment", "range": [0, FULL]}]}]});
    }
    json!([{"key": "p", "variants": {"on": {"key": "on"}, "treatment": {"key": "treatment"}}, "segments": [seg]}])
}

fn when(selector: Value, op: &str, values: Value) -> Value {
    json!([[{"selector": selector, "op": op, "values": values}]])
}

fn prop(name: &str) -> Value {
    json!(["context", "user", "user_properties", name])
}

fn ctx(props: Value) -> Value {
    json!({"user": {"user_id": "u1", "user_properties": props}})
}

/// The variant key flag `key` gets, by allot, and by the engine when it is available.
fn variant_of(oracle: &mut Option<Oracle>, flags: &Value, context: &Value, key: &str) -> Option<String> {
    let allot = evaluate_allot(flags, std::slice::from_ref(context)).remove(0);
    if let Some(o) = oracle {
        let native = o.evaluate(&[(flags, std::slice::from_ref(context))]).remove(0).remove(0);
        assert_eq!(native, allot, "{flags}\n{context}");
    }
    match allot {
        Outcome::Flags(f) => f.get(key).map(|v| v["key"].as_str().unwrap_or("(no key)").to_string()),
        Outcome::Refused => Some("(refused)".into()),
    }
}

#[test]
fn pinned_examples_as_the_engine_gives_them() {
    let mut oracle = Oracle::start();
    let mut is = |flags: Value, context: Value| variant_of(&mut oracle, &flags, &context, "p");
    let on = Some("on".to_string());
    let treatment = Some("treatment".to_string());
    // A falsy value (`false`, `0`, `""`) is selected, not missing.
    assert_eq!(is(pinned(Some(when(prop("x"), "is", json!(["false"]))), None), ctx(json!({"x": false}))), on);
    assert_eq!(is(pinned(Some(when(prop("x"), "is", json!(["0"]))), None), ctx(json!({"x": 0}))), on);
    assert_eq!(is(pinned(Some(when(prop("x"), "is", json!(["(none)"]))), None), ctx(json!({"x": ""}))), None);
    assert_eq!(is(pinned(Some(when(prop("x"), "is", json!([""]))), None), ctx(json!({"x": ""}))), on);
    // ...and bucketed: `0` hashes as "0"; an empty string cannot be bucketed.
    let by_device = Some(json!(["context", "user", "device_id"]));
    assert_eq!(is(pinned(None, by_device.clone()), json!({"user": {"device_id": 0}})), treatment);
    assert_eq!(is(pinned(None, by_device), json!({"user": {"device_id": ""}})), on);
    // A list under a non-set operator matches when an element does (an empty list: never).
    assert_eq!(is(pinned(Some(when(prop("x"), "is", json!(["SE"]))), None), ctx(json!({"x": ["US", "SE"]}))), on);
    assert_eq!(is(pinned(Some(when(prop("x"), "is not", json!(["SE"]))), None), ctx(json!({"x": []}))), None);
    assert_eq!(is(pinned(Some(when(prop("x"), "is", json!(["SE"]))), None), ctx(json!({"x": "[\"SE\"]"}))), on);
    // A scalar is not a set: set operators never match it; a string holding a JSON array is one.
    let any_se = pinned(Some(when(prop("x"), "set contains any", json!(["SE"]))), None);
    assert_eq!(is(any_se.clone(), ctx(json!({"x": "SE"}))), None);
    assert_eq!(is(any_se.clone(), ctx(json!({"x": "[\"SE\"]"}))), on);
    assert_eq!(is(any_se, ctx(json!({"x": " [\"SE\"]"}))), None);
    let not_any = pinned(Some(when(prop("x"), "set does not contain any", json!(["SE"]))), None);
    assert_eq!(is(not_any, ctx(json!({"x": "US"}))), None);
    // Numbers as JavaScript prints them; objects as JSON.stringify writes them.
    assert_eq!(is(pinned(Some(when(prop("x"), "is", json!(["1e+21"]))), None), ctx(json!({"x": 1e21}))), on);
    assert_eq!(is(pinned(Some(when(prop("x"), "contains", json!(["e-7"]))), None), ctx(json!({"x": 1e-7}))), on);
    assert_eq!(
        is(
            pinned(Some(when(prop("x"), "is", json!(["12345678901234567000"]))), None),
            ctx(json!({"x": 12_345_678_901_234_567_890u64}))
        ),
        on
    );
    assert_eq!(
        is(
            pinned(Some(when(prop("x"), "is", json!(["{\"10\":2,\"b\":1.5}"]))), None),
            ctx(json!({"x": {"b": 1.5, "10": 2}}))
        ),
        on
    );
    // Array steps: an index as JavaScript writes it, and `length`.
    let list = ctx(json!({"l": ["a", "b"]}));
    assert_eq!(
        is(
            pinned(Some(when(json!(["context", "user", "user_properties", "l", "1"]), "is", json!(["b"]))), None),
            list.clone()
        ),
        on
    );
    assert_eq!(
        is(
            pinned(Some(when(json!(["context", "user", "user_properties", "l", "01"]), "is", json!(["(none)"]))), None),
            list.clone()
        ),
        on
    );
    assert_eq!(
        is(
            pinned(Some(when(json!(["context", "user", "user_properties", "l", "length"]), "is", json!(["2"]))), None),
            list
        ),
        on
    );
    // `["context"]` selects the whole context.
    assert_eq!(is(pinned(Some(when(json!(["context"]), "contains", json!(["\"U1\""]))), None), ctx(json!({}))), on);
    // Regular expressions, JavaScript's: no flags, UTF-16 code units, Annex B syntax.
    for (pattern, value, matches) in [
        ("^S", "SE", true),
        ("^.$", "😀", false),
        ("[😀]", "😀", true),
        ("(?<n>a)\\k<n>", "aa", true),
        ("\\p{L}", "p{L}", true),
        ("\\p{L}", "a", false),
        ("a{,2}", "a{,2}", true),
        ("\\8", "8", true),
    ] {
        let flags = pinned(Some(when(prop("x"), "regex match", json!([pattern]))), None);
        assert_eq!(is(flags, ctx(json!({"x": value}))).is_some(), matches, "{pattern} on {value}");
    }
    let no_match = pinned(Some(when(prop("x"), "regex does not match", json!(["^S"]))), None);
    assert_eq!(is(no_match.clone(), ctx(json!({"x": "US"}))), on);
    assert_eq!(is(no_match, ctx(json!({}))), None);
}

/// A `result` selector on metadata sees the flag's, the segment's and the variant's, merged.
#[test]
fn result_metadata_is_merged_as_the_engine_merges_it() {
    let mut oracle = Oracle::start();
    let flags = json!([
        {"key": "g", "metadata": {"flagType": "holdout-group", "deployed": false},
         "variants": {"on": {"key": "on", "metadata": {"default": false}}},
         "segments": [{"metadata": {"segmentName": "all"}, "variant": "on"}]},
        {"key": "p", "dependencies": ["g"], "variants": {"on": {"key": "on"}}, "segments": [{"conditions": [[
            {"selector": ["result", "g", "metadata", "flagType"], "op": "is", "values": ["holdout-group"]},
            {"selector": ["result", "g", "metadata", "segmentName"], "op": "is", "values": ["all"]},
            {"selector": ["result", "g"], "op": "contains", "values": ["\"deployed\":false"]},
        ]], "variant": "on"}]},
    ]);
    assert_eq!(variant_of(&mut oracle, &flags, &json!({}), "p"), Some("on".to_string()));
}

/// The engine starts its dependency sort from `Object.keys`: keys that are array indices first.
/// A flag reading another's result without declaring it sees it only if that one came first.
#[test]
fn array_index_keys_are_evaluated_first() {
    let mut oracle = Oracle::start();
    let flags = json!([
        {"key": "b", "variants": {"on": {"key": "on"}}, "segments": [
            {"conditions": [[{"selector": ["result", "7", "key"], "op": "is", "values": ["on"]}]], "variant": "on"}]},
        {"key": "7", "variants": {"on": {"key": "on"}}, "segments": [{"variant": "on"}]},
    ]);
    assert_eq!(variant_of(&mut oracle, &flags, &json!({}), "b"), Some("on".to_string()));
}
