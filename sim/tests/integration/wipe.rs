//! Wipe mode: the node's disk files are erased by the agent's real erase chain, and the report carries the
//! records; a planted bad sector gives a failed record instead.

use std::time::Duration;

use kiln_agent::AgentStep;
use kiln_inventory::{EraseMethod, EraseResult};
use kiln_provisioner::boot::decision::{BootAction, RamdiskMode};
use kiln_sim::disks::{MEDIUM_ERROR, NodeDisks, holds_tenant_data};
use kiln_sim::{DiskMode, FaultFractions, SimHall};
use tokio::net::TcpListener;

use crate::stub::Stub;
use crate::support::{fast_config, power_on, wait_until};

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_wiped_node_s_disks_hold_neither_image_nor_tenant_data_and_the_records_say_overwrite() {
    let disks = tempfile::tempdir().expect("dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stub = Stub::start(listener, BootAction::Ramdisk(RamdiskMode::Image)).await;
    let mut config = fast_config(1);
    config.disk = DiskMode::SparseFiles(disks.path().to_path_buf());
    let hall = SimHall::start(config, &stub.url).await.expect("hall");
    let node = hall.nodes()[0].clone();
    power_on(&hall, 0, Some("Pxe"));
    stub.wait_reports(node.boot_mac, 3, LIMIT).await;
    wait_until("the image to be recorded", LIMIT, || {
        hall.node_status(&node.serial).is_some_and(|s| s.imaged)
    })
    .await;
    let files = NodeDisks::new(disks.path(), &node.serial);
    let os_disk = std::fs::read(files.os_disk()).expect("os disk");
    assert!(
        os_disk.iter().any(|b| *b != 0),
        "the image is on the OS disk"
    );

    stub.set_default(BootAction::Ramdisk(RamdiskMode::Wipe));
    power_on(&hall, 0, Some("Pxe"));
    let reports = stub.wait_reports(node.boot_mac, 5, LIMIT).await;
    let AgentStep::Wiped {
        disks: names,
        records,
    } = &reports[4].report.step
    else {
        panic!("expected wiped, got {:?}", reports[4].report.step);
    };
    assert_eq!(names, &["nvme0n1", "nvme1n1"]);
    assert_eq!(records.len(), 2);
    for (record, path) in records.iter().zip(files.paths()) {
        assert_eq!(record.device, path.display().to_string());
        assert_eq!(record.method, Some(EraseMethod::Overwrite));
        assert_eq!(record.result, EraseResult::Ok);
        assert!(record.verified, "{}", record.summary());
        let data = std::fs::read(&path).expect("disk");
        assert!(!data.is_empty());
        assert!(
            data.iter().all(|b| *b == 0),
            "{} holds data after the wipe",
            path.display()
        );
        assert!(!holds_tenant_data(&path).expect("read"));
    }
    assert_eq!(
        hall.node_status(&node.serial).map(|s| s.imaged),
        Some(false)
    );
}

#[tokio::test]
async fn an_erase_fails_node_reports_a_failed_record_naming_the_medium_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stub = Stub::start(listener, BootAction::Ramdisk(RamdiskMode::Wipe)).await;
    // Null-disk mode: the disk files exist only while the wipe runs.
    let mut config = fast_config(2);
    config.faults = FaultFractions {
        erase_fails: 0.5,
        ..FaultFractions::default()
    };
    let hall = SimHall::start(config, &stub.url).await.expect("hall");
    for index in 0..2 {
        power_on(&hall, index, Some("Pxe"));
    }
    for node in hall.nodes() {
        let reports = stub.wait_reports(node.boot_mac, 2, LIMIT).await;
        match (&reports[1].report.step, node.fault) {
            (AgentStep::WipeFailed { records, error }, Some(kiln_sim::FaultKind::EraseFails)) => {
                assert!(records[0].is_ok(), "{}", records[0].summary());
                assert_eq!(records[1].result, EraseResult::Failed);
                assert!(!records[1].verified);
                assert!(error.contains("overwrite"), "{error}");
                assert!(error.starts_with("nvme1n1: "), "{error}");
                assert!(error.contains(MEDIUM_ERROR), "{error}");
            }
            (AgentStep::Wiped { records, .. }, None) => {
                assert!(records.iter().all(|r| r.is_ok()));
            }
            (step, fault) => panic!("{}: {fault:?} reported {step:?}", node.serial),
        }
    }
    let planted = hall.planted_faults();
    assert_eq!(planted.len(), 1);
    assert_eq!(planted[0].expected_reason.as_deref(), Some("erase failed"));
}
