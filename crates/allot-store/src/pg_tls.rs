//! TLS to PostgreSQL: the connection options of a `postgres://` URL, with its TLS parameters
//! checked before anything connects.
//!
//! sqlx (built with rustls and ring) does the TLS; what is added here is what it leaves to the
//! first connection or gets silently wrong:
//!
//! - `sslmode` must be one of `disable`, `prefer`, `require`, `verify-ca`, `verify-full` (sqlx
//!   would name its own `ssl_mode`; a bad `PGSSLMODE` it would silently take as `prefer`, i.e.
//!   without verification). `allow` is refused: sqlx treats it as `disable`.
//! - `sslrootcert` (and the client's `sslcert`/`sslkey`) must name a readable file, the root
//!   certificate file holding at least one PEM certificate: otherwise the first connection
//!   fails with a bare "No such file or directory", or verifies against Mozilla's roots alone.
//! - As in libpq, `sslmode=require` with a root certificate given verifies the server's
//!   certificate against it (libpq: "if a root CA file exists, the behavior of sslmode=require
//!   will be the same as that of verify-ca"); sqlx's `require` never verifies.
//!
//! Errors name the parameter and the file, never the URL (which may hold the password).

use crate::{Result, StoreError};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use std::str::FromStr;

/// The `sslmode` values accepted.
const MODES: &str = "disable, prefer, require, verify-ca or verify-full";

/// The connection options of `url` (allot's own parameters already taken out), its TLS
/// parameters checked (see the module's documentation).
pub(crate) fn connect_options(url: &str) -> Result<PgConnectOptions> {
    connect_options_with_env(url, |name| std::env::var(name).ok())
}

/// [`connect_options`] with the environment passed in (for tests).
fn connect_options_with_env(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<PgConnectOptions> {
    let parsed = url::Url::parse(url).map_err(crate::common::invalid_url)?;
    let (mut mode_given, mut root_given) = (false, false);
    for (key, value) in parsed.query_pairs() {
        match &*key {
            "sslmode" | "ssl-mode" => {
                check_mode(&key, &value)?;
                mode_given = true;
            }
            "sslrootcert" | "ssl-root-cert" | "ssl-ca" => {
                check_file(&key, &value, true)?;
                root_given = true;
            }
            "sslcert" | "ssl-cert" | "sslkey" | "ssl-key" => check_file(&key, &value, false)?,
            _ => {}
        }
    }
    // sqlx reads these when the URL does not say: check them the same way.
    if !mode_given {
        if let Some(v) = env("PGSSLMODE") {
            check_mode("PGSSLMODE", &v)?;
        }
    }
    if !root_given {
        if let Some(v) = env("PGSSLROOTCERT") {
            check_file("PGSSLROOTCERT", &v, true)?;
            root_given = true;
        }
    }
    let options = PgConnectOptions::from_str(url).map_err(crate::common::invalid_url)?;
    if root_given && matches!(options.get_ssl_mode(), PgSslMode::Require) {
        return Ok(options.ssl_mode(PgSslMode::VerifyCa));
    }
    Ok(options)
}

fn check_mode(name: &str, value: &str) -> Result<()> {
    match &*value.to_ascii_lowercase() {
        "disable" | "prefer" | "require" | "verify-ca" | "verify-full" => Ok(()),
        "allow" => Err(StoreError::Invalid(format!(
            "database URL: {name}=allow is not supported (it would connect without TLS); use {MODES}"
        ))),
        _ => Err(StoreError::Invalid(format!("database URL: {name}={value:?}: expected {MODES}"))),
    }
}

/// Checks that `value` (a path, or PEM text inline as sqlx accepts it) can be read, and for a
/// root certificate file that it holds a PEM certificate.
fn check_file(name: &str, value: &str, certificate: bool) -> Result<()> {
    let trimmed = value.trim();
    let text = if trimmed.starts_with("-----BEGIN") && trimmed.ends_with("-----") {
        trimmed.as_bytes().to_vec()
    } else {
        std::fs::read(value)
            .map_err(|e| StoreError::Invalid(format!("database URL: {name}={value}: cannot read the file: {e}")))?
    };
    if certificate && !text.windows(CERT_MARK.len()).any(|w| w == CERT_MARK) {
        return Err(StoreError::Invalid(format!(
            "database URL: {name}={value}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
        )));
    }
    Ok(())
}

const CERT_MARK: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// The error of a first connection, saying where to and under which `sslmode` (a certificate
/// that fails verification surfaces as an I/O error of the handshake).
pub(crate) fn connect_error(e: sqlx::Error, options: &PgConnectOptions) -> StoreError {
    let mode = match options.get_ssl_mode() {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    };
    let at = format!("connecting to {}:{} (sslmode={mode})", options.get_host(), options.get_port());
    match StoreError::from(e) {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("{at}: {m}")),
        StoreError::Database(m) => StoreError::Database(format!("{at}: {m}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(url: &str) -> Result<PgConnectOptions> {
        connect_options_with_env(url, |_| None)
    }

    #[test]
    fn bad_ssl_parameters_are_errors_naming_the_parameter() {
        let e = opts("postgres://u:secret@h/db?sslmode=verify-fulll").unwrap_err().to_string();
        assert!(e.contains("sslmode=\"verify-fulll\"") && e.contains("verify-full"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = opts("postgres://h/db?sslmode=allow").unwrap_err().to_string();
        assert!(e.contains("sslmode=allow is not supported"), "{e}");
        let e = opts("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem").unwrap_err().to_string();
        assert!(e.contains("sslrootcert=/nonexistent/ca.pem: cannot read the file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = opts(&format!("postgres://h/db?sslmode=verify-ca&sslrootcert={}", empty.display()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslrootcert=") && e.contains("no PEM certificate"), "{e}");
        let e = opts("postgres://h/db?sslkey=/nonexistent/key.pem").unwrap_err().to_string();
        assert!(e.contains("sslkey=/nonexistent/key.pem: cannot read the file"), "{e}");
        // The environment sqlx reads is checked the same way.
        let e = connect_options_with_env("postgres://h/db", |n| (n == "PGSSLMODE").then(|| "on".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PGSSLMODE=\"on\""), "{e}");
        let e = connect_options_with_env("postgres://h/db", |n| (n == "PGSSLROOTCERT").then(|| "/nonexistent".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PGSSLROOTCERT=/nonexistent"), "{e}");
    }

    #[test]
    fn modes_are_taken_as_written_and_require_with_a_root_verifies() {
        let mode = |url: &str| opts(url).unwrap().get_ssl_mode();
        assert!(matches!(mode("postgres://h/db?sslmode=disable"), PgSslMode::Disable));
        assert!(matches!(mode("postgres://h/db?sslmode=REQUIRE"), PgSslMode::Require));
        assert!(matches!(mode("postgres://h/db?sslmode=verify-full"), PgSslMode::VerifyFull));
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMII=\n-----END CERTIFICATE-----\n").unwrap();
        let with_root = |m: &str| format!("postgres://h/db?sslmode={m}&sslrootcert={}", ca.display());
        assert!(matches!(mode(&with_root("require")), PgSslMode::VerifyCa));
        assert!(matches!(mode(&with_root("verify-full")), PgSslMode::VerifyFull));
        assert!(matches!(mode(&with_root("disable")), PgSslMode::Disable));
    }
}
