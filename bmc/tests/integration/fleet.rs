//! The fleet runner: bounded concurrency, retries of transient errors only, per-attempt timeouts, summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kiln_bmc::fleet::{self, FleetOptions};
use kiln_bmc::redfish::{AuthMode, RedfishClient, RedfishConfig, TlsPolicy};
use kiln_bmc::{Bmc, BmcError, Credentials, PowerState};
use kiln_bmc_sim::{SimFleet, SimFleetConfig};

use crate::common::fast_timing;

fn busy(addr: &str) -> BmcError {
    BmcError::Busy {
        addr: addr.into(),
        detail: "simulated".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_with_backoff_and_permanent_ones_are_not() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let targets: Vec<(String, usize)> = (0..3).map(|i| (format!("bmc{i}"), i)).collect();
    let options = FleetOptions {
        max_attempts: 3,
        ..FleetOptions::default()
    };
    let started = tokio::time::Instant::now();
    let summary = fleet::run(targets, options, move |target, attempt| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            match *target {
                // Busy twice, then fine.
                0 if attempt < 3 => Err(busy("bmc0")),
                0 => Ok(attempt),
                // Always busy: gives up after 3 attempts.
                1 => Err(busy("bmc1")),
                // Permanent: one attempt only.
                _ => Err(BmcError::Auth {
                    addr: "bmc2".into(),
                    tried: "basic auth",
                }),
            }
        }
    })
    .await;
    assert_eq!(summary.ok, vec![("bmc0".to_string(), 3)]);
    let mut failed: Vec<(String, &str, u32)> = summary
        .failed
        .iter()
        .map(|f| (f.target.clone(), f.kind, f.attempts))
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        vec![
            ("bmc1".to_string(), "busy", 3),
            ("bmc2".to_string(), "auth", 1)
        ]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3 + 3 + 1);
    // Two backoffs of at least 200 ms and 400 ms happened (in paused time).
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    let mut kinds = summary.failures_by_kind();
    kinds.sort();
    assert_eq!(kinds, vec![("auth", 1), ("busy", 1)]);
}

/// Decrements the in-flight counter when dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded_and_slow_targets_time_out() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (flight, high) = (in_flight.clone(), peak.clone());
    let targets: Vec<(String, u64)> = (0..40).map(|i| (format!("bmc{i}"), i)).collect();
    let options = FleetOptions {
        concurrency: 4,
        attempt_timeout: Duration::from_secs(1),
        max_attempts: 1,
        ..FleetOptions::default()
    };
    let summary = fleet::run(targets, options, move |target, _| {
        let (flight, high) = (flight.clone(), high.clone());
        async move {
            let now = flight.fetch_add(1, Ordering::SeqCst) + 1;
            high.fetch_max(now, Ordering::SeqCst);
            // Leaves the in-flight count also when a timeout drops this future.
            let _leave = InFlight(flight);
            // Every tenth BMC hangs past the attempt timeout.
            let pause = if *target % 10 == 0 {
                Duration::from_secs(60)
            } else {
                Duration::from_millis(50)
            };
            tokio::time::sleep(pause).await;
            Ok(*target)
        }
    })
    .await;
    assert_eq!(summary.ok.len(), 36);
    assert_eq!(summary.failed.len(), 4);
    assert!(summary.failed.iter().all(|f| f.kind == "timeout"));
    assert!(
        peak.load(Ordering::SeqCst) <= 4,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert_eq!(peak.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn power_sweep_over_a_simulated_fleet_reports_failures_by_reason() {
    let fleet = SimFleet::start(SimFleetConfig {
        count: 24,
        timing: fast_timing(),
        ..SimFleetConfig::default()
    })
    .await
    .expect("fleet");
    fleet.endpoints()[3]
        .bmc
        .update_faults(|f| f.wrong_credentials = true);
    fleet.endpoints()[5].bmc.update_faults(|f| f.busy = true);
    fleet.endpoints()[7].bmc.force_power(PowerState::On);
    let targets: Vec<(String, (String, Option<TlsPolicy>))> = fleet
        .endpoints()
        .iter()
        .map(|e| {
            (
                e.index.to_string(),
                (e.redfish_url.clone(), e.fingerprint.map(TlsPolicy::Pinned)),
            )
        })
        .collect();
    let options = FleetOptions {
        concurrency: 8,
        max_attempts: 2,
        backoff_initial: Duration::from_millis(10),
        ..FleetOptions::default()
    };
    let summary = fleet::run(targets, options, |target, _| async move {
        let (url, tls) = &*target;
        let mut config =
            RedfishConfig::new(url.clone(), Credentials::new("admin", "password"), *tls);
        config.auth = AuthMode::Basic;
        RedfishClient::new(config)?.power_state().await
    })
    .await;
    assert_eq!(summary.ok.len(), 22);
    let on: Vec<&str> = summary
        .ok
        .iter()
        .filter(|(_, s)| *s == PowerState::On)
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(on, vec!["7"]);
    let mut failed: Vec<(String, &str, u32)> = summary
        .failed
        .iter()
        .map(|f| (f.target.clone(), f.kind, f.attempts))
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        vec![("3".to_string(), "auth", 1), ("5".to_string(), "busy", 2)]
    );
}
