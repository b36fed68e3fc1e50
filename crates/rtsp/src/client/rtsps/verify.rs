//! The rustls client configuration of an `rtsps://` camera ([`TlsOptions`]):
//! webpki roots (plus `tls_ca`) by default; a pinned leaf fingerprint; or no
//! check at all. rustls with its `ring` provider, as the RTSPS listener.

use std::sync::{Arc, Mutex};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::client::config::{Fingerprint, TlsOptions};
use crate::client::SourceError;

/// A client configuration, and what explains its handshake failures.
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// The fingerprint a pinned verifier was shown, when it was not the pin.
    mismatch: Arc<Mutex<Option<Fingerprint>>>,
    pinned: Option<Fingerprint>,
}

impl ClientTls {
    /// The error of a failed handshake: a pin mismatch names both fingerprints
    /// (rustls only knows it failed).
    pub fn handshake_error(&self, error: &std::io::Error) -> String {
        let seen = *self.mismatch.lock().unwrap_or_else(|e| e.into_inner());
        match (seen, self.pinned) {
            (Some(got), Some(expected)) => format!(
                "camera certificate fingerprint is {got}, expected {expected} (tls_fingerprint)"
            ),
            _ => format!("handshake with camera: {error}"),
        }
    }
}

/// The client configuration for `options`; Err for an unreadable `tls_ca`.
pub fn client_config(options: &TlsOptions) -> Result<ClientTls, SourceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Tls(e.to_string()))?;
    let mismatch = Arc::new(Mutex::new(None));
    let config = if options.fingerprint.is_some() || !options.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified {
                pinned: options.fingerprint,
                mismatch: mismatch.clone(),
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots(options)?)
            .with_no_client_auth()
    };
    Ok(ClientTls {
        config: Arc::new(config),
        mismatch,
        pinned: options.fingerprint,
    })
}

fn roots(options: &TlsOptions) -> Result<rustls::RootCertStore, SourceError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &options.ca {
        let bad = |reason: String| SourceError::Tls(format!("tls_ca {}: {reason}", path.display()));
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect())
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate in the file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(roots)
}

/// Skips chain and name checks: accepts any certificate (`tls_verify = false`)
/// or only the pinned one. Handshake signatures are still checked, so the camera
/// must hold the certificate's key.
#[derive(Debug)]
struct Unverified {
    pinned: Option<Fingerprint>,
    mismatch: Arc<Mutex<Option<Fingerprint>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(expected) = self.pinned else {
            return Ok(ServerCertVerified::assertion());
        };
        let got = Fingerprint(Sha256::digest(end_entity.as_ref()).into());
        if got == expected {
            return Ok(ServerCertVerified::assertion());
        }
        *self.mismatch.lock().unwrap_or_else(|e| e.into_inner()) = Some(got);
        Err(CertificateError::ApplicationVerificationFailure.into())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
