//! The HTTP client kiln's image and report transfers use.
//!
//! reqwest is built with rustls and no built-in crypto provider (the workspace uses ring only, see
//! ARCHITECTURE.md), so a client may only be built once a process-wide provider is installed; this does that.

use std::sync::Once;

/// A reqwest client with ring installed as the process's rustls provider (idempotent).
pub fn http_client() -> reqwest::Client {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Err means a provider is already installed (kiln installs only ring), which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::new()
}
