//! `allot serve` over a real socket: start, bootstrap key, GitOps config file, graceful
//! shutdown on SIGTERM, and a store that survives kill -9.

use allot_core::testing::edit;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub(crate) const KEY: &str = "test-admin-key-for-the-cli-tests-0001";

pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) addr: String,
    log: std::sync::mpsc::Receiver<String>,
    /// Log lines up to "serving".
    start_log: Vec<String>,
}

/// A failed assertion must not leave a server running.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(clippy::zombie_processes)] // the caller waits for it
pub(crate) fn start(dir: &Path, extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_allot"))
        .current_dir(dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(extra)
        .env("ALLOT_BOOTSTRAP_ADMIN_KEY", KEY)
        .env_remove("ALLOT_CONFIG")
        .env_remove("ALLOT_DATABASE_URL")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut start_log = vec![];
    loop {
        let line = rx.recv().expect("the server exited before serving");
        start_log.push(line.clone());
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if let Some(addr) = v["fields"]["addr"].as_str() {
            return Running { child, addr: addr.to_string(), log: rx, start_log };
        }
    }
}

pub(crate) fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    try_http(addr, method, path, headers, body).expect("the server answers")
}

/// `None` when the connection fails or is cut (the server was killed).
fn try_http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (h, v) in headers {
        req.push_str(&format!("{h}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default();
    Some((status, body))
}

pub(crate) fn auth() -> (&'static str, String) {
    ("Authorization", format!("Bearer {KEY}"))
}

pub(crate) const CONFIG: &str = "units:\n  user: {attribute: user_id}\nexperiments:\n  exp:\n    unit: user\n    share: 50%\n    variants: {a: 1, b: 1}\n    state: running\n";

pub(crate) fn version(addr: &str) -> u64 {
    let (h, v) = auth();
    let (status, body) = http(addr, "GET", "/api/v1/snapshot", &[(h, &v)], "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["version"].as_u64().unwrap()
}

#[cfg(unix)]
#[test]
fn serve_applies_the_file_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allot.yaml"), CONFIG).unwrap();
    let mut s = start(dir.path(), &["--config", "allot.yaml"]);
    assert_eq!(http(&s.addr, "GET", "/healthz", &[], "").0, 200);
    assert_eq!(http(&s.addr, "GET", "/api/v1/config", &[], "").0, 401);
    assert_eq!(version(&s.addr), 1);
    let (h, v) = auth();
    let (status, body) =
        http(&s.addr, "POST", "/ofrep/v1/evaluate/flags/exp", &[(h, &v)], r#"{"context": {"targetingKey": "u1"}}"#);
    assert_eq!(status, 200, "{body}");
    assert!(dir.path().join("allot.db").exists(), "the store is a file in the working directory");
    let ok = Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let exit = s.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    assert!(s.log.iter().any(|l| l.contains("shutting down")));

    // Restart with a change that change control refuses: reported, nothing applied.
    std::fs::write(dir.path().join("allot.yaml"), edit(CONFIG, "50%", "40%")).unwrap();
    let mut s = start(dir.path(), &["--config", "allot.yaml"]);
    assert_eq!(version(&s.addr), 1);
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    assert!(s.start_log.iter().any(|l| l.contains("refused by change control")), "the refusal is reported");
}

#[cfg(unix)]
#[test]
fn acknowledged_changes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path(), &[]);
    let (h, v) = auth();
    for i in 1..=5u64 {
        let cfg = edit(CONFIG, "50%", &format!("{}%", 40 + i));
        let (status, body) =
            http(&s.addr, "PUT", "/api/v1/config", &[(h, &v), ("If-Match", &format!("\"{}\"", i - 1))], &cfg);
        assert_eq!(status, 200, "{body}");
    }
    // SIGKILL right after the last acknowledgement.
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    let mut s = start(dir.path(), &[]);
    assert_eq!(version(&s.addr), 5);
    let (status, body) = http(&s.addr, "GET", "/api/v1/audit", &[(h, &v)], "");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["entries"].as_array().unwrap().len(), 5);
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}

/// kill -9 while changes are being written: every acknowledged change is there after a restart,
/// and every version and audit entry is readable.
#[cfg(unix)]
#[test]
fn kill_9_in_the_middle_of_writes_leaves_a_readable_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path(), &[]);
    let addr = s.addr.clone();
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            let (h, v) = auth();
            for i in 1..=10_000u64 {
                let cfg = edit(CONFIG, "50%", &format!("{}.{:04}%", 50 + i / 10_000, i % 10_000));
                match try_http(
                    &addr,
                    "PUT",
                    "/api/v1/config",
                    &[(h, &v), ("If-Match", &format!("\"{}\"", i - 1))],
                    &cfg,
                ) {
                    Some((200, _)) => acked.store(i, std::sync::atomic::Ordering::SeqCst),
                    _ => return,
                }
            }
        })
    };
    while acked.load(std::sync::atomic::Ordering::SeqCst) < 20 {
        std::thread::yield_now();
    }
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    writer.join().unwrap();
    let last_acked = acked.load(std::sync::atomic::Ordering::SeqCst);
    let mut s = start(dir.path(), &[]);
    let v = version(&s.addr);
    assert!(v >= last_acked, "version {v} lost an acknowledged change ({last_acked})");
    assert!(v <= last_acked + 1, "at most the one in flight committed");
    let (h, k) = auth();
    let (_, body) = http(&s.addr, "GET", "/api/v1/audit?limit=1000", &[(h, &k)], "");
    let entries = serde_json::from_str::<serde_json::Value>(&body).unwrap()["entries"].as_array().unwrap().len() as u64;
    assert_eq!(entries, v, "one audit entry per version");
    for version in [1, v / 2, v] {
        assert_eq!(http(&s.addr, "GET", &format!("/api/v1/versions/{version}"), &[(h, &k)], "").0, 200);
    }
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}

const FLAGS: &str = r#"
units:
  user: {attribute: user_id}
experiments:
  banner:
    unit: user
    share: 50%
    variants: {control: {weight: 1, value: false}, treatment: {weight: 1, value: true}}
    include: {alice: treatment}
    state: running
  color:
    unit: user
    share: 100%
    variants: {blue: 1, green: 1}
    state: running
  shape:
    unit: user
    share: 100%
    variants: {round: {weight: 1, value: {"corners": 0}}, square: {weight: 1, value: {"corners": 4}}}
    state: running
  later:
    unit: user
    share: 10%
    variants: {a: 1}
"#;

/// The answers the published OFREP clients must give for `FLAGS` (`color` and `shape` checked
/// against the server's own evaluation).
/// What a provider answers for a unit the experiment does not assign (`later` is not running).
#[derive(Clone, Copy)]
enum Unassigned {
    /// The code default as an error (`GENERAL`): `@openfeature/ofrep-provider` 0.1.3 does not take
    /// an answer without a `value`, `openfeature-provider-ofrep` 0.3.0 one without a `variant`
    /// (pinned here so that a release that takes it is noticed).
    CodeDefaultRefused,
    /// `X-Allot-Ofrep-Unassigned: first-variant`: the first variant and its value.
    FirstVariant,
}

fn check_client_output(lang: &str, out: &str, addr: &str, unassigned: Unassigned) {
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{lang}: {e}: {out}"));
    let (h, k) = auth();
    let (_, body) = http(addr, "POST", "/api/v1/evaluate", &[(h, &k)], r#"{"context": {"user_id": "u1"}}"#);
    let want: serde_json::Value = serde_json::from_str(&body).unwrap();
    let a = &want["assignments"];
    assert_eq!(
        v["banner_alice"],
        serde_json::json!({"value": true, "variant": "treatment", "reason": "TARGETING_MATCH", "errorCode": null}),
        "{lang}"
    );
    assert_eq!(v["color_u1"]["value"], a["color"]["value"], "{lang}");
    assert_eq!(v["color_u1"]["variant"], a["color"]["variant"], "{lang}");
    assert_eq!(v["color_u1"]["reason"], "SPLIT", "{lang}");
    assert_eq!(v["shape_u1"]["value"], a["shape"]["value"], "{lang}");
    let later = &v["later_u1"];
    let got =
        (later["value"].as_str(), later["variant"].as_str(), later["reason"].as_str(), later["errorCode"].as_str());
    match unassigned {
        Unassigned::CodeDefaultRefused => {
            assert!(got.0 == Some("none") && got.2 == Some("ERROR") && got.3.is_some(), "{lang}: {later}")
        }
        Unassigned::FirstVariant => {
            assert_eq!(got, (Some("a"), Some("a"), Some("DISABLED"), None), "{lang}: {later}")
        }
    }
    assert_eq!(
        (v["nope_u1"]["value"].as_str(), v["nope_u1"]["errorCode"].as_str()),
        (Some("fallback"), Some("FLAG_NOT_FOUND")),
        "{lang}"
    );
    assert_eq!(v["color_nokey"]["value"], "fallback", "{lang}");
    assert_eq!(v["color_nokey"]["errorCode"], "TARGETING_KEY_MISSING", "{lang}");
}

/// The 429 answers a server gave, from `/metrics` (which the rate limit does not count).
fn too_many(addr: &str) -> u64 {
    let (h, k) = auth();
    let (status, text) = http(addr, "GET", "/metrics", &[(h, &k)], "");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| l.starts_with("allot_http_requests_total") && l.contains("status=\"429\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A provider's three evaluations against `--rate-limit 1/min`: the first is answered, the
/// second gets 429 with `Retry-After` and the provider serves the code default, and the third is
/// not even sent (the provider honours `Retry-After`): the server saw exactly one 429.
fn check_burst(lang: &str, out: &str, addr: &str) {
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{lang}: {e}: {out}"));
    let r = v.as_array().unwrap_or_else(|| panic!("{lang}: {v}"));
    assert_eq!(r.len(), 3, "{lang}: {v}");
    assert_eq!((r[0]["reason"].as_str(), r[0]["errorCode"].as_str()), (Some("SPLIT"), None), "{lang}: {v}");
    for x in &r[1..] {
        assert_eq!(x["value"], "none", "{lang}: the code default while limited: {v}");
        assert!(x["errorCode"].is_string(), "{lang}: {v}");
    }
    assert_eq!(too_many(addr), 1, "{lang}: the provider must wait for Retry-After: {v}");
}

/// End to end over a real socket with the published OpenFeature OFREP providers: npm
/// `@openfeature/ofrep-provider` (node_modules in `ALLOT_OFREP_NODE_MODULES`) and PyPI
/// `openfeature-provider-ofrep` (a Python with it in `ALLOT_OFREP_PYTHON`). `.ci/run` installs
/// both; without them the test says it skipped, unless `ALLOT_REQUIRE_OFREP_CLIENTS=1` (as
/// `.ci/run` sets): then a missing client fails it.
#[cfg(unix)]
#[test]
fn published_ofrep_clients_evaluate_against_serve() {
    let required = std::env::var("ALLOT_REQUIRE_OFREP_CLIENTS").is_ok_and(|v| v == "1");
    let skip = |why: &str| {
        assert!(!required, "ALLOT_REQUIRE_OFREP_CLIENTS=1 but {why}");
        eprintln!("skipped {why}");
    };
    let node = std::env::var("ALLOT_OFREP_NODE_MODULES")
        .ok()
        .filter(|p| Path::new(p).join("@openfeature/ofrep-provider").exists());
    let python = std::env::var("ALLOT_OFREP_PYTHON").ok().filter(|p| Path::new(p).exists());
    if node.is_none() && python.is_none() {
        skip("the OFREP clients: set ALLOT_OFREP_NODE_MODULES and/or ALLOT_OFREP_PYTHON (see .ci/run)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allot.yaml"), FLAGS).unwrap();
    let mut s = start(dir.path(), &["--config", "allot.yaml"]);
    let base = format!("http://{}", s.addr);
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ofrep");
    let run = |program: &str, script: &str, base: &str, mode: &str| {
        let mut c = Command::new(program);
        c.arg(format!("{scripts}/{script}")).args([base, KEY, mode]);
        if let Some(modules) = &node {
            c.env("NODE_PATH", modules);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{script} {mode}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    if node.is_some() {
        check_client_output(
            "node",
            &run("node", "client.cjs", &base, "flags"),
            &s.addr,
            Unassigned::CodeDefaultRefused,
        );
        let out = run("node", "client.cjs", &base, "first-variant");
        check_client_output("node first-variant", &out, &s.addr, Unassigned::FirstVariant);
    } else {
        skip("the npm client: ALLOT_OFREP_NODE_MODULES is not set");
    }
    if let Some(py) = &python {
        check_client_output("python", &run(py, "client.py", &base, "flags"), &s.addr, Unassigned::CodeDefaultRefused);
        let out = run(py, "client.py", &base, "first-variant");
        check_client_output("python first-variant", &out, &s.addr, Unassigned::FirstVariant);
    } else {
        skip("the PyPI client: ALLOT_OFREP_PYTHON is not set");
    }
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    // The rate limit, honoured: one server per client, so that each starts with a full allowance.
    for (lang, program, script) in [("node", "node", "client.cjs"), ("python", "python", "client.py")] {
        let program = match (lang, &python) {
            ("node", _) if node.is_some() => program.to_string(),
            ("python", Some(py)) => py.clone(),
            _ => continue,
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("allot.yaml"), FLAGS).unwrap();
        let mut s = start(dir.path(), &["--config", "allot.yaml", "--rate-limit", "1/min"]);
        let base = format!("http://{}", s.addr);
        check_burst(lang, &run(&program, script, &base, "burst"), &s.addr);
        s.child.kill().unwrap();
        s.child.wait().unwrap();
    }
}

/// Waits (bounded) for the server to exit; its status.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..3000 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the server did not exit");
}

/// `--header-timeout-ms` reaches the server: a half-sent request's connection is closed.
#[test]
fn serve_closes_a_half_sent_request_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &["--header-timeout-ms", "200"]);
    let mut slow = TcpStream::connect(&s.addr).unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut got = vec![];
    // Ok: the server closed the connection (EOF); a read timeout (Err) would mean it did not.
    slow.read_to_end(&mut got).expect("the server closed the half-sent connection");
    assert!(!got.starts_with(b"HTTP/1.1 200"));
    assert_eq!(http(&s.addr, "GET", "/healthz", &[], "").0, 200);
}

/// SIGTERM with a slow client connected: the server stops within `--shutdown-timeout-ms` instead
/// of waiting for the client (whose header timeout is far longer).
#[cfg(unix)]
#[test]
fn sigterm_is_not_held_up_by_a_slow_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path(), &["--header-timeout-ms", "3600000", "--shutdown-timeout-ms", "200"]);
    let mut slow = TcpStream::connect(&s.addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert_eq!(http(&s.addr, "GET", "/healthz", &[], "").0, 200);
    assert!(Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap().success());
    let exit = wait_exit(&mut s.child);
    assert!(exit.success(), "{exit}");
}

/// The SQLite URLs a user would type create the file; a missing directory is a clear error.
#[test]
fn typed_sqlite_urls_create_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (url, file) in [("sqlite://./my.db", "my.db"), ("sqlite:other.db", "other.db")] {
        let mut s = start(dir.path(), &["--database-url", url]);
        assert_eq!(version(&s.addr), 0, "{url}");
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        assert!(dir.path().join(file).exists(), "{url}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_allot"))
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", "sqlite://./missing/x.db"])
        .env("ALLOT_BOOTSTRAP_ADMIN_KEY", KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing") && err.contains("does not exist"), "{err}");
}

/// A server that cannot listen has created nothing: the bootstrap key is still unused.
#[test]
fn a_server_that_cannot_bind_has_not_consumed_the_bootstrap_key() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_allot"))
        .current_dir(dir.path())
        .args(["serve", "--listen", &addr])
        .env("ALLOT_BOOTSTRAP_ADMIN_KEY", KEY)
        .env_remove("ALLOT_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listening on"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("allot.db").exists(), "no store (and no key) was created");
}

/// A different `ALLOT_BOOTSTRAP_ADMIN_KEY` on a store that has keys is said to be ignored; a
/// short one on an empty store stops the server with a clear error.
#[test]
fn bootstrap_keys_that_are_ignored_or_too_short_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path(), &[]);
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_allot"))
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("ALLOT_BOOTSTRAP_ADMIN_KEY", "a-different-key-of-at-least-32-chars")
        .env_remove("ALLOT_DATABASE_URL")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = vec![];
    let found = loop {
        let Some(Ok(line)) = lines.next() else { break false };
        seen.push(line.clone());
        if line.contains("ALLOT_BOOTSTRAP_ADMIN_KEY is ignored") {
            break true;
        }
        if line.contains("serving") {
            break false;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "{seen:#?}");
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_allot"))
        .current_dir(empty.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("ALLOT_BOOTSTRAP_ADMIN_KEY", "dev-key")
        .env_remove("ALLOT_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 32 characters"), "{err}");
}

/// `serve --state` imports the CLI's recorded state exactly: the service then answers every unit
/// as `allot assign` does on the file (across growth, a re-salt and a start); a store that holds
/// another state refuses to start; `migrate-store --from state:FILE` imports the same.
#[cfg(unix)]
#[test]
fn serve_state_serves_exactly_what_assign_gives() {
    let config = "units:\n  user: {attribute: user_id}\nsurfaces: [home, search]\nholdouts:\n  hold: {unit: user, share: 5%, applies_to: [home]}\nexperiments:\n  banner: {unit: user, surfaces: [home], share: 40%, variants: {a: 1, b: 1}, targeting: {attribute: country, in: [SE, NO]}, include: {u7: b}, state: running}\n  color: {unit: user, surfaces: [search], share: 30%, variants: {x: 1, y: 2}, state: running}\n  later: {unit: user, surfaces: [home], share: 20%, variants: {p: 1}}\n";
    let dir = tempfile::tempdir().unwrap();
    let allot = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_allot")).current_dir(dir.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let write = |text: &str| std::fs::write(dir.path().join("allot.yaml"), text).unwrap();
    write(config);
    allot(&["apply"]);
    let grown = edit(config, "share: 30%", "share: 50%");
    assert_ne!(grown, config);
    write(&grown);
    allot(&["apply"]);
    allot(&["resalt", "--reason", "quarterly"]);
    let started = edit(&grown, "variants: {p: 1}}", "variants: {p: 1}, state: running}");
    assert_ne!(started, grown);
    write(&started);
    allot(&["apply"]);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("allot.state.json")).unwrap()).unwrap();
    assert_eq!(state["version"], 4);

    let units: Vec<String> = (0..500)
        .map(|i| format!("{{\"user_id\": \"u{i}\", \"country\": \"{}\"}}", ["SE", "NO", "US"][i % 3]))
        .collect();
    std::fs::write(dir.path().join("units.jsonl"), units.join("\n") + "\n").unwrap();
    let assigned = allot(&["assign", "--units", "units.jsonl", "--format", "jsonl"]);
    let assigned: Vec<serde_json::Value> = assigned.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(assigned.len(), 500);

    let s = start(dir.path(), &["--state", "allot.state.json", "--database-url", "sqlite://served.db?mode=rwc"]);
    assert_eq!(version(&s.addr), 4);
    let (h, v) = auth();
    let (mut compared, mut differ, mut seen) = (0, vec![], std::collections::BTreeSet::new());
    for (ctx, want) in units.iter().zip(&assigned) {
        let (status, body) = http(&s.addr, "POST", "/api/v1/evaluate", &[(h, &v)], &format!("{{\"context\": {ctx}}}"));
        assert_eq!(status, 200, "{body}");
        let got: serde_json::Value = serde_json::from_str(&body).unwrap();
        for (exp, w) in want["assignments"].as_object().unwrap() {
            let g = &got["assignments"][exp];
            compared += 1;
            seen.insert(w["reason"].as_str().unwrap().to_string());
            if (&g["variant"], &g["reason"]) != (&w["variant"], &w["reason"]) {
                differ.push(format!("{ctx} {exp}: assign {w}, serve {g}"));
            }
        }
    }
    assert_eq!(compared, 1500);
    assert!(differ.is_empty(), "{} of {compared} answers differ: {:#?}", differ.len(), &differ[..differ.len().min(5)]);
    for reason in ["ASSIGNED", "HOLDOUT", "INCLUDED", "TARGETING_MISS", "NOT_ALLOCATED"] {
        assert!(seen.contains(reason), "the comparison covers {reason}: {seen:?}");
    }
    let (status, body) = http(&s.addr, "GET", "/api/v1/audit", &[(h, &v)], "");
    assert_eq!(status, 200);
    assert!(body.contains("state.import"), "{body}");
    drop(s);

    // The same file again: the store already holds it.
    let s = start(dir.path(), &["--state", "allot.state.json", "--database-url", "sqlite://served.db?mode=rwc"]);
    assert_eq!(version(&s.addr), 4);
    drop(s);
    // A file that moved on: the store holds another state at its version; refused, not served.
    write(&edit(&started, "share: 50%", "share: 60%"));
    allot(&["apply"]);
    let out = Command::new(env!("CARGO_BIN_EXE_allot"))
        .current_dir(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--state",
            "allot.state.json",
            "--database-url",
            "sqlite://served.db?mode=rwc",
        ])
        .env("ALLOT_BOOTSTRAP_ADMIN_KEY", KEY)
        .env_remove("ALLOT_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--state allot.state.json") && err.contains("version 5"), "{err}");

    // migrate-store imports the file into an empty store.
    let out = allot(&["migrate-store", "--from", "state:allot.state.json", "--to", "sqlite://imported.db?mode=rwc"]);
    assert!(out.contains("version 5"), "{out}");
    let s = start(dir.path(), &["--database-url", "sqlite://imported.db?mode=rwc"]);
    assert_eq!(version(&s.addr), 5);
}

/// The service reports what the CLI prints on the same state (`serve --state`): the audit, a
/// unit's and a bucket's history, traces, capacity and a re-salt's report, compared as JSON.
#[test]
fn serve_reports_what_the_cli_prints() {
    let config = "units:\n  user: {attribute: user_id}\nsurfaces: [home, search]\nsegments:\n  nordic: {attribute: country, in: [SE, NO]}\nholdouts:\n  hold: {unit: user, share: 5%, applies_to: [home]}\ngroups:\n  g: {unit: user, share: 40%, slots: [50%, 50%], surfaces: [search]}\nexperiments:\n  banner: {unit: user, surfaces: [home], share: 40%, variants: {a: 1, b: 1}, targeting: {segment: nordic}, include: {u7: b}, state: running}\n  color: {unit: user, group: g, slots: [1], variants: {x: 1, y: 2}, state: running}\n  gone: {unit: user, surfaces: [home], share: 30%, variants: {p: 1}, state: running}\n  later: {unit: user, surfaces: [home], share: 20%, variants: {p: 1}}\n";
    let dir = tempfile::tempdir().unwrap();
    let allot = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_allot")).current_dir(dir.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    std::fs::write(dir.path().join("allot.yaml"), config).unwrap();
    allot(&["apply", "--format", "json"]);
    let stopped = edit(config, "variants: {p: 1}, state: running}", "variants: {p: 1}, state: stopped}");
    std::fs::write(dir.path().join("allot.yaml"), &stopped).unwrap();
    allot(&["apply", "--format", "json"]);
    let traffic = r#"{"daily_units": {"user": 40000}, "experiments": {"later": {"metric": {"rate": 0.1}, "mde": 0.05}, "banner": {"metric": {"mean": 3.0, "sd": 5.0}, "mde_absolute": 0.2, "rho": 0.5}}}"#;
    std::fs::write(dir.path().join("traffic.json"), traffic).unwrap();

    let s = start(dir.path(), &["--state", "allot.state.json", "--database-url", "sqlite://served.db?mode=rwc"]);
    let (h, v) = auth();
    let get = |path: &str| {
        let (status, body) = http(&s.addr, "GET", path, &[(h, &v)], "");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let post = |path: &str, headers: &[(&str, &str)], body: &str| {
        let mut hs = vec![(h, v.as_str()), ("content-type", "application/json")];
        hs.extend_from_slice(headers);
        let (status, body) = http(&s.addr, "POST", path, &hs, body);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    assert_eq!(get("/api/v1/traffic"), allot(&["audit", "--format", "json"]));
    for unit in ["u1", "u7", "u42"] {
        assert_eq!(
            get(&format!("/api/v1/history?unit={unit}")),
            allot(&["history", "--unit", unit, "--format", "json"])
        );
    }
    assert_eq!(get("/api/v1/history?bucket=12345"), allot(&["history", "--bucket", "12345", "--format", "json"]));
    for ctx in
        [r#"{"user_id": "u1", "country": "SE"}"#, r#"{"user_id": "u7", "country": "US"}"#, r#"{"country": "NO"}"#]
    {
        let served = post("/api/v1/evaluate/trace", &[], &format!("{{\"context\": {ctx}}}"));
        assert_eq!(served, allot(&["trace", "--context", ctx, "--format", "json"]), "{ctx}");
    }
    let planned = post("/api/v1/capacity", &[], traffic);
    // The CLI reads YAML: JSON is YAML.
    assert_eq!(planned, allot(&["capacity", "--traffic", "traffic.json", "--format", "json"]));
    let dry = post("/api/v1/resalt?dry_run=true", &[], r#"{"reason": "quarterly"}"#);
    assert_eq!(dry["reports"], allot(&["resalt", "--reason", "quarterly", "--format", "json"]));
    assert!(dry["reports"][0]["resalted_buckets"].as_u64().unwrap() > 0);
}

/// The published static-context web provider (`@openfeature/ofrep-web-provider` with
/// `@openfeature/web-sdk`, in `ALLOT_OFREP_NODE_MODULES` with esbuild) from a page in real Chromium
/// (`/usr/bin/chromium` through playwright-core in `ALLOT_PLAYWRIGHT_NODE_MODULES`), on another
/// origin allowed by `--cors-origin`: bulk evaluation with the code default for an unassigned
/// unit, then a configuration change reaches the page through the change events (polling off).
/// Skipped outside CI without them; `ALLOT_REQUIRE_BROWSER=1` (as `.ci/run` sets) fails instead.
#[cfg(unix)]
#[test]
fn the_ofrep_web_provider_works_from_a_page_in_chromium() {
    let required = std::env::var("ALLOT_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let modules = std::env::var("ALLOT_OFREP_NODE_MODULES").ok().filter(|p| {
        Path::new(p).join("@openfeature/ofrep-web-provider").exists() && Path::new(p).join("esbuild").exists()
    });
    let playwright =
        std::env::var("ALLOT_PLAYWRIGHT_NODE_MODULES").ok().filter(|p| Path::new(p).join("playwright-core").exists());
    let chromium = std::env::var("ALLOT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let (Some(modules), Some(playwright), true) = (modules, playwright, Path::new(&chromium).exists()) else {
        assert!(
            !required,
            "ALLOT_REQUIRE_BROWSER=1 but the web provider, esbuild, playwright-core or chromium is missing"
        );
        eprintln!("skipped: set ALLOT_OFREP_NODE_MODULES (web provider, esbuild), ALLOT_PLAYWRIGHT_NODE_MODULES and install chromium (see .ci/run)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allot.yaml"), FLAGS).unwrap();
    let started =
        edit(FLAGS, "    variants: {a: 1}\n", "    variants: {a: 1}\n    include: {u1: a}\n    state: running\n");
    std::fs::write(dir.path().join("started.yaml"), &started).unwrap();
    // Any origin: the page's port is only known once its server runs.
    let mut s = start(dir.path(), &["--config", "allot.yaml", "--cors-origin", "*"]);
    let out = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ofrep/web.cjs"))
        .args([&format!("http://{}", s.addr), KEY, &dir.path().join("started.yaml").display().to_string()])
        .env("NODE_PATH", format!("{modules}:{playwright}"))
        .env("ALLOT_CHROMIUM", &chromium)
        .output()
        .unwrap();
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    assert!(out.status.success(), "web.cjs: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (before, after) = (&v["before"], &v["after"]);
    assert_eq!(before["banner"]["value"], serde_json::json!(true), "{v}");
    assert!(["SPLIT", "DEFAULT"].contains(&before["color"]["reason"].as_str().unwrap()), "{v}");
    assert!(["blue", "green"].contains(&before["color"]["value"].as_str().unwrap()), "{v}");
    // Not running: the code default with the reason kept, no error: the provider takes it.
    assert_eq!(
        (before["later"]["value"].as_str(), before["later"]["reason"].as_str(), &before["later"]["errorCode"]),
        (Some("none"), Some("DISABLED"), &serde_json::Value::Null),
        "{v}"
    );
    assert_eq!(before["later"]["allotReason"], "NOT_RUNNING", "{v}");
    // After the change, announced by the event stream: u1 is included in `later`.
    // (Every flag counts as changed: each carries the configuration version in its metadata.)
    assert!(v["changed"].as_array().unwrap().contains(&serde_json::json!("later")), "{v}");
    assert_eq!((after["later"]["value"].as_str(), after["later"]["variant"].as_str()), (Some("a"), Some("a")), "{v}");
    assert_eq!(after["color"]["value"], before["color"]["value"], "{v}");
    let requests: Vec<&str> = v["requests"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(requests.contains(&"GET /ofrep/v1/events"), "{requests:?}");
    assert!(requests.iter().filter(|r| **r == "POST /ofrep/v1/evaluate/flags").count() >= 2, "{requests:?}");
}
