//! Handlers, one file per resource.

pub mod halls;
pub mod leases;
pub mod nodes;
pub mod racks;
