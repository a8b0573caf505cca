//! Inputs that used to bring allot down or open a back door in change control (issue 14): each
//! test is the case that found it.

use allot_core::config::{self, MAX_VARIANTS};
use allot_core::eval::{NoSticky, Reason, Snapshot};
use allot_core::plan::{self, ApplyError, Options};
use allot_core::state::State;
use allot_core::targeting::MAX_TARGETING_NODES;
use allot_core::testing::edit;
use allot_core::Context;
use serde_json::json;
use std::fmt::Write;

fn opts() -> Options {
    Options { time: "2026-01-01T00:00:00Z".into(), ..Options::default() }
}

fn apply(st: &State, yaml: &str) -> Result<plan::Plan, ApplyError> {
    let raw = config::parse_yaml(yaml).unwrap();
    let c = config::validate(&raw).unwrap_or_else(|e| panic!("{}", allot_core::Errors(e)));
    plan::apply(st, &c, &raw, &opts())
}

/// A chain of `n` segments, each using the previous one twice: 2^n nodes when inlined.
fn doubling_chain(n: usize) -> String {
    let mut y = String::from("units: {user: {attribute: user_id}}\nsegments:\n  s0: {attribute: country, eq: SE}\n");
    for i in 1..n {
        writeln!(y, "  s{i}: {{any: [{{segment: s{}}}, {{all: [{{segment: s{}}}]}}]}}", i - 1, i - 1).unwrap();
    }
    writeln!(
        y,
        "experiments:\n  e: {{unit: user, share: 10%, variants: {{c: 1, t: 1}}, state: running, targeting: {{segment: s{}}}}}",
        n - 1
    )
    .unwrap();
    y
}

#[test]
fn a_doubling_segment_chain_is_refused_at_the_first_segment_past_the_bound() {
    let text = doubling_chain(26);
    assert!(text.len() < 2_000, "the attack is small: {} bytes", text.len());
    let errs = config::load(&text).unwrap_err();
    // s0 has 1 node; a reference to s_i counts 3 + 2 × a reference to s_{i-1}: s11 (10,236
    // nodes) is the first past 10,000.
    let first = errs.iter().find(|e| e.path.starts_with("segments.")).unwrap();
    assert_eq!(first.path, "segments.s11", "{errs:?}");
    assert!(first.message.contains(&MAX_TARGETING_NODES.to_string()), "{}", first.message);
    assert!(errs.iter().any(|e| e.path == "experiments.e.targeting"), "{errs:?}");
    // Only the first of the chain is reported, not every segment after it.
    assert_eq!(errs.iter().filter(|e| e.path.starts_with("segments.")).count(), 1, "{errs:?}");
}

#[test]
fn a_chain_within_the_bound_compiles_once_per_segment_and_evaluates() {
    // 11 levels: 5,117 nodes inlined, within the bound; compiled as a DAG.
    let text = doubling_chain(11);
    let st = apply(&State::default(), &text).unwrap().state;
    let snap = Snapshot::compile(&st).unwrap();
    let i = snap.index_of("e").unwrap();
    let (mut assigned_se, mut assigned_no) = (0, 0);
    for u in 0..400 {
        for (country, n) in [("SE", &mut assigned_se), ("NO", &mut assigned_no)] {
            let mut c = Context::new();
            c.insert("user_id".into(), json!(format!("u{u}")));
            c.insert("country".into(), json!(country));
            if snap.evaluate_one(i, &c, &NoSticky).reason == Reason::Assigned {
                *n += 1;
            }
        }
    }
    assert!(assigned_se > 0, "the chain matches SE");
    assert_eq!(assigned_no, 0, "the chain matches only SE");
}

#[test]
fn too_many_variants_is_an_error_not_a_truncation() {
    let mut y = String::from(
        "units: {user: {attribute: user_id}}\nexperiments:\n  e:\n    unit: user\n    share: 10%\n    variants:\n",
    );
    for i in 0..=MAX_VARIANTS {
        writeln!(y, "      v{i}: 1").unwrap();
    }
    let errs = config::load(&y).unwrap_err();
    assert_eq!(errs[0].path, "experiments.e.variants", "{errs:?}");
    assert!(errs[0].message.contains("at most 1000"), "{}", errs[0].message);
}

const NORDICS: &str = r#"
units: {user: {attribute: user_id, buckets: 10000}}
segments:
  nordics: {attribute: country, in: [SE, NO]}
experiments:
  e: {unit: user, share: 50%, variants: {c: 1, t: 1}, state: running, targeting: {segment: nordics}}
"#;

#[test]
fn narrowing_a_segment_that_a_running_experiment_uses_is_refused() {
    let st = apply(&State::default(), NORDICS).unwrap().state;
    let narrowed = edit(NORDICS, "in: [SE, NO]", "in: [NO]");
    assert_ne!(narrowed, NORDICS);
    match apply(&st, &narrowed) {
        Err(ApplyError::Refused(p)) => {
            let r = p.refusals.iter().find(|r| r.path == "experiments.e.targeting").expect("refused at the targeting");
            assert!(r.message.contains("through its segments"), "{}", r.message);
            assert!(p.impact["e"].targeting_changed);
            let seg = p.changes.iter().find(|c| c.entity == "segment").unwrap();
            assert_eq!((seg.id.as_str(), seg.action.as_str()), ("nordics", "update"));
            assert!(seg.detail.contains('e'), "{}", seg.detail);
        }
        other => panic!("expected a refusal, got {:?}", other.map(|p| p.changes)),
    }
    // Widening through the segment is allowed and logged as a segment update.
    let widened = edit(NORDICS, "in: [SE, NO]", "in: [SE, NO, FI]");
    let p = apply(&st, &widened).unwrap();
    assert!(p.changes.iter().any(|c| c.entity == "segment" && c.action == "update"), "{:?}", p.changes);
    assert!(p.changes.iter().any(|c| c.entity == "experiment" && c.detail.contains("through its segments")));
}

#[test]
fn changing_the_attribute_of_a_unit_type_in_use_is_refused_with_its_impact() {
    let st = apply(&State::default(), NORDICS).unwrap().state;
    let moved = edit(NORDICS, "attribute: user_id", "attribute: account_id");
    match apply(&st, &moved) {
        Err(ApplyError::Refused(p)) => {
            let r = p.refusals.iter().find(|r| r.path == "units.user.attribute").expect("refused at the unit type");
            assert_eq!(r.rule, "unit-type-fixed");
            assert!(r.message.contains("user_id") && r.message.contains("account_id") && r.message.contains(": e"));
            assert_eq!(p.impact["e"].moved_share, 1.0);
        }
        other => panic!("expected a refusal, got {:?}", other.map(|p| p.changes)),
    }
    // With nothing running it is an ordinary update.
    let stopped = edit(&moved, "state: running", "state: stopped");
    let p = apply(&st, &edit(&stopped, "attribute: account_id", "attribute: user_id")).unwrap();
    let p2 = apply(&p.state, &stopped).unwrap();
    assert!(p2.changes.iter().any(|c| c.entity == "unit" && c.detail.contains("account_id")), "{:?}", p2.changes);
    // Buckets and salt stay errors while the space holds allocations (as before).
    let rebucket = edit(NORDICS, "buckets: 10000", "buckets: 20000");
    assert!(matches!(apply(&st, &rebucket), Err(ApplyError::Invalid(_))));
}

#[test]
fn adding_a_surface_or_segment_is_logged_as_what_it_is() {
    let st = apply(&State::default(), NORDICS).unwrap().state;
    let more = edit(NORDICS, "segments:\n", "surfaces: [home]\nsegments:\n  us: {attribute: country, eq: US}\n");
    let p = apply(&st, &more).unwrap();
    let kinds: Vec<(&str, &str, &str)> =
        p.changes.iter().map(|c| (c.entity.as_str(), c.action.as_str(), c.id.as_str())).collect();
    assert!(kinds.contains(&("segment", "create", "us")), "{kinds:?}");
    assert!(kinds.contains(&("surface", "create", "home")), "{kinds:?}");
}

#[test]
fn hostile_bucket_sets_are_refused_without_panic_or_huge_allocations() {
    use allot_core::bucketset::BucketSet;
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    // A delta list whose sum overflows u64, and a varint longer than 64 bits.
    let overflow = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x01,
    ];
    assert!(BucketSet::decode(&format!("1000000:d20:{}", b64(&overflow))).is_none());
    let long = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert!(BucketSet::decode(&format!("1000000:d10:{}", b64(&long))).is_none());
    // A space past the largest a configuration may declare (it would allocate ~500 MB).
    assert!(BucketSet::decode(&format!("4000000000:b0:{}", b64(&[0]))).is_none());
    // A well-formed set still decodes.
    let ok = allot_core::bucketset::BucketBitmap::full(1000).compact();
    assert_eq!(BucketSet::decode(&ok.encode()).unwrap(), ok);
}

/// Found by fuzzing (issue 14): the YAML scanner costs time proportional to the nesting depth for
/// every token, so 200 KB of `[[[...]]]` took minutes to refuse (and a reader's preview held a
/// server thread that long). Nesting past `MAX_FLOW_NESTING` is refused before the YAML parser
/// runs, with an error that says so.
#[test]
fn deeply_nested_flow_collections_are_refused_before_the_yaml_parser() {
    let deep = |open: &str, close: &str, n: usize| format!("a: {}1{}", open.repeat(n), close.repeat(n));
    for text in [
        deep("[", "]", 100_000),
        deep("{a: ", "}", 100_000),
        deep("[", "", 100_000),
        format!("{{\"a\": {}1{}}}", "[".repeat(50_000), "]".repeat(50_000)),
        // Tags, anchors and quoted scalars between the levels do not hide them.
        format!("a: {}", "[!!str \"]\", &x '}' , ".repeat(5_000)),
    ] {
        let e = config::parse_yaml(&text).unwrap_err();
        assert_eq!(e.path, "");
        assert!(e.message.contains(&format!("nested more than {} levels", config::MAX_FLOW_NESTING)), "{}", e.message);
        assert!(config::load(&text).is_err());
    }
    // Within the bound, the YAML parser decides (it refuses more than 128 levels).
    assert!(config::parse_yaml(&deep("[", "]", 100)).is_ok());
    let e = config::parse_yaml(&deep("[", "]", 500)).unwrap_err();
    assert!(!e.message.contains("nested more than"), "{}", e.message);
    // Brackets in quoted scalars and comments do not count: a configuration may hold them.
    let text = format!(
        "units: {{user: {{attribute: user_id}}}}\n# {}\nexperiments:\n  e:\n    unit: user\n    share: 10%\n    variants: {{a: 1}}\n    description: \"{}\"\n    owner: '{}'\n",
        "[".repeat(5_000),
        "[{".repeat(5_000),
        "['']".repeat(5_000),
    );
    config::load(&text).unwrap_or_else(|e| panic!("{}", allot_core::Errors(e)));
}

/// A state file whose space is larger than any configuration allows is refused when read (a
/// re-salt over 4,294,967,295 buckets would overflow the shard arithmetic and take 17 GB).
#[test]
fn a_state_with_an_oversized_space_is_refused_when_read() {
    let raw = allot_core::config::parse_yaml("units: {user: {attribute: user_id, buckets: 1000}}\n").unwrap();
    let cfg = allot_core::config::validate(&raw).unwrap();
    let st =
        allot_core::plan::apply(&allot_core::state::State::default(), &cfg, &raw, &Default::default()).unwrap().state;
    let (st, _) = allot_core::salt::resalt(&st, "user", "2026-01-01T00:00:00Z", None, None).unwrap();
    let mut v = serde_json::to_value(&st).unwrap();
    v["spaces"]["user"]["buckets"] = serde_json::json!(4_294_967_295u64);
    let err = allot_core::state::State::from_json(&v.to_string()).unwrap_err();
    assert!(err.contains("spaces.user.buckets") && err.contains("100000000"), "{err}");
}
