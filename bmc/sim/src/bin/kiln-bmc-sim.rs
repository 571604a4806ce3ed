//! `kiln-bmc-sim`: simulated Redfish BMCs on loopback, each optionally driving a QEMU VM over QMP.
//!
//! ```text
//! kiln-bmc-sim [--port FIRST] [--user U] [--password P] [--power-on-ms MS] --qmp SOCK [--qmp SOCK ...]
//! kiln-bmc-sim [--port FIRST] ... --count N
//! ```
//! One BMC per `--qmp` socket (or `--count` BMCs with no VM behind them). Prints one line per BMC,
//! `bmc INDEX https://127.0.0.1:PORT [qmp SOCK]`, then serves until killed. A QMP socket that QEMU has not created
//! yet is waited for (up to 60 s). Arguments are parsed by hand: a test tool with a handful of options.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use kiln_bmc_sim::qemu::{Qmp, QmpError, bridge};
use kiln_bmc_sim::{SimFleet, SimFleetConfig};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: kiln-bmc-sim [--port FIRST] [--user U] [--password P] [--power-on-ms MS] \
                     (--qmp SOCK ... | --count N)";

/// How long to wait for QEMU to create its QMP socket.
const QMP_WAIT: Duration = Duration::from_secs(60);

struct Options {
    config: SimFleetConfig,
    qmp: Vec<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut config = SimFleetConfig {
        count: 0,
        ..SimFleetConfig::default()
    };
    let mut qmp = Vec::new();
    let mut words = args.iter();
    while let Some(flag) = words.next() {
        let mut value = || {
            words
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|err| format!("{flag} {text:?}: {err}"))
        };
        match flag.as_str() {
            "--port" => {
                let port = number(value()?)?;
                config.base_port =
                    Some(u16::try_from(port).map_err(|_| format!("--port {port}: not a port"))?);
            }
            "--user" => config.user = value()?,
            "--password" => config.password = value()?,
            "--power-on-ms" => config.timing.power_on = Duration::from_millis(number(value()?)?),
            "--count" => {
                config.count = usize::try_from(number(value()?)?).map_err(|err| err.to_string())?
            }
            "--qmp" => qmp.push(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {flag:?}\n{USAGE}")),
        }
    }
    if !qmp.is_empty() {
        config.count = qmp.len();
    }
    if config.count == 0 {
        return Err(USAGE.to_string());
    }
    Ok(Options { config, qmp })
}

async fn connect_when_ready(path: &Path) -> Result<Qmp, QmpError> {
    let deadline = tokio::time::Instant::now() + QMP_WAIT;
    loop {
        match Qmp::connect(path).await {
            Err(QmpError::Io { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("kiln-bmc-sim: {message}");
            return ExitCode::from(2);
        }
    };
    let fleet = match SimFleet::start(options.config).await {
        Ok(fleet) => fleet,
        Err(err) => {
            eprintln!("kiln-bmc-sim: {}", kiln_bmc::fleet::error_chain(&err));
            return ExitCode::from(1);
        }
    };
    let cancel = CancellationToken::new();
    let mut bridges = tokio::task::JoinSet::new();
    for endpoint in fleet.endpoints() {
        let qmp = options.qmp.get(endpoint.index).cloned();
        match &qmp {
            Some(path) => println!(
                "bmc {} {} qmp {}",
                endpoint.index,
                endpoint.redfish_url,
                path.display()
            ),
            None => println!("bmc {} {}", endpoint.index, endpoint.redfish_url),
        }
        let Some(path) = qmp else { continue };
        let (bmc, events, cancel) = (endpoint.bmc.clone(), fleet.subscribe(), cancel.clone());
        bridges.spawn(async move {
            let result = match connect_when_ready(&path).await {
                Ok(qmp) => bridge(bmc, events, qmp, cancel).await,
                Err(err) => Err(err),
            };
            if let Err(err) = result {
                eprintln!("kiln-bmc-sim: {}", kiln_bmc::fleet::error_chain(&err));
            }
        });
    }
    // The BMCs keep answering after their VMs end (reporting Off), until this process is killed.
    while bridges.join_next().await.is_some() {}
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}

/// Logs to stderr at the `RUST_LOG` level (info by default).
fn tracing_subscriber_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
