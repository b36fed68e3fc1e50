//! The RTSPS listener's TLS (`[rtsp] tls_listen`): a certificate chain and key
//! from PEM files, served by rustls with its `ring` provider (the one the
//! workspace's reqwest already uses). Each connection's handshake is held to
//! the request timeout in `connection::serve_tls`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// Where RTSPS is served and with which certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub listen: SocketAddr,
    /// PEM: the server certificate first, then any intermediates.
    pub certificate: PathBuf,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("RTSPS certificate {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("RTSPS key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("RTSPS certificate and key do not fit together: {0}")]
    Config(rustls::Error),
}

/// Loads the certificate and key into an acceptor.
pub fn acceptor(settings: &TlsSettings) -> Result<TlsAcceptor, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.certificate)
        .and_then(|certs| certs.collect())
        .map_err(|e| TlsError::Certificate {
            path: settings.certificate.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: settings.certificate.clone(),
            reason: "no certificate in the file".into(),
        });
    }
    // The error names the file only: a key's bytes never reach a message.
    let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|e| TlsError::Key {
        path: settings.key.clone(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Config)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
