//! `/api/v1/halls` and `/api/v1/map`: halls with counts, and the hall map's data.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use kiln_inventory::{HallSummary, NodeFilter, NodeState};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;

/// Halls visible to the caller.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct HallList {
    /// Halls with node counts per state.
    pub halls: Vec<HallSummary>,
}

/// Halls → racks → nodes, for the hall map.
#[derive(Debug, Serialize, ToSchema)]
pub struct HallMap {
    /// Halls the caller may see.
    pub halls: Vec<MapHall>,
}

/// A hall on the map.
#[derive(Debug, Serialize, ToSchema)]
pub struct MapHall {
    /// Site name.
    pub site: String,
    /// Hall name.
    pub name: String,
    /// Racks by name.
    pub racks: Vec<MapRack>,
}

/// A rack on the map.
#[derive(Debug, Serialize, ToSchema)]
pub struct MapRack {
    /// Rack name.
    pub name: String,
    /// Nodes by slot.
    pub nodes: Vec<MapNode>,
}

/// A node on the map.
#[derive(Debug, Serialize, ToSchema)]
pub struct MapNode {
    /// Serial.
    pub serial: String,
    /// Slot.
    pub slot: i64,
    /// State.
    pub state: NodeState,
    /// Out of allocation.
    pub drained: bool,
    /// Health checks whose latest run failed.
    pub failing_checks: Vec<String>,
}

/// The halls a lessee may see: those of its active leases.
async fn lessee_halls(state: &ApiState, caller: &Caller) -> Result<Option<Vec<i64>>, ApiError> {
    match &caller.0.lessee {
        Some((lessee_id, _)) if caller.lessee().is_some() => {
            let leases = state.store.list_leases(Some(*lessee_id)).await?;
            Ok(Some(
                leases
                    .into_iter()
                    .filter(|l| l.status == "active")
                    .map(|l| l.hall_id)
                    .collect(),
            ))
        }
        _ if caller.lessee().is_some() => Ok(Some(Vec::new())),
        _ => Ok(None),
    }
}

/// List halls.
#[utoipa::path(get, path = "/api/v1/halls", security(("bearer" = [])), responses((status = 200, body = HallList)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<HallList>, ApiError> {
    let mut halls = state.store.list_halls().await?;
    if let Some(visible) = lessee_halls(&state, &caller).await? {
        halls.retain(|hall| visible.contains(&hall.id));
    }
    Ok(Json(HallList { halls }))
}

/// One hall.
#[utoipa::path(get, path = "/api/v1/halls/{id}", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = HallSummary), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<HallSummary>, ApiError> {
    if let Some(visible) = lessee_halls(&state, &caller).await?
        && !visible.contains(&id)
    {
        return Err(ApiError::not_found(format!("hall id {id}")));
    }
    Ok(Json(state.store.hall(id).await?))
}

/// Halls → racks → nodes with states and failing checks (the hall map's data).
#[utoipa::path(get, path = "/api/v1/map", security(("bearer" = [])), responses((status = 200, body = HallMap)))]
pub async fn map(State(state): State<ApiState>, caller: Caller) -> Result<Json<HallMap>, ApiError> {
    let filter = NodeFilter {
        lessee: caller.lessee().map(str::to_string),
        ..NodeFilter::default()
    };
    let nodes = state.store.list_nodes(&filter).await?;
    let failing = state.store.failing_health_checks().await?;
    let mut halls: BTreeMap<(String, String), BTreeMap<String, Vec<MapNode>>> = BTreeMap::new();
    for node in nodes {
        let failing_checks = failing.get(&node.id).cloned().unwrap_or_default();
        halls
            .entry((node.site.clone(), node.hall.clone()))
            .or_default()
            .entry(node.rack.clone())
            .or_default()
            .push(MapNode {
                serial: node.serial,
                slot: node.slot,
                state: node.state,
                drained: node.drained,
                failing_checks,
            });
    }
    let halls = halls
        .into_iter()
        .map(|((site, name), racks)| MapHall {
            site,
            name,
            racks: racks
                .into_iter()
                .map(|(name, mut nodes)| {
                    nodes.sort_by_key(|n| n.slot);
                    MapRack { name, nodes }
                })
                .collect(),
        })
        .collect();
    Ok(Json(HallMap { halls }))
}
