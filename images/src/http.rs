//! The HTTP client kiln's image and report transfers use.
//!
//! reqwest is built with rustls and no built-in crypto provider (the workspace uses ring only, see
//! ARCHITECTURE.md), so a client may only be built once a process-wide provider is installed; this does that.
//! Nor does it carry a root store: an `https://` peer is trusted only through certificates given here.

use std::sync::Once;

fn install_provider() {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Err means a provider is already installed (kiln installs only ring), which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client with ring installed as the process's rustls provider (idempotent).
pub fn http_client() -> reqwest::Client {
    install_provider();
    reqwest::Client::new()
}

/// [`http_client`] that trusts the PEM certificates in `pem` for `https://` (a site CA, or a server's own
/// self-signed certificate). An error says the bundle holds no readable certificate.
pub fn http_client_trusting(pem: &[u8]) -> Result<reqwest::Client, reqwest::Error> {
    install_provider();
    let mut builder = reqwest::Client::builder();
    for cert in reqwest::Certificate::from_pem_bundle(pem)? {
        builder = builder.add_root_certificate(cert);
    }
    builder.build()
}
