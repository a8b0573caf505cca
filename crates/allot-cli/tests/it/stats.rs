//! `allot capacity` and `allot analyze` on the committed examples in `examples/analysis/`.

use assert_cmd::Command;
use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/analysis")
}

fn run(args: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("allot").unwrap().current_dir(dir()).args(args).assert()
}

fn json(args: &[&str]) -> Value {
    let out = run(args).success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out)))
}

const ANALYZE: &[&str] = &[
    "analyze",
    "--exposures",
    "exposures.csv",
    "--metrics",
    "metrics.csv",
    "--covariates",
    "covariates.csv",
    "--identities",
    "identities.csv",
    "--format",
    "json",
];

#[test]
fn analyze_json_shape_and_findings() {
    let r = json(ANALYZE);
    let feed = &r["experiments"]["home-feed"];
    assert!(feed["srm"]["p_value"].as_f64().unwrap() > 0.001);
    assert_eq!(feed["srm"]["counts"]["control"], 276);
    let c = &feed["metrics"]["revenue"]["comparisons"][0];
    assert_eq!(c["variant"], "treatment");
    assert_eq!(c["control"], "control");
    for k in ["diff", "p_value", "relative"] {
        assert!(c[k].is_f64(), "{k}");
    }
    assert_eq!(c["ci"].as_array().unwrap().len(), 2);
    assert_eq!(c["relative_ci"].as_array().unwrap().len(), 2);
    let cu = &c["cuped"];
    assert!(cu["variance_reduction"].as_f64().unwrap() > 0.3, "{cu}");
    // CUPED narrows the interval.
    let w = |v: &Value| v[1].as_f64().unwrap() - v[0].as_f64().unwrap();
    assert!(w(&cu["ci"]) < w(&c["ci"]));
    assert!(c["p_adjusted"]["holm"].as_f64().unwrap() >= c["p_value"].as_f64().unwrap());
    // The planted 60/40 split of home-banner is a sample-ratio mismatch.
    let banner = &r["experiments"]["home-banner"]["srm"];
    assert!(banner["p_value"].as_f64().unwrap() < 0.001);
    assert!(banner["warning"].as_str().unwrap().contains("sample ratio mismatch"));
    // Variants per metric, with n and mean; a unit without a metric row counts as 0.
    let v = &r["experiments"]["search-rank"]["metrics"]["clicks"]["variants"]["control"];
    assert!(v["n"].as_u64().unwrap() > 300 && v["mean"].as_f64().unwrap() < 2.0);
    // Interactions: the exclusive home pair is flagged.
    let inter = r["interactions"].as_array().unwrap();
    let home = inter
        .iter()
        .find(|i| i["experiments"].as_array().unwrap().iter().all(|e| e.as_str().unwrap().starts_with("home-")))
        .unwrap();
    assert_eq!(home["should_be_exclusive"], true);
    let cross = inter.iter().find(|i| i["should_be_exclusive"] == false).unwrap();
    let list = cross["metrics"]["revenue"].as_array().unwrap();
    assert!(!list.is_empty() && list[0]["se"].is_f64() && list[0]["p_adjusted"].is_f64());
    // Diagnostics: one of each planted class.
    let d = &r["diagnostics"]["exposure_issues"];
    for class in ["inclusion", "identity_merge", "variant_jumping", "config_change", "unexplained"] {
        assert_eq!(d[class]["count"], 1, "{class}: {d}");
    }
    assert_eq!(d["inclusion"]["examples"][0]["unit"], "u-included");
    assert_eq!(d["variant_jumping"]["examples"][0]["unit"], "u-jumper");
    assert_eq!(d["identity_merge"]["examples"][0]["person"], "p-ann");
}

#[test]
fn analyze_without_config_uses_an_even_split() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir();
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    let out = Command::cargo_bin("allot")
        .unwrap()
        .current_dir(tmp.path())
        .args(["analyze", "--exposures", &p("exposures.csv"), "--metrics", &p("metrics.csv"), "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let r: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(r["diagnostics"]["config"], false);
    assert_eq!(r["experiments"]["search-rank"]["srm"]["split"], "even");
    assert!(r["experiments"]["home-feed"]["metrics"]["revenue"]["comparisons"][0]["cuped"].is_null());
}

#[test]
fn analyze_text_and_html_report() {
    let tmp = tempfile::tempdir().unwrap();
    let html = tmp.path().join("report.html");
    let mut args: Vec<&str> = ANALYZE[..ANALYZE.len() - 2].to_vec();
    let h = html.to_string_lossy().into_owned();
    args.extend(["--html", &h]);
    let out = run(&args).success().get_output().stdout.clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("WARNING: sample ratio mismatch"), "{text}");
    assert!(text.contains("SHOULD HAVE BEEN EXCLUSIVE"));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("forest plot of revenue"));
    assert!(page.contains("Sample ratio mismatch"));
    assert!(page.contains("(CUPED)"));
    // Nothing external: the only URL is the SVG namespace, which browsers do not fetch.
    let without_ns = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for bad in ["http://", "https://", "src=", "<script", "<link", "@import", "url("] {
        assert!(!without_ns.contains(bad), "{bad} in the report");
    }
}

#[test]
fn analyze_bad_input_names_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("e.csv"),
        "unit,experiment,variant,timestamp\nu1,x,control,1\nu2,x,control,yesterday\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("m.csv"), "unit,metric,value\nu1,m,1\n").unwrap();
    std::fs::write(tmp.path().join("bad.csv"), "unit,value\nu1,1\n").unwrap();
    let a = Command::cargo_bin("allot")
        .unwrap()
        .current_dir(tmp.path())
        .args(["analyze", "--exposures", "e.csv", "--metrics", "m.csv"])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("e.csv:3") && err.contains("timestamp"), "{err}");
    std::fs::write(tmp.path().join("e.csv"), "unit,experiment,variant,timestamp\nu1,x,control,1\n").unwrap();
    let a = Command::cargo_bin("allot")
        .unwrap()
        .current_dir(tmp.path())
        .args(["analyze", "--exposures", "e.csv", "--metrics", "bad.csv"])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("missing column `metric`"), "{err}");
}

#[test]
fn capacity_schedule() {
    let r = json(&["-c", "allot.yaml", "capacity", "--traffic", "traffic.yaml", "--format", "json"]);
    let e = &r["experiments"];
    assert_eq!(e["home-feed"]["status"], "starts now");
    assert_eq!(e["home-banner"]["status"], "starts now");
    // 40% + 40% of home are taken (5% holdout): a 30% experiment waits until one ends.
    assert_eq!(e["home-carousel"]["status"], "waits");
    assert_eq!(e["home-carousel"]["start_day"], e["home-banner"]["end_day"]);
    assert!(e["home-carousel"]["waits_for"].as_array().unwrap().contains(&Value::from("home-banner")));
    // Units and days: days = ceil(units / (daily × reach)).
    let units = e["home-feed"]["units_needed"].as_f64().unwrap();
    let days = e["home-feed"]["days"].as_f64().unwrap();
    assert_eq!(days, (units / (40000.0 * 0.4)).ceil());
    // CUPED with rho = 0.7 saves about half the units.
    let sr = &e["search-rank"];
    let saved = sr["cuped_saves"]["units"].as_f64().unwrap() / sr["without_cuped"]["units_needed"].as_f64().unwrap();
    assert!((saved - 0.49).abs() < 0.01, "{saved}");
    let home = &r["scopes"]["home"];
    assert_eq!(home["at_once"], 2);
    assert_eq!(home["start_now"].as_array().unwrap().len(), 2);
    let text = String::from_utf8(
        run(&["-c", "allot.yaml", "capacity", "--traffic", "traffic.yaml"]).success().get_output().stdout.clone(),
    )
    .unwrap();
    assert!(text.contains("Exclusion scopes") && text.contains("waits"));
}

#[test]
fn capacity_bad_traffic_names_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir().join("allot.yaml"), tmp.path().join("allot.yaml")).unwrap();
    std::fs::write(
        tmp.path().join("t.yaml"),
        "daily_units: {user: 1000}\nexperiments:\n  home-feed: {metric: {rate: 0.1}, mde: 0.05, alpah: 0.1}\n",
    )
    .unwrap();
    let a = Command::cargo_bin("allot")
        .unwrap()
        .current_dir(tmp.path())
        .args(["capacity", "--traffic", "t.yaml"])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("experiments.home-feed") && err.contains("alpah"), "{err}");
    std::fs::write(
        tmp.path().join("t.yaml"),
        "daily_units: {user: 1000}\nexperiments:\n  nope: {metric: {rate: 0.1}, mde: 0.05}\n",
    )
    .unwrap();
    let a = Command::cargo_bin("allot")
        .unwrap()
        .current_dir(tmp.path())
        .args(["capacity", "--traffic", "t.yaml"])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("experiments.nope: not in the configuration"), "{err}");
}

/// Groups in bandwidth planning: slots, several slots, the intersection of two groups' slots,
/// holdouts; two members of one slot never run at once; shares as in `allot.yaml`; every error
/// of the traffic file at once (exit 1).
#[test]
fn capacity_understands_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = r#"
units: {user: {attribute: user_id}}
surfaces: [checkout]
holdouts: {h: {unit: user, share: 10%, applies_to: [g1]}}
groups:
  g1: {unit: user, share: 100%, slots: [50%, 50%]}
  g2: {unit: user, share: 100%, slots: [50%, 50%]}
  g3: {unit: user, share: 40%, slots: [25%, 75%], surfaces: [checkout]}
experiments:
  both: {unit: user, groups: {g1: [1], g2: [1]}, variants: {c: 1, t: 1}}
  first: {unit: user, group: g3, slots: [2], variants: {c: 1, t: 1}}
  second: {unit: user, group: g3, slots: [2], variants: {c: 1, t: 1}}
  other-slot: {unit: user, group: g3, slots: [1], variants: {c: 1, t: 1}}
  outside: {unit: user, surfaces: [checkout], share: 10%, variants: {c: 1, t: 1}}
"#;
    std::fs::write(tmp.path().join("allot.yaml"), cfg).unwrap();
    let m = "{metric: {rate: 0.1}, mde: 0.1}";
    let traffic = format!(
        "daily_units: {{user: 100000}}
experiments:
  both: {m}
  first: {m}
  second: {m}
  other-slot: {m}
  outside: {{metric: {{rate: 0.1}}, mde: 0.1, share: 40%}}
"
    );
    std::fs::write(tmp.path().join("t.yaml"), &traffic).unwrap();
    let out = Command::cargo_bin("allot")
        .unwrap()
        .current_dir(tmp.path())
        .args(["capacity", "--traffic", "t.yaml", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let r: Value = serde_json::from_slice(&out).unwrap();
    let e = &r["experiments"];
    // 50% × 50% of the space, less the 10% holdout on g1: 22.5%.
    assert!((e["both"]["reach"].as_f64().unwrap() - 0.225).abs() < 1e-12, "{}", e["both"]);
    // 40% × 75%; the second member of slot 2 waits for the first; slot 1 runs at once.
    assert!((e["first"]["reach"].as_f64().unwrap() - 0.3).abs() < 1e-12);
    assert_eq!(e["first"]["status"], "starts now");
    assert_eq!(e["second"]["status"], "waits", "{}", e["second"]);
    assert_eq!(e["second"]["start_day"], e["first"]["end_day"]);
    assert_eq!(e["other-slot"]["status"], "starts now");
    // `40%` as in allot.yaml; outside the group on its surface only 60% is free, and the members
    // do not compete with it (the group reserves its share).
    assert!((e["outside"]["reach"].as_f64().unwrap() - 0.4).abs() < 1e-12);
    assert_eq!(e["outside"]["status"], "starts now");
    // Every error at once, exit 1.
    std::fs::write(
        tmp.path().join("t.yaml"),
        "daily_units: {user: 1000}
experiments:
  nope: {metric: {rate: 0.1}, mde: 0.05}
  both: {metric: {rate: 0.1}, mde: 0.05, share: -5%}
",
    )
    .unwrap();
    let a = Command::cargo_bin("allot")
        .unwrap()
        .current_dir(tmp.path())
        .args(["capacity", "--traffic", "t.yaml"])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("experiments.nope: not in the configuration"), "{err}");
    assert!(err.contains("experiments.both.share: `-5%`"), "{err}");
    assert!(err.contains("2 error(s)"), "{err}");
}

/// End to end against scipy on the same files (`spec/stats/generate.py`, `analyze_example`): per-unit
/// sums, zeros for units without a row, variant jumpers left out, θ pooled over the arms.
#[test]
fn analyze_matches_scipy_on_the_example() {
    let golden: Value = serde_json::from_str(include_str!("../../../../spec/stats/golden.json")).unwrap();
    let r = json(ANALYZE);
    let close = |what: &str, got: &Value, want: &Value| {
        let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
        assert!((g - w).abs() <= 1e-6 * w.abs(), "{what}: got {g}, want {w}");
    };
    let cases = golden["analyze_example"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for c in cases {
        let (e, m, v) =
            (c["experiment"].as_str().unwrap(), c["metric"].as_str().unwrap(), c["variant"].as_str().unwrap());
        let mv = &r["experiments"][e]["metrics"][m];
        assert_eq!(mv["variants"][v]["n"], c["n"], "{e} {m} {v}");
        close("mean", &mv["variants"][v]["mean"], &c["mean"]);
        let comp = mv["comparisons"].as_array().unwrap().iter().find(|x| x["variant"] == v).unwrap();
        close("diff", &comp["diff"], &c["diff"]);
        close("p", &comp["p_value"], &c["p_value"]);
        close("ci lo", &comp["ci"][0], &c["ci"][0]);
        close("ci hi", &comp["ci"][1], &c["ci"][1]);
        close("relative", &comp["relative"], &c["relative"]);
        if c.get("cuped_diff").is_some() {
            close("cuped diff", &comp["cuped"]["diff"], &c["cuped_diff"]);
            close("cuped p", &comp["cuped"]["p_value"], &c["cuped_p_value"]);
            close("cuped lo", &comp["cuped"]["ci"][0], &c["cuped_ci"][0]);
            close("cuped hi", &comp["cuped"]["ci"][1], &c["cuped_ci"][1]);
        } else {
            assert!(comp["cuped"].is_null());
        }
    }
}
