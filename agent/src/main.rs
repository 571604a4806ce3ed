//! The `kiln-agent` binary: a thin shell over the library for the ramdisk and the installed OS.
//!
//! ```text
//! kiln-agent inspect [--root DIR]                      print the hardware as JSON
//! kiln-agent write URL SHA256 FORMAT TARGET [--sparse] write an image to TARGET, verified
//! kiln-agent run                                       report booted, then do kiln.mode (inspect, image, wipe)
//! kiln-agent burn-in --json --duration-s N [--sku S] …  collect burn-in evidence, print it as JSON
//! kiln-agent wipe [DEVICE...] [--method M] [--json] [--samples N]
//!                                                      erase disks (all local ones when none is named), verified
//! ```
//! `wipe` prints one erase record per device (a JSON line each with `--json`, else its summary), in the order
//! given, with progress on stderr; it exits 1 when any device was not erased and verified, 2 on a usage error.
//! With no DEVICE it erases every whole local disk inspection finds, never RAM, loop or optical devices nor a
//! disk holding a mounted filesystem ([`kiln_agent::erase::wipe`]); a named device that holds one is refused (exit 2).
//! `burn-in` prints one evidence document and exits 0 when collection worked; it does not judge (the
//! provisioner does), see [`kiln_agent::burnin`].
//! `run` and `write` read the `kiln.*` kernel arguments ([`kiln_agent::cmdline`]); the environment overrides
//! some of them: `KILN_PROVISIONER_URL` (kiln.url), `KILN_NODE_TOKEN` (kiln.token), `KILN_BOOT_MAC` (kiln.mac),
//! `KILN_MODE` (kiln.mode, `inspect` when neither gives one), `KILN_DISK` (kiln.disk). Arguments are parsed by
//! hand to keep the ramdisk binary small.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use kiln_agent::cmdline::kernel_arg;
use kiln_agent::erase::EraseStep;
use kiln_agent::erase::wipe::{
    WipeArgs, disks_to_wipe, erase_all, mounted_among, open_host_device,
};
use kiln_agent::image::write_and_report;
use kiln_agent::run::{RunEnv, RunOutcome, report_unusable_args, run};
use kiln_agent::{Backoff, InspectSources, RamdiskArgs, ReportClient, error_chain, inspect};
use kiln_images::{ImageFormat, Sha256Digest, Target, WriteRequest};

const USAGE: &str = "usage: kiln-agent inspect [--root DIR] | write URL SHA256 FORMAT TARGET [--sparse] | run \
                     | burn-in --json --duration-s N [--sku S] [--nvml-lib PATH] [--kernel-log FILE] [--stress CMD...] \
                     | wipe [DEVICE...] [--method M] [--json] [--samples N]";

/// The environment variable that overrides a kernel argument.
fn env_override(key: &str) -> Option<&'static str> {
    Some(match key {
        "kiln.url" => "KILN_PROVISIONER_URL",
        "kiln.token" => "KILN_NODE_TOKEN",
        "kiln.mac" => "KILN_BOOT_MAC",
        "kiln.mode" => "KILN_MODE",
        "kiln.disk" => "KILN_DISK",
        _ => return None,
    })
}

/// Looks up a `kiln.*` argument in the environment, then in `/proc/cmdline`; `default_mode` for `kiln.mode`
/// when neither names one.
fn boot_arg_lookup(default_mode: &str) -> impl Fn(&str) -> Option<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let default_mode = default_mode.to_string();
    move |key| {
        env_override(key)
            .and_then(|var| std::env::var(var).ok())
            .or_else(|| kernel_arg(&cmdline, key).map(str::to_string))
            .or_else(|| (key == "kiln.mode").then(|| default_mode.clone()))
    }
}

/// The `kiln.*` arguments (see [`boot_arg_lookup`]).
fn boot_args(default_mode: &str) -> Result<RamdiskArgs, kiln_agent::CmdlineError> {
    RamdiskArgs::from_lookup(boot_arg_lookup(default_mode))
}

/// Just enough error plumbing for a binary that prints one line and exits.
mod anyhow_lite {
    /// A boxed error.
    pub type Error = Box<dyn std::error::Error + Send + Sync>;
    /// A result with a boxed error.
    pub type Result<T> = std::result::Result<T, Error>;
}

async fn exec(args: Vec<String>) -> anyhow_lite::Result<()> {
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
            let p = boot_args("image")?;
            let reports = ReportClient::new(&p.url, p.token, p.mac);
            let written =
                write_and_report(&kiln_images::http_client(), &reports, &request, target).await?;
            println!(
                "wrote {} bytes from {} (sha256:{} verified) in {:?}",
                written.disk_bytes, request.url, written.sha256, written.elapsed
            );
            Ok(())
        }
        Some("run") => {
            let lookup = boot_arg_lookup("inspect");
            let p = match RamdiskArgs::from_lookup(&lookup) {
                Ok(p) => p,
                Err(err) => {
                    report_unusable_args(&lookup, &err, Backoff::default()).await;
                    return Err(err.into());
                }
            };
            let reports = ReportClient::new(&p.url, p.token.clone(), p.mac);
            let outcome = run(
                &p,
                &RunEnv::this_host(),
                &reports,
                &kiln_images::http_client(),
            )
            .await?;
            match outcome {
                RunOutcome::Inspected => {
                    println!("kiln-agent: inspected; reported to {}", reports.url())
                }
                RunOutcome::InspectionFailed(error) => {
                    println!(
                        "kiln-agent: inspection failed ({error}); reported to {}",
                        reports.url()
                    )
                }
                RunOutcome::ImageWritten { disk, disk_bytes } => println!(
                    "kiln-agent: image written to {} ({disk_bytes} bytes, verified); reported to {}",
                    disk.display(),
                    reports.url()
                ),
                RunOutcome::Wiped { records } => {
                    for record in &records {
                        println!("kiln-agent: {}", record.summary());
                    }
                    println!("kiln-agent: disks erased; reported to {}", reports.url())
                }
            }
            Ok(())
        }
        Some("burn-in") => {
            let parsed = kiln_agent::burnin::parse_args(&args[1..])?;
            let evidence = kiln_agent::burnin::collect(&parsed).await?;
            let text = if parsed.json {
                serde_json::to_string(&evidence)?
            } else {
                serde_json::to_string_pretty(&evidence)?
            };
            use std::io::Write;
            writeln!(std::io::stdout().lock(), "{text}")?;
            Ok(())
        }
        _ => Err(USAGE.into()),
    }
}

/// `kiln-agent wipe`: synchronous (one thread per device), so it runs without the async runtime.
fn wipe(words: &[String]) -> ExitCode {
    let args = match WipeArgs::parse(words) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("kiln-agent wipe: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let devices = if args.devices.is_empty() {
        match disks_to_wipe(&InspectSources::this_host(), Path::new("/dev")) {
            Ok(selection) => {
                for (disk, why) in &selection.left_out {
                    eprintln!("kiln-agent wipe: not erasing {disk}: {why}");
                }
                selection.disks
            }
            Err(err) => {
                eprintln!(
                    "kiln-agent wipe: cannot list the disks: {}",
                    error_chain(&err)
                );
                return ExitCode::from(1);
            }
        }
    } else {
        let mounted = mounted_among(
            &args.devices,
            &InspectSources::this_host(),
            Path::new("/dev"),
        );
        if !mounted.is_empty() {
            let names: Vec<String> = mounted.iter().map(|p| p.display().to_string()).collect();
            eprintln!(
                "kiln-agent wipe: refusing to erase {}: it holds a mounted filesystem (unmount it first)",
                names.join(", ")
            );
            return ExitCode::from(2);
        }
        args.devices.clone()
    };
    if devices.is_empty() {
        eprintln!("kiln-agent wipe: no disk to erase");
        return ExitCode::from(1);
    }
    // Progress lines: every step, but overwrite and sanitize figures only at each further tenth.
    let tenths: Mutex<HashMap<PathBuf, u64>> = Mutex::new(HashMap::new());
    let on_step = |path: &Path, step: &EraseStep| {
        let name = path.display();
        let tenth = |fraction: f64| {
            let tenth = (fraction * 10.0).floor() as u64;
            let mut seen = tenths
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let last = seen.entry(path.to_path_buf()).or_insert(0);
            (tenth > *last).then(|| *last = tenth).is_some()
        };
        match step {
            EraseStep::Trying(method) => {
                tenths
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(path);
                eprintln!("kiln-agent wipe: {name}: trying {method}");
            }
            EraseStep::Written { bytes, total }
                if tenth(*bytes as f64 / (*total).max(1) as f64) =>
            {
                eprintln!("kiln-agent wipe: {name}: {bytes} of {total} bytes written");
            }
            EraseStep::Running(Some(done)) if tenth(*done) => {
                eprintln!("kiln-agent wipe: {name}: {:.0}% done", done * 100.0);
            }
            EraseStep::Verifying(method) => {
                eprintln!("kiln-agent wipe: {name}: {method} done, reading back");
            }
            EraseStep::MethodFailed(method, why) => {
                eprintln!("kiln-agent wipe: {name}: {method} failed: {why}");
            }
            _ => {}
        }
    };
    let records = erase_all(&devices, &args.options(), &open_host_device, &on_step);
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for record in &records {
        let line = if args.json {
            serde_json::to_string(record).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
        } else {
            record.summary()
        };
        if let Err(err) = writeln!(out, "{line}") {
            eprintln!("kiln-agent wipe: cannot write the records: {err}");
            return ExitCode::from(1);
        }
    }
    if records.iter().all(|r| r.is_ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("wipe") {
        return wipe(&args[1..]);
    }
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
    match runtime.block_on(exec(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kiln-agent: {}", error_chain(&*err));
            ExitCode::from(1)
        }
    }
}
