//! kiln-inventory integration tests: one binary, every store test run on SQLite and on PostgreSQL.

mod boot;
mod claims;
mod import;
mod manifest;
mod roundtrip;
mod secrets;
mod support;
mod transitions;
