//! Prometheus metrics at `/metrics`: nodes per state per hall and active leases (read from the inventory at
//! scrape time, so they are right across several kiln processes), HTTP requests and latency, leases created.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;

use crate::ApiState;
use crate::error::ApiError;

/// Labels of a node-count gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    hall: String,
    state: String,
}

/// Labels of an HTTP request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// Labels of the latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// The API's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    nodes: Family<NodeLabels, Gauge>,
    leases_active: Gauge,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    /// Leases created through this process.
    pub leases_created: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kiln");
        let nodes = Family::<NodeLabels, Gauge>::default();
        registry.register("nodes", "Nodes per hall and lifecycle state", nodes.clone());
        let leases_active = Gauge::default();
        registry.register("leases_active", "Active hall leases", leases_active.clone());
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "API requests by method, route and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "http_request_duration_seconds",
            "API request latency by route",
            latency.clone(),
        );
        let leases_created = Counter::default();
        registry.register(
            "leases_created",
            "Hall leases created by this process",
            leases_created.clone(),
        );
        Self {
            registry,
            nodes,
            leases_active,
            requests,
            latency,
            leases_created,
        }
    }
}

/// `GET /metrics` in the Prometheus text format.
pub async fn scrape(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let halls = state.store.list_halls().await?;
    state.metrics.nodes.clear();
    for hall in &halls {
        for (node_state, count) in &hall.states {
            let labels = NodeLabels {
                hall: hall.name.clone(),
                state: node_state.to_string(),
            };
            state.metrics.nodes.get_or_create(&labels).set(*count);
        }
        // Drained available nodes are a series of their own, never counted as available.
        if hall.drained > 0 {
            let labels = NodeLabels {
                hall: hall.name.clone(),
                state: "drained".to_string(),
            };
            state.metrics.nodes.get_or_create(&labels).set(hall.drained);
        }
    }
    let active = state
        .store
        .list_leases(None)
        .await?
        .iter()
        .filter(|l| l.status == "active")
        .count();
    state.metrics.leases_active.set(active as i64);
    let mut text = String::new();
    encode(&mut text, &state.metrics.registry).map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            err.to_string(),
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Middleware: a request id per request (echoed as `x-request-id`, carried by the log span), plus the request
/// counter and latency histogram.
pub async fn observe(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let method = request.method().to_string();
    let request_id = format!("{:016x}", rand::random::<u64>());
    let span = tracing::info_span!("request", id = %request_id, %method, %route);
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request done"
        )
    });
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    if let Ok(value) = request_id.parse() {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
