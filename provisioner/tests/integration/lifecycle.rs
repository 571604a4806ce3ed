//! The lifecycle engine over fakes on a manual clock: the happy path, remediation ladders ending in quarantine
//! with the planted reason, repair, and NCCL bisection that sends only the bad node to remediation.

use std::collections::HashMap;

use kiln_inventory::{NodeEvent, NodeState};

use crate::lifecycle_support::{Faults, Hall, quarantine_reason};

/// Every transition in the log is an allowed arrow and starts where the previous one ended.
fn assert_consistent(serial: &str, events: &[NodeEvent]) {
    let mut state = NodeState::Enrolled;
    for event in events {
        if let (Some(from), Some(to)) = (event.from_state, event.to_state) {
            assert_eq!(from, state, "{serial}: gap in the event log at {event:?}");
            assert!(
                from.can_transition_to(to),
                "{serial}: forbidden {from} → {to}"
            );
            state = to;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_hall_reaches_available_with_one_image_write_each() {
    let hall = Hall::new(2, 2, Faults::default()).await;
    let nodes = hall.settle(120).await;
    let states: HashMap<String, NodeState> =
        nodes.iter().map(|n| (n.serial.clone(), n.state)).collect();
    assert!(
        nodes.iter().all(|n| n.state == NodeState::Available),
        "{states:?}"
    );
    for node in &nodes {
        let events = hall.store.node_events(node.id).await.expect("events");
        assert_consistent(&node.serial, &events);
        let writes = events
            .iter()
            .filter(|e| e.reason.starts_with("image write"))
            .count();
        assert_eq!(writes, 1, "{}: {events:#?}", node.serial);
        let runs = hall.store.health_runs(node.id).await.expect("runs");
        let kinds: Vec<&str> = runs.iter().map(|r| r.kind.as_str()).collect();
        for kind in ["post_image", "burn_in", "nccl"] {
            assert!(kinds.contains(&kind), "{}: {kinds:?}", node.serial);
        }
        assert!(
            events
                .iter()
                .any(|e| e.reason.starts_with("pinned SSH host key SHA256:")),
            "{}: host key pinned",
            node.serial
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_bmc_is_quarantined_after_the_ladder_and_others_proceed() {
    let faults = Faults {
        dead_bmc: ["SN1".to_string()].into(),
        ..Faults::default()
    };
    let hall = Hall::new(1, 2, faults).await;
    let nodes = hall.settle(200).await;
    assert_eq!(
        hall.state_of("SN0").await,
        NodeState::Available,
        "{nodes:?}"
    );
    assert_eq!(hall.state_of("SN1").await, NodeState::Quarantined);
    let reason = quarantine_reason(&hall, "SN1").await;
    assert!(reason.starts_with("BMC unreachable"), "{reason}");
    assert!(reason.contains("after 2 remediation attempts"), "{reason}");
    let node = hall.store.node_by_serial("SN1").await.expect("node");
    let events = hall.store.node_events(node.id).await.expect("events");
    assert_consistent("SN1", &events);
    let remediations = events
        .iter()
        .filter(|e| e.to_state == Some(NodeState::Remediating))
        .count();
    assert_eq!(
        remediations, 3,
        "three failures: two retries then quarantine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_gpu_is_quarantined_with_the_mismatch_and_repair_brings_it_back() {
    let faults = Faults {
        missing_gpu: ["SN0".to_string()].into(),
        ..Faults::default()
    };
    let hall = Hall::new(1, 1, faults).await;
    hall.settle(120).await;
    assert_eq!(hall.state_of("SN0").await, NodeState::Quarantined);
    let reason = quarantine_reason(&hall, "SN0").await;
    assert!(
        reason.starts_with("hardware does not match the SKU"),
        "{reason}"
    );
    assert!(reason.contains("found 7"), "{reason}");
    // The technician swaps the GPU and marks the repair done: back to inspecting.
    let done = kiln_provisioner::lifecycle::repair_done(&hall.store, "SN0", "tech", "GPU swapped")
        .await
        .map(|_| ());
    assert!(done.is_ok(), "{done:?}");
    assert!(
        kiln_provisioner::lifecycle::repair_done(&hall.store, "SN0", "tech", "")
            .await
            .is_err(),
        "a second repair of a node that is not quarantined is refused"
    );
    hall.set_faults(Faults::default());
    hall.settle(120).await;
    assert_eq!(hall.state_of("SN0").await, NodeState::Available);
    let node = hall.store.node_by_serial("SN0").await.expect("node");
    let events = hall.store.node_events(node.id).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.reason.contains("repaired by a technician"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technicians_reimage_and_retest_go_back_through_the_checks() {
    use kiln_provisioner::lifecycle::{RetestFrom, reimage, retest};
    let hall = Hall::new(2, 2, Faults::default()).await;
    hall.settle(120).await;
    for serial in ["SN0", "SN1", "SN2"] {
        let state = hall.state_of(serial).await;
        if state != NodeState::Available {
            panic!(
                "{serial} {state}: {}",
                quarantine_reason(&hall, serial).await
            );
        }
    }
    let image = Some(("os".to_string(), "2".to_string()));
    let event = reimage(&hall.store, "SN0", image, "tech", "bad BIOS flash")
        .await
        .expect("reimage");
    assert_eq!(event.to_state, Some(NodeState::Imaging));
    assert_eq!(
        event.reason,
        "reimage with os:2 requested by a technician (bad BIOS flash)"
    );
    let unknown = reimage(
        &hall.store,
        "SN1",
        Some(("os".into(), "9".into())),
        "tech",
        "",
    )
    .await
    .expect_err("an image not in the catalog");
    assert!(
        unknown.to_string().contains("os:9 is not in the catalog"),
        "{unknown}"
    );
    let busy = retest(&hall.store, "SN0", RetestFrom::BurnIn, "tech", "")
        .await
        .expect_err("a node being imaged");
    assert!(
        busy.to_string().contains("being worked on by the engine"),
        "{busy}"
    );
    let fabric = retest(&hall.store, "SN1", RetestFrom::Fabric, "tech", "")
        .await
        .expect("retest --nccl");
    assert_eq!(fabric.to_state, Some(NodeState::FabricTest));
    let burn = retest(
        &hall.store,
        "SN2",
        RetestFrom::from_flags(false, false),
        "tech",
        "",
    )
    .await
    .expect("retest");
    assert_eq!(burn.to_state, Some(NodeState::BurnIn));
    assert_eq!(
        burn.reason,
        "retest (burn-in, then the fabric test) requested by a technician"
    );

    hall.settle(120).await;
    let count = |runs: &[kiln_inventory::HealthRun], kind: &str| {
        runs.iter().filter(|r| r.kind == kind).count()
    };
    for (serial, writes, burn_ins, nccl) in [("SN0", 2, 2, 2), ("SN1", 1, 1, 2), ("SN2", 1, 2, 2)] {
        assert_eq!(
            hall.state_of(serial).await,
            NodeState::Available,
            "{serial}"
        );
        let node = hall.store.node_by_serial(serial).await.expect("node");
        let events = hall.store.node_events(node.id).await.expect("events");
        assert_consistent(serial, &events);
        let written: Vec<&str> = events
            .iter()
            .filter(|e| e.reason.starts_with("image write"))
            .map(|e| e.reason.as_str())
            .collect();
        assert_eq!(written.len(), writes, "{serial}: {written:?}");
        let runs = hall.store.health_runs(node.id).await.expect("runs");
        assert_eq!(count(&runs, "burn_in"), burn_ins, "{serial}");
        assert_eq!(count(&runs, "nccl"), nccl, "{serial}");
        if serial == "SN0" {
            assert!(written[1].contains("os 2"), "{written:?}");
            // Available again: the technician's image choice is forgotten.
            let work = hall.store.node_work(node.id).await.expect("work");
            let work = kiln_provisioner::lifecycle::Work::parse(&node, work.work.as_deref());
            assert_eq!(work.image, None);
        }
    }
    let unknown = retest(&hall.store, "SN9", RetestFrom::BurnIn, "tech", "")
        .await
        .expect_err("no such node");
    assert!(unknown.to_string().contains("SN9"), "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_nccl_node_is_found_by_bisection_and_only_it_is_remediated() {
    let faults = Faults {
        slow_nccl: ["SN1".to_string()].into(),
        ..Faults::default()
    };
    let hall = Hall::new(1, 2, faults).await;
    hall.settle(200).await;
    assert_eq!(hall.state_of("SN0").await, NodeState::Available);
    assert_eq!(hall.state_of("SN1").await, NodeState::Quarantined);
    let reason = quarantine_reason(&hall, "SN1").await;
    assert!(reason.starts_with("NCCL fabric test failed"), "{reason}");
    let node = hall.store.node_by_serial("SN1").await.expect("node");
    let runs = hall.store.health_runs(node.id).await.expect("runs");
    let nccl = runs.iter().find(|r| r.kind == "nccl").expect("nccl run");
    assert!(!nccl.passed);
    assert!(
        nccl.evidence.to_string().contains("bisection"),
        "bisection kept as evidence"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_in_the_engines_backlog_does_not_count_against_the_sla() {
    // The engine was down (or busy with a hall) for longer than the enrolled SLA of 30 minutes: the nodes were
    // due all along but nobody claimed them. That is not their fault.
    let hall = Hall::new(1, 2, Faults::default()).await;
    hall.clock.advance(chrono::Duration::minutes(45));
    let nodes = hall.settle(120).await;
    for node in &nodes {
        let events = hall.store.node_events(node.id).await.expect("events");
        assert_eq!(node.state, NodeState::Available, "{events:#?}");
        assert!(
            events.iter().all(|e| !e.reason.contains("SLA")),
            "{events:#?}"
        );
    }

    // A node handled on time that still stays past its SLA (its ramdisk never answers, and discovering's SLA
    // is shorter than two boot timeouts) does fail.
    let hall = Hall::with_config(1, 1, Faults::default(), |config| {
        config
            .sla
            .insert(NodeState::Discovering, std::time::Duration::from_secs(30));
    })
    .await;
    for _ in 0..30 {
        hall.engine.run_once(1000).await.expect("round");
        hall.clock.advance(chrono::Duration::seconds(2));
    }
    let node = hall.store.node_by_serial("SN0").await.expect("node");
    let events = hall.store.node_events(node.id).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.reason.contains("discovering for longer than its SLA")),
        "{events:#?}"
    );
}
