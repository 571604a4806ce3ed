//! The node event log.

use super::{Store, get, get_time};
use crate::clock::to_millis;
use crate::error::StoreError;
use crate::model::{NodeEvent, NodeId};
use crate::state::NodeState;

fn parse_state(text: Option<String>) -> Result<Option<NodeState>, StoreError> {
    text.map(|text| {
        text.parse()
            .map_err(|err: crate::UnknownState| StoreError::Corrupt {
                what: "event state".into(),
                detail: err.to_string(),
            })
    })
    .transpose()
}

impl Store {
    /// Appends a note to a node's history without changing its state (a boot decision, an operator remark).
    pub async fn record_event(
        &self,
        node: NodeId,
        actor: &str,
        reason: &str,
    ) -> Result<i64, StoreError> {
        let mut conn = self
            .write
            .acquire()
            .await
            .map_err(StoreError::db("recording an event"))?;
        insert_event(
            &mut conn,
            node,
            to_millis(self.now()),
            actor,
            None,
            None,
            reason,
        )
        .await
    }

    /// A node's history, oldest first.
    pub async fn node_events(&self, node: NodeId) -> Result<Vec<NodeEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, node_id, at, actor, from_state, to_state, reason FROM node_events \
             WHERE node_id = $1 ORDER BY id",
        )
        .bind(node.0)
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("reading node events"))?;
        rows.iter()
            .map(|row| {
                Ok(NodeEvent {
                    id: get(row, "id")?,
                    node_id: NodeId(get(row, "node_id")?),
                    at: get_time(row, "at")?,
                    actor: get(row, "actor")?,
                    from_state: parse_state(get(row, "from_state")?)?,
                    to_state: parse_state(get(row, "to_state")?)?,
                    reason: get(row, "reason")?,
                })
            })
            .collect()
    }
}

/// Appends an event inside the caller's transaction; returns its id.
pub(crate) async fn insert_event(
    conn: &mut sqlx::AnyConnection,
    node: NodeId,
    at: i64,
    actor: &str,
    from: Option<NodeState>,
    to: Option<NodeState>,
    reason: &str,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO node_events (node_id, at, actor, from_state, to_state, reason) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(node.0)
    .bind(at)
    .bind(actor)
    .bind(from.map(NodeState::as_str))
    .bind(to.map(NodeState::as_str))
    .bind(reason)
    .fetch_one(&mut *conn)
    .await
    .map_err(StoreError::db("appending a node event"))?;
    get(&row, "id")
}
