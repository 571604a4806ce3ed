//! Per-node firmware: the first reading is one event, a changed version is an event naming old and new, an
//! unchanged reading adds none, a component missing from a reading is kept, and the hall's drift report counts
//! nodes per component and version.

use kiln_inventory::FirmwareComponent;

use crate::both_backends;
use crate::support::{TestDb, csv_rows};

both_backends!(firmware_readings_keep_history_and_count_per_hall);

fn component(id: &str, version: &str) -> FirmwareComponent {
    FirmwareComponent {
        id: id.into(),
        name: Some(format!("{id} firmware")),
        version: Some(version.into()),
        updateable: Some(true),
        software_id: None,
        manufacturer: None,
        health: None,
        source: "redfish".into(),
    }
}

async fn firmware_readings_keep_history_and_count_per_hall(db: TestDb) {
    db.import_csv(&csv_rows(1, 3)).await.expect("import");
    let a = db.store.node_by_serial("SN1-0").await.expect("a");
    let b = db.store.node_by_serial("SN1-1").await.expect("b");
    let first = db
        .store
        .record_node_firmware(
            a.id,
            &[component("BMC", "7.10"), component("BIOS", "2.19.1")],
            "engine",
        )
        .await
        .expect("record");
    assert_eq!(first, ["firmware inventory read: BMC 7.10, BIOS 2.19.1"]);
    let same = db
        .store
        .record_node_firmware(
            a.id,
            &[component("BMC", "7.10"), component("BIOS", "2.19.1")],
            "engine",
        )
        .await
        .expect("record");
    assert!(same.is_empty(), "{same:?}");
    db.clock.advance(chrono::Duration::seconds(60));
    // BIOS updated; the NIC appears; the BMC is missing from this reading and keeps its row.
    let changed = db
        .store
        .record_node_firmware(
            a.id,
            &[component("BIOS", "2.20.0"), component("NIC", "28.39")],
            "engine",
        )
        .await
        .expect("record");
    assert_eq!(
        changed,
        [
            "firmware BIOS changed: 2.19.1 → 2.20.0",
            "firmware NIC first seen: 28.39"
        ]
    );
    let stored = db.store.node_firmware(a.id).await.expect("firmware");
    let versions: Vec<(&str, Option<&str>)> = stored
        .iter()
        .map(|s| (s.component.id.as_str(), s.component.version.as_deref()))
        .collect();
    assert_eq!(
        versions,
        [
            ("BIOS", Some("2.20.0")),
            ("BMC", Some("7.10")),
            ("NIC", Some("28.39"))
        ]
    );
    let bios = &stored[0];
    assert!(bios.changed_at > stored[1].changed_at, "{stored:?}");
    assert_eq!(bios.component.updateable, Some(true));
    let events = db.store.node_events(a.id).await.expect("events");
    let firmware_events: Vec<&str> = events
        .iter()
        .filter(|e| e.reason.starts_with("firmware"))
        .map(|e| e.reason.as_str())
        .collect();
    assert_eq!(firmware_events.len(), 3, "{firmware_events:?}");

    db.store
        .record_node_firmware(b.id, &[component("BIOS", "2.19.1")], "engine")
        .await
        .expect("record");
    let counts = db.store.firmware_counts(Some("H1")).await.expect("counts");
    let lines: Vec<(String, Option<String>, i64)> = counts
        .into_iter()
        .map(|c| (c.component, c.version, c.nodes))
        .collect();
    assert_eq!(
        lines,
        [
            ("BIOS".into(), Some("2.19.1".into()), 1),
            ("BIOS".into(), Some("2.20.0".into()), 1),
            ("BMC".into(), Some("7.10".into()), 1),
            ("NIC".into(), Some("28.39".into()), 1),
        ]
    );
    assert_eq!(db.store.firmware_counts(None).await.expect("all").len(), 4);
    assert!(
        db.store
            .firmware_counts(Some("nope"))
            .await
            .expect("none")
            .is_empty()
    );
}
