//! One module per `kiln` subcommand: `Args` (its clap definition) and `exec` (what it does).

pub mod bmc;
pub mod boot;
pub mod boot_serve;
pub mod bringup;
pub mod completions;
pub mod config;
pub mod db;
pub mod demo;
pub mod demo_turnover;
pub mod doctor;
pub mod engine_args;
pub mod hall;
pub mod health;
pub mod image;
pub mod node;
pub mod node_verbs;
pub mod rack;
pub mod serve;
pub mod token;
