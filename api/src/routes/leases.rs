//! Leases: lease a hall (atomic), list, show with history, acceptance report, release, swap a failing node.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

use kiln_inventory::{
    AcceptanceRule, HallLease, LeaseEvent, LeaseOutcome, Node, NodeFilter, NodeState, Role, Store,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::report::AcceptanceReport;

/// Body of `POST /api/v1/halls/{id}/lease`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseList {
    /// Newest first.
    pub leases: Vec<HallLease>,
}

/// A lease with its history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwapResult {
    /// The node taken out.
    pub swapped_out: String,
    /// The spare put in.
    pub swapped_in: String,
}

/// Answer to a release.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseResult {
    /// The released lease.
    pub lease: HallLease,
    /// Nodes sent to wiping (erase, reimage, re-verify).
    pub nodes_wiping: i64,
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
    let outcome = lease_hall(&state.store, hall_id, &request, &caller.actor()).await?;
    state.metrics.leases_created.inc();
    Ok((StatusCode::CREATED, Json(outcome)))
}

/// Checks a lease request and leases the hall (creating the lessee if new). One code path for the API and the
/// CLI's local transport.
pub async fn lease_hall(
    store: &Store,
    hall_id: i64,
    request: &LeaseRequest,
    actor: &str,
) -> Result<LeaseOutcome, ApiError> {
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
    let lessee = store.upsert_lessee(request.lessee.trim(), None).await?;
    let rule = request.acceptance.unwrap_or(AcceptanceRule::AllNodes);
    let starts_at = request.starts_at.unwrap_or_else(|| store.now());
    Ok(store
        .lease_hall(hall_id, lessee.id, starts_at, request.ends_at, rule, actor)
        .await?)
}

/// Releases a lease: its nodes go to wiping. One code path for the API and the CLI's local transport.
pub async fn release_lease(store: &Store, id: i64, actor: &str) -> Result<ReleaseResult, ApiError> {
    let nodes_wiping = store.release_lease(id, actor).await?;
    Ok(ReleaseResult {
        lease: store.lease(id).await?,
        nodes_wiping,
    })
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

/// The lease's acceptance report (downloadable JSON): per-node records signed with the site key, plus hall
/// aggregates; verify offline with `kiln health verify REPORT --public-key KEY`.
#[utoipa::path(get, path = "/api/v1/leases/{id}/report", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = AcceptanceReport), (status = 404, body = ErrorBody),
    (status = 503, description = "the server has no signing key", body = ErrorBody)))]
pub async fn report(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<AcceptanceReport>, ApiError> {
    visible_lease(&state, &caller, id).await?;
    let key = state.signing_key()?;
    Ok(Json(crate::report::build(&state.store, key, id).await?))
}

/// How far the nodes of a released lease are on their way back to `available`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseProgress {
    /// The lease.
    pub lease: HallLease,
    /// Nodes the release sent to wiping (0 while the lease is active).
    pub released: usize,
    /// Those nodes per current state.
    pub states: BTreeMap<NodeState, usize>,
    /// Of them, available again.
    pub available: usize,
    /// Of them, quarantined (a technician must repair them).
    pub quarantined: usize,
    /// Every released node is available or quarantined.
    pub done: bool,
    /// Once `done`: each released node's turnover (erased how, verified again, or quarantined and why);
    /// empty before.
    #[serde(default)]
    pub turnover: Vec<NodeTurnover>,
}

/// One released node's tenant turnover.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeTurnover {
    /// The node.
    pub serial: String,
    /// Where it is now.
    #[schema(value_type = String)]
    pub state: NodeState,
    /// Its disks erased and verified after the release, one `device: method (class)` per disk; empty when
    /// not erased.
    pub erased: Vec<String>,
    /// Verified again (imaging, burn-in, fabric test) and available.
    pub reverified: bool,
    /// Why it was quarantined, when it was.
    pub quarantined: Option<String>,
}

/// Progress of the nodes of a lease, as read from the inventory. One code path for the API and the CLI.
pub async fn lease_progress(store: &Store, id: i64) -> Result<LeaseProgress, ApiError> {
    let lease = store.lease(id).await?;
    let history = store.lease_events(id).await?;
    let serials: BTreeSet<String> = history
        .iter()
        .filter(|event| event.kind == "released")
        .filter_map(|event| event.detail["serials"].as_array())
        .flatten()
        .filter_map(|serial| serial.as_str().map(str::to_string))
        .collect();
    let hall = store.hall(lease.hall_id).await?;
    let filter = NodeFilter {
        hall: Some(hall.name),
        ..NodeFilter::default()
    };
    let mut states: BTreeMap<NodeState, usize> = BTreeMap::new();
    let released: Vec<Node> = store
        .list_nodes(&filter)
        .await?
        .into_iter()
        .filter(|node| serials.contains(&node.serial))
        .collect();
    for node in &released {
        *states.entry(node.state).or_default() += 1;
    }
    let count = |s| states.get(&s).copied().unwrap_or(0);
    let (available, quarantined) = (count(NodeState::Available), count(NodeState::Quarantined));
    let done = lease.status != "active" && available + quarantined == serials.len();
    // Read once at the end, not on every poll of a hall still on its way.
    let mut turnover = Vec::new();
    if done {
        for node in &released {
            turnover.push(node_turnover(store, node, lease.released_at).await?);
        }
    }
    Ok(LeaseProgress {
        released: serials.len(),
        done,
        lease,
        states,
        available,
        quarantined,
        turnover,
    })
}

/// A released node's turnover: its erase after the release and where it ended.
async fn node_turnover(
    store: &Store,
    node: &Node,
    released_at: Option<DateTime<Utc>>,
) -> Result<NodeTurnover, ApiError> {
    let erased = store
        .erase_records(node.id)
        .await?
        .into_iter()
        .filter(|r| released_at.is_none_or(|at| r.recorded_at >= at) && r.record.is_ok())
        .map(|r| r.record.summary())
        .collect();
    let quarantined = if node.state == NodeState::Quarantined {
        store
            .node_events(node.id)
            .await?
            .into_iter()
            .rev()
            .find(|e| e.to_state == Some(NodeState::Quarantined))
            .map(|e| e.reason)
    } else {
        None
    };
    Ok(NodeTurnover {
        serial: node.serial.clone(),
        state: node.state,
        erased,
        reverified: node.state == NodeState::Available,
        quarantined,
    })
}

/// Where the released nodes of a lease are on their way back to `available`.
#[utoipa::path(get, path = "/api/v1/leases/{id}/progress", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = LeaseProgress), (status = 404, body = ErrorBody)))]
pub async fn progress(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<LeaseProgress>, ApiError> {
    visible_lease(&state, &caller, id).await?;
    Ok(Json(lease_progress(&state.store, id).await?))
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
    Ok(Json(
        release_lease(&state.store, id, &caller.actor()).await?,
    ))
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
