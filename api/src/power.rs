//! Power actions on an inventory node through its BMC (kiln-bmc), recorded in the node's history; and the one
//! way kiln connects to an inventory node's BMC (address, protocol, credentials opened with the site key, pinned
//! certificate with trust on first use), shared by the API and `kiln bmc --node`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use kiln_bmc::target::ConnectOptions;
use kiln_bmc::{BmcError, PowerAction};
use kiln_inventory::{Node, Role, SecretError, Store, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::nodes::visible_node;

/// Limit for each BMC request made on behalf of an API call.
const BMC_TIMEOUT: Duration = Duration::from_secs(10);

/// A power action a technician may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodePower {
    /// Power on.
    On,
    /// Cut power now.
    Off,
    /// Power off, then on.
    Cycle,
}

impl NodePower {
    /// The BMC action it maps to.
    pub fn bmc_action(self) -> PowerAction {
        match self {
            NodePower::On => PowerAction::On,
            NodePower::Off => PowerAction::ForceOff,
            NodePower::Cycle => PowerAction::Cycle,
        }
    }

    /// `on`, `off` or `cycle`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodePower::On => "on",
            NodePower::Off => "off",
            NodePower::Cycle => "cycle",
        }
    }
}

/// Body of `POST /api/v1/nodes/{serial}/power`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerRequest {
    /// `on`, `off` or `cycle`.
    pub action: NodePower,
}

/// Answer to a power action.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PowerResult {
    /// The node.
    pub serial: String,
    /// What was done.
    pub action: NodePower,
    /// Power state the BMC reports afterwards (`On`, `Off`, `PoweringOn`, `PoweringOff`).
    pub power_state: String,
}

pub use kiln_provisioner::lifecycle::{NodeBmcError, connect_node};

impl From<NodeBmcError> for ApiError {
    fn from(err: NodeBmcError) -> Self {
        match err {
            NodeBmcError::Store(StoreError::Secret(SecretError::Missing { .. })) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_site_key",
                "the server has no site key to open BMC passwords (start kiln serve with --key-file)",
            ),
            NodeBmcError::Store(err) => err.into(),
            NodeBmcError::Bmc(err) => bmc_error(&err),
        }
    }
}

/// 502 with the BMC's failure in words (never its credentials).
fn bmc_error(err: &BmcError) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "bmc_error",
        format!("{err}; transient: {}", err.is_transient()),
    )
}

/// Runs `action` on `node`'s BMC, records it in the node's history, and reads the power state back.
pub async fn power_node(
    store: &Store,
    node: &Node,
    action: NodePower,
    actor: &str,
) -> Result<PowerResult, ApiError> {
    let options = ConnectOptions {
        request_timeout: BMC_TIMEOUT,
    };
    let (bmc, _) = connect_node(store, node, false, options).await?;
    let outcome = async {
        bmc.set_power(action.bmc_action()).await?;
        bmc.power_state().await
    }
    .await;
    bmc.close().await;
    let note = match &outcome {
        Ok(state) => format!("power {}: BMC reports {state}", action.as_str()),
        Err(err) => format!("power {} failed: {err}", action.as_str()),
    };
    store.record_event(node.id, actor, &note).await?;
    let state = outcome.map_err(|err| bmc_error(&err))?;
    tracing::info!(node = %node.serial, action = action.as_str(), %state, actor, "power action");
    Ok(PowerResult {
        serial: node.serial.clone(),
        action,
        power_state: state.to_string(),
    })
}

/// Power a node on, off or cycle it through its BMC (technician, admin).
#[utoipa::path(post, path = "/api/v1/nodes/{serial}/power", params(("serial" = String, Path)),
    request_body = PowerRequest, security(("bearer" = [])),
    responses((status = 200, body = PowerResult), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 502, description = "the BMC failed or did not answer", body = ErrorBody)))]
pub async fn power(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(serial): ApiPath<String>,
    ApiJson(request): ApiJson<PowerRequest>,
) -> Result<Json<PowerResult>, ApiError> {
    let node = visible_node(&state, &caller, &serial).await?;
    caller.require(&[Role::Technician])?;
    Ok(Json(
        power_node(&state.store, &node, request.action, &caller.actor()).await?,
    ))
}
