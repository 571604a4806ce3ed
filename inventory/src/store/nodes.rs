//! Nodes: lookup, listing with filters and cursor pagination, state transitions, BMC credentials.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

use super::events::insert_event;
use super::{Store, get, get_opt_time, get_parsed, get_time};
use crate::clock::to_millis;
use crate::error::StoreError;
use crate::model::{BmcEndpoint, BmcProtocol, Node, NodeEvent, NodeId};
use crate::secret::Secret;
use crate::state::NodeState;

/// The columns [`node_from_row`] reads; joined so a node comes back with its place and BMC.
pub(crate) const NODE_SELECT: &str = "SELECT n.id, n.serial, s.name AS site, h.name AS hall, r.name AS rack, \
    n.slot, n.sku_id, n.state, n.boot_mac, n.lease_id, n.version, n.state_entered_at, n.next_check_at, \
    n.claimed_by, n.claim_expires_at, n.created_at, n.updated_at, n.drained, \
    b.id AS bmc_id, b.address AS bmc_address, b.protocol AS bmc_protocol, b.vendor AS bmc_vendor, \
    b.username AS bmc_username, b.tls_fingerprint AS bmc_tls_fingerprint \
    FROM nodes n JOIN racks r ON r.id = n.rack_id JOIN halls h ON h.id = r.hall_id \
    JOIN sites s ON s.id = h.site_id JOIN bmc_endpoints b ON b.id = n.bmc_id";

pub(crate) fn node_from_row(row: &AnyRow) -> Result<Node, StoreError> {
    Ok(Node {
        id: NodeId(get(row, "id")?),
        serial: get(row, "serial")?,
        site: get(row, "site")?,
        hall: get(row, "hall")?,
        rack: get(row, "rack")?,
        slot: get(row, "slot")?,
        sku: get(row, "sku_id")?,
        state: get_parsed(row, "state")?,
        boot_mac: get_parsed(row, "boot_mac")?,
        bmc: BmcEndpoint {
            id: get(row, "bmc_id")?,
            address: get(row, "bmc_address")?,
            protocol: get_parsed(row, "bmc_protocol")?,
            vendor: get(row, "bmc_vendor")?,
            username: get(row, "bmc_username")?,
            tls_fingerprint: get(row, "bmc_tls_fingerprint")?,
        },
        lease_id: get(row, "lease_id")?,
        drained: get::<i64>(row, "drained")? != 0,
        version: get(row, "version")?,
        state_entered_at: get_time(row, "state_entered_at")?,
        next_check_at: get_opt_time(row, "next_check_at")?,
        claimed_by: get(row, "claimed_by")?,
        claim_expires_at: get_opt_time(row, "claim_expires_at")?,
        created_at: get_time(row, "created_at")?,
        updated_at: get_time(row, "updated_at")?,
    })
}

/// Which nodes to list. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct NodeFilter {
    /// Hall name.
    pub hall: Option<String>,
    /// Rack name.
    pub rack: Option<String>,
    /// Lifecycle state.
    pub state: Option<NodeState>,
    /// SKU id.
    pub sku: Option<String>,
    /// Only nodes under a lease of this lessee.
    pub lessee: Option<String>,
    /// Only the node with this serial.
    pub serial: Option<String>,
    /// Only nodes with an id above this (the cursor: the last id of the previous page).
    pub after_id: Option<NodeId>,
    /// Page size (`None`: all).
    pub limit: Option<i64>,
}

/// What kiln needs to log in to a node's BMC, password opened for use.
#[derive(Debug, Clone)]
pub struct BmcCredentials {
    /// Host, host:port or URL.
    pub address: String,
    /// Redfish or IPMI.
    pub protocol: BmcProtocol,
    /// Login name.
    pub username: String,
    /// The password (prints as `***`).
    pub password: Secret,
    /// Pinned TLS certificate fingerprint, if any.
    pub tls_fingerprint: Option<String>,
}

enum Bind {
    Text(String),
    Int(i64),
}

impl Store {
    /// The node with this serial.
    pub async fn node_by_serial(&self, serial: &str) -> Result<Node, StoreError> {
        let sql = format!("{NODE_SELECT} WHERE n.serial = $1");
        let row = sqlx::query(&sql)
            .bind(serial)
            .fetch_optional(&self.read)
            .await
            .map_err(StoreError::db("looking up a node"))?
            .ok_or_else(|| StoreError::NodeNotFound(format!("with serial {serial:?}")))?;
        node_from_row(&row)
    }

    /// The node that PXE-boots from this MAC, if any.
    pub async fn node_by_boot_mac(&self, mac: crate::MacAddr) -> Result<Option<Node>, StoreError> {
        let sql = format!("{NODE_SELECT} WHERE n.boot_mac = $1");
        let row = sqlx::query(&sql)
            .bind(mac.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(StoreError::db("looking up a node by boot MAC"))?;
        row.as_ref().map(node_from_row).transpose()
    }

    /// The node with this id.
    pub async fn node(&self, id: NodeId) -> Result<Node, StoreError> {
        let sql = format!("{NODE_SELECT} WHERE n.id = $1");
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.read)
            .await
            .map_err(StoreError::db("looking up a node"))?
            .ok_or_else(|| StoreError::NodeNotFound(format!("with id {id}")))?;
        node_from_row(&row)
    }

    /// Nodes matching `filter`, ordered by id.
    pub async fn list_nodes(&self, filter: &NodeFilter) -> Result<Vec<Node>, StoreError> {
        let mut clauses = Vec::new();
        let mut binds = Vec::new();
        let mut push = |clause: &str, value: Bind| {
            binds.push(value);
            clauses.push(clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(hall) = &filter.hall {
            push("h.name = ?", Bind::Text(hall.clone()));
        }
        if let Some(rack) = &filter.rack {
            push("r.name = ?", Bind::Text(rack.clone()));
        }
        if let Some(state) = filter.state {
            push("n.state = ?", Bind::Text(state.as_str().to_string()));
        }
        if let Some(sku) = &filter.sku {
            push("n.sku_id = ?", Bind::Text(sku.clone()));
        }
        if let Some(lessee) = &filter.lessee {
            push(
                "n.lease_id IN (SELECT hl.id FROM hall_leases hl JOIN lessees l ON l.id = hl.lessee_id \
                 WHERE l.name = ? AND hl.status = 'active')",
                Bind::Text(lessee.clone()),
            );
        }
        if let Some(serial) = &filter.serial {
            push("n.serial = ?", Bind::Text(serial.clone()));
        }
        if let Some(after) = filter.after_id {
            push("n.id > ?", Bind::Int(after.0));
        }
        let mut sql = NODE_SELECT.to_string();
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(" ORDER BY n.id");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {}", limit.max(0)));
        }
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Int(int) => query.bind(int),
            };
        }
        let rows = query
            .fetch_all(&self.read)
            .await
            .map_err(StoreError::db("listing nodes"))?;
        rows.iter().map(node_from_row).collect()
    }

    /// Serial and state of every node (of `hall` when given), by id: the cheap read behind progress views,
    /// which poll a whole hall several times a second.
    pub async fn node_states(
        &self,
        hall: Option<&str>,
    ) -> Result<Vec<(String, NodeState)>, StoreError> {
        let sql = match hall {
            Some(_) => {
                "SELECT n.serial, n.state FROM nodes n JOIN racks r ON r.id = n.rack_id \
                 JOIN halls h ON h.id = r.hall_id WHERE h.name = $1 ORDER BY n.id"
            }
            None => "SELECT n.serial, n.state FROM nodes n ORDER BY n.id",
        };
        let mut query = sqlx::query(sql);
        if let Some(hall) = hall {
            query = query.bind(hall.to_string());
        }
        let rows = query
            .fetch_all(&self.read)
            .await
            .map_err(StoreError::db("reading node states"))?;
        rows.iter()
            .map(|row| Ok((get(row, "serial")?, get_parsed(row, "state")?)))
            .collect()
    }

    /// Moves a node from `from` to `to` in one transaction that also appends the event. Fails, changing nothing,
    /// when the diagram has no such arrow or when the node is no longer in `from` (optimistic check).
    pub async fn transition(
        &self,
        id: NodeId,
        from: NodeState,
        to: NodeState,
        actor: &str,
        reason: &str,
    ) -> Result<NodeEvent, StoreError> {
        self.transition_with_work(id, from, to, actor, reason, None, None)
            .await
    }

    /// [`Store::transition`] that also replaces the node's engine work record (JSON text) in the same
    /// transaction (`None` leaves it as it is) and, when `release` names the claim's owner, gives up its claim.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition_with_work(
        &self,
        id: NodeId,
        from: NodeState,
        to: NodeState,
        actor: &str,
        reason: &str,
        work: Option<&str>,
        release: Option<&str>,
    ) -> Result<NodeEvent, StoreError> {
        if !from.can_transition_to(to) {
            let serial = self.node(id).await?.serial;
            return Err(StoreError::TransitionNotAllowed { serial, from, to });
        }
        let now = self.now();
        let at = to_millis(now);
        // Nodes in a working state are due for the engine at once, ahead of routine rechecks; the others wait
        // for a person or a lease.
        let next_check = to
            .is_active()
            .then_some(super::lifecycle::ahead_of_queue(at, to));
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting a transition"))?;
        let updated = sqlx::query(
            "UPDATE nodes SET state = $1, version = version + 1, state_entered_at = $2, updated_at = $2, \
             next_check_at = $3, due_since = $8, work = COALESCE($6, work), \
             claim_expires_at = CASE WHEN claimed_by = $7 THEN NULL ELSE claim_expires_at END, \
             claimed_by = CASE WHEN claimed_by = $7 THEN NULL ELSE claimed_by END \
             WHERE id = $4 AND state = $5",
        )
        .bind(to.as_str())
        .bind(at)
        .bind(next_check)
        .bind(id.0)
        .bind(from.as_str())
        .bind(work)
        .bind(release)
        .bind(next_check.map(|_| at))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("updating a node's state"))?;
        if updated.rows_affected() == 0 {
            drop(tx);
            let node = self.node(id).await?;
            return Err(StoreError::StateChanged {
                serial: node.serial,
                expected: from,
                actual: node.state,
            });
        }
        let event_id = insert_event(&mut tx, id, at, actor, Some(from), Some(to), reason).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a transition"))?;
        tracing::info!(node = %id, from = %from, to = %to, actor, reason, "node transition");
        Ok(NodeEvent {
            id: event_id,
            node_id: id,
            at: crate::clock::from_millis(at),
            actor: actor.to_string(),
            from_state: Some(from),
            to_state: Some(to),
            reason: reason.to_string(),
        })
    }

    /// Schedules the node's next look by the engine (`None`: not scheduled).
    pub async fn set_next_check(
        &self,
        id: NodeId,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE nodes SET next_check_at = $1, due_since = NULL WHERE id = $2")
            .bind(at.map(to_millis))
            .bind(id.0)
            .execute(&self.write)
            .await
            .map_err(StoreError::db("scheduling a node"))?;
        Ok(())
    }

    /// The node's BMC credentials with the password opened; needs the site key.
    pub async fn bmc_credentials(&self, id: NodeId) -> Result<BmcCredentials, StoreError> {
        let key = self.key_for("open BMC passwords")?;
        let row = sqlx::query(
            "SELECT n.serial, b.address, b.protocol, b.username, b.password_enc, b.tls_fingerprint \
             FROM nodes n JOIN bmc_endpoints b ON b.id = n.bmc_id WHERE n.id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.read)
        .await
        .map_err(StoreError::db("reading BMC credentials"))?
        .ok_or_else(|| StoreError::NodeNotFound(format!("with id {id}")))?;
        let serial: String = get(&row, "serial")?;
        let sealed: String = get(&row, "password_enc")?;
        let password = key.open(&sealed, &format!("the BMC password of node {serial}"))?;
        Ok(BmcCredentials {
            address: get(&row, "address")?,
            protocol: get_parsed(&row, "protocol")?,
            username: get(&row, "username")?,
            password,
            tls_fingerprint: get(&row, "tls_fingerprint")?,
        })
    }

    /// Records what discovery learned about a BMC: its vendor and (trust on first use) its TLS fingerprint.
    pub async fn update_bmc_identity(
        &self,
        bmc_id: i64,
        vendor: Option<&str>,
        tls_fingerprint: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE bmc_endpoints SET vendor = COALESCE($1, vendor), \
             tls_fingerprint = COALESCE($2, tls_fingerprint), updated_at = $3 WHERE id = $4",
        )
        .bind(vendor)
        .bind(tls_fingerprint)
        .bind(to_millis(self.now()))
        .bind(bmc_id)
        .execute(&self.write)
        .await
        .map_err(StoreError::db("updating a BMC endpoint"))?;
        Ok(())
    }
}
