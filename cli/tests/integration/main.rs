//! `kiln` binary integration tests: one binary, one module per subcommand family.

mod api_cli;
mod bench_erase;
mod bmc;
mod bringup;
mod config;
mod crash;
mod demo;
mod doctor;
mod health;
mod health_scan;
mod node_verbs;
mod security;
mod sim_site;
mod tls;
