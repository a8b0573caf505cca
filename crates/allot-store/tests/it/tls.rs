//! TLS to PostgreSQL, against a cluster that takes TLS connections only (`.ci/run` starts one:
//! `.ci/postgres-tls.sh`): `ALLOT_TEST_POSTGRES_TLS_URL` (no `sslmode`) and
//! `ALLOT_TEST_POSTGRES_TLS_CA` (the PEM file of the CA that signed its certificate, for
//! `127.0.0.1` and `localhost`). Without them these tests say they were skipped and pass, unless
//! `ALLOT_REQUIRE_POSTGRES_TLS=1` (as `.ci/run` sets): then they fail.

use crate::backend::fresh_schema;
use allot_core::state::State;
use allot_core::testing::edit;
use allot_store::postgres::PgStore;
use allot_store::{AuditEntry, StoreError};
use std::path::PathBuf;

struct Cluster {
    /// `postgres://USER:PASSWORD@HOST:PORT/DB`, no query.
    url: String,
    ca: PathBuf,
}

impl Cluster {
    /// The URL with these query parameters.
    fn url(&self, query: &str) -> String {
        format!("{}?{query}", self.url)
    }

    fn ca(&self) -> String {
        self.ca.display().to_string()
    }

    /// Whether `text` shows the URL's password (false when it has none).
    fn shows_password(&self, text: &str) -> bool {
        url::Url::parse(&self.url).unwrap().password().is_some_and(|p| !p.is_empty() && text.contains(p))
    }
}

fn skip(why: &str) {
    if std::env::var("ALLOT_REQUIRE_POSTGRES_TLS").is_ok_and(|v| v == "1") {
        panic!("ALLOT_REQUIRE_POSTGRES_TLS=1 but {why}");
    }
    eprintln!("skipped: {why}");
}

/// The TLS cluster, if set and reachable with `sslmode=require` (else says why the test is
/// skipped, or fails with `ALLOT_REQUIRE_POSTGRES_TLS=1`).
async fn cluster() -> Option<Cluster> {
    let (Ok(url), Ok(ca)) = (std::env::var("ALLOT_TEST_POSTGRES_TLS_URL"), std::env::var("ALLOT_TEST_POSTGRES_TLS_CA"))
    else {
        skip("ALLOT_TEST_POSTGRES_TLS_URL and ALLOT_TEST_POSTGRES_TLS_CA are not both set");
        return None;
    };
    let cluster = Cluster { url: url.trim_end_matches('/').to_string(), ca: ca.into() };
    let opts: sqlx::postgres::PgConnectOptions = match cluster.url("sslmode=require").parse() {
        Ok(o) => o,
        Err(e) => {
            skip(&format!("ALLOT_TEST_POSTGRES_TLS_URL is not a PostgreSQL URL: {e}"));
            return None;
        }
    };
    match <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts).await {
        Ok(c) => {
            let _ = sqlx::Connection::close(c).await;
            Some(cluster)
        }
        Err(e) => {
            skip(&format!("PostgreSQL at ALLOT_TEST_POSTGRES_TLS_URL is unreachable with sslmode=require: {e}"));
            None
        }
    }
}

fn state(version: u64) -> State {
    State { version, config: Some(serde_json::json!({"version": version})), ..State::default() }
}

fn entry() -> AuditEntry {
    AuditEntry {
        actor: "ann".into(),
        time: "2026-01-01T00:00:00Z".into(),
        action: "config.put".into(),
        reason: None,
        forced: false,
        changes: serde_json::json!([]),
        overridden: serde_json::json!([]),
    }
}

/// Opens the store at `url` (with a fresh `schema=`, through the URL as `allot serve` takes it),
/// commits two versions (one through a second handle, announced over `LISTEN`), reads them back,
/// and checks that the pool's connection is encrypted; then drops the schema.
async fn store_works_over(c: &Cluster, url: &str) {
    let schema = fresh_schema();
    let at = format!("{url}&schema={schema}");
    let store = allot_store::open(&at).await.unwrap_or_else(|e| panic!("{e}"));
    let mut changes = store.changes().expect("PostgreSQL announces commits");
    assert_eq!(changes.recv().await, Some(0), "listening");
    assert_eq!(store.commit(0, &state(1), &entry()).await.unwrap(), 1);
    let other = allot_store::open(&at).await.unwrap();
    assert_eq!(other.commit(1, &state(2), &entry()).await.unwrap(), 2);
    // Announced over the LISTEN connection: on a TLS-only cluster, that one is TLS too.
    // (Bounded only so that a broken LISTEN fails the test instead of hanging it.)
    let announced = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        while changes.recv().await.unwrap() != 2 {}
    });
    announced.await.expect("version 2 announced");
    assert_eq!(store.load_current().await.unwrap(), (2, state(2)));
    assert_eq!(store.load_version(1).await.unwrap(), Some(state(1)));
    assert_eq!(store.audit(None, 10).await.unwrap().len(), 2);
    let pg = PgStore::open(&at).await.unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert!(ssl, "the connection is not encrypted");
    // Debug output never shows the password.
    let debug = format!("{pg:?}");
    assert!(debug.contains("PgStore") && !c.shows_password(&debug), "{debug}");
    PgStore::drop_schema(url, &schema).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_runs_the_stores_operations() {
    let Some(c) = cluster().await else { return };
    store_works_over(&c, &c.url("sslmode=require")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_right_ca_works_by_address_and_by_name() {
    let Some(c) = cluster().await else { return };
    let query = format!("sslmode=verify-full&sslrootcert={}", c.ca());
    store_works_over(&c, &c.url(&query)).await;
    // The certificate names `localhost` too.
    let by_name = edit(&c.url(&query), "@127.0.0.1:", "@localhost:");
    store_works_over(&c, &by_name).await;
}

/// A self-signed CA that signed nothing, as a PEM file.
fn wrong_ca(dir: &tempfile::TempDir) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let path = dir.path().join("wrong-ca.pem");
    std::fs::write(&path, cert.pem()).unwrap();
    path.display().to_string()
}

/// Opening the store at `url` fails; the error (which must not show the password).
async fn refused(c: &Cluster, url: &str) -> StoreError {
    let e = match allot_store::open(url).await {
        Ok(_) => panic!("{url}: connected"),
        Err(e) => e,
    };
    let text = e.to_string();
    assert!(!c.shows_password(&text), "{text}");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let Some(c) = cluster().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let wrong = wrong_ca(&dir);
    for mode in ["verify-full", "verify-ca", "require"] {
        // `require` with a root certificate verifies against it, as in libpq.
        let e = refused(&c, &c.url(&format!("sslmode={mode}&sslrootcert={wrong}"))).await.to_string();
        let expected_mode = if mode == "require" { "verify-ca" } else { mode };
        assert!(
            e.contains("connecting to 127.0.0.1:") && e.contains(&format!("(sslmode={expected_mode})")),
            "{mode}: {e}"
        );
        assert!(e.contains("UnknownIssuer"), "{mode}: {e}");
    }
    // Without sslrootcert, verify-full trusts Mozilla's roots only: not this test CA.
    let e = refused(&c, &c.url("sslmode=verify-full")).await.to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");
}

/// A TCP forwarder from 127.0.0.2 (an address the server's certificate does not name) to the
/// cluster: `host:port` to connect to.
async fn forwarder(c: &Cluster) -> String {
    let target = url::Url::parse(&c.url).unwrap();
    let target = format!("{}:{}", target.host_str().unwrap(), target.port().unwrap_or(5432));
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_host_the_certificate_does_not_name() {
    let Some(c) = cluster().await else { return };
    let via = forwarder(&c).await;
    let host_port = url::Url::parse(&c.url).unwrap();
    let at = format!("{}:{}", host_port.host_str().unwrap(), host_port.port().unwrap_or(5432));
    let elsewhere = |query: &str| edit(&c.url(query), &format!("@{at}/"), &format!("@{via}/"));
    // Without verification it connects through the forwarder: what is refused below is the name.
    store_works_over(&c, &elsewhere("sslmode=require")).await;
    let ca = c.ca();
    let e = refused(&c, &elsewhere(&format!("sslmode=verify-full&sslrootcert={ca}"))).await.to_string();
    assert!(e.contains("connecting to 127.0.0.2:") && e.contains("(sslmode=verify-full)"), "{e}");
    assert!(e.contains("certificate not valid for name \"127.0.0.2\""), "{e}");
    // verify-ca should not check the name (libpq), but sqlx 0.8.6 does (its NoHostnameTlsVerifier
    // misses rustls's NotValidForNameContext, sqlx issue #3793, fixed in 0.9): stricter, not
    // weaker, and documented in docs/deploy.md. This fails once sqlx is upgraded: then update
    // the documentation and expect the connection to work.
    let e = refused(&c, &elsewhere(&format!("sslmode=verify-ca&sslrootcert={ca}"))).await.to_string();
    assert!(e.contains("certificate not valid for name \"127.0.0.2\""), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_connection_to_the_tls_only_cluster_is_refused() {
    let Some(c) = cluster().await else { return };
    let e = refused(&c, &c.url("sslmode=disable")).await.to_string();
    // The server's own refusal: pg_hba.conf has hostssl lines only.
    assert!(e.contains("no pg_hba.conf entry") && e.contains("no encryption"), "{e}");
}

#[tokio::test]
async fn bad_tls_parameters_are_refused_before_connecting() {
    // No server is needed: these fail before any connection.
    let e = allot_store::open("postgres://u:hunter2@127.0.0.1:1/db?sslmode=verify-everything").await.err().unwrap();
    let e = e.to_string();
    assert!(e.contains("sslmode=\"verify-everything\"") && e.contains("verify-full") && !e.contains("hunter2"), "{e}");
    let e =
        allot_store::open("postgres://u:hunter2@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .await
            .err()
            .unwrap()
            .to_string();
    assert!(e.contains("sslrootcert=/nonexistent/ca.pem: cannot read the file") && !e.contains("hunter2"), "{e}");
}
