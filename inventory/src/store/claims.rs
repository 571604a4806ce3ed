//! Expiring work claims for the lifecycle engine: each due node goes to exactly one owner until its claim lapses.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::nodes::{NODE_SELECT, node_from_row};
use super::{Backend, Store, get};
use crate::clock::{from_millis, to_millis};
use crate::error::StoreError;
use crate::model::{Claim, NodeId};

impl Store {
    /// Claims up to `limit` nodes that are due (`next_check_at` has passed, and `due_since` where it is set)
    /// and not claimed by anyone else (or whose claim lapsed), for `lease`, in `next_check_at` order. Concurrent callers never get the same node: PostgreSQL locks the chosen
    /// rows with `FOR UPDATE SKIP LOCKED`; SQLite runs the single statement under its one writer.
    pub async fn claim_due_nodes(
        &self,
        owner: &str,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<Claim>, StoreError> {
        let now = self.now();
        let expires = now + lease;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE nodes SET claimed_by = $1, claim_expires_at = $2 WHERE id IN (\
             SELECT id FROM nodes WHERE next_check_at IS NOT NULL AND next_check_at <= $3 \
             AND (due_since IS NULL OR due_since <= $3) \
             AND (claimed_by IS NULL OR claim_expires_at IS NULL OR claim_expires_at <= $3) \
             ORDER BY next_check_at, id LIMIT $4{lock}) \
             RETURNING id, COALESCE(due_since, next_check_at) AS due"
        );
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(to_millis(expires))
            .bind(to_millis(now))
            .bind(limit.max(0))
            .fetch_all(&self.write)
            .await
            .map_err(StoreError::db("claiming due nodes"))?;
        // Since when each was due (the claim leaves next_check_at as it was).
        let due: HashMap<i64, Option<i64>> = rows
            .iter()
            .map(|row| Ok((get(row, "id")?, get(row, "due")?)))
            .collect::<Result<_, StoreError>>()?;
        let ids: Vec<i64> = due.keys().copied().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${}", i + 1)).collect();
        let sql = format!(
            "{NODE_SELECT} WHERE n.claimed_by = $1 AND n.id IN ({}) ORDER BY n.id",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(owner);
        for id in &ids {
            query = query.bind(*id);
        }
        let rows = query
            .fetch_all(&self.write)
            .await
            .map_err(StoreError::db("reading claimed nodes"))?;
        let now_ms = to_millis(now);
        rows.iter()
            .map(|row| {
                let node = node_from_row(row)?;
                // Never later than now (a clock that stepped back).
                let due_ms = due
                    .get(&node.id.0)
                    .copied()
                    .flatten()
                    .unwrap_or(now_ms)
                    .min(now_ms);
                let due_since = from_millis(due_ms);
                Ok(Claim {
                    node,
                    expires_at: expires,
                    due_since,
                })
            })
            .collect()
    }

    /// Extends `owner`'s claims on `nodes` by `lease` from now; returns the nodes still held (a claim that lapsed
    /// and was taken by another owner is not renewed).
    pub async fn renew_claims(
        &self,
        owner: &str,
        nodes: &[NodeId],
        lease: Duration,
    ) -> Result<Vec<NodeId>, StoreError> {
        let now = self.now();
        let mut renewed = Vec::new();
        // One statement per node keeps the SQL portable; renewals are few and the writer is single.
        for node in nodes {
            let done = sqlx::query(
                "UPDATE nodes SET claim_expires_at = $1 WHERE id = $2 AND claimed_by = $3 AND claim_expires_at > $4",
            )
            .bind(to_millis(now + lease))
            .bind(node.0)
            .bind(owner)
            .bind(to_millis(now))
            .execute(&self.write)
            .await
            .map_err(StoreError::db("renewing a claim"))?;
            if done.rows_affected() == 1 {
                renewed.push(*node);
            }
        }
        Ok(renewed)
    }

    /// Gives up `owner`'s claim on `node` and schedules its next look (`None`: not scheduled). Returns whether
    /// `owner` still held the claim.
    pub async fn release_claim(
        &self,
        owner: &str,
        node: NodeId,
        next_check_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE nodes SET claimed_by = NULL, claim_expires_at = NULL, next_check_at = $1, due_since = NULL \
             WHERE id = $2 AND claimed_by = $3",
        )
        .bind(next_check_at.map(to_millis))
        .bind(node.0)
        .bind(owner)
        .execute(&self.write)
        .await
        .map_err(StoreError::db("releasing a claim"))?;
        Ok(done.rows_affected() == 1)
    }
}
