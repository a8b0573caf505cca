//! `allot analyze --sequential` (looks recorded across runs, bounds recomputed for the actual
//! fractions) and `--reuse-health` (an experiment drawn on a stopped one's buckets).

use allot_stats::power::Sides;
use allot_stats::sequential::{boundaries, Spending};
use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/analysis")
}

fn allot(dir: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("allot").unwrap().current_dir(dir).args(args).assert()
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let out = allot(dir, args).success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out)))
}

/// The example's exposures, and the first `keep` rows of them as an earlier look.
fn scratch(keep: usize) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for f in ["allot.yaml", "exposures.csv", "metrics.csv", "covariates.csv"] {
        std::fs::copy(examples().join(f), d.path().join(f)).unwrap();
    }
    let text = std::fs::read_to_string(examples().join("exposures.csv")).unwrap();
    let early: Vec<&str> = text.lines().take(keep + 1).collect();
    std::fs::write(d.path().join("early.csv"), early.join("\n") + "\n").unwrap();
    d
}

fn analyze<'a>(exposures: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["analyze", "--exposures", exposures, "--metrics", "metrics.csv", "--format", "json"];
    v.extend_from_slice(extra);
    v
}

fn series<'a>(r: &'a Value, exp: &str, metric: &str, variant: &str) -> &'a Value {
    r["sequential"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["experiment"] == exp && s["metric"] == metric && s["variant"] == variant)
        .unwrap_or_else(|| panic!("no series {exp} {metric} {variant}"))
}

#[test]
fn looks_are_recorded_and_bounds_follow_the_actual_fractions() {
    let d = scratch(800);
    let flags = ["--sequential", "obf", "--max-units", "1500", "--looks", "looks.json"];
    let first = json(d.path(), &analyze("early.csv", &flags));
    let s1 = series(&first, "home-feed", "revenue", "treatment");
    assert_eq!(s1["looks"].as_array().unwrap().len(), 1);
    let second = json(d.path(), &analyze("exposures.csv", &flags));
    let s2 = series(&second, "home-feed", "revenue", "treatment");
    let looks = s2["looks"].as_array().unwrap();
    assert_eq!(looks.len(), 2, "{s2}");
    // The first look is kept as recorded; the fractions are units / planned maximum.
    assert_eq!(looks[0]["units"], s1["looks"][0]["units"]);
    assert_eq!(looks[0]["diff"], s1["looks"][0]["diff"]);
    let units: Vec<f64> = looks.iter().map(|l| l["units"].as_f64().unwrap()).collect();
    let t: Vec<f64> = units.iter().map(|u| u / 1500.0).collect();
    let want = boundaries(Spending::ObrienFleming, 0.05, Sides::Two, &t).unwrap();
    for (l, b) in looks.iter().zip(&want) {
        assert!((l["fraction"].as_f64().unwrap() - b.fraction).abs() < 1e-15);
        assert!((l["bound"].as_f64().unwrap() - b.z).abs() < 1e-12, "{l} vs {b:?}");
        let z = l["z"].as_f64().unwrap();
        let want_decision = if z.abs() >= b.z { "reject" } else { "continue" };
        assert_eq!(l["decision"], want_decision, "{l}");
    }
    // The same data again is the same look, not a third one.
    let again = json(d.path(), &analyze("exposures.csv", &flags));
    assert_eq!(series(&again, "home-feed", "revenue", "treatment")["looks"].as_array().unwrap().len(), 2);
    // The file is the report's `sequential`.
    let file: Value = serde_json::from_str(&std::fs::read_to_string(d.path().join("looks.json")).unwrap()).unwrap();
    assert_eq!(file, again["sequential"]);
    // A sequential design cannot change while it runs.
    let changed = ["--sequential", "pocock", "--max-units", "1500", "--looks", "looks.json"];
    let err = allot(d.path(), &analyze("exposures.csv", &changed)).failure().get_output().stderr.clone();
    let err = String::from_utf8_lossy(&err);
    assert!(err.contains("method: the recorded looks use obf, not pocock"), "{err}");
    // Fewer units than a recorded look: that series says so.
    let back = json(d.path(), &analyze("early.csv", &flags));
    let e = series(&back, "home-feed", "revenue", "treatment")["error"].as_str().unwrap().to_string();
    assert!(e.contains("fewer than the recorded look"), "{e}");
}

#[test]
fn the_final_look_and_the_capacity_plan() {
    let d = scratch(10);
    // With --traffic the planned maximum is the capacity plan's units_needed.
    let cap = json(
        d.path(),
        &["capacity", "--traffic", &examples().join("traffic.yaml").to_string_lossy(), "--format", "json"],
    );
    let traffic = examples().join("traffic.yaml");
    let r =
        json(d.path(), &analyze("exposures.csv", &["--sequential", "pocock", "--traffic", &traffic.to_string_lossy()]));
    let s = series(&r, "home-banner", "revenue", "treatment");
    assert_eq!(s["max_units"], cap["experiments"]["home-banner"]["units_needed"]);
    // --planned-looks: the fixed-horizon sample times the design's inflation factor.
    let r = json(
        d.path(),
        &analyze(
            "exposures.csv",
            &["--sequential", "obf", "--traffic", &traffic.to_string_lossy(), "--planned-looks", "4"],
        ),
    );
    let plan = &cap["experiments"]["search-rank"];
    let alpha = plan["alpha"].as_f64().unwrap() / (plan["arms"].as_f64().unwrap() - 1.0);
    let t = [0.25, 0.5, 0.75, 1.0];
    let want = plan["units_needed"].as_f64().unwrap()
        * allot_stats::sequential::inflation(
            Spending::ObrienFleming,
            alpha,
            Sides::Two,
            &t,
            plan["power"].as_f64().unwrap(),
        )
        .unwrap();
    let got = series(&r, "search-rank", "revenue", "neural")["max_units"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-9 * want && got > plan["units_needed"].as_f64().unwrap(), "{got} vs {want}");
    // A maximum below the units seen makes this the final look: it spends all of α.
    let r = json(d.path(), &analyze("exposures.csv", &["--sequential", "pocock", "--max-units", "100"]));
    let s = series(&r, "home-feed", "clicks", "treatment");
    let l = &s["looks"][0];
    assert_eq!(l["fraction"], 1.0);
    assert!((l["bound"].as_f64().unwrap() - 1.959963984540054).abs() < 1e-9, "{l}");
    assert!(["reject", "no_effect"].contains(&l["decision"].as_str().unwrap()));
}

#[test]
fn msprt_gives_always_valid_p_values() {
    let d = scratch(800);
    let flags = ["--sequential", "msprt", "--tau", "0.5", "--looks", "m.json"];
    json(d.path(), &analyze("early.csv", &flags));
    let r = json(d.path(), &analyze("exposures.csv", &flags));
    let s = series(&r, "home-feed", "revenue", "treatment");
    let looks = s["looks"].as_array().unwrap();
    assert_eq!(looks.len(), 2);
    let p: Vec<f64> = looks.iter().map(|l| l["p_value"].as_f64().unwrap()).collect();
    assert!(p[1] <= p[0]);
    let ci = |i: usize| looks[i]["ci"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>();
    assert!(ci(1)[0] >= ci(0)[0] && ci(1)[1] <= ci(0)[1]);
    // Without τ nor a traffic file it says what is missing.
    let err =
        allot(d.path(), &analyze("exposures.csv", &["--sequential", "msprt"])).failure().get_output().stderr.clone();
    assert!(String::from_utf8_lossy(&err).contains("--tau"), "{}", String::from_utf8_lossy(&err));
    let err =
        allot(d.path(), &analyze("exposures.csv", &["--sequential", "obf"])).failure().get_output().stderr.clone();
    assert!(String::from_utf8_lossy(&err).contains("--max-units"));
}

#[test]
fn text_and_html_show_the_looks() {
    let d = scratch(800);
    let out = allot(
        d.path(),
        &[
            "analyze",
            "--exposures",
            "exposures.csv",
            "--metrics",
            "metrics.csv",
            "--sequential",
            "obf",
            "--max-units",
            "1500",
            "--html",
            "r.html",
        ],
    )
    .success()
    .get_output()
    .stdout
    .clone();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("Sequential (obf, two-sided, α = 0.05)"), "{text}");
    assert!(text.contains("look 1: "), "{text}");
    let html = std::fs::read_to_string(d.path().join("r.html")).unwrap();
    assert!(html.contains("<h2>Sequential looks</h2>"));
    assert!(html.contains("information fraction (units / planned maximum)") && html.contains("z statistic"));
}

/// A stopped experiment and its successor on the same surface: the successor takes the never-used
/// buckets first (least recently used), so its units had been in the stopped one far less often
/// than the rest of the population — restricted sampling, measured.
#[test]
fn reuse_health_measures_past_treatment() {
    let d = tempfile::tempdir().unwrap();
    let v1 = "units:\n  user: {attribute: user_id}\nsurfaces: [home]\nexperiments:\n  old:\n    unit: user\n    surfaces: [home]\n    share: 50%\n    variants: {control: 1, treatment: 1}\n    state: running\n";
    std::fs::write(d.path().join("allot.yaml"), v1).unwrap();
    allot(d.path(), &["apply"]).success();
    let v2 = v1.replace("    state: running\n", "    state: stopped\n")
        + "  new:\n    unit: user\n    surfaces: [home]\n    share: 60%\n    variants: {control: 1, treatment: 1}\n    state: running\n";
    std::fs::write(d.path().join("allot.yaml"), &v2).unwrap();
    allot(d.path(), &["apply"]).success();
    // The population: 3000 units with a pre-period metric; exposures of `new`'s units.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("allot.state.json")).unwrap()).unwrap();
    let st = allot_core::state::State::from_json(&state.to_string()).unwrap();
    let alloc = |owner: &str| st.allocations.iter().find(|a| a.owner == owner).unwrap().current();
    let (old, new) = (alloc("old"), alloc("new"));
    let space = &st.spaces["user"];
    let mut cov = String::from("unit,metric,value\n");
    let mut exp = String::from("unit,experiment,variant\n");
    let mut met = String::from("unit,metric,value\n");
    let (mut in_new, mut in_new_old, mut out_new, mut out_new_old) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..3000 {
        let u = format!("u{i}");
        let b = allot_core::hash::bucket(&space.salt, &u, space.buckets);
        cov.push_str(&format!("{u},spend,{}\n", (i % 7) as f64));
        if new.contains(b) {
            in_new += 1;
            in_new_old += u64::from(old.contains(b));
            exp.push_str(&format!("{u},new,{}\n", if i % 2 == 0 { "control" } else { "treatment" }));
            met.push_str(&format!("{u},spend,1\n"));
        } else {
            out_new += 1;
            out_new_old += u64::from(old.contains(b));
        }
    }
    std::fs::write(d.path().join("cov.csv"), cov).unwrap();
    std::fs::write(d.path().join("exp.csv"), exp).unwrap();
    std::fs::write(d.path().join("met.csv"), met).unwrap();
    let args = [
        "analyze",
        "--exposures",
        "exp.csv",
        "--metrics",
        "met.csv",
        "--covariates",
        "cov.csv",
        "--reuse-health",
        "--format",
        "json",
    ];
    let r = json(d.path(), &args);
    let h = &r["reuse_health"].as_array().unwrap()[0];
    assert_eq!(h["experiment"], "new");
    assert_eq!((h["units_in"].as_u64().unwrap(), h["units_out"].as_u64().unwrap()), (in_new, out_new));
    let p = &h["past_treatment"][0];
    assert_eq!(p["experiment"], "old");
    assert_eq!(p["units_in"].as_u64().unwrap(), in_new_old);
    assert_eq!(p["units_out"].as_u64().unwrap(), out_new_old);
    // 60% drawn after a released 50%: the 50% never used first, so 1/6 of `new` had been in
    // `old`, and every unit outside it had.
    let (si, so) = (p["share_in"].as_f64().unwrap(), p["share_out"].as_f64().unwrap());
    assert!((si - 1.0 / 6.0).abs() < 0.05 && so > 0.95, "{p}");
    assert!(h["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().starts_with("past treatment old")));
    assert_eq!(h["pre_period"][0]["metric"], "spend");
    // At the start, before any exposure: `allot reuse-health` says the same.
    let start = json(d.path(), &["reuse-health", "--covariates", "cov.csv", "--format", "json"]);
    assert_eq!(start.as_array().unwrap().len(), 1, "only `new` is live: {start}");
    assert_eq!(&start[0], h);
    let named =
        json(d.path(), &["reuse-health", "--covariates", "cov.csv", "--experiment", "nope", "--format", "json"]);
    assert!(named[0]["error"].as_str().unwrap().contains("no allocation of its own"));
    // Text and HTML carry it.
    let mut text_args = args.to_vec();
    text_args.truncate(text_args.len() - 2);
    text_args.extend(["--html", "r.html"]);
    let out = allot(d.path(), &text_args).success().get_output().stdout.clone();
    assert!(String::from_utf8_lossy(&out).contains("Bucket-reuse health"));
    let html = std::fs::read_to_string(d.path().join("r.html")).unwrap();
    assert!(html.contains("<h2>Bucket-reuse health</h2>") && html.contains("share that had been in it (in − out)"));
    // Without a state it says so.
    let e = tempfile::tempdir().unwrap();
    for f in ["cov.csv", "exp.csv", "met.csv"] {
        std::fs::copy(d.path().join(f), e.path().join(f)).unwrap();
    }
    let err = allot(e.path(), &args).failure().get_output().stderr.clone();
    assert!(String::from_utf8_lossy(&err).contains("--reuse-health needs the recorded state"));
}
