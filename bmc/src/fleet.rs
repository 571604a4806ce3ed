//! Run one operation over many BMCs: bounded concurrency, a timeout per attempt, retries with exponential
//! backoff for transient errors, and a summary of what worked and what failed with which reason.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::BmcError;

/// How a fleet operation runs.
#[derive(Debug, Clone, Copy)]
pub struct FleetOptions {
    /// At most this many BMCs are worked on at once.
    pub concurrency: usize,
    /// Limit for one attempt on one BMC.
    pub attempt_timeout: Duration,
    /// Attempts per BMC (1 = no retry). Only transient errors are retried.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled for each further one.
    pub backoff_initial: Duration,
    /// Upper bound on one backoff.
    pub backoff_max: Duration,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            concurrency: 256,
            attempt_timeout: Duration::from_secs(15),
            max_attempts: 3,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        }
    }
}

impl FleetOptions {
    /// The backoff before attempt `attempt` (2 = first retry), with up to 25% random jitter so that a fleet's
    /// retries do not arrive in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(2).min(16);
        let base = self
            .backoff_initial
            .saturating_mul(1 << exponent)
            .min(self.backoff_max);
        let jitter = base.mul_f64(rand::random::<f64>() * 0.25);
        base + jitter
    }
}

/// One BMC that failed.
#[derive(Debug, Clone, Serialize)]
pub struct FleetFailure {
    /// The target's id as given (serial, address, …).
    pub target: String,
    /// The error kind (`timeout`, `auth`, …; see [`BmcError::kind`]).
    pub kind: &'static str,
    /// The last error, as text.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
}

/// The result of a fleet operation.
#[derive(Debug, Clone, Serialize)]
pub struct FleetSummary<T> {
    /// Targets that succeeded, with their results, in completion order.
    pub ok: Vec<(String, T)>,
    /// Targets that failed, with reasons.
    pub failed: Vec<FleetFailure>,
    /// Wall time of the whole operation.
    #[serde(serialize_with = "serialize_secs")]
    pub elapsed: Duration,
}

fn serialize_secs<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

impl<T> FleetSummary<T> {
    /// Failures grouped by error kind, most frequent first.
    pub fn failures_by_kind(&self) -> Vec<(&'static str, usize)> {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for failure in &self.failed {
            match counts.iter_mut().find(|(kind, _)| *kind == failure.kind) {
                Some((_, count)) => *count += 1,
                None => counts.push((failure.kind, 1)),
            }
        }
        counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        counts
    }
}

/// Runs `op` once per target (retrying transient failures) with at most `options.concurrency` in flight.
///
/// Each target is a `(id, input)` pair; `op` receives the input and the attempt number (1-based) and must be
/// cheap to call again. A timeout of one attempt is a transient [`BmcError::Timeout`].
pub async fn run<I, T, F, Fut>(
    targets: Vec<(String, I)>,
    options: FleetOptions,
    op: F,
) -> FleetSummary<T>
where
    I: Send + Sync + 'static,
    T: Send + 'static,
    F: Fn(Arc<I>, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, BmcError>> + Send + 'static,
{
    let started = Instant::now();
    let op = Arc::new(op);
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (id, input) in targets {
        let op = op.clone();
        let permits = permits.clone();
        let input = Arc::new(input);
        tasks.spawn(async move {
            let mut attempt = 1;
            loop {
                let outcome = {
                    // The semaphore is never closed, so acquiring only fails if it were; treat that as no limit.
                    let _permit = permits.acquire().await.ok();
                    match tokio::time::timeout(options.attempt_timeout, op(input.clone(), attempt)).await {
                        Ok(result) => result,
                        Err(_) => Err(BmcError::Timeout { addr: id.clone(), timeout: options.attempt_timeout }),
                    }
                };
                match outcome {
                    Ok(value) => return Ok((id, value)),
                    Err(err) if err.is_transient() && attempt < options.max_attempts => {
                        attempt += 1;
                        let pause = options.backoff(attempt);
                        debug!(target_id = %id, error = %err, attempt, ?pause, "transient failure, retrying");
                        // Backoff happens without holding a permit, so others proceed meanwhile.
                        tokio::time::sleep(pause).await;
                    }
                    Err(err) => {
                        return Err(FleetFailure {
                            target: id,
                            kind: err.kind(),
                            error: error_chain(&err),
                            attempts: attempt,
                        });
                    }
                }
            }
        });
    }
    let mut summary = FleetSummary {
        ok: Vec::new(),
        failed: Vec::new(),
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(done)) => summary.ok.push(done),
            Ok(Err(failure)) => summary.failed.push(failure),
            Err(join_error) => {
                warn!(error = %join_error, "fleet task died");
                summary.failed.push(FleetFailure {
                    target: "?".into(),
                    kind: "panic",
                    error: join_error.to_string(),
                    attempts: 0,
                });
            }
        }
    }
    summary.elapsed = started.elapsed();
    summary
}

/// An error and its sources on one line (kiln-model's, shared with the agent and the provisioner).
pub use kiln_model::error_chain;
