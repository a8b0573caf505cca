//! `allot analyze` knows time (issue 10, requirement 10): two exclusive experiments that never ran
//! at the same time (one stopped, the next started on its buckets) are bucket reuse, not a
//! violation, and get no interaction test; the recorded state, else the exposures' versions,
//! else their times decide.

use assert_cmd::Command;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

/// `old-banner` and `new-banner` share the surface `home` (exclusive); `search-rank` is on
/// another surface. `{old}`, `{new}`, `{search}` are states, `{share}` the banners' share.
fn config(old: &str, new: &str, search: &str, share: &str) -> String {
    format!(
        "units:\n  user: {{attribute: user_id}}\nsurfaces: [home, search]\nexperiments:\n  old-banner:\n    unit: user\n    surfaces: [home]\n    share: {share}\n    variants: {{control: 1, treatment: 1}}\n    state: {old}\n  new-banner:\n    unit: user\n    surfaces: [home]\n    share: {share}\n    variants: {{control: 1, treatment: 1}}\n    state: {new}\n  search-rank:\n    unit: user\n    surfaces: [search]\n    share: 100%\n    variants: {{control: 1, treatment: 1}}\n    state: {search}\n"
    )
}

const DAY: u64 = 86_400;
const T0: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn allot(dir: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("allot")
        .unwrap()
        .current_dir(dir)
        .env_remove("ALLOT_STATE")
        .env_remove("ALLOT_CONFIG")
        .args(args)
        .assert()
}

/// Applies each configuration in turn, then sets the change log's times to `times` (seconds).
fn apply(dir: &Path, configs: &[String], times: &[u64]) {
    for c in configs {
        std::fs::write(dir.join("allot.yaml"), c).unwrap();
        allot(dir, &["apply"]).success();
    }
    let path = dir.join("allot.state.json");
    let mut st: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let log = st["log"].as_array_mut().unwrap();
    assert_eq!(log.len(), times.len());
    for (l, t) in log.iter_mut().zip(times) {
        l["time"] = json!(rfc3339(*t));
    }
    std::fs::write(&path, serde_json::to_string_pretty(&st).unwrap()).unwrap();
}

fn rfc3339(t: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(t as i64).unwrap();
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// Exposure rows `(unit, experiment, variant, time, version)`, written with the columns present.
type Row = (String, &'static str, &'static str, u64, Option<u64>);

fn write_exposures(dir: &Path, rows: &[Row]) {
    let versions = rows.iter().any(|r| r.4.is_some());
    let mut s = String::from(if versions {
        "unit,experiment,variant,timestamp,version\n"
    } else {
        "unit,experiment,variant,timestamp\n"
    });
    let mut m = String::from("unit,metric,value\n");
    for (i, (u, e, v, t, ver)) in rows.iter().enumerate() {
        match ver {
            Some(ver) => writeln!(s, "{u},{e},{v},{t},{ver}").unwrap(),
            None => writeln!(s, "{u},{e},{v},{t}").unwrap(),
        }
        writeln!(m, "{u},revenue,{}", (i * 7919) % 13).unwrap();
    }
    std::fs::write(dir.join("exposures.csv"), s).unwrap();
    std::fs::write(dir.join("metrics.csv"), m).unwrap();
}

/// 200 units: each saw `old-banner` at `old_at` and then `new-banner` at `new_at` (seconds after T0).
fn banner_rows(old_at: u64, new_at: u64, versions: Option<(u64, u64)>) -> Vec<Row> {
    let mut rows = vec![];
    for i in 0..200u64 {
        let (u, v) = (format!("u{i:03}"), if i % 2 == 0 { "control" } else { "treatment" });
        rows.push((u.clone(), "old-banner", v, T0 + old_at + i, versions.map(|x| x.0)));
        rows.push((
            u,
            "new-banner",
            if i % 3 == 0 { "control" } else { "treatment" },
            T0 + new_at + i,
            versions.map(|x| x.1),
        ));
    }
    rows
}

fn analyze(dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["analyze", "--exposures", "exposures.csv", "--metrics", "metrics.csv", "--format", "json"];
    args.extend(extra);
    let out = allot(dir, &args).success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
}

fn text(dir: &Path) -> String {
    let a = allot(dir, &["analyze", "--exposures", "exposures.csv", "--metrics", "metrics.csv"]).success();
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

fn violations(r: &Value) -> u64 {
    let d = &r["diagnostics"]["exposure_issues"];
    ["inclusion", "identity_merge", "config_change", "unexplained"]
        .iter()
        .map(|c| d[c]["count"].as_u64().unwrap())
        .sum()
}

fn pair<'a>(list: &'a Value, a: &str, b: &str) -> Option<&'a Value> {
    list.as_array().unwrap().iter().find(|i| {
        let e = i["experiments"].as_array().unwrap();
        (e[0] == a && e[1] == b) || (e[0] == b && e[1] == a)
    })
}

/// A ran, was stopped, and B started on its buckets (both 100%: every unit of A is in B): by the
/// recorded state they never ran at once, whatever the exposures' times say.
#[test]
fn a_stopped_experiment_and_its_successor_on_its_buckets_are_reuse_not_a_violation() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    apply(
        d,
        &[config("running", "draft", "draft", "100%"), config("stopped", "running", "draft", "100%")],
        &[T0, T0 + 10 * DAY],
    );
    // The state records A at [1, 2) and B from 2.
    let st: Value = serde_json::from_str(&std::fs::read_to_string(d.join("allot.state.json")).unwrap()).unwrap();
    let allocs = st["allocations"].as_array().unwrap();
    let a = allocs.iter().find(|a| a["owner"] == "old-banner").unwrap();
    assert_eq!((a["draws"][0]["version"].as_u64(), a["released"].as_u64()), (Some(1), Some(2)));

    write_exposures(d, &banner_rows(DAY, 11 * DAY, None));
    let r = analyze(d, &[]);
    assert_eq!(violations(&r), 0, "{}", r["diagnostics"]);
    assert_eq!(r["diagnostics"]["reused_after_stop"]["count"], 200);
    assert_eq!(r["diagnostics"]["reused_after_stop"]["examples"][0]["basis"], "state");
    assert_eq!(r["diagnostics"]["runs"]["old-banner"]["state_versions"], json!([[1, 2]]));
    assert_eq!(r["diagnostics"]["runs"]["new-banner"]["state_versions"], json!([[2, null]]));
    assert!(pair(&r["interactions"], "old-banner", "new-banner").is_none(), "{}", r["interactions"]);
    let skipped = pair(&r["interactions_skipped"], "old-banner", "new-banner").unwrap();
    assert_eq!(skipped["units"], 200);
    assert_eq!(skipped["should_be_exclusive"], true);
    assert_eq!(skipped["ran_together"], json!({"overlapped": false, "basis": "state"}));
    let t = text(d);
    assert!(!t.contains("SHOULD HAVE BEEN EXCLUSIVE"), "{t}");
    assert!(t.contains("old-banner × new-banner: 200 shared units, no interaction test: they never ran at the same time (by the recorded state)") || t.contains("new-banner × old-banner: 200 shared units, no interaction test"), "{t}");
    assert!(t.contains("reused_after_stop: 200"), "{t}");
    allot(d, &["analyze", "--exposures", "exposures.csv", "--metrics", "metrics.csv", "--html", "r.html"]).success();
    let page = std::fs::read_to_string(d.join("r.html")).unwrap();
    assert!(page.contains("200 shared units, no interaction test: they never ran at the same time"), "{page}");
    assert!(!page.contains("should have been exclusive"));

    // Two unit ids of one person, in both (same variants): not a conflict either.
    std::fs::write(d.join("identities.csv"), "unit,person\nu000,p-ann\nu006,p-ann\n").unwrap();
    let r = analyze(d, &["--identities", "identities.csv"]);
    assert_eq!(r["diagnostics"]["exposure_issues"]["identity_merge"]["count"], 0);

    // Exposure times that interleave (late logging) do not overrule the state.
    write_exposures(d, &banner_rows(11 * DAY, DAY, None));
    let r = analyze(d, &[]);
    assert_eq!((violations(&r), r["diagnostics"]["reused_after_stop"]["count"].as_u64()), (0, Some(200)));
}

/// The same exposures when both ran together (B started beside A, not after it): every shared
/// unit is a violation, and the pair is tested for an interaction and flagged.
#[test]
fn exclusive_experiments_that_ran_together_and_share_units_are_violations() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    apply(
        d,
        &[config("running", "draft", "draft", "50%"), config("running", "running", "draft", "50%")],
        &[T0, T0 + 10 * DAY],
    );
    write_exposures(d, &banner_rows(DAY, 11 * DAY, None));
    let r = analyze(d, &[]);
    assert_eq!(violations(&r), 200, "{}", r["diagnostics"]);
    assert_eq!(r["diagnostics"]["reused_after_stop"]["count"], 0);
    let p = pair(&r["interactions"], "old-banner", "new-banner").unwrap();
    assert_eq!(p["should_be_exclusive"], true);
    assert_eq!(p["units"], 200);
    assert_eq!(p["ran_together"], json!({"overlapped": true, "basis": "state"}));
    assert!(!p["metrics"]["revenue"].as_array().unwrap().is_empty());
    assert!(text(d).contains("SHOULD HAVE BEEN EXCLUSIVE"));
    std::fs::write(d.join("identities.csv"), "unit,person\nu000,p-ann\nu006,p-ann\n").unwrap();
    let r = analyze(d, &["--identities", "identities.csv"]);
    assert_eq!(
        r["diagnostics"]["exposure_issues"]["identity_merge"]["count"], 2,
        "u000×u006 and u006×u000 across the pair"
    );
}

/// Without a state, the exposures' own first..last times decide; an experiment the configuration
/// says is running runs on past its last exposure.
#[test]
fn without_a_state_the_exposure_times_decide() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("allot.yaml"), config("stopped", "running", "running", "100%")).unwrap();
    let mut rows = banner_rows(DAY, 11 * DAY, None);
    // search-rank (another surface: not exclusive) ran from day 20 on, for the same units.
    for i in 0..100u64 {
        rows.push((
            format!("u{i:03}"),
            "search-rank",
            if i % 2 == 0 { "control" } else { "treatment" },
            T0 + 20 * DAY + i,
            None,
        ));
    }
    write_exposures(d, &rows);
    let r = analyze(d, &[]);
    assert_eq!(violations(&r), 0, "{}", r["diagnostics"]);
    assert_eq!(r["diagnostics"]["reused_after_stop"]["count"], 200);
    assert_eq!(r["diagnostics"]["reused_after_stop"]["examples"][0]["basis"], "exposure_times");
    assert!(pair(&r["interactions"], "old-banner", "new-banner").is_none());
    // Not exclusive and never at once (old-banner's last exposure is on day 1): no test, and why.
    let s = pair(&r["interactions_skipped"], "old-banner", "search-rank").unwrap();
    assert_eq!(s["should_be_exclusive"], false);
    assert_eq!(s["units"], 100);
    assert_eq!(s["reason"], "they never ran at the same time (by the times of their exposures)");
    // Not exclusive and both running: tested.
    let p = pair(&r["interactions"], "new-banner", "search-rank").unwrap();
    assert_eq!(p["ran_together"], json!({"overlapped": true, "basis": "exposure_times"}));
    assert_eq!(p["units"], 100);
    assert!(text(d).contains(
        "shared units, no interaction test: they never ran at the same time (by the times of their exposures)"
    ));

    // One late exposure to old-banner on day 12: the two ran at the same time, and no unit saw
    // new-banner after old-banner had stopped: every shared unit is a violation.
    rows.push(("u-late".into(), "old-banner", "control", T0 + 12 * DAY, None));
    write_exposures(d, &rows);
    let r = analyze(d, &[]);
    assert_eq!(violations(&r), 200, "{}", r["diagnostics"]);
    assert_eq!(r["diagnostics"]["reused_after_stop"]["count"], 0);
    let p = pair(&r["interactions"], "old-banner", "new-banner").unwrap();
    assert_eq!(p["should_be_exclusive"], true);
    assert!(text(d).contains("SHOULD HAVE BEEN EXCLUSIVE"));

    // Both running per the configuration: they run together, whatever the exposures.
    std::fs::write(d.join("allot.yaml"), config("running", "running", "running", "50%")).unwrap();
    write_exposures(d, &banner_rows(DAY, 11 * DAY, None));
    let r = analyze(d, &[]);
    assert_eq!(violations(&r), 200);
}

/// A `version` column (as the service exports it) is read and, without a state, decides before
/// the times: versions 1 then 2 never overlap even where times interleave (several nodes serve
/// the old version for a moment after a commit).
#[test]
fn exposure_versions_are_read_and_decide_before_times() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("allot.yaml"), config("stopped", "running", "draft", "100%")).unwrap();
    write_exposures(d, &banner_rows(DAY, DAY / 2, Some((1, 2))));
    let r = analyze(d, &[]);
    assert_eq!(r["diagnostics"]["exposure_versions"], true);
    assert_eq!(r["diagnostics"]["runs"]["old-banner"]["seen_versions"], json!([1, 1]));
    assert_eq!(r["diagnostics"]["runs"]["new-banner"]["seen_versions"], json!([2, null]), "running: open-ended");
    assert_eq!(violations(&r), 0, "{}", r["diagnostics"]);
    assert_eq!(r["diagnostics"]["reused_after_stop"]["count"], 200);
    assert_eq!(r["diagnostics"]["reused_after_stop"]["examples"][0]["basis"], "versions");
    assert_eq!(
        pair(&r["interactions_skipped"], "old-banner", "new-banner").unwrap()["ran_together"]["basis"],
        "versions"
    );
    // The same versions for both: together, a violation.
    write_exposures(d, &banner_rows(DAY, DAY / 2, Some((2, 2))));
    assert_eq!(violations(&analyze(d, &[])), 200);
    // A bad version names the file, the line and the column.
    std::fs::write(
        d.join("exposures.csv"),
        "unit,experiment,variant,timestamp,version\nu1,old-banner,control,1,1\nu2,old-banner,control,1,-3\n",
    )
    .unwrap();
    let a = allot(d, &["analyze", "--exposures", "exposures.csv", "--metrics", "metrics.csv"]).code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("exposures.csv:3") && err.contains("`version`"), "{err}");
}

/// With the state and a version column, each unit is placed by its own versions: of two
/// exclusive experiments that ran together for a while, a unit that came to B after A had
/// stopped is reuse, a unit in both while both ran is a violation.
#[test]
fn with_the_state_each_unit_is_judged_by_its_own_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    apply(
        d,
        &[config("running", "running", "draft", "50%"), config("stopped", "running", "draft", "50%")],
        &[T0, T0 + 10 * DAY],
    );
    // 150 units saw A at version 1 and B at version 2 (after A's release: reuse); 50 saw both at 1.
    let mut rows = vec![];
    for i in 0..200u64 {
        let u = format!("u{i:03}");
        let vb = if i < 150 { 2 } else { 1 };
        rows.push((u.clone(), "old-banner", if i % 2 == 0 { "control" } else { "treatment" }, T0 + DAY, Some(1)));
        rows.push((u, "new-banner", if i % 3 == 0 { "control" } else { "treatment" }, T0 + 2 * DAY, Some(vb)));
    }
    write_exposures(d, &rows);
    let r = analyze(d, &[]);
    assert_eq!(r["diagnostics"]["reused_after_stop"]["count"], 150, "{}", r["diagnostics"]);
    assert_eq!(violations(&r), 50);
    let p = pair(&r["interactions"], "old-banner", "new-banner").unwrap();
    assert_eq!((p["units"].as_u64(), p["reused_after_stop"].as_u64()), (Some(50), Some(150)));
    assert_eq!(p["ran_together"], json!({"overlapped": true, "basis": "state"}));
}

/// End to end from the service: exposures logged by `/api/v1/evaluate` at version 1 and sent at
/// version 2 (the server fills in its current version) with a clock that makes their times
/// overlap; `GET /api/v1/exposures` carries `time` and `version`; written as CSV the way
/// docs/stats.md shows (`jq -r '.exposures[] | [.unit, .experiment, .variant, .time, .version] |
/// @csv'`), `analyze` reads both and the versions decide: reuse, no violation.
#[cfg(unix)]
#[test]
fn exposures_from_the_service_carry_their_version_and_analyze_uses_it() {
    use crate::serve::{auth, http, start};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let s = start(d, &[]);
    let (h, k) = auth();
    let put = |cfg: &str, if_match: &str| {
        let (status, body) = http(&s.addr, "PUT", "/api/v1/config", &[(h, &k), ("If-Match", if_match)], cfg);
        assert_eq!(status, 200, "{body}");
    };
    put(&config("running", "draft", "draft", "100%"), "\"0\"");
    for i in 0..40 {
        let body =
            format!(r#"{{"context": {{"user_id": "u{i:03}"}}, "experiments": ["old-banner"], "log_exposures": true}}"#);
        let (status, body) = http(&s.addr, "POST", "/api/v1/evaluate", &[(h, &k)], &body);
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = http(&s.addr, "GET", "/api/v1/exposures?limit=10000", &[(h, &k)], "");
    assert_eq!(status, 200, "{body}");
    let first: Value = serde_json::from_str(&body).unwrap();
    let xs = first["exposures"].as_array().unwrap();
    assert_eq!(xs.len(), 40, "{first}");
    assert!(xs.iter().all(|x| x["version"] == 1 && x["time"].is_string()), "{first}");
    // Version 2: old-banner stopped, new-banner started on its buckets. The same units are sent
    // as exposures with the time of old-banner's first exposure (a client's clock): by time the
    // two overlap, by version they do not.
    let v2 = config("stopped", "running", "draft", "100%");
    put(&v2, "\"1\"");
    let earliest = xs[0]["time"].as_str().unwrap();
    let batch: Vec<Value> = (0..40)
        .map(
            |i| json!({"unit": format!("u{i:03}"), "experiment": "new-banner", "variant": "control", "time": earliest}),
        )
        .collect();
    let (status, body) =
        http(&s.addr, "POST", "/api/v1/exposures", &[(h, &k)], &json!({"exposures": batch}).to_string());
    assert_eq!(status, 200, "{body}");
    // Page them out as docs/stats.md shows.
    let mut csv = String::from("unit,experiment,variant,timestamp,version\n");
    let mut metrics = String::from("unit,metric,value\n");
    let mut after = 0;
    loop {
        let (status, body) = http(&s.addr, "GET", &format!("/api/v1/exposures?after={after}&limit=25"), &[(h, &k)], "");
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        let xs = page["exposures"].as_array().unwrap();
        if xs.is_empty() {
            break;
        }
        for x in xs {
            let q = |v: &Value| format!("\"{}\"", v.as_str().unwrap());
            writeln!(
                csv,
                "{},{},{},{},{}",
                q(&x["unit"]),
                q(&x["experiment"]),
                q(&x["variant"]),
                q(&x["time"]),
                x["version"]
            )
            .unwrap();
            writeln!(metrics, "{},revenue,1", x["unit"].as_str().unwrap()).unwrap();
        }
        after = page["next"].as_u64().unwrap();
    }
    std::fs::write(d.join("exposures.csv"), csv).unwrap();
    std::fs::write(d.join("metrics.csv"), metrics).unwrap();
    std::fs::write(d.join("analysis.yaml"), &v2).unwrap();
    let r = analyze(d, &["-c", "analysis.yaml"]);
    assert_eq!(r["diagnostics"]["exposure_versions"], true);
    assert_eq!(r["diagnostics"]["runs"]["old-banner"]["seen_versions"], json!([1, 1]));
    assert_eq!(r["diagnostics"]["runs"]["new-banner"]["seen_versions"], json!([2, null]));
    assert_eq!(violations(&r), 0, "{}", r["diagnostics"]);
    assert_eq!(r["diagnostics"]["reused_after_stop"]["count"], 40);
    assert_eq!(r["diagnostics"]["reused_after_stop"]["examples"][0]["basis"], "versions");
    // Without the version column the same rows overlap in time: a violation for every unit.
    let no_version: String = std::fs::read_to_string(d.join("exposures.csv"))
        .unwrap()
        .lines()
        .map(|l| format!("{}\n", &l[..l.rfind(',').unwrap()]))
        .collect();
    std::fs::write(d.join("exposures.csv"), no_version).unwrap();
    let r = analyze(d, &["-c", "analysis.yaml"]);
    assert_eq!(violations(&r), 40, "{}", r["diagnostics"]);
}
