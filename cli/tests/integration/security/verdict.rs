//! Hostile nodes at burn-in: kiln judges the evidence, not the node's verdict. A `kiln serve` child brings up
//! a kiln-sim hall (SSH servers in the test process) where some nodes answer `kiln-agent burn-in` with a
//! passing verdict of their own, or with `{}`, instead of evidence, one whose collector exits 1, and one has
//! an XID 79 in its NVML samples and kernel log. Every hostile node is quarantined for not sending evidence, the XID node for its XID, the
//! rest become available; no hostile node has a passing burn-in run, and every burn-in run holds the
//! provisioner's judgement with the digest of the document it judged.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use kiln_health::burnin::evidence_digest;
use kiln_inventory::{NodeFilter, NodeState, Store, StoreOptions};
use kiln_provisioner::lifecycle::ssh::load_or_create_key;
use kiln_sim::faults::reasons;
use kiln_sim::{DiskMode, EvidenceFaults, FaultFractions, FaultKind, SimConfig, SimHall, SshMode};

use crate::sim_site::{kiln, run_ok};

fn serve(dir: &Path, port: u16) -> Child {
    let mut command = kiln(dir);
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--time-scale", "100", "--ssh-key", "kiln-ssh.key"])
        .args(["--image", "sim-os:1", "--image-dir", "images"])
        .args(["--instance", "verdict-test"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join("serve.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        );
    command.spawn().expect("kiln serve starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_verdicts_and_empty_documents_fail_the_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = {
        let probe = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("port");
        probe.local_addr().expect("addr").port()
    };
    let (key, _) = load_or_create_key(&dir.path().join("kiln-ssh.key")).expect("ssh key");
    let mut config = SimConfig::new(8);
    config.time_scale = 0.01;
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
    config.ssh = SshMode::Servers {
        client_key: key.public_key().clone(),
    };
    std::fs::create_dir_all(dir.path().join("disks")).expect("disks");
    config.disk = DiskMode::SparseFiles(dir.path().join("disks"));
    let hall = SimHall::start(config, &format!("http://127.0.0.1:{port}"))
        .await
        .expect("simulated hall");
    std::fs::write(dir.path().join("hall.csv"), hall.manifest_csv()).expect("manifest");
    std::fs::write(dir.path().join("os.img"), vec![7u8; 256 * 1024]).expect("image");
    let mut image = kiln(dir.path());
    image.args(["image", "--image-dir", "images", "add", "os.img"]);
    image.args(["--name", "sim-os", "--version", "1"]);
    run_ok(image);
    let mut import = kiln(dir.path());
    import.args(["rack", "import", "hall.csv", "--site", "verdict"]);
    run_ok(import);

    let mut child = serve(dir.path(), port);
    let store = Store::open(StoreOptions::new(format!(
        "sqlite://{}",
        dir.path().join("kiln.db").display()
    )))
    .await
    .expect("read the inventory");
    let deadline = Instant::now() + Duration::from_secs(180);
    let nodes = loop {
        let nodes = store
            .list_nodes(&NodeFilter::default())
            .await
            .expect("nodes");
        let settled = nodes
            .iter()
            .all(|n| matches!(n.state, NodeState::Available | NodeState::Quarantined));
        if settled || Instant::now() > deadline {
            break nodes;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
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
