//! One virtual node: identity, planted fault, SSH host keys, and its mutable state (disk contents, the token
//! handed to the installed OS, whether the installed OS is up, the boot in progress). A boot runs as one tokio
//! task; a power-off or a new power-on aborts it.

use std::sync::{Mutex, MutexGuard};

use kiln_images::Sha256Digest;
use kiln_inventory::MacAddr;
use russh::keys::{PrivateKey, PublicKey};
use tokio::task::AbortHandle;

use crate::faults::FaultKind;

/// What is on the node's disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disk {
    /// Nothing bootable.
    Blank,
    /// A verified image.
    Imaged {
        /// Its sha256.
        sha256: Sha256Digest,
    },
}

/// Where the installed OS's agent reports, handed over by the image ramdisk (the real one writes it into the
/// installed OS's seed).
#[derive(Clone)]
pub struct AgentSeed {
    /// Provisioner base URL.
    pub url: String,
    /// The node token of the image boot.
    pub token: String,
}

impl std::fmt::Debug for AgentSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSeed")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Mutable state of a node.
#[derive(Debug)]
pub struct Runtime {
    /// Disk contents.
    pub disk: Disk,
    /// Seed of the installed OS (set by a successful image write).
    pub seed: Option<AgentSeed>,
    /// The installed OS is running (its SSH server answers).
    pub os_up: bool,
    /// The boot in progress.
    pub boot: Option<AbortHandle>,
    /// Boots started (power-ons seen).
    pub boots: u64,
    /// Images written successfully.
    pub images_written: u64,
    /// The BMC's power generation at the last boot (to find power-ons missed by a lagging subscriber).
    pub power_generation: u64,
    /// Burn-ins run since the last boot (what the kernel log can show of them).
    pub burn_ins_since_boot: u64,
}

/// One virtual node.
#[derive(Debug)]
pub struct VirtualNode {
    /// Index in the hall (and of its BMC in the fleet).
    pub index: usize,
    /// Chassis serial (the BMC's).
    pub serial: String,
    /// The PXE NIC's MAC.
    pub boot_mac: MacAddr,
    /// Rack name.
    pub rack: String,
    /// Slot in the rack (1-based).
    pub slot: u32,
    /// GPUs present.
    pub gpus: u32,
    /// The planted fault.
    pub fault: Option<FaultKind>,
    /// The host key the installed OS's agent reports.
    pub reported_key: PublicKey,
    /// The host key its SSH server presents (differs from the reported one under the changed-host-key fault).
    pub presented_key: PrivateKey,
    /// `host:port` reported for SSH.
    pub ssh_address: String,
    runtime: Mutex<Runtime>,
}

impl VirtualNode {
    /// A powered-off node with a blank disk.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        serial: String,
        boot_mac: MacAddr,
        rack: String,
        slot: u32,
        gpus: u32,
        fault: Option<FaultKind>,
        reported_key: PublicKey,
        presented_key: PrivateKey,
        ssh_address: String,
    ) -> Self {
        Self {
            index,
            serial,
            boot_mac,
            rack,
            slot,
            gpus,
            fault,
            reported_key,
            presented_key,
            ssh_address,
            runtime: Mutex::new(Runtime {
                disk: Disk::Blank,
                seed: None,
                os_up: false,
                boot: None,
                boots: 0,
                images_written: 0,
                power_generation: 0,
                burn_ins_since_boot: 0,
            }),
        }
    }

    /// Locks the mutable state (a poisoned lock is used as is: nothing in it can be left half-changed).
    pub fn runtime(&self) -> MutexGuard<'_, Runtime> {
        self.runtime
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stops whatever the node was doing: the boot task is aborted and the installed OS is down.
    pub fn power_off(&self) {
        let mut runtime = self.runtime();
        runtime.os_up = false;
        if let Some(boot) = runtime.boot.take() {
            boot.abort();
        }
    }

    /// Whether the installed OS is up.
    pub fn os_up(&self) -> bool {
        self.runtime().os_up
    }

    /// Whether `fault` is planted here.
    pub fn has(&self, fault: FaultKind) -> bool {
        self.fault == Some(fault)
    }
}

/// A powered-off 8-GPU node `KSIM000001` with `fault`, for unit tests.
#[cfg(test)]
pub fn test_node(fault: Option<FaultKind>) -> VirtualNode {
    use russh::keys::Algorithm;
    let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).expect("key");
    VirtualNode::new(
        0,
        "KSIM000001".into(),
        "02:00:00:00:00:01".parse().expect("mac"),
        "R01".into(),
        1,
        8,
        fault,
        key.public_key().clone(),
        key,
        "127.0.0.1:1".into(),
    )
}
