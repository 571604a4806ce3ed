//! kiln-agent integration tests: one binary.

mod deps;
mod fixtures;
mod inspect;
mod report;
mod run;
mod wipe;
