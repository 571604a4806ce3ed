//! Hall leasing: all counted nodes of a hall move under a lease in one transaction, or nothing changes; release
//! sends them to wiping; a failing leased node can be swapped for a spare. Every step is in the lease history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Store, get, get_json, get_time};
use crate::access::AcceptanceRule;
use crate::clock::to_millis;
use crate::error::StoreError;
use crate::model::{HallLease, NodeId};
use crate::state::NodeState;

/// What leasing a hall did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseOutcome {
    /// The new lease.
    pub lease: HallLease,
    /// Nodes moved to `leased`.
    pub nodes_leased: i64,
    /// Nodes in the hall.
    pub nodes_total: i64,
    /// Nodes the lessee is owed (the hall's nodes not yet verified).
    pub nodes_owed: i64,
}

/// One line of a lease's history.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseEvent {
    /// Database id.
    pub id: i64,
    /// The lease.
    pub lease_id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// `leased`, `released`, `swap`.
    pub kind: String,
    /// Details (JSON).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl Store {
    /// Leases hall `hall_id` to `lessee_id`: every available, undrained node of the hall moves to `leased` under
    /// the new lease in one transaction, provided `rule` accepts the count; otherwise nothing changes and the
    /// error lists the shortfall. Of two concurrent attempts on one hall, exactly one wins.
    pub async fn lease_hall(
        &self,
        hall_id: i64,
        lessee_id: i64,
        starts_at: DateTime<Utc>,
        ends_at: Option<DateTime<Utc>>,
        rule: AcceptanceRule,
        actor: &str,
    ) -> Result<LeaseOutcome, StoreError> {
        let hall = self.hall(hall_id).await?;
        let rule_json =
            serde_json::to_value(rule).map_err(|err| StoreError::Invalid(err.to_string()))?;
        let at = to_millis(self.now());
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting a lease"))?;
        // The lease row first: the one-active-lease-per-hall index makes a concurrent attempt fail here.
        let inserted = sqlx::query(
            "INSERT INTO hall_leases (hall_id, lessee_id, starts_at, ends_at, acceptance, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'active', $6) RETURNING id",
        )
        .bind(hall_id)
        .bind(lessee_id)
        .bind(to_millis(starts_at))
        .bind(ends_at.map(to_millis))
        .bind(rule_json.to_string())
        .bind(at)
        .fetch_one(&mut *tx)
        .await;
        let lease_id: i64 = match inserted {
            Ok(row) => get(&row, "id")?,
            Err(err) if is_unique_violation(&err) => {
                return Err(StoreError::HallAlreadyLeased { hall: hall.name });
            }
            Err(source) => {
                return Err(StoreError::Database {
                    op: "creating a hall lease",
                    source,
                });
            }
        };
        let leased = sqlx::query(
            "UPDATE nodes SET state = 'leased', lease_id = $1, version = version + 1, state_entered_at = $2, \
             updated_at = $2, next_check_at = NULL, due_since = NULL \
             WHERE state = 'available' AND drained = 0 AND rack_id IN (SELECT id FROM racks WHERE hall_id = $3)",
        )
        .bind(lease_id)
        .bind(at)
        .bind(hall_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("moving nodes under a lease"))?
        .rows_affected() as i64;
        if !rule.accepts(leased, hall.nodes) {
            drop(tx);
            let shortfall = self.lease_shortfall(hall_id).await?;
            return Err(StoreError::LeaseRefused {
                hall: hall.name,
                verified: leased,
                total: hall.nodes,
                required: rule.required(hall.nodes),
                shortfall,
            });
        }
        sqlx::query(
            "INSERT INTO node_events (node_id, at, actor, from_state, to_state, reason) \
             SELECT id, $1, $2, 'available', 'leased', $3 FROM nodes WHERE lease_id = $4 AND state = 'leased'",
        )
        .bind(at)
        .bind(actor)
        .bind(format!("hall {} leased (lease {lease_id})", hall.name))
        .bind(lease_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("recording lease events"))?;
        let owed = hall.nodes - leased;
        let detail = serde_json::json!({"nodes_leased": leased, "nodes_total": hall.nodes, "nodes_owed": owed});
        insert_lease_event(&mut tx, lease_id, at, actor, "leased", &detail).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a lease"))?;
        tracing::info!(hall = %hall.name, lease = lease_id, nodes = leased, actor, "hall leased");
        let lease = self.lease(lease_id).await?;
        Ok(LeaseOutcome {
            lease,
            nodes_leased: leased,
            nodes_total: hall.nodes,
            nodes_owed: owed,
        })
    }

    /// The hall's nodes that are not available for leasing, as `serial (state[, drained])`.
    async fn lease_shortfall(&self, hall_id: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.serial, n.state, n.drained FROM nodes n JOIN racks r ON r.id = n.rack_id \
             WHERE r.hall_id = $1 AND (n.state <> 'available' OR n.drained <> 0) ORDER BY n.serial",
        )
        .bind(hall_id)
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("listing a hall's shortfall"))?;
        rows.iter()
            .map(|row| {
                let serial: String = get(row, "serial")?;
                let state: String = get(row, "state")?;
                let drained = get::<i64>(row, "drained")? != 0;
                Ok(if drained {
                    format!("{serial} ({state}, drained)")
                } else {
                    format!("{serial} ({state})")
                })
            })
            .collect()
    }

    /// Ends an active lease: its leased nodes go to `wiping` (erase, reimage, re-verify) in one transaction.
    /// Returns how many nodes were sent to wiping.
    pub async fn release_lease(&self, lease_id: i64, actor: &str) -> Result<i64, StoreError> {
        let at = to_millis(self.now());
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting a release"))?;
        let ended = sqlx::query(
            "UPDATE hall_leases SET status = 'released', released_at = $1 WHERE id = $2 AND status = 'active'",
        )
        .bind(at)
        .bind(lease_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("ending a lease"))?;
        if ended.rows_affected() == 0 {
            drop(tx);
            // Tell a missing lease from one already released.
            self.lease(lease_id).await?;
            return Err(StoreError::LeaseNotActive(lease_id));
        }
        // The serials go into the release event so release progress can follow exactly these nodes.
        let released: Vec<String> = sqlx::query(
            "SELECT serial FROM nodes WHERE lease_id = $1 AND state = 'leased' ORDER BY serial",
        )
        .bind(lease_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::db("listing a lease's nodes"))?
        .iter()
        .map(|row| get(row, "serial"))
        .collect::<Result<_, _>>()?;
        sqlx::query(
            "INSERT INTO node_events (node_id, at, actor, from_state, to_state, reason) \
             SELECT id, $1, $2, 'leased', 'wiping', $3 FROM nodes WHERE lease_id = $4 AND state = 'leased'",
        )
        .bind(at)
        .bind(actor)
        .bind(format!("lease {lease_id} released"))
        .bind(lease_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("recording release events"))?;
        let wiping = sqlx::query(
            "UPDATE nodes SET state = 'wiping', lease_id = NULL, version = version + 1, state_entered_at = $1, \
             updated_at = $1, next_check_at = $1, due_since = NULL WHERE lease_id = $2 AND state = 'leased'",
        )
        .bind(at)
        .bind(lease_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("sending leased nodes to wiping"))?
        .rows_affected() as i64;
        // Nodes of the lease that were already out (remediating) leave it too.
        sqlx::query("UPDATE nodes SET lease_id = NULL WHERE lease_id = $1")
            .bind(lease_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("detaching nodes from a lease"))?;
        insert_lease_event(
            &mut tx,
            lease_id,
            at,
            actor,
            "released",
            &serde_json::json!({"nodes_wiping": wiping, "serials": released}),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a release"))?;
        tracing::info!(lease = lease_id, nodes = wiping, actor, "lease released");
        Ok(wiping)
    }

    /// Replaces a failing leased node with a spare (an available, undrained node of the same hall; the first one
    /// when `spare` is `None`). The failing node goes to remediation; both moves and the swap are recorded.
    /// Returns the spare's id.
    pub async fn swap_leased_node(
        &self,
        lease_id: i64,
        failing: NodeId,
        spare: Option<NodeId>,
        actor: &str,
        reason: &str,
    ) -> Result<NodeId, StoreError> {
        let lease = self.lease(lease_id).await?;
        if lease.status != "active" {
            return Err(StoreError::LeaseNotActive(lease_id));
        }
        let failing_node = self.node(failing).await?;
        if failing_node.lease_id != Some(lease_id) || failing_node.state != NodeState::Leased {
            return Err(StoreError::Invalid(format!(
                "node {} is not a leased node of lease {lease_id}",
                failing_node.serial
            )));
        }
        let hall_nodes = self
            .list_nodes(&crate::NodeFilter {
                hall: Some(failing_node.hall.clone()),
                ..Default::default()
            })
            .await?;
        let spare_node = hall_nodes
            .into_iter()
            .filter(|n| {
                n.site == failing_node.site && n.state == NodeState::Available && !n.drained
            })
            .find(|n| spare.is_none_or(|wanted| wanted == n.id))
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "no available spare node in hall {}",
                    failing_node.hall
                ))
            })?;
        let at = to_millis(self.now());
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting a swap"))?;
        for (node, from, to, lease, note) in [
            (
                failing,
                NodeState::Leased,
                NodeState::Remediating,
                None,
                format!("swapped out of lease {lease_id}: {reason}"),
            ),
            (
                spare_node.id,
                NodeState::Available,
                NodeState::Leased,
                Some(lease_id),
                format!("spare swapped into lease {lease_id}"),
            ),
        ] {
            let moved = sqlx::query(
                "UPDATE nodes SET state = $1, lease_id = $2, version = version + 1, state_entered_at = $3, \
                 updated_at = $3, next_check_at = $4, due_since = NULL WHERE id = $5 AND state = $6",
            )
            .bind(to.as_str())
            .bind(lease)
            .bind(at)
            .bind(to.is_active().then_some(at))
            .bind(node.0)
            .bind(from.as_str())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("swapping a leased node"))?;
            if moved.rows_affected() == 0 {
                return Err(StoreError::Invalid(format!(
                    "node {node} changed state during the swap; nothing changed"
                )));
            }
            super::events::insert_event(&mut tx, node, at, actor, Some(from), Some(to), &note)
                .await?;
        }
        let detail = serde_json::json!({"out": failing_node.serial, "in": spare_node.serial, "reason": reason});
        insert_lease_event(&mut tx, lease_id, at, actor, "swap", &detail).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a swap"))?;
        Ok(spare_node.id)
    }

    /// Takes a node out of allocation (or puts it back); recorded in its history.
    pub async fn set_drained(
        &self,
        node: NodeId,
        drained: bool,
        actor: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let at = to_millis(self.now());
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting a drain"))?;
        let done = sqlx::query(
            "UPDATE nodes SET drained = $1, updated_at = $2, version = version + 1 WHERE id = $3",
        )
        .bind(i64::from(drained))
        .bind(at)
        .bind(node.0)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("draining a node"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NodeNotFound(format!("with id {node}")));
        }
        let note = if drained {
            format!("drained: {reason}")
        } else {
            format!("undrained: {reason}")
        };
        super::events::insert_event(&mut tx, node, at, actor, None, None, &note).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a drain"))
    }

    /// A lease's history, oldest first.
    pub async fn lease_events(&self, lease_id: i64) -> Result<Vec<LeaseEvent>, StoreError> {
        let rows = sqlx::query("SELECT id, lease_id, at, actor, kind, detail FROM lease_events WHERE lease_id = $1 ORDER BY id")
            .bind(lease_id)
            .fetch_all(&self.read)
            .await
            .map_err(StoreError::db("reading lease events"))?;
        rows.iter()
            .map(|row| {
                Ok(LeaseEvent {
                    id: get(row, "id")?,
                    lease_id: get(row, "lease_id")?,
                    at: get_time(row, "at")?,
                    actor: get(row, "actor")?,
                    kind: get(row, "kind")?,
                    detail: get_json(row, "detail", "lease event")?,
                })
            })
            .collect()
    }
}

async fn insert_lease_event(
    conn: &mut sqlx::AnyConnection,
    lease_id: i64,
    at: i64,
    actor: &str,
    kind: &str,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO lease_events (lease_id, at, actor, kind, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(lease_id)
    .bind(at)
    .bind(actor)
    .bind(kind)
    .bind(detail.to_string())
    .execute(&mut *conn)
    .await
    .map_err(StoreError::db("recording a lease event"))?;
    Ok(())
}
