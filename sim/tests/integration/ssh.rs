//! The installed OS's SSH server, driven by kiln-health's russh client with the host key pinned from the
//! agent's report.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_agent::AgentStep;
use kiln_health::nccl::{
    CommandNcclRunner, NcclRunError, NcclRunner, PinnedHost, SshNcclRunner, judge_run,
};
use kiln_health::{SkuCatalog, Verdict};
use kiln_provisioner::boot::decision::{BootAction, RamdiskMode};
use kiln_provisioner::lifecycle::access::NCCL_TEMPLATE;
use kiln_sim::{FaultFractions, SimHall, SshMode};
use rand::SeedableRng;
use russh::keys::{Algorithm, PrivateKey, PublicKey};
use tokio::net::TcpListener;

use crate::stub::Stub;
use crate::support::{fast_config, power_on};

const LIMIT: Duration = Duration::from_secs(20);

fn runner(client: &PrivateKey, hosts: HashMap<String, PinnedHost>, argv: &[&str]) -> SshNcclRunner {
    SshNcclRunner {
        user: "root".into(),
        key: Arc::new(client.clone()),
        hosts,
        command: CommandNcclRunner {
            argv_template: argv.iter().map(|s| s.to_string()).collect(),
            gpus_per_node: 8,
            timeout: Duration::from_secs(10),
            env: Vec::new(),
        },
        connect_timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn the_ssh_server_presents_the_reported_key_and_answers_the_command_set() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let client = PrivateKey::random(&mut rng, Algorithm::Ed25519).expect("client key");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stub = Stub::start(listener, BootAction::Ramdisk(RamdiskMode::Image)).await;
    let mut config = fast_config(3);
    config.ssh = SshMode::Servers {
        client_key: client.public_key().clone(),
    };
    // Node placement for seed 1 over 3 nodes: exactly one gets the changed key.
    config.faults = FaultFractions {
        changed_host_key: 0.2,
        ..FaultFractions::default()
    };
    let hall = SimHall::start(config, &stub.url).await.expect("hall");
    for index in 0..3 {
        power_on(&hall, index, Some("Pxe"));
    }
    for node in hall.nodes() {
        stub.wait_reports(node.boot_mac, 3, LIMIT).await;
    }
    stub.set_default(BootAction::LocalDisk);
    for index in 0..3 {
        power_on(&hall, index, None);
    }
    let mut pinned = HashMap::new();
    for node in hall.nodes() {
        let reports = stub.wait_reports(node.boot_mac, 4, LIMIT).await;
        let AgentStep::Booted {
            ssh_host_key: Some(key),
            ssh_address: Some(addr),
            ..
        } = &reports[3].report.step
        else {
            panic!("no installed boot report: {:?}", reports[3]);
        };
        pinned.insert(
            node.serial.clone(),
            PinnedHost {
                addr: addr.clone(),
                host_key: PublicKey::from_openssh(key).expect("key"),
            },
        );
    }
    let changed: Vec<_> = hall
        .planted_faults()
        .into_iter()
        .map(|f| f.serial)
        .collect();
    assert_eq!(changed.len(), 1);
    let healthy: Vec<String> = hall
        .nodes()
        .iter()
        .map(|n| n.serial.clone())
        .filter(|s| !changed.contains(s))
        .collect();

    let run = |argv: &[&str], hosts: &[String]| {
        let runner = runner(&client, pinned.clone(), argv);
        let hosts = hosts.to_vec();
        async move { runner.run(&hosts).await }
    };
    let kernel = run(&["uname", "-r"], &healthy[..1]).await.expect("uname");
    assert_eq!(kernel.exit_code, Some(0));
    assert_eq!(kernel.output.trim(), kiln_sim::answers::INSTALLED_KERNEL);
    let gpus = run(&["nvidia-smi", "-L"], &healthy[..1])
        .await
        .expect("smi");
    assert_eq!(
        gpus.output
            .lines()
            .filter(|l| l.starts_with("GPU "))
            .count(),
        8
    );
    let driver = run(&["cat", "/sys/module/nvidia/version"], &healthy[..1])
        .await
        .expect("driver");
    assert_eq!(driver.output.trim(), kiln_sim::answers::DRIVER_VERSION);
    let burn = run(
        &["kiln-agent", "burn-in", "--json", "--duration-s", "5"],
        &healthy[..1],
    )
    .await
    .expect("burn-in");
    // The node answers raw evidence, never a verdict; the provisioner's judge passes a healthy node's.
    let document: serde_json::Value =
        serde_json::from_str(burn.output.trim()).expect("evidence JSON");
    let catalog = SkuCatalog::builtin().expect("catalog");
    let h100 = catalog.get("h100-sxm-80gb").expect("sku");
    let verdict: Verdict = kiln_health::burnin::judge_burn_in_document(
        &document,
        h100,
        std::time::Duration::from_secs(5),
    );
    assert!(verdict.passed(), "{}", verdict.render_table());
    let refused = run(&["reboot"], &healthy[..1]).await.expect("reboot");
    assert_eq!(refused.exit_code, Some(127));

    let nccl = run(NCCL_TEMPLATE, &healthy).await.expect("nccl");
    let profile = SkuCatalog::builtin()
        .expect("catalog")
        .get("h100-sxm-80gb")
        .expect("sku")
        .clone();
    let judged = judge_run(&nccl, &profile);
    assert!(judged.passed(), "{}", judged.render_table());

    // The changed-key node presents a key other than the one its agent reported.
    match run(&["uname", "-r"], &changed).await {
        Err(NcclRunError::HostKeyMismatch { host, .. }) => assert_eq!(host, changed[0]),
        other => panic!("expected a host key mismatch, got {other:?}"),
    }
    // Only the provisioner's key is accepted.
    let stranger = PrivateKey::random(&mut rng, Algorithm::Ed25519).expect("key");
    match runner(&stranger, pinned.clone(), &["uname", "-r"])
        .run(&healthy[..1])
        .await
    {
        Err(NcclRunError::AuthRejected { .. }) => {}
        other => panic!("expected the key to be refused, got {other:?}"),
    }
}
