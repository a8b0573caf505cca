//! Malformed states, requests and flag files get an error that names the place; nothing panics.

use crate::spec;
use allot_compat::amplitude::Flags;
use allot_compat::confidence::{Request, State};

#[test]
fn truncated_confidence_states() {
    for file in ["confidence/state.json", "confidence/resolver_state.json"] {
        let text = spec(file);
        for cut in [1, 10, 100, 1000, 5000, text.len() / 2, text.len() - 2] {
            let e = State::parse(&text[..cut], Some("acct")).unwrap_err();
            assert!(!e.path().is_empty(), "{file} cut at {cut}: {e}");
            assert!(e.to_string().contains("EOF"), "{file} cut at {cut}: {e}");
        }
    }
}

#[test]
fn wrong_types_in_a_confidence_state_name_the_path() {
    let text = spec("confidence/state.json");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["flags"]["flags/simple-flag"]["rules"][0]["assignmentSpec"]["bucketCount"] = "many".into();
    let e = State::parse(&v.to_string(), None).unwrap_err();
    assert_eq!(e.path(), "flags.flags/simple-flag.rules[0].assignmentSpec.bucketCount", "{e}");

    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["bitsets"]["segments/bitset-specific"] = serde_json::json!([1, 2, 2000000]);
    let e = State::parse(&v.to_string(), None).unwrap_err();
    assert_eq!(e.path(), "bitsets.segments/bitset-specific[2]", "{e}");

    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["segments"]["segments/country-se"]["targeting"]["criteria"] = serde_json::json!([1]);
    let e = State::parse(&v.to_string(), None).unwrap_err();
    assert_eq!(e.path(), "segments.segments/country-se.targeting.criteria", "{e}");

    let e = State::parse("[1, 2]", None).unwrap_err();
    assert_eq!(e.path(), ".", "{e}");
}

#[test]
fn a_broken_gzipped_bitset_names_it() {
    let text = spec("confidence/resolver_state.json");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["bitsets"][1]["gzippedBitset"] = "H4sIAAAA".into();
    let e = State::parse(&v.to_string(), Some("acct")).unwrap_err();
    assert_eq!(e.path(), "bitsets[1].gzippedBitset", "{e}");
    let e = State::parse(&text, None).unwrap_err();
    assert_eq!(e.path(), "account", "{e}");
}

#[test]
fn malformed_requests() {
    let e = Request::parse(r#"{"flags": "flags/x", "clientSecret": "s"}"#).unwrap_err();
    assert_eq!(e.path(), "flags", "{e}");
    let e = Request::parse(r#"{"flags": []}"#).unwrap_err();
    assert!(e.to_string().contains("clientSecret"), "{e}");
    let e =
        Request::parse(r#"{"clientSecret": "s", "materializations": {"u": {"m": {"isUnitInMaterialization": 3}}}}"#)
            .unwrap_err();
    assert_eq!(e.path(), "materializations.u.m.isUnitInMaterialization", "{e}");
}

#[test]
fn truncated_and_mistyped_amplitude_flags() {
    let text = spec("amplitude/flags.json");
    for cut in [1, 10, 100, 1000, text.len() - 2] {
        let e = Flags::parse(&text[..cut]).unwrap_err();
        assert!(e.to_string().contains("EOF"), "cut at {cut}: {e}");
    }
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[0]["segments"][0]["bucket"]["allocations"][0]["range"] = serde_json::json!([0]);
    let e = Flags::parse(&v.to_string()).unwrap_err();
    assert_eq!(e.path(), "[0].segments[0].bucket.allocations[0].range", "{e}");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[2]["segments"][0]["conditions"][0][0]["values"] = serde_json::json!("on");
    let e = Flags::parse(&v.to_string()).unwrap_err();
    assert_eq!(e.path(), "[2].segments[0].conditions[0][0].values", "{e}");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[2]["segments"][0]["conditions"][0][0]["op"] = "regex match".into();
    let e = Flags::parse(&v.to_string()).unwrap_err();
    assert_eq!(e.path(), "[2].segments[0].conditions[0][0].op", "{e}");
    let e = Flags::parse(r#"{"key": "x"}"#).unwrap_err();
    assert_eq!(e.path(), ".", "{e}");
}
