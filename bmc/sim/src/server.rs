//! Serving one simulated BMC's Redfish router over HTTPS (self-signed certificate) or plain HTTP on a loopback
//! listener. Hand-rolled on hyper + tokio-rustls rather than axum::serve because each BMC needs its own
//! certificate and the connection-dropping fault knob acts before the TLS handshake.

use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use kiln_bmc::redfish::CertFingerprint;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::SimError;
use crate::state::SimBmc;

/// A self-signed certificate for `localhost` / `127.0.0.1` and its key.
#[derive(Debug)]
pub struct SimCert {
    /// DER certificate.
    pub cert: CertificateDer<'static>,
    /// PKCS#8 private key.
    pub key: PrivatePkcs8KeyDer<'static>,
    /// SHA-256 of the DER certificate: what kiln pins.
    pub fingerprint: CertFingerprint,
}

impl SimCert {
    /// Generates a fresh Ed25519 self-signed certificate (Ed25519 because signing and verifying it is the
    /// cheapest of the handshake costs, which matters when one process plays 10,000 BMCs and the client).
    pub fn generate() -> Result<Self, SimError> {
        let err = |err: rcgen::Error| SimError::Certificate(err.to_string());
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(err)?;
        let certificate = rcgen::CertificateParams::new(names)
            .map_err(err)?
            .self_signed(&key_pair)
            .map_err(err)?;
        let cert = certificate.der().clone();
        let fingerprint = CertFingerprint::of_der(cert.as_ref());
        let key = PrivatePkcs8KeyDer::from(key_pair.serialize_der());
        Ok(SimCert {
            cert,
            key,
            fingerprint,
        })
    }

    /// A TLS acceptor serving this certificate, on kiln's ring provider.
    pub fn acceptor(&self) -> Result<TlsAcceptor, SimError> {
        let mut config =
            rustls::ServerConfig::builder_with_provider(kiln_bmc::redfish::tls::crypto_provider())
                .with_safe_default_protocol_versions()
                .map_err(SimError::Tls)?
                .with_no_client_auth()
                .with_single_cert(
                    vec![self.cert.clone()],
                    PrivateKeyDer::Pkcs8(self.key.clone_key()),
                )
                .map_err(SimError::Tls)?;
        // BMC web servers rarely resume sessions, and tickets cost both sides work on every handshake.
        config.send_tls13_tickets = 0;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Accepts connections until `cancel` fires, serving `router` on each (over TLS when `tls` is set).
pub async fn run_listener(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    bmc: Arc<SimBmc>,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                debug!(bmc = bmc.index, error = %err, "accept failed");
                continue;
            }
        };
        if bmc.faults().drop_connections {
            drop(stream);
            continue;
        }
        let router = router.clone();
        let tls = tls.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = serve_connection(stream, router, tls) => {}
            }
        });
    }
}

pub(crate) async fn serve_connection(stream: TcpStream, router: Router, tls: Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    let service = TowerToHyperService::new(router);
    let builder = hyper::server::conn::http1::Builder::new();
    let result = match tls {
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(tls_stream) => {
                builder
                    .serve_connection(TokioIo::new(tls_stream), service)
                    .await
            }
            Err(err) => {
                debug!(error = %err, "TLS handshake failed");
                return;
            }
        },
        None => {
            builder
                .serve_connection(TokioIo::new(stream), service)
                .await
        }
    };
    if let Err(err) = result {
        debug!(error = %err, "connection ended with an error");
    }
}
