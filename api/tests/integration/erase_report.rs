//! The acceptance record of a lease after a turnover says how each node was erased before it ("erased before
//! this lease"), signed with the rest; a first lease says it erased nothing; a node with no erase after the
//! previous tenant, or one whose signed erase is unverified, fails `verify`.

use chrono::Utc;
use kiln_api::report::{ReportError, build, verify};
use kiln_health::erasure::ErasureStatus;
use kiln_health::evidence::{self, AcceptanceRecord};
use kiln_inventory::{
    AcceptanceRule, EraseMethod, EraseRecord, EraseResult, NistClass, NodeState, Store,
};

use crate::support::Server;

const H1: [&str; 4] = ["A-0", "A-1", "A-2", "A-3"];

fn erase(device: &str) -> EraseRecord {
    let now = Utc::now();
    EraseRecord {
        device: device.into(),
        model: "NVMe".into(),
        serial: "S".into(),
        bytes: 1 << 30,
        method: Some(EraseMethod::NvmeSanitizeCrypto),
        nist: Some(NistClass::Purge),
        tried: Vec::new(),
        started_at: now,
        finished_at: now,
        verified: true,
        result: EraseResult::Ok,
        error: None,
        verification: None,
    }
}

async fn back_to_available(store: &Store, serial: &str) {
    use NodeState::*;
    let node = store.node_by_serial(serial).await.expect("node");
    for step in [Wiping, Imaging, Booting, BurnIn, FabricTest, Available].windows(2) {
        store
            .transition(node.id, step[0], step[1], "test", "walk")
            .await
            .expect("walk");
    }
}

fn statuses(report: &kiln_api::report::AcceptanceReport) -> Vec<ErasureStatus> {
    report
        .nodes
        .iter()
        .map(|n| {
            let record: AcceptanceRecord =
                serde_json::from_value(n.signed_record.record.clone()).expect("record");
            record.erased_before_lease.expect("erase section").status
        })
        .collect()
}

#[tokio::test]
async fn erased_before_this_lease_is_signed_and_verified() {
    let server = Server::start().await;
    let store = &server.store;
    let key = evidence::generate_signing_key();
    let trusted = key.verifying_key();

    // The first lease: nothing to erase, said explicitly.
    let first = build(store, &key, server.lease_id).await.expect("report");
    assert_eq!(statuses(&first), vec![ErasureStatus::FirstLease; 4]);
    let text = serde_json::to_string(&first).expect("json");
    assert_eq!(
        verify(&text, &trusted)
            .expect("verifies")
            .nodes_erased_before_lease,
        0
    );

    // Turnover: released, three of four nodes erased (A-3's records are missing), leased again.
    store
        .release_lease(server.lease_id, "test")
        .await
        .expect("release");
    for serial in &H1[..3] {
        let node = store.node_by_serial(serial).await.expect("node");
        store
            .record_erase(
                node.id,
                Some(server.lease_id),
                None,
                &[erase("/dev/nvme0n1"), erase("/dev/vda")],
            )
            .await
            .expect("erase");
    }
    for serial in H1 {
        back_to_available(store, serial).await;
    }
    // The release's end: a per-node turnover summary, and the node's erase records in its detail.
    let progress = kiln_api::routes::leases::lease_progress(store, server.lease_id)
        .await
        .expect("progress");
    assert!(progress.done);
    let turnover: Vec<(String, Vec<String>, bool)> = progress
        .turnover
        .iter()
        .map(|t| (t.serial.clone(), t.erased.clone(), t.reverified))
        .collect();
    assert_eq!(turnover.len(), 4, "{turnover:?}");
    assert_eq!(
        turnover[0].1,
        vec![
            "nvme0n1: nvme_sanitize_crypto (purge), verified".to_string(),
            "vda: nvme_sanitize_crypto (purge), verified".to_string()
        ]
    );
    assert!(turnover[0].2);
    assert_eq!(turnover[3].0, "A-3");
    assert!(turnover[3].1.is_empty(), "A-3 was not erased");
    let detail: serde_json::Value = server
        .client
        .get(server.url("/api/v1/nodes/A-0"))
        .bearer_auth(&server.tokens.admin)
        .send()
        .await
        .expect("node")
        .json()
        .await
        .expect("json");
    let records = detail["erase_records"].as_array().expect("erase_records");
    assert_eq!(records.len(), 2, "{detail}");
    assert_eq!(records[0]["record"]["method"], "nvme_sanitize_crypto");
    assert_eq!(records[0]["lease_id"], server.lease_id);
    assert!(detail["node"]["serial"] == "A-0", "existing fields stay");

    let h1 = store.hall_by_name("H1").await.expect("H1");
    let lessee = store.upsert_lessee("globex", None).await.expect("lessee");
    let second = store
        .lease_hall(
            h1.id,
            lessee.id,
            store.now(),
            None,
            AcceptanceRule::AllNodes,
            "test",
        )
        .await
        .expect("lease again")
        .lease
        .id;
    let report = build(store, &key, second).await.expect("report");
    assert_eq!(
        statuses(&report),
        vec![
            ErasureStatus::Erased,
            ErasureStatus::Erased,
            ErasureStatus::Erased,
            ErasureStatus::NotRecorded
        ]
    );
    let text = serde_json::to_string(&report).expect("json");
    match verify(&text, &trusted).expect_err("A-3 was not erased") {
        ReportError::Erasure { serial, reason } => {
            assert_eq!(serial, "A-3");
            assert!(
                reason.contains(&format!("lease {}", server.lease_id)),
                "{reason}"
            );
        }
        other => panic!("{other}"),
    }

    // With A-3's erase stored, every node verifies, each device with its method, class and digest.
    let a3 = store.node_by_serial("A-3").await.expect("node");
    store
        .record_erase(a3.id, Some(server.lease_id), None, &[erase("/dev/nvme0n1")])
        .await
        .expect("erase");
    let report = build(store, &key, second).await.expect("report");
    let text = serde_json::to_string(&report).expect("json");
    let verified = verify(&text, &trusted).expect("verifies");
    assert_eq!(verified.nodes_erased_before_lease, 4);
    let record = &report.nodes[0].signed_record.record["erased_before_lease"];
    assert_eq!(record["after_lease"], server.lease_id);
    assert_eq!(record["devices"][0]["method"], "nvme_sanitize_crypto");
    assert_eq!(record["devices"][0]["nist"], "purge");
    assert_eq!(record["devices"][1]["device"], "/dev/vda");
    assert_eq!(
        record["devices"][0]["record_sha256"].as_str().map(str::len),
        Some(64)
    );

    // A record the site signed with an unverified erase still fails verify (the signature is fine, the erase
    // is not).
    let mut bad = report.clone();
    let mut value = bad.nodes[0].signed_record.record.clone();
    value["erased_before_lease"]["devices"][0]["verified"] = false.into();
    let record: AcceptanceRecord = serde_json::from_value(value).expect("record");
    bad.nodes[0].signed_record = evidence::sign(&record, &key).expect("sign");
    let text = serde_json::to_string(&bad).expect("json");
    let err = verify(&text, &trusted).expect_err("unverified erase");
    assert!(err.to_string().contains("not verified"), "{err}");
}
