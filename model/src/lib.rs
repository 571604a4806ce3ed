//! kiln-model: kiln's domain vocabulary, shared by the store, the provisioner, the API and the node agent.
//!
//! Ids and MAC addresses, nodes with their hardware (GPUs, NICs, disks) and BMC endpoint, SKUs, the node
//! lifecycle state and its transition table, disk erase records, fleet baselines, API roles and acceptance rules,
//! the injected clock, catalog image types, and the agent's report bodies with the SKU comparison.
//!
//! Invariant: no SQL, no async runtime, no HTTP and no I/O here: the node agent links this crate into the boot
//! ramdisk, where every dependency costs bytes.

mod access;
mod clock;
mod erase;
mod firmware;
pub mod fleet;
mod image;
mod inspection;
mod model;
mod report;
mod sku;
mod state;

pub use access::{AcceptanceRule, Principal, Role, UnknownRole};
pub use clock::{Clock, ManualClock, SystemClock};
pub use erase::{
    EraseMethod, EraseRecord, EraseResult, EraseVerification, NistClass, TriedMethod,
    UnknownEraseMethod,
};
pub use firmware::{BiosChange, BiosSettings, FirmwareComponent, FirmwareInventory};
pub use fleet::{Distribution, FleetBaseline, FleetOutlier};
pub use image::{Image, ImageFormat, UnknownImageFormat, parse_image_ref};
pub use inspection::{CpuInfo, DiskInfo, Inspection, NicInfo, PciGpu, SystemInfo};
pub use model::{
    BadMac, BmcEndpoint, BmcProtocol, Claim, Disk, Gpu, HallLease, HallSummary, Hardware,
    HealthRun, Lessee, MacAddr, Nic, Node, NodeEvent, NodeId, Sku, UnknownProtocol,
};
pub use report::{AgentReport, AgentStep, REPORT_PATH};
pub use sku::{Mismatch, SkuExpectation, compare, describe};
pub use state::{NodeState, UnknownState};

/// An error and its sources, joined with `": "`, for reports, logs and a binary's last line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn error_chain_joins_sources() {
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&err), "outer: inner");
    }
}
