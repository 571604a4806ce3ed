//! Manifest import against the database: idempotent, and conflicts reported with line numbers, nothing written.

use kiln_inventory::{ManifestFormat, NodeFilter, StoreError, parse_manifest};

use crate::both_backends;
use crate::support::{CSV_HEADER, TestDb, csv_rows};

both_backends!(
    reimport_is_idempotent,
    database_conflicts_are_reported_and_nothing_written,
    toml_manifest_imports
);

async fn node_count(db: &TestDb) -> usize {
    db.store
        .list_nodes(&NodeFilter::default())
        .await
        .expect("nodes")
        .len()
}

async fn reimport_is_idempotent(db: TestDb) {
    let rows = csv_rows(1, 8);
    let first = db.import_csv(&rows).await.expect("first");
    assert_eq!((first.created, first.unchanged), (8, 0));
    let before = db
        .store
        .list_nodes(&NodeFilter::default())
        .await
        .expect("nodes");
    let again = db.import_csv(&rows).await.expect("again");
    assert_eq!(
        (
            again.created,
            again.unchanged,
            again.halls_created,
            again.racks_created
        ),
        (0, 8, 0, 0)
    );
    assert_eq!(
        db.store
            .list_nodes(&NodeFilter::default())
            .await
            .expect("nodes"),
        before
    );
    for node in &before {
        assert_eq!(
            db.store.node_events(node.id).await.expect("events").len(),
            1,
            "no new events"
        );
    }
    // A larger manifest that contains the first one adds only the new rack.
    let grown = db
        .import_csv(&(rows + &csv_rows(2, 4)))
        .await
        .expect("grown");
    assert_eq!(
        (grown.created, grown.unchanged, grown.racks_created),
        (4, 8, 1)
    );
}

async fn database_conflicts_are_reported_and_nothing_written(db: TestDb) {
    db.import_csv(&csv_rows(1, 2)).await.expect("first");
    let conflicting = "\
H1,R9,0,NEW-0,h100-sxm-80gb,10.9.0.0,redfish,admin,pw,02:00:00:00:09:00
H1,R9,1,SN1-0,h100-sxm-80gb,10.1.0.0,redfish,admin,pw,02:00:00:00:01:00
H1,R1,1,NEW-2,h100-sxm-80gb,10.9.0.2,redfish,admin,pw,02:00:00:00:09:02
H1,R9,3,NEW-3,h100-sxm-80gb,10.9.0.3,ipmi,admin,pw,02:00:00:00:01:01
H1,R9,4,NEW-4,h100-sxm-80gb,10.1.0.1,ipmi,admin,pw,02:00:00:00:09:04
H1,R9,5,NEW-5,gb300-nvl72,10.9.0.5,ipmi,admin,pw,02:00:00:00:09:05
";
    let err = db.import_csv(conflicting).await.expect_err("conflicts");
    let StoreError::Manifest(errors) = &err else {
        panic!("expected manifest errors, got {err}")
    };
    let lines: Vec<usize> = errors.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![3, 4, 5, 6, 7], "{err}");
    let text = err.to_string();
    assert!(
        text.contains("line 3: serial SN1-0 is already enrolled differently"),
        "{text}"
    );
    assert!(
        text.contains("rack R1 slot 1 is already taken by serial SN1-1"),
        "{text}"
    );
    assert!(
        text.contains("boot MAC 02:00:00:00:01:01 already belongs to serial SN1-1"),
        "{text}"
    );
    assert!(
        text.contains("BMC address 10.1.0.1 already belongs to serial SN1-1"),
        "{text}"
    );
    assert!(
        text.contains("line 7: unknown SKU \"gb300-nvl72\""),
        "{text}"
    );
    assert_eq!(
        node_count(&db).await,
        2,
        "the good first row was not written either"
    );
    assert!(db.store.node_by_serial("NEW-0").await.is_err());
    assert_eq!(
        db.store.list_halls().await.expect("halls")[0].racks,
        1,
        "no rack R9 created"
    );
}

async fn toml_manifest_imports(db: TestDb) {
    let text = r#"
site = "dc-north"

[[node]]
hall = "H2"
rack = "A01"
slot = 1
serial = "T-1"
sku = "h200-sxm-141gb"
bmc_address = "https://10.2.0.1"
bmc_protocol = "redfish"
bmc_user = "root"
bmc_password_env = "T1_PASS"
boot_mac = "0A:00:00:00:00:01"
"#;
    let rows = parse_manifest(text, ManifestFormat::Toml, &|var| {
        (var == "T1_PASS").then(|| "from-env".to_string())
    })
    .expect("parse");
    let summary = db
        .store
        .import_manifest(&rows, "ignored-default", "test")
        .await
        .expect("import");
    assert_eq!(summary.created, 1);
    let node = db.store.node_by_serial("T-1").await.expect("node");
    assert_eq!(
        (node.site.as_str(), node.hall.as_str(), node.slot),
        ("dc-north", "H2", 1)
    );
    assert_eq!(
        db.store
            .bmc_credentials(node.id)
            .await
            .expect("creds")
            .password
            .expose(),
        "from-env"
    );
    // CSV header order does not matter and a site column overrides the default.
    let csv = format!(
        "boot_mac,site,{CSV_HEADER_NO_MAC}\n0a:00:00:00:00:02,dc-south,H2,A01,1,T-2,h200-sxm-141gb,10.2.0.2,ipmi,root,x\n"
    );
    let rows = parse_manifest(&csv, ManifestFormat::Csv, &|_| None).expect("parse csv");
    db.store
        .import_manifest(&rows, "default", "test")
        .await
        .expect("import csv");
    assert_eq!(
        db.store.node_by_serial("T-2").await.expect("node").site,
        "dc-south"
    );
    assert_eq!(CSV_HEADER.split(',').count(), 10);
}

const CSV_HEADER_NO_MAC: &str =
    "hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password";
