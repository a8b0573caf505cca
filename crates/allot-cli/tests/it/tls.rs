//! `allot serve --tls-cert/--tls-key` as a user types them: HTTPS with a certificate made here,
//! the two given together or not at all, a bad file stops the server before anything is
//! created, and the database URL's password is never shown. (The TLS connection layer itself is
//! tested over a real socket in allot-server's `tests/it/tls.rs`.)

use crate::serve::{start, KEY};
use std::process::{Command, Output};

fn serve(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_allot"))
        .current_dir(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("ALLOT_BOOTSTRAP_ADMIN_KEY", KEY)
        .env_remove("ALLOT_DATABASE_URL")
        .env_remove("ALLOT_TLS_CERT")
        .env_remove("ALLOT_TLS_KEY")
        .output()
        .unwrap()
}

#[test]
fn tls_cert_and_key_are_given_together() {
    let dir = tempfile::tempdir().unwrap();
    for (given, missing) in [("--tls-cert", "--tls-key"), ("--tls-key", "--tls-cert")] {
        let out = serve(dir.path(), &[given, "server.pem"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("required arguments were not provided") && err.contains(missing), "{err}");
    }
    assert!(!dir.path().join("allot.db").exists(), "no store was created");
}

#[test]
fn a_bad_certificate_or_key_stops_serve_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-cert.pem"), "hello\n").unwrap();
    let out = serve(dir.path(), &["--tls-cert", "missing.pem", "--tls-key", "key.pem"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert missing.pem: cannot read the file"), "{err}");
    let out = serve(dir.path(), &["--tls-cert", "not-a-cert.pem", "--tls-key", "not-a-cert.pem"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert not-a-cert.pem: no certificate"), "{err}");
    assert!(!dir.path().join("allot.db").exists(), "no store (and no key) was created");
}

#[test]
fn the_database_urls_password_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    // In --help, where clap would show the environment's value.
    let out = Command::new(env!("CARGO_BIN_EXE_allot"))
        .args(["serve", "--help"])
        .env("ALLOT_DATABASE_URL", "postgres://allot:hunter2-secret@127.0.0.1:1/db")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && help.contains("--database-url") && help.contains("--tls-cert"), "{help}");
    assert!(!help.contains("hunter2-secret"), "{help}");
    // In the error of a store that cannot be reached (nothing listens on port 1).
    let out = serve(dir.path(), &["--database-url", "postgres://allot:hunter2-secret@127.0.0.1:1/db?sslmode=require"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting to 127.0.0.1:1 (sslmode=require)"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
    // A bad sslmode names the parameter.
    let out = serve(dir.path(), &["--database-url", "postgres://allot:hunter2-secret@127.0.0.1:1/db?sslmode=on"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sslmode=\"on\": expected disable, prefer, require, verify-ca or verify-full"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
}

/// A private CA and a certificate for `localhost` it signs, written as `server.pem` and
/// `server.key` in `dir` (for `serve --tls-cert server.pem --tls-key server.key`); the CA's PEM.
pub(crate) fn certificate(dir: &std::path::Path) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    ca.pem()
}

/// `PUT /api/v1/config` over HTTPS on `localhost:port`, trusting `ca`: (status, body).
pub(crate) fn put_config(port: &str, ca: &str, yaml: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    rt.block_on(async {
        let r = client
            .put(format!("https://localhost:{port}/api/v1/config"))
            .bearer_auth(KEY)
            .header("if-match", "*")
            .body(yaml.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    })
}

#[test]
fn serve_answers_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = certificate(dir.path());
    let s = start(dir.path(), &["--tls-cert", "server.pem", "--tls-key", "server.key"]);
    let port = s.addr.rsplit(':').next().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let (health, version) = rt.block_on(async {
        let health = client.get(format!("https://localhost:{port}/healthz")).send().await.unwrap().status();
        let keys = client.get(format!("https://localhost:{port}/api/v1/keys")).bearer_auth(KEY).send().await.unwrap();
        (health, keys.status())
    });
    assert_eq!(health, reqwest::StatusCode::OK);
    assert_eq!(version, reqwest::StatusCode::OK, "an admin call over HTTPS");
    // Plain HTTP on that port is not answered.
    let mut plain = std::net::TcpStream::connect(&s.addr).unwrap();
    plain.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    std::io::Write::write_all(&mut plain, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut got = vec![];
    let _ = std::io::Read::read_to_end(&mut plain, &mut got);
    assert!(!got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
}
