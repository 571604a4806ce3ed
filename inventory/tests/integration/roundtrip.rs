//! Store round-trips: what goes in comes back out, on both backends.

use chrono::Duration;
use kiln_inventory::{
    BmcProtocol, Disk, Gpu, Hardware, MacAddr, NewHealthRun, Nic, NodeFilter, NodeId, NodeState,
    StoreError,
};

use crate::both_backends;
use crate::support::{TestDb, csv_rows};

both_backends!(
    nodes_round_trip,
    hardware_health_and_leases_round_trip,
    filters_and_pagination
);

async fn nodes_round_trip(db: TestDb) {
    let summary = db.import_csv(&csv_rows(1, 3)).await.expect("import");
    assert_eq!(
        (
            summary.created,
            summary.unchanged,
            summary.halls_created,
            summary.racks_created
        ),
        (3, 0, 1, 1)
    );
    let node = db.store.node_by_serial("SN1-2").await.expect("node");
    assert_eq!(
        (
            node.site.as_str(),
            node.hall.as_str(),
            node.rack.as_str(),
            node.slot
        ),
        ("test-site", "H1", "R1", 2)
    );
    assert_eq!(node.sku, "h100-sxm-80gb");
    assert_eq!(node.state, NodeState::Enrolled);
    assert_eq!(
        node.boot_mac,
        "02:00:00:00:01:02".parse::<MacAddr>().expect("valid")
    );
    assert_eq!(node.bmc.address, "10.1.0.2");
    assert_eq!(node.bmc.protocol, BmcProtocol::Redfish);
    assert_eq!(node.bmc.username, "admin");
    assert_eq!(node.created_at, db.clock.now_for_test());
    // Due at once, and ahead of routine rechecks (new work, like a transition).
    assert!(
        node.next_check_at
            .is_some_and(|at| at < db.clock.now_for_test()),
        "new nodes are due at once, ahead of the queue: {:?}",
        node.next_check_at
    );
    assert_eq!(db.store.node(node.id).await.expect("by id"), node);
    assert_eq!(
        db.store
            .node_by_boot_mac(node.boot_mac)
            .await
            .expect("by mac"),
        Some(node.clone())
    );
    let unknown: MacAddr = "02:ff:ff:ff:ff:ff".parse().expect("mac");
    assert_eq!(
        db.store
            .node_by_boot_mac(unknown)
            .await
            .expect("unknown mac"),
        None
    );

    let creds = db
        .store
        .bmc_credentials(node.id)
        .await
        .expect("credentials");
    assert_eq!(creds.password.expose(), "pw-1-2");

    db.store
        .update_bmc_identity(node.bmc.id, Some("Dell"), Some("AB:CD"))
        .await
        .expect("identity");
    let node = db.store.node(node.id).await.expect("node");
    assert_eq!(
        (
            node.bmc.vendor.as_deref(),
            node.bmc.tls_fingerprint.as_deref()
        ),
        (Some("Dell"), Some("AB:CD"))
    );

    let events = db.store.node_events(node.id).await.expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].from_state, events[0].to_state),
        (None, Some(NodeState::Enrolled))
    );
    assert!(events[0].reason.contains("line 4"), "{}", events[0].reason);
    db.store
        .record_event(node.id, "tech:ana", "cable reseated")
        .await
        .expect("note");
    let events = db.store.node_events(node.id).await.expect("events");
    assert_eq!(
        events
            .last()
            .map(|e| (e.actor.as_str(), e.reason.as_str(), e.to_state)),
        Some(("tech:ana", "cable reseated", None))
    );

    let halls = db.store.list_halls().await.expect("halls");
    assert_eq!(halls.len(), 1);
    assert_eq!(
        (halls[0].name.as_str(), halls[0].racks, halls[0].nodes),
        ("H1", 1, 3)
    );
    assert_eq!(
        halls[0].states,
        [(NodeState::Enrolled, 3)].into_iter().collect()
    );

    assert!(matches!(
        db.store.node_by_serial("nope").await,
        Err(StoreError::NodeNotFound(_))
    ));
    assert!(matches!(
        db.store.node(NodeId(99_999)).await,
        Err(StoreError::NodeNotFound(_))
    ));
    assert_eq!(db.store.list_skus().await.expect("skus").len(), 4);
    assert!(
        !db.store
            .applied_migrations()
            .await
            .expect("migrations")
            .is_empty()
    );
}

async fn hardware_health_and_leases_round_trip(db: TestDb) {
    db.import_csv(&csv_rows(1, 1)).await.expect("import");
    let node = db.store.node_by_serial("SN1-0").await.expect("node");
    assert_eq!(
        db.store.hardware(node.id).await.expect("empty"),
        Hardware::default()
    );
    let hardware = Hardware {
        gpus: (0..8)
            .map(|index| Gpu {
                index,
                model: "NVIDIA H100 80GB HBM3".into(),
                uuid: Some(format!("GPU-{index}")),
                serial: None,
                pci_bus_id: Some(format!("0000:{:02x}:00.0", 0x18 + index)),
                memory_mib: Some(81_559),
                vbios: Some("96.00.99.00.01".into()),
            })
            .collect(),
        nics: vec![Nic {
            name: "eth0".into(),
            mac: "02:00:00:00:01:00".parse().expect("valid"),
            speed_mbps: Some(100_000),
        }],
        disks: vec![Disk {
            name: "nvme0n1".into(),
            model: None,
            serial: Some("S1".into()),
            size_bytes: 3_840_755_982_336,
        }],
    };
    db.store
        .replace_hardware(node.id, &hardware)
        .await
        .expect("replace");
    assert_eq!(db.store.hardware(node.id).await.expect("read"), hardware);
    let fewer = Hardware {
        gpus: hardware.gpus[..7].to_vec(),
        ..Hardware::default()
    };
    db.store
        .replace_hardware(node.id, &fewer)
        .await
        .expect("replace again");
    assert_eq!(db.store.hardware(node.id).await.expect("read"), fewer);

    let evidence = serde_json::json!({"busbw_gbps": 481.2, "threshold_gbps": 450.0});
    let started = db.clock.now_for_test();
    let run = NewHealthRun {
        node: node.id,
        kind: "nccl",
        passed: true,
        started_at: started,
        finished_at: Some(started + Duration::seconds(90)),
        evidence: &evidence,
    };
    let id = db.store.record_health_run(&run).await.expect("record");
    let runs = db.store.health_runs(node.id).await.expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].id, runs[0].kind.as_str(), runs[0].passed),
        (id, "nccl", true)
    );
    assert_eq!(runs[0].evidence, evidence);
    assert_eq!(runs[0].finished_at, Some(started + Duration::seconds(90)));

    let lessee = db
        .store
        .upsert_lessee("acme-ai", Some("ops@acme.example"))
        .await
        .expect("lessee");
    assert_eq!(
        db.store
            .upsert_lessee("acme-ai", None)
            .await
            .expect("again")
            .id,
        lessee.id
    );
    let hall = &db.store.list_halls().await.expect("halls")[0];
    crate::support::make_available(&db, &["SN1-0"]).await;
    let rule = kiln_inventory::AcceptanceRule::MinVerifiedFraction { fraction: 0.995 };
    let lease = db
        .store
        .lease_hall(hall.id, lessee.id, started, None, rule, "test")
        .await
        .expect("lease")
        .lease;
    let rule_json = serde_json::json!({"rule": "min_verified_fraction", "fraction": 0.995});
    assert_eq!(
        (lease.status.as_str(), &lease.acceptance, lease.ends_at),
        ("active", &rule_json, None)
    );
    assert_eq!(
        db.store.hall_leases(hall.id).await.expect("leases"),
        vec![lease]
    );
}

async fn filters_and_pagination(db: TestDb) {
    db.import_csv(&(csv_rows(1, 5) + &csv_rows(2, 4)))
        .await
        .expect("import");
    let all = db
        .store
        .list_nodes(&NodeFilter::default())
        .await
        .expect("all");
    assert_eq!(all.len(), 9);
    let rack2 = NodeFilter {
        rack: Some("R2".into()),
        ..NodeFilter::default()
    };
    assert_eq!(db.store.list_nodes(&rack2).await.expect("rack").len(), 4);
    let node = db.store.node_by_serial("SN2-1").await.expect("node");
    db.store
        .transition(
            node.id,
            NodeState::Enrolled,
            NodeState::Discovering,
            "t",
            "go",
        )
        .await
        .expect("move");
    let discovering = NodeFilter {
        state: Some(NodeState::Discovering),
        hall: Some("H1".into()),
        ..NodeFilter::default()
    };
    let found = db.store.list_nodes(&discovering).await.expect("state");
    assert_eq!(
        found.iter().map(|n| n.serial.as_str()).collect::<Vec<_>>(),
        vec!["SN2-1"]
    );
    let nobody = NodeFilter {
        lessee: Some("nobody".into()),
        ..NodeFilter::default()
    };
    assert!(
        db.store
            .list_nodes(&nobody)
            .await
            .expect("lessee")
            .is_empty()
    );
    let other_sku = NodeFilter {
        sku: Some("b200-sxm-180gb".into()),
        ..NodeFilter::default()
    };
    assert!(
        db.store
            .list_nodes(&other_sku)
            .await
            .expect("sku")
            .is_empty()
    );

    // Cursor pagination walks every node exactly once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = NodeFilter {
            after_id: cursor,
            limit: Some(4),
            ..NodeFilter::default()
        };
        let nodes = db.store.list_nodes(&page).await.expect("page");
        if nodes.is_empty() {
            break;
        }
        cursor = nodes.last().map(|n| n.id);
        seen.extend(nodes.into_iter().map(|n| n.id));
    }
    assert_eq!(seen, all.iter().map(|n| n.id).collect::<Vec<_>>());
}

/// The manual clock's reading, for comparing with stored times.
trait NowForTest {
    fn now_for_test(&self) -> chrono::DateTime<chrono::Utc>;
}

impl NowForTest for kiln_inventory::ManualClock {
    fn now_for_test(&self) -> chrono::DateTime<chrono::Utc> {
        kiln_inventory::Clock::now(self)
    }
}
