//! Halls with node counts, and the SKU catalog.

use std::collections::BTreeMap;

use super::{Store, get, get_parsed};
use crate::error::StoreError;
use crate::model::{HallSummary, Sku};
use crate::state::NodeState;

impl Store {
    /// Every hall with its rack and node counts, by site then name.
    pub async fn list_halls(&self) -> Result<Vec<HallSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT h.id, s.name AS site, h.name, (SELECT COUNT(*) FROM racks r WHERE r.hall_id = h.id) AS racks \
             FROM halls h JOIN sites s ON s.id = h.site_id ORDER BY s.name, h.name",
        )
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("listing halls"))?;
        let counts = sqlx::query(
            "SELECT r.hall_id, n.state, n.drained, COUNT(*) AS nodes FROM nodes n JOIN racks r ON r.id = n.rack_id \
             GROUP BY r.hall_id, n.state, n.drained",
        )
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("counting nodes per hall"))?;
        // Per hall: nodes per state, and the available ones that are drained (not counted as available).
        let mut per_hall: BTreeMap<i64, (BTreeMap<NodeState, i64>, i64)> = BTreeMap::new();
        for row in &counts {
            let hall: i64 = get(row, "hall_id")?;
            let state: NodeState = get_parsed(row, "state")?;
            let drained = get::<i64>(row, "drained")? != 0;
            let nodes: i64 = get(row, "nodes")?;
            let (states, drained_count) = per_hall.entry(hall).or_default();
            if drained && state == NodeState::Available {
                *drained_count += nodes;
            } else {
                *states.entry(state).or_default() += nodes;
            }
        }
        rows.iter()
            .map(|row| {
                let id: i64 = get(row, "id")?;
                let (states, drained) = per_hall.remove(&id).unwrap_or_default();
                Ok(HallSummary {
                    id,
                    site: get(row, "site")?,
                    name: get(row, "name")?,
                    racks: get(row, "racks")?,
                    nodes: states.values().sum::<i64>() + drained,
                    states,
                    drained,
                })
            })
            .collect()
    }

    /// One hall with its counts.
    pub async fn hall(&self, id: i64) -> Result<HallSummary, StoreError> {
        self.list_halls()
            .await?
            .into_iter()
            .find(|hall| hall.id == id)
            .ok_or_else(|| StoreError::HallNotFound(format!("id {id}")))
    }

    /// The hall with this name (in any site; the first by site name when several sites use it).
    pub async fn hall_by_name(&self, name: &str) -> Result<HallSummary, StoreError> {
        self.list_halls()
            .await?
            .into_iter()
            .find(|hall| hall.name == name)
            .ok_or_else(|| StoreError::HallNotFound(name.to_string()))
    }

    /// The SKUs kiln can verify.
    pub async fn list_skus(&self) -> Result<Vec<Sku>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, description, gpu_count, gpu_model, gpu_memory_gib FROM skus ORDER BY id",
        )
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("listing SKUs"))?;
        rows.iter()
            .map(|row| {
                Ok(Sku {
                    id: get(row, "id")?,
                    description: get(row, "description")?,
                    gpu_count: get(row, "gpu_count")?,
                    gpu_model: get(row, "gpu_model")?,
                    gpu_memory_gib: get(row, "gpu_memory_gib")?,
                })
            })
            .collect()
    }
}
