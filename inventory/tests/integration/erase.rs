//! Erase records: stored per node in batches, the latest batch is the latest turnover, a report is stored once,
//! and the erase before a lease is found by time.

use chrono::{DateTime, Duration, Utc};
use kiln_inventory::{
    AcceptanceRule, EraseMethod, EraseRecord, EraseResult, NistClass, TriedMethod,
};

use crate::both_backends;
use crate::support::{TestDb, csv_rows, make_available};

both_backends!(
    batches_are_per_node_and_reports_are_stored_once,
    the_ended_lease_and_the_erase_before_a_lease
);

fn record(device: &str, ok: bool, at: DateTime<Utc>) -> EraseRecord {
    EraseRecord {
        device: device.into(),
        model: "QEMU NVMe Ctrl".into(),
        serial: "deadbeef".into(),
        bytes: 1 << 30,
        method: Some(if ok {
            EraseMethod::NvmeFormatCrypto
        } else {
            EraseMethod::NvmeFormatUserData
        }),
        nist: ok.then_some(NistClass::Purge),
        tried: vec![TriedMethod {
            method: EraseMethod::NvmeSanitizeCrypto,
            error: "not supported by the device".into(),
        }],
        started_at: at,
        finished_at: at + Duration::seconds(3),
        verified: ok,
        result: if ok {
            EraseResult::Ok
        } else {
            EraseResult::Failed
        },
        error: (!ok).then(|| "I/O error".into()),
        verification: None,
    }
}

async fn batches_are_per_node_and_reports_are_stored_once(db: TestDb) {
    db.import_csv(&csv_rows(1, 2)).await.expect("import");
    let a = db.store.node_by_serial("SN1-0").await.expect("a");
    let b = db.store.node_by_serial("SN1-1").await.expect("b");
    assert!(db.store.erase_records(a.id).await.expect("read").is_empty());
    assert_eq!(
        db.store
            .record_erase(a.id, None, Some(1), &[])
            .await
            .expect("empty"),
        None
    );
    let t0 = db.store.now();
    let first = [
        record("/dev/nvme0n1", true, t0),
        record("/dev/nvme1n1", false, t0),
    ];
    assert_eq!(
        db.store
            .record_erase(a.id, Some(7), Some(10), &first)
            .await
            .expect("first"),
        Some(1)
    );
    // The same report again: nothing new.
    assert_eq!(
        db.store
            .record_erase(a.id, Some(7), Some(10), &first)
            .await
            .expect("again"),
        Some(1)
    );
    // Another node's numbering is its own.
    assert_eq!(
        db.store
            .record_erase(b.id, None, None, &[record("/dev/vda", true, t0)])
            .await
            .expect("b"),
        Some(1)
    );
    db.clock.advance(Duration::minutes(10));
    let t1 = db.store.now();
    let second = [
        record("/dev/nvme0n1", true, t1),
        record("/dev/nvme1n1", true, t1),
    ];
    assert_eq!(
        db.store
            .record_erase(a.id, Some(7), Some(11), &second)
            .await
            .expect("second"),
        Some(2)
    );
    let latest = db.store.erase_records(a.id).await.expect("latest");
    assert_eq!(latest.len(), 2);
    assert!(latest.iter().all(|r| r.batch == 2 && r.record.is_ok()));
    assert_eq!(latest[0].record, second[0]);
    assert_eq!(latest[1].record.device, "/dev/nvme1n1");
    assert_eq!(latest[0].lease_id, Some(7));
    assert_eq!(latest[0].report_id, Some(11));
    assert_eq!(latest[0].recorded_at, t1);
    let history = db.store.erase_history(a.id).await.expect("history");
    assert_eq!(
        history.iter().map(|r| r.batch).collect::<Vec<_>>(),
        vec![1, 1, 2, 2]
    );
    assert_eq!(history[1].record, first[1]);
    assert_eq!(history[1].record.error.as_deref(), Some("I/O error"));
    // Before the second run, the first run is the latest.
    let before = db
        .store
        .erase_records_before(a.id, t1 - Duration::seconds(1))
        .await
        .expect("before");
    assert_eq!(before.len(), 2);
    assert!(before.iter().all(|r| r.batch == 1));
    assert!(
        db.store
            .erase_records_before(a.id, t0 - Duration::seconds(1))
            .await
            .expect("none before")
            .is_empty()
    );
    assert_eq!(db.store.erase_records(b.id).await.expect("b").len(), 1);
}

async fn the_ended_lease_and_the_erase_before_a_lease(db: TestDb) {
    db.import_csv(&csv_rows(1, 2)).await.expect("import");
    make_available(&db, &["SN1-0", "SN1-1"]).await;
    let a = db.store.node_by_serial("SN1-0").await.expect("a");
    assert_eq!(
        db.store.last_released_lease(a.id).await.expect("none"),
        None
    );
    let hall = db.store.hall_by_name("H1").await.expect("hall");
    let lessee = db.store.upsert_lessee("acme", None).await.expect("lessee");
    let lease = db
        .store
        .lease_hall(
            hall.id,
            lessee.id,
            db.store.now(),
            None,
            AcceptanceRule::AllNodes,
            "admin",
        )
        .await
        .expect("lease")
        .lease;
    assert_eq!(
        db.store.last_released_lease(a.id).await.expect("active"),
        None
    );
    db.clock.advance(Duration::hours(1));
    db.store
        .release_lease(lease.id, "admin")
        .await
        .expect("release");
    assert_eq!(
        db.store.last_released_lease(a.id).await.expect("released"),
        Some(lease.id)
    );
}
