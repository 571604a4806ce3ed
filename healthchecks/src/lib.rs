//! kiln-health: proves a node's GPUs and fabric before hand-over.
//!
//! - [`nccl`]: parse nccl-tests output (text and JSON), judge busbw against the SKU profile, run and bisect.
//! - [`sku`]: SKU profiles as data (`profiles/skus.toml`, overridable).
//! - [`nvml`]: checks over NVML loaded at run time (real driver or the fake-nvml library).
//! - [`burnin`]: evidence collection on the node (stress tool with a hard timeout while sampling NVML) and its
//!   judgement on the provisioner.
//! - [`verdict`] and [`evidence`]: typed results and signed acceptance records.

pub mod bandwidth;
pub mod burnin;
pub mod dcgm;
pub mod duration;
pub mod erasure;
pub mod evidence;
pub mod kernlog;
pub mod nccl;
pub mod nvml;
pub mod process;
pub mod sku;
pub mod ssh_key;
pub mod stress;
pub mod verdict;
pub mod xid;

pub use sku::{SkuCatalog, SkuProfile};
pub use verdict::{Check, CheckStatus, RunKind, Verdict};
