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
    // A regular expression JavaScript rejects (the engine would throw when it reaches it).
    v[2]["segments"][0]["conditions"][0][0]["op"] = "regex match".into();
    v[2]["segments"][0]["conditions"][0][0]["values"] = serde_json::json!(["^ok", "(unclosed"]);
    let e = Flags::parse(&v.to_string()).unwrap_err();
    assert_eq!(e.path(), "[2].segments[0].conditions[0][0].values[1]", "{e}");
    // A repeated group that repeats: exponential on a near-miss (found by fuzzing: minutes for
    // `"a" × 30 + "!"`), refused when read.
    v[2]["segments"][0]["conditions"][0][0]["values"] = serde_json::json!(["^ok", "^(a+)+$"]);
    let e = Flags::parse(&v.to_string()).unwrap_err();
    assert_eq!(e.path(), "[2].segments[0].conditions[0][0].values[1]", "{e}");
    assert!(e.to_string().contains("exponential"), "{e}");
    // Overlapping alternatives under a repetition: as exponential (`"a" × 30 + "!"` against
    // `^(a|a)*$` is 2^30 ways to split), refused when read too.
    for pattern in ["^(a|a)*$", "^(a|ab)*c$"] {
        v[2]["segments"][0]["conditions"][0][0]["values"] = serde_json::json!(["^ok", pattern]);
        let e = Flags::parse(&v.to_string()).unwrap_err();
        assert_eq!(e.path(), "[2].segments[0].conditions[0][0].values[1]", "{pattern}: {e}");
        assert!(e.to_string().contains("alternatives"), "{e}");
    }
    // Alternatives that start differently stay allowed.
    v[2]["segments"][0]["conditions"][0][0]["values"] = serde_json::json!(["^ok", "^(gold|plus)+$"]);
    Flags::parse(&v.to_string()).unwrap();
    let e = Flags::parse(r#"{"key": "x"}"#).unwrap_err();
    assert_eq!(e.path(), ".", "{e}");
}

/// Every leaf path of a JSON document.
fn leaves(v: &serde_json::Value, path: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, c) in m {
                let mut p = path.clone();
                p.push(k.clone());
                leaves(c, p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let mut p = path.clone();
                p.push(i.to_string());
                leaves(c, p, out);
            }
        }
        _ => out.push(path),
    }
}

fn replaced(doc: &serde_json::Value, path: &[String], with: &serde_json::Value) -> serde_json::Value {
    let mut doc = doc.clone();
    let mut cur = &mut doc;
    for p in path {
        cur = match cur {
            serde_json::Value::Object(m) => m.get_mut(p).unwrap(),
            serde_json::Value::Array(a) => &mut a[p.parse::<usize>().unwrap()],
            _ => unreachable!(),
        };
    }
    *cur = with.clone();
    doc
}

const ODD_VALUES: &str = r#"[null, -1, 0, 1e300, "", "x", [], {}, true]"#;

#[test]
fn mutated_confidence_states_never_panic() {
    let doc: serde_json::Value = serde_json::from_str(&spec("confidence/state.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&spec("confidence/tests.json")).unwrap();
    let requests: Vec<Request> =
        cases.iter().map(|c| Request::parse(&crate::confidence::request_of(c).to_string()).unwrap()).collect();
    let odd: Vec<serde_json::Value> = serde_json::from_str(ODD_VALUES).unwrap();
    let mut paths = Vec::new();
    leaves(&doc, Vec::new(), &mut paths);
    let (mut ok, mut err) = (0, 0);
    for (i, path) in paths.iter().enumerate().filter(|(i, _)| i % 11 == 0) {
        let mutated = replaced(&doc, path, &odd[i % odd.len()]);
        match State::parse(&mutated.to_string(), None) {
            Ok(state) => {
                ok += 1;
                for r in &requests {
                    let _ = state.resolve(r);
                }
            }
            Err(e) => {
                err += 1;
                assert!(!e.path().is_empty(), "{e}");
            }
        }
    }
    assert!(ok > 0 && err > 0, "{ok} parsed, {err} refused");
}

#[test]
fn mutated_amplitude_flags_never_panic() {
    let doc: serde_json::Value = serde_json::from_str(&spec("amplitude/flags.json")).unwrap();
    let odd: Vec<serde_json::Value> = serde_json::from_str(ODD_VALUES).unwrap();
    let contexts = [
        serde_json::json!({"user": {"user_id": "u", "device_id": "d"}}),
        serde_json::json!({"user": {"user_id": 0, "device_id": [], "user_properties": {"a": {}}}}),
        serde_json::json!({}),
        serde_json::json!([]),
    ];
    let mut paths = Vec::new();
    leaves(&doc, Vec::new(), &mut paths);
    let mut runs = 0;
    for path in &paths {
        for with in &odd {
            if let Ok(flags) = Flags::from_json(replaced(&doc, path, with)) {
                for ctx in &contexts {
                    flags.evaluate_json(ctx);
                }
                runs += 1;
            }
        }
    }
    assert!(runs > 0);
}
