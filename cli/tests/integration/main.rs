//! `kiln` binary integration tests: one binary, one module per subcommand family.

mod bmc;
mod crash;
mod demo;
mod health;
