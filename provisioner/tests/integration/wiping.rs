//! Tenant turnover in the engine: a released node is powered off cold, its TPM cleared where the BMC offers it,
//! erased with records stored, and verified again as on day one; a failed erase climbs the wipe ladder (retry,
//! power cycle, the next method) and ends in quarantine with the records' reason; a repair wipes again.

use kiln_inventory::{AcceptanceRule, EraseMethod, NistClass, NodeEvent, NodeState};

use crate::lifecycle_support::{Faults, Hall};

/// Leases hall H1 to a lessee and releases it at once; returns the lease id.
async fn lease_and_release(hall: &Hall) -> i64 {
    let store = &hall.store;
    let h1 = store.hall_by_name("H1").await.expect("hall");
    let lessee = store.upsert_lessee("acme", None).await.expect("lessee");
    let lease = store
        .lease_hall(
            h1.id,
            lessee.id,
            store.now(),
            None,
            AcceptanceRule::AllNodes,
            "admin",
        )
        .await
        .expect("lease")
        .lease;
    hall.clock.advance(chrono::Duration::hours(1));
    store
        .release_lease(lease.id, "admin")
        .await
        .expect("release");
    lease.id
}

async fn events(hall: &Hall, serial: &str) -> Vec<NodeEvent> {
    let node = hall.store.node_by_serial(serial).await.expect("node");
    hall.store.node_events(node.id).await.expect("events")
}

fn position(events: &[NodeEvent], what: &str) -> usize {
    events
        .iter()
        .position(|e| e.reason.contains(what))
        .unwrap_or_else(|| panic!("no event with {what:?}: {events:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_node_reaches_a_known_state_is_erased_and_verified_again() {
    let faults = Faults {
        tpm_offered: ["SN0".to_string()].into(),
        ..Faults::default()
    };
    let hall = Hall::new(1, 2, faults).await;
    hall.settle(150).await;
    let lease = lease_and_release(&hall).await;
    let nodes = hall.settle(300).await;
    assert!(
        nodes.iter().all(|n| n.state == NodeState::Available),
        "{nodes:?}"
    );
    for serial in ["SN0", "SN1"] {
        let events = events(&hall, serial).await;
        let wiping = events
            .iter()
            .position(|e| e.to_state == Some(NodeState::Wiping))
            .expect("released to wiping");
        let cold = position(&events, "cold power-off 30 s: GPU and host memory cleared");
        let bios = position(&events, "BIOS reset: not managed yet");
        let erased = events
            .iter()
            .position(|e| {
                e.from_state == Some(NodeState::Wiping) && e.to_state == Some(NodeState::Imaging)
            })
            .expect("wiping → imaging");
        assert!(wiping < cold && cold < bios && bios < erased, "{events:#?}");
        // The cold power-off lasted the profile's 30 s on the engine's clock.
        assert!(events[cold].at - events[wiping].at >= chrono::Duration::seconds(30));
        assert!(
            events[erased]
                .reason
                .contains("nvme0n1: nvme_format_crypto (purge), verified"),
            "{}",
            events[erased].reason
        );
        // Then as on day one: a second image write, burn-in and the fabric test, back to available.
        let after: Vec<_> = events[erased..].iter().filter_map(|e| e.to_state).collect();
        for state in [
            NodeState::Booting,
            NodeState::BurnIn,
            NodeState::FabricTest,
            NodeState::Available,
        ] {
            assert!(after.contains(&state), "{serial}: {after:?}");
        }
        let node = hall.store.node_by_serial(serial).await.expect("node");
        let records = hall.store.erase_records(node.id).await.expect("records");
        assert_eq!(records.len(), 1, "{records:?}");
        assert!(records[0].record.is_ok());
        assert_eq!(records[0].record.nist, Some(NistClass::Purge));
        assert_eq!(records[0].lease_id, Some(lease));
        let burn_ins = hall
            .store
            .health_runs(node.id)
            .await
            .expect("runs")
            .iter()
            .filter(|r| r.kind == "burn_in")
            .count();
        assert_eq!(burn_ins, 2, "{serial}: burn-in again after the turnover");
    }
    let sn0 = events(&hall, "SN0").await;
    position(&sn0, "TPM cleared");
    let sn1 = events(&hall, "SN1").await;
    let tpm = &sn1[position(&sn1, "TPM clear: not offered by this BMC")];
    assert!(tpm.reason.contains("redfish"), "{}", tpm.reason);
    let state = hall.bmcs.state.lock().expect("lock");
    assert_eq!(state.tpm_clears.get("SN0"), Some(&1));
    assert_eq!(state.tpm_clears.get("SN1"), None);
    assert!(state.power_offs.get("SN1").copied().unwrap_or(0) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_erase_is_retried_power_cycled_then_wiped_with_the_next_method() {
    let hall = Hall::new(1, 1, Faults::default()).await;
    hall.settle(150).await;
    hall.set_faults(Faults {
        wipe_stuck: [("SN0".to_string(), vec![EraseMethod::NvmeFormatCrypto])].into(),
        ..Faults::default()
    });
    lease_and_release(&hall).await;
    let nodes = hall.settle(500).await;
    assert_eq!(
        nodes[0].state,
        NodeState::Available,
        "{:#?}",
        events(&hall, "SN0").await
    );
    let skips: Vec<Vec<EraseMethod>> = hall
        .wipe_boots
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, skip)| skip.clone())
        .collect();
    assert_eq!(
        skips,
        vec![
            vec![],
            vec![],
            vec![],
            vec![
                EraseMethod::NvmeSanitizeCrypto,
                EraseMethod::NvmeFormatCrypto
            ]
        ],
        "retry and power cycle run the whole chain; the next method skips what failed"
    );
    let events = events(&hall, "SN0").await;
    position(&events, "remediation 1 of wipe: retry wiping");
    position(&events, "remediation 2 of wipe: power-cycled, retry wiping");
    position(
        &events,
        "remediation 3 of wipe: retry wiping with the next erase method (skipping nvme_sanitize_crypto, nvme_format_crypto)",
    );
    let failed = position(
        &events,
        "secure erase failed: nvme0n1: nvme_sanitize_crypto: not supported by the device",
    );
    assert!(
        events[failed]
            .reason
            .contains("nvme_format_crypto: verification failed")
    );
    let node = hall.store.node_by_serial("SN0").await.expect("node");
    let history = hall.store.erase_history(node.id).await.expect("history");
    assert_eq!(
        history.iter().map(|r| r.batch).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(history[..3].iter().all(|r| !r.record.is_ok()));
    let latest = hall.store.erase_records(node.id).await.expect("latest");
    assert_eq!(
        latest[0].record.method,
        Some(EraseMethod::NvmeFormatUserData)
    );
    assert_eq!(latest[0].record.nist, Some(NistClass::Clear));
    // The turnover is over: the next one starts from the strongest method again.
    let work = hall.store.node_work(node.id).await.expect("work");
    let work = kiln_provisioner::lifecycle::Work::parse(&node, work.work.as_deref());
    assert!(
        work.erase_skip.is_empty() && work.erase_failed.is_empty(),
        "{work:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erase_that_never_takes_quarantines_with_the_reason_and_a_repair_wipes_again() {
    let hall = Hall::new(1, 1, Faults::default()).await;
    hall.settle(150).await;
    hall.set_faults(Faults {
        wipe_stuck: [(
            "SN0".to_string(),
            vec![
                EraseMethod::NvmeFormatCrypto,
                EraseMethod::NvmeFormatUserData,
                EraseMethod::Overwrite,
            ],
        )]
        .into(),
        ..Faults::default()
    });
    lease_and_release(&hall).await;
    hall.settle(500).await;
    assert_eq!(hall.state_of("SN0").await, NodeState::Quarantined);
    let events_before = events(&hall, "SN0").await;
    let reason = &events_before
        .iter()
        .rev()
        .find(|e| e.to_state == Some(NodeState::Quarantined))
        .expect("quarantined")
        .reason;
    assert!(
        reason.starts_with(
            "secure erase failed: nvme0n1: nvme_format_user_data: verification failed"
        ),
        "{reason}"
    );
    assert!(reason.contains("after 3 remediation attempts"), "{reason}");
    // The last try skipped the methods that had failed; the reason still names what failed first.
    assert!(
        reason.contains(
            "(earlier in this turnover: nvme0n1: nvme_sanitize_crypto: not supported by the device; \
             nvme_format_crypto: verification failed"
        ),
        "{reason}"
    );
    // Never imaged (the tenant's data would survive under the new image) while the erase failed.
    let release = events_before
        .iter()
        .position(|e| e.to_state == Some(NodeState::Wiping))
        .expect("wiping");
    assert!(
        events_before[release..]
            .iter()
            .all(|e| e.to_state != Some(NodeState::Imaging)),
        "{events_before:#?}"
    );
    // The technician replaces the drive: the repair goes back to wiping, never straight to imaging.
    hall.set_faults(Faults::default());
    kiln_provisioner::lifecycle::repair_done(&hall.store, "SN0", "tech", "drive replaced")
        .await
        .expect("repair");
    assert_eq!(hall.state_of("SN0").await, NodeState::Wiping);
    hall.settle(300).await;
    assert_eq!(hall.state_of("SN0").await, NodeState::Available);
    let node = hall.store.node_by_serial("SN0").await.expect("node");
    let latest = hall.store.erase_records(node.id).await.expect("latest");
    assert_eq!(latest[0].record.method, Some(EraseMethod::NvmeFormatCrypto));
    let skips = hall.wipe_boots.lock().expect("lock").last().cloned();
    assert_eq!(
        skips,
        Some(("SN0".to_string(), vec![])),
        "a repair starts the chain afresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wipe_agent_that_goes_silent_fails_as_a_stalled_wipe_without_a_second_boot() {
    let hall = Hall::new(1, 1, Faults::default()).await;
    hall.settle(150).await;
    hall.set_faults(Faults {
        wipe_silent: ["SN0".to_string()].into(),
        ..Faults::default()
    });
    lease_and_release(&hall).await;
    // Past the boot timeout (20 s on this clock) the erase is not re-booted: a running erase would be cut.
    for _ in 0..300 {
        hall.settle(1).await;
        if hall.state_of("SN0").await != NodeState::Wiping {
            break;
        }
    }
    let events = events(&hall, "SN0").await;
    let silent = position(
        &events,
        "secure erase failed: the wipe agent went silent: no report for",
    );
    let wiping = events
        .iter()
        .rposition(|e| e.to_state == Some(NodeState::Wiping) && e.reason.contains("released"))
        .expect("released into wiping");
    assert_eq!(
        events[wiping..silent]
            .iter()
            .filter(|e| e.reason.contains("asked the BMC for a one-time pxe boot"))
            .count(),
        1,
        "{events:#?}"
    );
}
