//! The worker pool: claims due nodes with expiring claims, runs their handlers with bounded concurrency, renews
//! claims while handlers run, and records each outcome durably. Events wake it at once; otherwise it polls.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_inventory::{Claim, Due, Node, NodeId, NodeState, StoreError};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::ctx::Ctx;
use super::handlers::dispatch;
use super::outcome::{Failure, FailureClass, Outcome};
use super::work::{FailedStep, Work};

/// The lifecycle engine of one provisioner instance.
#[derive(Debug, Clone)]
pub struct Engine {
    ctx: Ctx,
    wake: Arc<Notify>,
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Engine {
    /// An engine over `ctx`.
    pub fn new(ctx: Ctx) -> Self {
        Self {
            ctx,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Wakes the engine now (an agent report arrived); the report endpoint holds this.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The handlers' context.
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// Runs until `cancel`: claim, handle, record, repeat. Store errors are logged and retried after a pause;
    /// a handler that panics loses only its own run (its claim lapses and the node is handled again), and one
    /// that hangs is dropped at its deadline ([`super::EngineConfig::deadline_of`]): the node fails with
    /// `handler_deadline` and its claim is released, not renewed.
    pub async fn run(&self, cancel: CancellationToken) {
        let config = &self.ctx.config;
        let workers = Arc::new(Semaphore::new(config.workers.max(1)));
        let in_flight: Arc<Mutex<HashSet<NodeId>>> = Arc::default();
        let renewer = tokio::spawn(renew_loop(
            self.ctx.clone(),
            in_flight.clone(),
            cancel.clone(),
        ));
        tracing::info!(instance = %config.instance, workers = config.workers, "lifecycle engine started");
        while !cancel.is_cancelled() {
            let free = workers.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    permit = workers.clone().acquire_owned() => drop(permit),
                }
                continue;
            }
            let batch = (free as i64).min(config.claim_batch.max(1));
            let claims = match self
                .ctx
                .store
                .claim_due_nodes(&config.instance, batch, chrono_of(config.claim_ttl))
                .await
            {
                Ok(claims) => claims,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming due nodes failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(config.poll.max(Duration::from_millis(200))) => {}
                    }
                    continue;
                }
            };
            if claims.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(config.poll) => {}
                }
                continue;
            }
            for claim in claims {
                let Ok(permit) = workers.clone().acquire_owned().await else {
                    break;
                };
                let id = claim.node.id;
                lock(&in_flight).insert(id);
                let ctx = self.ctx.clone();
                let in_flight = in_flight.clone();
                let wake = self.wake.clone();
                tokio::spawn(async move {
                    let handled = tokio::spawn(handle_claim(ctx, claim)).await;
                    if let Err(err) = handled {
                        tracing::error!(node = %id, error = %err, "handler task failed; the claim will lapse");
                    }
                    lock(&in_flight).remove(&id);
                    drop(permit);
                    wake.notify_one();
                });
            }
        }
        renewer.abort();
        tracing::info!(instance = %config.instance, "lifecycle engine stopped");
    }

    /// One round for tests and tools: claims up to `limit` due nodes, handles them all, and returns how many.
    pub async fn run_once(&self, limit: i64) -> Result<usize, StoreError> {
        let config = &self.ctx.config;
        let claims = self
            .ctx
            .store
            .claim_due_nodes(&config.instance, limit, chrono_of(config.claim_ttl))
            .await?;
        let count = claims.len();
        let mut tasks = tokio::task::JoinSet::new();
        for claim in claims {
            tasks.spawn(handle_claim(self.ctx.clone(), claim));
        }
        while tasks.join_next().await.is_some() {}
        Ok(count)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn renew_loop(ctx: Ctx, in_flight: Arc<Mutex<HashSet<NodeId>>>, cancel: CancellationToken) {
    let every = ctx.config.claim_ttl / 3;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let ids: Vec<NodeId> = lock(&in_flight).iter().copied().collect();
        if ids.is_empty() {
            continue;
        }
        match ctx
            .store
            .renew_claims(&ctx.config.instance, &ids, chrono_of(ctx.config.claim_ttl))
            .await
        {
            Ok(kept) if kept.len() < ids.len() => {
                // A handler that finished meanwhile released its claim; only the ones still running were lost.
                let running = lock(&in_flight);
                let lost = ids
                    .iter()
                    .filter(|id| !kept.contains(id) && running.contains(id))
                    .count();
                if lost > 0 {
                    tracing::warn!(
                        lost,
                        "claims lapsed before renewal; another owner may take those nodes"
                    );
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "renewing claims failed"),
        }
    }
}

/// Handles one claimed node and records the outcome; errors are logged (the node is looked at again later).
pub async fn handle_claim(ctx: Ctx, claim: Claim) {
    let node = claim.node;
    if let Err(err) = handle_node(&ctx, &node, claim.due_since).await {
        tracing::warn!(node = %node.serial, error = %err, "handling a node failed; looking again later");
        let later = ctx.store.now() + chrono_of(ctx.config.recheck);
        let _ = ctx
            .store
            .release_claim(&ctx.config.instance, node.id, Some(later))
            .await;
    }
}

async fn handle_node(
    ctx: &Ctx,
    node: &Node,
    due_since: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    if !node.state.is_active() {
        // Available, leased and quarantined nodes wait for a person or a lease: unschedule.
        ctx.store
            .release_claim(&ctx.config.instance, node.id, None)
            .await?;
        return Ok(());
    }
    let stored = ctx.store.node_work(node.id).await?;
    let mut work = Work::parse(node, stored.work.as_deref());
    let before = work.clone();
    let now = ctx.store.now();
    let stayed = sla_started(node, &work).map(|started| {
        // Time due but unclaimed is the engine's backlog (a hall's worth of nodes on few cores), not the
        // node's: the SLA clock stops for it.
        let backlog = work.add_backlog(started, due_since, now);
        now - started - chrono::Duration::milliseconds(backlog)
    });
    let over_sla = ctx.config.sla_of(node.state).filter(|sla| {
        stayed.is_some_and(|stayed| stayed.to_std().is_ok_and(|stayed| stayed > *sla))
    });
    let outcome = match over_sla {
        Some(sla) if node.state != NodeState::Remediating => {
            let mut reason = format!("{} for longer than its SLA of {:?}", node.state, sla);
            if let Some(last) = &work.last_error {
                reason.push_str(&format!("; last error: {last}"));
            }
            let class = match &work.last_error {
                Some(last) if last.contains("BMC") || last.contains("bmc") => {
                    FailureClass::BmcUnreachable
                }
                _ => FailureClass::SlaExceeded,
            };
            Outcome::fail(class, reason)
        }
        _ => {
            let deadline = ctx.config.deadline_of(node.state);
            match tokio::time::timeout(deadline, dispatch(ctx, node, &mut work)).await {
                Ok(outcome) => outcome?,
                // The handler's future is dropped here (its BMC or SSH call with it); `work` keeps what the
                // handler changed before it hung, as its write-ahead intents were saved before their calls.
                Err(_) => deadline_exceeded(ctx, node, &mut work, deadline),
            }
        }
    };
    record(ctx, node, work, &before, stored.wake_seq, outcome).await
}

/// The outcome of a handler run that outlived `deadline`: a failure of class `handler_deadline` (its ladder
/// decides between retry and quarantine), so the claim is released with the outcome instead of being renewed
/// while the call hangs. A remediating node cannot fail into remediating: its run waits and is looked at again
/// after the BMC retry, with the attempt the hung run counted kept, so its ladder still ends.
fn deadline_exceeded(ctx: &Ctx, node: &Node, work: &mut Work, deadline: Duration) -> Outcome {
    let reason = format!(
        "handler for state {} exceeded its deadline of {} s; the run was abandoned",
        node.state,
        deadline.as_secs_f64()
    );
    tracing::warn!(node = %node.serial, state = %node.state, ?deadline, "handler exceeded its deadline");
    let evidence = serde_json::json!({
        "state": node.state,
        "deadline_ms": u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        "last_error": work.last_error,
    });
    work.last_error = Some(reason.clone());
    if node.state == NodeState::Remediating {
        return Outcome::wait(reason, ctx.config.bmc_retry);
    }
    Outcome::Fail(Failure::new(FailureClass::HandlerDeadline, reason).with_evidence(evidence))
}

/// When the node's SLA clock in its state started (`None`: not running). Imaging counts from the write
/// request: time queued for an image slot is the hall's backlog (10,000 nodes through 64 slots take hours),
/// not a fault of the node. Every other state counts from entry.
fn sla_started(node: &Node, work: &Work) -> Option<chrono::DateTime<chrono::Utc>> {
    match node.state {
        NodeState::Imaging => work.current_intent(node).map(|intent| intent.at),
        _ => Some(node.state_entered_at),
    }
}

async fn record(
    ctx: &Ctx,
    node: &Node,
    mut work: Work,
    before: &Work,
    seen_wake: i64,
    outcome: Outcome,
) -> Result<(), StoreError> {
    let owner = &ctx.config.instance;
    let now = ctx.store.now();
    let (to, reason) = match outcome {
        Outcome::Wait {
            reason,
            recheck_in,
            turn,
        } => {
            tracing::debug!(node = %node.serial, state = %node.state, reason, "waiting");
            let changed = (work != *before).then(|| work.to_json());
            ctx.store
                .release_claim_seen(
                    owner,
                    node.id,
                    Some(Due {
                        at: now + chrono_of(recheck_in),
                        ahead: turn,
                    }),
                    seen_wake,
                    changed.as_deref().map(|json| (node.state, json)),
                )
                .await?;
            return Ok(());
        }
        Outcome::Transition { to, reason } => {
            work.leave_state_for(node.state, to);
            if to == NodeState::Available {
                work.attempts.clear();
                work.failure = None;
            }
            (to, reason)
        }
        Outcome::Fail(failure) => {
            work.leave_state();
            let reason = format!("{}: {}", failure.class.label(), failure.reason);
            work.failure = Some(FailedStep {
                state: node.state,
                failure,
            });
            (NodeState::Remediating, reason)
        }
    };
    if node.state == NodeState::Imaging
        && let Some(next) = ctx.gates.finish_image(node.id)
    {
        // The slot goes to the node that waited longest for it.
        ctx.store.wake_node(next).await?;
    }
    match ctx
        .store
        .transition_with_work(
            node.id,
            node.state,
            to,
            owner,
            &reason,
            Some(&work.to_json()),
            Some(owner),
        )
        .await
    {
        // The transition gave up the claim and scheduled the node (at once while it is in a working state).
        Ok(_) => {}
        Err(StoreError::StateChanged { .. }) => {
            tracing::info!(node = %node.serial, "state changed under the handler; its outcome is dropped");
            ctx.store.release_claim(owner, node.id, Some(now)).await?;
        }
        Err(err) => return Err(err),
    }
    Ok(())
}
