//! BMC observations from sweeps: power state and reachability per node, kept apart from the lifecycle state.

use chrono::Duration;
use kiln_inventory::{BmcObservation, NodeState, ObservedPower};

use crate::both_backends;
use crate::support::{TestDb, csv_rows};

both_backends!(sweep_results_are_kept_per_node_and_leave_the_lifecycle_alone);

async fn sweep_results_are_kept_per_node_and_leave_the_lifecycle_alone(db: TestDb) {
    db.import_csv(&csv_rows(1, 2)).await.expect("import");
    let a = db.store.node_by_serial("SN1-0").await.expect("a");
    let b = db.store.node_by_serial("SN1-1").await.expect("b");
    assert_eq!(db.store.bmc_status(a.id).await.expect("read"), None);

    let first_sweep = db.store.now();
    db.store
        .record_bmc_observations(&[
            (a.id, BmcObservation::Power(ObservedPower::On)),
            (
                b.id,
                BmcObservation::Failed {
                    reachable: false,
                    kind: "timeout".into(),
                    error: "BMC 10.1.0.1 did not answer within 5s".into(),
                },
            ),
        ])
        .await
        .expect("record");
    let status = db
        .store
        .bmc_status(a.id)
        .await
        .expect("read")
        .expect("a seen");
    assert!(status.reachable);
    assert_eq!(status.power_state, Some(ObservedPower::On));
    assert_eq!(status.power_seen_at, Some(first_sweep));
    assert_eq!(status.error_kind, None);
    let status = db
        .store
        .bmc_status(b.id)
        .await
        .expect("read")
        .expect("b tried");
    assert!(!status.reachable);
    assert_eq!(status.power_state, None);
    assert_eq!(status.error_kind.as_deref(), Some("timeout"));

    // A later failure keeps the last power state seen and when; a later success clears the error.
    db.clock.advance(Duration::minutes(5));
    let second_sweep = db.store.now();
    db.store
        .record_bmc_observations(&[
            (
                a.id,
                BmcObservation::Failed {
                    reachable: true,
                    kind: "auth".into(),
                    error: "x".repeat(2000),
                },
            ),
            (b.id, BmcObservation::Power(ObservedPower::Off)),
        ])
        .await
        .expect("record again");
    let status = db.store.bmc_status(a.id).await.expect("read").expect("a");
    assert!(status.reachable, "a refusal is an answer");
    assert_eq!(status.error_kind.as_deref(), Some("auth"));
    assert_eq!(status.power_state, Some(ObservedPower::On));
    assert_eq!(status.power_seen_at, Some(first_sweep));
    assert_eq!(status.checked_at, second_sweep);
    assert_eq!(status.error.map(|e| e.len()), Some(500));
    let status = db.store.bmc_status(b.id).await.expect("read").expect("b");
    assert!(status.reachable);
    assert_eq!(status.power_state, Some(ObservedPower::Off));
    assert_eq!(status.error, None);

    // Observations are not lifecycle: the nodes are still where the import put them.
    let a = db.store.node_by_serial("SN1-0").await.expect("a");
    assert_eq!(a.state, NodeState::Enrolled);
}
