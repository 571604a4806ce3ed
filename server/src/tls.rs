//! HTTPS for the web API and the agent report endpoint: rustls on kiln's ring provider, the certificate chain
//! and key read from PEM files. [`TlsState::reload`] (`kiln serve` calls it on SIGHUP) re-reads them without
//! dropping a connection: each connection keeps the configuration it was accepted with, and new connections get
//! the new one. A reload that fails (a half-written file, a key that does not match) keeps the old pair serving.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A client that has not finished its handshake by then is dropped (a slow or hostile peer holds nothing).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, connections get this long to finish the requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the server's certificate chain and private key live (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`CERTIFICATE` blocks).
    pub cert: PathBuf,
    /// The private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

/// The serving configuration and where it came from; shared by the listener and whoever reloads it.
#[derive(Debug)]
pub struct TlsState {
    files: TlsFiles,
    current: RwLock<Loaded>,
}

#[derive(Debug, Clone)]
struct Loaded {
    config: Arc<ServerConfig>,
    fingerprint: String,
}

impl TlsState {
    /// Reads `files`; an error names the file and what was wrong with it.
    pub fn load(files: TlsFiles) -> anyhow::Result<Arc<Self>> {
        let loaded = load(&files)?;
        Ok(Arc::new(TlsState {
            files,
            current: RwLock::new(loaded),
        }))
    }

    /// Re-reads the files; new connections use them from now on. On error the old certificate keeps serving.
    /// Returns the new leaf certificate's SHA-256 fingerprint.
    pub fn reload(&self) -> anyhow::Result<String> {
        let loaded = load(&self.files)?;
        let fingerprint = loaded.fingerprint.clone();
        *self
            .current
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = loaded;
        Ok(fingerprint)
    }

    /// The SHA-256 fingerprint (hex) of the leaf certificate now served.
    pub fn fingerprint(&self) -> String {
        self.loaded().fingerprint
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    fn loaded(&self) -> Loaded {
        self.current
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

fn load(files: &TlsFiles) -> anyhow::Result<Loaded> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let fingerprint = hex::encode(Sha256::digest(certs[0].as_ref()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "the key in {} does not go with the certificate in {}",
                files.key.display(),
                files.cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        fingerprint,
    })
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bad = || format!("reading the TLS certificate {}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(bad)?
        .collect::<Result<Vec<_>, _>>()
        .with_context(bad)?;
    if certs.is_empty() {
        bail!(
            "the TLS certificate file {} holds no CERTIFICATE block (PEM expected)",
            path.display()
        );
    }
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| {
        format!(
            "reading the TLS private key {} (a PKCS#8, RSA or EC PEM key expected)",
            path.display()
        )
    })
}

/// Serves `app` over HTTPS on `listener` until `cancel` fires, then lets open connections finish their requests
/// (up to [`DRAIN_TIMEOUT`]). Handlers see the peer address as axum's `ConnectInfo<SocketAddr>`.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: Arc<TlsState>,
    cancel: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %err, "HTTPS accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = TlsAcceptor::from(tls.loaded().config);
        connections.spawn(serve_connection(
            stream,
            peer,
            acceptor,
            app.clone(),
            cancel.clone(),
        ));
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "HTTPS connections still open after the drain timeout; closing them"
        );
        connections.shutdown().await;
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let service = TowerToHyperService::new(app.map_request(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        },
    ));
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "HTTPS connection ended with an error");
    }
}
