//! kiln-sim: a hall of virtual GPU nodes for `kiln demo`, `kiln bench bringup` and the lifecycle engine's
//! tests. Only the node side is simulated; kiln talks to it over its real protocols:
//!
//! - every node has a simulated BMC (kiln-bmc-sim: Redfish over HTTP(S), optionally IPMI, on loopback), with
//!   dead or flaky BMCs planted by the fault fractions;
//! - on power-on a node waits out its POST, then network-boots: it fetches `GET {provisioner}/boot/{mac}.ipxe`
//!   (retrying while the provisioner is down), reads the script ([`script`]) and, in the ramdisk, runs the
//!   real agent library: inspection of a fixture hardware tree ([`hardware`]), image writes through
//!   kiln-images' verifying writer to a sparse file or a null sink, wipes by the agent's erase chain over the
//!   node's disk files ([`disks`]), reports with the script's token;
//! - a node with an imaged disk boots its installed OS, whose agent reports its SSH host key and address with
//!   the token the image ramdisk handed over, and whose SSH server ([`ssh`]) answers the command set of
//!   `kiln_provisioner::lifecycle::access` — or [`SimAccess`] answers the same in-process at scale;
//! - burn-in answers are raw evidence collected like a real node's: kiln-health's collector over the fake NVML
//!   library with a stress stand-in ([`burnin`]), judged by the provisioner, never by the node; NCCL output is
//!   nccl-tests text that kiln-health's judge and bisection read ([`nccl_text`]).
//!
//! - `dmesg` shows the boot and driver lines, and an NVSwitch SXid on a planted node after its burn-in
//!   ([`kernel_log`]).
//!
//! Invariant: a power-off or a new power-on aborts whatever the node was doing.
//! Invariant: fault placement and host keys depend only on the config (the seed), never on timing.

pub mod access;
pub mod answers;
pub mod boot;
pub mod burnin;
pub mod config;
pub mod disks;
pub mod faults;
pub mod hall;
pub mod hardware;
pub mod kernel_log;
pub mod nccl_text;
pub mod node;
pub mod script;
pub mod ssh;
pub mod tools;

pub use access::SimAccess;
pub use config::{DiskMode, Durations, EvidenceFaults, FaultFractions, SimConfig, SshMode};
pub use faults::{FaultKind, PlantedFault};
pub use hall::{NodeStatus, SimHall, SimNode};

/// Why a hall could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration cannot describe a hall.
    #[error("invalid hall configuration: {0}")]
    Config(String),
    /// The SKU has no health profile.
    #[error("unknown SKU")]
    Sku(#[from] kiln_health::sku::SkuError),
    /// The simulator has no board for the SKU.
    #[error("no simulated board")]
    Hardware(#[from] hardware::HardwareError),
    /// The BMC fleet did not start.
    #[error("the simulated BMC fleet did not start")]
    Bmc(#[from] kiln_bmc_sim::SimError),
    /// An SSH listener could not be bound.
    #[error("cannot bind an SSH listener on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    /// The nodes' disk directory could not be created.
    #[error("cannot create the nodes' disk directory")]
    DiskDir(#[source] std::io::Error),
    /// A host key could not be generated.
    #[error("cannot generate an SSH host key")]
    HostKey(#[from] russh::keys::ssh_key::Error),
}
