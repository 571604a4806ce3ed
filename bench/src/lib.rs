//! kiln's benchmark harnesses, behind `kiln bench …`: the inventory on SQLite and PostgreSQL, BMC power sweeps,
//! a simulated hall brought up by the engine, image serving and writing, the web API under load, and overwrite
//! erase. Each prints a table for people and, with `--json`, the JSON its contract names. Benchmarks, not
//! tests: the numbers depend on the machine.
//!
//! [`simrun`] (a simulated hall driven by the real control plane) and [`progress`] (the live view of its
//! nodes) serve `kiln demo` too.

use clap::Subcommand;

mod api;
mod bringup;
mod erase;
mod fixtures;
mod images;
mod inventory;
mod kiln_sweep;
pub mod output;
pub mod progress;
pub mod simrun;
mod sweep;
pub mod table;

/// How the benchmarks print: `json` is `kiln --json` (machine-readable lines instead of tables).
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    /// Print JSON instead of tables.
    pub json: bool,
}

/// Benchmarks.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Manifest import and node transitions on SQLite and PostgreSQL.
    Inventory {
        /// Nodes in the generated manifest.
        #[arg(long, default_value_t = 10_240)]
        nodes: u32,
        /// State transitions to time.
        #[arg(long, default_value_t = 10_000)]
        transitions: u32,
        /// PostgreSQL server to run on (a scratch database is created and dropped); `off` skips PostgreSQL.
        #[arg(
            long,
            env = "KILN_BENCH_PG",
            default_value = "postgres://postgres@127.0.0.1:5432/test"
        )]
        pg: String,
    },
    /// Power-status sweep over N simulated BMCs with kiln, against a sequential ipmitool loop, N parallel
    /// ipmitool processes (`xargs -P`) and a parallel Redfish client (`curl --parallel`).
    BmcSweep(sweep::Args),
    /// kiln's sweep alone (with the sequential ipmitool sample), for fleets too big to give every simulated BMC
    /// an IPMI socket as `bmc-sweep` does for its parallel peers.
    BmcSweepKilnOnly(kiln_sweep::Args),
    /// A simulated hall brought up by the engine: wall time against the critical path.
    Bringup(bringup::Args),
    /// Image serving (kiln vs nginx) and writing (kiln's writer vs curl | dd).
    Images(images::Args),
    /// The web API under load: `wrk` at 64 connections on a page of nodes and a node's detail, and leasing a
    /// 4,096-node hall through the API.
    Api(api::Args),
    /// Overwrite erase: kiln's overwrite against `dd oflag=direct bs=1M` on the same loop device (root).
    Erase(erase::Args),
}

/// Runs the benchmark `args` name.
pub async fn exec(args: Args, out: &Output) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Inventory {
            nodes,
            transitions,
            pg,
        } => inventory::exec(nodes, transitions, &pg, out).await,
        BenchCommand::BmcSweep(sweep) => sweep::exec(sweep, out).await,
        BenchCommand::BmcSweepKilnOnly(sweep) => kiln_sweep::exec(sweep, out).await,
        BenchCommand::Bringup(bringup) => bringup::exec(bringup, out).await,
        BenchCommand::Images(images) => images::exec(images, out).await,
        BenchCommand::Api(api) => api::exec(api, out).await,
        BenchCommand::Erase(erase) => erase::exec(erase, out).await,
    }
}
