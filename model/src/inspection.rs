//! What the node agent's hardware inspection found, as reported to the provisioner: chassis identity, CPUs,
//! memory, disks, NICs and GPUs, plus the lines it could not read.

use serde::{Deserialize, Serialize};

use crate::{Disk, Gpu, Hardware, MacAddr, Nic};

/// What the chassis says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    /// Manufacturer.
    pub vendor: Option<String>,
    /// Product name.
    pub model: Option<String>,
    /// Chassis/system serial number.
    pub serial: Option<String>,
}

/// The CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// Model name of the first CPU.
    pub model: Option<String>,
    /// Physical packages.
    pub sockets: u32,
    /// Physical cores over all sockets.
    pub cores: u32,
    /// Logical CPUs (hardware threads).
    pub threads: u32,
}

/// A disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Kernel name, e.g. `nvme0n1`.
    pub name: String,
    /// Model string.
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Capacity.
    pub size_bytes: u64,
    /// Whether it spins.
    pub rotational: bool,
}

/// A physical network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicInfo {
    /// Interface name.
    pub name: String,
    /// Permanent MAC address.
    pub mac: MacAddr,
    /// Link speed when the link is up and the driver reports it.
    pub speed_mbps: Option<i64>,
    /// PCI address of the NIC function, e.g. `0000:3b:00.0`.
    pub pci_bus_id: Option<String>,
}

/// A GPU on the PCI bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciGpu {
    /// PCI address, e.g. `0000:18:00.0`.
    pub pci_bus_id: String,
    /// PCI vendor id.
    pub vendor_id: u16,
    /// PCI device id.
    pub device_id: u16,
    /// Product name as NVML reports it, when the device id is known; else the `lspci` name.
    pub model: String,
}

/// Everything inspection found, as reported to the provisioner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspection {
    /// Chassis identity.
    pub system: SystemInfo,
    /// CPUs.
    pub cpus: CpuInfo,
    /// Installed memory (MemTotal).
    pub memory_bytes: u64,
    /// Disks, by name.
    pub disks: Vec<DiskInfo>,
    /// Physical NICs, by name.
    pub nics: Vec<NicInfo>,
    /// GPUs, by PCI address.
    pub gpus: Vec<PciGpu>,
    /// Entries that could not be read (inspection went on without them).
    pub warnings: Vec<String>,
}

impl Inspection {
    /// The parts the inventory records per node.
    pub fn to_hardware(&self) -> Hardware {
        Hardware {
            gpus: self
                .gpus
                .iter()
                .enumerate()
                .map(|(index, gpu)| Gpu {
                    index: index as i64,
                    model: gpu.model.clone(),
                    uuid: None,
                    serial: None,
                    pci_bus_id: Some(gpu.pci_bus_id.clone()),
                    memory_mib: None,
                    vbios: None,
                })
                .collect(),
            nics: self
                .nics
                .iter()
                .map(|nic| Nic {
                    name: nic.name.clone(),
                    mac: nic.mac,
                    speed_mbps: nic.speed_mbps,
                })
                .collect(),
            disks: self
                .disks
                .iter()
                .map(|disk| Disk {
                    name: disk.name.clone(),
                    model: disk.model.clone(),
                    serial: disk.serial.clone(),
                    size_bytes: i64::try_from(disk.size_bytes).unwrap_or(i64::MAX),
                })
                .collect(),
        }
    }
}
