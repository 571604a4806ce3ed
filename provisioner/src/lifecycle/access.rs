//! How the engine reaches a node's installed OS: the post-image check, burn-in and multi-node NCCL.
//!
//! Production uses [`super::ssh::SshNodeAccess`] (russh, the host key pinned from the agent's report). The hall
//! simulator (kiln-sim) serves the same commands from an SSH server per virtual node, or answers in-process in
//! scale mode. The command set on the wire is fixed here so both sides agree:
//!
//! | purpose | command | output |
//! |---|---|---|
//! | kernel | `uname -r` | one line |
//! | driver | `cat /sys/module/nvidia/version` | the driver version; non-zero exit when not loaded |
//! | GPUs | `nvidia-smi -L` | one `GPU n: …` line per GPU |
//! | burn-in | `kiln-agent burn-in --json --duration-s N --sku S --stress TOOL ARG…` (the SKU's stress tool) | one [`kiln_health::burnin::BurnInEvidence`] JSON document on stdout, exit 0 when collection worked |
//! | NCCL | the nccl-tests launcher template (see [`NCCL_TEMPLATE`]) on the group's first host | nccl-tests text |
//! | kernel log | [`KERNEL_LOG_COMMAND`] at burn-in start and end | the kernel ring buffer as text, scanned for Xid/SXid by the provisioner |
//! | DCGM | [`dcgm_command`] after the burn-in | `dcgmi diag -j` JSON; exit 127 (not installed) skips it |
//! | nvbandwidth | [`NVBANDWIDTH_COMMAND`] after the burn-in | nvbandwidth text; exit 127 skips it |
//!
//! The node is not trusted to judge itself: burn-in returns raw evidence, which the provisioner judges with
//! kiln-health and the node's SKU profile (`handlers/burn_in.rs`). A verdict, an empty document, a non-zero
//! exit or a timeout is never a pass.

use std::time::Duration;

use kiln_health::nccl::NcclRun;

/// Launcher run on the first host of a group for the multi-node NCCL test; `{hosts_slots}`, `{np}` and `{gpus}`
/// expand as in [`kiln_health::nccl::CommandNcclRunner`].
pub const NCCL_TEMPLATE: &[&str] = &[
    "mpirun",
    "-np",
    "{np}",
    "-H",
    "{hosts_slots}",
    "all_reduce_perf",
    "-b",
    "8",
    "-e",
    "8G",
    "-f",
    "2",
    "-g",
    "1",
    "-c",
    "1",
];

/// Reads the kernel log since boot (the installed OS runs kiln's commands as root, so `dmesg` is readable).
pub const KERNEL_LOG_COMMAND: &str = "dmesg";

/// Runs NVIDIA's bandwidth matrix tool (host↔device and device↔device copies).
pub const NVBANDWIDTH_COMMAND: &str = "nvbandwidth";

/// The DCGM diagnostic at `level` (1–4; 3 is about 15 minutes), JSON on stdout.
pub fn dcgm_command(level: u8) -> String {
    format!("dcgmi diag -r {level} -j")
}

/// Exit status of a shell whose command is not installed.
pub const NOT_INSTALLED: i32 = 127;

/// What a node printed for one of the tool commands (kernel log, DCGM, nvbandwidth): raw, judged by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolReply {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit status; `None` when it did not finish.
    pub exit_code: Option<i32>,
    /// The hard timeout fired (the output is what came before).
    pub timed_out: bool,
}

impl ToolReply {
    /// The tool is not installed on the node (the shell's exit 127).
    pub fn not_installed(&self) -> bool {
        self.exit_code == Some(NOT_INSTALLED)
    }
}

/// A node as the engine reaches it over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHost {
    /// Chassis serial (also the host name used in NCCL host lists).
    pub serial: String,
    /// `host:port` of its SSH server, as the agent reported it.
    pub address: String,
    /// The pinned host key (OpenSSH public key line) from the agent's report.
    pub host_key: String,
}

/// What the post-image check found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PostImageFacts {
    /// `uname -r`.
    pub kernel: String,
    /// NVIDIA driver version, `None` when the module is not loaded.
    pub driver: Option<String>,
    /// GPUs listed by `nvidia-smi -L`.
    pub gpu_count: u32,
    /// Every command with its output, kept as evidence.
    pub transcript: String,
}

/// What a node answered to the burn-in command: the raw evidence document, not yet judged.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnInReply {
    /// The JSON document the node printed (judged by the provisioner; it may be anything).
    pub document: serde_json::Value,
    /// The command's exit status (`None`: killed or unknown).
    pub exit_code: Option<i32>,
    /// Wall time the command took, measured by the provisioner.
    pub wall: Duration,
}

/// Why a node could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The node presented a different host key than the one pinned from its agent's report.
    #[error("{serial}: SSH host key mismatch: presented {presented}, pinned {pinned}")]
    HostKeyMismatch {
        /// The node.
        serial: String,
        /// Fingerprint presented.
        presented: String,
        /// Fingerprint pinned.
        pinned: String,
    },
    /// The node could not be reached or did not authenticate us.
    #[error("{serial}: SSH unreachable: {reason}")]
    Unreachable {
        /// The node.
        serial: String,
        /// Why.
        reason: String,
    },
    /// A command ran but its output could not be understood.
    #[error("{serial}: `{command}` gave output kiln cannot read: {reason}")]
    BadOutput {
        /// The node.
        serial: String,
        /// The command.
        command: String,
        /// Why.
        reason: String,
    },
}

/// The engine's way into nodes' installed OS.
#[async_trait::async_trait]
pub trait NodeAccess: Send + Sync + 'static {
    /// Kernel version, driver loaded, GPU count.
    async fn post_image_check(&self, host: &NodeHost) -> Result<PostImageFacts, AccessError>;

    /// Runs the GPU burn-in for `duration` as SKU `sku` with the `stress` command (program first,
    /// `{duration_s}` expanded on the node) and returns the node's raw evidence, unjudged (a
    /// failing burn-in is `Ok`; a command that failed, timed out or printed no JSON is `Err`). The engine
    /// judges the document itself: there is no way for a node to hand over a verdict.
    async fn burn_in_evidence(
        &self,
        host: &NodeHost,
        duration: Duration,
        sku: &str,
        stress: &[String],
    ) -> Result<BurnInReply, AccessError>;

    /// Runs multi-node NCCL over `hosts` (launched on the first); a failing run is `Ok` and judged by the caller.
    async fn nccl(&self, hosts: &[NodeHost]) -> Result<NcclRun, AccessError>;

    /// Runs one of the tool commands of the table above (`command` as written there) under `timeout`; its
    /// output comes back raw whatever the exit status (a tool that is not installed exits 127).
    async fn run_tool(
        &self,
        host: &NodeHost,
        command: &str,
        timeout: Duration,
    ) -> Result<ToolReply, AccessError>;
}
