//! kiln-inventory: kiln's domain model and the only code in kiln that touches SQL.
//!
//! Sites → halls → racks → nodes (with their GPUs, NICs, disks and BMC endpoint), the node lifecycle state with
//! its event log, health runs with evidence, lessees and hall leases, and expiring work claims for the lifecycle
//! engine. Backed by SQLite (a file, the default) or PostgreSQL, with the same behaviour on both.
//!
//! Invariant: every node state change is one transaction that updates the node and appends its event.
//! Invariant: BMC passwords are sealed with AES-256-GCM at rest and never appear in `Debug` or logs.

mod clock;
mod error;
mod manifest;
mod scratch;
mod secret;
mod store;

/// The domain types (kiln-model), at the paths the store's modules name them by.
mod model {
    pub use kiln_model::{
        BmcEndpoint, BmcProtocol, Claim, Disk, Gpu, HallLease, HallSummary, Hardware, HealthRun,
        Lessee, MacAddr, Nic, Node, NodeEvent, NodeId, Sku,
    };
}
mod state {
    pub use kiln_model::NodeState;
}
mod erase {
    pub use kiln_model::{EraseRecord, EraseResult, NistClass};
}
mod access {
    pub use kiln_model::{AcceptanceRule, Principal, Role};
}
pub use kiln_model::fleet;

pub use error::StoreError;
pub use kiln_model::{
    AcceptanceRule, BadMac, BiosSettings, BmcEndpoint, BmcProtocol, Claim, Clock, Disk,
    Distribution, EraseMethod, EraseRecord, EraseResult, EraseVerification, FirmwareComponent,
    FirmwareInventory, FleetBaseline, FleetOutlier, Gpu, HallLease, HallSummary, Hardware,
    HealthRun, Lessee, MacAddr, ManualClock, Nic, NistClass, Node, NodeEvent, NodeId, Principal,
    Role, Sku, SystemClock, TriedMethod, UnknownEraseMethod, UnknownProtocol, UnknownRole,
};
pub use kiln_model::{NodeState, UnknownState, parse_image_ref};
pub use manifest::{ManifestError, ManifestErrors, ManifestFormat, ManifestRow, parse_manifest};
pub use scratch::ScratchDatabase;
pub use secret::{SECRET_KEY_ENV, Secret, SecretError, SecretKey};
pub use store::bmc_observations::{BmcObservation, BmcStatus, ObservedPower};
pub use store::boot::{
    BootSighting, DhcpLease, DiscoveredMachine, LeaseState, LeaseWrite, NewLease, TokenOwner,
};
pub use store::erase::StoredEraseRecord;
pub use store::firmware::{FirmwareCount, StoredFirmware};
pub use store::grants::{GrantClaim, TokenCheck, canonical_ip};
pub use store::health::NewHealthRun;
pub use store::tokens::TokenInfo;
pub use store::{
    Backend, BmcCredentials, DatabaseInfo, Due, Image, ImageAdded, ImageFormat, ImportSummary,
    LeaseEvent, LeaseOutcome, NewImage, NodeFilter, NodeWork, Store, StoreOptions, StoredReport,
    UnknownImageFormat, probe_database, redact_url,
};
