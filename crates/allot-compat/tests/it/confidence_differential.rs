//! allot against Spotify's resolver (`confidence_resolver` 0.26.1), side by side: every case of
//! the specification, and random resolver states in the proto3-JSON form with hostile contexts.
//!
//! The random test draws `PROPTEST_CASES` states (default [`DEFAULT_CASES`]) from a fixed seed
//! (`ALLOT_DIFF_SEED` to change it), resolves [`REQUESTS_PER_STATE`] requests against each with
//! both resolvers, counts the flag resolutions (reason, variant, value, `shouldApply`) and
//! refusals on which they agree, and only then asserts, listing every disagreement. A
//! disagreement is then shrunk by proptest and its seed written to
//! `tests/it/confidence_differential.proptest-regressions`, replayed first on every run.

use crate::confidence_oracle::{
    gzip_base64, load_native, resolve_allot, resolve_native, spec_state_as_proto, Outcome, Refusal,
};
use crate::spec;
use allot_compat::confidence::State;
use base64::Engine as _;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{json, Map, Value};
use std::cell::RefCell;

/// Every case of the specification, resolved by both: allot must give what the resolver gives.
#[test]
fn every_specification_case_as_the_resolver_gives_it() {
    let spec_state: Value = serde_json::from_str(&spec("confidence/state.json")).unwrap();
    let (state, account) = spec_state_as_proto(&spec_state);
    let native_state = load_native(&state, &account).unwrap();
    let allot_state = State::parse(&state, Some(&account)).unwrap();
    let cases: Vec<Value> = serde_json::from_str(&spec("confidence/tests.json")).unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        let req = crate::confidence::request_of(case);
        let native = resolve_native(&native_state, &req);
        let allot = resolve_allot(&allot_state, &req);
        if native != allot {
            failures.push(format!("{}:\n  native {native:?}\n  allot  {allot:?}", case["name"].as_str().unwrap()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

pub(crate) const ACCOUNT: &str = "diff-account";
const DEFAULT_CASES: u32 = 200;
const REQUESTS_PER_STATE: usize = 12;
const UNITS: [&str; 5] = ["u1", "u2", "u3", "u4", "u5"];
const MATERIALIZATIONS: [&str; 2] = ["materializations/m0", "materializations/m1"];
const ATTRIBUTES: [&str; 12] = [
    "country",
    "age",
    "tier",
    "user.id",
    "user.age",
    "tags",
    "app_version",
    "created",
    "on",
    "missing",
    "deep.a.b",
    "targeting_key",
];

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &[T]) -> impl Strategy<Value = T> {
    proptest::sample::select(items.to_vec())
}

fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

const NUMBERS: [f64; 22] = [
    0.0,
    1.0,
    -1.0,
    42.0,
    1.5,
    18.0,
    30.0,
    99.99,
    1e12,
    1.5e12,
    -1e12,
    999_999_999_999.9,
    1_668_698_178.0,
    1_668_698_177_200.0,
    8.2e15,
    9e15,
    1e300,
    -1e300,
    -9.3e18,
    1e21,
    1e-7,
    0.1,
];

const STRINGS: [&str; 40] = [
    "SE",
    "US",
    "se",
    "",
    "null",
    "true",
    "TRUE",
    "false",
    "42",
    "4.2e1",
    "gold",
    "gold-plus",
    "1.2.3",
    "1.2",
    "1.2.3.4",
    "1.0.1000",
    "01.02.03",
    "1.2.3-beta",
    "1.2.3+build",
    "v1.2",
    "1",
    "2020-01-01",
    "2020-01-01T10:00:00Z",
    "2020-01-01T10:00:00",
    "2020-01-01 10:00:00",
    "2020-01-01T10:00:00.123456789123",
    "2016-12-31T23:59:60Z",
    "2016-12-31T23:59:60.5",
    "2020-01-01t10:00:00Z",
    "2020-1-1T1:2:3",
    "2020-01-01T10:00:00+01:00",
    "2020-01-01T10:00:00+0100",
    "2020-01-01T10:00:00z",
    "2020-02-30",
    "+2020-01-01",
    " 2020-01-01",
    "1970-01-01T00:00:00.",
    "ÅÄÖ-unicode",
    "SEK",
    "u3",
];

const TIMESTAMPS: [&str; 8] = [
    "2020-01-01T00:00:00Z",
    "2020-01-01T10:00:00.5Z",
    "2016-12-31T23:59:60Z",
    "2022-11-17T15:16:18Z",
    "1970-01-01T00:00:00Z",
    "2020-01-01T11:00:00+01:00",
    "2020-01-01 10:00:00Z",
    "2000-01-01t00:00:00.123456789999z",
];

const VERSIONS: [&str; 10] =
    ["1.2.3", "1.2", "1.10.0", "2.0.0.1", "1.0.1000", "01.2.3", "1.2.3-rc.1", "1.2.3+b", "0.0.0", "banana"];

/// A scalar of a hostile context.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        2 => any::<bool>().prop_map(Value::Bool),
        3 => pick(&NUMBERS).prop_map(num),
        1 => (-100i64..100).prop_map(|i| json!(i)),
        5 => pick(&STRINGS).prop_map(|s| json!(s)),
        1 => "[a-zA-Z0-9 .:+-]{0,12}".prop_map(Value::String),
    ]
}

/// A context value: scalars, lists of them (nested once), small objects.
fn context_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            3 => vec(inner.clone(), 0..4).prop_map(Value::Array),
            1 => btree_map(pick(&["a", "b", "id", "age"]), inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// A targeting key: mostly a unit, sometimes of a type that cannot be one.
fn unit_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        30 => pick(&UNITS).prop_map(|u| Some(json!(u))),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => (0i64..5).prop_map(|i| Some(json!(i))),
        1 => Just(Some(json!(1.5))),
        1 => Just(Some(json!(true))),
        1 => Just(Some(json!("x".repeat(101)))),
        1 => Just(Some(json!(["u1"]))),
    ]
}

fn context() -> impl Strategy<Value = Value> {
    (
        unit_value(),
        unit_value(),
        proptest::option::of(unit_value()),
        btree_map(pick(&ATTRIBUTES), context_value(), 0..6),
    )
        .prop_map(|(tk, visitor, user_id, attrs)| {
            let mut m = Map::new();
            for (path, v) in attrs {
                set_path(&mut m, path, v);
            }
            if let Some(tk) = tk {
                m.insert("targeting_key".into(), tk);
            }
            if let Some(v) = visitor {
                m.insert("visitor_id".into(), v);
            }
            if let Some(Some(id)) = user_id {
                set_path(&mut m, "user.id", id);
            }
            Value::Object(m)
        })
}

fn set_path(m: &mut Map<String, Value>, path: &str, v: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap();
    let mut cur = m;
    for p in parts {
        let entry = cur.entry(p.to_string()).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        cur = entry.as_object_mut().unwrap();
    }
    cur.insert(last.to_string(), v);
}

/// A rule's value (`targeting.Value`), of any kind; `{}` has none.
fn rule_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        40 => any::<bool>().prop_map(|b| json!({"boolValue": b})),
        60 => pick(&NUMBERS[..16]).prop_map(|n| json!({"numberValue": num(n)})),
        80 => pick(&STRINGS).prop_map(|s| json!({"stringValue": s})),
        40 => pick(&TIMESTAMPS).prop_map(|t| json!({"timestampValue": t})),
        // Rarely a timestamp proto3-JSON does not accept: the resolver cannot load the state.
        1 => pick(&["2020-01-01T10:00:00", "2020-01-01"]).prop_map(|t| json!({"timestampValue": t})),
        40 => pick(&VERSIONS).prop_map(|v| json!({"versionValue": {"version": v}})),
        20 => Just(json!({})),
    ]
}

fn bound() -> impl Strategy<Value = Option<(bool, Value)>> {
    proptest::option::weighted(0.7, (any::<bool>(), rule_value()))
}

/// An operator, at the top of a criterion or inside `any`/`all`.
fn operator() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => rule_value().prop_map(|v| json!({"eqRule": {"value": v}})),
        1 => Just(json!({"eqRule": {"value": {}}})),
        3 => vec(rule_value(), 0..4).prop_map(|vs| json!({"setRule": {"values": vs}})),
        4 => (bound(), bound()).prop_map(|(s, e)| {
            let mut r = Map::new();
            if let Some((incl, v)) = s {
                r.insert(if incl { "startInclusive" } else { "startExclusive" }.into(), v);
            }
            if let Some((incl, v)) = e {
                r.insert(if incl { "endInclusive" } else { "endExclusive" }.into(), v);
            }
            json!({"rangeRule": r})
        }),
        2 => pick(&["S", "", "nu", "tr", "1.", "gold", "2020"]).prop_map(|p| json!({"startsWithRule": {"value": p}})),
        1 => pick(&["E", "", "ll", "ue", ".3", "plus"]).prop_map(|p| json!({"endsWithRule": {"value": p}})),
        1 => pick(&["o", "", "ul", "-", "."]).prop_map(|p| json!({"containsRule": {"value": p}})),
    ]
}

fn attribute_criterion() -> impl Strategy<Value = Value> {
    (
        pick(&ATTRIBUTES),
        prop_oneof![
            6 => operator().prop_map(Some),
            2 => proptest::option::weighted(0.9, operator()).prop_map(|op| Some(json!({"anyRule": {"rule": op}}))),
            2 => proptest::option::weighted(0.9, operator()).prop_map(|op| Some(json!({"allRule": {"rule": op}}))),
            1 => Just(None),
        ],
    )
        .prop_map(|(name, rule)| {
            let mut a = json!({"attributeName": name});
            if let Some(Value::Object(rule)) = rule {
                for (k, v) in rule {
                    // `anyRule: {}` carries no inner rule: unrecognised when evaluated.
                    let v = if v.get("rule").is_some_and(Value::is_null) { json!({}) } else { v };
                    a[k] = v;
                }
            }
            a
        })
}

fn criterion(segments: usize) -> impl Strategy<Value = Value> {
    prop_oneof![
        7 => attribute_criterion().prop_map(|a| json!({"attribute": a})),
        2 => (0..segments + 1).prop_map(|s| json!({"segment": {"segment": format!("segments/s{s}")}})),
        2 => pick(&MATERIALIZATIONS).prop_map(|m| json!({"materializedSegment": {"materializedSegment": m}})),
        1 => Just(json!({})),
    ]
}

fn expression(criteria: usize) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        8 => (0..criteria + 1).prop_map(|i| json!({"ref": format!("c{i}")})),
        1 => Just(json!({})),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            1 => inner.clone().prop_map(|e| json!({"not": e})),
            2 => vec(inner.clone(), 0..4).prop_map(|ops| json!({"and": {"operands": ops}})),
            2 => vec(inner, 0..4).prop_map(|ops| json!({"or": {"operands": ops}})),
        ]
    })
}

fn segment(i: usize, segments: usize) -> impl Strategy<Value = Value> {
    let name = if i == segments { "odd-segment-without-id".to_string() } else { format!("segments/s{i}") };
    // Half the segments target nobody in particular, so that rules reach their assignments.
    let targeted = if i.is_multiple_of(2) { 0.9 } else { 0.2 };
    proptest::option::weighted(
        targeted,
        (1usize..4)
            .prop_flat_map(move |n| (vec(criterion(segments), n..=n), proptest::option::weighted(0.9, expression(n)))),
    )
    .prop_map(move |t| match t {
        None => json!({"name": name}),
        Some((criteria, expr)) => {
            let criteria: Map<String, Value> =
                criteria.into_iter().enumerate().map(|(i, c)| (format!("c{i}"), c)).collect();
            let mut targeting = json!({"criteria": criteria});
            if let Some(e) = expr {
                targeting["expression"] = e;
            }
            json!({"name": name, "targeting": targeting})
        }
    })
}

/// A bitset: `None` (no bitset), or how to draw it.
#[derive(Debug, Clone)]
enum BitsetKind {
    Full,
    Gzipped { density: u8, seed: u64, bytes: usize },
    Neither,
}

fn bitset() -> impl Strategy<Value = Option<BitsetKind>> {
    prop_oneof![
        8 => Just(None),
        1 => Just(Some(BitsetKind::Full)),
        1 => Just(Some(BitsetKind::Neither)),
        4 => (pick(&[0u8, 64, 128, 200, 255]), any::<u64>(), pick(&[125_000usize, 125_000, 125_000, 0, 100, 130_000]))
            .prop_map(|(density, seed, bytes)| Some(BitsetKind::Gzipped { density, seed, bytes })),
    ]
}

fn bitset_json(segment: &str, kind: &BitsetKind) -> Value {
    match kind {
        BitsetKind::Full => json!({"segment": segment, "fullBitset": true}),
        BitsetKind::Neither => json!({"segment": segment}),
        BitsetKind::Gzipped { density, seed, bytes } => {
            let mut x = *seed | 1;
            let data: Vec<u8> = (0..*bytes)
                .map(|_| match density {
                    0 => 0,
                    255 => 0xff,
                    d => {
                        let mut b = 0u8;
                        for bit in 0..8 {
                            // xorshift64: a cheap, seeded bit stream.
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            if (x & 0xff) < u64::from(*d) {
                                b |= 1 << bit;
                            }
                        }
                        b
                    }
                })
                .collect();
            json!({"segment": segment, "gzippedBitset": gzip_base64(&data)})
        }
    }
}

fn bloom() -> impl Strategy<Value = Option<Value>> {
    proptest::option::weighted(
        0.4,
        (pick(&MATERIALIZATIONS), vec(any::<u8>(), 8..40), 0i32..5, pick(&[1i32, 1, 1, 2]), pick(&[0i64, -1, -8]))
            .prop_map(|(m, data, k, strategy, shrink)| {
                let bits = (data.len() as i64 * 8 + shrink).max(1);
                json!({
                    "materializedSegment": m,
                    "data": base64::engine::general_purpose::STANDARD.encode(&data),
                    "hashFunctionCount": k,
                    "bitCount": bits.to_string(),
                    "strategy": strategy,
                })
            }),
    )
}

fn assignment_spec(flag: usize, rule: usize, variants: usize) -> impl Strategy<Value = Value> {
    (
        prop_oneof![2 => Just(1i32), 2 => Just(2), 4 => Just(10), 4 => Just(100), 8 => Just(10_000), 1 => Just(0), 1 => Just(-3)],
        vec((0u8..10, prop_oneof![20 => 0usize..variants, 1 => Just(variants)]), 1..4),
    ).prop_map(
        move |(count, parts)| {
            // Cut 0..count into consecutive ranges, one per assignment (the last may stop short).
            let n = parts.len() as i64;
            let c = i64::from(count.max(0));
            let assignments: Vec<Value> = parts
                .iter()
                .enumerate()
                .map(|(i, (kind, v))| {
                    let (lo, hi) = (c * i as i64 / n, c * (i as i64 + 1) / n);
                    let mut a = json!({
                        "assignmentId": format!("a{flag}-{rule}-{i}"),
                        "bucketRanges": [{"lower": lo, "upper": if *kind == 9 { hi - 1 } else { hi }}],
                    });
                    match kind {
                        0..=5 => {
                            let name = if *v == variants { "flags/ghost/variants/none".to_string() } else { variant_name(flag, *v) };
                            a["variant"] = json!({"variant": name});
                        }
                        6 => a["fallthrough"] = json!({}),
                        7 => a["clientDefault"] = json!({}),
                        _ => {}
                    }
                    a
                })
                .collect();
            json!({"bucketCount": count, "assignments": assignments})
        },
    )
}

fn variant_name(flag: usize, v: usize) -> String {
    format!("flags/f{flag}/variants/v{v}")
}

fn rule(flag: usize, k: usize, segments: usize, variants: usize) -> impl Strategy<Value = Value> {
    (
        prop_oneof![12 => 0..segments, 1 => Just(segments), 1 => Just(segments + 1)],
        proptest::bool::weighted(0.9),
        prop_oneof![
            6 => Just(vec![]),
            2 => Just(vec!["production"]),
            1 => Just(vec!["staging"]),
            1 => Just(vec!["production", "staging"]),
        ],
        pick(&["", "", "targeting_key", "visitor_id", "user.id"]),
        proptest::option::weighted(0.9, assignment_spec(flag, k, variants)),
        proptest::option::weighted(
            0.3,
            (pick(&["materializations/m0", "materializations/m1", ""]), any::<bool>(), any::<bool>(), any::<bool>()),
        ),
    )
        .prop_map(move |(seg, enabled, envs, selector, spec, mat)| {
            let segment = match seg {
                s if s < segments => format!("segments/s{s}"),
                s if s == segments => "odd-segment-without-id".to_string(),
                _ => "segments/nowhere".to_string(),
            };
            let mut r = json!({
                "name": format!("flags/f{flag}/rules/r{k}"),
                "segment": segment,
                "enabled": enabled,
                "environments": envs,
                "targetingKeySelector": selector,
            });
            if let Some(spec) = spec {
                r["assignmentSpec"] = spec;
            }
            if let Some((read, write, must, ignore)) = mat {
                r["materializationSpec"] = json!({
                    "readMaterialization": read,
                    "writeMaterialization": if write { "materializations/w0" } else { "" },
                    "mode": {"materializationMustMatch": must, "segmentTargetingCanBeIgnored": ignore},
                });
            }
            r
        })
}

fn variant_value() -> impl Strategy<Value = Value> {
    btree_map(pick(&["color", "size", "on", "nested"]), context_value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

fn flag(i: usize, segments: usize) -> impl Strategy<Value = Value> {
    (1usize..4).prop_flat_map(move |variants| {
        (
            proptest::bool::weighted(0.9),
            proptest::sample::subsequence(vec!["clients/a", "clients/b"], 1..=2),
            vec(variant_value(), variants..=variants),
            (0usize..5).prop_flat_map(move |n| (0..n).map(|k| rule(i, k, segments, variants)).collect::<Vec<_>>()),
            any::<bool>(),
        )
            .prop_map(move |(active, clients, values, rules, schema)| {
                let variants: Vec<Value> = values
                    .into_iter()
                    .enumerate()
                    .map(|(v, value)| json!({"name": variant_name(i, v), "value": value}))
                    .collect();
                let mut f = json!({
                    "name": format!("flags/f{i}"),
                    "state": if active { "ACTIVE" } else { "ARCHIVED" },
                    "clients": clients,
                    "variants": variants,
                    "rules": rules,
                });
                if schema {
                    f["schema"] = json!({"schema": {
                        "color": {"stringSchema": {}},
                        "extra": {"boolSchema": {}},
                        "nested": {"structSchema": {"schema": {"x": {"intSchema": {}}}}},
                    }});
                }
                f
            })
    })
}

fn managed_context() -> impl Strategy<Value = Map<String, Value>> {
    proptest::option::weighted(
        0.35,
        btree_map(
            pick(&["tier", "country", "user.id", "user", "deep.a", "app_version", "targeting_key"]),
            context_value(),
            1..3,
        ),
    )
    .prop_map(|m| m.unwrap_or_default().into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// A random state and the requests to resolve against it.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) state: Value,
    pub(crate) requests: Vec<Value>,
}

fn materializations(rules: Vec<String>, variants: Vec<String>) -> impl Strategy<Value = Value> {
    let mut rule_pool = rules;
    rule_pool.push(String::new());
    let mut variant_pool = variants;
    variant_pool.push(String::new());
    btree_map(
        pick(&UNITS),
        btree_map(
            pick(&MATERIALIZATIONS),
            (proptest::bool::weighted(0.8), btree_map(pick(&rule_pool), pick(&variant_pool), 0..3)),
            1..3,
        ),
        0..4,
    )
    .prop_map(|units| {
        let mut out = Map::new();
        for (u, mats) in units {
            let mut m = Map::new();
            for (mat, (inside, rules)) in mats {
                m.insert(mat.to_string(), json!({"isUnitInMaterialization": inside, "ruleToVariant": rules}));
            }
            out.insert(u.to_string(), Value::Object(m));
        }
        Value::Object(out)
    })
}

/// Every `(attributeName, value)` a state's criteria compare with, to draw contexts that meet
/// them: rule values as JSON (`stringValue` as the string, `timestampValue` as its text...) and
/// string operators' arguments with something around them.
fn targets(state: &Value) -> Vec<(String, Value)> {
    fn values(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("stringValue" | "timestampValue" | "boolValue" | "numberValue", x) => out.push(x.clone()),
                        ("versionValue", x) => out.push(x["version"].clone()),
                        ("startsWithRule", x) => out.push(json!(format!("{}tail", x["value"].as_str().unwrap_or("")))),
                        ("endsWithRule", x) => out.push(json!(format!("head{}", x["value"].as_str().unwrap_or("")))),
                        ("containsRule", x) => out.push(json!(format!("a{}b", x["value"].as_str().unwrap_or("")))),
                        _ => values(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| values(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for seg in state["segmentsNoBitsets"].as_array().into_iter().flatten() {
        for c in seg["targeting"]["criteria"].as_object().into_iter().flatten().map(|(_, c)| c) {
            if let Some(name) = c["attribute"]["attributeName"].as_str() {
                let mut vs = Vec::new();
                values(&c["attribute"], &mut vs);
                out.extend(vs.into_iter().map(|v| (name.to_string(), v)));
            }
        }
    }
    out
}

/// A context, with some of the state's targets met: the value itself, as text, in a list with
/// another value, or nudged (a number plus one, a string with a suffix).
fn context_for(targets: Vec<(String, Value)>) -> impl Strategy<Value = Value> {
    let n = targets.len();
    (context(), vec((0..n.max(1), 0u8..5, leaf()), if n == 0 { 0..1 } else { 1..5 })).prop_map(
        move |(mut ctx, picks)| {
            for (i, mode, other) in picks {
                let Some((path, v)) = targets.get(i) else { continue };
                let v = match mode {
                    0 | 1 => v.clone(),
                    2 => json!(match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }),
                    3 => json!([other, v]),
                    _ => match v {
                        Value::Number(x) => num(x.as_f64().unwrap_or(0.0) + 1.0),
                        Value::String(s) => json!(format!("{s}0")),
                        other => other.clone(),
                    },
                };
                set_path(ctx.as_object_mut().unwrap(), path, v);
            }
            ctx
        },
    )
}

fn request(
    flags: usize,
    rules: Vec<String>,
    variants: Vec<String>,
    targets: Vec<(String, Value)>,
) -> impl Strategy<Value = Value> {
    (
        prop_oneof![10 => Just("sa"), 10 => Just("sb"), 1 => Just("unknown-secret")],
        proptest::option::weighted(
            0.3,
            proptest::sample::subsequence((0..flags + 1).collect::<Vec<_>>(), 0..=flags + 1),
        ),
        context_for(targets),
        any::<bool>(),
        proptest::option::weighted(0.45, materializations(rules, variants)),
    )
        .prop_map(|(secret, names, ctx, apply, mats)| {
            let names: Vec<String> = names.unwrap_or_default().into_iter().map(|i| format!("flags/f{i}")).collect();
            let mut r = json!({"clientSecret": secret, "flags": names, "evaluationContext": ctx, "apply": apply});
            if let Some(m) = mats {
                r["materializations"] = m;
            }
            r
        })
}

pub(crate) fn case() -> impl Strategy<Value = Case> {
    (1usize..5, 1usize..5)
        .prop_flat_map(|(segments, flags)| {
            (
                (0..segments + 1).map(|i| segment(i, segments)).collect::<Vec<_>>(),
                vec(bitset(), segments + 1),
                (0..flags).map(|i| flag(i, segments)).collect::<Vec<_>>(),
                // Sometimes a second flag of the same name (the resolver keeps the last).
                proptest::option::weighted(0.1, flag(0, segments)),
                vec(bloom(), 0..2),
                (managed_context(), managed_context()),
                (
                    proptest::sample::subsequence(vec!["production", "staging"], 0..=2),
                    proptest::sample::subsequence(vec!["production", "staging"], 0..=2),
                ),
                Just(flags),
            )
        })
        .prop_flat_map(
            |(segments, bitsets, mut flags, twin, blooms, (managed_a, managed_b), (env_a, env_b), n_flags)| {
                flags.extend(twin);
                let names: Vec<String> = segments.iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
                let bitsets: Vec<Value> =
                    names.iter().zip(&bitsets).filter_map(|(n, b)| b.as_ref().map(|b| bitset_json(n, b))).collect();
                let rules: Vec<String> = flags
                    .iter()
                    .flat_map(|f| {
                        f["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string())
                    })
                    .collect();
                let variants: Vec<String> = flags
                    .iter()
                    .flat_map(|f| {
                        f["variants"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_string())
                    })
                    .collect();
                let state = json!({
                    "flags": flags,
                    "segmentsNoBitsets": segments,
                    "bitsets": bitsets,
                    "bloomFilters": blooms.into_iter().flatten().collect::<Vec<_>>(),
                    "clients": [
                        {"name": "clients/a", "managedContext": managed_a},
                        {"name": "clients/b", "managedContext": managed_b},
                    ],
                    "clientCredentials": [
                        {"name": "clients/a/credentials/1", "clientSecret": {"secret": "sa"}, "environments": env_a},
                        {"name": "clients/b/credentials/1", "clientSecret": {"secret": "sb"}, "environments": env_b},
                    ],
                });
                let targets = targets(&state);
                vec(request(n_flags, rules, variants, targets), REQUESTS_PER_STATE)
                    .prop_map(move |requests| Case { state: state.clone(), requests })
            },
        )
}

// ---------------------------------------------------------------------------------------------
// The comparison
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    /// Flag resolutions (and refused requests) on which both agree, and all of them.
    agreed: usize,
    compared: usize,
    refusals_agreed: usize,
    /// States, and states one side refused.
    states: usize,
    states_refused: usize,
    /// Requests on which the resolver panicked (not compared).
    native_panics: usize,
    /// What the agreed answers were: reasons, and refusals by kind.
    outcomes: std::collections::BTreeMap<String, usize>,
    disagreements: Vec<String>,
}

/// The state as a disagreement shows it: bitsets cut short.
fn shown(state: &Value) -> String {
    let mut s = state.clone();
    for b in s["bitsets"].as_array_mut().into_iter().flatten() {
        if let Some(z) = b.get("gzippedBitset").and_then(Value::as_str).map(str::to_string) {
            b["gzippedBitset"] = json!(format!("<{} base64 characters>", z.len()));
        }
    }
    s.to_string()
}

/// Compares one case; returns the number of disagreements.
fn compare(case: &Case, tally: &mut Tally) -> usize {
    let text = case.state.to_string();
    tally.states += 1;
    let native = load_native(&text, ACCOUNT);
    let allot = State::parse(&text, Some(ACCOUNT));
    let mut found = 0;
    let (native, allot) = match (native, allot) {
        (Ok(n), Ok(a)) => (n, a),
        (Err(_), Err(_)) => {
            tally.states_refused += 1;
            tally.agreed += 1;
            tally.compared += 1;
            return 0;
        }
        (n, a) => {
            tally.compared += 1;
            tally.disagreements.push(format!(
                "state: native {}, allot {}\n  state {}",
                if n.is_ok() { "loads it" } else { "refuses it" },
                a.map_or_else(|e| format!("refuses it ({e})"), |_| "loads it".into()),
                shown(&case.state),
            ));
            return 1;
        }
    };
    for req in &case.requests {
        let n = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| resolve_native(&native, req))) {
            Ok(n) => n,
            Err(_) => {
                tally.native_panics += 1;
                continue;
            }
        };
        let a = resolve_allot(&allot, req);
        match (&n, &a) {
            (Outcome::Flags(nf), Outcome::Flags(af)) => {
                let names: std::collections::BTreeSet<&String> = nf.keys().chain(af.keys()).collect();
                for name in names {
                    tally.compared += 1;
                    if nf.get(name) == af.get(name) {
                        tally.agreed += 1;
                        let r = nf.get(name).map_or("?".to_string(), |r| r.reason.replace("RESOLVE_REASON_", ""));
                        *tally.outcomes.entry(r).or_default() += 1;
                    } else {
                        found += 1;
                        tally.disagreements.push(format!(
                            "{name}:\n  native {:?}\n  allot  {:?}\n  request {req}\n  state {}",
                            nf.get(name),
                            af.get(name),
                            shown(&case.state),
                        ));
                    }
                }
            }
            _ => {
                tally.compared += 1;
                if n == a {
                    tally.agreed += 1;
                    tally.refusals_agreed += 1;
                    *tally.outcomes.entry(format!("{n:?}")).or_default() += 1;
                } else {
                    found += 1;
                    tally
                        .disagreements
                        .push(format!("request:\n  native {n:?}\n  allot  {a:?}\n  request {req}\n  state {text}"));
                }
            }
        }
    }
    found
}

fn runner(cases: u32, persist: bool) -> TestRunner {
    let seed: u64 = std::env::var("ALLOT_DIFF_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_201);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: persist.then(|| {
            Box::new(FileFailurePersistence::Direct("tests/it/confidence_differential.proptest-regressions"))
                as Box<dyn proptest::test_runner::FailurePersistence>
        }),
        max_shrink_iters: 200,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// Random states, contexts and materializations: allot must resolve every flag as the resolver
/// does, and refuse where it refuses.
#[test]
fn random_states_resolve_as_the_resolver_resolves_them() {
    // The generator's strategy tree is deep, and debug builds keep big frames: a thread with room.
    let run = std::thread::Builder::new().stack_size(256 << 20).spawn(differential).unwrap();
    if let Err(panic) = run.join() {
        std::panic::resume_unwind(panic);
    }
}

fn differential() {
    let cases: u32 = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_CASES);
    let tally = RefCell::new(Tally::default());
    // First every case, counted (the persisted regressions are replayed first, too).
    let _ = runner(cases, true).run(&case(), |c| {
        compare(&c, &mut tally.borrow_mut());
        Ok(())
    });
    let t = tally.into_inner();
    let pct = 100.0 * t.agreed as f64 / t.compared.max(1) as f64;
    eprintln!(
        "differential: {} states ({} refused by both), {} comparisons, {} agree ({pct:.2}%), {} refusals agreed, {} resolver panics skipped",
        t.states, t.states_refused, t.compared, t.agreed, t.refusals_agreed, t.native_panics
    );
    eprintln!("differential: agreed outcomes {:?}", t.outcomes);
    if t.disagreements.is_empty() {
        return;
    }
    // Then shrink the first disagreement to a small case and persist its seed.
    let shrunk = runner(cases, true).run(&case(), |c| {
        let mut scratch = Tally::default();
        if compare(&c, &mut scratch) > 0 {
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
// Pinned examples: what the resolver does in the places the brief named, checked on both
// ---------------------------------------------------------------------------------------------

/// One flag `flags/p` for client secret `sa`, on one segment whose targeting is the single
/// attribute criterion `attribute` (`{"attributeName": ..., "<rule>": ...}`); every unit in
/// the segment gets variant `on`.
pub(crate) fn pinned_state(attribute: Value, managed: Value) -> String {
    json!({
        "flags": [{
            "name": "flags/p", "state": "ACTIVE", "clients": ["clients/a"],
            "variants": [{"name": "flags/p/variants/on", "value": {"on": true}}],
            "rules": [{
                "name": "flags/p/rules/r", "segment": "segments/p", "enabled": true,
                "assignmentSpec": {"bucketCount": 1, "assignments": [{
                    "assignmentId": "a", "variant": {"variant": "flags/p/variants/on"},
                    "bucketRanges": [{"lower": 0, "upper": 1}],
                }]},
            }],
        }],
        "segmentsNoBitsets": [{"name": "segments/p", "targeting": {
            "criteria": {"c": {"attribute": attribute}}, "expression": {"ref": "c"},
        }}],
        "clients": [{"name": "clients/a", "managedContext": managed}],
        "clientCredentials": [{"name": "clients/a/credentials/1", "clientSecret": {"secret": "sa"}}],
    })
    .to_string()
}

/// Whether `flags/p` matches for `ctx`, by the resolver and by allot (which must agree).
fn matches(attribute: Value, managed: Value, ctx: Value) -> bool {
    let state = pinned_state(attribute, managed);
    let req = json!({"clientSecret": "sa", "evaluationContext": ctx});
    let native = resolve_native(&load_native(&state, ACCOUNT).unwrap(), &req);
    let allot = resolve_allot(&State::parse(&state, Some(ACCOUNT)).unwrap(), &req);
    assert_eq!(native, allot, "{state}\n{req}");
    match native {
        Outcome::Flags(f) => f["flags/p"].reason == "RESOLVE_REASON_MATCH",
        other => panic!("refused: {other:?}"),
    }
}

#[test]
fn pinned_examples_as_the_resolver_gives_them() {
    let none = json!({});
    let attr = |rule: Value| {
        let mut a = json!({"attributeName": "x"});
        for (k, v) in rule.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    };
    // Null equality: missing, null, or a list holding a null.
    let null_eq = attr(json!({"eqRule": {"value": {}}}));
    assert!(matches(null_eq.clone(), none.clone(), json!({"targeting_key": "u1"})));
    assert!(matches(null_eq.clone(), none.clone(), json!({"targeting_key": "u1", "x": null})));
    assert!(matches(null_eq.clone(), none.clone(), json!({"targeting_key": "u1", "x": [1, null]})));
    assert!(!matches(null_eq, none.clone(), json!({"targeting_key": "u1", "x": "a"})));
    // any/all over a missing attribute: an empty list.
    let all = attr(json!({"allRule": {"rule": {"eqRule": {"value": {"numberValue": 1}}}}}));
    let any = attr(json!({"anyRule": {"rule": {"eqRule": {"value": {"numberValue": 1}}}}}));
    assert!(matches(all, none.clone(), json!({"targeting_key": "u1", "x": null})));
    assert!(!matches(any, none.clone(), json!({"targeting_key": "u1"})));
    // String operators see only strings...
    let starts = attr(json!({"startsWithRule": {"value": "nu"}}));
    assert!(!matches(starts.clone(), none.clone(), json!({"targeting_key": "u1"})));
    assert!(!matches(starts.clone(), none.clone(), json!({"targeting_key": "u1", "x": [null, true]})));
    assert!(matches(starts, none.clone(), json!({"targeting_key": "u1", "x": [true, "nub"]})));
    // ...but eq/set with a string value compare the resolver's "null" text: not what the brief
    // expected, what 0.26.1 does (`convert_to_targeting_value` without a strict mode).
    let eq_null_text = attr(json!({"eqRule": {"value": {"stringValue": "null"}}}));
    assert!(matches(eq_null_text.clone(), none.clone(), json!({"targeting_key": "u1"})));
    assert!(matches(eq_null_text, none.clone(), json!({"targeting_key": "u1", "x": true})));
    let eq_true_text = attr(json!({"eqRule": {"value": {"stringValue": "true"}}}));
    assert!(!matches(eq_true_text, none.clone(), json!({"targeting_key": "u1", "x": true})));
    // A range without bounds matches nothing.
    assert!(!matches(attr(json!({"rangeRule": {}})), none.clone(), json!({"targeting_key": "u1", "x": 5})));
    // Versions as Confidence compares them.
    let from_1_10 = attr(json!({"rangeRule": {"startInclusive": {"versionValue": {"version": "1.10"}}}}));
    assert!(matches(from_1_10.clone(), none.clone(), json!({"targeting_key": "u1", "x": "01.10.0.1"})));
    assert!(!matches(from_1_10.clone(), none.clone(), json!({"targeting_key": "u1", "x": "1.9.999"})));
    assert!(!matches(from_1_10.clone(), none.clone(), json!({"targeting_key": "u1", "x": "2.0.0+build"})));
    assert!(matches(from_1_10, none.clone(), json!({"targeting_key": "u1", "x": "2.0.0-rc.1"})));
    // Timestamps: a leap second sorts inside its minute; a number from 1e12 on is milliseconds.
    let after = |t: &str| attr(json!({"rangeRule": {"startExclusive": {"timestampValue": t}}}));
    assert!(matches(
        after("2016-12-31T23:59:59.9Z"),
        none.clone(),
        json!({"targeting_key": "u1", "x": "2016-12-31T23:59:60Z"})
    ));
    assert!(!matches(
        after("2017-01-01T00:00:00Z"),
        none.clone(),
        json!({"targeting_key": "u1", "x": "2016-12-31T23:59:60.5Z"})
    ));
    assert!(matches(
        after("2022-11-17T15:16:17Z"),
        none.clone(),
        json!({"targeting_key": "u1", "x": 1_668_698_177_200.0})
    ));
    assert!(!matches(after("1970-01-01T00:00:00Z"), none.clone(), json!({"targeting_key": "u1", "x": 9e15})));
    // The client's managed context is merged in, and wins.
    let gold = attr(json!({"eqRule": {"value": {"stringValue": "gold"}}}));
    assert!(matches(gold.clone(), json!({"x": "gold"}), json!({"targeting_key": "u1", "x": "free"})));
    let nested = json!({"attributeName": "user.tier", "eqRule": {"value": {"stringValue": "gold"}}});
    assert!(matches(nested, json!({"user.tier": "gold"}), json!({"targeting_key": "u1", "user": {"id": "u1"}})));
}

/// The batch limit is the resolver's: 5,000 flags resolve, 5,001 are refused.
#[test]
fn the_batch_limit_is_five_thousand_flags() {
    for (n, refused) in [(5000, false), (5001, true)] {
        let flags: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("flags/b{i}"), "state": "ACTIVE", "clients": ["clients/a"]}))
            .collect();
        let state = json!({
            "flags": flags,
            "clients": [{"name": "clients/a"}],
            "clientCredentials": [{"name": "clients/a/credentials/1", "clientSecret": {"secret": "sa"}}],
        })
        .to_string();
        let req = json!({"clientSecret": "sa", "evaluationContext": {}});
        let native = resolve_native(&load_native(&state, ACCOUNT).unwrap(), &req);
        let allot = resolve_allot(&State::parse(&state, Some(ACCOUNT)).unwrap(), &req);
        assert_eq!(native, allot);
        assert_eq!(matches!(native, Outcome::Refused(Refusal::Error)), refused, "{n} flags");
    }
}
