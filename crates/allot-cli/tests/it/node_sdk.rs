//! The Node SDK (`sdks/node`, napi-rs over `allot-sdk`) end to end: its `node:test` suites run
//! against a real `allot serve` — the golden assignments and buckets of `spec/assign/`, the
//! exposure hook against a stub of the exposure contract, evaluation, polling, the sticky store,
//! exposures, the dropped counter, the OpenFeature provider with the hook, and the hook with the
//! published OFREP provider through `POST /ofrep/v1/exposures`.
//!
//! The addon is this test's own build: allot-cli dev-depends on `allot-node`, so cargo builds
//! `liballot_node.so` into the test binary's `deps/` directory (same profile, same compiled
//! dependencies) before the test runs. The npm packages (`@openfeature/server-sdk`,
//! `@openfeature/ofrep-provider`, pinned by `.ci/run`) come from `ALLOT_NODE_SDK_MODULES`.
//! Without Node or them the test says it skipped, unless `ALLOT_REQUIRE_NODE_SDK=1` (as `.ci/run`
//! sets): then it fails. Likewise a server without `POST /ofrep/v1/exposures` (404) skips the
//! OFREP hook case outside CI and fails it in CI.

use super::serve::{auth, http, start, KEY};
use std::path::{Path, PathBuf};
use std::process::Command;

fn required() -> bool {
    std::env::var("ALLOT_REQUIRE_NODE_SDK").is_ok_and(|v| v == "1")
}

fn skip(why: &str) {
    assert!(!required(), "ALLOT_REQUIRE_NODE_SDK=1 but {why}");
    eprintln!("skipped: {why}");
}

/// The addon cargo built beside this test binary.
fn addon() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let name = if cfg!(target_os = "macos") { "liballot_node.dylib" } else { "liballot_node.so" };
    let p = deps.join(name);
    assert!(p.exists(), "{} is missing: allot-cli's dev-dependency on allot-node builds it", p.display());
    p
}

/// Runs `node --test` on the given files of sdks/node/test; asserts they all pass, and that
/// at least `min` tests ran (a suite that runs nothing is not a pass).
fn node_test(files: &[&str], env: &[(&str, String)], min: usize) {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdks/node");
    let mut c = Command::new("node");
    c.current_dir(&sdk).arg("--test").arg("--test-reporter=tap").args(files.iter().map(|f| format!("test/{f}")));
    c.env("ALLOT_NODE_ADDON", addon());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "node --test {files:?} failed:\n{stdout}\n{stderr}");
    let count = |what: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {what} ")))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no `# {what}` line in node's output:\n{stdout}"))
    };
    assert_eq!(count("fail"), 0, "{stdout}");
    assert!(count("pass") >= min, "{} tests passed, expected at least {min}:\n{stdout}", count("pass"));
    eprintln!("node --test {files:?}: {} passed", count("pass"));
}

#[cfg(unix)]
#[test]
fn the_node_sdk_suites_pass_against_serve() {
    if Command::new("node").arg("--version").output().is_err() {
        skip("node is not installed");
        return;
    }
    let Some(modules) = std::env::var("ALLOT_NODE_SDK_MODULES").ok().filter(|p| {
        Path::new(p).join("@openfeature/server-sdk").exists()
            && Path::new(p).join("@openfeature/ofrep-provider").exists()
    }) else {
        skip("the npm packages of the Node SDK's tests: set ALLOT_NODE_SDK_MODULES (see .ci/run)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[]);
    let env = [("ALLOT_URL", format!("http://{}", s.addr)), ("ALLOT_KEY", KEY.to_string()), ("NODE_PATH", modules)];
    node_test(&["golden.test.cjs", "hook-ofrep-stub.test.cjs", "serve.test.cjs"], &env, 14);
    // The exposure contract's endpoint (served once the OFREP exposures work is in).
    let (h, k) = auth();
    let body = r#"{"context": {"targetingKey": "probe"}, "flags": [{"key": "banner", "variant": "control"}]}"#;
    let (status, answer) =
        http(&s.addr, "POST", "/ofrep/v1/exposures", &[(h, &k), ("Content-Type", "application/json")], body);
    if status == 404 && !required() {
        eprintln!("skipped the OFREP hook case: this server has no POST /ofrep/v1/exposures ({answer})");
        return;
    }
    node_test(&["ofrep-exposures.test.cjs"], &env, 1);
    // Over HTTPS with a private CA: `caCert`.
    let tdir = tempfile::tempdir().unwrap();
    let ca = crate::tls::certificate(tdir.path());
    let t = start(tdir.path(), &["--tls-cert", "server.pem", "--tls-key", "server.key"]);
    let port = t.addr.rsplit(':').next().unwrap();
    let (code, out) = crate::tls::put_config(port, &ca, BANNER);
    assert_eq!(code, 200, "{out}");
    let env = [
        ("ALLOT_TLS_URL", format!("https://localhost:{port}")),
        ("ALLOT_TLS_CA", ca),
        ("ALLOT_KEY", KEY.to_string()),
        ("NODE_PATH", env[2].1.clone()),
    ];
    node_test(&["tls.test.cjs"], &env, 1);
}

/// The configuration of the HTTPS case.
const BANNER: &str = "units:\n  user: {attribute: user_id}\nexperiments:\n  banner: {unit: user, share: 100%, variants: {control: 1, treatment: 1}, state: running}\n";
