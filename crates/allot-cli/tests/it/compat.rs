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

fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// `allot compat confidence import`, end to end: the written allot.yaml checks, `plan` shows no
/// changes, `audit` is clean, and `allot assign` on the specification's contexts gives, flag by
/// flag, what `allot compat confidence resolve` gives (the adapter the differential test holds
/// to Confidence's resolver).
#[test]
fn confidence_import_then_assign_gives_what_resolve_gives() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let allot = || {
        let mut c = Command::cargo_bin("allot").unwrap();
        c.current_dir(d);
        c
    };
    let out = allot()
        .args([
            "compat",
            "confidence",
            "import",
            "--client-secret",
            "test-secret",
            "--report",
            "report.json",
            "--state",
        ])
        .arg(spec("confidence/state.json"))
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    // What does not map is named, with why.
    assert!(stderr.contains("NOT MAPPED rule flags/mat-read-flag/"), "{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(d.join("report.json")).unwrap()).unwrap();
    assert!(report["unmapped"].as_array().unwrap().iter().any(|e| e["name"] == "flags/bloom-filter-flag"));
    allot().arg("check").assert().success();
    let plan = allot().args(["plan", "--format", "json"]).assert().success();
    let plan: Value = serde_json::from_slice(&plan.get_output().stdout).unwrap();
    assert_eq!(plan["changes"], serde_json::json!([]), "{plan}");
    allot().arg("audit").assert().success();

    // The specification's contexts for this client whose unit ids are strings of 1 to 100
    // bytes (the import's exactness domain).
    let cases = read_json("confidence/tests.json");
    let contexts: Vec<Value> = cases
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["resolveRequest"]["clientSecret"] == "test-secret")
        .map(|c| c["resolveRequest"]["evaluationContext"].clone())
        .filter(|ctx| ctx["targeting_key"].as_str().is_some_and(|k| !k.is_empty() && k.len() <= 100))
        .take(12)
        .collect();
    assert!(contexts.len() >= 10);
    let units: String = contexts.iter().map(|c| format!("{c}\n")).collect();
    let assigned = allot().args(["assign", "--units", "-"]).write_stdin(units).assert().success();
    let lines: Vec<Value> = String::from_utf8_lossy(&assigned.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (mut compared, mut matched) = (0, 0);
    // Only the imported flags: the others (materializations) need stored assignments to resolve.
    let flags: Vec<&Value> = report["flags"].as_array().unwrap().iter().map(|f| &f["flag"]).collect();
    for (ctx, line) in contexts.iter().zip(&lines) {
        let req = d.join("request.json");
        let request = serde_json::json!({"clientSecret": "test-secret", "evaluationContext": ctx, "flags": flags});
        std::fs::write(&req, request.to_string()).unwrap();
        let resolved = allot()
            .args(["compat", "confidence", "resolve", "--request", "request.json", "--state"])
            .arg(spec("confidence/state.json"))
            .assert()
            .success();
        let resolved: Value = serde_json::from_slice(&resolved.get_output().stdout).unwrap();
        for f in report["flags"].as_array().unwrap() {
            let name = f["flag"].as_str().unwrap();
            let Some(want) = resolved["resolvedFlags"].as_array().unwrap().iter().find(|r| r["flag"] == name) else {
                continue;
            };
            // The flag's answer: the first experiment whose variant is not a pass-through marker.
            let mut got = ("RESOLVE_REASON_NO_SEGMENT_MATCH", String::new());
            for id in f["experiments"].as_array().unwrap() {
                match line["assignments"][id.as_str().unwrap()]["variant"].as_str() {
                    None | Some("_fallthrough" | "_none") => continue,
                    Some("_client_default") => got = ("RESOLVE_REASON_MATCH", String::new()),
                    Some(v) => got = ("RESOLVE_REASON_MATCH", v.to_string()),
                }
                break;
            }
            compared += 1;
            assert_eq!(
                (got.0, got.1.as_str()),
                (want["reason"].as_str().unwrap(), short(want["variant"].as_str().unwrap())),
                "{name} for {ctx}"
            );
            if got.0 == "RESOLVE_REASON_MATCH" {
                matched += 1;
            }
        }
    }
    eprintln!("confidence import end to end: {compared} flag answers equal, {matched} of them matches");
    assert!(compared >= 100 && matched >= 5, "{compared} compared, {matched} matches");
}

/// `--strict`: anything unmapped is exit 1, and nothing but the report is written.
#[test]
fn confidence_import_strict_writes_nothing_when_something_does_not_map() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("allot")
        .unwrap()
        .current_dir(dir.path())
        .args(["compat", "confidence", "import", "--client-secret", "test-secret", "--strict", "--report", "r.json"])
        .arg("--state")
        .arg(spec("confidence/state.json"))
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("--strict"), "{stderr}");
    assert!(dir.path().join("r.json").exists());
    assert!(!dir.path().join("allot.yaml").exists() && !dir.path().join("allot.state.json").exists());
    // Two credentials and no --client-secret: an error naming the clients, nothing written.
    let out = Command::cargo_bin("allot")
        .unwrap()
        .current_dir(dir.path())
        .args(["compat", "confidence", "import", "--state"])
        .arg(spec("confidence/state.json"))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("--client-secret") && stderr.contains("2 client credentials"), "{stderr}");
    assert!(!dir.path().join("allot.yaml").exists());
    // The proto3-JSON demo state maps completely: --strict succeeds, and a second import does
    // not overwrite what the first wrote.
    let import = || {
        let mut c = Command::cargo_bin("allot").unwrap();
        c.current_dir(dir.path())
            .args(["compat", "confidence", "import", "--strict", "--account", "confidence-demo-june", "--state"])
            .arg(spec("confidence/resolver_state.json"));
        c
    };
    import().assert().success();
    let again = import().assert().code(2);
    assert!(String::from_utf8_lossy(&again.get_output().stderr).contains("--overwrite"));
}

/// `allot compat amplitude import` end to end: import a configuration of the conformance data,
/// `check`, `plan` (no changes), `audit`, then `assign` on the flattened contexts gives every
/// imported flag what `compat amplitude evaluate` gives (Amplitude's engine's answers).
#[test]
fn amplitude_import_then_assign_gives_what_evaluate_gives() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let allot = || {
        let mut c = Command::cargo_bin("allot").unwrap();
        c.current_dir(d);
        c
    };
    let data = read_json("amplitude/generated-cases.json");
    let case = &data["cases"][0];
    // The case's flags, and one more that does not map: allot's targeting has no regular expressions.
    let mut flags = case["flags"].clone();
    flags.as_array_mut().unwrap().push(serde_json::json!({
        "key": "by-pattern",
        "variants": {"on": {"key": "on"}},
        "segments": [{"conditions": [[{"selector": ["context", "user", "user_id"], "op": "regex match", "values": ["^user-1"]}]], "variant": "on"}]
    }));
    std::fs::write(d.join("flags.json"), flags.to_string()).unwrap();
    let contexts: String = case["contexts"].as_array().unwrap().iter().map(|c| format!("{c}\n")).collect();
    std::fs::write(d.join("contexts.jsonl"), &contexts).unwrap();

    // --strict: something does not map, so nothing is written.
    let strict = allot().args(["compat", "amplitude", "import", "flags.json", "--strict"]).assert().code(1);
    let stderr = String::from_utf8_lossy(&strict.get_output().stderr).into_owned();
    assert!(stderr.contains("NOT MAPPED segment by-pattern.segments[0]: regular expressions"), "{stderr}");
    assert!(!d.join("allot.yaml").exists() && !d.join("allot.state.json").exists());

    allot()
        .args([
            "compat",
            "amplitude",
            "import",
            "flags.json",
            "--out-config",
            "allot.yaml",
            "--out-state",
            "allot.state.json",
            "--report",
            "report.json",
        ])
        .assert()
        .success();
    // An import never overwrites a recorded state unless told to.
    let again = allot().args(["compat", "amplitude", "import", "--flags", "flags.json"]).assert().failure();
    assert!(String::from_utf8_lossy(&again.get_output().stderr).contains("exists"));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(d.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["source"], "amplitude");
    assert!(report["unmapped"].as_array().unwrap().iter().any(|e| e["name"] == "by-pattern"), "{report}");
    assert_eq!(report["flags"].as_array().unwrap().len(), case["flags"].as_array().unwrap().len(), "{report}");
    allot().arg("check").assert().success();
    let plan = allot().args(["plan", "--format", "json"]).assert().success();
    let plan: Value = serde_json::from_slice(&plan.get_output().stdout).unwrap();
    assert_eq!(plan["changes"], serde_json::json!([]), "{plan}");
    allot().arg("audit").assert().success();

    let flat = allot().args(["compat", "amplitude", "flatten", "--contexts", "contexts.jsonl"]).assert().success();
    let assigned =
        allot().args(["assign", "--units", "-"]).write_stdin(flat.get_output().stdout.clone()).assert().success();
    let evaluated = allot()
        .args(["compat", "amplitude", "evaluate", "--flags", "flags.json", "--contexts", "contexts.jsonl"])
        .assert()
        .success();
    let lines = |out: &[u8]| -> Vec<Value> {
        String::from_utf8_lossy(out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let (assigned, evaluated) = (lines(&assigned.get_output().stdout), lines(&evaluated.get_output().stdout));
    assert_eq!(assigned.len(), 200);
    let (mut compared, mut with_variant) = (0, 0);
    for (a, e) in assigned.iter().zip(&evaluated) {
        for f in report["flags"].as_array().unwrap() {
            let key = f["flag"].as_str().unwrap();
            let got = f["experiments"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|id| a["assignments"][id.as_str().unwrap()]["variant"].as_str())
                .find(|v| *v != "_none");
            assert_eq!(got, e[key].as_str(), "{key}: {a} vs {e}");
            compared += 1;
            with_variant += usize::from(got.is_some());
        }
    }
    assert!(compared >= 200 * 5 && with_variant > 0, "{compared} / {with_variant}");
}
