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
    /// How many BMCs (the first ones) also serve IPMI, for the sequential `ipmitool` loop whose rate is
    /// extrapolated; 0 skips ipmitool.
    pub ipmitool_sample: usize,
}

impl Default for SweepBenchConfig {
    fn default() -> Self {
        SweepBenchConfig {
            count: 1000,
            concurrency: 256,
            tls: true,
            attempt_timeout: Duration::from_secs(30),
            ipmitool_sample: 20,
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
    /// CPU seconds (user + system, all threads) the process spent during the sweep: the simulated fleet's
    /// and kiln's work together. On a shared, loaded machine this says more than the wall time; `None` where
    /// `/proc/self/stat` cannot be read.
    pub sweep_cpu_s: Option<f64>,
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

/// CPU seconds (user + system, every thread) this process has used, from `/proc/self/stat` (Linux reports
/// them in USER_HZ = 100 ticks per second).
fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesized command name, which may itself contain spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}

/// Runs `ipmitool -I lanplus -C 3 … power status` once per port, one after another (as an operator's shell
/// loop would), and returns calls per second; `None` if there is no sample or ipmitool is missing or fails.
async fn ipmitool_rate(ports: Vec<u16>) -> Option<f64> {
    if ports.is_empty() {
        return None;
    }
    let sample = ports.len();
    let run = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        for port in ports {
            let status = std::process::Command::new("ipmitool")
                .args([
                    "-I",
                    "lanplus",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "admin",
                    "-P",
                    "password",
                ])
                .args(["-C", "3", "power", "status"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                return None;
            }
        }
        Some(started.elapsed())
    });
    let elapsed = run.await.ok().flatten()?;
    Some(sample as f64 / elapsed.as_secs_f64().max(f64::EPSILON))
}

/// Starts the fleet, sweeps power status over all of it with kiln's fleet runner, then runs a sequential
/// `ipmitool` loop over the first `ipmitool_sample` BMCs (their IPMI halves) and extrapolates its rate.
pub async fn bmc_sweep(config: &SweepBenchConfig) -> Result<SweepBenchReport, SimError> {
    let started = std::time::Instant::now();
    let fleet = SimFleet::start(SimFleetConfig {
        count: config.count,
        tls: config.tls,
        ipmi_count: Some(config.ipmitool_sample.min(config.count)),
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
    let cpu_before = process_cpu_s();
    let summary = fleet::run(targets, options, move |target, _attempt| async move {
        let (url, tls) = &*target;
        let client = sweep_client(url, *tls, timeout)?;
        client.power_state().await
    })
    .await;
    let sweep_cpu_s = cpu_before
        .zip(process_cpu_s())
        .map(|(before, after)| after - before);
    let sweep_s = summary.elapsed.as_secs_f64();
    let kiln_per_s = if sweep_s > 0.0 {
        config.count as f64 / sweep_s
    } else {
        0.0
    };
    let ipmi_ports: Vec<u16> = fleet
        .endpoints()
        .iter()
        .filter_map(|ep| ep.ipmi_port)
        .collect();
    let ipmitool_per_s = ipmitool_rate(ipmi_ports).await;
    let ratio = ipmitool_per_s
        .filter(|rate| *rate > 0.0)
        .map(|rate| kiln_per_s / rate);
    Ok(SweepBenchReport {
        count: config.count,
        fleet_start_s,
        sweep_s,
        sweep_cpu_s,
        kiln_per_s,
        ipmitool_per_s,
        ratio,
        failed: summary.failed.len(),
        failures_by_kind: summary
            .failures_by_kind()
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect(),
    })
}
