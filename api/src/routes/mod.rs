//! Handlers, one file per resource, with their request and answer types (the CLI's HTTP transport reads the
//! same types).

/// `/api/v1/nodes/{serial}/firmware` and `/api/v1/firmware`.
pub mod firmware;
/// `/api/v1/halls` and `/api/v1/map`.
pub mod halls;
/// `/api/v1/leases` and `/api/v1/halls/{id}/lease`.
pub mod leases;
/// `/api/v1/nodes`.
pub mod nodes;
/// `/api/v1/racks/import` and `/api/v1/lessees`.
pub mod racks;
/// `/api/v1/images` and `/api/v1/signing-key`.
pub mod site;
