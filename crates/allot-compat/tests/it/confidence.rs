//! Every case of Confidence's resolver specification (`spec/confidence/tests.json`), run one by
//! one against `spec/confidence/state.json`; `expectedResult.rust` where present, except in
//! [`GENERAL_OVER_RUST`].

use crate::spec;
use allot_compat::confidence::{response_json, Request, State};
use serde_json::Value;

fn state() -> State {
    State::parse(&spec("confidence/state.json"), None).unwrap()
}

/// The request the CLI reads: the case's `resolveRequest` with its `materializations`.
pub fn request_of(case: &Value) -> Value {
    let mut req = case["resolveRequest"].clone();
    if let Some(m) = case.get("materializations") {
        req.as_object_mut().unwrap().insert("materializations".into(), m.clone());
    }
    req
}

/// Cases whose `expectedResult.rust` override is outdated: the Rust resolver, `confidence_resolver`
/// 0.26.1, gives the `general` expectation, and allot follows the resolver. Null equality reads
/// the context before conversion (`is_null_*`, `is_not_null_missing`); `any`/`all` over a missing
/// or null attribute see an empty list (`not_all_*`, `all_rule_null_list`,
/// `all_rule_missing_field`); a range without bounds matches nothing (`empty_range_rule`).
/// `confidence_differential::every_specification_case_as_the_resolver_gives_it` runs every case
/// through the resolver itself and proves this list; the two other overrides
/// (`mat_matched_no_variant_for_rule`, `all_rule_heterogeneous`) still hold.
const GENERAL_OVER_RUST: [&str; 8] = [
    "empty_range_rule",
    "is_null_explicit",
    "is_null_implicit",
    "is_not_null_missing",
    "not_all_null_list",
    "not_all_missing_field",
    "all_rule_null_list",
    "all_rule_missing_field",
];

/// Compares one case; returns the differences.
fn check(state: &State, case: &Value) -> Result<(), String> {
    let general = &case["expectedResult"]["general"];
    let expected = if GENERAL_OVER_RUST.contains(&case["name"].as_str().unwrap_or_default()) {
        general
    } else {
        case["expectedResult"].get("rust").unwrap_or(general)
    };
    let req = Request::parse(&request_of(case).to_string()).map_err(|e| format!("request: {e}"))?;
    let result = state.resolve(&req);
    if !expected["expectError"].is_null() {
        return match result {
            Err(_) => Ok(()),
            Ok(r) => Err(format!("expected error {}, got {}", expected["expectError"], response_json(&r))),
        };
    }
    let resolved = result.map_err(|e| format!("unexpected error: {e}"))?;
    let actual = response_json(&resolved);
    let actual = actual["resolvedFlags"].as_array().unwrap();
    let want = expected["resolvedFlags"].as_array().unwrap();
    if actual.len() != want.len() {
        return Err(format!("expected {} flags, got {}: {actual:?}", want.len(), actual.len()));
    }
    for w in want {
        let a = actual
            .iter()
            .find(|a| a["flag"] == w["flag"])
            .ok_or_else(|| format!("flag {} missing from {actual:?}", w["flag"]))?;
        for field in ["reason", "variant"] {
            if a[field] != w[field] {
                return Err(format!("{} {field}: expected {}, got {}", w["flag"], w[field], a[field]));
            }
        }
        // A client default resolves to an empty struct where the specification writes null.
        let empty = Value::Object(Default::default());
        let value_ok = a["value"] == w["value"] || (w["value"].is_null() && a["value"] == empty);
        if !value_ok {
            return Err(format!("{} value: expected {}, got {}", w["flag"], w["value"], a["value"]));
        }
        if !w["shouldApply"].is_null() && a["shouldApply"] != w["shouldApply"] {
            return Err(format!("{} shouldApply: expected {}, got {}", w["flag"], w["shouldApply"], a["shouldApply"]));
        }
    }
    Ok(())
}

#[test]
fn every_case_of_the_resolver_specification() {
    let state = state();
    let cases: Vec<Value> = serde_json::from_str(&spec("confidence/tests.json")).unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(e) = check(&state, case) {
            failures.push(format!("{}: {e}", case["name"].as_str().unwrap()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases fail:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert_eq!(cases.len(), 166, "the specification has 166 cases");
    assert_eq!(cases.iter().filter(|c| c.get("materializations").is_some()).count(), 20);
    for name in GENERAL_OVER_RUST {
        let case = cases.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no case {name}"));
        assert!(case["expectedResult"].get("rust").is_some(), "{name} has no rust override any more");
    }
}

#[test]
fn the_published_resolver_state() {
    let state = State::parse(&spec("confidence/resolver_state.json"), Some("confidence-demo-june")).unwrap();
    let secret = "mkjJruAATQWjeY7foFIWfVAcBWnci2YF";
    let resolve = |ctx: Value, flag: &str| {
        let req = Request::parse(
            &serde_json::json!({"clientSecret": secret, "flags": [flag], "evaluationContext": ctx}).to_string(),
        )
        .unwrap();
        let r = state.resolve(&req).unwrap();
        response_json(&r)["resolvedFlags"][0].clone()
    };
    // The resolver's own unit tests: an override by visitor id, and fallthrough rules.
    let f = resolve(serde_json::json!({"visitor_id": "tutorial_visitor"}), "flags/tutorial-feature");
    assert_eq!(f["variant"], "flags/tutorial-feature/variants/exciting-welcome");
    assert_eq!(f["shouldApply"], true);
    let f = resolve(serde_json::json!({"visitor_id": "57"}), "flags/fallthrough-test-1");
    assert_eq!(f["reason"], "RESOLVE_REASON_NO_SEGMENT_MATCH");
    assert_eq!(f["shouldApply"], true);
    let f = resolve(serde_json::json!({"visitor_id": "26"}), "flags/fallthrough-test-2");
    assert_eq!(f["reason"], "RESOLVE_REASON_MATCH");
    assert_eq!(f["variant"], "flags/fallthrough-test-2/variants/enabled");
}

#[test]
fn the_account_bucket_is_allots_bucket() {
    // PROVENANCE.md: bucket("MegaSalt-confidence-test|roug", 1000000) == 567493.
    assert_eq!(allot_core::hash::bucket("MegaSalt-confidence-test", "roug", 1_000_000), 567_493);
}

#[test]
fn a_request_that_needs_materializations_names_them() {
    let state = state();
    let req = Request::parse(
        r#"{"flags": ["flags/mat-read-flag"], "evaluationContext": {"targeting_key": "user1", "country": "SE"}, "clientSecret": "test-secret"}"#,
    )
    .unwrap();
    let e = state.resolve(&req).unwrap_err().to_string();
    assert!(e.contains("materializations/mat1"), "{e}");
}
