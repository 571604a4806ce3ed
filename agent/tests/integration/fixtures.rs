//! Fixture trees written by the tests: an 8-GPU HGX H100 node as sysfs, /proc, dmidecode and lspci show it.

use std::path::{Path, PathBuf};

/// The GPUs' PCI addresses on the fixture board.
pub const GPU_BUS_IDS: [&str; 8] = [
    "0000:18:00.0",
    "0000:2a:00.0",
    "0000:3a:00.0",
    "0000:5d:00.0",
    "0000:9a:00.0",
    "0000:ab:00.0",
    "0000:ba:00.0",
    "0000:db:00.0",
];

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write fixture");
}

/// `lspci -vmm -D -nn` as recorded from such a node (ASPEED BMC VGA + 8 H100 SXM5 + a ConnectX-7).
pub fn lspci_text(gpus: &[&str]) -> String {
    let mut out = String::from(
        "Slot:\t0000:03:00.0\nClass:\tVGA compatible controller [0300]\nVendor:\tASPEED Technology, Inc. [1a03]\n\
         Device:\tASPEED Graphics Family [2000]\nSVendor:\tSupermicro Computer Inc [15d9]\nSDevice:\tDevice [1c48]\nRev:\t52\n\n",
    );
    for slot in gpus {
        out.push_str(&format!(
            "Slot:\t{slot}\nClass:\t3D controller [0302]\nVendor:\tNVIDIA Corporation [10de]\n\
             Device:\tGH100 [H100 SXM5 80GB] [2330]\nSVendor:\tNVIDIA Corporation [10de]\nSDevice:\tDevice [16c1]\nRev:\ta1\n\n"
        ));
    }
    out.push_str(
        "Slot:\t0000:3b:00.0\nClass:\tInfiniband controller [0207]\nVendor:\tMellanox Technologies [15b3]\n\
         Device:\tMT2910 Family [ConnectX-7] [1021]\n\n",
    );
    out
}

/// `dmidecode -t system` as recorded.
pub const DMIDECODE: &str = "# dmidecode 3.4\nGetting SMBIOS data from sysfs.\nSMBIOS 3.5.0 present.\n\n\
Handle 0x0001, DMI type 1, 27 bytes\nSystem Information\n\tManufacturer: Supermicro\n\tProduct Name: SYS-821GE-TNHR\n\
\tVersion: 0123456789\n\tSerial Number: S9A1234X\n\tUUID: 00000000-0000-0000-0000-3cecef010203\n\
\tWake-up Type: Power Switch\n\tSKU Number: To be filled by O.E.M.\n\tFamily: SMC X13\n\n\
Handle 0x0002, DMI type 32, 20 bytes\nSystem Boot Information\n\tStatus: No errors detected\n";

/// Writes the node's tree under a temp dir; `gpus` are the GPU addresses present.
pub fn hgx_node(gpus: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().to_path_buf();
    let mut cpuinfo = String::new();
    for processor in 0..8 {
        let socket = processor / 4;
        let core = (processor % 4) / 2;
        cpuinfo.push_str(&format!(
            "processor\t: {processor}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n\
             physical id\t: {socket}\ncore id\t\t: {core}\nflags\t\t: fpu vme de\n\n"
        ));
    }
    write(&root, "proc/cpuinfo", &cpuinfo);
    write(
        &root,
        "proc/meminfo",
        "MemTotal:       2113619340 kB\nMemFree:        2000000000 kB\n",
    );
    write(&root, "sys/class/dmi/id/sys_vendor", "Supermicro\n");
    write(&root, "sys/class/dmi/id/product_name", "SYS-821GE-TNHR\n");
    write(&root, "sys/class/dmi/id/product_serial", "S9A1234X\n");
    for (name, serial, sectors) in [
        ("nvme0n1", "S6EUNX0T500001", "7501476528"),
        ("nvme1n1", "S6EUNX0T500002", "7501476528"),
    ] {
        write(
            &root,
            &format!("sys/block/{name}/size"),
            &format!("{sectors}\n"),
        );
        write(
            &root,
            &format!("sys/block/{name}/device/serial"),
            &format!("{serial}   \n"),
        );
        write(
            &root,
            &format!("sys/block/{name}/device/model"),
            "SAMSUNG MZQL23T8HCLS-00A07\n",
        );
        write(&root, &format!("sys/block/{name}/queue/rotational"), "0\n");
    }
    write(&root, "sys/block/loop0/size", "0\n");
    std::fs::create_dir_all(root.join("sys/class/net/lo")).expect("lo");
    write(&root, "sys/class/net/lo/address", "00:00:00:00:00:00\n");
    for (name, mac, speed, bus) in [
        ("eno1", "3c:ec:ef:01:02:03", "1000", "0000:c1:00.0"),
        ("ibp59s0", "58:a2:e1:00:00:01", "400000", "0000:3b:00.0"),
        ("eno2", "3c:ec:ef:01:02:04", "-1", "0000:c1:00.1"),
    ] {
        write(
            &root,
            &format!("sys/class/net/{name}/address"),
            &format!("{mac}\n"),
        );
        write(
            &root,
            &format!("sys/class/net/{name}/speed"),
            &format!("{speed}\n"),
        );
        let device = root.join(format!("sys/devices/pci0000:00/{bus}"));
        std::fs::create_dir_all(&device).expect("device dir");
        std::os::unix::fs::symlink(&device, root.join(format!("sys/class/net/{name}/device")))
            .expect("symlink");
    }
    let pci = |bus: &str, class: &str, vendor: &str, device: &str| {
        write(
            &root,
            &format!("sys/bus/pci/devices/{bus}/class"),
            &format!("{class}\n"),
        );
        write(
            &root,
            &format!("sys/bus/pci/devices/{bus}/vendor"),
            &format!("{vendor}\n"),
        );
        write(
            &root,
            &format!("sys/bus/pci/devices/{bus}/device"),
            &format!("{device}\n"),
        );
    };
    pci("0000:03:00.0", "0x030000", "0x1a03", "0x2000");
    pci("0000:3b:00.0", "0x020700", "0x15b3", "0x1021");
    for bus in gpus {
        pci(bus, "0x030200", "0x10de", "0x2330");
    }
    (dir, root)
}
