//! TLS for Redfish: rustls with the ring provider, and a certificate verifier that pins one certificate per BMC
//! by its SHA-256 fingerprint (BMCs ship self-signed certificates, so a CA chain means nothing).

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The one TLS crypto provider of the workspace (ring). Installed as the process default on first use so that
/// any rustls user in the process agrees.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            // Err means another provider was installed first; kiln still uses ring explicitly everywhere.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Arc::new(rustls::crypto::ring::default_provider())
        })
        .clone()
}

/// The SHA-256 fingerprint of a DER certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertFingerprint(pub [u8; 32]);

impl CertFingerprint {
    /// Fingerprints a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        CertFingerprint(Sha256::digest(der).into())
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

/// Why a fingerprint string could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a SHA-256 fingerprint (64 hex digits, colons allowed): {input:?}")]
pub struct FingerprintParseError {
    /// The rejected text (a fingerprint is not secret).
    pub input: String,
}

impl FromStr for CertFingerprint {
    type Err = FingerprintParseError;

    /// Accepts `ab12…`, `AB:12:…` and an optional `sha256:` / `SHA256=` prefix.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || FingerprintParseError {
            input: text.chars().take(120).collect(),
        };
        let trimmed = text.trim();
        let body = ["sha256:", "sha256=", "SHA256:", "SHA256="]
            .iter()
            .find_map(|prefix| trimmed.strip_prefix(prefix))
            .unwrap_or(trimmed);
        let digits: String = body.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(digits).map_err(|_| err())?;
        let array: [u8; 32] = bytes.try_into().map_err(|_| err())?;
        Ok(CertFingerprint(array))
    }
}

/// How kiln trusts a BMC's HTTPS certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Only the certificate with this fingerprint (recorded on first use, kept in the inventory).
    Pinned(CertFingerprint),
    /// Any certificate (labs only; must be asked for explicitly with `--insecure`).
    Insecure,
}

/// Verifies the server certificate against a pinned fingerprint (or accepts any under [`TlsPolicy::Insecure`])
/// and remembers the fingerprint it saw, so that a mismatch can be reported with both values. Handshake
/// signatures are always checked, so the peer must hold the certificate's private key.
#[derive(Debug)]
pub(crate) struct PinnedVerifier {
    expected: Option<CertFingerprint>,
    provider: Arc<CryptoProvider>,
    seen: SeenFingerprint,
}

impl PinnedVerifier {
    /// A verifier for one policy, and the slot where it records what it saw.
    pub(crate) fn new(policy: TlsPolicy) -> (Self, SeenFingerprint) {
        let seen = Arc::new(Mutex::new(None));
        let expected = match policy {
            TlsPolicy::Pinned(fingerprint) => Some(fingerprint),
            TlsPolicy::Insecure => None,
        };
        (
            PinnedVerifier {
                expected,
                provider: crypto_provider(),
                seen: seen.clone(),
            },
            seen,
        )
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = CertFingerprint::of_der(end_entity.as_ref());
        if let Ok(mut slot) = self.seen.lock() {
            *slot = Some(actual);
        }
        match self.expected {
            Some(expected) if expected != actual => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Where a verifier records the fingerprint of the certificate it was shown.
pub(crate) type SeenFingerprint = Arc<Mutex<Option<CertFingerprint>>>;

/// A rustls client configuration for one BMC under `policy`, plus the slot recording the certificate seen.
pub(crate) fn client_config(
    policy: TlsPolicy,
) -> Result<(rustls::ClientConfig, SeenFingerprint), rustls::Error> {
    let (verifier, seen) = PinnedVerifier::new(policy);
    let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((config, seen))
}

/// Connects to `host:port`, completes a TLS handshake accepting any certificate, and returns the fingerprint of
/// the certificate presented: the "trust on first use" step whose answer goes into the inventory.
pub async fn probe_fingerprint(
    host: &str,
    port: u16,
    timeout: std::time::Duration,
) -> Result<CertFingerprint, crate::BmcError> {
    let addr = format!("{host}:{port}");
    let (config, seen) =
        client_config(TlsPolicy::Insecure).map_err(|err| crate::BmcError::Config {
            addr: addr.clone(),
            detail: err.to_string(),
        })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name =
        ServerName::try_from(host.to_string()).map_err(|_| crate::BmcError::Config {
            addr: addr.clone(),
            detail: "host is not a valid name".into(),
        })?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        connector.connect(server_name, tcp).await
    };
    match tokio::time::timeout(timeout, handshake).await {
        Err(_) => Err(crate::BmcError::Timeout { addr, timeout }),
        Ok(Err(err)) => Err(crate::BmcError::Connect {
            addr,
            source: Box::new(err),
        }),
        Ok(Ok(_stream)) => {
            seen.lock()
                .ok()
                .and_then(|slot| *slot)
                .ok_or(crate::BmcError::Protocol {
                    addr,
                    detail: "TLS handshake completed without a certificate".into(),
                })
        }
    }
}
