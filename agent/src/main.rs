//! The `kiln-agent` binary: a thin shell over the library for the ramdisk and the installed OS.
//!
//! ```text
//! kiln-agent inspect [--root DIR]                      print the hardware as JSON
//! kiln-agent write URL SHA256 FORMAT TARGET [--sparse] write an image to TARGET, verified
//! kiln-agent run                                       report booted, inspect, report inspected
//! ```
//! `run` and `write` report to the provisioner named by `KILN_PROVISIONER_URL` / `KILN_NODE_TOKEN` (or
//! `kiln.url=` / `kiln.token=` / `kiln.mac=` on the kernel command line). Arguments are parsed by hand to keep
//! the ramdisk binary small.

use std::path::PathBuf;
use std::process::ExitCode;

use kiln_agent::image::write_and_report;
use kiln_agent::{AgentStep, InspectSources, ReportClient, inspect};
use kiln_images::{ImageFormat, Sha256Digest, Target, WriteRequest};

const USAGE: &str =
    "usage: kiln-agent inspect [--root DIR] | write URL SHA256 FORMAT TARGET [--sparse] | run";

/// Where to report, from the environment or the kernel command line.
struct Provisioner {
    url: String,
    token: String,
    boot_mac: Option<kiln_inventory::MacAddr>,
}

fn provisioner() -> anyhow_lite::Result<Provisioner> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let from_cmdline = |key: &str| {
        cmdline
            .split_whitespace()
            .find_map(|word| word.strip_prefix(key).map(str::to_string))
    };
    let url = std::env::var("KILN_PROVISIONER_URL")
        .ok()
        .or_else(|| from_cmdline("kiln.url="))
        .ok_or(
            "no provisioner URL: set KILN_PROVISIONER_URL or kiln.url= on the kernel command line",
        )?;
    let token = std::env::var("KILN_NODE_TOKEN")
        .ok()
        .or_else(|| from_cmdline("kiln.token="))
        .ok_or("no node token: set KILN_NODE_TOKEN or kiln.token= on the kernel command line")?;
    let boot_mac = std::env::var("KILN_BOOT_MAC")
        .ok()
        .or_else(|| from_cmdline("kiln.mac="))
        .and_then(|mac| mac.parse().ok());
    Ok(Provisioner {
        url,
        token,
        boot_mac,
    })
}

/// Just enough error plumbing for a binary that prints one line and exits.
mod anyhow_lite {
    /// A boxed error.
    pub type Error = Box<dyn std::error::Error + Send + Sync>;
    /// A result with a boxed error.
    pub type Result<T> = std::result::Result<T, Error>;
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn run(args: Vec<String>) -> anyhow_lite::Result<()> {
    match args.first().map(String::as_str) {
        Some("inspect") => {
            let mut sources = InspectSources::this_host();
            if let Some(at) = args.iter().position(|a| a == "--root") {
                sources.root = PathBuf::from(args.get(at + 1).ok_or(USAGE)?);
            }
            let found = inspect(&sources)?;
            // writeln!, not println!: a closed stdout (`| head`) is an error to report, not a panic.
            use std::io::Write;
            writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string_pretty(&found)?
            )?;
            Ok(())
        }
        Some("write") if args.len() >= 5 => {
            let sha256: Sha256Digest = args[2].parse()?;
            let format: ImageFormat = args[3].parse()?;
            let mut request = WriteRequest::new(args[1].clone(), sha256, format);
            request.sparse = args.iter().any(|a| a == "--sparse");
            let target = Target::open(&PathBuf::from(&args[4]))?;
            let p = provisioner()?;
            let reports = ReportClient::new(&p.url, p.token, p.boot_mac);
            let written =
                write_and_report(&reqwest::Client::new(), &reports, &request, target).await?;
            println!(
                "wrote {} bytes from {} (sha256:{} verified) in {:?}",
                written.disk_bytes, request.url, written.sha256, written.elapsed
            );
            Ok(())
        }
        Some("run") => {
            let p = provisioner()?;
            let reports = ReportClient::new(&p.url, p.token, p.boot_mac);
            let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|k| k.trim().to_string());
            reports
                .send(AgentStep::Booted {
                    kernel,
                    environment: "ramdisk".into(),
                    ssh_host_key: None,
                    ssh_address: None,
                })
                .await?;
            let step = match inspect(&InspectSources::this_host()) {
                Ok(inspection) => AgentStep::Inspected {
                    inspection,
                    sku_mismatches: Vec::new(),
                },
                Err(err) => AgentStep::Failed { error: chain(&err) },
            };
            reports.send(step).await?;
            println!("kiln-agent: reported to {}", reports.url());
            Ok(())
        }
        _ => Err(USAGE.into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("kiln-agent: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kiln-agent: {}", chain(&*err));
            ExitCode::from(1)
        }
    }
}
