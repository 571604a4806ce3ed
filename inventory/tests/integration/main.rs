//! kiln-inventory integration tests: one binary, every store test run on SQLite and on PostgreSQL.

mod backup;
mod bmc_observations;
mod boot;
mod claims;
mod erase;
mod firmware;
mod fleet;
mod images;
mod import;
mod leasing;
mod manifest;
mod roundtrip;
mod secrets;
mod support;
mod tokens;
mod transitions;
