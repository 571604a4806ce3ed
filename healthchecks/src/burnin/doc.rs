//! The burn-in evidence document: what a node collected, raw (NVML samples per tick per GPU, the stress tool's
//! argv, output tails, exit status and timing, the kernel log since the start). The node sends it; the
//! provisioner judges it ([`super::judge`]) and signs its digest ([`evidence_digest`]), never the node's opinion.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::evidence::canonical_json;
use crate::nvml::GpuSample;

/// `format` of every burn-in evidence document.
pub const EVIDENCE_FORMAT: &str = "kiln.burn-in-evidence";

/// The document version this code writes and judges.
pub const EVIDENCE_VERSION: u32 = 1;

/// Most characters kept of the stress tool's stdout and of its stderr.
pub const OUTPUT_TAIL_CHARS: usize = 8000;

/// Most kernel log lines kept (the last ones).
pub const KERNEL_LOG_MAX_LINES: usize = 2000;

/// Most characters kept of one kernel log line.
pub const KERNEL_LOG_MAX_LINE_CHARS: usize = 512;

/// Most sampling ticks kept (a tick per second covers more than 24 hours).
pub const MAX_TICKS: usize = 100_000;

/// One sampling tick over all GPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleTick {
    /// Seconds since sampling started.
    pub t_s: f64,
    /// Per GPU: the sample, or why the GPU did not answer.
    pub gpus: Vec<Result<GpuSample, String>>,
}

/// An XID event seen while sampling, with when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedXid {
    /// Seconds since sampling started, whole milliseconds.
    pub t_ms: u64,
    /// GPU index (`u32::MAX` when NVML could not say which).
    pub gpu: u32,
    /// XID number.
    pub xid: u64,
}

/// What NVML showed before and during the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NvmlEvidence {
    /// Why NVML could not be used; the stress tool is then not run.
    pub error: Option<String>,
    /// Driver version NVML reported.
    pub driver_version: Option<String>,
    /// GPUs NVML counted at the start.
    pub gpu_count: u32,
    /// Uncorrectable volatile ECC count per GPU before the load (`None`: the GPU did not answer).
    pub baseline_ecc: Vec<Option<u64>>,
    /// Every sampling tick.
    pub ticks: Vec<SampleTick>,
    /// XID events delivered by NVML during the run.
    pub xids: Vec<TimedXid>,
    /// Why XID events could not be watched, when they could not.
    pub xid_watch_error: Option<String>,
    /// Sampling period asked, seconds.
    pub sample_interval_s: f64,
}

/// What the stress tool did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StressEvidence {
    /// The command line run (placeholders expanded).
    pub argv: Vec<String>,
    /// Why it could not be started, when it could not.
    pub spawn_error: Option<String>,
    /// Exit code; `None` when killed (by a signal or the hard timeout) or never started.
    pub exit_code: Option<i32>,
    /// True when the hard timeout killed it.
    pub timed_out: bool,
    /// Hard timeout, seconds.
    pub timeout_s: f64,
    /// Seconds it ran.
    pub elapsed_s: f64,
    /// The last [`OUTPUT_TAIL_CHARS`] characters of its stdout.
    pub stdout_tail: String,
    /// The last [`OUTPUT_TAIL_CHARS`] characters of its stderr.
    pub stderr_tail: String,
}

/// The kernel log written during the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelLogEvidence {
    /// Where it was read (`dmesg`, a file path, `none`).
    pub source: String,
    /// Why it could not be read, when it could not.
    pub error: Option<String>,
    /// The lines written since the start (the last [`KERNEL_LOG_MAX_LINES`]).
    pub lines: Vec<String>,
    /// Lines left out past the bound.
    pub dropped_lines: u64,
}

/// Everything a node collected during one burn-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnInEvidence {
    /// Always [`EVIDENCE_FORMAT`].
    pub format: String,
    /// [`EVIDENCE_VERSION`] of the writer.
    pub version: u32,
    /// SKU profile id the node was asked to burn in as.
    pub sku: String,
    /// Duration asked, seconds.
    pub duration_s: u64,
    /// Collection start, seconds since the Unix epoch (node clock).
    pub started_at_unix_s: u64,
    /// Collection end, seconds since the Unix epoch (node clock).
    pub finished_at_unix_s: u64,
    /// The collector (`kiln-agent 0.1.0`).
    pub collector: String,
    /// NVML before and during the run.
    pub nvml: NvmlEvidence,
    /// The stress tool; `None` when it was not run (NVML missing).
    pub stress: Option<StressEvidence>,
    /// The kernel log since the start.
    pub kernel_log: KernelLogEvidence,
}

impl BurnInEvidence {
    /// An empty document of the current format for `sku` and `duration_s`.
    pub fn new(sku: &str, duration_s: u64, collector: &str) -> Self {
        Self {
            format: EVIDENCE_FORMAT.to_string(),
            version: EVIDENCE_VERSION,
            sku: sku.to_string(),
            duration_s,
            started_at_unix_s: 0,
            finished_at_unix_s: 0,
            collector: collector.to_string(),
            nvml: NvmlEvidence::default(),
            stress: None,
            kernel_log: KernelLogEvidence::default(),
        }
    }

    /// The document as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// sha256 (hex) of a JSON document's canonical encoding ([`canonical_json`]): the digest of raw evidence that
/// signed acceptance records carry.
pub fn evidence_digest(document: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(document).as_bytes()))
}

/// Keeps the last `max` lines of `lines`, each cut to [`KERNEL_LOG_MAX_LINE_CHARS`]; returns how many were
/// dropped.
pub fn bound_lines(lines: Vec<String>, max: usize) -> (Vec<String>, u64) {
    let dropped = lines.len().saturating_sub(max);
    let kept = lines
        .into_iter()
        .skip(dropped)
        .map(|l| l.chars().take(KERNEL_LOG_MAX_LINE_CHARS).collect())
        .collect();
    (kept, dropped as u64)
}
