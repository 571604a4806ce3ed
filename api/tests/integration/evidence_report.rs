//! A burn-in run stored as the provisioner stores it (its judgement beside the node's raw evidence): the signed
//! record carries the provisioner's judgement and the sha256 of the raw evidence.

use kiln_api::report::verify;
use kiln_health::burnin::evidence_digest;
use kiln_health::{Check, RunKind, Verdict};
use kiln_inventory::NewHealthRun;
use serde_json::json;

use crate::support::Server;

#[tokio::test]
async fn the_signed_record_holds_the_provisioners_judgement_and_the_evidence_digest() {
    let server = Server::start().await;
    let node = server.store.node_by_serial("A-0").await.expect("node");
    let document = json!({"format": "kiln.burn-in-evidence", "version": 1, "sku": "h100-sxm-80gb",
                          "nvml": {"ticks": [{"t_s": 0.0, "gpus": []}]}});
    let judgement = Verdict::new(
        RunKind::BurnIn,
        "h100-sxm-80gb",
        1_790_000_000,
        vec![Check::pass(
            "burnin.sm_clock",
            "gpu0",
            1980,
            None,
            "judged by kiln",
        )],
        json!({"evidence_sha256": evidence_digest(&document)}),
    );
    server
        .store
        .record_health_run(&NewHealthRun {
            node: node.id,
            kind: "burn_in",
            passed: true,
            started_at: server.store.now(),
            finished_at: Some(server.store.now()),
            evidence: &json!({"verdict": judgement, "evidence_sha256": "forged-by-nobody",
                              "evidence": document}),
        })
        .await
        .expect("health run");
    let path = format!("/api/v1/leases/{}/report", server.lease_id);
    let text = server
        .client
        .get(server.url(&path))
        .bearer_auth(&server.tokens.acme)
        .send()
        .await
        .expect("report")
        .text()
        .await
        .expect("text");
    verify(&text, &server.signing_public).expect("the report verifies");
    let report: serde_json::Value = serde_json::from_str(&text).expect("json");
    let record = report["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["serial"] == "A-0")
        .expect("A-0")["signed_record"]["record"]
        .clone();
    let burn_in = record["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .find(|v| v["kind"] == "burn_in")
        .expect("burn-in verdict");
    assert_eq!(burn_in["checks"][0]["reason"], "judged by kiln");
    let digests = record["evidence_sha256"].as_array().expect("digests");
    let burn_digest = digests
        .iter()
        .find(|d| d["kind"] == "burn_in")
        .expect("burn-in digest");
    // Recomputed from the stored document, not copied from what was stored beside it.
    assert_eq!(burn_digest["sha256"], json!(evidence_digest(&document)));
    assert!(digests.iter().any(|d| d["kind"] == "nccl"));
}
