//! What a simulated hall looks like: its size and layout, the hardware model, how long each step of a node's
//! life takes, which faults are planted, and how nodes are reached.

use std::path::PathBuf;
use std::time::Duration;

use russh::keys::PublicKey;

/// How long simulated hardware and software take, before [`SimConfig::time_scale`] is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Durations {
    /// From the BMC's power-on request until the server is on (the BMC's own power state machine).
    pub power_on: Duration,
    /// Firmware POST: from power-on until the NIC or disk boots.
    pub post: Duration,
    /// From the iPXE script until the ramdisk's agent runs.
    pub ramdisk_boot: Duration,
    /// Hardware inspection in the ramdisk.
    pub inspect: Duration,
    /// Extra time an image write takes (the bytes themselves are written as fast as loopback allows).
    pub image_write: Duration,
    /// A secure erase in wipe mode.
    pub wipe: Duration,
    /// From disk boot until the installed OS's agent reports.
    pub installed_boot: Duration,
    /// One multi-node NCCL run (burn-in takes the duration the provisioner asks for, scaled).
    pub nccl: Duration,
}

impl Default for Durations {
    /// Figures of the order real HGX servers show.
    fn default() -> Self {
        Self {
            power_on: Duration::from_secs(5),
            post: Duration::from_secs(120),
            ramdisk_boot: Duration::from_secs(30),
            inspect: Duration::from_secs(10),
            image_write: Duration::from_secs(180),
            wipe: Duration::from_secs(60),
            installed_boot: Duration::from_secs(60),
            nccl: Duration::from_secs(120),
        }
    }
}

impl Durations {
    /// Every duration multiplied by `scale` (e.g. 0.01 compresses two minutes of POST into 1.2 s).
    pub fn scaled(&self, scale: f64) -> Self {
        let s = |d: Duration| scale_duration(d, scale);
        Self {
            power_on: s(self.power_on),
            post: s(self.post),
            ramdisk_boot: s(self.ramdisk_boot),
            inspect: s(self.inspect),
            image_write: s(self.image_write),
            wipe: s(self.wipe),
            installed_boot: s(self.installed_boot),
            nccl: s(self.nccl),
        }
    }
}

/// `d × scale`; a negative or non-finite scale gives zero.
pub fn scale_duration(d: Duration, scale: f64) -> Duration {
    if scale.is_finite() && scale > 0.0 {
        Duration::try_from_secs_f64(d.as_secs_f64() * scale).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    }
}

/// Fractions (0..=1) of the hall's nodes that get each fault. Every faulty node gets exactly one fault, so a
/// quarantine reason can be matched to its cause.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultFractions {
    /// The BMC drops every connection and datagram.
    pub dead_bmc: f64,
    /// The BMC answers some requests with HTTP 500 (and drops some IPMI datagrams).
    pub flaky_bmc: f64,
    /// Probability that a flaky BMC fails one request.
    pub flaky_error_rate: f64,
    /// One GPU is missing from the PCI bus, `nvidia-smi` and NCCL.
    pub wrong_gpu_count: f64,
    /// An XID 79 (GPU fallen off the bus) during burn-in.
    pub xid_burn_in: f64,
    /// Any NCCL group containing the node runs at a fraction of the SKU's bus bandwidth.
    pub slow_nccl: f64,
    /// The installed OS presents a different SSH host key than the one its agent reported.
    pub changed_host_key: f64,
    /// A data disk whose erase fails (a bad sector): only seen when a lease is released. Placed after every
    /// other fault, so adding it leaves the placement of the others as it was for a seed.
    pub erase_fails: f64,
    /// One GPU's PCIe link stays at a lower generation under load. Placed after the erase fault.
    pub pcie_downtrain: f64,
    /// A fatal NVSwitch SXid in the kernel log after the burn-in.
    pub sxid_burn_in: f64,
    /// The node's GPUs are 7% slower than the hall's: caught only by the fleet baseline.
    pub slow_gpu: f64,
}

/// Fractions (0..=1) of the hall's nodes whose burn-in evidence shows a fault, or who answer burn-in with
/// something other than evidence. Placed after the [`FaultFractions`], one fault per node as well.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EvidenceFaults {
    /// One GPU thermal-throttles under load (only NVML samples show it).
    pub throttled_gpu: f64,
    /// Hostile: the node answers burn-in with a passing verdict of its own.
    pub forged_verdict: f64,
    /// Hostile: the node answers burn-in with `{}`.
    pub empty_evidence: f64,
    /// The node's `kiln-agent burn-in` exits 1 without a document.
    pub collector_fails: f64,
}

impl FaultFractions {
    /// A mix exercising every fault: 2% dead and 10% flaky BMCs, 3% of each node fault (the erase fault and
    /// the GPU-depth faults too).
    pub fn demo() -> Self {
        Self {
            dead_bmc: 0.02,
            flaky_bmc: 0.10,
            flaky_error_rate: 0.10,
            wrong_gpu_count: 0.03,
            xid_burn_in: 0.03,
            slow_nccl: 0.03,
            changed_host_key: 0.03,
            erase_fails: 0.03,
            pcie_downtrain: 0.03,
            sxid_burn_in: 0.03,
            slow_gpu: 0.03,
        }
    }
}

/// Where virtual nodes write their images, and where their disk files ([`crate::disks`]) live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskMode {
    /// A directory `SERIAL/` per node in this directory, with the disk files `nvme0n1` (the image, sparse)
    /// and `nvme1n1` (data).
    SparseFiles(PathBuf),
    /// Written through kiln-images' writer (downloaded, decoded, verified) into a null sink: scale mode. The
    /// disk files a wipe erases exist only while it runs, in a temporary directory of the hall.
    Null,
}

/// How the provisioner reaches the installed OS of virtual nodes.
#[derive(Debug, Clone)]
pub enum SshMode {
    /// A russh server per node on a loopback port; only this client key is accepted.
    Servers {
        /// The provisioner's client public key.
        client_key: PublicKey,
    },
    /// No servers: nodes report an unreachable address and the provisioner uses [`crate::SimAccess`].
    InProcess,
}

/// A simulated hall.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Hall name in the manifest.
    pub hall: String,
    /// Number of nodes.
    pub nodes: usize,
    /// Nodes per rack; racks are filled in order (`R01`, `R02`, …) and the last may be partial.
    pub nodes_per_rack: usize,
    /// SKU id (a kiln-health SKU profile and an inventory SKU), e.g. `h100-sxm-80gb`.
    pub sku: String,
    /// Durations before scaling.
    pub durations: Durations,
    /// Multiplies every duration (and the burn-in duration the provisioner asks for).
    pub time_scale: f64,
    /// Planted faults.
    pub faults: FaultFractions,
    /// Planted burn-in evidence faults and hostile burn-in answers.
    pub evidence_faults: EvidenceFaults,
    /// Seed for fault placement and host keys: the same seed plants the same faults on the same nodes.
    pub seed: u64,
    /// How the installed OS is reached.
    pub ssh: SshMode,
    /// Where images go.
    pub disk: DiskMode,
    /// BMCs serve HTTPS with a self-signed certificate each (else plain HTTP).
    pub bmc_tls: bool,
    /// BMCs also answer IPMI on UDP.
    pub bmc_ipmi: bool,
    /// BMC login.
    pub bmc_user: String,
    /// BMC password (a simulator password, written into the manifest).
    pub bmc_password: String,
}

impl SimConfig {
    /// `nodes` healthy H100 nodes, 8 per rack, real-world durations compressed 100×, plain-HTTP BMCs, images
    /// into a null sink, no SSH servers.
    pub fn new(nodes: usize) -> Self {
        Self {
            hall: "sim-hall".into(),
            nodes,
            nodes_per_rack: 8,
            sku: "h100-sxm-80gb".into(),
            durations: Durations::default(),
            time_scale: 0.01,
            faults: FaultFractions::default(),
            evidence_faults: EvidenceFaults::default(),
            seed: 1,
            ssh: SshMode::InProcess,
            disk: DiskMode::Null,
            bmc_tls: false,
            bmc_ipmi: false,
            bmc_user: "admin".into(),
            bmc_password: "sim-bmc-pass".into(),
        }
    }

    /// The durations nodes actually take (after [`SimConfig::time_scale`]).
    pub fn effective_durations(&self) -> Durations {
        self.durations.scaled(self.time_scale)
    }

    /// Number of racks.
    pub fn racks(&self) -> usize {
        self.nodes.div_ceil(self.nodes_per_rack.max(1))
    }
}
