//! What the lifecycle engine keeps per node besides its state: its work record (JSON the engine owns), the wake
//! counter that lets an event reschedule a node at once, and the agent's reports.

use chrono::{DateTime, Utc};

use super::events::insert_event;
use super::{Store, get, get_time};
use crate::clock::to_millis;
use crate::error::StoreError;
use crate::model::NodeId;
use crate::state::NodeState;

/// How far back a woken or newly transitioned node's `next_check_at` is set, per step of the lifecycle:
/// claims take due nodes oldest first, so this puts nodes that have something new to act on (a report, a new
/// state) ahead of a backlog of routine rechecks, and among those, nodes further along the lifecycle first.
/// A bring-up is a pipeline whose narrow stage is imaging: serving the stages nearest its end first keeps the
/// image slots fed from the first seconds, while enrolled and discovering nodes take the capacity left over
/// (pure first-come order would read every BMC in the hall before the first image write). At hall scale the
/// backlog is minutes deep, and handling reports first is what keeps the pipeline moving.
pub(crate) const AHEAD_OF_QUEUE_MS: i64 = 3_600_000;

/// How far ahead of the queue a node in `state` goes: [`AHEAD_OF_QUEUE_MS`] per lifecycle step, counting
/// from one for enrolled.
fn lead_ms(state: NodeState) -> i64 {
    let step = NodeState::ALL.iter().position(|s| *s == state).unwrap_or(0);
    AHEAD_OF_QUEUE_MS * (1 + step as i64)
}

/// [`lead_ms`] of the row's current `state`, as an SQL expression.
fn lead_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let arms: String = NodeState::ALL
            .iter()
            .map(|state| format!("WHEN '{}' THEN {} ", state.as_str(), lead_ms(*state)))
            .collect();
        format!("(CASE state {arms}ELSE {AHEAD_OF_QUEUE_MS} END)")
    });
    &SQL
}

/// `now_ms` moved ahead of the queue for a node in `state`. Every statement that writes it also sets
/// `due_since` to `now_ms` (and every other write of `next_check_at` clears `due_since`), so claims can tell
/// since when the node was really due.
pub(crate) fn ahead_of_queue(now_ms: i64, state: NodeState) -> i64 {
    now_ms - lead_ms(state)
}

/// Writes the node's engine record while it is still in `state`; whether it was written.
async fn write_work(
    conn: &mut sqlx::AnyConnection,
    id: NodeId,
    state: NodeState,
    work: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE nodes SET work = $1 WHERE id = $2 AND state = $3")
        .bind(work)
        .bind(id.0)
        .bind(state.as_str())
        .execute(conn)
        .await
        .map_err(StoreError::db("writing a node's work record"))?;
    Ok(done.rows_affected() == 1)
}

/// When a released node is due next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Not before.
    pub at: DateTime<Utc>,
    /// Ahead of routine rechecks once due (ordered with woken nodes by `at`): the node is ready and only
    /// waited for its turn at a shared limit.
    pub ahead: bool,
}

/// A node's engine record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeWork {
    /// The engine's JSON record, `None` before the engine first wrote one.
    pub work: Option<String>,
    /// Bumped by every wake ([`Store::wake_node`], [`Store::record_agent_report`]).
    pub wake_seq: i64,
}

/// One report from a node's agent, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    /// Increasing id (order of arrival).
    pub id: i64,
    /// The node.
    pub node_id: NodeId,
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// The report's step name (`booted`, `inspected`, `image_written`, …).
    pub step: String,
    /// The whole report, JSON text.
    pub body: String,
}

impl Store {
    /// The node's engine record and wake counter.
    pub async fn node_work(&self, id: NodeId) -> Result<NodeWork, StoreError> {
        let row = sqlx::query("SELECT work, wake_seq FROM nodes WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.write)
            .await
            .map_err(StoreError::db("reading a node's work record"))?
            .ok_or_else(|| StoreError::NodeNotFound(format!("with id {id}")))?;
        Ok(NodeWork {
            work: get(&row, "work")?,
            wake_seq: get(&row, "wake_seq")?,
        })
    }

    /// Replaces the node's engine record, only while the node is still in `state` (a record is never written
    /// over a state another actor has moved the node out of). Returns whether it was written.
    pub async fn set_node_work(
        &self,
        id: NodeId,
        state: crate::NodeState,
        work: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self
            .write
            .acquire()
            .await
            .map_err(StoreError::db("connecting to write a node's work record"))?;
        write_work(&mut conn, id, state, work).await
    }

    /// [`Store::set_node_work`] with a note in the node's history by `actor`, in one transaction: the note is
    /// kept exactly when the record is written.
    pub async fn set_node_work_noting(
        &self,
        id: NodeId,
        state: crate::NodeState,
        work: &str,
        actor: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting to write a node's work record"))?;
        if !write_work(&mut tx, id, state, work).await? {
            return Ok(false);
        }
        insert_event(&mut tx, id, to_millis(self.now()), actor, None, None, note).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a node's work record"))?;
        Ok(true)
    }

    /// Makes the node due now and bumps its wake counter, so an owner that is running its handler reschedules
    /// it at once when it releases the claim.
    pub async fn wake_node(&self, id: NodeId) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "UPDATE nodes SET wake_seq = wake_seq + 1, \
             due_since = CASE WHEN next_check_at IS NULL THEN NULL ELSE $1 END, \
             next_check_at = CASE WHEN next_check_at IS NULL THEN NULL ELSE $1 - {} END WHERE id = $2",
            lead_sql()
        ))
        .bind(to_millis(self.now()))
        .bind(id.0)
        .execute(&self.write)
        .await
        .map_err(StoreError::db("waking a node"))?;
        Ok(())
    }

    /// Stores an agent report, with its line in the node's history (`event`, actor "agent") and, when `wake`,
    /// a wake of the node, in one transaction. Returns the report's id; `None` when this node already used
    /// `nonce` (a replayed report: nothing is stored).
    pub async fn record_agent_report(
        &self,
        node: NodeId,
        nonce: Option<&str>,
        step: &str,
        body: &str,
        event: Option<&str>,
        wake: bool,
    ) -> Result<Option<i64>, StoreError> {
        let now = to_millis(self.now());
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting to store an agent report"))?;
        let row = sqlx::query(
            "INSERT INTO agent_reports (node_id, at, step, body, nonce) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (node_id, nonce) DO NOTHING RETURNING id",
        )
        .bind(node.0)
        .bind(now)
        .bind(step)
        .bind(body)
        .bind(nonce)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("storing an agent report"))?;
        // A report whose nonce this node already used is a replay: nothing is stored, noted or woken.
        let Some(row) = row else { return Ok(None) };
        let id: i64 = get(&row, "id")?;
        if let Some(reason) = event {
            insert_event(&mut tx, node, now, "agent", None, None, reason).await?;
        }
        if wake {
            sqlx::query(&format!(
                "UPDATE nodes SET wake_seq = wake_seq + 1, \
                 due_since = CASE WHEN next_check_at IS NULL THEN NULL ELSE $1 END, \
                 next_check_at = CASE WHEN next_check_at IS NULL THEN NULL ELSE $1 - {} END WHERE id = $2",
                lead_sql()
            ))
            .bind(now)
            .bind(node.0)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("waking a node after a report"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::db("committing an agent report"))?;
        Ok(Some(id))
    }

    /// The node's reports with an id above `after` (0: all), oldest first.
    pub async fn agent_reports_after(
        &self,
        node: NodeId,
        after: i64,
    ) -> Result<Vec<StoredReport>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, node_id, at, step, body FROM agent_reports WHERE node_id = $1 AND id > $2 ORDER BY id",
        )
        .bind(node.0)
        .bind(after)
        .fetch_all(&self.write)
        .await
        .map_err(StoreError::db("reading agent reports"))?;
        rows.iter()
            .map(|row| {
                Ok(StoredReport {
                    id: get(row, "id")?,
                    node_id: NodeId(get(row, "node_id")?),
                    at: get_time(row, "at")?,
                    step: get(row, "step")?,
                    body: get(row, "body")?,
                })
            })
            .collect()
    }

    /// The highest report id stored for the node (0: none yet).
    pub async fn last_agent_report_id(&self, node: NodeId) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(id), 0) AS last FROM agent_reports WHERE node_id = $1",
        )
        .bind(node.0)
        .fetch_one(&self.write)
        .await
        .map_err(StoreError::db("reading the last agent report"))?;
        get(&row, "last")
    }

    /// Releases `owner`'s claim on `node` with its next look at `next_check_at` (`None`: not scheduled), unless
    /// the node was woken since `seen_wake_seq` was read, in which case it is due at once. When `work` is given
    /// and the node is still in `state`, its work record is replaced in the same statement.
    pub async fn release_claim_seen(
        &self,
        owner: &str,
        node: NodeId,
        next: Option<Due>,
        seen_wake_seq: i64,
        work: Option<(crate::NodeState, &str)>,
    ) -> Result<bool, StoreError> {
        let now = to_millis(self.now());
        // Woken meanwhile: due now, ahead of the queue. A node due ahead of the queue is ordered as if woken at
        // its due time ($8), and due_since holds that time.
        let next_check = next.map(|due| to_millis(due.at));
        let ahead = next.filter(|due| due.ahead).map(|due| to_millis(due.at));
        let lead = lead_sql();
        let done = sqlx::query(&format!(
            "UPDATE nodes SET claimed_by = NULL, claim_expires_at = NULL, \
             next_check_at = CASE WHEN $1 IS NOT NULL AND wake_seq > $4 THEN $5 - {lead} \
             WHEN $8 IS NOT NULL THEN $8 - {lead} ELSE $1 END, \
             due_since = CASE WHEN $1 IS NOT NULL AND wake_seq > $4 THEN $5 ELSE $8 END, \
             work = CASE WHEN $6 IS NOT NULL AND state = $7 THEN $6 ELSE work END \
             WHERE id = $2 AND claimed_by = $3"
        ))
        .bind(next_check)
        .bind(node.0)
        .bind(owner)
        .bind(seen_wake_seq)
        .bind(now)
        .bind(work.map(|(_, text)| text))
        .bind(work.map(|(state, _)| state.as_str()))
        .bind(ahead)
        .execute(&self.write)
        .await
        .map_err(StoreError::db("releasing a claim"))?;
        Ok(done.rows_affected() == 1)
    }
}
