//! Inspection of recorded fixture trees and comparison with the SKU.

use kiln_agent::inspect::{parse_dmidecode_system, parse_lspci_vmm};
use kiln_agent::{InspectError, InspectSources, SkuExpectation, compare, describe, inspect};
use kiln_model::Sku;

use crate::fixtures::{DMIDECODE, GPU_BUS_IDS, hgx_node, lspci_text};

fn h100_sku() -> Sku {
    Sku {
        id: "h100-sxm-80gb".into(),
        description: "HGX H100 8-GPU".into(),
        gpu_count: 8,
        gpu_model: "NVIDIA H100 80GB HBM3".into(),
        gpu_memory_gib: 80,
    }
}

#[test]
fn inspects_an_hgx_node() {
    let (_dir, root) = hgx_node(&GPU_BUS_IDS);
    let sources = InspectSources {
        root,
        dmidecode: Some(DMIDECODE.into()),
        lspci_vmm: Some(lspci_text(&GPU_BUS_IDS)),
    };
    let found = inspect(&sources).expect("inspect");
    assert_eq!(found.system.vendor.as_deref(), Some("Supermicro"));
    assert_eq!(found.system.model.as_deref(), Some("SYS-821GE-TNHR"));
    assert_eq!(found.system.serial.as_deref(), Some("S9A1234X"));
    assert_eq!(
        (found.cpus.sockets, found.cpus.cores, found.cpus.threads),
        (2, 4, 8)
    );
    assert_eq!(
        found.cpus.model.as_deref(),
        Some("Intel(R) Xeon(R) Platinum 8480+")
    );
    assert_eq!(found.memory_bytes, 2_113_619_340 * 1024);
    let disks: Vec<(&str, Option<&str>, u64)> = found
        .disks
        .iter()
        .map(|d| (d.name.as_str(), d.serial.as_deref(), d.size_bytes))
        .collect();
    assert_eq!(
        disks,
        vec![
            ("nvme0n1", Some("S6EUNX0T500001"), 7_501_476_528 * 512),
            ("nvme1n1", Some("S6EUNX0T500002"), 7_501_476_528 * 512),
        ],
        "loop devices are skipped, serials trimmed"
    );
    let nics: Vec<(&str, String, Option<i64>, Option<&str>)> = found
        .nics
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                n.mac.to_string(),
                n.speed_mbps,
                n.pci_bus_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        nics,
        vec![
            (
                "eno1",
                "3c:ec:ef:01:02:03".into(),
                Some(1000),
                Some("0000:c1:00.0")
            ),
            (
                "eno2",
                "3c:ec:ef:01:02:04".into(),
                None,
                Some("0000:c1:00.1")
            ),
            (
                "ibp59s0",
                "58:a2:e1:00:00:01".into(),
                Some(400_000),
                Some("0000:3b:00.0")
            ),
        ],
        "lo has no device and is skipped; a down link has no speed"
    );
    let gpus: Vec<&str> = found.gpus.iter().map(|g| g.pci_bus_id.as_str()).collect();
    assert_eq!(gpus, GPU_BUS_IDS, "the ASPEED VGA is not a GPU");
    assert!(
        found
            .gpus
            .iter()
            .all(|g| g.model == "NVIDIA H100 80GB HBM3")
    );
    assert!(compare(&found, &SkuExpectation::from(&h100_sku())).is_empty());

    let hardware = found.to_hardware();
    assert_eq!(hardware.gpus.len(), 8);
    assert_eq!(hardware.gpus[4].pci_bus_id.as_deref(), Some("0000:9a:00.0"));
    assert_eq!(hardware.nics.len(), 3);
    assert_eq!(hardware.disks[0].serial.as_deref(), Some("S6EUNX0T500001"));

    // Typed JSON survives a round trip.
    let json = serde_json::to_string(&found).expect("json");
    assert_eq!(
        serde_json::from_str::<kiln_agent::Inspection>(&json).expect("parse"),
        found
    );
}

#[test]
fn missing_gpu_is_named_precisely() {
    let present: Vec<&str> = GPU_BUS_IDS
        .iter()
        .copied()
        .filter(|b| *b != "0000:9a:00.0")
        .collect();
    let (_dir, root) = hgx_node(&present);
    let found = inspect(&InspectSources {
        root,
        dmidecode: None,
        lspci_vmm: None,
    })
    .expect("inspect");
    let mut expected = SkuExpectation::from(&h100_sku());
    expected.gpu_bus_ids = GPU_BUS_IDS.iter().map(|s| s.to_string()).collect();
    expected.min_memory_bytes = Some(4 << 40);
    expected.min_nics = Some(2);
    expected.min_nic_speed_mbps = Some(100_000);
    expected.min_disks = Some(2);
    expected.min_disk_bytes = Some(1 << 40);
    let lines = describe("slot 4", &compare(&found, &expected));
    assert_eq!(
        lines,
        vec![
            "slot 4: expected 8× NVIDIA H100 80GB HBM3, found 7; missing PCI 0000:9a:00.0".to_string(),
            "slot 4: expected at least 4096.0 GiB of memory, found 2015.7 GiB".to_string(),
            "slot 4: expected at least 2 NICs at 100000 Mb/s or more, found 1; eno1 at 1000 Mb/s; eno2 link down"
                .to_string(),
        ]
    );
    // Without a sysfs PCI tree the lspci text alone finds them; a wrong model is listed with its address.
    let (_dir, root) = hgx_node(&[]);
    let text = lspci_text(&GPU_BUS_IDS).replacen("[2330]", "[20b2]", 1);
    let found = inspect(&InspectSources {
        root,
        dmidecode: None,
        lspci_vmm: Some(text),
    })
    .expect("inspect");
    let lines = describe(
        "slot 4",
        &compare(&found, &SkuExpectation::from(&h100_sku())),
    );
    assert_eq!(
        lines,
        vec!["slot 4: expected 8× NVIDIA H100 80GB HBM3, found 7; also 1× NVIDIA A100-SXM4-80GB at 0000:18:00.0"
            .to_string()]
    );
}

#[test]
fn unreadable_entries_are_errors_or_warnings() {
    let (_dir, root) = hgx_node(&GPU_BUS_IDS);
    // A speed attribute the driver refuses to read (here: a directory) and a disk whose size is garbage.
    std::fs::remove_file(root.join("sys/class/net/eno1/speed")).expect("rm");
    std::fs::create_dir(root.join("sys/class/net/eno1/speed")).expect("mkdir");
    std::fs::write(root.join("sys/block/nvme1n1/size"), "lots\n").expect("write");
    std::fs::remove_file(root.join("sys/block/nvme0n1/device/serial")).expect("rm");
    let found = inspect(&InspectSources {
        root: root.clone(),
        ..Default::default()
    })
    .expect("inspect");
    assert_eq!(found.nics[0].speed_mbps, None);
    assert_eq!(found.disks.len(), 1);
    assert_eq!(found.disks[0].serial, None);
    assert_eq!(
        found.warnings,
        vec![
            "disk nvme0n1: no serial".to_string(),
            "disk nvme1n1: size unreadable; skipped".to_string()
        ]
    );

    std::fs::write(root.join("proc/meminfo"), "MemFree: 1 kB\n").expect("write");
    let err = inspect(&InspectSources {
        root: root.clone(),
        ..Default::default()
    })
    .expect_err("no MemTotal");
    assert!(matches!(err, InspectError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("meminfo"), "{err}");

    std::fs::remove_file(root.join("proc/cpuinfo")).expect("rm");
    let err = inspect(&InspectSources {
        root,
        ..Default::default()
    })
    .expect_err("no cpuinfo");
    assert!(matches!(err, InspectError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains("proc/cpuinfo"), "{err}");
}

#[test]
fn parsers_tolerate_odd_input() {
    let info = parse_dmidecode_system(DMIDECODE);
    assert_eq!(info.serial.as_deref(), Some("S9A1234X"));
    let placeholder = DMIDECODE.replace("S9A1234X", "To Be Filled By O.E.M.");
    assert_eq!(parse_dmidecode_system(&placeholder).serial, None);
    assert_eq!(parse_dmidecode_system("").vendor, None);
    let devices = parse_lspci_vmm(&lspci_text(&GPU_BUS_IDS[..2]));
    assert_eq!(devices.len(), 4);
    assert_eq!(devices[1].device, 0x2330);
    assert_eq!(devices[1].device_name, "GH100 [H100 SXM5 80GB]");
    assert!(parse_lspci_vmm("Slot:\nClass: [zz]\n\ngarbage\n").is_empty());
}
