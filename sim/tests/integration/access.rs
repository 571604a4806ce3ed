//! Scale mode: no SSH servers, images into a null sink, the engine's checks answered by `SimAccess`.

use std::time::Duration;

use kiln_agent::AgentStep;
use kiln_health::SkuCatalog;
use kiln_health::nccl::{NcclRun, NcclRunError, NcclRunner, bisect};
use kiln_provisioner::boot::decision::{BootAction, RamdiskMode};
use kiln_provisioner::lifecycle::access::{AccessError, NodeAccess, NodeHost};
use kiln_sim::{FaultFractions, FaultKind, SimAccess, SimHall};
use tokio::net::TcpListener;

use crate::stub::Stub;
use crate::support::{fast_config, power_on};

const LIMIT: Duration = Duration::from_secs(20);

/// Bisection's runner over `SimAccess`, as the engine's fabric test will drive it.
struct AccessRunner<'a> {
    access: &'a SimAccess,
    hosts: &'a [NodeHost],
}

impl NcclRunner for AccessRunner<'_> {
    async fn run(&self, names: &[String]) -> Result<NcclRun, NcclRunError> {
        let group: Vec<NodeHost> = names
            .iter()
            .filter_map(|n| self.hosts.iter().find(|h| &h.serial == n).cloned())
            .collect();
        self.access
            .nccl(&group)
            .await
            .map_err(|err| NcclRunError::UnknownHost {
                host: err.to_string(),
            })
    }
}

#[tokio::test]
async fn sim_access_answers_like_the_nodes_and_honours_the_faults() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stub = Stub::start(listener, BootAction::Ramdisk(RamdiskMode::Image)).await;
    let mut config = fast_config(6);
    config.faults = FaultFractions {
        wrong_gpu_count: 0.1,
        xid_burn_in: 0.1,
        slow_nccl: 0.1,
        changed_host_key: 0.1,
        ..FaultFractions::default()
    };
    let hall = SimHall::start(config, &stub.url).await.expect("hall");
    let access = hall.access();
    for index in 0..6 {
        power_on(&hall, index, Some("Pxe"));
    }
    for node in hall.nodes() {
        stub.wait_reports(node.boot_mac, 3, LIMIT).await;
    }
    // Before the installed OS runs, nothing answers.
    let early = NodeHost {
        serial: hall.nodes()[0].serial.clone(),
        address: hall.nodes()[0].ssh_address.clone(),
        host_key:
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5CFqdiXJXAiTWuTvq8d3n/4pIpAqSPI1WGl7Kz2xjA"
                .into(),
    };
    assert!(matches!(
        access.post_image_check(&early).await,
        Err(AccessError::Unreachable { .. })
    ));
    stub.set_default(BootAction::LocalDisk);
    for index in 0..6 {
        power_on(&hall, index, None);
    }
    let mut hosts = Vec::new();
    for node in hall.nodes() {
        let reports = stub.wait_reports(node.boot_mac, 4, LIMIT).await;
        let AgentStep::Booted {
            ssh_host_key: Some(key),
            ssh_address: Some(address),
            ..
        } = &reports[3].report.step
        else {
            panic!("no installed boot report");
        };
        hosts.push(NodeHost {
            serial: node.serial.clone(),
            address: address.clone(),
            host_key: key.clone(),
        });
    }
    let fault_of = |i: usize| hall.nodes()[i].fault;
    for (i, host) in hosts.iter().enumerate() {
        let checked = access.post_image_check(host).await;
        match fault_of(i) {
            Some(FaultKind::ChangedHostKey) => {
                let err = checked.expect_err("mismatch");
                assert!(matches!(err, AccessError::HostKeyMismatch { .. }));
                assert!(
                    err.to_string()
                        .contains(kiln_sim::faults::reasons::HOST_KEY)
                );
                continue;
            }
            Some(FaultKind::WrongGpuCount) => assert_eq!(checked.expect("facts").gpu_count, 7),
            _ => {
                let facts = checked.expect("facts");
                assert_eq!(facts.gpu_count, 8);
                assert_eq!(facts.kernel, kiln_sim::answers::INSTALLED_KERNEL);
                assert!(facts.driver.is_some());
                assert!(facts.transcript.contains("$ nvidia-smi -L"));
            }
        }
        let verdict = access
            .burn_in(host, Duration::from_secs(300))
            .await
            .expect("burn-in");
        if fault_of(i) == Some(FaultKind::XidBurnIn) {
            let reasons: Vec<_> = verdict.failures().map(|c| c.reason.clone()).collect();
            assert!(reasons.iter().any(|r| r.contains("XID 79")), "{reasons:?}");
        } else if fault_of(i) == Some(FaultKind::WrongGpuCount) {
            assert!(verdict.failures().any(|c| c.name == "gpu.count"));
        } else {
            assert!(verdict.passed(), "{}", verdict.render_table());
        }
    }
    // Fabric: the group with the slow node fails and bisection finds it.
    let group: Vec<NodeHost> = hosts
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            !matches!(
                fault_of(*i),
                Some(FaultKind::ChangedHostKey | FaultKind::WrongGpuCount)
            )
        })
        .map(|(_, h)| h.clone())
        .collect();
    assert_eq!(group.len(), 4);
    let profile = SkuCatalog::builtin()
        .expect("catalog")
        .get("h100-sxm-80gb")
        .expect("sku")
        .clone();
    let names: Vec<String> = group.iter().map(|h| h.serial.clone()).collect();
    let outcome = bisect(
        &AccessRunner {
            access: &access,
            hosts: &group,
        },
        &names,
        &profile,
    )
    .await
    .expect("bisect");
    let slow: Vec<String> = hall
        .planted_faults()
        .into_iter()
        .filter(|f| f.kind == FaultKind::SlowNccl)
        .map(|f| f.serial)
        .collect();
    assert_eq!(outcome.bad_hosts, slow);
    assert!(
        outcome.steps[0]
            .failures
            .iter()
            .any(|f| f.contains("busbw"))
    );
}
