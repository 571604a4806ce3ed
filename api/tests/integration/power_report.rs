//! Node power through a simulated BMC (and a dead one), signed acceptance reports that verify offline, and
//! release progress.

use kiln_api::report::{ReportError, verify};
use kiln_bmc::PowerState;
use serde_json::json;

use crate::support::Server;

#[tokio::test]
async fn power_actions_reach_the_bmc_and_the_history() {
    let server = Server::start().await;
    let tech = Some(server.tokens.technician.as_str());
    let bmc = &server.fleet.endpoints()[0].bmc;
    bmc.force_power(PowerState::On);
    let (status, off) = server
        .call(
            "POST",
            "/api/v1/nodes/B-0/power",
            tech,
            Some(json!({"action": "off"})),
        )
        .await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["power_state"], "Off");
    assert_eq!(bmc.power(), PowerState::Off);
    let (status, on) = server
        .call(
            "POST",
            "/api/v1/nodes/B-0/power",
            tech,
            Some(json!({"action": "on"})),
        )
        .await;
    assert_eq!((status, on["action"].as_str()), (200, Some("on")), "{on}");
    assert_eq!(bmc.power(), PowerState::On);
    let (_, events) = server
        .call("GET", "/api/v1/nodes/B-0/events", tech, None)
        .await;
    let notes: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .filter(|r| r.starts_with("power "))
        .collect();
    assert_eq!(
        notes,
        ["power off: BMC reports Off", "power on: BMC reports On"]
    );
    let actor = events["events"]
        .as_array()
        .and_then(|e| e.last())
        .map(|e| e["actor"].clone());
    assert!(
        actor.is_some_and(|a| a.as_str().is_some_and(|a| a.starts_with("token:"))),
        "{events}"
    );

    // Bad actions are 4xx with a clear message, before any BMC is touched.
    let (status, bad) = server
        .call(
            "POST",
            "/api/v1/nodes/B-0/power",
            tech,
            Some(json!({"action": "explode"})),
        )
        .await;
    assert_eq!(
        (status, bad["error"].as_str()),
        (422, Some("bad_request")),
        "{bad}"
    );
}

#[tokio::test]
async fn a_dead_bmc_is_a_502_with_a_clear_message() {
    let server = Server::start().await;
    let admin = Some(server.tokens.admin.as_str());
    let (status, body) = server
        .call(
            "POST",
            "/api/v1/nodes/B-1/power",
            admin,
            Some(json!({"action": "cycle"})),
        )
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "bmc_error");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains(crate::support::PASSWORD), "{message}");
    let (_, events) = server
        .call("GET", "/api/v1/nodes/B-1/events", admin, None)
        .await;
    assert!(
        events.to_string().contains("power cycle failed"),
        "{events}"
    );
}

#[tokio::test]
async fn the_report_is_signed_and_verifies_offline() {
    let server = Server::start().await;
    let acme = Some(server.tokens.acme.as_str());
    let path = format!("/api/v1/leases/{}/report", server.lease_id);
    let response = server
        .client
        .get(server.url(&path))
        .bearer_auth(&server.tokens.acme)
        .send()
        .await
        .expect("report");
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("text");
    let verified = verify(&text, &server.signing_public).expect("the report verifies");
    assert_eq!((verified.nodes, verified.gpu_count), (4, 32));
    assert!(verified.all_verdicts_passed);
    let report: serde_json::Value = serde_json::from_str(&text).expect("json");
    let busbw = &report["aggregates"]["nccl_busbw_gbps"];
    assert_eq!(
        (
            busbw["nodes"].as_u64(),
            busbw["min"].as_f64(),
            busbw["p50"].as_f64(),
            busbw["max"].as_f64()
        ),
        (Some(4), Some(360.0), Some(370.0), Some(390.0)),
        "{report}"
    );
    assert_eq!(report["aggregates"]["gpu_count"], 32);
    assert_eq!(report["aggregates"]["nodes_owed"], 0);
    let (_, key) = server.call("GET", "/api/v1/signing-key", acme, None).await;
    assert_eq!(key["public_key_hex"], report["public_key_hex"]);

    // Tampering with an aggregate, a record, or using another key is caught.
    let mut inflated = report.clone();
    inflated["aggregates"]["gpu_count"] = json!(64);
    assert!(matches!(
        verify(&inflated.to_string(), &server.signing_public),
        Err(ReportError::Aggregate {
            what: "gpu_count",
            ..
        })
    ));
    let mut forged = report.clone();
    forged["nodes"][1]["signed_record"]["record"]["sku"] = json!("b200");
    assert!(matches!(
        verify(&forged.to_string(), &server.signing_public),
        Err(ReportError::Record { ref serial, .. }) if serial == "A-1"
    ));
    let mut moved = report.clone();
    moved["nodes"][0]["serial"] = json!("A-9");
    assert!(matches!(
        verify(&moved.to_string(), &server.signing_public),
        Err(ReportError::Mismatch { .. })
    ));
    let stranger = kiln_health::evidence::generate_signing_key().verifying_key();
    assert!(matches!(
        verify(&text, &stranger),
        Err(ReportError::Record { .. })
    ));
    assert!(matches!(
        verify("{\"nodes\": 3}", &server.signing_public),
        Err(ReportError::Malformed(_))
    ));
}

#[tokio::test]
async fn release_progress_follows_the_released_nodes() {
    let server = Server::start().await;
    let admin = Some(server.tokens.admin.as_str());
    let path = format!("/api/v1/leases/{}/progress", server.lease_id);
    let (_, before) = server.call("GET", &path, admin, None).await;
    assert_eq!(
        (before["released"].as_u64(), before["done"].as_bool()),
        (Some(0), Some(false))
    );
    let (status, _) = server
        .call(
            "POST",
            &format!("/api/v1/leases/{}/release", server.lease_id),
            admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (_, after) = server.call("GET", &path, admin, None).await;
    assert_eq!(after["released"], 4, "{after}");
    assert_eq!(after["states"], json!({"wiping": 4}));
    assert_eq!(after["done"], false);
    // Walk two nodes back to available by hand (the lifecycle engine's job) and watch the count.
    for serial in ["A-0", "A-1"] {
        let node = server.store.node_by_serial(serial).await.expect("node");
        server
            .store
            .transition(
                node.id,
                kiln_inventory::NodeState::Wiping,
                kiln_inventory::NodeState::Imaging,
                "test",
                "wiped",
            )
            .await
            .expect("wiped");
    }
    let (_, later) = server.call("GET", &path, admin, None).await;
    assert_eq!(
        later["states"],
        json!({"imaging": 2, "wiping": 2}),
        "{later}"
    );
}
