//! `allot serve` and `allot migrate-store` on PostgreSQL (`ALLOT_TEST_POSTGRES_URL`; each test
//! in a fresh schema, dropped at the end). Without a reachable server the tests say they were
//! skipped and pass, unless `ALLOT_REQUIRE_POSTGRES=1` (as `.ci/run` sets): then they fail.

use crate::serve::{auth, http, start, version, CONFIG};
use allot_core::testing::edit;
use allot_store::postgres::PgStore;
use allot_store::Store;
use std::process::Command;
use std::time::{Duration, Instant};

/// Says why a PostgreSQL test cannot run: a failure when `ALLOT_REQUIRE_POSTGRES=1`, else a line
/// saying it was skipped.
fn skip(why: &str) {
    if std::env::var("ALLOT_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("ALLOT_REQUIRE_POSTGRES=1 but {why}");
    }
    eprintln!("skipped: {why}");
}

/// A fresh schema on the test server, dropped when this goes away.
struct Schema {
    base: String,
    name: String,
    rt: tokio::runtime::Runtime,
}

impl Schema {
    /// `None` (and a line saying the test is skipped) without a reachable server.
    fn new() -> Option<Schema> {
        let Ok(base) = std::env::var("ALLOT_TEST_POSTGRES_URL") else {
            skip("ALLOT_TEST_POSTGRES_URL is not set");
            return None;
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("allot_cli_{}_{nanos}", std::process::id());
        if let Err(e) = rt.block_on(PgStore::open_in_schema(&base, Some(&name))) {
            skip(&format!("PostgreSQL at ALLOT_TEST_POSTGRES_URL is unreachable: {e}"));
            return None;
        }
        Some(Schema { base, name, rt })
    }

    /// The URL `allot` takes for this schema.
    fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.base, self.name)
    }

    fn store(&self) -> PgStore {
        self.rt.block_on(PgStore::open_in_schema(&self.base, Some(&self.name))).unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = self.rt.block_on(PgStore::drop_schema(&self.base, &self.name));
    }
}

/// A node on `schema` that reaches PostgreSQL through a [`Proxy`] (and the node's directory);
/// `None` (the test is skipped) when the URL has no `user@host:port`.
#[cfg(unix)]
fn behind_proxy(schema: &Schema) -> Option<(Proxy, crate::serve::Running, tempfile::TempDir)> {
    let Some((scheme_user, rest)) = schema.base.split_once('@') else {
        skip("ALLOT_TEST_POSTGRES_URL has no user@host:port");
        return None;
    };
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let upstream = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:5432") };
    let proxy = Proxy::start(upstream);
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!("{scheme_user}@{}/{path}{sep}schema={}", proxy.addr, schema.name);
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &["--database-url", &url]);
    Some((proxy, node, dir))
}

/// Waits (bounded, so that a failure cannot hang the suite) until `addr` serves `want`; returns
/// how long it took.
fn wait_for_version(addr: &str, want: u64) -> Duration {
    let t = Instant::now();
    while version(addr) < want {
        assert!(t.elapsed() < Duration::from_secs(30), "{addr} never reached version {want}");
        std::thread::sleep(Duration::from_millis(10));
    }
    t.elapsed()
}

/// Two nodes on one database: a change committed through either is served by the other (pushed
/// by LISTEN/NOTIFY), and optimistic concurrency holds across them.
#[cfg(unix)]
#[test]
fn two_nodes_on_one_database_see_each_others_changes() {
    let Some(schema) = Schema::new() else { return };
    let url = schema.url();
    let dir = tempfile::tempdir().unwrap();
    // The version poll is made too slow to matter: changes travel by LISTEN/NOTIFY.
    let args = ["--database-url", &url, "--version-poll-ms", "3600000"];
    let a = start(dir.path(), &args);
    let b = start(dir.path(), &args);
    let (h, v) = auth();
    let ofrep = |addr: &str| {
        http(addr, "POST", "/ofrep/v1/evaluate/flags/exp", &[(h, &v)], r#"{"context": {"targetingKey": "u1"}}"#)
    };
    assert_eq!(ofrep(&b.addr).0, 404, "no flag yet");

    let (status, body) = http(&a.addr, "PUT", "/api/v1/config", &[(h, &v), ("If-Match", "\"0\"")], CONFIG);
    assert_eq!(status, 200, "{body}");
    let took = wait_for_version(&b.addr, 1);
    eprintln!("node B served version 1 after {took:?}");
    let (status, body) = ofrep(&b.addr);
    assert_eq!(status, 200, "{body}");
    assert_eq!(ofrep(&a.addr).1, body, "both nodes evaluate alike");

    // A change through B reaches A; a change planned from the old version on A is refused.
    let (status, body) =
        http(&b.addr, "PUT", "/api/v1/config", &[(h, &v), ("If-Match", "\"1\"")], &edit(CONFIG, "50%", "60%"));
    assert_eq!(status, 200, "{body}");
    let took = wait_for_version(&a.addr, 2);
    eprintln!("node A served version 2 after {took:?}");
    let (status, body) =
        http(&a.addr, "PUT", "/api/v1/config", &[(h, &v), ("If-Match", "\"1\"")], &edit(CONFIG, "50%", "70%"));
    assert_eq!(status, 412, "{body}");

    let (status, body) = http(&a.addr, "GET", "/api/v1/audit", &[(h, &v)], "");
    assert_eq!(status, 200);
    let entries = serde_json::from_str::<serde_json::Value>(&body).unwrap()["entries"].as_array().unwrap().len();
    assert_eq!(entries, 2);
    drop((a, b));
}

/// `allot migrate-store` copies a SQLite store into PostgreSQL, and `allot serve` runs on the copy.
#[cfg(unix)]
#[test]
fn migrate_store_copies_sqlite_into_postgres() {
    let Some(schema) = Schema::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A SQLite store written by the service itself: key, versions, audit, exposures.
    let s = start(dir.path(), &[]);
    let (h, v) = auth();
    for i in 1..=3u64 {
        let cfg = edit(CONFIG, "50%", &format!("{}%", 40 + i));
        let (status, body) =
            http(&s.addr, "PUT", "/api/v1/config", &[(h, &v), ("If-Match", &format!("\"{}\"", i - 1))], &cfg);
        assert_eq!(status, 200, "{body}");
    }
    drop(s);
    let sqlite_url = format!("sqlite://{}?mode=rwc", dir.path().join("allot.db").display());
    schema.rt.block_on(async {
        let src = allot_store::open(&sqlite_url).await.unwrap();
        let xs: Vec<_> = (0..1500)
            .map(|i| allot_store::Exposure {
                unit: format!("u{i}"),
                experiment: "exp".into(),
                variant: "a".into(),
                day: "2026-01-01".into(),
                time: "2026-01-01T00:00:00Z".into(),
                version: 3,
            })
            .collect();
        src.record_exposures(&xs).await.unwrap();
        src.sticky_put(&[("user".into(), "u1".into(), "exp".into(), "b".into())]).await.unwrap();
    });

    let out = Command::new(env!("CARGO_BIN_EXE_allot"))
        .args(["migrate-store", "--from", &sqlite_url, "--to", &schema.url()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("copied 3 versions"), "{stdout}");
    assert!(stdout.contains("1 keys, 1 sticky assignments, 1500 exposures"), "{stdout}");

    let pg = schema.store();
    schema.rt.block_on(async {
        let src = allot_store::open(&sqlite_url).await.unwrap();
        assert_eq!(pg.load_current().await.unwrap(), src.load_current().await.unwrap());
        assert_eq!(pg.audit(None, 10).await.unwrap(), src.audit(None, 10).await.unwrap());
        assert_eq!(pg.export_keys().await.unwrap(), src.export_keys().await.unwrap());
        assert_eq!(pg.sticky_get("user", "u1", "exp").await.unwrap().as_deref(), Some("b"));
        assert_eq!(pg.exposures(None, 0, 5000).await.unwrap().len(), 1500);
    });

    // Again into the same (now full) store: refused.
    let out = Command::new(env!("CARGO_BIN_EXE_allot"))
        .args(["migrate-store", "--from", &sqlite_url, "--to", &schema.url()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));

    // The service runs on the copy, with the same key.
    let p = start(dir.path(), &["--database-url", &schema.url()]);
    assert_eq!(version(&p.addr), 3);
}

/// Nodes started together with the same `--config` file apply it once, and bootstrap one key.
#[cfg(unix)]
#[test]
fn nodes_started_together_with_the_same_file_apply_it_once() {
    let Some(schema) = Schema::new() else { return };
    let url = schema.url();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allot.yaml"), CONFIG).unwrap();
    let nodes: Vec<_> = (0..3)
        .map(|_| {
            let (dir, url) = (dir.path().to_path_buf(), url.clone());
            std::thread::spawn(move || start(&dir, &["--database-url", &url, "--config", "allot.yaml"]))
        })
        .collect();
    let nodes: Vec<_> = nodes.into_iter().map(|t| t.join().unwrap()).collect();
    let (h, v) = auth();
    for n in &nodes {
        assert_eq!(version(&n.addr), 1);
    }
    let (status, body) = http(&nodes[0].addr, "GET", "/api/v1/audit", &[(h, &v)], "");
    assert_eq!(status, 200);
    let entries = serde_json::from_str::<serde_json::Value>(&body).unwrap()["entries"].as_array().unwrap().len();
    assert_eq!(entries, 1);
    let (status, body) = http(&nodes[0].addr, "GET", "/api/v1/keys", &[(h, &v)], "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["keys"].as_array().unwrap().len(),
        1,
        "{body}"
    );
}

/// A TCP proxy to the database that the test can cut (every connection closed, new ones refused
/// at once) and restore: a real outage for the node behind it. Stopped when dropped.
struct Proxy {
    addr: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let p = Proxy { addr, up: Default::default(), stop: Default::default(), conns: Default::default() };
        p.up.store(true, Ordering::SeqCst);
        let (up, stop, conns) = (p.up.clone(), p.stop.clone(), p.conns.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let _ = client.set_nonblocking(false);
                let Ok(server) = std::net::TcpStream::connect(&upstream) else { continue };
                let mut list = conns.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        p
    }

    /// Closes every connection and refuses new ones.
    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut();
    }
}

/// Waits (bounded) until `check` holds.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let t = Instant::now();
    while !check() {
        assert!(t.elapsed() < Duration::from_secs(60), "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With the database unreachable, a node keeps evaluating from its snapshot, says so at
/// `/readyz` and `/metrics`, refuses admin writes with 503 `STORE_UNAVAILABLE` and buffers
/// exposures; when the database is back it recovers without a restart and writes the buffer.
#[cfg(unix)]
#[test]
fn a_node_rides_out_a_database_outage() {
    let Some(schema) = Schema::new() else { return };
    // The node reaches the database through a proxy the test cuts.
    let Some((proxy, node, _dir)) = behind_proxy(&schema) else { return };
    let (h, v) = auth();
    let get = |path: &str| http(&node.addr, "GET", path, &[(h, &v)], "");
    let ofrep = || {
        http(&node.addr, "POST", "/ofrep/v1/evaluate/flags/exp", &[(h, &v)], r#"{"context": {"targetingKey": "u1"}}"#)
    };
    let put = |if_match: &str, share: &str| {
        http(&node.addr, "PUT", "/api/v1/config", &[(h, &v), ("If-Match", if_match)], &edit(CONFIG, "50%", share))
    };
    let (status, body) = put("\"0\"", "50%");
    assert_eq!(status, 200, "{body}");
    let (status, before) = ofrep();
    assert_eq!(status, 200, "{before}");
    assert!(get("/metrics").1.contains("allot_store_up 1"));

    proxy.cut();
    wait_until("readyz says degraded", || {
        let (status, body) = get("/readyz");
        status == 200 && body.contains("\"degraded\"")
    });
    wait_until("allot_store_up is 0", || get("/metrics").1.contains("allot_store_up 0"));
    // Evaluation answers from the snapshot.
    assert_eq!(ofrep(), (200, before.clone()));
    // Writes are refused, clearly.
    let (status, body) = put("\"1\"", "60%");
    assert_eq!(status, 503, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["code"], "STORE_UNAVAILABLE", "{body}");
    // Exposures are buffered, and the client is told (202).
    let xs = r#"{"exposures": [{"unit": "u1", "experiment": "exp", "variant": "a"}, {"unit": "u2", "experiment": "exp", "variant": "b"}, {"unit": "u3", "experiment": "exp", "variant": "a"}]}"#;
    let (status, body) = http(&node.addr, "POST", "/api/v1/exposures", &[(h, &v)], xs);
    assert_eq!(status, 202, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["buffered"], 3, "{body}");
    let metrics = get("/metrics").1;
    assert!(metrics.contains("allot_exposures_buffered 3"), "{metrics}");
    assert!(metrics.contains("allot_exposures_dropped_total 0"), "{metrics}");

    proxy.restore();
    wait_until("readyz says ready", || get("/readyz").1.contains("\"ready\""));
    wait_until("buffered exposures are written", || get("/metrics").1.contains("allot_exposures_buffered 0"));
    assert!(get("/metrics").1.contains("allot_store_up 1"));
    let pg = schema.store();
    assert_eq!(schema.rt.block_on(pg.exposures(None, 0, 100)).unwrap().len(), 3);
    let (status, body) = put("\"1\"", "60%");
    assert_eq!(status, 200, "{body}");
    assert_eq!(version(&node.addr), 2);
    drop(node);
    drop(proxy);
}

/// Sticky experiments through an outage: a unit this node evaluated at the version it serves keeps
/// its stored variant (and a new sticky assignment is kept in memory, then written when the
/// database is back); a unit it does not know gets no variant (`STICKY_UNAVAILABLE`; OFREP
/// `GENERAL`) rather than one that could contradict what is stored; other experiments answer as
/// usual.
#[cfg(unix)]
#[test]
fn sticky_experiments_ride_out_a_database_outage() {
    let Some(schema) = Schema::new() else { return };
    // The node reaches the database through a proxy the test cuts.
    let Some((proxy, node, _dir)) = behind_proxy(&schema) else { return };
    let (h, v) = auth();
    let get = |path: &str| http(&node.addr, "GET", path, &[(h, &v)], "");
    let config = "units:\n  user: {attribute: user_id}\nexperiments:\n  plain: {unit: user, share: 100%, variants: {a: 1, b: 1}, state: running}\n  st1: {unit: user, share: 100%, variants: {a: 1, b: 1}, sticky: true, state: running}\n  st2: {unit: user, share: 100%, variants: {a: 1, b: 1}, sticky: true, state: running}\n";
    let (status, body) = http(&node.addr, "PUT", "/api/v1/config", &[(h, &v), ("If-Match", "\"0\"")], config);
    assert_eq!(status, 200, "{body}");
    let evaluate = |unit: &str, only: Option<&str>| {
        let which = only.map(|e| format!(r#", "experiments": ["{e}"]"#)).unwrap_or_default();
        let body = format!(r#"{{"context": {{"user_id": "{unit}"}}{which}}}"#);
        let (status, body) = http(&node.addr, "POST", "/api/v1/evaluate", &[(h, &v)], &body);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["assignments"].clone()
    };
    // Before: u1 is assigned in st1 (and that is stored), then served it as sticky.
    let first = evaluate("u1", Some("st1"));
    assert_eq!(first["st1"]["reason"], "ASSIGNED", "{first}");
    let again = evaluate("u1", Some("st1"));
    assert_eq!((&again["st1"]["reason"], &again["st1"]["variant"]), (&"STICKY".into(), &first["st1"]["variant"]));

    proxy.cut();
    wait_until("readyz says degraded", || get("/readyz").1.contains("\"degraded\""));
    let during = evaluate("u1", None);
    assert_eq!(during["st1"]["reason"], "STICKY", "{during}");
    assert_eq!(during["st1"]["variant"], first["st1"]["variant"], "{during}");
    assert_eq!(during["st2"]["reason"], "ASSIGNED", "known unit, nothing stored in st2: {during}");
    assert_eq!(during["plain"]["reason"], "ASSIGNED", "{during}");
    let metrics = get("/metrics").1;
    assert!(metrics.contains("allot_sticky_buffered 1"), "{metrics}");
    let stranger = evaluate("u2", None);
    assert_eq!(stranger["st1"]["reason"], "STICKY_UNAVAILABLE", "{stranger}");
    assert_eq!(stranger["st1"]["variant"], serde_json::Value::Null, "{stranger}");
    assert_eq!(stranger["st2"]["reason"], "STICKY_UNAVAILABLE", "{stranger}");
    assert_eq!(stranger["plain"]["reason"], "ASSIGNED", "{stranger}");
    let ofrep = |path: &str| http(&node.addr, "POST", path, &[(h, &v)], r#"{"context": {"targetingKey": "u2"}}"#);
    let (status, body) = ofrep("/ofrep/v1/evaluate/flags/st1");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("\"GENERAL\""), "{body}");
    let (status, body) = ofrep("/ofrep/v1/evaluate/flags/plain");
    assert_eq!(status, 200, "{body}");
    let (status, body) = ofrep("/ofrep/v1/evaluate/flags");
    assert_eq!(status, 200, "{body}");
    let bulk: serde_json::Value = serde_json::from_str(&body).unwrap();
    let st1 = bulk["flags"].as_array().unwrap().iter().find(|f| f["key"] == "st1").unwrap();
    assert_eq!(st1["errorCode"], "GENERAL", "{body}");
    // u2 through /evaluate (st1, st2), OFREP single (st1) and bulk (st1, st2).
    assert!(get("/metrics").1.contains("allot_evaluations_total{reason=\"STICKY_UNAVAILABLE\"} 5"));

    proxy.restore();
    wait_until("readyz says ready", || get("/readyz").1.contains("\"ready\""));
    wait_until("buffered sticky assignments are written", || get("/metrics").1.contains("allot_sticky_buffered 0"));
    let pg = schema.store();
    let mut stored = schema.rt.block_on(pg.sticky_for_unit("user", "u1")).unwrap();
    stored.sort();
    let want = |e: &str, a: &serde_json::Value| (e.to_string(), a.as_str().unwrap().to_string());
    assert_eq!(stored, vec![want("st1", &first["st1"]["variant"]), want("st2", &during["st2"]["variant"])]);
    let after = evaluate("u1", None);
    assert_eq!((&after["st2"]["reason"], &after["st2"]["variant"]), (&"STICKY".into(), &during["st2"]["variant"]));
    let stranger = evaluate("u2", None);
    assert_eq!(stranger["st1"]["reason"], "ASSIGNED", "{stranger}");
    drop(node);
    drop(proxy);
}

/// Two nodes × 8 concurrent writers, each reading the configuration and its version, changing
/// it (usually growing a share, sometimes shrinking one, which change control refuses) and
/// writing it back with `If-Match`: every answer is 200, 412 or 409; the versions committed are
/// 1, 2, ... without gaps or duplicates, each acknowledged one is in the audit log, and the final
/// state keeps the two experiments of one unit exclusive.
#[cfg(unix)]
#[test]
fn concurrent_writers_on_two_nodes_keep_versions_and_exclusivity() {
    let Some(schema) = Schema::new() else { return };
    let url = schema.url();
    let dir = tempfile::tempdir().unwrap();
    let args = ["--database-url", &url];
    let nodes = [start(dir.path(), &args), start(dir.path(), &args)];
    let (h, v) = auth();
    let two = "units:\n  user: {attribute: user_id}\nexperiments:\n  exp:\n    unit: user\n    share: 10%\n    variants: {a: 1, b: 1}\n    state: running\n  exp2:\n    unit: user\n    share: 10%\n    variants: {a: 1, b: 1}\n    state: running\n";
    let (status, body) = http(&nodes[0].addr, "PUT", "/api/v1/config", &[(h, &v), ("If-Match", "\"0\"")], two);
    assert_eq!(status, 200, "{body}");
    wait_for_version(&nodes[1].addr, 1);

    const ROUNDS: usize = 4;
    let results: Vec<(u16, Option<u64>)> = std::thread::scope(|s| {
        let mut writers = vec![];
        for (n, node) in nodes.iter().enumerate() {
            for w in 0..8usize {
                let (addr, h, v) = (node.addr.clone(), h, v.clone());
                writers.push(s.spawn(move || {
                    let mut out = vec![];
                    // A stale read (412) is retried (bounded): each round tries to land one change.
                    for _ in 0..ROUNDS * 25 {
                        let round = out.iter().filter(|r: &&(u16, Option<u64>)| r.0 != 412).count();
                        if round == ROUNDS {
                            break;
                        }
                        let (status, body) =
                            http(&addr, "GET", "/api/v1/config", &[(h, &v), ("Accept", "application/json")], "");
                        assert_eq!(status, 200, "{body}");
                        let got: serde_json::Value = serde_json::from_str(&body).unwrap();
                        let mut cfg = got["config"].clone();
                        let exp = if (n + w + round) % 2 == 0 { "exp" } else { "exp2" };
                        let share = cfg["experiments"][exp]["share"].as_str().unwrap().trim_end_matches('%');
                        let share: u32 = share.parse().unwrap();
                        // Every fourth change shrinks a running experiment: refused (409).
                        let new = if (w + round) % 4 == 3 { share - 1 } else { share + 1 };
                        cfg["experiments"][exp]["share"] = format!("{new}%").into();
                        let if_match = format!("\"{}\"", got["version"]);
                        let (status, body) =
                            http(&addr, "PUT", "/api/v1/config", &[(h, &v), ("If-Match", &if_match)], &cfg.to_string());
                        let version = (status == 200).then(|| {
                            let r: serde_json::Value = serde_json::from_str(&body).unwrap();
                            assert_eq!(r["committed"], true, "{body}");
                            r["version"].as_u64().unwrap()
                        });
                        assert!(matches!(status, 200 | 409 | 412), "{status}: {body}");
                        out.push((status, version));
                    }
                    out
                }));
            }
        }
        writers.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    assert!(results.iter().filter(|r| r.0 != 412).count() <= 2 * 8 * ROUNDS);
    let mut acked: Vec<u64> = results.iter().filter_map(|r| r.1).collect();
    acked.sort_unstable();
    let n_acked = acked.len();
    acked.dedup();
    assert_eq!(acked.len(), n_acked, "two acknowledged changes got the same version");
    let count = |s: u16| results.iter().filter(|r| r.0 == s).count();
    eprintln!("{} committed, {} refused (409), {} stale (412)", count(200), count(409), count(412));
    assert!(n_acked > 0);

    // The audit log: versions 1..=last, each once, each from the one before; every
    // acknowledged version among them.
    let (status, body) = http(&nodes[1].addr, "GET", "/api/v1/audit?limit=1000", &[(h, &v)], "");
    assert_eq!(status, 200, "{body}");
    let log: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut versions: Vec<(u64, u64)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["before_version"].as_u64().unwrap(), e["after_version"].as_u64().unwrap()))
        .collect();
    versions.sort_unstable();
    let last = u64::try_from(n_acked).unwrap() + 1;
    assert_eq!(versions, (1..=last).map(|v| (v - 1, v)).collect::<Vec<_>>());
    assert_eq!(acked, (2..=last).collect::<Vec<_>>(), "every acknowledged change is in the audit log");

    // Both nodes converge on the last version; its state keeps exclusivity.
    for n in &nodes {
        wait_for_version(&n.addr, last);
    }
    let pg = schema.store();
    let (current, state) = schema.rt.block_on(pg.load_current()).unwrap();
    assert_eq!(current, last);
    let cfg = allot_core::config::validate(state.config.as_ref().unwrap()).unwrap();
    let a = allot_core::audit::audit(&state, &cfg);
    assert!(a.violations.is_empty(), "{:?}", a.violations);
    assert!(!a.overlaps.is_empty() || a.experiments.len() == 2, "both experiments audited");
    drop(nodes);
}
