//! `allot analyze`'s output pinned byte for byte, in every format, on the committed example
//! (`examples/analysis/`): the golden files in `spec/stats/analyze/` were written by the analysis
//! as it stood before it moved into `allot_stats::analysis`, and any change of a number, a field,
//! its order or a line of text fails here. Regenerate them (after checking the change is meant)
//! with `ALLOT_UPDATE_GOLDEN=1 cargo test -p allot-cli --test it analyze_golden`.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(f: &str) -> String {
    root().join("examples/analysis").join(f).to_string_lossy().into_owned()
}

/// Runs `allot` in `dir` and returns its standard output.
fn run(dir: &Path, args: &[&str]) -> String {
    let a = Command::cargo_bin("allot")
        .unwrap()
        .current_dir(dir)
        .env_remove("ALLOT_STATE")
        .env_remove("ALLOT_CONFIG")
        .args(args)
        .assert()
        .success();
    String::from_utf8(a.get_output().stdout.clone()).unwrap()
}

/// Compares `got` with the golden file `name`, collecting the difference instead of stopping.
fn compare(name: &str, got: &str, failures: &mut Vec<String>) {
    let path = root().join("spec/stats/analyze").join(name);
    if std::env::var_os("ALLOT_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        failures.push(format!(
            "{name}: differs from line {}:\n  got:  {:?}\n  want: {:?}",
            line + 1,
            got.lines().nth(line),
            want.lines().nth(line)
        ));
    }
}

#[test]
fn analyze_output_is_pinned_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let html = tmp.path().join("report.html");
    let h = html.to_string_lossy().into_owned();
    let (e, m, c, i) =
        (example("exposures.csv"), example("metrics.csv"), example("covariates.csv"), example("identities.csv"));
    let full: Vec<&str> = vec!["--exposures", &e, "--metrics", &m, "--covariates", &c, "--identities", &i];
    let dir = root().join("examples/analysis");
    let mut failures = vec![];
    let mut cases = 0;
    for (format, ext) in [("json", "json"), ("text", "txt")] {
        let mut args = vec!["-c", "allot.yaml", "analyze"];
        args.extend(&full);
        args.extend(["--format", format, "--html", &h]);
        compare(&format!("example.{ext}"), &run(&dir, &args), &mut failures);
        compare("example.html", &std::fs::read_to_string(&html).unwrap(), &mut failures);
        // Without a configuration (none in the working directory): even splits, no exclusivity.
        let mut args = vec!["analyze"];
        args.extend(&full);
        args.extend(["--format", format]);
        compare(&format!("no-config.{ext}"), &run(tmp.path(), &args), &mut failures);
        cases += 3;
    }
    assert_eq!(cases, 6);
    assert!(failures.is_empty(), "{} of {cases} outputs differ:\n{}", failures.len(), failures.join("\n"));
}
