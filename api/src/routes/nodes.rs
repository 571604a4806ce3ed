//! `/api/v1/nodes`: list (filters, cursor pagination), detail, events, health runs, drain, repair.

use axum::Json;
use axum::extract::State;
use kiln_inventory::{Hardware, HealthRun, Node, NodeEvent, NodeFilter, NodeId, NodeState, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

/// Query of `GET /api/v1/nodes`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct NodeQuery {
    /// Hall name.
    hall: Option<String>,
    /// Rack name.
    rack: Option<String>,
    /// Lifecycle state.
    #[param(value_type = Option<String>)]
    state: Option<NodeState>,
    /// SKU id.
    sku: Option<String>,
    /// Lessee name (lessee tokens always see only their own).
    lessee: Option<String>,
    /// Cursor from the previous page's `next`.
    after: Option<i64>,
    /// Page size (1–1000, default 100).
    limit: Option<i64>,
}

/// A page of nodes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodePage {
    /// The nodes.
    pub nodes: Vec<Node>,
    /// Cursor for the next page (`after=`), or null at the end.
    pub next: Option<i64>,
}

/// One node with its hardware.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeDetail {
    /// The node (BMC credentials are never included).
    pub node: Node,
    /// What inspection found.
    pub hardware: Hardware,
    /// What the last BMC sweep saw (power state, reachability), when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub bmc_status: Option<kiln_inventory::BmcStatus>,
    /// The disk erase of the node's latest tenant turnover, one record per device (empty: never erased).
    #[serde(default)]
    pub erase_records: Vec<kiln_inventory::StoredEraseRecord>,
}

/// A node's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    /// Events, oldest first.
    pub events: Vec<NodeEvent>,
}

/// A node's health runs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthList {
    /// Runs with evidence, oldest first.
    pub health_runs: Vec<HealthRun>,
}

/// Body of `POST /nodes/{serial}/drain`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// `true` takes the node out of allocation, `false` puts it back.
    pub drained: bool,
    /// Why (kept in the node's history).
    pub reason: String,
}

/// Body of `POST /nodes/{serial}/repair`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepairRequest {
    /// What was repaired (kept in the node's history).
    pub reason: String,
}

/// Body of `POST /nodes/{serial}/reimage`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReimageRequest {
    /// `NAME:VERSION` of a catalog image to write instead of the engine's (until the node is next available).
    #[serde(default)]
    pub image: Option<String>,
    /// Why (kept in the node's history).
    pub reason: String,
}

/// Body of `POST /nodes/{serial}/retest`. Neither flag, or both: burn-in then the fabric test; `nccl` alone:
/// the fabric test only.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetestRequest {
    /// Run burn-in (the fabric test follows, as in bring-up).
    #[serde(default)]
    pub burn_in: bool,
    /// Run the fabric (NCCL) test.
    #[serde(default)]
    pub nccl: bool,
    /// Why (kept in the node's history).
    pub reason: String,
}

/// Looks a node up by serial, as a 404 when a lessee asks for a node outside its leases.
pub(crate) async fn visible_node(
    state: &ApiState,
    caller: &Caller,
    serial: &str,
) -> Result<Node, ApiError> {
    let hidden = || ApiError::not_found(format!("node with serial {serial:?}"));
    let node = state
        .store
        .node_by_serial(serial)
        .await
        .map_err(|_| hidden())?;
    if let Some(lessee) = caller.lessee() {
        let filter = NodeFilter {
            lessee: Some(lessee.to_string()),
            serial: Some(serial.to_string()),
            ..NodeFilter::default()
        };
        if state.store.list_nodes(&filter).await?.is_empty() {
            return Err(hidden());
        }
    }
    Ok(node)
}

/// List nodes.
#[utoipa::path(get, path = "/api/v1/nodes", params(NodeQuery), security(("bearer" = [])),
    responses((status = 200, body = NodePage), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<NodeQuery>,
) -> Result<Json<NodePage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let lessee = match caller.lessee() {
        Some(own) => Some(own.to_string()),
        None => query.lessee,
    };
    let filter = NodeFilter {
        hall: query.hall,
        rack: query.rack,
        state: query.state,
        sku: query.sku,
        lessee,
        serial: None,
        after_id: query.after.map(NodeId),
        limit: Some(limit + 1),
    };
    let mut nodes = state.store.list_nodes(&filter).await?;
    let next = if nodes.len() as i64 > limit {
        nodes.truncate(limit as usize);
        nodes.last().map(|n| n.id.0)
    } else {
        None
    };
    Ok(Json(NodePage { nodes, next }))
}

/// One node.
#[utoipa::path(get, path = "/api/v1/nodes/{serial}", params(("serial" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = NodeDetail), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<NodeDetail>, ApiError> {
    let node = visible_node(&state, &caller, &serial).await?;
    let hardware = state.store.hardware(node.id).await?;
    let bmc_status = state.store.bmc_status(node.id).await?;
    let erase_records = state.store.erase_records(node.id).await?;
    Ok(Json(NodeDetail {
        node,
        hardware,
        bmc_status,
        erase_records,
    }))
}

/// A node's history.
#[utoipa::path(get, path = "/api/v1/nodes/{serial}/events", params(("serial" = String, Path)),
    security(("bearer" = [])), responses((status = 200, body = EventList), (status = 404, body = ErrorBody)))]
pub async fn events(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<EventList>, ApiError> {
    let node = visible_node(&state, &caller, &serial).await?;
    Ok(Json(EventList {
        events: state.store.node_events(node.id).await?,
    }))
}

/// A node's health runs and evidence.
#[utoipa::path(get, path = "/api/v1/nodes/{serial}/health", params(("serial" = String, Path)),
    security(("bearer" = [])), responses((status = 200, body = HealthList), (status = 404, body = ErrorBody)))]
pub async fn health(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<HealthList>, ApiError> {
    let node = visible_node(&state, &caller, &serial).await?;
    Ok(Json(HealthList {
        health_runs: state.store.health_runs(node.id).await?,
    }))
}

/// Take a node out of allocation, or put it back (technician, admin).
#[utoipa::path(post, path = "/api/v1/nodes/{serial}/drain", params(("serial" = String, Path)), request_body = DrainRequest,
    security(("bearer" = [])), responses((status = 200, body = NodeDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn drain(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(serial): ApiPath<String>,
    ApiJson(request): ApiJson<DrainRequest>,
) -> Result<Json<NodeDetail>, ApiError> {
    let node = visible_node(&state, &caller, &serial).await?;
    caller.require(&[Role::Technician])?;
    state
        .store
        .set_drained(node.id, request.drained, &caller.actor(), &request.reason)
        .await?;
    show(State(state), caller, ApiPath(serial)).await
}

/// Mark a quarantined node repaired: it goes back to inspecting (technician, admin).
#[utoipa::path(post, path = "/api/v1/nodes/{serial}/repair", params(("serial" = String, Path)), request_body = RepairRequest,
    security(("bearer" = [])), responses((status = 200, body = NodeDetail), (status = 409, body = ErrorBody)))]
pub async fn repair(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(serial): ApiPath<String>,
    ApiJson(request): ApiJson<RepairRequest>,
) -> Result<Json<NodeDetail>, ApiError> {
    let node = visible_node(&state, &caller, &serial).await?;
    caller.require(&[Role::Technician])?;
    // The lifecycle engine's repair: clears the quarantine (failure, attempt counts) with the transition.
    kiln_provisioner::lifecycle::repair_done(
        &state.store,
        &node.serial,
        &caller.actor(),
        &request.reason,
    )
    .await?;
    show(State(state), caller, ApiPath(serial)).await
}

/// Send an available or remediating node back through imaging and every check after it (technician, admin).
#[utoipa::path(post, path = "/api/v1/nodes/{serial}/reimage", params(("serial" = String, Path)), request_body = ReimageRequest,
    security(("bearer" = [])), responses((status = 200, body = NodeDetail), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reimage(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(serial): ApiPath<String>,
    ApiJson(request): ApiJson<ReimageRequest>,
) -> Result<Json<NodeDetail>, ApiError> {
    let node = visible_node(&state, &caller, &serial).await?;
    caller.require(&[Role::Technician])?;
    let image = request
        .image
        .as_deref()
        .map(kiln_inventory::parse_image_ref)
        .transpose()
        .map_err(|err| ApiError::bad_request(format!("image: {err}")))?;
    kiln_provisioner::lifecycle::reimage(
        &state.store,
        &node.serial,
        image,
        &caller.actor(),
        &request.reason,
    )
    .await?;
    show(State(state), caller, ApiPath(serial)).await
}

/// Run an available or remediating node's health checks again (technician, admin).
#[utoipa::path(post, path = "/api/v1/nodes/{serial}/retest", params(("serial" = String, Path)), request_body = RetestRequest,
    security(("bearer" = [])), responses((status = 200, body = NodeDetail), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn retest(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(serial): ApiPath<String>,
    ApiJson(request): ApiJson<RetestRequest>,
) -> Result<Json<NodeDetail>, ApiError> {
    let node = visible_node(&state, &caller, &serial).await?;
    caller.require(&[Role::Technician])?;
    kiln_provisioner::lifecycle::retest(
        &state.store,
        &node.serial,
        kiln_provisioner::lifecycle::RetestFrom::from_flags(request.burn_in, request.nccl),
        &caller.actor(),
        &request.reason,
    )
    .await?;
    show(State(state), caller, ApiPath(serial)).await
}
