//! `allot compat`: the binary on one Confidence case with materializations and on one Amplitude
//! configuration from `spec/`.

use assert_cmd::Command;
use serde_json::Value;
use std::path::PathBuf;

fn spec(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../spec").join(path)
}

fn read_json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(spec(path)).unwrap()).unwrap()
}

#[test]
fn confidence_resolve_with_materializations() {
    let cases = read_json("confidence/tests.json");
    let case = cases.as_array().unwrap().iter().find(|c| c["name"] == "mat_unit_in_mat_variant_found").unwrap();
    let mut request = case["resolveRequest"].clone();
    request["materializations"] = case["materializations"].clone();
    let dir = tempfile::tempdir().unwrap();
    let req = dir.path().join("request.json");
    std::fs::write(&req, request.to_string()).unwrap();
    let out = Command::cargo_bin("allot")
        .unwrap()
        .args(["compat", "confidence", "resolve", "--state"])
        .arg(spec("confidence/state.json"))
        .arg("--request")
        .arg(&req)
        .assert()
        .success();
    let response: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let expected = &case["expectedResult"]["general"]["resolvedFlags"];
    assert_eq!(&response["resolvedFlags"], expected);

    // Without its materializations Confidence cannot resolve the flag: exit 1, and say which.
    request.as_object_mut().unwrap().remove("materializations");
    std::fs::write(&req, request.to_string()).unwrap();
    let out = Command::cargo_bin("allot")
        .unwrap()
        .args(["compat", "confidence", "resolve", "--state"])
        .arg(spec("confidence/state.json"))
        .arg("--request")
        .arg(&req)
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("materializations/mat1"), "{stderr}");
}

#[test]
fn confidence_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, r#"{"account": {"name": "accounts/a"}, "flags": {"flags/x": {"name": 3}}}"#).unwrap();
    let req = dir.path().join("request.json");
    std::fs::write(&req, r#"{"clientSecret": "s"}"#).unwrap();
    let out = Command::cargo_bin("allot")
        .unwrap()
        .args(["compat", "confidence", "resolve", "--state"])
        .arg(&state)
        .arg("--request")
        .arg(&req)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("flags.flags/x.name"), "{stderr}");
    Command::cargo_bin("allot")
        .unwrap()
        .args(["compat", "confidence", "resolve", "--state", "/nonexistent/state.json", "--request"])
        .arg(&req)
        .assert()
        .code(2);
}

#[test]
fn amplitude_evaluate_one_configuration() {
    let data = read_json("amplitude/generated-cases.json");
    let case = &data["cases"][0];
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, case["flags"].to_string()).unwrap();
    let contexts: Vec<String> = case["contexts"].as_array().unwrap().iter().map(Value::to_string).collect();
    let out = Command::cargo_bin("allot")
        .unwrap()
        .args(["compat", "amplitude", "evaluate", "--contexts", "-", "--flags"])
        .arg(&flags)
        .write_stdin(contexts.join("\n") + "\n")
        .assert()
        .success();
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.get_output().stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 200);
    for (got, expected) in lines.iter().zip(case["expected"].as_array().unwrap()) {
        for (key, v) in got.as_object().unwrap() {
            assert_eq!(v, expected.get(key).unwrap_or(&Value::Null), "{key}");
        }
    }

    // A malformed context line names its line.
    let out = Command::cargo_bin("allot")
        .unwrap()
        .args(["compat", "amplitude", "evaluate", "--contexts", "-", "--flags"])
        .arg(&flags)
        .write_stdin(format!("{}\n{{\"user\": \n", contexts[0]))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("-:2:"), "{stderr}");
}
