//! A virtual node's hardware as the agent reads it: a sysfs and `/proc` tree plus `dmidecode` and `lspci`
//! text, written to a temporary directory only while the agent's real inspection runs (thousands of nodes
//! would otherwise keep hundreds of thousands of small files around).
//!
//! Nodes of one shape (SKU, GPU count) differ only in their identity (chassis serial, MACs), so the tree is
//! written and inspected once per shape with a template identity, and each node's inspection is that result
//! with the node's identity put in. Writing a tree per node cost more CPU (file creation and removal) than
//! all of kiln's work on the node, which made the bring-up benchmark measure the simulator.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use kiln_agent::{InspectError, InspectSources, Inspection};
use kiln_inventory::MacAddr;

/// GPU PCI device ids of the SKUs the simulator can build (as recorded from such boards).
const GPU_DEVICES: &[(&str, u16, &str)] = &[
    ("h100-sxm-80gb", 0x2330, "GH100 [H100 SXM5 80GB]"),
    ("h200-sxm-141gb", 0x2335, "GH100 [H200 SXM 141GB]"),
    ("a100-sxm-80gb", 0x20b2, "GA100 [A100 SXM4 80GB]"),
    ("b200-sxm-180gb", 0x2901, "GB100 [B200]"),
];

/// PCI addresses of the GPU slots on the simulated board, in NVML index order.
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

/// What one node's hardware is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHardware {
    /// Chassis serial (DMI).
    pub serial: String,
    /// The PXE NIC's MAC; a second NIC gets the next address.
    pub boot_mac: MacAddr,
    /// SKU id, for the GPU model.
    pub sku: String,
    /// GPUs present (the first `gpus` slots of [`GPU_BUS_IDS`]).
    pub gpus: usize,
}

/// Why the hardware could not be simulated or read.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    /// The simulator has no board for this SKU.
    #[error(
        "kiln-sim has no board for SKU {0:?} (known: h100-sxm-80gb, h200-sxm-141gb, a100-sxm-80gb, b200-sxm-180gb)"
    )]
    UnknownSku(String),
    /// The fixture tree could not be written.
    #[error("cannot write the fixture hardware tree")]
    Io(#[from] std::io::Error),
    /// The agent's inspection failed.
    #[error("inspection failed")]
    Inspect(#[from] InspectError),
}

/// The GPU PCI device id and `lspci` name of a SKU.
pub fn gpu_device(sku: &str) -> Result<(u16, &'static str), HardwareError> {
    GPU_DEVICES
        .iter()
        .find(|(id, _, _)| *id == sku)
        .map(|(_, device, name)| (*device, *name))
        .ok_or_else(|| HardwareError::UnknownSku(sku.to_string()))
}

/// The identity the shape templates are inspected with (replaced by each node's).
const TEMPLATE_SERIAL: &str = "KSIM-SHAPE-TEMPLATE";
const TEMPLATE_MAC: &str = "02:4b:fe:fe:fe:00";

fn write(root: &Path, rel: &str, text: &str) -> std::io::Result<()> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

fn second_mac(mac: MacAddr) -> String {
    let text = mac.to_string();
    let last = text
        .rsplit(':')
        .next()
        .and_then(|b| u8::from_str_radix(b, 16).ok())
        .unwrap_or(0);
    format!("{}:{:02x}", &text[..text.len() - 3], last ^ 0x80)
}

impl NodeHardware {
    /// `dmidecode -t system` text for this chassis.
    fn dmidecode(&self) -> String {
        format!(
            "# dmidecode 3.5\nGetting SMBIOS data from sysfs.\nSMBIOS 3.5.0 present.\n\n\
             Handle 0x0001, DMI type 1, 27 bytes\nSystem Information\n\tManufacturer: Supermicro\n\
             \tProduct Name: SYS-821GE-TNHR\n\tVersion: 0123456789\n\tSerial Number: {}\n\
             \tWake-up Type: Power Switch\n\tFamily: SMC X13\n",
            self.serial
        )
    }

    /// `lspci -vmm -D -nn` text: the BMC's VGA, the GPUs, the fabric NIC.
    fn lspci(&self, device: u16, name: &str) -> String {
        let mut out = String::from(
            "Slot:\t0000:03:00.0\nClass:\tVGA compatible controller [0300]\n\
             Vendor:\tASPEED Technology, Inc. [1a03]\nDevice:\tASPEED Graphics Family [2000]\n\n",
        );
        for slot in &GPU_BUS_IDS[..self.gpus.min(GPU_BUS_IDS.len())] {
            out.push_str(&format!(
                "Slot:\t{slot}\nClass:\t3D controller [0302]\nVendor:\tNVIDIA Corporation [10de]\n\
                 Device:\t{name} [{device:04x}]\n\n"
            ));
        }
        out.push_str(
            "Slot:\t0000:3b:00.0\nClass:\tInfiniband controller [0207]\n\
             Vendor:\tMellanox Technologies [15b3]\nDevice:\tMT2910 Family [ConnectX-7] [1021]\n\n",
        );
        out
    }

    /// Writes the sysfs and `/proc` tree under `root`.
    fn write_tree(&self, root: &Path, device: u16) -> std::io::Result<()> {
        let mut cpuinfo = String::new();
        for cpu in 0..16 {
            cpuinfo.push_str(&format!(
                "processor\t: {cpu}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n\
                 physical id\t: {}\ncore id\t\t: {}\n\n",
                cpu / 8,
                (cpu % 8) / 2
            ));
        }
        write(root, "proc/cpuinfo", &cpuinfo)?;
        write(root, "proc/meminfo", "MemTotal:       2113619340 kB\n")?;
        write(root, "sys/class/dmi/id/sys_vendor", "Supermicro\n")?;
        write(root, "sys/class/dmi/id/product_name", "SYS-821GE-TNHR\n")?;
        write(root, "sys/class/dmi/id/product_serial", &self.serial)?;
        for (index, disk) in ["nvme0n1", "nvme1n1"].iter().enumerate() {
            write(root, &format!("sys/block/{disk}/size"), "7501476528\n")?;
            write(
                root,
                &format!("sys/block/{disk}/device/serial"),
                &format!("{}-D{index}", self.serial),
            )?;
            write(
                root,
                &format!("sys/block/{disk}/device/model"),
                "SAMSUNG MZQL23T8HCLS-00A07\n",
            )?;
            write(root, &format!("sys/block/{disk}/queue/rotational"), "0\n")?;
        }
        let nics = [
            ("eno1", self.boot_mac.to_string(), "25000", "0000:c1:00.0"),
            (
                "ibp59s0",
                second_mac(self.boot_mac),
                "400000",
                "0000:3b:00.0",
            ),
        ];
        for (name, mac, speed, bus) in nics {
            write(root, &format!("sys/class/net/{name}/address"), &mac)?;
            write(root, &format!("sys/class/net/{name}/speed"), speed)?;
            let device_dir = root.join(format!("sys/devices/pci0000:00/{bus}"));
            std::fs::create_dir_all(&device_dir)?;
            std::os::unix::fs::symlink(
                &device_dir,
                root.join(format!("sys/class/net/{name}/device")),
            )?;
        }
        let pci = |bus: &str, class: &str, vendor: &str, device: &str| {
            let dir = format!("sys/bus/pci/devices/{bus}");
            write(root, &format!("{dir}/class"), class)?;
            write(root, &format!("{dir}/vendor"), vendor)?;
            write(root, &format!("{dir}/device"), device)
        };
        pci("0000:03:00.0", "0x030000", "0x1a03", "0x2000")?;
        pci("0000:3b:00.0", "0x020700", "0x15b3", "0x1021")?;
        for bus in &GPU_BUS_IDS[..self.gpus.min(GPU_BUS_IDS.len())] {
            pci(bus, "0x030200", "0x10de", &format!("{device:#06x}"))?;
        }
        Ok(())
    }

    /// The agent's inspection of this node: the inspection of its shape's tree (written and inspected once per
    /// shape) with this node's serial and MACs (blocking: call from `spawn_blocking`).
    pub fn inspect(&self) -> Result<Inspection, HardwareError> {
        type Shapes = Mutex<HashMap<(String, usize), Arc<OnceLock<String>>>>;
        static SHAPES: OnceLock<Shapes> = OnceLock::new();
        let template = NodeHardware {
            serial: TEMPLATE_SERIAL.into(),
            boot_mac: TEMPLATE_MAC.parse().expect("template MAC"),
            sku: self.sku.clone(),
            gpus: self.gpus,
        };
        // Unknown SKUs fail before anything is cached.
        gpu_device(&self.sku)?;
        let slot = SHAPES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((self.sku.clone(), self.gpus))
            .or_default()
            .clone();
        let json = match slot.get() {
            Some(json) => json,
            None => {
                let inspected = serde_json::to_string(&template.inspect_tree()?)
                    .map_err(|err| HardwareError::Io(std::io::Error::other(err)))?;
                slot.get_or_init(|| inspected)
            }
        };
        let personal = json
            .replace(TEMPLATE_SERIAL, &self.serial)
            .replace(TEMPLATE_MAC, &self.boot_mac.to_string())
            .replace(
                &second_mac(TEMPLATE_MAC.parse().expect("template MAC")),
                &second_mac(self.boot_mac),
            );
        serde_json::from_str(&personal).map_err(|err| HardwareError::Io(std::io::Error::other(err)))
    }

    /// Writes the node's hardware to a temporary tree and runs the agent's inspection on it (blocking).
    pub fn inspect_tree(&self) -> Result<Inspection, HardwareError> {
        let (device, name) = gpu_device(&self.sku)?;
        let dir = tempfile::Builder::new().prefix("kiln-sim-hw-").tempdir()?;
        self.write_tree(dir.path(), device)?;
        let sources = InspectSources {
            root: dir.path().to_path_buf(),
            dmidecode: Some(self.dmidecode()),
            lspci_vmm: Some(self.lspci(device, name)),
        };
        Ok(kiln_agent::inspect(&sources)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(gpus: usize) -> NodeHardware {
        NodeHardware {
            serial: "KSIM000003".into(),
            boot_mac: "02:4b:00:00:03:00".parse().expect("mac"),
            sku: "h100-sxm-80gb".into(),
            gpus,
        }
    }

    #[test]
    fn the_agent_reads_the_node_as_built() {
        let found = node(8).inspect().expect("inspect");
        assert_eq!(found.system.serial.as_deref(), Some("KSIM000003"));
        assert_eq!(found.gpus.len(), 8);
        let profile = kiln_health::SkuCatalog::builtin()
            .expect("catalog")
            .get("h100-sxm-80gb")
            .expect("profile")
            .clone();
        assert!(
            found
                .gpus
                .iter()
                .all(|gpu| gpu.model.contains(&profile.nvml_name_contains))
        );
        let macs: Vec<String> = found.nics.iter().map(|n| n.mac.to_string()).collect();
        assert!(macs.contains(&"02:4b:00:00:03:00".to_string()), "{macs:?}");
        assert_eq!(found.disks.len(), 2);
        assert!(found.warnings.is_empty(), "{:?}", found.warnings);
    }

    #[test]
    fn a_missing_gpu_is_a_sku_mismatch_in_the_agents_words() {
        let found = node(7).inspect().expect("inspect");
        assert_eq!(found.gpus.len(), 7);
        let expected = kiln_agent::SkuExpectation {
            sku_id: "h100-sxm-80gb".into(),
            gpu_count: 8,
            gpu_model: "NVIDIA H100 80GB HBM3".into(),
            ..Default::default()
        };
        let mismatches = kiln_agent::compare(&found, &expected);
        assert_eq!(mismatches.len(), 1);
        assert!(
            mismatches[0]
                .to_string()
                .contains(&crate::faults::wrong_gpu_reason(8, "NVIDIA H100 80GB HBM3"))
        );
    }

    #[test]
    fn the_shape_cache_answers_what_the_nodes_own_tree_does() {
        for gpus in [8, 7] {
            let mut one = node(gpus);
            let direct = one.inspect_tree().expect("tree");
            assert_eq!(one.inspect().expect("cached"), direct);
            // A second node of the same shape gets its own identity, not the first one's.
            one.serial = "KSIM000099".into();
            one.boot_mac = "02:4b:00:00:63:00".parse().expect("mac");
            let other = one.inspect().expect("cached");
            assert_eq!(other, one.inspect_tree().expect("tree"));
            assert_ne!(other, direct);
        }
    }

    #[test]
    fn unknown_skus_are_refused() {
        let mut odd = node(8);
        odd.sku = "tpu-v9".into();
        assert!(matches!(odd.inspect(), Err(HardwareError::UnknownSku(_))));
    }
}
