//! Disk erase records: what the node agent reported it did to each disk between two tenants, kept per node in
//! batches (one batch per erase run), so `kiln node show`, the API and the next lease's acceptance record can
//! cite the erase that came before.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::{Store, get, get_time};
use crate::clock::to_millis;
use crate::erase::{EraseRecord, EraseResult, NistClass};
use crate::error::StoreError;
use crate::model::NodeId;

/// One stored erase record with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredEraseRecord {
    /// Database id.
    pub id: i64,
    /// The node's erase run it belongs to, counted from 1; the highest is the latest turnover.
    pub batch: i64,
    /// The lease that had ended when the disks were erased, when known.
    pub lease_id: Option<i64>,
    /// The agent report that carried it, when stored from one.
    pub report_id: Option<i64>,
    /// When kiln stored it.
    pub recorded_at: DateTime<Utc>,
    /// The record as the agent sent it (the erase JSON contract).
    pub record: EraseRecord,
}

const SELECT: &str =
    "SELECT id, batch, lease_id, report_id, recorded_at, record_json FROM erase_records";

fn nist_str(nist: NistClass) -> &'static str {
    match nist {
        NistClass::Clear => "clear",
        NistClass::Purge => "purge",
    }
}

fn decode(row: &AnyRow) -> Result<StoredEraseRecord, StoreError> {
    let id: i64 = get(row, "id")?;
    let text: String = get(row, "record_json")?;
    let record = serde_json::from_str(&text).map_err(|err| StoreError::Corrupt {
        what: format!("erase record {id}"),
        detail: err.to_string(),
    })?;
    Ok(StoredEraseRecord {
        id,
        batch: get(row, "batch")?,
        lease_id: get(row, "lease_id")?,
        report_id: get(row, "report_id")?,
        recorded_at: get_time(row, "recorded_at")?,
        record,
    })
}

impl Store {
    /// Stores one erase run's records for `node` as a new batch and returns the batch number; `None` when
    /// `records` is empty (nothing stored). `lease_id` is the lease that had ended; `report_id` the agent report
    /// that carried the records: recording the same report again stores nothing and returns its batch, so an
    /// engine that handles a report twice (a crash before its transition) does not duplicate the erase.
    pub async fn record_erase(
        &self,
        node: NodeId,
        lease_id: Option<i64>,
        report_id: Option<i64>,
        records: &[EraseRecord],
    ) -> Result<Option<i64>, StoreError> {
        if records.is_empty() {
            return Ok(None);
        }
        let at = to_millis(self.now());
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting to record erase records"))?;
        if let Some(report) = report_id {
            let existing = sqlx::query(
                "SELECT MAX(batch) AS batch FROM erase_records WHERE node_id = $1 AND report_id = $2",
            )
            .bind(node.0)
            .bind(report)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db("looking for a recorded erase report"))?;
            if let Some(batch) = get::<Option<i64>>(&existing, "batch")? {
                return Ok(Some(batch));
            }
        }
        let row = sqlx::query(
            "SELECT COALESCE(MAX(batch), 0) + 1 AS batch FROM erase_records WHERE node_id = $1",
        )
        .bind(node.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::db("numbering an erase batch"))?;
        let batch: i64 = get(&row, "batch")?;
        for record in records {
            let json = serde_json::to_string(record)
                .map_err(|err| StoreError::Invalid(format!("erase record: {err}")))?;
            let result = match record.result {
                EraseResult::Ok => "ok",
                EraseResult::Failed => "failed",
            };
            sqlx::query(
                "INSERT INTO erase_records (node_id, batch, lease_id, report_id, device, method, nist, result, \
                 verified, started_at, finished_at, recorded_at, record_json) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(node.0)
            .bind(batch)
            .bind(lease_id)
            .bind(report_id)
            .bind(&record.device)
            .bind(record.method.map(|m| m.as_str()))
            .bind(record.nist.map(nist_str))
            .bind(result)
            .bind(i64::from(record.verified))
            .bind(to_millis(record.started_at))
            .bind(to_millis(record.finished_at))
            .bind(at)
            .bind(json)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("recording an erase record"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::db("committing erase records"))?;
        Ok(Some(batch))
    }

    /// The node's latest erase run (its latest turnover), one record per device in the order reported; empty
    /// when the node was never erased.
    pub async fn erase_records(&self, node: NodeId) -> Result<Vec<StoredEraseRecord>, StoreError> {
        self.latest_erase_batch(node, None).await
    }

    /// The node's latest erase run stored at or before `at`: the erase that came before a lease that started
    /// at `at`. Empty when there was none (a first lease).
    pub async fn erase_records_before(
        &self,
        node: NodeId,
        at: DateTime<Utc>,
    ) -> Result<Vec<StoredEraseRecord>, StoreError> {
        self.latest_erase_batch(node, Some(at)).await
    }

    async fn latest_erase_batch(
        &self,
        node: NodeId,
        before: Option<DateTime<Utc>>,
    ) -> Result<Vec<StoredEraseRecord>, StoreError> {
        let before = before.map_or(i64::MAX, to_millis);
        let sql = format!(
            "{SELECT} WHERE node_id = $1 AND batch = (SELECT MAX(batch) FROM erase_records \
             WHERE node_id = $1 AND recorded_at <= $2) ORDER BY id"
        );
        let rows = sqlx::query(&sql)
            .bind(node.0)
            .bind(before)
            .fetch_all(&self.read)
            .await
            .map_err(StoreError::db("reading erase records"))?;
        rows.iter().map(decode).collect()
    }

    /// Every erase record of the node, oldest batch first.
    pub async fn erase_history(&self, node: NodeId) -> Result<Vec<StoredEraseRecord>, StoreError> {
        let sql = format!("{SELECT} WHERE node_id = $1 ORDER BY batch, id");
        let rows = sqlx::query(&sql)
            .bind(node.0)
            .fetch_all(&self.read)
            .await
            .map_err(StoreError::db("reading erase history"))?;
        rows.iter().map(decode).collect()
    }

    /// The lease that ended last in the node's hall (the one a node in `wiping` is being erased after): halls
    /// are leased whole, so a released node's lease is its hall's latest released one. `None` when the hall
    /// never had a released lease.
    pub async fn last_released_lease(&self, node: NodeId) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT l.id FROM hall_leases l JOIN racks r ON r.hall_id = l.hall_id \
             JOIN nodes n ON n.rack_id = r.id WHERE n.id = $1 AND l.status = 'released' \
             ORDER BY l.released_at DESC, l.id DESC LIMIT 1",
        )
        .bind(node.0)
        .fetch_optional(&self.read)
        .await
        .map_err(StoreError::db("finding the node's last released lease"))?;
        row.map(|row| get(&row, "id")).transpose()
    }
}
