//! Hardware inspection from a root directory (`/` on a node, a recorded fixture tree in tests): `/proc` for CPUs
//! and memory, sysfs for disks, NICs, PCI devices and DMI, plus the text of `dmidecode -t system` and
//! `lspci -vmm -D -nn` when available (the agent runs those tools and passes their output in).
//!
//! A missing `/proc/cpuinfo` or `/proc/meminfo` is an error; an unreadable per-device attribute (a link speed
//! the driver will not report, a disk without a serial) becomes `None` plus a line in `warnings`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kiln_model::MacAddr;
pub use kiln_model::{CpuInfo, DiskInfo, Inspection, NicInfo, PciGpu, SystemInfo};

/// Why inspection failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// A file inspection cannot do without could not be read.
    #[error("cannot read {path}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file inspection cannot do without says something unexpected.
    #[error("{path} is not in the expected format: {detail}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Where inspection reads from.
#[derive(Debug, Clone, Default)]
pub struct InspectSources {
    /// Root of the filesystem holding `proc/` and `sys/`.
    pub root: PathBuf,
    /// Output of `dmidecode -t system`, if it could be run.
    pub dmidecode: Option<String>,
    /// Output of `lspci -vmm -D -nn`, if it could be run.
    pub lspci_vmm: Option<String>,
}

impl InspectSources {
    /// The running machine: root `/`, and the output of `dmidecode` and `lspci` when those tools run.
    pub fn this_host() -> Self {
        let run = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .output()
                .ok()
                .filter(|out| out.status.success())
                .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        };
        Self {
            root: PathBuf::from("/"),
            dmidecode: run("dmidecode", &["-t", "system"]),
            lspci_vmm: run("lspci", &["-vmm", "-D", "-nn"]),
        }
    }
}

/// NVIDIA PCI device ids kiln knows, with the product name NVML reports (the SKU table's `gpu_model`).
const NVIDIA_MODELS: &[(u16, &str)] = &[
    (0x2330, "NVIDIA H100 80GB HBM3"),
    (0x2335, "NVIDIA H200"),
    (0x20b2, "NVIDIA A100-SXM4-80GB"),
    (0x2901, "NVIDIA B200"),
];
const NVIDIA_VENDOR: u16 = 0x10de;

/// Reads the hardware described by `sources`.
pub fn inspect(sources: &InspectSources) -> Result<Inspection, InspectError> {
    let root = &sources.root;
    let mut warnings = Vec::new();
    let cpus = read_cpus(&root.join("proc/cpuinfo"))?;
    let memory_bytes = read_memory(&root.join("proc/meminfo"))?;
    let system = read_system(root, sources.dmidecode.as_deref());
    let disks = read_disks(root, &mut warnings);
    let nics = read_nics(root, &mut warnings);
    let gpus = read_gpus(root, sources.lspci_vmm.as_deref(), &mut warnings);
    Ok(Inspection {
        system,
        cpus,
        memory_bytes,
        disks,
        nics,
        gpus,
        warnings,
    })
}

fn read_required(path: &Path) -> Result<String, InspectError> {
    std::fs::read_to_string(path).map_err(|source| InspectError::Unreadable {
        path: path.to_path_buf(),
        source,
    })
}

/// A sysfs attribute, trimmed; `None` when missing, empty or unreadable.
fn attr(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn read_cpus(path: &Path) -> Result<CpuInfo, InspectError> {
    let text = read_required(path)?;
    let mut info = CpuInfo::default();
    let mut sockets = BTreeSet::new();
    let mut cores = BTreeSet::new();
    let mut physical = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => {
                info.threads += 1;
                physical = None;
            }
            "model name" if info.model.is_none() => info.model = Some(value.to_string()),
            "physical id" => {
                sockets.insert(value.to_string());
                physical = Some(value.to_string());
            }
            "core id" => {
                cores.insert((physical.clone().unwrap_or_default(), value.to_string()));
            }
            _ => {}
        }
    }
    if info.threads == 0 {
        return Err(InspectError::Malformed {
            path: path.to_path_buf(),
            detail: "no processor entries".into(),
        });
    }
    info.sockets = (sockets.len() as u32).max(1);
    info.cores = if cores.is_empty() {
        info.threads
    } else {
        cores.len() as u32
    };
    Ok(info)
}

fn read_memory(path: &Path) -> Result<u64, InspectError> {
    let text = read_required(path)?;
    let malformed = |detail: &str| InspectError::Malformed {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    let line = text
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .ok_or_else(|| malformed("no MemTotal line"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|_| malformed("MemTotal is not a number of kB"))?;
    Ok(kib * 1024)
}

/// Parses the "System Information" section of `dmidecode -t system`.
pub fn parse_dmidecode_system(text: &str) -> SystemInfo {
    let mut info = SystemInfo::default();
    let mut in_system = false;
    let clean = |value: &str| {
        let value = value.trim();
        let placeholder = value.is_empty()
            || [
                "to be filled by o.e.m.",
                "not specified",
                "default string",
                "0123456789",
            ]
            .contains(&value.to_ascii_lowercase().as_str());
        (!placeholder).then(|| value.to_string())
    };
    for line in text.lines() {
        if !line.starts_with('\t') && !line.starts_with(' ') {
            in_system = line.trim() == "System Information";
            continue;
        }
        if !in_system {
            continue;
        }
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        match key.trim() {
            "Manufacturer" => info.vendor = clean(value),
            "Product Name" => info.model = clean(value),
            "Serial Number" => info.serial = clean(value),
            _ => {}
        }
    }
    info
}

fn read_system(root: &Path, dmidecode: Option<&str>) -> SystemInfo {
    let dmi = root.join("sys/class/dmi/id");
    let from_sysfs = SystemInfo {
        vendor: attr(&dmi.join("sys_vendor")),
        model: attr(&dmi.join("product_name")),
        serial: attr(&dmi.join("product_serial")),
    };
    let Some(text) = dmidecode else {
        return from_sysfs;
    };
    let parsed = parse_dmidecode_system(text);
    SystemInfo {
        vendor: parsed.vendor.or(from_sysfs.vendor),
        model: parsed.model.or(from_sysfs.model),
        serial: parsed.serial.or(from_sysfs.serial),
    }
}

/// Directory entries' names, sorted; empty when the directory is missing.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn read_disks(root: &Path, warnings: &mut Vec<String>) -> Vec<DiskInfo> {
    const VIRTUAL: &[&str] = &["loop", "ram", "zram", "sr", "fd", "nbd", "dm-"];
    let block = root.join("sys/block");
    let mut disks = Vec::new();
    for name in names_in(&block) {
        if VIRTUAL.iter().any(|prefix| name.starts_with(prefix)) {
            continue;
        }
        let dir = block.join(&name);
        let Some(sectors) = attr(&dir.join("size")).and_then(|s| s.parse::<u64>().ok()) else {
            warnings.push(format!("disk {name}: size unreadable; skipped"));
            continue;
        };
        let serial = attr(&dir.join("device/serial")).or_else(|| attr(&dir.join("device/wwid")));
        if serial.is_none() {
            warnings.push(format!("disk {name}: no serial"));
        }
        disks.push(DiskInfo {
            model: attr(&dir.join("device/model")),
            serial,
            size_bytes: sectors * 512,
            rotational: attr(&dir.join("queue/rotational")).as_deref() == Some("1"),
            name,
        });
    }
    disks
}

fn read_nics(root: &Path, warnings: &mut Vec<String>) -> Vec<NicInfo> {
    let net = root.join("sys/class/net");
    let mut nics = Vec::new();
    for name in names_in(&net) {
        let dir = net.join(&name);
        // Only interfaces backed by a device are hardware; lo, bridges, veths have none.
        let Ok(device) = std::fs::read_link(dir.join("device")) else {
            continue;
        };
        let Some(mac) = attr(&dir.join("address")) else {
            warnings.push(format!("nic {name}: address unreadable; skipped"));
            continue;
        };
        let mac = match mac.parse::<MacAddr>() {
            Ok(mac) => mac,
            Err(err) => {
                warnings.push(format!("nic {name}: {err}; skipped"));
                continue;
            }
        };
        // Drivers report -1 or refuse the read (EINVAL) when the link is down.
        let speed_mbps = attr(&dir.join("speed"))
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|speed| *speed > 0);
        let pci_bus_id = device
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n.matches(':').count() == 2);
        nics.push(NicInfo {
            name,
            mac,
            speed_mbps,
            pci_bus_id,
        });
    }
    nics
}

fn hex_id(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

/// One device from `lspci -vmm -D -nn`: slot, class id, vendor id, device id, device name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LspciDevice {
    /// PCI address.
    pub slot: String,
    /// Class and subclass, e.g. `0x0302`.
    pub class: u16,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Device name without the id.
    pub device_name: String,
}

/// Splits `Name [abcd]` into the name and the id.
fn name_and_id(value: &str) -> Option<(String, u16)> {
    let value = value.trim();
    let open = value.rfind('[')?;
    let id = u16::from_str_radix(value[open + 1..].trim_end_matches(']'), 16).ok()?;
    Some((value[..open].trim().to_string(), id))
}

/// Parses `lspci -vmm -D -nn` output; records without ids are skipped.
pub fn parse_lspci_vmm(text: &str) -> Vec<LspciDevice> {
    let mut devices = Vec::new();
    for record in text.split("\n\n") {
        let field = |key: &str| {
            record.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        let (Some(slot), Some(class), Some(vendor), Some(device)) = (
            field("Slot"),
            field("Class"),
            field("Vendor"),
            field("Device"),
        ) else {
            continue;
        };
        let (Some((_, class)), Some((_, vendor)), Some((device_name, device))) = (
            name_and_id(&class),
            name_and_id(&vendor),
            name_and_id(&device),
        ) else {
            continue;
        };
        devices.push(LspciDevice {
            slot,
            class,
            vendor,
            device,
            device_name,
        });
    }
    devices
}

fn is_gpu_class(class: u32) -> bool {
    // 0x0300 VGA, 0x0302 3D controller.
    matches!(class >> 8, 0x0300 | 0x0302)
}

fn gpu_model(vendor: u16, device: u16, lspci_name: Option<&str>) -> String {
    NVIDIA_MODELS
        .iter()
        .find(|(id, _)| vendor == NVIDIA_VENDOR && *id == device)
        .map(|(_, name)| (*name).to_string())
        .or_else(|| lspci_name.map(str::to_string))
        .unwrap_or_else(|| format!("PCI {vendor:04x}:{device:04x}"))
}

fn read_gpus(root: &Path, lspci: Option<&str>, warnings: &mut Vec<String>) -> Vec<PciGpu> {
    let listed = lspci.map(parse_lspci_vmm).unwrap_or_default();
    let pci = root.join("sys/bus/pci/devices");
    let mut gpus = Vec::new();
    for slot in names_in(&pci) {
        let dir = pci.join(&slot);
        let ids = (
            attr(&dir.join("class")).and_then(|v| hex_id(&v)),
            attr(&dir.join("vendor")).and_then(|v| hex_id(&v)),
            attr(&dir.join("device")).and_then(|v| hex_id(&v)),
        );
        let (Some(class), Some(vendor), Some(device)) = ids else {
            warnings.push(format!("pci {slot}: class/vendor/device unreadable"));
            continue;
        };
        // Only NVIDIA display/3D functions count: BMC VGA chips (ASPEED) are display devices too.
        if !is_gpu_class(class) || vendor != u32::from(NVIDIA_VENDOR) {
            continue;
        }
        let (vendor, device) = (vendor as u16, device as u16);
        let name = listed
            .iter()
            .find(|d| d.slot == slot)
            .map(|d| d.device_name.as_str());
        gpus.push(PciGpu {
            model: gpu_model(vendor, device, name),
            pci_bus_id: slot,
            vendor_id: vendor,
            device_id: device,
        });
    }
    // Without a sysfs PCI tree (some containers), fall back to lspci alone.
    if gpus.is_empty() {
        for device in listed
            .iter()
            .filter(|d| is_gpu_class(u32::from(d.class) << 8) && d.vendor == NVIDIA_VENDOR)
        {
            gpus.push(PciGpu {
                pci_bus_id: device.slot.clone(),
                vendor_id: device.vendor,
                device_id: device.device,
                model: gpu_model(device.vendor, device.device, Some(&device.device_name)),
            });
        }
    }
    gpus
}
