//! The `kiln` command line. Thin by design: `main` parses arguments and hands each subcommand to its own module
//! under `cmd/`, each exposing `Args` (its clap definition) and `exec` (what it does).

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod client;
mod cmd;
mod config;
mod global;

use kiln_bench::{progress, simrun, table};

pub use global::GlobalArgs;

/// kiln turns racks of new GPU servers into verified, leasable capacity.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Database maintenance (migrations).
    Db(cmd::db::Args),
    /// Racks: import manifests, list and show racks.
    Rack(cmd::rack::Args),
    /// Nodes: list, show, power.
    Node(cmd::node::Args),
    /// Halls: list, lease, release, acceptance report.
    Hall(cmd::hall::Args),
    /// Images: add, list, rm (catalog + content-addressed store).
    Image(cmd::image::Args),
    /// Run the simulated hall end to end on a fresh SQLite inventory.
    Demo(cmd::demo::Args),
    /// Direct BMC operations (power, boot, inspect, event log, media) and the simulated BMC fleet.
    Bmc(cmd::bmc::Args),
    /// Benchmarks that print latency percentiles and ratios.
    Bench(kiln_bench::Args),
    /// GPU health: NVML checks, burn-in, NCCL runs and parsing, signed acceptance records.
    Health(cmd::health::Args),
    /// Run the control plane: web API, boot endpoints, image server and the lifecycle engine.
    Serve(Box<cmd::serve::Args>),
    /// API tokens.
    Token(cmd::token::Args),
    /// Network boot: DHCP/ProxyDHCP, TFTP, HTTP iPXE scripts; leases and discovered machines.
    Boot(cmd::boot::Args),
    /// Preflight checks before serving: interfaces, ports, other DHCP servers, database, clock, disk, assets.
    Doctor(Box<cmd::doctor::Args>),
    /// The config file (kiln.toml): check it and print the effective settings.
    Config(cmd::config::Args),
    /// Print a shell completion script (bash, zsh, fish).
    Completions(cmd::completions::Args),
}

fn main() -> ExitCode {
    // clap exits with status 2 on usage errors by itself.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = Cli::command();
    let matches = match config::matches_with_file(&command, argv.clone()) {
        Ok(matches) => matches,
        Err(config::ConfigError::Usage(err)) => err.exit(),
        Err(config::ConfigError::File(err)) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(1);
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    if let Command::Config(args) = &cli.command {
        return match cmd::config::exec(args, &cli.global, &command, &matches) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::from(1)
            }
        };
    }
    if let Command::Completions(args) = cli.command {
        return match cmd::completions::exec(args, &mut Cli::command()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: writing the completion script: {err}");
                ExitCode::from(1)
            }
        };
    }
    global::init_tracing(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Db(args) => cmd::db::exec(args, &cli.global).await,
            Command::Rack(args) => cmd::rack::exec(args, &cli.global).await,
            Command::Node(args) => cmd::node::exec(args, &cli.global).await,
            Command::Hall(args) => cmd::hall::exec(args, &cli.global).await,
            Command::Image(args) => cmd::image::exec(args, &cli.global).await,
            Command::Demo(args) => cmd::demo::exec(args, &cli.global).await,
            Command::Bmc(args) => cmd::bmc::exec(args, &cli.global).await,
            Command::Bench(args) => {
                let output = kiln_bench::Output {
                    json: cli.global.json,
                };
                kiln_bench::exec(args, &output).await
            }
            Command::Health(args) => cmd::health::exec(args, &cli.global).await,
            Command::Serve(args) => cmd::serve::exec(*args, &cli.global).await,
            Command::Token(args) => cmd::token::exec(args, &cli.global).await,
            Command::Boot(args) => cmd::boot::exec(args, &cli.global).await,
            Command::Doctor(args) => cmd::doctor::exec(*args, &cli.global).await,
            Command::Completions(_) | Command::Config(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
