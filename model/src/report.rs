//! The agent's reports to the provisioner: the JSON body types both sides share. Wire contract (the client is in
//! kiln-agent): `POST {provisioner}/agent/v1/report` with the node's token, body an [`AgentReport`].

use serde::{Deserialize, Serialize};

use crate::{Inspection, MacAddr};

/// Path of the report endpoint under the provisioner's base URL.
pub const REPORT_PATH: &str = "/agent/v1/report";

/// One report from a node's agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReport {
    /// The PXE NIC's MAC, identifying the node alongside its token.
    pub boot_mac: Option<MacAddr>,
    /// Increases with every report of one agent run (deduplication of retried deliveries).
    pub seq: u64,
    /// Unique per report (`{run id}-{seq}`); a report with a nonce the provisioner has seen is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The agent's version.
    pub agent_version: String,
    /// What happened (flattened: the body has a `step` field naming it, beside the step's own fields).
    #[serde(flatten)]
    pub step: AgentStep,
}

/// What the agent did or found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum AgentStep {
    /// The agent started (in the ramdisk or the installed OS).
    Booted {
        /// Kernel release, from `/proc/sys/kernel/osrelease`.
        kernel: Option<String>,
        /// Where it runs: `ramdisk` or `installed`.
        environment: String,
        /// The installed OS's SSH host key (OpenSSH public key line); the provisioner pins it for its checks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ssh_host_key: Option<String>,
        /// `host:port` where the installed OS's SSH server listens.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ssh_address: Option<String>,
    },
    /// Hardware inspection finished.
    Inspected {
        /// What was found.
        inspection: Inspection,
        /// Mismatches with the SKU, as sentences (empty: matches).
        sku_mismatches: Vec<String>,
    },
    /// An image write began.
    ImageStarted {
        /// The image's sha256.
        sha256: String,
        /// Where it is downloaded from.
        url: String,
        /// The disk written.
        target: String,
    },
    /// An image write is under way.
    ImageProgress {
        /// The image's sha256.
        sha256: String,
        /// Bytes downloaded.
        downloaded_bytes: u64,
        /// Download size, when known.
        total_bytes: Option<u64>,
    },
    /// The image is on disk and its sha256 matched.
    ImageWritten {
        /// The verified sha256.
        sha256: String,
        /// Bytes of disk content.
        disk_bytes: u64,
        /// Bytes downloaded.
        downloaded_bytes: u64,
        /// Wall time of the write.
        elapsed_ms: u64,
    },
    /// The image write failed; the disk's first MiB was zeroed if it had been touched.
    ImageFailed {
        /// The image's sha256.
        sha256: String,
        /// Why, in words.
        error: String,
    },
    /// The disks were securely erased and verified (wipe mode, after a lease ended).
    Wiped {
        /// The disks erased.
        disks: Vec<String>,
        /// One record per disk (method, methods tried, verification); empty from agents older than the records.
        #[serde(default)]
        records: Vec<crate::EraseRecord>,
    },
    /// How a disk's erase is going (wipe mode): a method starting, being verified or failing, the overwrite
    /// or sanitize figure, and once a minute a heartbeat with each disk's latest step.
    WipeProgress {
        /// The device (`/dev/nvme0n1`).
        device: String,
        /// The method running, when known.
        method: Option<crate::EraseMethod>,
        /// `trying`, `overwriting`, `running` (an asynchronous sanitize), `verifying` or `method_failed`.
        stage: String,
        /// Percent done, when the step has a figure.
        percent: Option<u8>,
        /// Why a method failed (`method_failed`).
        detail: Option<String>,
    },
    /// At least one disk could not be erased and verified; the records say which and why.
    WipeFailed {
        /// One record per disk, the failed ones with their `error`.
        records: Vec<crate::EraseRecord>,
        /// The failed disks' summaries, joined (`nvme1n1: sanitize not supported; format: …`).
        error: String,
    },
    /// Something else failed.
    Failed {
        /// Why, in words.
        error: String,
    },
}
