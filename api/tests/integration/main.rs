//! kiln-api integration tests: a real server on a loopback port over a seeded SQLite inventory.

mod api;
mod erase_report;
mod evidence_report;
mod map_page;
mod power_report;
mod roles;
mod support;
