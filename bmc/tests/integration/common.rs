//! Helpers shared by the tests.

use std::future::Future;
use std::time::Duration;

use kiln_bmc::Credentials;
use kiln_bmc::redfish::{RedfishClient, RedfishConfig, TlsPolicy};
use kiln_bmc_sim::profile::VendorProfile;
use kiln_bmc_sim::{SimFleet, SimFleetConfig, Timing};

/// Waits until `check` returns true, polling every 10 ms, for at most `limit`. Returns whether it became true.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fast hardware: power-on in 50 ms, tasks in 30 ms.
pub fn fast_timing() -> Timing {
    Timing {
        power_on: Duration::from_millis(50),
        graceful_off: Duration::from_millis(50),
        task: Duration::from_millis(30),
    }
}

/// A one-BMC HTTPS fleet of `profile`.
pub async fn one_bmc(profile: &'static VendorProfile) -> SimFleet {
    SimFleet::start(SimFleetConfig {
        count: 1,
        profiles: vec![profile],
        timing: fast_timing(),
        ..SimFleetConfig::default()
    })
    .await
    .expect("fleet starts")
}

/// A client for the fleet's first BMC, pinned to its certificate, polling fast.
pub fn client_for(fleet: &SimFleet) -> RedfishClient {
    let endpoint = &fleet.endpoints()[0];
    let mut config = RedfishConfig::new(
        endpoint.redfish_url.clone(),
        Credentials::new("admin", "password"),
        endpoint.fingerprint.map(TlsPolicy::Pinned),
    );
    config.poll_interval = Duration::from_millis(10);
    config.task_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(5);
    RedfishClient::new(config).expect("client builds")
}
