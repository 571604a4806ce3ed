//! Power-on to reports: inspection, imaging, installed boot, and a provisioner that is down at first.

use std::time::Duration;

use kiln_agent::AgentStep;
use kiln_images::Sha256Digest;
use kiln_provisioner::boot::decision::{BootAction, RamdiskMode};
use kiln_sim::{DiskMode, SimHall};
use tokio::net::TcpListener;

use crate::stub::Stub;
use crate::support::{fast_config, power_on, wait_until};

const LIMIT: Duration = Duration::from_secs(20);

fn step_name(step: &AgentStep) -> &'static str {
    match step {
        AgentStep::Booted { .. } => "booted",
        AgentStep::Inspected { .. } => "inspected",
        AgentStep::ImageStarted { .. } => "image_started",
        AgentStep::ImageProgress { .. } => "image_progress",
        AgentStep::ImageWritten { .. } => "image_written",
        AgentStep::ImageFailed { .. } => "image_failed",
        AgentStep::Wiped { .. } => "wiped",
        AgentStep::WipeFailed { .. } => "wipe_failed",
        AgentStep::WipeProgress { .. } => "wipe_progress",
        AgentStep::Failed { .. } => "failed",
    }
}

#[tokio::test]
async fn power_on_fetches_the_script_and_reports_in_order_with_its_token() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stub = Stub::start(listener, BootAction::Ramdisk(RamdiskMode::Inspect)).await;
    let hall = SimHall::start(fast_config(4), &stub.url)
        .await
        .expect("hall");
    for index in 0..4 {
        power_on(&hall, index, Some("Pxe"));
    }
    for node in hall.nodes() {
        let reports = stub.wait_reports(node.boot_mac, 2, LIMIT).await;
        let tokens = stub.tokens_for(node.boot_mac);
        assert_eq!(tokens.len(), 1, "one script fetch per power-on");
        let steps: Vec<_> = reports.iter().map(|r| step_name(&r.report.step)).collect();
        assert_eq!(steps, ["booted", "inspected"]);
        assert!(reports.iter().all(|r| r.token == tokens[0]));
        let seqs: Vec<u64> = reports.iter().map(|r| r.report.seq).collect();
        assert_eq!(seqs, [1, 2]);
        match &reports[0].report.step {
            AgentStep::Booted {
                environment,
                ssh_host_key,
                ..
            } => {
                assert_eq!(environment, "ramdisk");
                assert!(ssh_host_key.is_none());
            }
            other => panic!("expected booted, got {other:?}"),
        }
        let AgentStep::Inspected { inspection, .. } = &reports[1].report.step else {
            panic!("expected inspected");
        };
        assert_eq!(
            inspection.system.serial.as_deref(),
            Some(node.serial.as_str())
        );
        assert_eq!(inspection.gpus.len(), 8);
        assert!(inspection.nics.iter().any(|nic| nic.mac == node.boot_mac));
    }
}

#[tokio::test]
async fn an_image_is_written_verified_and_the_installed_os_reports_with_the_image_token() {
    let disks = tempfile::tempdir().expect("dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stub = Stub::start(listener, BootAction::Ramdisk(RamdiskMode::Image)).await;
    let mut config = fast_config(2);
    config.disk = DiskMode::SparseFiles(disks.path().to_path_buf());
    let hall = SimHall::start(config, &stub.url).await.expect("hall");
    let node = hall.nodes()[0].clone();
    power_on(&hall, 0, Some("Pxe"));
    let reports = stub.wait_reports(node.boot_mac, 3, LIMIT).await;
    let steps: Vec<_> = reports.iter().map(|r| step_name(&r.report.step)).collect();
    assert_eq!(steps, ["booted", "image_started", "image_written"]);
    let AgentStep::ImageWritten {
        sha256, disk_bytes, ..
    } = &reports[2].report.step
    else {
        panic!("expected image_written");
    };
    assert_eq!(sha256, &stub.image_sha256);
    assert_eq!(*disk_bytes, stub.image.len() as u64);
    let os_disk = kiln_sim::disks::NodeDisks::new(disks.path(), &node.serial).os_disk();
    let written = std::fs::read(os_disk).expect("disk");
    assert_eq!(Sha256Digest::of(&written).to_hex(), stub.image_sha256);
    let image_token = reports[0].token.clone();
    wait_until("the image to be recorded", LIMIT, || {
        hall.node_status(&node.serial).is_some_and(|s| s.imaged)
    })
    .await;

    // Next boot: the provisioner sends the node to its disk; the installed OS reports.
    stub.set_default(BootAction::LocalDisk);
    power_on(&hall, 0, Some("Pxe"));
    let reports = stub.wait_reports(node.boot_mac, 4, LIMIT).await;
    let installed = &reports[3];
    assert_eq!(
        installed.token, image_token,
        "the installed OS reports with the image boot's token"
    );
    let AgentStep::Booted {
        environment,
        ssh_host_key,
        ssh_address,
        ..
    } = &installed.report.step
    else {
        panic!("expected booted");
    };
    assert_eq!(environment, "installed");
    assert_eq!(ssh_address.as_deref(), Some(node.ssh_address.as_str()));
    let key = ssh_host_key.as_deref().expect("host key");
    assert!(key.starts_with("ssh-ed25519 "), "{key}");
    assert_eq!(
        stub.tokens_for(node.boot_mac).len(),
        1,
        "local-disk scripts carry no token"
    );
    assert_eq!(hall.node_status(&node.serial).map(|s| s.os_up), Some(true));

    // A power-off takes the installed OS down.
    hall.fleet().endpoints()[0].bmc.apply_reset("ForceOff");
    wait_until("the OS to go down", LIMIT, || {
        hall.node_status(&node.serial).is_some_and(|s| !s.os_up)
    })
    .await;
}

#[tokio::test]
async fn nodes_retry_while_the_provisioner_is_down_then_proceed() {
    // Reserve a port, then leave it closed: the provisioner is "down".
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let hall = SimHall::start(fast_config(2), &url).await.expect("hall");
    power_on(&hall, 0, Some("Pxe"));
    power_on(&hall, 1, None);
    // Well past POST (120 ms): both nodes are retrying the script fetch.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind");
    let stub = Stub::start(listener, BootAction::Ramdisk(RamdiskMode::Inspect)).await;
    for node in hall.nodes() {
        let reports = stub.wait_reports(node.boot_mac, 2, LIMIT).await;
        assert_eq!(step_name(&reports[1].report.step), "inspected");
    }
}

#[tokio::test]
async fn a_new_power_on_aborts_the_boot_in_progress() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stub = Stub::start(listener, BootAction::Ramdisk(RamdiskMode::Inspect)).await;
    let mut config = fast_config(1);
    config.time_scale = 0.01; // POST 1.2 s
    let hall = SimHall::start(config, &stub.url).await.expect("hall");
    let mac = hall.nodes()[0].boot_mac;
    power_on(&hall, 0, Some("Pxe"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    power_on(&hall, 0, Some("Pxe"));
    stub.wait_reports(mac, 2, LIMIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        stub.tokens_for(mac).len(),
        1,
        "the first boot never reached the network"
    );
    assert_eq!(stub.reports_for(mac).len(), 2);
    assert_eq!(
        hall.node_status(&hall.nodes()[0].serial).map(|s| s.boots),
        Some(2)
    );
}

#[tokio::test]
async fn with_two_provisioners_a_node_fails_over_to_the_one_that_answers() {
    let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead_url = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stub = Stub::start(listener, BootAction::Ramdisk(RamdiskMode::Inspect)).await;
    let hall = SimHall::start_with_provisioners(fast_config(2), &[dead_url, stub.url.clone()])
        .await
        .expect("hall");
    for index in 0..2 {
        power_on(&hall, index, Some("Pxe"));
    }
    for node in hall.nodes() {
        stub.wait_reports(node.boot_mac, 2, LIMIT).await;
    }
    assert!(
        SimHall::start_with_provisioners(fast_config(1), &[])
            .await
            .is_err()
    );
}
