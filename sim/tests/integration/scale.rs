//! A hall at scale mode through a full node cycle (inspect, image into the null sink, installed boot), timed.
//! `KILN_SIM_SCALE_NODES` sets the size (default 64).

use std::time::{Duration, Instant};

use kiln_provisioner::boot::decision::{BootAction, RamdiskMode};
use kiln_sim::SimHall;
use tokio::net::TcpListener;

use crate::stub::Stub;
use crate::support::{fast_config, power_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hall_goes_through_inspect_image_and_installed_boot() {
    let nodes: usize = std::env::var("KILN_SIM_SCALE_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    let limit = Duration::from_secs(60 + nodes as u64 / 10);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stub = Stub::start(listener, BootAction::Ramdisk(RamdiskMode::Inspect)).await;
    let started = Instant::now();
    let mut config = fast_config(nodes);
    config.nodes_per_rack = 16;
    let hall = SimHall::start(config, &stub.url).await.expect("hall");
    let start_s = started.elapsed().as_secs_f64();
    let phases = [
        (BootAction::Ramdisk(RamdiskMode::Inspect), 2),
        (BootAction::Ramdisk(RamdiskMode::Image), 5),
        (BootAction::LocalDisk, 6),
    ];
    let mut timings = Vec::new();
    for (action, reports) in phases {
        let phase = Instant::now();
        stub.set_default(action);
        for index in 0..nodes {
            power_on(
                &hall,
                index,
                if action == BootAction::LocalDisk {
                    None
                } else {
                    Some("Pxe")
                },
            );
        }
        for node in hall.nodes() {
            stub.wait_reports(node.boot_mac, reports, limit).await;
        }
        timings.push(format!("{action}: {:.2}s", phase.elapsed().as_secs_f64()));
    }
    for node in hall.nodes() {
        let status = hall.node_status(&node.serial).expect("status");
        assert!(status.imaged && status.os_up, "{}: {status:?}", node.serial);
        assert_eq!(status.images_written, 1);
    }
    println!(
        "kiln-sim scale: {nodes} nodes, hall start {start_s:.2}s; {} (durations: POST 120 ms, ramdisk 30 ms, image 180 ms)",
        timings.join("; ")
    );
}
