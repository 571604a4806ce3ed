//! Health runs and their evidence.

use chrono::{DateTime, Utc};

use super::{Store, get, get_json, get_opt_time, get_time};
use crate::clock::to_millis;
use crate::error::StoreError;
use crate::model::{HealthRun, NodeId};

/// A health run to record.
#[derive(Debug, Clone)]
pub struct NewHealthRun<'a> {
    /// The node checked.
    pub node: NodeId,
    /// Which check: `nvml`, `burn_in`, `nccl`, ...
    pub kind: &'a str,
    /// The verdict.
    pub passed: bool,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
    /// Measured values, thresholds, tool output.
    pub evidence: &'a serde_json::Value,
}

impl Store {
    /// Stores a health run; returns its id.
    pub async fn record_health_run(&self, run: &NewHealthRun<'_>) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO health_runs (node_id, kind, passed, started_at, finished_at, evidence) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(run.node.0)
        .bind(run.kind)
        .bind(i64::from(run.passed))
        .bind(to_millis(run.started_at))
        .bind(run.finished_at.map(to_millis))
        .bind(run.evidence.to_string())
        .fetch_one(&self.write)
        .await
        .map_err(StoreError::db("recording a health run"))?;
        get(&row, "id")
    }

    /// A node's health runs, oldest first.
    pub async fn health_runs(&self, node: NodeId) -> Result<Vec<HealthRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, node_id, kind, passed, started_at, finished_at, evidence FROM health_runs \
             WHERE node_id = $1 ORDER BY id",
        )
        .bind(node.0)
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("reading health runs"))?;
        rows.iter()
            .map(|row| {
                Ok(HealthRun {
                    id: get(row, "id")?,
                    node_id: NodeId(get(row, "node_id")?),
                    kind: get(row, "kind")?,
                    passed: get::<i64>(row, "passed")? != 0,
                    started_at: get_time(row, "started_at")?,
                    finished_at: get_opt_time(row, "finished_at")?,
                    evidence: get_json(row, "evidence", "health run evidence")?,
                })
            })
            .collect()
    }
}

impl Store {
    /// For each node, the kinds of health check whose latest run failed.
    pub async fn failing_health_checks(
        &self,
    ) -> Result<std::collections::HashMap<NodeId, Vec<String>>, StoreError> {
        let rows = sqlx::query(
            "SELECT h.node_id, h.kind FROM health_runs h WHERE h.passed = 0 AND h.id = \
             (SELECT MAX(l.id) FROM health_runs l WHERE l.node_id = h.node_id AND l.kind = h.kind) \
             ORDER BY h.node_id, h.kind",
        )
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("reading failing health checks"))?;
        let mut failing: std::collections::HashMap<NodeId, Vec<String>> =
            std::collections::HashMap::new();
        for row in &rows {
            failing
                .entry(NodeId(get(row, "node_id")?))
                .or_default()
                .push(get(row, "kind")?);
        }
        Ok(failing)
    }
}
