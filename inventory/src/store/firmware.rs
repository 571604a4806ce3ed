//! Per-node firmware: the latest reading of every component, and its changes as node events.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::events::insert_event;
use super::{Store, get, get_time};
use crate::clock::to_millis;
use crate::error::StoreError;
use crate::model::NodeId;
use kiln_model::FirmwareComponent;

/// A component as the inventory keeps it: the last reading, when it was taken, when the version last changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredFirmware {
    /// The reading.
    #[serde(flatten)]
    pub component: FirmwareComponent,
    /// When it was last read.
    pub seen_at: DateTime<Utc>,
    /// When its version last changed (its first reading, if never).
    pub changed_at: DateTime<Utc>,
}

/// One line of a hall's drift report: how many nodes run `version` of `component`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FirmwareCount {
    /// Component id.
    pub component: String,
    /// Version (`None`: the BMC did not say).
    pub version: Option<String>,
    /// Nodes running it.
    pub nodes: i64,
}

impl Store {
    /// Records a firmware reading of `node`: every component is kept with the time seen; a version that
    /// changed (or the first reading) is a node event by `actor`. Components missing from this reading keep
    /// their last row (a BMC that failed to list one is not a removal). Returns the events' texts.
    pub async fn record_node_firmware(
        &self,
        node: NodeId,
        components: &[FirmwareComponent],
        actor: &str,
    ) -> Result<Vec<String>, StoreError> {
        let at = to_millis(self.now());
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting a firmware record"))?;
        let rows = sqlx::query("SELECT component, version FROM node_firmware WHERE node_id = $1")
            .bind(node.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::db("reading a node's firmware"))?;
        let mut known: HashMap<String, Option<String>> = HashMap::new();
        for row in &rows {
            known.insert(get(row, "component")?, get(row, "version")?);
        }
        let first = known.is_empty();
        let mut changes = Vec::new();
        for c in components {
            let before = known.get(&c.id);
            let changed = before.is_none_or(|v| *v != c.version);
            if let Some(Some(old)) = before.filter(|_| changed) {
                changes.push(format!(
                    "firmware {} changed: {old} → {}",
                    c.id,
                    c.version.as_deref().unwrap_or("unknown")
                ));
            } else if before.is_some() && changed {
                changes.push(format!(
                    "firmware {} now reports {}",
                    c.id,
                    c.version.as_deref().unwrap_or("no version")
                ));
            } else if before.is_none() && !first {
                changes.push(format!(
                    "firmware {} first seen: {}",
                    c.id,
                    c.version.as_deref().unwrap_or("no version")
                ));
            }
            sqlx::query(
                "INSERT INTO node_firmware (node_id, component, name, version, updateable, software_id, source, \
                 seen_at, changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                 ON CONFLICT (node_id, component) DO UPDATE SET name = $3, version = $4, updateable = $5, \
                 software_id = $6, source = $7, seen_at = $8, \
                 changed_at = CASE WHEN $9 = 1 THEN $8 ELSE node_firmware.changed_at END",
            )
            .bind(node.0)
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.version)
            .bind(c.updateable.map(i64::from))
            .bind(&c.software_id)
            .bind(&c.source)
            .bind(at)
            .bind(i64::from(changed))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("recording a node's firmware"))?;
        }
        if first && !components.is_empty() {
            let listed: Vec<String> = components
                .iter()
                .map(|c| format!("{} {}", c.id, c.version.as_deref().unwrap_or("?")))
                .collect();
            changes.push(format!("firmware inventory read: {}", listed.join(", ")));
        }
        for change in &changes {
            insert_event(&mut tx, node, at, actor, None, None, change).await?;
        }
        tx.commit()
            .await
            .map_err(StoreError::db("committing a firmware record"))?;
        Ok(changes)
    }

    /// A node's firmware, by component id.
    pub async fn node_firmware(&self, node: NodeId) -> Result<Vec<StoredFirmware>, StoreError> {
        let rows = sqlx::query(
            "SELECT component, name, version, updateable, software_id, source, seen_at, changed_at \
             FROM node_firmware WHERE node_id = $1 ORDER BY component",
        )
        .bind(node.0)
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("reading a node's firmware"))?;
        rows.iter()
            .map(|row| {
                Ok(StoredFirmware {
                    component: FirmwareComponent {
                        id: get(row, "component")?,
                        name: get(row, "name")?,
                        version: get(row, "version")?,
                        updateable: get::<Option<i64>>(row, "updateable")?.map(|v| v != 0),
                        software_id: get(row, "software_id")?,
                        manufacturer: None,
                        health: None,
                        source: get(row, "source")?,
                    },
                    seen_at: get_time(row, "seen_at")?,
                    changed_at: get_time(row, "changed_at")?,
                })
            })
            .collect()
    }

    /// The drift report of a hall (every hall with `None`): nodes per component and version.
    pub async fn firmware_counts(
        &self,
        hall: Option<&str>,
    ) -> Result<Vec<FirmwareCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.component, f.version, COUNT(*) AS nodes FROM node_firmware f \
             JOIN nodes n ON n.id = f.node_id JOIN racks r ON r.id = n.rack_id JOIN halls h ON h.id = r.hall_id \
             WHERE ($1 IS NULL OR h.name = $1) GROUP BY f.component, f.version ORDER BY f.component, f.version",
        )
        .bind(hall)
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("counting firmware versions"))?;
        rows.iter()
            .map(|row| {
                Ok(FirmwareCount {
                    component: get(row, "component")?,
                    version: get(row, "version")?,
                    nodes: get(row, "nodes")?,
                })
            })
            .collect()
    }
}
