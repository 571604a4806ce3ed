//! Fault placement and the manifest.

use kiln_inventory::{ManifestFormat, parse_manifest};
use kiln_sim::{FaultFractions, FaultKind, SimHall};

use crate::support::fast_config;

fn faulty_config(seed: u64) -> kiln_sim::SimConfig {
    let mut config = fast_config(20);
    config.seed = seed;
    config.faults = FaultFractions {
        dead_bmc: 0.1,
        flaky_bmc: 0.1,
        flaky_error_rate: 0.5,
        wrong_gpu_count: 0.05,
        xid_burn_in: 0.05,
        slow_nccl: 0.05,
        changed_host_key: 0.05,
        erase_fails: 0.0,
        pcie_downtrain: 0.05,
        sxid_burn_in: 0.05,
        slow_gpu: 0.05,
    };
    config
}

#[tokio::test]
async fn faults_are_placed_as_configured_and_the_same_for_a_seed() {
    let url = "http://127.0.0.1:9";
    let a = SimHall::start(faulty_config(42), url)
        .await
        .expect("hall a");
    let b = SimHall::start(faulty_config(42), url)
        .await
        .expect("hall b");
    let c = SimHall::start(faulty_config(43), url)
        .await
        .expect("hall c");
    let planted = a.planted_faults();
    assert_eq!(planted, b.planted_faults());
    assert_ne!(planted, c.planted_faults());
    let count = |kind| planted.iter().filter(|f| f.kind == kind).count();
    assert_eq!(count(FaultKind::DeadBmc), 2);
    assert_eq!(count(FaultKind::FlakyBmc), 2);
    for kind in [
        FaultKind::WrongGpuCount,
        FaultKind::XidBurnIn,
        FaultKind::SlowNccl,
        FaultKind::ChangedHostKey,
        FaultKind::PcieDowntrain,
        FaultKind::SxidBurnIn,
        FaultKind::SlowGpu,
    ] {
        assert_eq!(count(kind), 1, "{kind}");
    }
    for fault in &planted {
        // A flaky BMC and a slow node (flagged against the fleet baseline, not quarantined) end available.
        assert_eq!(
            fault.expected_reason.is_none(),
            matches!(fault.kind, FaultKind::FlakyBmc | FaultKind::SlowGpu)
        );
    }
    let wrong = planted
        .iter()
        .find(|f| f.kind == FaultKind::WrongGpuCount)
        .expect("wrong");
    assert_eq!(
        wrong.expected_reason.as_deref(),
        Some("expected 8× NVIDIA H100 80GB HBM3, found 7")
    );

    // Dead BMCs drop connections; flaky ones fail some requests; healthy ones answer.
    let http = reqwest::Client::new();
    for node in a.nodes() {
        let url = format!("{}/redfish/v1/", node.bmc_url);
        let mut failures = 0;
        for _ in 0..20 {
            let ok = matches!(http.get(&url).send().await, Ok(r) if r.status().is_success());
            failures += u32::from(!ok);
        }
        match node.fault {
            Some(FaultKind::DeadBmc) => assert_eq!(failures, 20, "{}", node.serial),
            Some(FaultKind::FlakyBmc) => assert!(failures > 0 && failures < 20, "{failures}"),
            _ => assert_eq!(failures, 0, "{}", node.serial),
        }
    }
}

#[tokio::test]
async fn the_manifest_is_one_kiln_accepts() {
    let hall = SimHall::start(faulty_config(1), "http://127.0.0.1:9")
        .await
        .expect("hall");
    let text = hall.manifest_csv();
    let rows = parse_manifest(&text, ManifestFormat::Csv, &|_| None).expect("kiln parses it");
    assert_eq!(rows.len(), 20);
    for (row, node) in rows.iter().zip(hall.nodes()) {
        assert_eq!(row.serial, node.serial);
        assert_eq!(row.boot_mac, node.boot_mac);
        assert_eq!(row.bmc_address, node.bmc_url);
        assert_eq!(row.rack, node.rack);
        assert_eq!(row.slot, i64::from(node.slot));
        assert_eq!(row.sku, "h100-sxm-80gb");
    }
    assert_eq!(rows.iter().filter(|r| r.rack == "R10").count(), 2);
}

#[tokio::test]
async fn tls_bmcs_expose_the_fingerprint_to_pin() {
    let mut config = fast_config(2);
    config.bmc_tls = true;
    config.bmc_ipmi = true;
    let hall = SimHall::start(config, "http://127.0.0.1:9")
        .await
        .expect("hall");
    for (node, endpoint) in hall.nodes().iter().zip(hall.fleet().endpoints()) {
        assert!(
            node.bmc_url.starts_with("https://127.0.0.1:"),
            "{}",
            node.bmc_url
        );
        let pinned = endpoint
            .fingerprint
            .as_ref()
            .expect("fingerprint")
            .to_string();
        assert_eq!(node.bmc_fingerprint.as_deref(), Some(pinned.as_str()));
        assert!(node.ipmi_port.is_some());
    }
    assert_ne!(
        hall.nodes()[0].bmc_fingerprint,
        hall.nodes()[1].bmc_fingerprint
    );
}
