//! kiln-agent integration tests: one binary.

mod fixtures;
mod inspect;
mod report;
mod run;
mod wipe;
