//! Firmware reads: a node's components as last read from its BMC, and the drift report (nodes per component and
//! version) of a hall or the whole site.

use axum::Json;
use axum::extract::State;
use kiln_inventory::{FirmwareCount, Role, StoredFirmware};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::nodes::visible_node;
use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};

/// A node's firmware.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeFirmware {
    /// The node's serial.
    pub serial: String,
    /// Every component, by id.
    pub components: Vec<StoredFirmware>,
}

/// Query of `GET /api/v1/firmware`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DriftQuery {
    /// Only this hall.
    pub hall: Option<String>,
}

/// Nodes per component and version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FirmwareDrift {
    /// The hall asked for (`None`: the whole site).
    pub hall: Option<String>,
    /// One line per component and version, by component then version.
    pub versions: Vec<FirmwareCount>,
}

/// A node's firmware components as last read from its BMC.
#[utoipa::path(get, path = "/api/v1/nodes/{serial}/firmware", params(("serial" = String, Path)),
    security(("bearer" = [])), responses((status = 200, body = NodeFirmware), (status = 404, body = ErrorBody)))]
pub async fn node(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<NodeFirmware>, ApiError> {
    let node = visible_node(&state, &caller, &serial).await?;
    Ok(Json(NodeFirmware {
        serial: node.serial,
        components: state.store.node_firmware(node.id).await?,
    }))
}

/// The firmware drift report: nodes per component and version (technician, pipeline, admin).
#[utoipa::path(get, path = "/api/v1/firmware", params(DriftQuery),
    security(("bearer" = [])), responses((status = 200, body = FirmwareDrift), (status = 403, body = ErrorBody)))]
pub async fn drift(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DriftQuery>,
) -> Result<Json<FirmwareDrift>, ApiError> {
    caller.require(&[Role::Technician, Role::Pipeline])?;
    let versions = state.store.firmware_counts(query.hall.as_deref()).await?;
    Ok(Json(FirmwareDrift {
        hall: query.hall,
        versions,
    }))
}
