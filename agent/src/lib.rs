//! kiln-agent: runs on the node (in the boot ramdisk and in the installed OS).
//!
//! - [`cmdline`]: the `kiln.*` kernel arguments the provisioner's boot script passes (mode, token, image, disk);
//! - [`run`]: `kiln-agent run`, dispatched on `kiln.mode` (inspect, image);
//! - [`inspect`]: hardware inspection from a root directory (sysfs, `/proc`, `dmidecode`, `lspci -vmm`);
//! - [`sku`]: comparison with the node's SKU, mismatch by mismatch (kiln-model's, shared with the provisioner);
//! - [`report`]: the report body types shared with the provisioner (kiln-model's) and a retrying client with the
//!   node token;
//! - [`image`]: writing an image with kiln-images' verifying writer while reporting each step;
//! - [`erase`]: disk erase between tenants (method chain per device, verification, one record per disk);
//! - [`burnin`]: `kiln-agent burn-in`, collecting burn-in evidence (judged by the provisioner, not here).
//!
//! Invariant: every report carries the node's token; a rejected token is never retried.

pub mod burnin;
pub mod cmdline;
pub mod erase;
pub mod image;
pub mod inspect;
pub mod report;
pub mod run;
pub mod sku;

pub use cmdline::{CmdlineError, ImageArgs, RamdiskArgs, RamdiskMode};
pub use inspect::{InspectError, InspectSources, Inspection, inspect};
pub use report::{AgentReport, AgentStep, Backoff, REPORT_PATH, ReportClient, ReportError};
pub use sku::{Mismatch, SkuExpectation, compare, describe};

pub use kiln_model::error_chain;
