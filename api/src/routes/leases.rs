//! Leases: lease a hall (atomic), list, show with history, acceptance report, release, swap a failing node.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kiln_inventory::{
    AcceptanceRule, HallLease, HealthRun, LeaseEvent, LeaseOutcome, NodeFilter, Role,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};

/// Body of `POST /api/v1/halls/{id}/lease`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// Lessee name (created if new).
    pub lessee: String,
    /// Start (default: now).
    pub starts_at: Option<DateTime<Utc>>,
    /// End, if fixed.
    pub ends_at: Option<DateTime<Utc>>,
    /// Acceptance rule (default: all nodes).
    pub acceptance: Option<AcceptanceRule>,
}

/// Leases visible to the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseList {
    /// Newest first.
    pub leases: Vec<HallLease>,
}

/// A lease with its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseDetail {
    /// The lease.
    pub lease: HallLease,
    /// Leased, swaps, released — oldest first.
    pub history: Vec<LeaseEvent>,
}

/// Body of `POST /api/v1/leases/{id}/swap`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwapRequest {
    /// Serial of the failing leased node.
    pub failing: String,
    /// Serial of the spare (default: the first available node of the hall).
    pub spare: Option<String>,
    /// Why (kept in both nodes' and the lease's history).
    pub reason: String,
}

/// Answer to a swap.
#[derive(Debug, Serialize, ToSchema)]
pub struct SwapResult {
    /// The node taken out.
    pub swapped_out: String,
    /// The spare put in.
    pub swapped_in: String,
}

/// Answer to a release.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseResult {
    /// The released lease.
    pub lease: HallLease,
    /// Nodes sent to wiping (erase, reimage, re-verify).
    pub nodes_wiping: i64,
}

/// Acceptance report of a lease: what the lessee received, with the evidence behind each node.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptanceReport {
    /// The lease.
    pub lease: HallLease,
    /// Hall name.
    pub hall: String,
    /// When the report was made.
    pub generated_at: DateTime<Utc>,
    /// Per-node records.
    pub nodes: Vec<NodeRecord>,
    /// Hall aggregates.
    pub aggregates: Aggregates,
}

/// One node of an acceptance report.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeRecord {
    /// Serial.
    pub serial: String,
    /// Rack.
    pub rack: String,
    /// Slot.
    pub slot: i64,
    /// SKU.
    pub sku: String,
    /// GPUs found by inspection.
    pub gpu_count: usize,
    /// Health runs with evidence.
    pub health_runs: Vec<HealthRun>,
}

/// Hall-level figures of an acceptance report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Aggregates {
    /// Nodes in the hall.
    pub nodes_total: i64,
    /// Nodes under the lease.
    pub nodes_leased: i64,
    /// Nodes still owed to the lessee.
    pub nodes_owed: i64,
    /// GPUs across leased nodes.
    pub gpu_count: usize,
    /// NCCL bus bandwidth over the leased nodes' latest NCCL runs (min / median / max), when there are any.
    pub nccl_busbw_gbps: Option<[f64; 3]>,
}

/// Lease a hall (admin). All available nodes move to `leased` atomically, or nothing changes.
#[utoipa::path(post, path = "/api/v1/halls/{id}/lease", params(("id" = i64, Path)), request_body = LeaseRequest,
    security(("bearer" = [])), responses((status = 201, body = LeaseOutcome), (status = 409, body = ErrorBody),
    (status = 422, description = "acceptance rule not met; `detail.shortfall` lists the nodes", body = ErrorBody)))]
pub async fn lease(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(hall_id): ApiPath<i64>,
    ApiJson(request): ApiJson<LeaseRequest>,
) -> Result<(StatusCode, Json<LeaseOutcome>), ApiError> {
    caller.require(&[])?;
    if request.lessee.trim().is_empty() {
        return Err(ApiError::bad_request("lessee must not be empty"));
    }
    if let Some(AcceptanceRule::MinVerifiedFraction { fraction }) = request.acceptance
        && !(fraction > 0.0 && fraction <= 1.0)
    {
        return Err(ApiError::bad_request(
            "acceptance fraction must be in (0, 1]",
        ));
    }
    let lessee = state
        .store
        .upsert_lessee(request.lessee.trim(), None)
        .await?;
    let rule = request.acceptance.unwrap_or(AcceptanceRule::AllNodes);
    let starts_at = request.starts_at.unwrap_or_else(|| state.store.now());
    let outcome = state
        .store
        .lease_hall(
            hall_id,
            lessee.id,
            starts_at,
            request.ends_at,
            rule,
            &caller.actor(),
        )
        .await?;
    state.metrics.leases_created.inc();
    Ok((StatusCode::CREATED, Json(outcome)))
}

fn visible(caller: &Caller, lease: &HallLease) -> bool {
    match (caller.lessee(), &caller.0.lessee) {
        (Some(_), Some((lessee_id, _))) => lease.lessee_id == *lessee_id,
        (Some(_), None) => false,
        (None, _) => true,
    }
}

async fn visible_lease(state: &ApiState, caller: &Caller, id: i64) -> Result<HallLease, ApiError> {
    let lease = state.store.lease(id).await?;
    if visible(caller, &lease) {
        Ok(lease)
    } else {
        Err(ApiError::not_found(format!("lease {id}")))
    }
}

/// List leases (a lessee sees its own).
#[utoipa::path(get, path = "/api/v1/leases", security(("bearer" = [])), responses((status = 200, body = LeaseList)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<LeaseList>, ApiError> {
    let mut leases = state.store.list_leases(None).await?;
    leases.retain(|lease| visible(&caller, lease));
    Ok(Json(LeaseList { leases }))
}

/// One lease with its history.
#[utoipa::path(get, path = "/api/v1/leases/{id}", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = LeaseDetail), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<LeaseDetail>, ApiError> {
    let lease = visible_lease(&state, &caller, id).await?;
    let history = state.store.lease_events(id).await?;
    Ok(Json(LeaseDetail { lease, history }))
}

/// The lease's acceptance report (downloadable JSON).
#[utoipa::path(get, path = "/api/v1/leases/{id}/report", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = AcceptanceReport), (status = 404, body = ErrorBody)))]
pub async fn report(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<AcceptanceReport>, ApiError> {
    let lease = visible_lease(&state, &caller, id).await?;
    let hall = state.store.hall(lease.hall_id).await?;
    let filter = NodeFilter {
        hall: Some(hall.name.clone()),
        ..NodeFilter::default()
    };
    let leased: Vec<_> = state
        .store
        .list_nodes(&filter)
        .await?
        .into_iter()
        .filter(|n| n.lease_id == Some(id))
        .collect();
    let mut nodes = Vec::with_capacity(leased.len());
    let mut busbw = Vec::new();
    for node in &leased {
        let hardware = state.store.hardware(node.id).await?;
        let health_runs = state.store.health_runs(node.id).await?;
        if let Some(nccl) = health_runs.iter().rev().find(|run| run.kind == "nccl")
            && let Some(value) = nccl
                .evidence
                .get("busbw_gbps")
                .and_then(serde_json::Value::as_f64)
        {
            busbw.push(value);
        }
        nodes.push(NodeRecord {
            serial: node.serial.clone(),
            rack: node.rack.clone(),
            slot: node.slot,
            sku: node.sku.clone(),
            gpu_count: hardware.gpus.len(),
            health_runs,
        });
    }
    busbw.sort_by(f64::total_cmp);
    let nccl_busbw_gbps = match (busbw.first(), busbw.get(busbw.len() / 2), busbw.last()) {
        (Some(min), Some(median), Some(max)) => Some([*min, *median, *max]),
        _ => None,
    };
    let nodes_leased = nodes.len() as i64;
    let aggregates = Aggregates {
        nodes_total: hall.nodes,
        nodes_leased,
        nodes_owed: (hall.nodes - nodes_leased).max(0),
        gpu_count: nodes.iter().map(|n| n.gpu_count).sum(),
        nccl_busbw_gbps,
    };
    Ok(Json(AcceptanceReport {
        lease,
        hall: hall.name,
        generated_at: state.store.now(),
        nodes,
        aggregates,
    }))
}

/// Release a lease (admin): its nodes go to wiping.
#[utoipa::path(post, path = "/api/v1/leases/{id}/release", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = ReleaseResult), (status = 409, body = ErrorBody)))]
pub async fn release(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ReleaseResult>, ApiError> {
    caller.require(&[])?;
    let nodes_wiping = state.store.release_lease(id, &caller.actor()).await?;
    Ok(Json(ReleaseResult {
        lease: state.store.lease(id).await?,
        nodes_wiping,
    }))
}

/// Swap a failing leased node for a spare (technician, admin); recorded in the lease's history.
#[utoipa::path(post, path = "/api/v1/leases/{id}/swap", params(("id" = i64, Path)), request_body = SwapRequest,
    security(("bearer" = [])), responses((status = 200, body = SwapResult), (status = 400, body = ErrorBody)))]
pub async fn swap(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<SwapRequest>,
) -> Result<Json<SwapResult>, ApiError> {
    caller.require(&[Role::Technician])?;
    let failing = state.store.node_by_serial(&request.failing).await?;
    let spare = match &request.spare {
        Some(serial) => Some(state.store.node_by_serial(serial).await?.id),
        None => None,
    };
    let spare = state
        .store
        .swap_leased_node(id, failing.id, spare, &caller.actor(), &request.reason)
        .await?;
    let spare = state.store.node(spare).await?;
    Ok(Json(SwapResult {
        swapped_out: failing.serial,
        swapped_in: spare.serial,
    }))
}
