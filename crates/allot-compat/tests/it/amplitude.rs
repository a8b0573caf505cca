//! Every configuration and context of `spec/amplitude/generated-cases.json` and the expectations
//! of Amplitude's own SDK test (`spec/amplitude/expectations.json`).

use crate::spec;
use allot_compat::amplitude::Flags;
use serde_json::Value;

#[test]
fn every_generated_case() {
    let data: Value = serde_json::from_str(&spec("amplitude/generated-cases.json")).unwrap();
    let cases = data["cases"].as_array().unwrap();
    let mut run = 0;
    let mut failures = Vec::new();
    for case in cases {
        let flags = Flags::from_json(case["flags"].clone()).unwrap();
        for (ctx, expected) in case["contexts"].as_array().unwrap().iter().zip(case["expected"].as_array().unwrap()) {
            let got = flags.evaluate_json(ctx);
            for key in flags.keys() {
                let want = expected.get(key).cloned().unwrap_or(Value::Null);
                if got[key] != want && failures.len() < 20 {
                    failures.push(format!("{} {key} {ctx}: expected {want}, got {}", case["name"], got[key]));
                }
            }
            for key in expected.as_object().unwrap().keys() {
                assert!(got.get(key).is_some(), "{key} not evaluated");
            }
            run += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(cases.len(), 30);
    assert_eq!(run, 30 * 200);
}

#[test]
fn the_sdk_expectations() {
    let flags = Flags::parse(&spec("amplitude/flags.json")).unwrap();
    let keys: Vec<String> = flags.keys().map(str::to_string).collect();
    let exp: Value = serde_json::from_str(&spec("amplitude/expectations.json")).unwrap();
    let mut run = 0;
    for case in exp["cases"].as_array().unwrap() {
        let mut results = Vec::new();
        flags.evaluate_into(&case["context"], &mut results);
        let i = keys.iter().position(|k| k == case["flag"].as_str().unwrap()).unwrap();
        // The SDK hides group flags and default variants; so does this comparison.
        let shown = results[i].filter(|v| !flags.sdk_filters(i, *v));
        match shown {
            None => assert!(case["variant"].is_null(), "{case}"),
            Some(v) => {
                let obj = flags.variant_object(i, v);
                assert_eq!(obj["key"], case["variant"]["key"], "{case}");
                assert_eq!(obj["value"], case["variant"]["value"], "{case}");
                if let Some(p) = case["variant"].get("payload") {
                    assert_eq!(&obj["payload"], p, "{case}");
                }
            }
        }
        run += 1;
    }
    assert_eq!(run, 3);
}

#[test]
fn a_cycle_is_an_error() {
    let e = Flags::parse(
        r#"[{"key": "a", "dependencies": ["b"], "segments": []}, {"key": "b", "dependencies": ["a"], "segments": []}]"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("cycle"), "{e}");
}
