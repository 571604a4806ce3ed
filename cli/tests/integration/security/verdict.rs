//! Hostile nodes at burn-in: kiln judges the evidence, not the node's verdict. A `kiln serve` child brings up
//! a kiln-sim hall (SSH servers in the test process) where some nodes answer `kiln-agent burn-in` with a
//! passing verdict of their own, or with `{}`, instead of evidence, one whose collector exits 1, and one has
//! an XID 79 in its NVML samples and kernel log. Every hostile node is quarantined for not sending evidence, the XID node for its XID, the
//! rest become available; no hostile node has a passing burn-in run, and every burn-in run holds the
//! provisioner's judgement with the digest of the document it judged.

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_health::burnin::evidence_digest;
use kiln_inventory::NodeState;
use kiln_sim::faults::reasons;
use kiln_sim::{EvidenceFaults, FaultFractions, FaultKind};

use crate::sim_site::{SimSite, kiln, open_inventory, run_ok, serve, settled_nodes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_verdicts_and_empty_documents_fail_the_node() {
    let SimSite { dir, port, hall } = SimSite::start_with(8, |config| {
        config.seed = 21;
        config.faults = FaultFractions {
            xid_burn_in: 0.125,
            ..FaultFractions::default()
        };
        config.evidence_faults = EvidenceFaults {
            forged_verdict: 0.25,
            empty_evidence: 0.25,
            collector_fails: 0.125,
            ..EvidenceFaults::default()
        };
    })
    .await;
    let mut import = kiln(dir.path());
    import.args(["rack", "import", "hall.csv", "--site", "verdict"]);
    run_ok(import);

    let mut child = serve(dir.path(), port, "verdict-test");
    let store = open_inventory(dir.path()).await;
    let nodes = settled_nodes(&store, Duration::from_secs(180), Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();

    let planted: BTreeMap<String, FaultKind> = hall
        .planted_faults()
        .into_iter()
        .map(|f| (f.serial, f.kind))
        .collect();
    let kinds: Vec<FaultKind> = planted.values().copied().collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == FaultKind::ForgedVerdict)
            .count(),
        2
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == FaultKind::EmptyEvidence)
            .count(),
        2
    );
    for (kind, planted_count) in [(FaultKind::CollectorFails, 1), (FaultKind::XidBurnIn, 1)] {
        assert_eq!(
            kinds.iter().filter(|k| **k == kind).count(),
            planted_count,
            "{kind}"
        );
    }
    for node in &nodes {
        let events = store.node_events(node.id).await.expect("events");
        let quarantine_reason = events
            .iter()
            .rev()
            .find(|e| e.to_state == Some(NodeState::Quarantined))
            .map(|e| e.reason.clone());
        let runs = store.health_runs(node.id).await.expect("runs");
        let burn_ins: Vec<_> = runs.iter().filter(|r| r.kind == "burn_in").collect();
        assert!(
            !burn_ins.is_empty(),
            "{}: no burn-in run\n{log}",
            node.serial
        );
        for run in burn_ins
            .iter()
            .filter(|r| r.evidence.get("error").is_none())
        {
            let verdict = &run.evidence["verdict"];
            assert_eq!(
                verdict["kind"], "burn_in",
                "{}: {}",
                node.serial, run.evidence
            );
            assert_eq!(
                run.evidence["evidence_sha256"],
                serde_json::json!(evidence_digest(&run.evidence["evidence"])),
                "{}: the digest is of the stored document",
                node.serial
            );
        }
        match planted.get(&node.serial) {
            Some(FaultKind::ForgedVerdict | FaultKind::EmptyEvidence) => {
                assert_eq!(node.state, NodeState::Quarantined, "{}", node.serial);
                let reason = quarantine_reason.unwrap_or_default();
                assert!(
                    reason.contains(reasons::NOT_EVIDENCE),
                    "{}: {reason:?}",
                    node.serial
                );
                assert!(
                    burn_ins.iter().all(|r| !r.passed),
                    "{}: a hostile node's burn-in passed",
                    node.serial
                );
                let document = &burn_ins[0].evidence["evidence"];
                if planted[&node.serial] == FaultKind::EmptyEvidence {
                    assert_eq!(document, &serde_json::json!({}));
                } else {
                    assert_eq!(document["kind"], "burn_in", "the forged verdict is kept");
                }
            }
            Some(FaultKind::CollectorFails) => {
                assert_eq!(node.state, NodeState::Quarantined, "{}", node.serial);
                let reason = quarantine_reason.unwrap_or_default();
                assert!(
                    reason.contains(reasons::NO_EVIDENCE) && reason.contains("exited 1"),
                    "{}: {reason:?}",
                    node.serial
                );
                assert!(
                    burn_ins
                        .iter()
                        .all(|r| !r.passed && r.evidence["error"].is_string())
                );
            }
            Some(FaultKind::XidBurnIn) => {
                assert_eq!(node.state, NodeState::Quarantined, "{}", node.serial);
                let reason = quarantine_reason.unwrap_or_default();
                assert!(reason.contains(reasons::XID), "{}: {reason:?}", node.serial);
                let document = &burn_ins[0].evidence["evidence"];
                assert_eq!(document["format"], "kiln.burn-in-evidence");
                assert!(
                    document["collector"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("fake NVML")
                );
            }
            other => {
                assert_eq!(
                    node.state,
                    NodeState::Available,
                    "{} ({other:?}): {quarantine_reason:?}\n{log}",
                    node.serial
                );
                assert!(burn_ins.iter().any(|r| r.passed));
            }
        }
    }
}
