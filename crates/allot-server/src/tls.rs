//! HTTPS for [`crate::http::serve_tls`] (`allot serve --tls-cert FILE --tls-key FILE`): the
//! certificate chain and private key read from PEM files into a rustls server configuration,
//! with ring as the crypto provider (the one sqlx's TLS to PostgreSQL uses, so the binary
//! carries one), TLS 1.2 and 1.3, and ALPN `http/1.1` (the server speaks HTTP/1.1 only).
//!
//! Every error names the file and what is wrong with it: unreadable, no certificate or no
//! private key in it, or a key that does not belong to the certificate.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What is wrong with `--tls-cert` or `--tls-key`.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{flag} {}: cannot read the file: {error}", path.display())]
    Read {
        /// `--tls-cert` or `--tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("{flag} {}: {why}", path.display())]
    Pem {
        /// `--tls-cert` or `--tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is missing or malformed.
        why: String,
    },
    /// rustls refused the pair (most often: the key is not the certificate's).
    #[error("--tls-cert {} with --tls-key {}: {why}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        why: String,
    },
}

/// A loaded certificate and key, ready to accept TLS connections.
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

impl Tls {
    /// Reads the certificate chain (`cert`: the server's certificate first, then any
    /// intermediates) and its private key (`key`: PKCS#8, PKCS#1 or SEC1), both PEM.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let read = |flag, path: &Path| {
            std::fs::read(path).map_err(|error| TlsError::Read { flag, path: path.to_path_buf(), error })
        };
        let pem_error = |flag, path: &Path, why: String| TlsError::Pem { flag, path: path.to_path_buf(), why };
        let chain = CertificateDer::pem_slice_iter(&read("--tls-cert", cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error("--tls-cert", cert, format!("not a PEM certificate file: {e}")))?;
        if chain.is_empty() {
            return Err(pem_error("--tls-cert", cert, "no certificate (-----BEGIN CERTIFICATE-----) in it".into()));
        }
        let key_der = PrivateKeyDer::from_pem_slice(&read("--tls-key", key)?).map_err(|e| {
            let why = match e {
                rustls::pki_types::pem::Error::NoItemsFound => {
                    "no private key (-----BEGIN PRIVATE KEY-----, RSA or EC PRIVATE KEY) in it".to_string()
                }
                e => format!("not a PEM private key file: {e}"),
            };
            pem_error("--tls-key", key, why)
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pair = |why: String| TlsError::Pair { cert: cert.to_path_buf(), key: key.to_path_buf(), why };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| pair(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| pair(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) })
    }
}
