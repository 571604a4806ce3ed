//! What kiln last saw of each node's BMC: reachability, the last power state read and when (written by
//! `kiln bmc sweep`, shown by `kiln node show`). Observations only: the node's lifecycle state is not touched.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Store, get, get_opt_time, get_parsed, get_time};
use crate::clock::to_millis;
use crate::error::StoreError;
use crate::model::NodeId;

/// A server's power state as its BMC reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservedPower {
    /// Powered on.
    On,
    /// Powered off.
    Off,
    /// Powering on.
    PoweringOn,
    /// Powering off.
    PoweringOff,
}

impl ObservedPower {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ObservedPower::On => "on",
            ObservedPower::Off => "off",
            ObservedPower::PoweringOn => "powering_on",
            ObservedPower::PoweringOff => "powering_off",
        }
    }
}

impl std::fmt::Display for ObservedPower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ObservedPower {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "on" => Ok(ObservedPower::On),
            "off" => Ok(ObservedPower::Off),
            "powering_on" => Ok(ObservedPower::PoweringOn),
            "powering_off" => Ok(ObservedPower::PoweringOff),
            other => Err(format!("unknown power state {other:?}")),
        }
    }
}

/// What one attempt to reach a node's BMC found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BmcObservation {
    /// The BMC answered with this power state.
    Power(ObservedPower),
    /// The power state could not be read.
    Failed {
        /// Whether the BMC answered at all (a refusal, e.g. of the credentials, is an answer; a timeout or a
        /// refused connection is not).
        reachable: bool,
        /// The error kind (`timeout`, `auth`, ...).
        kind: String,
        /// The error, as text (it names the BMC, never its credentials).
        error: String,
    },
}

/// The last observations of a node's BMC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BmcStatus {
    /// The node.
    pub node_id: NodeId,
    /// Whether the BMC answered the last attempt (see [`BmcObservation::Failed`]).
    pub reachable: bool,
    /// The last power state read (kept when later attempts fail).
    pub power_state: Option<ObservedPower>,
    /// When that power state was read.
    pub power_seen_at: Option<DateTime<Utc>>,
    /// When the BMC was last tried.
    pub checked_at: DateTime<Utc>,
    /// The last attempt's error kind, when it failed.
    pub error_kind: Option<String>,
    /// The last attempt's error, when it failed.
    pub error: Option<String>,
}

/// Longest error text kept per node.
const MAX_ERROR_CHARS: usize = 500;

impl Store {
    /// Records what a sweep saw of many nodes' BMCs, in one transaction, at the store clock's "now". A failed
    /// attempt records its error and keeps the last power state seen and when.
    pub async fn record_bmc_observations(
        &self,
        observations: &[(NodeId, BmcObservation)],
    ) -> Result<(), StoreError> {
        let now = to_millis(self.now());
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting a BMC observation write"))?;
        for (node, observation) in observations {
            let query = match observation {
                BmcObservation::Power(power) => sqlx::query(
                    "INSERT INTO bmc_observations \
                     (node_id, reachable, power_state, power_seen_at, checked_at, error_kind, error) \
                     VALUES ($1, 1, $2, $3, $3, NULL, NULL) \
                     ON CONFLICT (node_id) DO UPDATE SET reachable = 1, \
                     power_state = excluded.power_state, power_seen_at = excluded.power_seen_at, \
                     checked_at = excluded.checked_at, error_kind = NULL, error = NULL",
                )
                .bind(node.0)
                .bind(power.as_str())
                .bind(now),
                BmcObservation::Failed {
                    reachable,
                    kind,
                    error,
                } => sqlx::query(
                    "INSERT INTO bmc_observations (node_id, reachable, checked_at, error_kind, error) \
                     VALUES ($1, $5, $2, $3, $4) \
                     ON CONFLICT (node_id) DO UPDATE SET reachable = excluded.reachable, \
                     checked_at = excluded.checked_at, error_kind = excluded.error_kind, \
                     error = excluded.error",
                )
                .bind(node.0)
                .bind(now)
                .bind(kind.clone())
                .bind(error.chars().take(MAX_ERROR_CHARS).collect::<String>())
                .bind(i64::from(*reachable)),
            };
            query
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("recording a BMC observation"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::db("committing BMC observations"))
    }

    /// The last observations of a node's BMC; `None` if it was never swept.
    pub async fn bmc_status(&self, node: NodeId) -> Result<Option<BmcStatus>, StoreError> {
        let row = sqlx::query(
            "SELECT node_id, reachable, power_state, power_seen_at, checked_at, error_kind, error \
             FROM bmc_observations WHERE node_id = $1",
        )
        .bind(node.0)
        .fetch_optional(&self.read)
        .await
        .map_err(StoreError::db("reading a BMC observation"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let power_state = match get::<Option<String>>(&row, "power_state")? {
            Some(_) => Some(get_parsed(&row, "power_state")?),
            None => None,
        };
        Ok(Some(BmcStatus {
            node_id: NodeId(get(&row, "node_id")?),
            reachable: get::<i64>(&row, "reachable")? != 0,
            power_state,
            power_seen_at: get_opt_time(&row, "power_seen_at")?,
            checked_at: get_time(&row, "checked_at")?,
            error_kind: get(&row, "error_kind")?,
            error: get(&row, "error")?,
        }))
    }
}
