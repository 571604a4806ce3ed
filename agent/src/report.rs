//! Reports from the agent to the provisioner: the JSON body types (shared with the provisioner's endpoint) and a
//! client that posts them with the node's token, retrying with exponential backoff while the provisioner is away.
//!
//! Wire contract: `POST {provisioner}/agent/v1/report`, header `Authorization: Bearer <node token>`, body an
//! [`AgentReport`]; any 2xx accepts it. 401/403 mean the token is wrong (not retried); other 4xx mean the body
//! was refused (not retried); 5xx, 429 and connection failures are retried. `seq` increases per report from one
//! agent run, and `nonce` (the run's random id and `seq`) is unique per report: the provisioner refuses a
//! report whose nonce it has seen (409, a replay or a duplicate delivered by a retry), and the client takes
//! 409 as delivered.

use std::time::Duration;

use kiln_model::MacAddr;
pub use kiln_model::{AgentReport, AgentStep, REPORT_PATH};

/// Why a report could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The provisioner rejected the node token.
    #[error("provisioner {url} rejected this node's token (HTTP {status})")]
    Unauthorized {
        /// The endpoint.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// The provisioner refused the report.
    #[error("provisioner {url} refused the report (HTTP {status}): {body}")]
    Rejected {
        /// The endpoint.
        url: String,
        /// The status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// The provisioner stayed unreachable or failing.
    #[error("provisioner {url} unavailable after {attempts} attempts; last: {last_error}")]
    Unavailable {
        /// The endpoint.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last_error: String,
    },
}

/// Retry schedule for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// First wait; doubled after every failure.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait after failed attempt number `failures` (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Posts reports for one node.
#[derive(Clone)]
pub struct ReportClient {
    http: reqwest::Client,
    url: String,
    token: String,
    backoff: Backoff,
    boot_mac: Option<MacAddr>,
    seq: std::sync::Arc<std::sync::atomic::AtomicU64>,
    run_id: u64,
}

/// A 64-bit id for one agent run: the standard library's per-process random hash keys over the process id and
/// the time, so two runs (the ramdisk, then the installed OS) never share report nonces.
fn run_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.finish()
}

impl std::fmt::Debug for ReportClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never printed.
        f.debug_struct("ReportClient")
            .field("url", &self.url)
            .field("boot_mac", &self.boot_mac)
            .finish_non_exhaustive()
    }
}

impl ReportClient {
    /// A client for the provisioner at `base_url` (e.g. `http://10.0.0.1:8080`) with the node's token.
    pub fn new(base_url: &str, token: impl Into<String>, boot_mac: Option<MacAddr>) -> Self {
        Self {
            http: kiln_images::http_client(),
            url: format!("{}{REPORT_PATH}", base_url.trim_end_matches('/')),
            token: token.into(),
            backoff: Backoff::default(),
            boot_mac,
            seq: Default::default(),
            run_id: run_id(),
        }
    }

    /// Replaces the retry schedule.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The endpoint reports go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one step, retrying per the backoff; returns the report as delivered.
    pub async fn send(&self, step: AgentStep) -> Result<AgentReport, ReportError> {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let report = AgentReport {
            boot_mac: self.boot_mac,
            seq,
            nonce: Some(format!("{:016x}-{seq}", self.run_id)),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            step,
        };
        let mut failures = 0;
        loop {
            let last_error = match self
                .http
                .post(&self.url)
                .bearer_auth(&self.token)
                .json(&report)
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(url = %self.url, seq = report.seq, "report delivered");
                    return Ok(report);
                }
                // The provisioner already holds a report with this nonce: an earlier try got through.
                Ok(response) if response.status().as_u16() == 409 => {
                    tracing::debug!(url = %self.url, seq = report.seq, "report already delivered");
                    return Ok(report);
                }
                Ok(response) => {
                    let status = response.status();
                    if status.as_u16() == 401 || status.as_u16() == 403 {
                        return Err(ReportError::Unauthorized {
                            url: self.url.clone(),
                            status: status.as_u16(),
                        });
                    }
                    if status.is_client_error() && status.as_u16() != 429 {
                        let body = response.text().await.unwrap_or_default();
                        return Err(ReportError::Rejected {
                            url: self.url.clone(),
                            status: status.as_u16(),
                            body: body.chars().take(200).collect(),
                        });
                    }
                    format!("HTTP {status}")
                }
                Err(err) => format!("request failed: {err}"),
            };
            failures += 1;
            if failures >= self.backoff.max_attempts {
                return Err(ReportError::Unavailable {
                    url: self.url.clone(),
                    attempts: failures,
                    last_error,
                });
            }
            let delay = self.backoff.delay(failures);
            tracing::info!(url = %self.url, failures, delay_ms = delay.as_millis() as u64, reason = %last_error, "provisioner unavailable; retrying report");
            tokio::time::sleep(delay).await;
        }
    }
}
