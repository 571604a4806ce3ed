//! `kiln` binary integration tests: one binary, one module per subcommand family.

mod api_cli;
mod bmc;
mod health;
