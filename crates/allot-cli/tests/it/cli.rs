use allot_core::testing::edit;
use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

const EXAMPLE: &str = include_str!("../../../../examples/allot.yaml");

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new(config: &str) -> Dir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("allot.yaml"), config).unwrap();
        Dir { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    fn allot(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        Command::cargo_bin("allot").unwrap().current_dir(self.path()).args(args).assert()
    }
    fn json(&self, args: &[&str]) -> Value {
        let out = self.allot(args).get_output().stdout.clone();
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out)))
    }
    fn state(&self) -> String {
        std::fs::read_to_string(self.path().join("allot.state.json")).unwrap()
    }
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn the_example_works_as_written() {
    let d = Dir::new(EXAMPLE);
    d.allot(&["check"]).success();
    let plan = d.json(&["plan", "--format", "json"]);
    assert!(plan["changes"].as_array().unwrap().len() >= 4);
    assert_eq!(plan["refusals"], serde_json::json!([]));
    assert!(plan["impact"].as_object().unwrap().is_empty());
    d.allot(&["plan", "--exit-code"]).success();
    d.allot(&["apply"]).success();
    let audit = d.json(&["audit", "--format", "json"]);
    assert_eq!(audit["experiments"]["ranking-v2"]["buckets"], 300_000);
    assert_eq!(audit["experiments"]["ranking-v2"]["share"], 0.3);
    assert_eq!(audit["experiments"]["ranking-v2"]["reach"], 0.3);
    // Slot 1 is 50% of a 60% group: 30% of all users, of which the home holdout does not apply.
    assert_eq!(audit["experiments"]["checkout-a"]["buckets"], 300_000);
    assert_eq!(audit["holdouts"]["q4-holdback"]["buckets"], 50_000);
    assert_eq!(audit["groups"]["checkout-mutex"]["buckets"], 600_000);
    let slots: Vec<u64> = audit["groups"]["checkout-mutex"]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["buckets"].as_u64().unwrap())
        .collect();
    assert_eq!(slots, vec![300_000, 180_000, 120_000]);
    let overlaps = audit["overlaps"].as_array().unwrap();
    assert_eq!(overlaps.len(), 1);
    assert_eq!(overlaps[0]["exclusive"], false);
    assert_eq!(audit["violations"], serde_json::json!([]));

    let units = d.write(
        "units.jsonl",
        "{\"user_id\": \"alice\", \"country\": \"US\"}\n{\"user_id\": \"u2\", \"country\": \"NO\"}\n{\"country\": \"SE\"}\n",
    );
    let a = d.allot(&["assign", "--units", units.to_str().unwrap()]).success();
    let lines: Vec<Value> = stdout(&a).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["unit"]["user"], "alice");
    assert_eq!(lines[0]["assignments"]["ranking-v2"]["variant"], "treatment");
    assert_eq!(lines[0]["assignments"]["ranking-v2"]["reason"], "INCLUDED");
    assert_eq!(lines[2]["unit"], serde_json::json!({}));
    assert_eq!(lines[2]["assignments"]["checkout-a"], serde_json::json!({"variant": null, "reason": "MISSING_UNIT"}));
    for l in &lines {
        assert_eq!(l["assignments"].as_object().unwrap().len(), 2, "every experiment in the applied state");
    }
    // Re-planning the same file changes nothing.
    let again = d.json(&["plan", "--format", "json"]);
    assert_eq!(again["changes"], serde_json::json!([]));
}

#[test]
fn assign_reads_stdin_and_writes_csv() {
    let d = Dir::new(EXAMPLE);
    d.allot(&["apply"]).success();
    let out = Command::cargo_bin("allot")
        .unwrap()
        .current_dir(d.path())
        .args(["assign", "--format", "csv"])
        .write_stdin("{\"user_id\": \"alice\"}\n")
        .assert()
        .success();
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("unit,experiment,variant,reason"));
    assert_eq!(lines.next(), Some("alice,ranking-v2,treatment,INCLUDED"));
    assert!(lines.next().unwrap().starts_with("alice,checkout-a,"));
}

#[test]
fn assign_reports_bad_lines_and_keeps_going() {
    let d = Dir::new(EXAMPLE);
    d.allot(&["apply"]).success();
    let units = d.write("u.jsonl", "{\"user_id\": \"a\"}\nnot json\n[1]\n{\"user_id\": \"b\"}\n");
    let a = d.allot(&["assign", "--units", units.to_str().unwrap()]).code(1);
    assert_eq!(stdout(&a).lines().count(), 2);
    let err = stderr(&a);
    assert!(err.contains("line 2: invalid JSON"), "{err}");
    assert!(err.contains("line 3: expected a JSON object"), "{err}");
}

#[test]
fn refused_apply_writes_nothing_and_force_is_recorded() {
    let d = Dir::new(EXAMPLE);
    d.allot(&["apply"]).success();
    let before = d.state();
    d.write("allot.yaml", &edit(EXAMPLE, "share: 30%", "share: 20%"));
    let plan = d.json(&["plan", "--format", "json"]);
    let moved = plan["impact"]["ranking-v2"]["moved_share"].as_f64().unwrap();
    assert!((moved - 1.0 / 3.0).abs() < 1e-9, "{moved}");
    assert_eq!(plan["impact"]["checkout-a"]["moved_share"], 0.0);
    assert_eq!(plan["refusals"][0]["path"], "experiments.ranking-v2.share");
    // plan exits 0 whatever it finds, unless asked to gate on refusals.
    d.allot(&["plan"]).success();
    d.allot(&["plan", "--exit-code"]).code(1);
    let a = d.allot(&["apply"]).code(1);
    assert!(stderr(&a).contains("nothing was written"));
    assert_eq!(d.state(), before, "a refused apply leaves the state byte-identical");
    // --force needs --reason.
    d.allot(&["apply", "--force"]).failure();
    assert_eq!(d.state(), before);
    d.allot(&["apply", "--force", "--reason", "shrink for capacity"]).success();
    let audit = d.json(&["audit", "--format", "json"]);
    assert_eq!(audit["experiments"]["ranking-v2"]["buckets"], 200_000);
    let log = d.json(&["history", "--format", "json"]);
    let last = log.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["forced"], true);
    assert_eq!(last["reason"], "shrink for capacity");
    assert!(last["overridden"][0].as_str().unwrap().contains("cannot shrink"));
}

#[test]
fn growing_is_allowed_and_only_adds_units() {
    let d = Dir::new(EXAMPLE);
    d.allot(&["apply"]).success();
    let units: String = (0..2000).map(|i| format!("{{\"user_id\": \"u{i}\", \"country\": \"SE\"}}\n")).collect();
    let f = d.write("u.jsonl", &units);
    let before = stdout(&d.allot(&["assign", "--units", f.to_str().unwrap(), "--format", "csv"]).success());
    d.write("allot.yaml", &edit(EXAMPLE, "share: 30%", "share: 45%"));
    let plan = d.json(&["plan", "--format", "json"]);
    assert_eq!(plan["refusals"], serde_json::json!([]));
    assert_eq!(plan["impact"]["ranking-v2"]["moved_share"], 0.0);
    d.allot(&["apply"]).success();
    let after = stdout(&d.allot(&["assign", "--units", f.to_str().unwrap(), "--format", "csv"]).success());
    let mut grew = 0;
    for (b, a) in before.lines().zip(after.lines()) {
        if b.contains("NOT_ALLOCATED") && !a.contains("NOT_ALLOCATED") {
            grew += 1;
        } else {
            assert_eq!(a, b);
        }
    }
    assert!(grew > 100, "{grew}");
}

#[test]
fn check_reports_every_error_with_its_path() {
    let d = Dir::new(
        r#"
units:
  user: {attribute: user_id}
surfaces: [home]
holdouts:
  h: {unit: person, share: 5%, applies_to: [nowhere]}
groups:
  g: {unit: user, share: 60%, slots: [50%, 60%]}
experiments:
  a:
    unit: user
    surfaces: [homepage]
    share: 130%
    variants: {control: 1}
    include: {bob: treatment}
    state: live
  b:
    unit: user
    group: g
    slots: [3]
    variants: {control: 1}
    colour: blue
"#,
    );
    let a = d.allot(&["check"]).code(1);
    insta::assert_snapshot!("check_errors", stderr(&a));
    let j = d.json(&["check", "--format", "json"]);
    assert_eq!(j["ok"], false);
    assert!(j["errors"].as_array().unwrap().iter().all(|e| !e["path"].as_str().unwrap().is_empty()));
}

#[test]
fn not_enough_space_says_what_holds_it() {
    let d = Dir::new(
        r#"
units:
  user: {attribute: user_id}
surfaces: [home]
holdouts:
  h: {unit: user, share: 10%, applies_to: [home]}
experiments:
  a: {unit: user, surfaces: [home], share: 60%, variants: {c: 1}, state: running}
  b: {unit: user, surfaces: [home], share: 40%, variants: {c: 1}, state: running}
"#,
    );
    let a = d.allot(&["apply"]).code(1);
    insta::assert_snapshot!("no_space", stderr(&a));
    assert!(!d.path().join("allot.state.json").exists());
}

#[test]
fn stopping_returns_buckets_and_history_tells_who_held_them() {
    let d = Dir::new(EXAMPLE);
    d.allot(&["apply"]).success();
    d.write("allot.yaml", &edit(EXAMPLE, "state: running                    # draft", "state: stopped # draft"));
    d.allot(&["apply"]).success();
    let audit = d.json(&["audit", "--format", "json"]);
    assert!(audit["experiments"].get("ranking-v2").is_none());
    // A new experiment on the same surface can now take the whole non-held-out space.
    let cfg = format!(
        "{}\n  ranking-v3:\n    unit: user\n    surfaces: [home]\n    share: 95%\n    variants: {{a: 1, b: 1}}\n    state: running\n",
        edit(EXAMPLE, "state: running                    # draft", "state: stopped # draft").trim_end()
    );
    d.write("allot.yaml", &cfg);
    d.allot(&["apply"]).success();
    let audit = d.json(&["audit", "--format", "json"]);
    assert_eq!(audit["experiments"]["ranking-v3"]["buckets"], 950_000);
    let h = d.json(&["history", "--unit", "u1", "--format", "json"]);
    assert!(h["bucket"].as_u64().unwrap() < 1_000_000);
    let owners: Vec<&str> = h["history"].as_array().unwrap().iter().map(|s| s["owner"].as_str().unwrap()).collect();
    assert!(owners.contains(&"ranking-v3") || owners.contains(&"q4-holdback"), "{owners:?}");
    let text = stdout(&d.allot(&["history"]).success());
    assert!(text.contains("version 3"));
}

#[test]
fn resalt_moves_no_unit_of_a_running_experiment() {
    let d = Dir::new(EXAMPLE);
    d.allot(&["apply"]).success();
    let units: String = (0..3000).map(|i| format!("{{\"user_id\": \"u{i}\", \"country\": \"NO\"}}\n")).collect();
    let f = d.write("u.jsonl", &units);
    let before = stdout(&d.allot(&["assign", "--units", f.to_str().unwrap(), "--format", "csv"]).success());
    let r = d.json(&["resalt", "--format", "json"]);
    assert_eq!(r[0]["version"], 2);
    let after = stdout(&d.allot(&["assign", "--units", f.to_str().unwrap(), "--format", "csv"]).success());
    // Not vacuous: the same lines, many of them assigned.
    assert_eq!(before.lines().count(), after.lines().count());
    let assigned = before.lines().filter(|l| l.ends_with("ASSIGNED")).count();
    assert!(assigned > 500, "only {assigned} assigned lines");
    // Held buckets keep their units and free ones stay free, so every answer is the same.
    for (n, (b, a)) in before.lines().zip(after.lines()).enumerate() {
        assert_eq!(a, b, "line {n}");
    }
}

#[test]
fn missing_config_and_bad_state_are_clear_errors() {
    let d = Dir::new(EXAMPLE);
    let a = d.allot(&["-c", "nope.yaml", "check"]).code(2);
    assert!(stderr(&a).contains("cannot read configuration nope.yaml"));
    d.write("allot.state.json", "{\"format\": 1, \"version\": \"x\"}");
    let a = d.allot(&["plan"]).code(2);
    assert!(stderr(&a).contains("version"), "{}", stderr(&a));
    let a = d.allot(&["assign"]).code(2);
    assert!(!stderr(&a).contains("panicked"));
}

#[test]
fn every_example_checks_applies_and_audits_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            n += 1;
            let d = Dir::new(&std::fs::read_to_string(&path).unwrap());
            d.allot(&["check"]).success();
            d.allot(&["apply"]).success();
            let a = d.json(&["audit", "--format", "json"]);
            assert_eq!(a["violations"], serde_json::json!([]), "{}", path.display());
            let units = path.with_file_name(format!(
                "{}units.jsonl",
                path.file_stem()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .strip_suffix("allot")
                    .map_or_else(|| format!("{}-", path.file_stem().unwrap().to_str().unwrap()), |_| String::new())
            ));
            if units.exists() {
                d.allot(&["assign", "--units", units.to_str().unwrap()]).success();
            }
        }
    }
    assert!(n >= 2);
}

#[test]
fn apply_and_resalt_record_who() {
    let d = Dir::new(EXAMPLE);
    d.allot(&["apply", "--actor", "alice@example.com"]).success();
    Command::cargo_bin("allot")
        .unwrap()
        .current_dir(d.path())
        .env("ALLOT_ACTOR", "bob")
        .args(["resalt", "--reason", "quarterly"])
        .assert()
        .success();
    let log: Value = d.json(&["history", "--format", "json"]);
    let actors: Vec<&str> = log.as_array().unwrap().iter().filter_map(|e| e["actor"].as_str()).collect();
    assert_eq!(actors, ["alice@example.com", "bob"], "{log}");
    let text = stdout(&d.allot(&["history"]).success());
    assert!(text.contains("by alice@example.com") && text.contains("by bob"), "{text}");
}

#[test]
fn assign_into_a_closed_pipe_exits_0_quietly() {
    use std::io::{BufRead, BufReader};
    let d = Dir::new(EXAMPLE);
    d.allot(&["apply"]).success();
    let units: String = (0..50_000).map(|i| format!("{{\"user_id\": \"u{i}\", \"country\": \"SE\"}}\n")).collect();
    let file = d.write("many.jsonl", &units);
    let bin = assert_cmd::cargo::cargo_bin("allot");
    let mut child = std::process::Command::new(bin)
        .current_dir(d.path())
        .args(["assign", "--units"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap(); // then the pipe closes
    let out = child.wait_with_output().unwrap();
    assert!(!first.is_empty());
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn audit_and_assign_say_when_the_file_is_not_applied() {
    let d = Dir::new(EXAMPLE);
    d.allot(&["apply"]).success();
    let quiet = d.allot(&["audit"]).success();
    assert!(quiet.get_output().stderr.is_empty());
    d.write("allot.yaml", &edit(EXAMPLE, "share: 30%", "share: 31%"));
    assert_ne!(edit(EXAMPLE, "share: 30%", "share: 31%"), EXAMPLE);
    for args in [&["audit"][..], &["assign", "--units", "units.jsonl"][..]] {
        d.write("units.jsonl", "{\"user_id\": \"u1\"}\n");
        let a = d.allot(args).success();
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(err.contains("differs from the applied version 1"), "{args:?}: {err}");
    }
}

#[test]
fn plan_in_json_reports_its_errors_as_json() {
    let d = Dir::new(
        "units: {user: {attribute: user_id}}\nexperiments: {a: {unit: user, share: 200%, variants: {c: 1}}}\n",
    );
    let v = d.json(&["plan", "--format", "json"]);
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["path"], "experiments.a.share", "{v}");
    // An operational failure too (a corrupt state file), with exit 2.
    d.write("allot.yaml", EXAMPLE);
    d.write("allot.state.json", "{bad");
    let a = d.allot(&["plan", "--format", "json"]).code(2);
    let v: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("allot.state.json"), "{v}");
}

#[test]
fn plan_sample_measures_a_narrowed_targeting() {
    let yaml = |countries: &str| {
        format!(
            "units: {{user: {{attribute: user_id}}}}\nsurfaces: [home]\nexperiments:\n  a: {{unit: user, surfaces: [home], share: 50%, variants: {{c: 1, t: 1}}, targeting: {{attribute: country, in: [{countries}]}}, state: running}}\n"
        )
    };
    let d = Dir::new(&yaml("SE, NO"));
    d.allot(&["apply"]).success();
    d.write("allot.yaml", &yaml("NO"));
    let units: String =
        (0..2000).map(|i| format!("{{\"user_id\": \"u{i}\", \"country\": \"{}\"}}\n", ["SE", "NO"][i % 2])).collect();
    d.write("sample.jsonl", &units);
    let text = stdout(&d.allot(&["plan"]).success());
    assert!(text.contains("not counted here; measure with --sample FILE"), "{text}");
    let p: Value = d.json(&["plan", "--format", "json", "--sample", "sample.jsonl"]);
    let m = &p["impact"]["a"]["measured"];
    let share = m["moved_share"].as_f64().unwrap();
    assert!((share - 0.5).abs() < 0.07, "{p}");
    d.write("bad.jsonl", "{\"user_id\": \"u1\"}\nnot json\n");
    let err =
        String::from_utf8(d.allot(&["plan", "--sample", "bad.jsonl"]).failure().get_output().stderr.clone()).unwrap();
    assert!(err.contains("bad.jsonl:2"), "{err}");
}

/// `allot trace` ends where `allot assign` does, for every experiment, and says how.
#[test]
fn trace_ends_where_assign_does() {
    let d = Dir::new(EXAMPLE);
    d.allot(&["apply"]).success();
    let contexts = [
        r#"{"user_id": "alice", "country": "US"}"#,
        r#"{"user_id": "u2", "country": "NO"}"#,
        r#"{"user_id": "u3", "country": "SE"}"#,
        r#"{"user_id": "u4"}"#,
        r#"{"country": "SE"}"#,
    ];
    let units = d.write("units.jsonl", &contexts.join("\n"));
    let out = stdout(&d.allot(&["assign", "--units", units.to_str().unwrap()]).success());
    for (ctx, line) in contexts.iter().zip(out.lines()) {
        let assigned: Value = serde_json::from_str(line).unwrap();
        let t = d.json(&["trace", "--context", ctx, "--format", "json"]);
        let exps = t["experiments"].as_object().unwrap();
        assert_eq!(exps.len(), assigned["assignments"].as_object().unwrap().len());
        for (id, a) in assigned["assignments"].as_object().unwrap() {
            assert_eq!(exps[id]["variant"], a["variant"], "{ctx} {id}: {}", exps[id]);
            assert_eq!(exps[id]["reason"], a["reason"], "{ctx} {id}: {}", exps[id]);
        }
    }
    let text = stdout(&d.allot(&["trace", "--context", contexts[0], "--experiments", "ranking-v2"]).success());
    assert!(text.contains("ranking-v2:") && text.contains("unit: user_id = alice"), "{text}");
    let e = stderr(&d.allot(&["trace", "--context", "{}", "--experiments", "nope"]).code(2));
    assert!(e.contains("--experiments: unknown experiment `nope`"), "{e}");
    let e = stderr(&d.allot(&["trace", "--context", "[1]"]).code(2));
    assert!(e.contains("--context"), "{e}");
}
