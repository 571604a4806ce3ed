//! The checks beyond the burn-in's NVML samples, through the engine: the kernel log read at burn-in start and
//! end, DCGM's diagnostic where installed, and fleet baselines (flagged, or gated by the SKU profile).

use kiln_inventory::NodeState;
use kiln_inventory::fleet::METRIC_STRESS_THROUGHPUT;

use crate::lifecycle_support::{Faults, Hall, quarantine_reason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xid_only_in_the_kernel_log_fails_the_burn_in() {
    let faults = Faults {
        kernel_xid: ["SN1".to_string()].into(),
        ..Faults::default()
    };
    let hall = Hall::new(1, 2, faults).await;
    hall.settle(200).await;
    assert_eq!(hall.state_of("SN0").await, NodeState::Available);
    assert_eq!(hall.state_of("SN1").await, NodeState::Quarantined);
    let reason = quarantine_reason(&hall, "SN1").await;
    assert!(reason.starts_with("burn-in failed"), "{reason}");
    assert!(
        reason.contains("kernel.xid") && reason.contains("0000:3a:00"),
        "{reason}"
    );
    // The healthy node's burn-in recorded its kernel log checks, and no DCGM (not installed): noted.
    let node = hall.store.node_by_serial("SN0").await.expect("node");
    let runs = hall.store.health_runs(node.id).await.expect("runs");
    let burn_in = runs
        .iter()
        .find(|r| r.kind == "burn_in")
        .expect("burn-in run");
    assert!(burn_in.evidence.to_string().contains("kernel.events"));
    let events = hall.store.node_events(node.id).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.reason.contains("DCGM diag is not installed")),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dcgm_diagnostic_is_its_own_health_run_and_fails_the_node() {
    let faults = Faults {
        dcgm_fail: ["SN0".to_string()].into(),
        ..Faults::default()
    };
    let hall = Hall::new(1, 2, faults).await;
    hall.settle(200).await;
    assert_eq!(hall.state_of("SN1").await, NodeState::Available);
    let node = hall.store.node_by_serial("SN0").await.expect("node");
    let events = hall.store.node_events(node.id).await.expect("events");
    assert_eq!(node.state, NodeState::Quarantined, "{events:#?}");
    let reason = quarantine_reason(&hall, "SN0").await;
    assert!(reason.contains("DCGM diag"), "{reason}");
    let node = hall.store.node_by_serial("SN0").await.expect("node");
    let runs = hall.store.health_runs(node.id).await.expect("runs");
    let dcgm = runs.iter().find(|r| r.kind == "dcgm").expect("dcgm run");
    assert!(!dcgm.passed);
    assert!(
        dcgm.evidence.to_string().contains("DCGM_FR_"),
        "{}",
        dcgm.evidence
    );
}

/// Nine nodes, one 7% slower in its stress tool: within every absolute floor, so it becomes available, flagged
/// in its history; with the SKU gating on fleet outliers it is quarantined instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_node_is_flagged_against_the_hall_median_or_gated() {
    for gate in [false, true] {
        let faults = Faults {
            slow_stress: ["SN4".to_string()].into(),
            fleet_gate: gate,
            ..Faults::default()
        };
        // One node per rack: each NCCL group is a single node, as the fixtures are.
        let hall = Hall::new(9, 1, faults).await;
        hall.settle(400).await;
        let node = hall.store.node_by_serial("SN4").await.expect("node");
        let events = hall.store.node_events(node.id).await.expect("events");
        if gate {
            assert_eq!(node.state, NodeState::Quarantined, "{events:#?}");
            let reason = quarantine_reason(&hall, "SN4").await;
            assert!(
                reason.starts_with("below the hall's fleet baseline"),
                "{reason}"
            );
            assert!(reason.contains("7.0% below the hall median"), "{reason}");
        } else {
            assert_eq!(node.state, NodeState::Available, "{events:#?}");
            assert!(
                events.iter().any(|e| e.reason.contains("fleet outlier")
                    && e.reason.contains("below the hall median")),
                "{events:#?}"
            );
        }
        for serial in ["SN0", "SN8"] {
            let node = hall.store.node_by_serial(serial).await.expect("node");
            let events = hall.store.node_events(node.id).await.expect("events");
            assert_eq!(node.state, NodeState::Available, "{serial}: {events:#?}");
        }
        let hall_id = hall.store.hall_by_name("H1").await.expect("hall").id;
        let outliers = hall
            .store
            .fleet_outliers(hall_id, 0.05)
            .await
            .expect("outliers");
        assert_eq!(
            outliers
                .iter()
                .map(|o| (o.serial.as_str(), o.metric.as_str()))
                .collect::<Vec<_>>(),
            vec![("SN4", METRIC_STRESS_THROUGHPUT)]
        );
    }
}
