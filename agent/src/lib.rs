//! kiln-agent: runs on the node (in the boot ramdisk and in the installed OS).
//!
//! - [`inspect`]: hardware inspection from a root directory (sysfs, `/proc`, `dmidecode`, `lspci -vmm`);
//! - [`sku`]: comparison with the node's SKU, mismatch by mismatch;
//! - [`report`]: the report body types shared with the provisioner and a retrying client with the node token;
//! - [`image`]: writing an image with kiln-images' verifying writer while reporting each step.
//!
//! Invariant: every report carries the node's token; a rejected token is never retried.

pub mod image;
pub mod inspect;
pub mod report;
pub mod sku;

pub use inspect::{InspectError, InspectSources, Inspection, inspect};
pub use report::{AgentReport, AgentStep, Backoff, REPORT_PATH, ReportClient, ReportError};
pub use sku::{Mismatch, SkuExpectation, compare, describe};
