//! Fleet baselines: per-node figures and per-hall distributions ([`crate::fleet`]).

use super::{Store, get, get_time};
use crate::clock::to_millis;
use crate::error::StoreError;
use crate::fleet::{Distribution, FleetBaseline, FleetOutlier};
use crate::model::NodeId;

/// Baselines of fewer nodes than this are recomputed on every new figure.
pub const EXACT_BELOW: usize = 64;

/// Larger baselines are recomputed when older than this.
pub const REFRESH_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

impl Store {
    /// Records `node`'s latest figure of `metric` (replacing an earlier one), with the hall and SKU the node is
    /// in now, and returns that hall's baseline of the metric for the SKU. The baseline is recomputed while it
    /// is small (fewer than [`EXACT_BELOW`] nodes) or older than [`REFRESH_AFTER`]; a hall of thousands of nodes
    /// does not reread every figure for each new one.
    pub async fn record_node_metric(
        &self,
        node: NodeId,
        metric: &str,
        value: f64,
    ) -> Result<FleetBaseline, StoreError> {
        if !value.is_finite() {
            return Err(StoreError::Invalid(format!(
                "metric {metric} of node {}: {value} is not a finite number",
                node.0
            )));
        }
        let row = sqlx::query(
            "SELECT r.hall_id, n.sku_id FROM nodes n JOIN racks r ON r.id = n.rack_id WHERE n.id = $1",
        )
        .bind(node.0)
        .fetch_optional(&self.read)
        .await
        .map_err(StoreError::db("reading a node's hall"))?
        .ok_or_else(|| StoreError::NodeNotFound(format!("id {}", node.0)))?;
        let hall_id: i64 = get(&row, "hall_id")?;
        let sku: String = get(&row, "sku_id")?;
        let now = to_millis(self.now());
        sqlx::query(
            "INSERT INTO node_metrics (node_id, metric, hall_id, sku, value, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (node_id, metric) DO UPDATE SET hall_id = excluded.hall_id, sku = excluded.sku, \
             value = excluded.value, recorded_at = excluded.recorded_at",
        )
        .bind(node.0)
        .bind(metric)
        .bind(hall_id)
        .bind(&sku)
        .bind(value)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(StoreError::db("recording a node metric"))?;
        let kept = self
            .fleet_baselines(hall_id)
            .await?
            .into_iter()
            .find(|b| b.sku == sku && b.metric == metric);
        match kept {
            Some(baseline)
                if baseline.distribution.nodes >= EXACT_BELOW
                    && self.now() - baseline.updated_at < REFRESH_AFTER =>
            {
                Ok(baseline)
            }
            _ => self.refresh_fleet_baseline(hall_id, &sku, metric).await,
        }
    }

    /// The figures of `metric` of the hall's nodes of `sku`, by serial.
    pub async fn fleet_metrics(
        &self,
        hall_id: i64,
        sku: &str,
        metric: &str,
    ) -> Result<Vec<(String, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.serial, m.value FROM node_metrics m JOIN nodes n ON n.id = m.node_id \
             WHERE m.hall_id = $1 AND m.sku = $2 AND m.metric = $3 ORDER BY n.serial",
        )
        .bind(hall_id)
        .bind(sku)
        .bind(metric)
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("reading node metrics"))?;
        rows.iter()
            .map(|row| Ok((get(row, "serial")?, get(row, "value")?)))
            .collect()
    }

    /// Recomputes and stores the hall's baseline of `metric` for `sku` from the nodes' figures.
    pub async fn refresh_fleet_baseline(
        &self,
        hall_id: i64,
        sku: &str,
        metric: &str,
    ) -> Result<FleetBaseline, StoreError> {
        let values = self.fleet_metrics(hall_id, sku, metric).await?;
        let distribution = Distribution::of(values.into_iter().map(|(_, v)| v).collect())
            .ok_or_else(|| {
                StoreError::Invalid(format!("no figures of {metric} in hall {hall_id}"))
            })?;
        let now = self.now();
        let encoded = serde_json::to_string(&distribution)
            .map_err(|err| StoreError::Invalid(format!("encoding a distribution: {err}")))?;
        sqlx::query(
            "INSERT INTO fleet_baselines (hall_id, sku, metric, distribution, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hall_id, sku, metric) DO UPDATE SET \
             distribution = excluded.distribution, updated_at = excluded.updated_at",
        )
        .bind(hall_id)
        .bind(sku)
        .bind(metric)
        .bind(encoded)
        .bind(to_millis(now))
        .execute(&self.write)
        .await
        .map_err(StoreError::db("storing a fleet baseline"))?;
        Ok(FleetBaseline {
            hall_id,
            sku: sku.to_string(),
            metric: metric.to_string(),
            distribution,
            updated_at: now,
        })
    }

    /// Every baseline kept for a hall, by SKU and metric.
    pub async fn fleet_baselines(&self, hall_id: i64) -> Result<Vec<FleetBaseline>, StoreError> {
        let rows = sqlx::query(
            "SELECT hall_id, sku, metric, distribution, updated_at FROM fleet_baselines \
             WHERE hall_id = $1 ORDER BY sku, metric",
        )
        .bind(hall_id)
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("reading fleet baselines"))?;
        rows.iter().map(baseline_row).collect()
    }

    /// Each figure kept for `node` with the baseline of its hall and SKU it is compared with.
    pub async fn node_fleet_standing(
        &self,
        node: NodeId,
    ) -> Result<Vec<(FleetBaseline, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.value, b.hall_id, b.sku, b.metric, b.distribution, b.updated_at FROM node_metrics m \
             JOIN fleet_baselines b ON b.hall_id = m.hall_id AND b.sku = m.sku AND b.metric = m.metric \
             WHERE m.node_id = $1 ORDER BY m.metric",
        )
        .bind(node.0)
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("reading a node's fleet standing"))?;
        rows.iter()
            .map(|row| Ok((baseline_row(row)?, get(row, "value")?)))
            .collect()
    }

    /// The hall's nodes whose figure is more than `max_shortfall` (0.05 = 5%) below their baseline's median,
    /// for every established baseline ([`FleetBaseline::established`]), worst first.
    pub async fn fleet_outliers(
        &self,
        hall_id: i64,
        max_shortfall: f64,
    ) -> Result<Vec<FleetOutlier>, StoreError> {
        let mut outliers = Vec::new();
        for baseline in self.fleet_baselines(hall_id).await? {
            if !baseline.established() {
                continue;
            }
            for (serial, value) in self
                .fleet_metrics(hall_id, &baseline.sku, &baseline.metric)
                .await?
            {
                let shortfall = baseline.shortfall(value);
                if shortfall > max_shortfall {
                    outliers.push(FleetOutlier {
                        serial,
                        metric: baseline.metric.clone(),
                        value,
                        median: baseline.distribution.p50,
                        shortfall,
                    });
                }
            }
        }
        outliers.sort_by(|a, b| b.shortfall.total_cmp(&a.shortfall));
        Ok(outliers)
    }
}

fn baseline_row(row: &sqlx::any::AnyRow) -> Result<FleetBaseline, StoreError> {
    let text: String = get(row, "distribution")?;
    let distribution = serde_json::from_str(&text).map_err(|err| StoreError::Corrupt {
        what: "fleet baseline distribution".into(),
        detail: err.to_string(),
    })?;
    Ok(FleetBaseline {
        hall_id: get(row, "hall_id")?,
        sku: get(row, "sku")?,
        metric: get(row, "metric")?,
        distribution,
        updated_at: get_time(row, "updated_at")?,
    })
}
