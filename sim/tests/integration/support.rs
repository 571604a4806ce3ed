//! Test helpers: a fast hall config and powering nodes through their simulated BMCs.

use std::time::Duration;

use kiln_sim::{SimConfig, SimHall};

/// `nodes` nodes, durations compressed 1000× (POST 120 ms, image write 180 ms), 2 per rack.
pub fn fast_config(nodes: usize) -> SimConfig {
    let mut config = SimConfig::new(nodes);
    config.time_scale = 0.001;
    config.nodes_per_rack = 2;
    config
}

/// Sets a one-time boot override (`Pxe`, `Hdd`) and powers node `index` on (or restarts it).
pub fn power_on(hall: &SimHall, index: usize, target: Option<&str>) {
    let bmc = &hall.fleet().endpoints()[index].bmc;
    if let Some(target) = target {
        bmc.set_boot("Once", target, None);
    }
    bmc.apply_reset("ForceRestart");
}

/// Waits until `check` holds; panics with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
