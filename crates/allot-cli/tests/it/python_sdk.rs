//! The Python SDK (`sdks/python`) end to end: builds the wheel's module into a virtualenv
//! (`maturin develop`, the dev profile, so it reuses this workspace's compiled crates), then runs
//! its pytest suite (`sdks/python/tests`) against real `allot serve` processes of this build:
//! evaluation, polling, sticky stores, exposures, the dropped counter, the OpenFeature provider
//! and the exposure hook with it and with the published OFREP provider, and the golden suite of
//! `spec/assign/`.
//!
//! The virtualenv is `ALLOT_PYTHON_SDK_VENV` (with the pinned maturin, pytest, openfeature-sdk and
//! openfeature-provider-ofrep that `.ci/run` installs). Without it the test says it skipped,
//! unless `ALLOT_REQUIRE_PYTHON_SDK=1` (as `.ci/run` sets): then it fails.

use std::path::Path;
use std::process::Command;

#[test]
fn the_python_sdk_passes_its_suite_against_serve() {
    let required = std::env::var("ALLOT_REQUIRE_PYTHON_SDK").is_ok_and(|v| v == "1");
    let venv = std::env::var("ALLOT_PYTHON_SDK_VENV").ok().filter(|v| Path::new(v).join("bin/maturin").exists());
    let Some(venv) = venv else {
        assert!(!required, "ALLOT_REQUIRE_PYTHON_SDK=1 but ALLOT_PYTHON_SDK_VENV has no maturin (see .ci/run)");
        eprintln!("skipped the Python SDK: set ALLOT_PYTHON_SDK_VENV to a virtualenv with maturin and pytest");
        return;
    };
    let venv = Path::new(&venv);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let sdk = root.join("sdks/python");
    let path = format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(venv.join("bin/maturin"))
        .args(["develop", "--quiet", "--manifest-path"])
        .arg(sdk.join("Cargo.toml"))
        .env("VIRTUAL_ENV", venv)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "maturin develop failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A private CA and a certificate for localhost, for the suite's HTTPS case.
    let tls = tempfile::tempdir().unwrap();
    let ca = crate::tls::certificate(tls.path());
    std::fs::write(tls.path().join("ca.pem"), ca).unwrap();
    let out = Command::new(venv.join("bin/python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(sdk.join("tests"))
        .current_dir(&sdk)
        .env("ALLOT_BIN", env!("CARGO_BIN_EXE_allot"))
        .env("ALLOT_SPEC_DIR", root.join("spec"))
        .env("ALLOT_TLS_DIR", tls.path())
        .env("PATH", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(out.status.success(), "pytest failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // The suite ran (pytest exits 5 when it collects nothing, but say it anyway).
    assert!(stdout.contains(" passed"), "{stdout}");
}
