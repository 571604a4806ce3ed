//! kiln-api: the REST API over the inventory (`/api/v1/…`, OpenAPI at `/api/v1/openapi.json`), bearer tokens
//! with roles and lessee isolation, Prometheus `/metrics`, and the hall map page at `/`.
//!
//! Invariant: no endpoint returns BMC credentials (the inventory's `Node` carries none).
//! Invariant: a lessee token sees only the nodes, halls, leases and reports of its own active leases; anything
//! else answers 404, exactly as if it did not exist.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Html;
use axum::routing::{get, post};
use ed25519_dalek::SigningKey;
use kiln_inventory::Store;
use utoipa::OpenApi;

mod auth;
mod error;
mod extract;
mod metrics;
mod openapi;
pub mod power;
pub mod report;
pub mod routes;

pub use error::{ApiError, ErrorBody};
pub use metrics::Metrics;
pub use openapi::ApiDoc;

/// Largest request body accepted (a 10,000-node manifest is about 1.2 MiB).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The inventory.
    pub store: Store,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// The site's ed25519 key that signs acceptance records (reports answer 503 without one).
    pub signing_key: Option<Arc<SigningKey>>,
}

impl ApiState {
    /// State over `store` with fresh metrics.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            metrics: Arc::new(Metrics::default()),
            signing_key: None,
        }
    }

    /// Sets the key that signs acceptance records.
    pub fn with_signing_key(mut self, key: SigningKey) -> Self {
        self.signing_key = Some(Arc::new(key));
        self
    }

    /// The signing key, or the 503 that says the server has none.
    pub(crate) fn signing_key(&self) -> Result<&SigningKey, ApiError> {
        self.signing_key.as_deref().ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "no_signing_key",
                "the server has no site signing key (kiln serve --signing-key)",
            )
        })
    }
}

/// The whole HTTP surface: API, OpenAPI document, metrics and the hall map page.
pub fn router(state: ApiState) -> Router {
    use routes::{firmware, halls, leases, nodes, racks, site};
    let api = Router::new()
        .route("/nodes", get(nodes::list))
        .route("/nodes/{serial}", get(nodes::show))
        .route("/nodes/{serial}/events", get(nodes::events))
        .route("/nodes/{serial}/health", get(nodes::health))
        .route("/nodes/{serial}/drain", post(nodes::drain))
        .route("/nodes/{serial}/repair", post(nodes::repair))
        .route("/nodes/{serial}/reimage", post(nodes::reimage))
        .route("/nodes/{serial}/firmware", get(firmware::node))
        .route("/firmware", get(firmware::drift))
        .route("/nodes/{serial}/retest", post(nodes::retest))
        .route("/nodes/{serial}/power", post(power::power))
        .route("/halls", get(halls::list))
        .route("/halls/{id}", get(halls::show))
        .route("/halls/{id}/lease", post(leases::lease))
        .route("/map", get(halls::map))
        .route("/leases", get(leases::list))
        .route("/leases/{id}", get(leases::show))
        .route("/leases/{id}/report", get(leases::report))
        .route("/leases/{id}/progress", get(leases::progress))
        .route("/leases/{id}/release", post(leases::release))
        .route("/leases/{id}/swap", post(leases::swap))
        .route("/racks/import", post(racks::import))
        .route("/lessees", get(racks::lessees).post(racks::create_lessee))
        .route("/images", get(site::images))
        .route("/signing-key", get(site::signing_key))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        .fallback(|| async { ApiError::not_found("such endpoint") });
    Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(metrics::scrape))
        .route("/", get(|| async { Html(include_str!("map.html")) }))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
