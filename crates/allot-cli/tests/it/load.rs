//! The load test (issue 14): the real `allot serve` under OFREP traffic from several clients
//! while a writer applies a sequence of configuration changes through the admin API, with a
//! kill -9 in the middle and another at the end, on SQLite and (when `ALLOT_TEST_POSTGRES_URL`
//! is set) on PostgreSQL.
//!
//! Bounded in time (each run about 30 s of traffic; every wait has a hard limit), deterministic
//! in what it asserts (nothing about time):
//! - every valid request answered while the server is up gets a 2xx (connections refused or cut
//!   while it is down are retried and counted apart);
//! - no mixed versions: every flag of a bulk answer carries the answer's `configVersion`, as does
//!   its `ETag` (`"<version>-<hash>"`);
//! - exclusivity over the answers: for each (version, unit), across every bulk and single-flag
//!   answer, at most one experiment of each surface gave the unit a variant; and one version
//!   always gives a unit the same variant of a flag;
//! - every acknowledged change is present after the restarts: `GET /api/v1/versions/{v}` serves
//!   exactly the configuration acknowledged as version `v`, and the audit log has one entry per
//!   version.
//!
//! The figures (requests, rps, versions applied, downtime, retries) are printed; `bench/README.md`
//! records a run.

use crate::serve::{start, Running, KEY};
use allot_store::postgres::PgStore;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// OFREP clients running at once.
const CLIENTS: usize = 4;
/// Distinct unit ids the clients ask about.
const UNITS: u64 = 3000;
/// Past this, a request that still cannot reach the server fails the test (the restart is stuck).
const HARD_LIMIT: Duration = Duration::from_secs(120);

/// A minimal HTTP/1.1 client on one kept-alive connection. Written here because the workspace has
/// no blocking HTTP client and a connection per request would run the loopback out of ports
/// (TIME_WAIT) at these rates; it reads `Content-Length` and chunked bodies, which is all axum sends.
struct Conn {
    reader: BufReader<TcpStream>,
}

/// One answer.
struct Answer {
    status: u16,
    etag: Option<String>,
    body: Vec<u8>,
}

impl Conn {
    fn open(addr: &str) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.set_nodelay(true)?;
        Ok(Conn { reader: BufReader::new(s) })
    }

    fn call(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<Answer> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: allot\r\nAuthorization: Bearer {KEY}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (h, v) in headers {
            req.push_str(&format!("{h}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.reader.get_mut().write_all(req.as_bytes())?;
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        let status: u16 = line.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| bad(&line))?;
        let (mut length, mut chunked, mut etag) = (None, false, None);
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(bad("headers cut"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else { return Err(bad(l)) };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => length = Some(v.parse::<usize>().map_err(|_| bad(l))?),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "etag" => etag = Some(v.to_string()),
                _ => {}
            }
        }
        let mut body = vec![];
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("chunk size"))?;
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            self.reader.read_exact(&mut body)?;
        } else if status != 304 && status != 204 {
            return Err(bad("no Content-Length"));
        }
        Ok(Answer { status, etag, body })
    }
}

/// The writer's model of the configuration: experiments by surface, with shares in percent.
#[derive(Clone)]
struct Model {
    experiments: Vec<(String, &'static str, u32)>,
    /// Once the surfaces are full, each change rewrites the first experiment's description, so
    /// that changes never run out however fast the build (a change that moves no unit).
    note: u64,
}

impl Model {
    fn new() -> Model {
        Model { experiments: vec![("home-a".into(), "home", 10), ("search-a".into(), "search", 10)], note: 0 }
    }

    fn yaml(&self) -> String {
        let mut y = String::from("units:\n  user: {attribute: user_id}\nsurfaces: [home, search]\nexperiments:\n");
        for (k, (id, surface, share)) in self.experiments.iter().enumerate() {
            y.push_str(&format!(
                "  {id}:\n    unit: user\n    surfaces: [{surface}]\n    share: {share}%\n    variants: {{control: 1, treatment: 1}}\n    state: running\n"
            ));
            if k == 0 && self.note > 0 {
                y.push_str(&format!("    description: change {}\n", self.note));
            }
        }
        y
    }

    fn total(&self, surface: &str) -> u32 {
        self.experiments.iter().filter(|e| e.1 == surface).map(|e| e.2).sum()
    }

    /// Change `k` of the sequence (all accepted by change control: growths and new experiments
    /// in the free space of a surface; once both are full, a new description).
    fn next(&self, k: u64) -> Model {
        let mut m = self.clone();
        match k % 4 {
            0 if m.total("home") + 3 <= 100 => m.experiments.push((format!("home-{k}"), "home", 3)),
            1 if m.total("home") < 100 => m.experiments[0].2 += 1,
            2 if m.total("search") + 2 <= 100 => m.experiments.push((format!("search-{k}"), "search", 2)),
            3 if m.total("search") < 100 => m.experiments[1].2 += 1,
            _ if m.total("home") < 100 => m.experiments[0].2 += 1,
            _ if m.total("search") < 100 => m.experiments[1].2 += 1,
            _ => m.note = k,
        }
        m
    }
}

/// What the run saw.
#[derive(Default)]
struct Figures {
    bulk: u64,
    single: u64,
    not_2xx: Vec<String>,
    /// Requests retried because the connection was refused or cut (the server was down).
    retried: u64,
    /// (version, unit) → experiment → variant, over every answer.
    seen: HashMap<(u64, String), HashMap<String, String>>,
    mixed: Vec<String>,
    nondeterministic: Vec<String>,
}

fn surface_of(flag: &str) -> &str {
    flag.split('-').next().unwrap_or(flag)
}

/// One run of the scenario on the store at `url` (`None`: SQLite in the server's directory).
fn run(name: &'static str, url: Option<&str>, traffic: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let extra: Vec<&str> = url.map(|u| vec!["--database-url", u]).unwrap_or_default();
    let server = Arc::new(Mutex::new(Some(start(dir.path(), &extra))));
    let addr = Arc::new(RwLock::new(server.lock().unwrap().as_ref().unwrap().addr.clone()));
    let begin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let figures = Arc::new(Mutex::new(Figures::default()));
    // Experiment ids acknowledged so far: the single-flag clients ask only about those.
    let known: Arc<RwLock<Vec<String>>> = Arc::new(RwLock::new(vec!["home-a".into(), "search-a".into()]));

    // Sends `req` until the server answers it (retrying refused and cut connections); counts the
    // retries. Fails past the hard limit.
    let send = {
        let addr = addr.clone();
        let figures = figures.clone();
        move |conn: &mut Option<Conn>, method: &str, path: &str, headers: &[(&str, &str)], body: &str| -> Answer {
            loop {
                assert!(begin.elapsed() < HARD_LIMIT, "{name}: the server could not be reached within {HARD_LIMIT:?}");
                if conn.is_none() {
                    let a = addr.read().unwrap().clone();
                    match Conn::open(&a) {
                        Ok(c) => *conn = Some(c),
                        Err(_) => {
                            figures.lock().unwrap().retried += 1;
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                    }
                }
                match conn.as_mut().map(|c| c.call(method, path, headers, body)) {
                    Some(Ok(a)) => return a,
                    _ => {
                        figures.lock().unwrap().retried += 1;
                        *conn = None;
                    }
                }
            }
        }
    };

    // Version 1 before any traffic: a flag asked about exists in every version a client can see.
    let first = Model::new();
    let a = send(&mut None, "PUT", "/api/v1/config", &[("If-Match", "\"0\"")], &first.yaml());
    assert_eq!(a.status, 200, "{name}: {}", String::from_utf8_lossy(&a.body));
    assert_eq!(serde_json::from_slice::<Value>(&a.body).unwrap()["version"], 1, "{name}");
    let acked: Arc<Mutex<Vec<(u64, Value)>>> =
        Arc::new(Mutex::new(vec![(1, allot_core::config::parse_yaml(&first.yaml()).unwrap())]));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, figures, known, send) = (stop.clone(), figures.clone(), known.clone(), send.clone());
            std::thread::spawn(move || {
                let mut conn = None;
                let mut rng = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(c as u64 + 1);
                let mut next = || {
                    // SplitMix64: the units asked about are the same on every run.
                    rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let mut z = rng;
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    z ^ (z >> 31)
                };
                while !stop.load(Ordering::SeqCst) {
                    let r = next();
                    let unit = format!("u{}", r % UNITS);
                    let body = json!({"context": {"targetingKey": unit}}).to_string();
                    let bulk = (r >> 32) % 3 != 0;
                    let flag = {
                        let k = known.read().unwrap();
                        k[((r >> 40) as usize) % k.len()].clone()
                    };
                    let path = if bulk {
                        "/ofrep/v1/evaluate/flags".to_string()
                    } else {
                        format!("/ofrep/v1/evaluate/flags/{flag}")
                    };
                    let a = send(&mut conn, "POST", &path, &[("Content-Type", "application/json")], &body);
                    let mut f = figures.lock().unwrap();
                    if bulk {
                        f.bulk += 1
                    } else {
                        f.single += 1
                    }
                    if !(200..300).contains(&a.status) {
                        let text = String::from_utf8_lossy(&a.body).into_owned();
                        f.not_2xx.push(format!("{} {path} {unit}: {text}", a.status));
                        continue;
                    }
                    let v: Value = serde_json::from_slice(&a.body).unwrap();
                    let record = |version: u64, flag: &Value, f: &mut Figures| {
                        let key = flag["key"].as_str().unwrap().to_string();
                        // Only an assignment counts: DEFAULT and DISABLED carry the code default.
                        if flag["reason"] != "SPLIT" {
                            assert!(flag.get("value").is_none(), "an unassigned unit has no value: {flag}");
                            return;
                        }
                        let variant = flag["variant"].as_str().unwrap().to_string();
                        let held = f.seen.entry((version, unit.clone())).or_default();
                        if let Some(before) = held.insert(key.clone(), variant.clone()) {
                            if before != variant {
                                f.nondeterministic.push(format!("v{version} {unit} {key}: {before} then {variant}"));
                            }
                        }
                    };
                    if bulk {
                        let version = v["metadata"]["configVersion"].as_u64().unwrap();
                        let tag_version =
                            a.etag.as_deref().and_then(|t| t.trim_matches('"').split('-').next()?.parse().ok());
                        if tag_version != Some(version) {
                            f.mixed.push(format!("ETag {:?} on an answer of version {version}", a.etag));
                        }
                        for flag in v["flags"].as_array().unwrap() {
                            if flag["metadata"]["configVersion"].as_u64() != Some(version) {
                                f.mixed.push(format!("{flag} in an answer of version {version}"));
                            }
                            record(version, flag, &mut f);
                        }
                    } else {
                        let version = v["metadata"]["configVersion"].as_u64().unwrap();
                        record(version, &v, &mut f);
                    }
                }
            })
        })
        .collect();

    // The writer: change after change through the admin API, each made against the version it
    // knows (If-Match), recording what each acknowledged version is.
    let unacked_commits = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, acked, known, send, unacked_commits) =
            (stop.clone(), acked.clone(), known.clone(), send.clone(), unacked_commits.clone());
        std::thread::spawn(move || {
            let mut conn = None;
            let mut model = first;
            let mut base = 1u64;
            let mut k = 1u64;
            let mut failures = vec![];
            while !stop.load(Ordering::SeqCst) {
                let next = model.next(k);
                let yaml = next.yaml();
                let want = allot_core::config::parse_yaml(&yaml).unwrap();
                let tag = format!("\"{base}\"");
                let a = send(&mut conn, "PUT", "/api/v1/config", &[("If-Match", &tag)], &yaml);
                let version = match a.status {
                    200 => {
                        let v: Value = serde_json::from_slice(&a.body).unwrap();
                        let version = v["version"].as_u64().unwrap();
                        acked.lock().unwrap().push((version, want.clone()));
                        version
                    }
                    // The same change sent again after a cut connection that had committed it
                    // (unacknowledged): the server's current configuration says so.
                    412 => {
                        let c = send(&mut conn, "GET", "/api/v1/config", &[("Accept", "application/json")], "");
                        let v: Value = serde_json::from_slice(&c.body).unwrap();
                        if v["config"] != want {
                            failures.push(format!("412 and the current config is not ours: {v}"));
                            break;
                        }
                        unacked_commits.fetch_add(1, Ordering::SeqCst);
                        v["version"].as_u64().unwrap()
                    }
                    s => {
                        failures.push(format!("{s}: {}", String::from_utf8_lossy(&a.body)));
                        break;
                    }
                };
                base = version;
                model = next;
                *known.write().unwrap() = model.experiments.iter().map(|e| e.0.clone()).collect();
                k += 1;
                // Spread the changes over the run, so that traffic sees many versions.
                std::thread::sleep(Duration::from_millis(100));
            }
            failures
        })
    };

    // kill -9 in the middle, and a restart on the same store.
    let kill_and_restart = |label: &str| -> Duration {
        let mut s = server.lock().unwrap().take().unwrap();
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        let t = Instant::now();
        drop(s);
        let restarted: Running = start(dir.path(), &extra);
        let took = t.elapsed();
        *addr.write().unwrap() = restarted.addr.clone();
        *server.lock().unwrap() = Some(restarted);
        eprintln!("{name}: {label}: killed with SIGKILL, serving again after {took:?}");
        took
    };
    std::thread::sleep(traffic / 2);
    let acked_at_kill = acked.lock().unwrap().last().map(|a| a.0).unwrap_or(0);
    let downtime = kill_and_restart("middle");
    let current = current_version(&send);
    assert!(current >= acked_at_kill, "{name}: version {current} after the restart lost acknowledged {acked_at_kill}");
    std::thread::sleep(traffic.saturating_sub(begin.elapsed()));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let writer_failures = writer.join().unwrap();
    let elapsed = begin.elapsed();

    // And once more at the end: every acknowledged version is served as acknowledged.
    kill_and_restart("end");
    let acked = acked.lock().unwrap().clone();
    let last = acked.last().map(|a| a.0).unwrap_or(0);
    let current = current_version(&send);
    let mut missing = vec![];
    let mut conn = None;
    for (v, want) in &acked {
        let a = send(&mut conn, "GET", &format!("/api/v1/versions/{v}"), &[], "");
        let got: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        if a.status != 200 || &got["config"] != want {
            missing.push(format!("version {v}: {} {got}", a.status));
        }
    }
    let a = send(&mut conn, "GET", "/api/v1/audit?limit=1000", &[], "");
    let entries = serde_json::from_slice::<Value>(&a.body).unwrap()["entries"].as_array().map_or(0, Vec::len) as u64;
    drop(server.lock().unwrap().take());

    let f = figures.lock().unwrap();
    // Exclusivity over the answers: per version and unit, one assigned experiment per surface.
    let mut shared = vec![];
    for ((version, unit), held) in &f.seen {
        let mut by_surface: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for k in held.keys() {
            by_surface.entry(surface_of(k)).or_default().push(k);
        }
        for (s, ids) in by_surface {
            if ids.len() > 1 {
                shared.push(format!("v{version} {unit}: {ids:?} on surface {s}"));
            }
        }
    }
    let versions: HashSet<u64> = f.seen.keys().map(|k| k.0).collect();
    let requests = f.bulk + f.single;
    eprintln!(
        "{name}: {requests} OFREP requests in {elapsed:.1?} ({:.0} req/s; {} bulk, {} single) from {CLIENTS} clients over {UNITS} units; \
         {} versions acknowledged ({acked_at_kill} before the kill), {} committed unacknowledged, {} versions seen in answers; \
         kill -9 downtime {downtime:?}, {} requests retried on refused or cut connections; {} (version, unit) pairs checked for exclusivity; \
         {} non-2xx",
        requests as f64 / elapsed.as_secs_f64(),
        f.bulk,
        f.single,
        acked.len(),
        unacked_commits.load(Ordering::SeqCst),
        versions.len(),
        f.retried,
        f.seen.len(),
        f.not_2xx.len(),
    );
    assert!(writer_failures.is_empty(), "{name}: the writer got refused: {writer_failures:?}");
    assert!(
        f.not_2xx.is_empty(),
        "{name}: {} valid requests got non-2xx, e.g. {:?}",
        f.not_2xx.len(),
        &f.not_2xx[..f.not_2xx.len().min(5)]
    );
    assert!(f.mixed.is_empty(), "{name}: mixed versions: {:?}", &f.mixed[..f.mixed.len().min(5)]);
    assert!(shared.is_empty(), "{name}: exclusive experiments shared units: {:?}", &shared[..shared.len().min(5)]);
    assert!(f.nondeterministic.is_empty(), "{name}: {:?}", &f.nondeterministic[..f.nondeterministic.len().min(5)]);
    assert!(missing.is_empty(), "{name}: acknowledged changes missing after the restart: {missing:?}");
    assert!(current >= last, "{name}: version {current} after the restart, {last} acknowledged");
    assert_eq!(entries, current, "{name}: one audit entry per version");
    // The run must have exercised what it claims to.
    assert!(acked_at_kill >= 2, "{name}: only {acked_at_kill} changes acknowledged before the kill");
    assert!(last > acked_at_kill, "{name}: no change acknowledged after the restart");
    assert!(f.bulk > 0 && f.single > 0, "{name}: no traffic");
    assert!(versions.len() >= 2, "{name}: the answers saw only {versions:?}");
}

fn current_version(send: &impl Fn(&mut Option<Conn>, &str, &str, &[(&str, &str)], &str) -> Answer) -> u64 {
    let a = send(&mut None, "GET", "/api/v1/config", &[("Accept", "application/json")], "");
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    serde_json::from_slice::<Value>(&a.body).unwrap()["version"].as_u64().unwrap()
}

#[cfg(unix)]
#[test]
fn load_ofrep_traffic_with_changes_and_kill_9_on_sqlite() {
    run("sqlite", None, Duration::from_secs(30));
}

/// The same on PostgreSQL, in a fresh schema dropped at the end. Skipped (and says so) without
/// `ALLOT_TEST_POSTGRES_URL` or a reachable server, unless `ALLOT_REQUIRE_POSTGRES=1` (as
/// `.ci/run` sets): then it fails.
#[cfg(unix)]
#[test]
fn load_ofrep_traffic_with_changes_and_kill_9_on_postgres() {
    let skip = |why: &str| {
        assert!(!std::env::var("ALLOT_REQUIRE_POSTGRES").is_ok_and(|v| v == "1"), "ALLOT_REQUIRE_POSTGRES=1 but {why}");
        eprintln!("skipped: {why}");
    };
    let Ok(base) = std::env::var("ALLOT_TEST_POSTGRES_URL") else {
        return skip("ALLOT_TEST_POSTGRES_URL is not set");
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let schema = format!("allot_load_{}", std::process::id());
    if let Err(e) = rt.block_on(PgStore::open_in_schema(&base, Some(&schema))) {
        return skip(&format!("PostgreSQL at ALLOT_TEST_POSTGRES_URL is unreachable: {e}"));
    }
    struct Drop_(tokio::runtime::Runtime, String, String);
    impl Drop for Drop_ {
        fn drop(&mut self) {
            let _ = self.0.block_on(PgStore::drop_schema(&self.1, &self.2));
        }
    }
    let _guard = Drop_(rt, base.clone(), schema.clone());
    let sep = if base.contains('?') { '&' } else { '?' };
    run("postgres", Some(&format!("{base}{sep}schema={schema}")), Duration::from_secs(20));
}
