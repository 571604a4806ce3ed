//! Burn-in, split where the trust boundary is:
//!
//! - [`collect`] runs on the node: the stress tool under a hard timeout while NVML is sampled on every GPU,
//!   and the kernel log since the start, into a [`BurnInEvidence`] document ([`doc`]);
//! - [`judge`] runs on the provisioner: the document against the SKU profile (sustained clocks, thermal and
//!   power-brake throttling, new XIDs and ECC errors, GPUs that disappear, the tool's output and exit status,
//!   the duration, the SKU and the format). Missing or malformed evidence fails. The checks under load (PCIe
//!   link, power floor, NVLink error growth) are in [`load`].
//!
//! [`run_burn_in`] does both in one process (`kiln health burn-in`). [`synthetic`] builds documents from
//! sample types for simulators at scale and tests' fake nodes.

pub mod collect;
pub mod doc;
pub mod judge;
pub mod load;
pub mod synthetic;

pub use collect::{BurnInConfig, KernelLogSource, collect_burn_in};
pub use doc::{
    BurnInEvidence, EVIDENCE_FORMAT, EVIDENCE_VERSION, KernelLogEvidence, NvmlEvidence, SampleTick,
    StressEvidence, TimedXid, evidence_digest,
};
pub use judge::{judge_burn_in, judge_burn_in_document, output_line_fails};
pub use load::{LOAD_UTIL_MIN_PCT, LoadBasis, judge_under_load, loaded_samples};

use crate::sku::SkuProfile;
use crate::verdict::Verdict;

/// Collects evidence with `cfg` and judges it with `profile` in this process. Never panics; NVML missing fails
/// before the tool starts. The verdict's evidence summary carries the document's digest.
pub async fn run_burn_in(cfg: &BurnInConfig, profile: &SkuProfile) -> Verdict {
    let evidence = collect_burn_in(cfg, &profile.id).await;
    judge_burn_in_document(&evidence.to_value(), profile, cfg.duration)
}
