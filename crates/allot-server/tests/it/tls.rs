//! HTTPS over a real socket (`allot_server::http::serve_tls`), with a CA and a server certificate
//! made here (rcgen) and a client (reqwest with rustls) that trusts that CA only. As in
//! `conn.rs`, the outer `tokio::time::timeout`s only keep a broken server from hanging the
//! suite; nothing asserts how long anything takes.

use crate::support::*;
use allot_server::http::{serve_tls, Limits, Tls, TlsError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest any step may take before the test calls the server hung.
const HANG: Duration = Duration::from_secs(20);

/// A CA, and a certificate it signed for `localhost` and `127.0.0.1`, as PEM files.
struct Certs {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl Certs {
    fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "allot test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        Certs { dir, ca_pem: ca.pem() }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn tls(&self) -> Tls {
        Tls::from_pem_files(&self.cert(), &self.key()).unwrap()
    }

    /// A client that trusts this CA and nothing else.
    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap()
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<usize>,
    server: Server,
    certs: Certs,
}

impl Running {
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.addr.port())
    }

    /// `GET /healthz` over HTTPS: the status.
    async fn healthz(&self) -> reqwest::StatusCode {
        let get = self.certs.client().get(self.url("localhost", "/healthz")).send();
        tokio::time::timeout(HANG, get).await.expect("never served").unwrap().status()
    }

    fn open(&self) -> usize {
        self.server.app.connections().open.load(Ordering::Relaxed)
    }
}

async fn start(limits: Limits) -> Running {
    let server = configured().await;
    let certs = Certs::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let router = allot_server::router(server.app.clone());
    let task = tokio::spawn(serve_tls(listener, certs.tls(), router, limits, server.app.connections(), async move {
        let _ = rx.await;
    }));
    Running { addr, stop: Some(tx), task, server, certs }
}

fn limits(header: Duration, max_connections: usize) -> Limits {
    Limits {
        header_timeout: header,
        body_timeout: Duration::from_secs(60),
        max_connections,
        shutdown_timeout: Duration::from_secs(60),
    }
}

/// A TCP connection that sends the first bytes of a TLS record and then nothing: a handshake
/// that never completes.
async fn stalled(addr: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    c
}

/// Reads until the server closes the connection; how many bytes it sent before.
async fn read_to_close(c: &mut TcpStream) -> usize {
    let mut n = 0;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(HANG, c.read(&mut buf)).await.expect("the server never closed the connection") {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += k,
        }
    }
}

/// Waits until the server has accepted `n` connections.
async fn until_open(r: &Running, n: usize) {
    tokio::time::timeout(HANG, async {
        while r.open() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the server never accepted the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_healthz_and_evaluation_to_a_client_that_trusts_the_ca() {
    let r = start(limits(Duration::from_secs(10), 100)).await;
    assert_eq!(r.healthz().await, reqwest::StatusCode::OK);
    // By address too: the certificate names 127.0.0.1.
    let client = r.certs.client();
    let res = client
        .post(r.url("127.0.0.1", "/api/v1/evaluate"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(r#"{"context": {"user_id": "alice"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    assert_eq!(res.version(), reqwest::Version::HTTP_11);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["version"], 1);
    assert_eq!(body["assignments"]["banner"]["variant"], "treatment", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_certificate_or_speaks_plain_http_is_not_served() {
    let r = start(limits(Duration::from_secs(10), 100)).await;
    // A client with Mozilla's roots only.
    let untrusting = reqwest::Client::builder().build().unwrap();
    let e = untrusting.get(r.url("localhost", "/healthz")).send().await.unwrap_err();
    assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(r.addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut got = vec![];
    let _ = tokio::time::timeout(HANG, plain.read_to_end(&mut got)).await.expect("never closed");
    assert!(!got.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&got));
    // Neither stops the server.
    assert_eq!(r.healthz().await, reqwest::StatusCode::OK);
}

/// A stalled handshake does not keep others from being served, and is closed (at the header
/// timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_does_not_hold_the_server() {
    let r = start(limits(Duration::from_millis(500), 100)).await;
    let mut slow = stalled(r.addr).await;
    until_open(&r, 1).await;
    assert_eq!(r.healthz().await, reqwest::StatusCode::OK);
    assert_eq!(read_to_close(&mut slow).await, 0, "a stalled handshake gets nothing");
}

/// With one slot, a stalled handshake holds it only until the header timeout: the next client is
/// served after it (without the handshake's timeout it would wait for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_gives_its_slot_back() {
    let r = start(limits(Duration::from_millis(300), 1)).await;
    let mut slow = stalled(r.addr).await;
    until_open(&r, 1).await;
    assert_eq!(r.healthz().await, reqwest::StatusCode::OK);
    read_to_close(&mut slow).await;
}

/// Shutdown closes connections still in their handshake at once: with a header timeout far past
/// the test's patience, shutdown completes and drops nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_in_their_handshake() {
    let mut r = start(limits(Duration::from_secs(3600), 10)).await;
    let mut slow = stalled(r.addr).await;
    until_open(&r, 1).await;
    r.stop.take().unwrap().send(()).unwrap();
    let dropped = tokio::time::timeout(HANG, &mut r.task).await.expect("shutdown hung").unwrap();
    assert_eq!(dropped, 0);
    read_to_close(&mut slow).await;
}

fn err(cert: &Path, key: &Path) -> String {
    match Tls::from_pem_files(cert, key) {
        Ok(_) => panic!("{} and {} were accepted", cert.display(), key.display()),
        Err(e) => {
            let text = e.to_string();
            assert!(matches!(e, TlsError::Read { .. } | TlsError::Pem { .. } | TlsError::Pair { .. }));
            text
        }
    }
}

#[test]
fn bad_certificate_and_key_files_are_errors_naming_the_file() {
    let certs = Certs::new();
    let d = certs.dir.path();
    let missing = d.join("missing.pem");
    let e = err(&missing, &certs.key());
    assert!(e.starts_with(&format!("--tls-cert {}: cannot read the file", missing.display())), "{e}");
    let e = err(&certs.cert(), &missing);
    assert!(e.starts_with(&format!("--tls-key {}: cannot read the file", missing.display())), "{e}");
    // The key given as the certificate, and the certificate as the key.
    let e = err(&certs.key(), &certs.key());
    assert!(e.starts_with(&format!("--tls-cert {}: no certificate", certs.key().display())), "{e}");
    let e = err(&certs.cert(), &certs.cert());
    assert!(e.starts_with(&format!("--tls-key {}: no private key", certs.cert().display())), "{e}");
    // A key that is not the certificate's.
    let other = d.join("other-key.pem");
    std::fs::write(&other, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let e = err(&certs.cert(), &other);
    assert!(
        e.starts_with(&format!("--tls-cert {} with --tls-key {}:", certs.cert().display(), other.display())),
        "{e}"
    );
    // Garbage inside PEM markers.
    let broken = d.join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").unwrap();
    let e = err(&broken, &certs.key());
    assert!(e.starts_with(&format!("--tls-cert {}:", broken.display())), "{e}");
}
