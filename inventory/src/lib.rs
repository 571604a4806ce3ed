//! kiln-inventory: kiln's domain model and the only code in kiln that touches SQL.
//!
//! Sites → halls → racks → nodes (with their GPUs, NICs, disks and BMC endpoint), the node lifecycle state with
//! its event log, health runs with evidence, lessees and hall leases, and expiring work claims for the lifecycle
//! engine. Backed by SQLite (a file, the default) or PostgreSQL, with the same behaviour on both.
//!
//! Invariant: every node state change is one transaction that updates the node and appends its event.
//! Invariant: BMC passwords are sealed with AES-256-GCM at rest and never appear in `Debug` or logs.

mod access;
mod clock;
mod erase;
mod error;
pub mod fleet;
mod manifest;
mod model;
mod scratch;
mod secret;
mod state;
mod store;

pub use access::{AcceptanceRule, Principal, Role, UnknownRole};
pub use clock::{Clock, ManualClock, SystemClock};
pub use erase::{
    EraseMethod, EraseRecord, EraseResult, EraseVerification, NistClass, TriedMethod,
    UnknownEraseMethod,
};
pub use error::StoreError;
pub use fleet::{Distribution, FleetBaseline, FleetOutlier};
pub use manifest::{ManifestError, ManifestErrors, ManifestFormat, ManifestRow, parse_manifest};
pub use model::{
    BadMac, BmcEndpoint, BmcProtocol, Claim, Disk, Gpu, HallLease, HallSummary, Hardware,
    HealthRun, Lessee, MacAddr, Nic, Node, NodeEvent, NodeId, Sku, UnknownProtocol,
};
pub use scratch::ScratchDatabase;
pub use secret::{SECRET_KEY_ENV, Secret, SecretError, SecretKey};
pub use state::{NodeState, UnknownState};
pub use store::bmc_observations::{BmcObservation, BmcStatus, ObservedPower};
pub use store::boot::{
    BootSighting, DhcpLease, DiscoveredMachine, LeaseState, LeaseWrite, NewLease, TokenOwner,
};
pub use store::erase::StoredEraseRecord;
pub use store::grants::{GrantClaim, TokenCheck, canonical_ip};
pub use store::health::NewHealthRun;
pub use store::{
    Backend, BmcCredentials, Due, Image, ImageAdded, ImageFormat, ImportSummary, LeaseEvent,
    LeaseOutcome, NewImage, NodeFilter, NodeWork, Store, StoreOptions, StoredReport,
    UnknownImageFormat,
};
