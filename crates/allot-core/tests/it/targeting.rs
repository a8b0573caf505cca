//! Tests of targeting: parsing, evaluation, segments and the disjointness prover.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use allot_core::targeting::*;
use allot_core::Context;
use indexmap::IndexMap;
use proptest::prelude::*;
use serde_json::{json, Value};

fn parse(v: Value) -> Targeting {
    match Targeting::parse(&v, "t") {
        Ok(t) => t,
        Err(e) => panic!("parse of {v} failed: {e:?}"),
    }
}

fn ctx(v: Value) -> Context {
    v.as_object().cloned().expect("context must be an object")
}

fn no_segments() -> IndexMap<String, Targeting> {
    IndexMap::new()
}

/// Whether `expr` matches `context`, with no segments.
fn m(expr: Value, context: Value) -> bool {
    Compiled::compile(&parse(expr), &no_segments()).matches(&ctx(context))
}

/// Checks a table of (context, expected) for one expression.
fn check(expr: Value, cases: &[(Value, bool)]) {
    let compiled = Compiled::compile(&parse(expr.clone()), &no_segments());
    for (context, want) in cases {
        assert_eq!(compiled.matches(&ctx(context.clone())), *want, "{expr} on {context}");
    }
}

fn errors(v: Value, path: &str) -> Vec<(String, String)> {
    match Targeting::parse(&v, path) {
        Ok(t) => panic!("{v} parsed unexpectedly as {t:?}"),
        Err(es) => es.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

fn error_paths(v: Value, path: &str) -> Vec<String> {
    errors(v, path).into_iter().map(|(p, _)| p).collect()
}

fn segments(defs: Value) -> IndexMap<String, Targeting> {
    defs.as_object().unwrap().iter().map(|(k, v)| (k.clone(), parse(v.clone()))).collect()
}

// ------------------------------------------------------------------------------------------
// Equality operators
// ------------------------------------------------------------------------------------------

#[test]
fn eq_strings_numbers_bools() {
    check(
        json!({"attribute": "country", "eq": "SE"}),
        &[
            (json!({"country": "SE"}), true),
            (json!({"country": "se"}), false),
            (json!({"country": "NO"}), false),
            (json!({"country": ["SE"]}), false),
            (json!({}), false),
            (json!({"country": null}), false),
        ],
    );
    check(
        json!({"attribute": "age", "eq": 18}),
        &[
            (json!({"age": 18}), true),
            (json!({"age": 18.0}), true),
            (json!({"age": "18"}), false),
            (json!({"age": 19}), false),
            (json!({}), false),
        ],
    );
    check(json!({"attribute": "age", "eq": 18.0}), &[(json!({"age": 18}), true), (json!({"age": 18.5}), false)]);
    check(
        json!({"attribute": "beta", "eq": true}),
        &[
            (json!({"beta": true}), true),
            (json!({"beta": false}), false),
            (json!({"beta": "true"}), false),
            (json!({"beta": 1}), false),
            (json!({}), false),
        ],
    );
}

#[test]
fn ne_is_present_and_different() {
    check(
        json!({"attribute": "country", "ne": "SE"}),
        &[
            (json!({"country": "NO"}), true),
            (json!({"country": "SE"}), false),
            (json!({"country": 5}), true),
            (json!({"country": ["SE"]}), true),
            (json!({}), false),
            (json!({"country": null}), false),
        ],
    );
    check(
        json!({"attribute": "age", "ne": 18}),
        &[(json!({"age": 18.0}), false), (json!({"age": "18"}), true), (json!({"age": 17}), true)],
    );
}

#[test]
fn in_and_not_in() {
    check(
        json!({"attribute": "country", "in": ["SE", "NO", 7, false]}),
        &[
            (json!({"country": "SE"}), true),
            (json!({"country": "NO"}), true),
            (json!({"country": 7.0}), true),
            (json!({"country": false}), true),
            (json!({"country": true}), false),
            (json!({"country": "US"}), false),
            (json!({"country": "7"}), false),
            (json!({}), false),
            (json!({"country": null}), false),
        ],
    );
    check(
        json!({"attribute": "country", "not_in": ["SE", "NO"]}),
        &[
            (json!({"country": "US"}), true),
            (json!({"country": "SE"}), false),
            (json!({"country": 1}), true),
            (json!({}), false),
            (json!({"country": null}), false),
        ],
    );
    check(json!({"attribute": "country", "in": []}), &[(json!({"country": "SE"}), false), (json!({}), false)]);
    check(json!({"attribute": "country", "not_in": []}), &[(json!({"country": "SE"}), true), (json!({}), false)]);
}

#[test]
fn in_large_list_uses_set() {
    let list: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    let expr = json!({"attribute": "c", "in": list});
    check(
        expr.clone(),
        &[
            (json!({"c": "c0"}), true),
            (json!({"c": "c49"}), true),
            (json!({"c": "c50"}), false),
            (json!({"c": 0}), false),
            (json!({}), false),
        ],
    );
    let not_in = json!({"attribute": "c", "not_in": list});
    check(not_in, &[(json!({"c": "c7"}), false), (json!({"c": "x"}), true), (json!({}), false)]);
}

// ------------------------------------------------------------------------------------------
// Ordering operators
// ------------------------------------------------------------------------------------------

#[test]
fn numeric_comparisons() {
    let cases = |op: &str, value: f64, want: [bool; 3]| {
        check(
            json!({"attribute": "age", op: value}),
            &[
                (json!({"age": 17}), want[0]),
                (json!({"age": 18}), want[1]),
                (json!({"age": 19}), want[2]),
                (json!({}), false),
                (json!({"age": null}), false),
                (json!({"age": true}), false),
                (json!({"age": "abc"}), false),
                (json!({"age": "NaN"}), false),
                (json!({"age": "inf"}), false),
            ],
        );
    };
    cases("gt", 18.0, [false, false, true]);
    cases("gte", 18.0, [false, true, true]);
    cases("lt", 18.0, [true, false, false]);
    cases("lte", 18.0, [true, true, false]);
}

#[test]
fn numeric_strings_are_numbers_for_ordering() {
    check(
        json!({"attribute": "age", "gte": 18}),
        &[
            (json!({"age": "18"}), true),
            (json!({"age": "17.5"}), false),
            (json!({"age": "1e3"}), true),
            (json!({"age": " 18"}), false),
            (json!({"age": 18.5}), true),
        ],
    );
}

#[test]
fn range_in_one_criterion() {
    check(
        json!({"attribute": "age", "gte": 18, "lt": 65}),
        &[
            (json!({"age": 17}), false),
            (json!({"age": 18}), true),
            (json!({"age": 64.9}), true),
            (json!({"age": 65}), false),
            (json!({}), false),
        ],
    );
}

#[test]
fn semver_comparisons() {
    let v = |op: &str, version: &str, context: Value, want: bool| {
        assert_eq!(
            m(json!({"attribute": "app", op: version}), json!({"app": context})),
            want,
            "{op} {version} on {context}"
        );
    };
    v("semver_eq", "1.2.3", json!("1.2.3"), true);
    v("semver_eq", "1.2.3", json!("v1.2.3"), true);
    v("semver_eq", "1.2.3", json!("1.2.3+build.7"), true);
    v("semver_eq", "1.2.0", json!("1.2"), true);
    v("semver_eq", "1.2", json!("1.2.0"), true);
    v("semver_eq", "2.0.0", json!("2"), true);
    v("semver_eq", "1.2.3", json!("1.2.4"), false);
    v("semver_gt", "1.2.3", json!("1.10.0"), true);
    v("semver_gt", "1.2.3", json!("1.2.3"), false);
    v("semver_gt", "1.2.3", json!("1.2.3-beta.1"), false);
    v("semver_gte", "1.2.3", json!("1.2.3"), true);
    v("semver_gte", "1.2.3", json!("1.2.2"), false);
    v("semver_lt", "1.2.3", json!("1.2.3-rc.1"), true);
    v("semver_lt", "1.2.3", json!("1.2.3"), false);
    v("semver_lt", "2.0.0", json!("v1.99"), true);
    v("semver_lte", "1.2.3", json!("1.2.3"), true);
    v("semver_lte", "1.2.3", json!("1.3"), false);
    v("semver_gte", "1.0.0-alpha", json!("1.0.0-alpha.1"), true);
    // Unreadable context values do not match.
    v("semver_gte", "1.0.0", json!("latest"), false);
    v("semver_lt", "1.0.0", json!("1.2.3.4"), false);
    v("semver_lt", "9.0.0", json!(5), false);
    v("semver_lt", "9.0.0", json!(""), false);
    assert!(!m(json!({"attribute": "app", "semver_gte": "1.0.0"}), json!({})));
    assert!(!m(json!({"attribute": "app", "semver_lt": "1.0.0"}), json!({"app": null})));
}

#[test]
fn timestamps_before_and_after() {
    let after = json!({"attribute": "signup", "after": "2024-01-01T00:00:00Z"});
    let before = json!({"attribute": "signup", "before": "2024-01-01T00:00:00Z"});
    let cases: &[(Value, bool, bool)] = &[
        // (value, after, before)
        (json!("2024-01-01T00:00:00Z"), false, false),
        (json!("2024-01-01T00:00:00.000000001Z"), true, false),
        (json!("2023-12-31T23:59:59Z"), false, true),
        (json!("2024-01-01T01:00:00+02:00"), false, true),
        (json!("2024-01-01T01:00:00+01:00"), false, false),
        (json!(1_704_067_200), false, false),
        (json!(1_704_067_201), true, false),
        (json!(1_704_067_199.5), false, true),
        (json!(1_704_067_200.5), true, false),
        (json!("yesterday"), false, false),
        (json!("1704067201"), false, false),
        (json!(true), false, false),
    ];
    for (value, want_after, want_before) in cases {
        let context = json!({"signup": value});
        assert_eq!(m(after.clone(), context.clone()), *want_after, "after on {value}");
        assert_eq!(m(before.clone(), context), *want_before, "before on {value}");
    }
    assert!(!m(after.clone(), json!({})));
    assert!(!m(before, json!({"signup": null})));
    let window = json!({"attribute": "now", "after": "2024-01-01T00:00:00Z", "before": "2024-02-01T00:00:00Z"});
    assert!(m(window.clone(), json!({"now": "2024-01-15T12:00:00Z"})));
    assert!(!m(window, json!({"now": "2024-02-15T12:00:00Z"})));
}

#[test]
fn string_operators() {
    check(
        json!({"attribute": "email", "ends_with": "@example.com"}),
        &[
            (json!({"email": "a@example.com"}), true),
            (json!({"email": "a@EXAMPLE.com"}), false),
            (json!({"email": "a@example.org"}), false),
            (json!({"email": 5}), false),
            (json!({}), false),
        ],
    );
    check(
        json!({"attribute": "path", "starts_with": "/api/"}),
        &[
            (json!({"path": "/api/v1"}), true),
            (json!({"path": "/API/v1"}), false),
            (json!({"path": "x/api/"}), false),
            (json!({"path": null}), false),
        ],
    );
    check(
        json!({"attribute": "ua", "contains": "Firefox"}),
        &[
            (json!({"ua": "Mozilla Firefox 120"}), true),
            (json!({"ua": "mozilla firefox"}), false),
            (json!({"ua": ["Firefox"]}), false),
            (json!({}), false),
        ],
    );
    check(
        json!({"attribute": "s", "starts_with": "", "contains": ""}),
        &[(json!({"s": ""}), true), (json!({"s": 1}), false), (json!({}), false)],
    );
}

#[test]
fn exists() {
    check(
        json!({"attribute": "plan", "exists": true}),
        &[
            (json!({"plan": "pro"}), true),
            (json!({"plan": false}), true),
            (json!({"plan": []}), true),
            (json!({"plan": null}), false),
            (json!({}), false),
        ],
    );
    check(
        json!({"attribute": "plan", "exists": false}),
        &[
            (json!({"plan": "pro"}), false),
            (json!({"plan": 0}), false),
            (json!({"plan": null}), true),
            (json!({}), true),
        ],
    );
    // Other operators beside `exists: false` cannot hold for a missing attribute.
    check(
        json!({"attribute": "plan", "exists": false, "ne": "pro"}),
        &[(json!({}), false), (json!({"plan": "free"}), false)],
    );
}

#[test]
fn large_contexts() {
    // Contexts with many attributes are looked up by hash rather than by a scan.
    let mut context = serde_json::Map::new();
    for i in 0..40 {
        context.insert(format!("k{i}"), json!(i));
    }
    context.insert("country".into(), json!("SE"));
    let expr = json!({"all": [
        {"attribute": "country", "eq": "SE"},
        {"attribute": "k39", "gte": 39},
        {"attribute": "missing", "exists": false}
    ]});
    assert!(m(expr.clone(), Value::Object(context.clone())));
    context.insert("k39".into(), Value::Null);
    assert!(!m(expr, Value::Object(context)));
}

// ------------------------------------------------------------------------------------------
// Quantifiers
// ------------------------------------------------------------------------------------------

#[test]
fn any_quantifier() {
    check(
        json!({"attribute": "tags", "any": {"eq": "beta"}}),
        &[
            (json!({"tags": ["a", "beta"]}), true),
            (json!({"tags": ["a", "b"]}), false),
            (json!({"tags": []}), false),
            (json!({"tags": "beta"}), true),
            (json!({"tags": "alpha"}), false),
            (json!({"tags": [null, "beta"]}), true),
            (json!({}), false),
            (json!({"tags": null}), false),
        ],
    );
    check(
        json!({"attribute": "scores", "any": {"gte": 10, "lt": 20}}),
        &[
            (json!({"scores": [1, 15, 30]}), true),
            (json!({"scores": [1, 30]}), false),
            (json!({"scores": [9.99, 20]}), false),
        ],
    );
    check(
        json!({"attribute": "tags", "any": {"exists": false}}),
        &[(json!({"tags": ["a", null]}), true), (json!({"tags": ["a"]}), false), (json!({}), false)],
    );
}

#[test]
fn all_quantifier() {
    check(
        json!({"attribute": "tags", "all": {"in": ["a", "b"]}}),
        &[
            (json!({"tags": ["a", "b", "a"]}), true),
            (json!({"tags": ["a", "c"]}), false),
            (json!({"tags": []}), false),
            (json!({"tags": "a"}), true),
            (json!({"tags": "c"}), false),
            (json!({"tags": ["a", null]}), false),
            (json!({}), false),
        ],
    );
    check(
        json!({"attribute": "versions", "all": {"semver_gte": "2.0"}}),
        &[(json!({"versions": ["2.0.0", "v2.1"]}), true), (json!({"versions": ["2.0.0", "1.9"]}), false)],
    );
    // Quantifiers nest: a list of lists.
    check(
        json!({"attribute": "m", "any": {"all": {"gt": 0}}}),
        &[(json!({"m": [[1, 2], [0]]}), true), (json!({"m": [[0, 2], []]}), false)],
    );
}

// ------------------------------------------------------------------------------------------
// Logical nodes
// ------------------------------------------------------------------------------------------

#[test]
fn logical_nodes() {
    assert!(m(json!({"all": []}), json!({})));
    assert!(!m(json!({"any": []}), json!({"x": 1})));
    assert!(m(json!({"not": {"any": []}}), json!({})));
    let expr = json!({"all": [
        {"attribute": "country", "in": ["SE", "NO"]},
        {"any": [
            {"attribute": "age", "gte": 18},
            {"attribute": "guardian", "exists": true}
        ]}
    ]});
    check(
        expr,
        &[
            (json!({"country": "SE", "age": 20}), true),
            (json!({"country": "SE", "age": 12}), false),
            (json!({"country": "SE", "age": 12, "guardian": "p"}), true),
            (json!({"country": "US", "age": 20}), false),
            (json!({"age": 20}), false),
        ],
    );
}

#[test]
fn not_inverts_including_missing() {
    check(
        json!({"not": {"attribute": "country", "eq": "SE"}}),
        &[
            (json!({"country": "NO"}), true),
            (json!({"country": "SE"}), false),
            (json!({}), true),
            (json!({"country": null}), true),
        ],
    );
    check(
        json!({"not": {"not": {"attribute": "country", "eq": "SE"}}}),
        &[(json!({"country": "SE"}), true), (json!({}), false)],
    );
    check(
        json!({"not": {"attribute": "country", "ne": "SE"}}),
        &[(json!({"country": "SE"}), true), (json!({"country": "NO"}), false), (json!({}), true)],
    );
}

#[test]
fn is_always() {
    assert!(parse(json!({"all": []})).is_always());
    assert!(parse(json!({"all": [{"all": []}, {"not": {"any": []}}]})).is_always());
    assert!(parse(json!({"any": [{"attribute": "a", "eq": 1}, {"all": []}]})).is_always());
    assert!(!parse(json!({"any": []})).is_always());
    assert!(!parse(json!({"attribute": "a", "exists": true})).is_always());
    assert!(!parse(json!({"segment": "everyone"})).is_always());
    assert!(!parse(json!({"all": [{"attribute": "a", "eq": 1}]})).is_always());
    assert!(Compiled::always().matches(&Context::new()));
}

#[test]
fn attributes_listed_once_in_order() {
    let segs = segments(json!({"adults": {"attribute": "age", "gte": 18}}));
    let t = parse(json!({"all": [
        {"attribute": "country", "eq": "SE"},
        {"segment": "adults"},
        {"not": {"attribute": "country", "eq": "NO"}},
        {"attribute": "tags", "any": {"eq": "x"}}
    ]}));
    assert_eq!(Compiled::compile(&t, &segs).attributes(), vec!["country", "age", "tags"]);
    assert!(Compiled::always().attributes().is_empty());
}

// ------------------------------------------------------------------------------------------
// Segments
// ------------------------------------------------------------------------------------------

#[test]
fn nested_segments_are_inlined() {
    let segs = segments(json!({
        "nordic": {"attribute": "country", "in": ["SE", "NO", "DK", "FI"]},
        "adults": {"attribute": "age", "gte": 18},
        "nordic_adults": {"all": [{"segment": "nordic"}, {"segment": "adults"}]},
    }));
    assert!(check_segments(&segs).is_empty());
    let t = parse(json!({"any": [{"segment": "nordic_adults"}, {"attribute": "staff", "eq": true}]}));
    let c = Compiled::compile(&t, &segs);
    assert!(c.matches(&ctx(json!({"country": "SE", "age": 30}))));
    assert!(!c.matches(&ctx(json!({"country": "SE", "age": 3}))));
    assert!(!c.matches(&ctx(json!({"country": "US", "age": 30}))));
    assert!(c.matches(&ctx(json!({"staff": true}))));
    let not = Compiled::compile(&parse(json!({"not": {"segment": "nordic_adults"}})), &segs);
    assert!(not.matches(&ctx(json!({}))));
    assert!(!not.matches(&ctx(json!({"country": "FI", "age": 18}))));
}

#[test]
fn segment_refs_are_direct_and_unique() {
    let t = parse(json!({"all": [
        {"segment": "a"},
        {"any": [{"segment": "b"}, {"not": {"segment": "a"}}]},
        {"attribute": "x", "eq": 1}
    ]}));
    assert_eq!(t.segment_refs(), vec!["a", "b"]);
    assert!(parse(json!({"attribute": "x", "eq": 1})).segment_refs().is_empty());
}

#[test]
fn unknown_segment_compiles_to_never() {
    let t = parse(json!({"segment": "ghost"}));
    assert!(!Compiled::compile(&t, &no_segments()).matches(&ctx(json!({}))));
    let not = parse(json!({"not": {"segment": "ghost"}}));
    // never-match, negated: matches everyone (no panic either way).
    assert!(Compiled::compile(&not, &no_segments()).matches(&ctx(json!({}))));
}

#[test]
fn check_segments_reports_unknown_references_at_their_path() {
    let segs = segments(json!({
        "a": {"all": [{"attribute": "x", "eq": 1}, {"any": [{"segment": "ghost"}]}]},
        "b": {"not": {"segment": "phantom"}},
    }));
    let errs = check_segments(&segs);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["segments.a.all[1].any[0].segment", "segments.b.not.segment"]);
    assert!(errs[0].message.contains("unknown segment `ghost`"), "{}", errs[0].message);
    assert!(errs[0].message.contains("`a`, `b`"), "{}", errs[0].message);
}

#[test]
fn check_references_for_experiments() {
    let segs = segments(json!({"adults": {"attribute": "age", "gte": 18}}));
    let t = parse(json!({"any": [{"segment": "adults"}, {"segment": "kids"}]}));
    let errs = check_references(&t, "experiments.x.targeting", &segs);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "experiments.x.targeting.any[1].segment");
    assert!(check_references(&parse(json!({"segment": "adults"})), "p", &segs).is_empty());
    let none = check_references(&parse(json!({"segment": "x"})), "p", &no_segments());
    assert!(none[0].message.contains("no segments are defined"), "{}", none[0].message);
}

#[test]
fn check_segments_finds_cycles() {
    let segs = segments(json!({
        "a": {"segment": "b"},
        "b": {"all": [{"segment": "c"}, {"attribute": "x", "eq": 1}]},
        "c": {"not": {"segment": "a"}},
        "self": {"any": [{"segment": "self"}]},
        "ok": {"segment": "a"},
    }));
    let errs = check_segments(&segs);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["segments.a", "segments.self"], "{errs:?}");
    assert!(errs[0].message.contains("a -> b -> c -> a"), "{}", errs[0].message);
    assert!(errs[1].message.contains("self -> self"), "{}", errs[1].message);
    // Compiling through a cycle (which `check_segments` rejects) terminates without panicking:
    // the reference closing the cycle is never-match.
    let c = Compiled::compile(&parse(json!({"segment": "self"})), &segs);
    assert!(!c.matches(&ctx(json!({"x": 1}))));
    let c = Compiled::compile(&parse(json!({"segment": "ok"})), &segs);
    assert!(c.matches(&ctx(json!({"x": 1}))), "ok -> a -> b -> (c = not a -> never) -> true");
}

#[test]
fn valid_segments_pass() {
    let segs = segments(json!({
        "a": {"attribute": "x", "eq": 1},
        "b": {"all": [{"segment": "a"}, {"segment": "a"}]},
        "c": {"any": [{"segment": "b"}, {"segment": "a"}]},
    }));
    assert!(check_segments(&segs).is_empty());
}

// ------------------------------------------------------------------------------------------
// Parse errors
// ------------------------------------------------------------------------------------------

const P: &str = "experiments.ranking-v2.targeting";

#[test]
fn wrong_operator_types_name_the_operator() {
    let errs = errors(
        json!({"all": [
            {"attribute": "country", "in": "SE"},
            {"attribute": "age", "gt": "abc"},
            {"attribute": "x", "eq": [1]},
            {"attribute": "x", "not_in": ["a", {"b": 1}, null]},
            {"attribute": "x", "exists": "yes"},
            {"attribute": "x", "starts_with": 5},
            {"attribute": "x", "semver_gte": "one.two"},
            {"attribute": "x", "semver_lt": 3},
            {"attribute": "x", "before": "2024-13-01"},
            {"attribute": "x", "after": 1700000000},
            {"attribute": "x", "any": ["a"]},
            {"attribute": "x", "all": {}},
            {"attribute": "x", "ne": null}
        ]}),
        P,
    );
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "experiments.ranking-v2.targeting.all[0].in",
            "experiments.ranking-v2.targeting.all[1].gt",
            "experiments.ranking-v2.targeting.all[2].eq",
            "experiments.ranking-v2.targeting.all[3].not_in[1]",
            "experiments.ranking-v2.targeting.all[3].not_in[2]",
            "experiments.ranking-v2.targeting.all[4].exists",
            "experiments.ranking-v2.targeting.all[5].starts_with",
            "experiments.ranking-v2.targeting.all[6].semver_gte",
            "experiments.ranking-v2.targeting.all[7].semver_lt",
            "experiments.ranking-v2.targeting.all[8].before",
            "experiments.ranking-v2.targeting.all[9].after",
            "experiments.ranking-v2.targeting.all[10].any",
            "experiments.ranking-v2.targeting.all[11].all",
            "experiments.ranking-v2.targeting.all[12].ne",
        ]
    );
    assert_eq!(errs[0].1, "expected a list of strings, numbers or booleans, found a string");
    assert_eq!(errs[1].1, "expected a number, found a string");
    assert!(errs[7].1.contains("one.two"), "{}", errs[7].1);
    assert!(errs[9].1.contains("2024-13-01"), "{}", errs[9].1);
}

#[test]
fn unknown_keys_list_valid_ones() {
    let errs = errors(json!({"attribute": "age", "gtee": 18}), P);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0, "experiments.ranking-v2.targeting.gtee");
    assert!(errs[0].1.contains("unknown operator `gtee`"), "{}", errs[0].1);
    assert!(errs[0].1.contains("`gte`") && errs[0].1.contains("`semver_lt`"), "{}", errs[0].1);

    let errs = errors(json!({"every": []}), P);
    assert_eq!(errs[0].0, "experiments.ranking-v2.targeting.every");
    assert!(errs[0].1.contains("unknown key `every`"), "{}", errs[0].1);
    assert!(errs[0].1.contains("`all`, `any`, `not`, `segment`"), "{}", errs[0].1);

    // A logical key inside a criterion is an unknown operator.
    let errs = error_paths(json!({"attribute": "a", "eq": 1, "segment": "s"}), P);
    assert_eq!(errs, vec!["experiments.ranking-v2.targeting.segment"]);

    // An operator without an attribute.
    let errs = errors(json!({"all": [{"eq": "SE"}]}), P);
    assert_eq!(errs[0].0, "experiments.ranking-v2.targeting.all[0].eq");
    assert!(errs[0].1.contains("needs an `attribute`"), "{}", errs[0].1);
}

#[test]
fn structural_errors() {
    // A criterion without an operator.
    let errs = errors(json!({"any": [{"attribute": "age"}]}), P);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0, "experiments.ranking-v2.targeting.any[0]");
    assert!(errs[0].1.contains("no operator"), "{}", errs[0].1);
    // Attribute of the wrong type.
    assert_eq!(error_paths(json!({"attribute": 5, "eq": 1}), P), vec!["experiments.ranking-v2.targeting.attribute"]);
    assert_eq!(error_paths(json!({"attribute": "", "eq": 1}), P), vec!["experiments.ranking-v2.targeting.attribute"]);
    // Not an object.
    assert_eq!(error_paths(json!("country == SE"), P), vec![P]);
    assert_eq!(error_paths(json!({"all": [1]}), P), vec![format!("{P}.all[0]")]);
    // `all` / `any` not lists, `not` not an expression, `segment` not a name.
    assert_eq!(error_paths(json!({"all": {"attribute": "a", "eq": 1}}), P), vec![format!("{P}.all")]);
    assert_eq!(error_paths(json!({"any": null}), P), vec![format!("{P}.any")]);
    assert_eq!(error_paths(json!({"not": []}), P), vec![format!("{P}.not")]);
    assert_eq!(error_paths(json!({"segment": 3}), P), vec![format!("{P}.segment")]);
    assert_eq!(error_paths(json!({"segment": ""}), P), vec![format!("{P}.segment")]);
    // Empty object, two logical keys.
    assert_eq!(error_paths(json!({}), P), vec![P]);
    let errs = errors(json!({"all": [], "any": []}), P);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0, P);
    assert!(errs[0].1.contains("`all`, `any`"), "{}", errs[0].1);
    // `attribute` inside a quantifier.
    assert_eq!(
        error_paths(json!({"attribute": "t", "any": {"attribute": "u", "eq": 1}}), P),
        vec![format!("{P}.any.attribute")]
    );
    // Errors inside quantifiers carry the full path.
    assert_eq!(
        error_paths(json!({"attribute": "t", "all": {"in": "x", "bogus": 1}}), P),
        vec![format!("{P}.all.in"), format!("{P}.all.bogus")]
    );
}

#[test]
fn every_error_is_reported() {
    let errs = error_paths(
        json!({"all": [
            {"attribute": "a", "gt": "x", "lt": "y"},
            {"not": {"any": [{"attribute": "b", "in": 1}, {"bad": true}]}},
            {"segment": false}
        ]}),
        "",
    );
    assert_eq!(errs, vec!["all[0].gt", "all[0].lt", "all[1].not.any[0].in", "all[1].not.any[1].bad", "all[2].segment"]);
}

#[test]
fn lenient_versions_in_criteria() {
    for ok in ["1.2.3", "v1.2.3", "1.2", "V2", "1.0.0-rc.1+b5", " 1.2.3 "] {
        assert!(Targeting::parse(&json!({"attribute": "v", "semver_eq": ok}), "").is_ok(), "{ok}");
    }
    for bad in ["", "v", "1.2.3.4", "1..2", "1.2.x", "1.2.3-", "1.2.3+", "-1.2", "latest"] {
        let errs = error_paths(json!({"attribute": "v", "semver_eq": bad}), "p");
        assert_eq!(errs, vec!["p.semver_eq"], "{bad}");
    }
}

// ------------------------------------------------------------------------------------------
// Round trip
// ------------------------------------------------------------------------------------------

#[test]
fn to_json_round_trips() {
    let source = json!({"all": [
        {"attribute": "country", "in": ["SE", 1, true]},
        {"attribute": "age", "gte": 18, "lt": 65.5},
        {"any": [{"segment": "beta"}, {"not": {"attribute": "x", "exists": false}}]},
        {"attribute": "app", "semver_gte": "1.2.3-rc.1"},
        {"attribute": "t", "after": "2024-01-01T00:00:00+01:00", "before": "2025-01-01T00:00:00Z"},
        {"attribute": "tags", "any": {"starts_with": "a", "ne": "ab"}},
        {"attribute": "tags2", "all": {"ends_with": "z", "contains": "q", "not_in": []}},
        {"attribute": "e", "eq": "x", "ne": false}
    ]});
    let t = parse(source.clone());
    assert_eq!(t.to_json(), source);
    assert_eq!(serde_json::to_value(&t).unwrap(), source);
    assert_eq!(parse(t.to_json()), t);
    // Versions are exported in canonical form.
    let v = parse(json!({"attribute": "app", "semver_lt": "v2"}));
    assert_eq!(v.to_json(), json!({"attribute": "app", "semver_lt": "2.0.0"}));
    assert_eq!(parse(v.to_json()), v);
}

#[test]
fn equality_detects_changes() {
    let a = parse(json!({"attribute": "country", "in": ["SE", "NO"]}));
    assert_eq!(a, parse(json!({"attribute": "country", "in": ["SE", "NO"]})));
    assert_ne!(a, parse(json!({"attribute": "country", "in": ["SE", "DK"]})));
    assert_ne!(a, parse(json!({"attribute": "market", "in": ["SE", "NO"]})));
}

// ------------------------------------------------------------------------------------------
// Disjointness prover
// ------------------------------------------------------------------------------------------

fn disjoint_with(a: Value, b: Value, segs: &IndexMap<String, Targeting>) -> bool {
    let (a, b) = (parse(a), parse(b));
    let ab = provably_disjoint(&a, &b, segs);
    assert_eq!(ab, provably_disjoint(&b, &a, segs), "the prover must be symmetric");
    ab
}

fn disjoint(a: Value, b: Value) -> bool {
    disjoint_with(a, b, &no_segments())
}

#[test]
fn prover_examples_from_the_spec() {
    assert!(disjoint(
        json!({"all": [{"attribute": "country", "in": ["US"]}]}),
        json!({"attribute": "country", "in": ["SE", "NO"]})
    ));
    assert!(!disjoint(
        json!({"attribute": "country", "in": ["US", "SE"]}),
        json!({"attribute": "country", "in": ["SE"]})
    ));
    assert!(disjoint(json!({"attribute": "age", "lt": 18}), json!({"attribute": "age", "gte": 18})));
    assert!(!disjoint(json!({"attribute": "age", "lte": 18}), json!({"attribute": "age", "gte": 18})));
}

#[test]
fn prover_sets() {
    let c = |v: Value| json!({"attribute": "country", "eq": v});
    assert!(disjoint(c(json!("SE")), c(json!("NO"))));
    assert!(!disjoint(c(json!("SE")), c(json!("SE"))));
    // Equality is evaluation's: 18 and 18.0 are equal; "18" and 18 are not.
    assert!(!disjoint(c(json!(18)), c(json!(18.0))));
    assert!(disjoint(c(json!("18")), c(json!(18))));
    // eq vs ne / not_in.
    assert!(disjoint(c(json!("SE")), json!({"attribute": "country", "ne": "SE"})));
    assert!(disjoint(
        json!({"attribute": "country", "in": ["SE", "NO"]}),
        json!({"attribute": "country", "not_in": ["NO", "SE", "DK"]})
    ));
    assert!(!disjoint(
        json!({"attribute": "country", "in": ["SE", "NO"]}),
        json!({"attribute": "country", "not_in": ["SE"]})
    ));
    // Two exclusions never conflict.
    assert!(!disjoint(
        json!({"attribute": "country", "ne": "SE"}),
        json!({"attribute": "country", "not_in": ["SE", "NO"]})
    ));
    // not eq / not in exclude values.
    assert!(disjoint(c(json!("SE")), json!({"not": {"attribute": "country", "eq": "SE"}})));
    assert!(disjoint(
        json!({"attribute": "country", "in": ["SE", "NO"]}),
        json!({"not": {"attribute": "country", "in": ["SE", "NO"]}})
    ));
    // Different attributes never conflict.
    assert!(!disjoint(c(json!("SE")), json!({"attribute": "market", "eq": "NO"})));
    // Empty `in` can match no one.
    assert!(disjoint(json!({"attribute": "x", "in": []}), json!({"all": []})));
}

#[test]
fn prover_intervals() {
    let a = |v: Value| {
        json!({"attribute": "age"})
            .as_object()
            .cloned()
            .map(|mut o| {
                o.extend(v.as_object().unwrap().clone());
                Value::Object(o)
            })
            .unwrap()
    };
    assert!(disjoint(a(json!({"lt": 18})), a(json!({"gte": 18}))));
    assert!(disjoint(a(json!({"lte": 17})), a(json!({"gt": 17}))));
    assert!(!disjoint(a(json!({"lte": 18})), a(json!({"gte": 18}))));
    assert!(!disjoint(a(json!({"lt": 18.5})), a(json!({"gt": 18}))));
    assert!(disjoint(a(json!({"gte": 18, "lt": 30})), a(json!({"gte": 30, "lt": 65}))));
    assert!(!disjoint(a(json!({"gte": 18, "lt": 30})), a(json!({"gte": 29, "lt": 65}))));
    // A side whose own range is empty.
    assert!(disjoint(a(json!({"gt": 5, "lt": 5})), json!({"all": []})));
    // Finite sets against intervals, numeric strings included.
    assert!(disjoint(a(json!({"in": [10, 12]})), a(json!({"gte": 18}))));
    assert!(!disjoint(a(json!({"in": [10, 20]})), a(json!({"gte": 18}))));
    assert!(!disjoint(a(json!({"eq": "20"})), a(json!({"gte": 18}))));
    assert!(disjoint(a(json!({"eq": "abc"})), a(json!({"gte": 18}))));
    assert!(disjoint(a(json!({"eq": true})), a(json!({"lt": 18}))));
    // Interval vs exclusion: the string "18" still fits both, so no conflict.
    assert!(!disjoint(a(json!({"gte": 18, "lte": 18})), a(json!({"ne": 18}))));
    assert!(disjoint(a(json!({"gte": 18, "lte": 18})), a(json!({"eq": 17}))));
}

#[test]
fn prover_timestamps() {
    let t = |op: &str, v: &str| json!({"attribute": "t", op: v});
    assert!(disjoint(t("before", "2024-01-01T00:00:00Z"), t("after", "2024-01-01T00:00:00Z")));
    assert!(disjoint(t("before", "2024-01-01T00:00:00Z"), t("after", "2024-01-01T01:00:00+01:00")));
    assert!(!disjoint(t("before", "2024-01-02T00:00:00Z"), t("after", "2024-01-01T00:00:00Z")));
    assert!(disjoint(json!({"attribute": "t", "eq": "2023-06-01T00:00:00Z"}), t("after", "2024-01-01T00:00:00Z")));
    assert!(!disjoint(json!({"attribute": "t", "eq": 1_800_000_000}), t("after", "2024-01-01T00:00:00Z")));
}

#[test]
fn prover_presence() {
    let missing = json!({"attribute": "plan", "exists": false});
    for positive in [
        json!({"attribute": "plan", "eq": "pro"}),
        json!({"attribute": "plan", "ne": "pro"}),
        json!({"attribute": "plan", "not_in": ["pro"]}),
        json!({"attribute": "plan", "gt": 1}),
        json!({"attribute": "plan", "starts_with": "p"}),
        json!({"attribute": "plan", "semver_gt": "1.0"}),
        json!({"attribute": "plan", "any": {"eq": "x"}}),
        json!({"attribute": "plan", "exists": true}),
        json!({"not": {"attribute": "plan", "exists": false}}),
    ] {
        assert!(disjoint(missing.clone(), positive.clone()), "{positive}");
    }
    assert!(!disjoint(missing.clone(), json!({"not": {"attribute": "plan", "eq": "pro"}})));
    assert!(!disjoint(missing.clone(), json!({"not": {"attribute": "plan", "gt": 1}})));
    assert!(disjoint(missing.clone(), json!({"not": {"not": {"attribute": "plan", "eq": "x"}}})));
    assert!(!disjoint(missing, json!({"attribute": "plan", "exists": false})));
}

#[test]
fn prover_any_branches() {
    let c = |v: &str| json!({"attribute": "country", "eq": v});
    // Every branch constrains country: the union of the allowed sets.
    assert!(disjoint(json!({"any": [c("SE"), c("NO")]}), json!({"any": [c("US"), c("DE")]})));
    assert!(!disjoint(json!({"any": [c("SE"), c("NO")]}), json!({"any": [c("US"), c("NO")]})));
    // A branch that does not constrain country makes the `any` say nothing about it.
    assert!(!disjoint(json!({"any": [c("SE"), {"attribute": "age", "gt": 1}]}), c("US")));
    // Hull of ranges.
    assert!(disjoint(
        json!({"any": [{"attribute": "age", "lt": 10}, {"attribute": "age", "gte": 10, "lt": 18}]}),
        json!({"attribute": "age", "gte": 18})
    ));
    assert!(
        !disjoint(
            json!({"any": [{"attribute": "age", "lt": 10}, {"attribute": "age", "gt": 30}]}),
            json!({"attribute": "age", "gte": 18, "lt": 20})
        ),
        "the hull of the two ranges is unbounded: conservatively not disjoint"
    );
    // The hull keeps a bound's inclusion when either branch includes it.
    assert!(!disjoint(
        json!({"any": [{"attribute": "age", "lte": 18}, {"attribute": "age", "lt": 18}]}),
        json!({"attribute": "age", "gte": 18})
    ));
    assert!(disjoint(
        json!({"any": [{"attribute": "age", "lt": 18}, {"attribute": "age", "lt": 10}]}),
        json!({"attribute": "age", "gte": 18})
    ));
    // Branches that can match no one are dropped.
    assert!(disjoint(json!({"any": [c("SE"), {"all": [c("US"), c("DE")]}]}), c("US")));
    // De Morgan: not(any) is all(not).
    assert!(disjoint(json!({"not": {"any": [c("SE"), c("NO")]}}), json!({"attribute": "country", "in": ["NO", "SE"]})));
    // Nested alls.
    assert!(disjoint(
        json!({"all": [{"all": [c("SE"), {"attribute": "age", "gt": 3}]}, {"all": []}]}),
        json!({"all": [{"attribute": "age", "gt": 5}, c("NO")]})
    ));
    // An empty `any` matches no one, so it is disjoint from everything, itself included.
    assert!(disjoint(json!({"any": []}), json!({"all": []})));
    assert!(disjoint(json!({"any": []}), json!({"any": []})));
    assert!(!disjoint(json!({"all": []}), json!({"all": []})));
    assert!(disjoint(json!({"not": {"all": []}}), c("SE")));
}

#[test]
fn prover_is_conservative() {
    // Quantifiers say nothing about values.
    assert!(!disjoint(
        json!({"attribute": "tags", "any": {"eq": "a"}}),
        json!({"attribute": "tags", "any": {"eq": "b"}})
    ));
    assert!(!disjoint(json!({"attribute": "tags", "all": {"eq": "a"}}), json!({"attribute": "tags", "eq": "b"})));
    // String operators and versions are not reasoned about.
    assert!(!disjoint(
        json!({"attribute": "v", "semver_lt": "1.0.0"}),
        json!({"attribute": "v", "semver_gt": "2.0.0"})
    ));
    // Negated ranges are not reasoned about.
    assert!(!disjoint(json!({"not": {"attribute": "age", "lt": 18}}), json!({"attribute": "age", "lt": 18})));
    // Unknown segments are unknown, not never.
    assert!(!disjoint(json!({"segment": "ghost"}), json!({"attribute": "x", "eq": 1})));
}

#[test]
fn prover_inlines_segments() {
    let segs = segments(json!({
        "nordic": {"attribute": "country", "in": ["SE", "NO"]},
        "us": {"attribute": "country", "eq": "US"},
        "adults": {"attribute": "age", "gte": 18},
        "nordic_adults": {"all": [{"segment": "nordic"}, {"segment": "adults"}]},
        "loop": {"segment": "loop"},
    }));
    assert!(disjoint_with(json!({"segment": "nordic_adults"}), json!({"segment": "us"}), &segs));
    assert!(disjoint_with(json!({"segment": "nordic_adults"}), json!({"attribute": "age", "lt": 18}), &segs));
    assert!(!disjoint_with(json!({"segment": "nordic"}), json!({"segment": "adults"}), &segs));
    assert!(disjoint_with(json!({"segment": "nordic"}), json!({"not": {"segment": "nordic"}}), &segs));
    assert!(!disjoint_with(json!({"segment": "loop"}), json!({"segment": "us"}), &segs));
}

// ------------------------------------------------------------------------------------------
// Property tests: a naive reference interpreter and the prover's soundness
// ------------------------------------------------------------------------------------------

/// A small expression the tests generate, print to JSON and evaluate naively.
#[derive(Debug, Clone)]
enum E {
    All(Vec<E>),
    Any(Vec<E>),
    Not(Box<E>),
    Seg(&'static str),
    Crit(&'static str, Vec<(&'static str, Value)>),
}

impl E {
    fn json(&self) -> Value {
        match self {
            E::All(v) => json!({"all": v.iter().map(E::json).collect::<Vec<_>>()}),
            E::Any(v) => json!({"any": v.iter().map(E::json).collect::<Vec<_>>()}),
            E::Not(e) => json!({"not": e.json()}),
            E::Seg(name) => json!({"segment": name}),
            E::Crit(attr, ops) => {
                let mut m = serde_json::Map::new();
                m.insert("attribute".into(), json!(attr));
                for (op, v) in ops {
                    m.insert(op.to_string(), v.clone());
                }
                Value::Object(m)
            }
        }
    }

    fn numbers(&self, out: &mut Vec<f64>) {
        match self {
            E::All(v) | E::Any(v) => v.iter().for_each(|e| e.numbers(out)),
            E::Not(e) => e.numbers(out),
            E::Seg(_) => {}
            E::Crit(_, ops) => {
                for (_, v) in ops {
                    match v {
                        Value::Number(n) => out.push(n.as_f64().unwrap()),
                        Value::Array(items) => out.extend(items.iter().filter_map(Value::as_f64)),
                        _ => {}
                    }
                }
            }
        }
    }
}

fn segment_defs() -> Vec<(&'static str, E)> {
    let crit = |a, op, v| E::Crit(a, vec![(op, v)]);
    vec![
        ("adults", crit("age", "gte", json!(18))),
        ("nordic", E::Any(vec![crit("country", "eq", json!("SE")), crit("country", "eq", json!("NO"))])),
        ("nordic_adults", E::All(vec![E::Seg("nordic"), E::Seg("adults")])),
    ]
}

fn parsed_segments() -> IndexMap<String, Targeting> {
    segment_defs().into_iter().map(|(n, e)| (n.to_string(), parse(e.json()))).collect()
}

fn same(v: &Value, a: &Value) -> bool {
    match (v, a) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Bool(x), Value::Bool(y)) => x == y,
        _ => false,
    }
}

fn naive_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn naive_op(op: &str, arg: &Value, v: Option<&Value>) -> bool {
    let Some(v) = v else {
        return op == "exists" && arg == &json!(false);
    };
    let cmp = |f: fn(f64, f64) -> bool| naive_number(v).is_some_and(|x| f(x, arg.as_f64().unwrap()));
    let elements: Vec<Option<&Value>> = match v {
        Value::Array(items) => items.iter().map(|e| (!e.is_null()).then_some(e)).collect(),
        other => vec![Some(other)],
    };
    let inner = |e: Option<&Value>| arg.as_object().unwrap().iter().all(|(k, a)| naive_op(k, a, e));
    match op {
        "eq" => same(v, arg),
        "ne" => !same(v, arg),
        "in" => arg.as_array().unwrap().iter().any(|a| same(v, a)),
        "not_in" => !arg.as_array().unwrap().iter().any(|a| same(v, a)),
        "gt" => cmp(|x, y| x > y),
        "gte" => cmp(|x, y| x >= y),
        "lt" => cmp(|x, y| x < y),
        "lte" => cmp(|x, y| x <= y),
        "exists" => arg == &json!(true),
        "any" => elements.into_iter().any(inner),
        "all" => !elements.is_empty() && elements.into_iter().all(inner),
        other => panic!("naive interpreter lacks {other}"),
    }
}

fn naive(e: &E, c: &Context) -> bool {
    match e {
        E::All(v) => v.iter().all(|e| naive(e, c)),
        E::Any(v) => v.iter().any(|e| naive(e, c)),
        E::Not(e) => !naive(e, c),
        E::Seg(name) => {
            let defs = segment_defs();
            let (_, def) = defs.iter().find(|(n, _)| n == name).unwrap();
            naive(def, c)
        }
        E::Crit(attr, ops) => {
            let v = c.get(*attr).filter(|v| !v.is_null());
            ops.iter().all(|(op, arg)| naive_op(op, arg, v))
        }
    }
}

const COUNTRIES: [&str; 4] = ["SE", "NO", "US", "DE"];
const TAGS: [&str; 3] = ["a", "b", "c"];

fn country() -> impl Strategy<Value = Value> {
    prop::sample::select(COUNTRIES.to_vec()).prop_map(|c| json!(c))
}

fn countries() -> impl Strategy<Value = Value> {
    prop::collection::vec(country(), 0..4).prop_map(Value::Array)
}

/// Ages 0..100, biased towards a few values so that bounds often meet exactly.
fn age() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(vec![17i64, 18, 19, 65]).prop_map(|a| json!(a)),
        3 => (0i64..100).prop_map(|a| json!(a)),
        1 => prop::sample::select(vec![17.5, 18.0, 18.5]).prop_map(|a| json!(a)),
    ]
}

fn ages() -> impl Strategy<Value = Value> {
    prop::collection::vec(age(), 0..4).prop_map(Value::Array)
}

fn dedup_ops(mut ops: Vec<(&'static str, Value)>) -> Vec<(&'static str, Value)> {
    let mut seen = Vec::new();
    ops.retain(|(op, _)| {
        let fresh = !seen.contains(op);
        seen.push(*op);
        fresh
    });
    ops
}

fn country_crit() -> impl Strategy<Value = E> {
    prop_oneof![
        country().prop_map(|v| ("eq", v)),
        country().prop_map(|v| ("ne", v)),
        countries().prop_map(|v| ("in", v)),
        countries().prop_map(|v| ("not_in", v)),
        any::<bool>().prop_map(|b| ("exists", json!(b))),
    ]
    .prop_map(|op| E::Crit("country", vec![op]))
}

fn age_op() -> impl Strategy<Value = (&'static str, Value)> {
    prop_oneof![
        age().prop_map(|v| ("eq", v)),
        age().prop_map(|v| ("ne", v)),
        ages().prop_map(|v| ("in", v)),
        ages().prop_map(|v| ("not_in", v)),
        age().prop_map(|v| ("gt", v)),
        age().prop_map(|v| ("gte", v)),
        age().prop_map(|v| ("lt", v)),
        age().prop_map(|v| ("lte", v)),
        any::<bool>().prop_map(|b| ("exists", json!(b))),
    ]
}

fn age_crit() -> impl Strategy<Value = E> {
    prop::collection::vec(age_op(), 1..3).prop_map(|ops| E::Crit("age", dedup_ops(ops)))
}

fn member_crit() -> impl Strategy<Value = E> {
    prop_oneof![
        any::<bool>().prop_map(|b| ("eq", json!(b))),
        any::<bool>().prop_map(|b| ("ne", json!(b))),
        any::<bool>().prop_map(|b| ("exists", json!(b))),
    ]
    .prop_map(|op| E::Crit("member", vec![op]))
}

fn tags_crit() -> impl Strategy<Value = E> {
    let tag = prop::sample::select(TAGS.to_vec()).prop_map(|t| json!(t));
    let inner = prop_oneof![
        tag.clone().prop_map(|t| json!({"eq": t})),
        tag.clone().prop_map(|t| json!({"ne": t})),
        prop::collection::vec(tag, 0..3).prop_map(|l| json!({"in": l})),
        any::<bool>().prop_map(|b| json!({"exists": b})),
    ];
    (any::<bool>(), inner).prop_map(|(all, inner)| E::Crit("tags", vec![(if all { "all" } else { "any" }, inner)]))
}

fn expr() -> impl Strategy<Value = E> {
    let leaf = prop_oneof![
        3 => country_crit(),
        3 => age_crit(),
        1 => member_crit(),
        1 => tags_crit(),
        1 => prop::sample::select(vec!["adults", "nordic", "nordic_adults"]).prop_map(E::Seg),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(E::All),
            prop::collection::vec(inner.clone(), 0..4).prop_map(E::Any),
            inner.prop_map(|e| E::Not(Box::new(e))),
        ]
    })
}

/// Expressions the prover can often decide: a leaf, or a conjunction or disjunction of leaves.
fn flat_expr() -> impl Strategy<Value = E> {
    let leaf = prop_oneof![
        3 => country_crit(),
        4 => age_crit(),
        1 => member_crit(),
        1 => tags_crit(),
        1 => prop::sample::select(vec!["adults", "nordic", "nordic_adults"]).prop_map(E::Seg),
    ];
    prop_oneof![
        2 => leaf.clone(),
        2 => prop::collection::vec(leaf.clone(), 1..4).prop_map(E::All),
        1 => prop::collection::vec(leaf.clone(), 1..3).prop_map(E::Any),
        1 => leaf.prop_map(|e| E::Not(Box::new(e))),
    ]
}

/// Pairs of expressions for the prover: mostly flat ones, some deep ones.
fn pair() -> impl Strategy<Value = (E, E)> {
    let side = prop_oneof![3 => flat_expr(), 1 => expr()];
    (side.clone(), side)
}

/// Every context over the attributes' domains, with ages at and around each constant used.
fn contexts(exprs: &[&E]) -> Vec<Context> {
    let mut nums = vec![0.0, 18.0, 100.0];
    for e in exprs {
        e.numbers(&mut nums);
    }
    let mut age_values = vec![Value::Null, json!(null), json!(true)];
    for n in &nums {
        for d in [-0.5, 0.0, 0.5] {
            let x = n + d;
            age_values.push(if x.fract() == 0.0 { json!(x as i64) } else { json!(x) });
        }
        age_values.push(json!(format!("{n}")));
    }
    let mut country_values = vec![Value::Null, json!(null), json!(5)];
    country_values.extend(COUNTRIES.iter().map(|c| json!(c)));
    let member_values = [Value::Null, json!(true), json!(false), json!("true")];
    let tag_values = [Value::Null, json!([]), json!(["a"]), json!(["a", "b"]), json!("c"), json!([null, "b"])];
    let mut out = Vec::new();
    for (ai, a) in age_values.iter().enumerate() {
        for (ci, c) in country_values.iter().enumerate() {
            for (mi, m) in member_values.iter().enumerate() {
                for (ti, t) in tag_values.iter().enumerate() {
                    let mut ctx = Context::new();
                    // Index 0 of each domain stands for "absent"; a JSON null is separate.
                    if ai > 0 {
                        ctx.insert("age".into(), a.clone());
                    }
                    if ci > 0 {
                        ctx.insert("country".into(), c.clone());
                    }
                    if mi > 0 {
                        ctx.insert("member".into(), m.clone());
                    }
                    if ti > 0 {
                        ctx.insert("tags".into(), t.clone());
                    }
                    out.push(ctx);
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn matches_agrees_with_naive_interpreter(e in expr()) {
        let segs = parsed_segments();
        let t = parse(e.json());
        prop_assert!(check_segments(&segs).is_empty());
        let compiled = Compiled::compile(&t, &segs);
        for c in contexts(&[&e]) {
            prop_assert_eq!(compiled.matches(&c), naive(&e, &c), "{} on {:?}", e.json(), c);
        }
        // Round trip through JSON keeps the meaning and the tree.
        prop_assert_eq!(parse(t.to_json()), t);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn prover_is_sound((a, b) in pair()) {
        let segs = parsed_segments();
        let (ta, tb) = (parse(a.json()), parse(b.json()));
        if provably_disjoint(&ta, &tb, &segs) {
            let (ca, cb) = (Compiled::compile(&ta, &segs), Compiled::compile(&tb, &segs));
            for c in contexts(&[&a, &b]) {
                prop_assert!(
                    !(ca.matches(&c) && cb.matches(&c)),
                    "claimed disjoint, but both match {:?}\n a = {}\n b = {}", c, a.json(), b.json()
                );
            }
        }
    }
}

/// The soundness property is not vacuous: the generator yields many pairs the prover separates.
#[test]
fn prover_is_often_decisive_on_generated_pairs() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let segs = parsed_segments();
    let mut runner = TestRunner::deterministic();
    let strategy = pair();
    let mut proved = 0;
    for _ in 0..1000 {
        let (a, b) = strategy.new_tree(&mut runner).unwrap().current();
        if provably_disjoint(&parse(a.json()), &parse(b.json()), &segs) {
            proved += 1;
        }
    }
    assert!(proved >= 200, "only {proved} of 1000 pairs proved disjoint");
}

/// One operator list: every key of `OPERATOR_KEYS` parses into the operator written with that
/// key (`Operator::key`), the parser knows no other, and the reference in docs/config.md and
/// the module documentation list each.
#[test]
fn the_operator_list_has_one_source() {
    let sample = |k: &str| match k {
        "eq" | "ne" | "starts_with" | "ends_with" | "contains" => json!("x"),
        "in" | "not_in" => json!(["x"]),
        "gt" | "gte" | "lt" | "lte" => json!(1),
        k if k.starts_with("semver_") => json!("1.2.3"),
        "before" | "after" => json!("2026-01-01T00:00:00Z"),
        "exists" => json!(true),
        "any" | "all" => json!({"eq": "x"}),
        other => panic!("no sample value for `{other}`: add it here and to the docs"),
    };
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md")).unwrap();
    for &k in OPERATOR_KEYS {
        let t = parse(json!({"attribute": "a", k: sample(k)}));
        let Targeting::Criterion(c) = &t else { panic!("{k}: {t:?}") };
        let keys: Vec<&str> = c.operators.iter().map(Operator::key).collect();
        assert_eq!(keys, [k]);
        assert!(docs.contains(&format!("`{k}`")), "docs/config.md does not list `{k}`");
    }
    let err = Targeting::parse(&json!({"attribute": "a", "matches": "x"}), "t").unwrap_err();
    assert!(err[0].message.contains("unknown operator `matches`"), "{err:?}");
}
