//! `kiln bench bmc-sweep`: start N simulated BMCs and time kiln's power-status sweep over all of them.

use std::time::Duration;

use kiln_bmc::fleet::{self, FleetOptions};
use kiln_bmc::redfish::{AuthMode, RedfishClient, RedfishConfig, TlsPolicy};
use kiln_bmc::{Bmc, BmcError, Credentials};
use serde::Serialize;

use crate::{SimError, SimFleet, SimFleetConfig, Timing};

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct SweepBenchConfig {
    /// Number of simulated BMCs.
    pub count: usize,
    /// BMCs swept at once.
    pub concurrency: usize,
    /// HTTPS with a per-BMC certificate (pinned by kiln) or plain HTTP.
    pub tls: bool,
    /// Per-BMC attempt timeout.
    pub attempt_timeout: Duration,
}

impl Default for SweepBenchConfig {
    fn default() -> Self {
        SweepBenchConfig {
            count: 1000,
            concurrency: 256,
            tls: true,
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// Benchmark result; `contract_json` is the line `kiln bench bmc-sweep --json` prints last.
#[derive(Debug, Clone, Serialize)]
pub struct SweepBenchReport {
    /// BMCs swept.
    pub count: usize,
    /// Seconds to start the fleet (not part of the sweep time).
    pub fleet_start_s: f64,
    /// Seconds the sweep took.
    pub sweep_s: f64,
    /// BMCs per second, kiln.
    pub kiln_per_s: f64,
    /// BMCs per second, a sequential ipmitool loop (`None` where it was not measured).
    pub ipmitool_per_s: Option<f64>,
    /// `kiln_per_s / ipmitool_per_s`.
    pub ratio: Option<f64>,
    /// BMCs whose power state could not be read.
    pub failed: usize,
    /// Failures by error kind.
    pub failures_by_kind: Vec<(String, usize)>,
}

impl SweepBenchReport {
    /// `{"count": N, "kiln_per_s": f64, "ipmitool_per_s": f64, "ratio": f64, "failed": n}` (null where not
    /// measured).
    pub fn contract_json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "kiln_per_s": self.kiln_per_s,
            "ipmitool_per_s": self.ipmitool_per_s,
            "ratio": self.ratio,
            "failed": self.failed,
        })
    }
}

/// One BMC's client as the sweep builds it: basic auth (one call per BMC, a session would cost two more
/// round trips), the BMC's certificate pinned.
fn sweep_client(
    url: &str,
    tls: Option<TlsPolicy>,
    timeout: Duration,
) -> Result<RedfishClient, BmcError> {
    let mut config = RedfishConfig::new(url, Credentials::new("admin", "password"), tls);
    config.auth = AuthMode::Basic;
    config.request_timeout = timeout;
    RedfishClient::new(config)
}

/// Starts the fleet, sweeps power status over it with kiln's fleet runner, and reports the rate. The
/// `ipmitool_per_s` figure is left `None` here; the caller fills it when it can run ipmitool.
pub async fn bmc_sweep(config: &SweepBenchConfig) -> Result<SweepBenchReport, SimError> {
    let started = std::time::Instant::now();
    let fleet = SimFleet::start(SimFleetConfig {
        count: config.count,
        tls: config.tls,
        timing: Timing {
            power_on: Duration::ZERO,
            graceful_off: Duration::ZERO,
            task: Duration::ZERO,
        },
        ..SimFleetConfig::default()
    })
    .await?;
    let fleet_start_s = started.elapsed().as_secs_f64();
    let targets: Vec<(String, (String, Option<TlsPolicy>))> = fleet
        .endpoints()
        .iter()
        .map(|ep| {
            (
                ep.redfish_url.clone(),
                (
                    ep.redfish_url.clone(),
                    ep.fingerprint.map(TlsPolicy::Pinned),
                ),
            )
        })
        .collect();
    let options = FleetOptions {
        concurrency: config.concurrency,
        attempt_timeout: config.attempt_timeout,
        max_attempts: 2,
        ..FleetOptions::default()
    };
    let timeout = config.attempt_timeout;
    let summary = fleet::run(targets, options, move |target, _attempt| async move {
        let (url, tls) = &*target;
        let client = sweep_client(url, *tls, timeout)?;
        client.power_state().await
    })
    .await;
    let sweep_s = summary.elapsed.as_secs_f64();
    let kiln_per_s = if sweep_s > 0.0 {
        config.count as f64 / sweep_s
    } else {
        0.0
    };
    Ok(SweepBenchReport {
        count: config.count,
        fleet_start_s,
        sweep_s,
        kiln_per_s,
        ipmitool_per_s: None,
        ratio: None,
        failed: summary.failed.len(),
        failures_by_kind: summary
            .failures_by_kind()
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect(),
    })
}
