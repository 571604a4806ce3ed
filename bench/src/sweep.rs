//! `kiln bench bmc-sweep`: a power-status sweep over N simulated BMCs, timed for kiln and for three peers over
//! the same BMCs in the same run:
//!
//! - a sequential `ipmitool` loop over the first few BMCs, its rate extrapolated (the original figure, kept and
//!   labelled as what it is: an operator's shell loop, not a parallel tool);
//! - the same number of parallel `ipmitool` processes as kiln has calls in flight (`xargs -P N`);
//! - a parallel Redfish client, `curl --parallel --parallel-max N`, reading each BMC's ComputerSystem resource.
//!
//! curl is told the ComputerSystem URL, so it makes one request per BMC; kiln discovers it (service root,
//! Systems collection, system), as it must for a BMC it has not seen, so the curl figure favours curl. Every
//! ipmitool call asks for cipher suite 3 (`-C 3`), the one the simulator speaks. A peer tool that is not
//! installed is reported as skipped with the reason; a peer run that exits non-zero, or reads fewer BMCs than
//! there are, is reported as failed with a count and its stderr tail. A benchmark, not a test.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kiln_bmc::fleet::{self, FleetOptions};
use kiln_bmc::redfish::{AuthMode, RedfishClient, RedfishConfig, TlsPolicy};
use kiln_bmc::{Bmc, Credentials};
use kiln_bmc_sim::bench::SweepBenchReport;
use kiln_bmc_sim::{SimFleet, SimFleetConfig, Timing};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::Output;

/// User and password every simulated BMC accepts.
const USER: &str = "admin";
const PASSWORD: &str = "password";
/// BMCs (the first ones) the sequential ipmitool loop reads; its rate is extrapolated.
const SEQUENTIAL_SAMPLE: usize = 20;
/// Bytes of a failed peer's stderr kept in the report.
const STDERR_TAIL: usize = 2000;
/// curl refuses a `--parallel-max` above this.
const CURL_PARALLEL_MAX: usize = 300;

/// `kiln bench bmc-sweep`: arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of simulated BMCs.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// BMCs swept at once by kiln, and parallel processes / transfers for the parallel peers.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Plain HTTP instead of HTTPS with pinned certificates.
    #[arg(long)]
    http: bool,
    /// Longest one peer run (all its BMCs) may take before it is reported as failed.
    #[arg(long, default_value_t = 300)]
    peer_timeout_s: u64,
}

/// What one benchmark run is asked to do.
#[derive(Debug, Clone)]
pub(crate) struct SweepConfig {
    /// Simulated BMCs.
    pub count: usize,
    /// kiln's calls in flight; the parallel peers get the same.
    pub concurrency: usize,
    /// HTTPS (kiln pins each BMC's certificate; curl is given `-k`) or plain HTTP.
    pub tls: bool,
    /// Limit on one peer run.
    pub peer_timeout: Duration,
}

/// How one peer run went.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum PeerRun {
    /// Every BMC read.
    Ok {
        /// Wall time of the whole run.
        wall_s: f64,
        /// BMCs whose power state (ipmitool) or ComputerSystem (curl) was read.
        successes: usize,
    },
    /// The tool is not installed.
    Skipped {
        /// Which tool is missing.
        reason: String,
    },
    /// Exited non-zero, timed out, or read fewer BMCs than there are.
    Failed {
        /// What went wrong.
        reason: String,
        /// BMCs read.
        successes: usize,
        /// Wall time until it ended or was stopped.
        wall_s: f64,
        /// The last bytes it wrote to stderr.
        stderr_tail: String,
    },
}

impl PeerRun {
    /// Wall time of a successful run.
    fn wall_s(&self) -> Option<f64> {
        match self {
            PeerRun::Ok { wall_s, .. } => Some(*wall_s),
            _ => None,
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub(crate) struct SweepOutcome {
    /// kiln's sweep and the sequential ipmitool loop, in the shape the benchmark has always reported.
    pub report: SweepBenchReport,
    /// kiln's calls in flight, and the parallel peers' processes / transfers (curl's capped at 300).
    pub concurrency: usize,
    /// The sequential ipmitool loop over the first BMCs.
    pub ipmitool_sequential: PeerRun,
    /// `xargs -P N ipmitool … chassis power status`.
    pub ipmitool_parallel: PeerRun,
    /// `curl --parallel --parallel-max N` over the ComputerSystem URLs.
    pub curl_parallel: PeerRun,
}

impl SweepOutcome {
    /// A peer's wall time over kiln's (> 1: kiln is faster), the same sense as the report's `ratio`.
    fn ratio(&self, peer: &PeerRun) -> Option<f64> {
        let kiln = self.report.sweep_s;
        peer.wall_s().filter(|_| kiln > 0.0).map(|s| s / kiln)
    }

    /// The report's contract line (its keys unchanged) with the parallel peers added: `kiln_sweep_s`,
    /// `ipmitool_parallel_s` and `curl_parallel_s` (wall seconds, null where not measured),
    /// `ratio_vs_ipmitool_parallel` and `ratio_vs_curl_parallel` (the peer's wall time over kiln's), and
    /// `peers`, each peer's status (`ok`, `skipped` with a reason, `failed` with a reason and stderr tail).
    pub fn json(&self) -> serde_json::Value {
        let mut line = self.report.contract_json();
        if let Some(object) = line.as_object_mut() {
            let extra = serde_json::json!({
                "concurrency": self.concurrency,
                "kiln_sweep_s": self.report.sweep_s,
                "ipmitool_parallel_s": self.ipmitool_parallel.wall_s(),
                "ratio_vs_ipmitool_parallel": self.ratio(&self.ipmitool_parallel),
                "curl_parallel_s": self.curl_parallel.wall_s(),
                "ratio_vs_curl_parallel": self.ratio(&self.curl_parallel),
                "peers": {
                    "ipmitool_sequential": self.ipmitool_sequential,
                    "ipmitool_parallel": self.ipmitool_parallel,
                    "curl_parallel": self.curl_parallel,
                },
            });
            if let serde_json::Value::Object(extra) = extra {
                object.extend(extra);
            }
        }
        line
    }
}

/// `kiln bench bmc-sweep`. With `--json` the full report is printed, then a last line with the contract keys
/// (`count`, `kiln_per_s`, `ipmitool_per_s`, `ratio`, `failed`) and the parallel peers' (see
/// [`SweepOutcome::json`]).
pub async fn exec(args: Args, output: &Output) -> anyhow::Result<()> {
    let outcome = run(&SweepConfig {
        count: args.count,
        concurrency: args.concurrency,
        tls: !args.http,
        peer_timeout: Duration::from_secs(args.peer_timeout_s),
    })
    .await?;
    if output.json {
        println!("{}", serde_json::to_string(&outcome.report)?);
        println!("{}", outcome.json());
        return Ok(());
    }
    let report = &outcome.report;
    let n = outcome.concurrency;
    println!("BMCs:           {}", report.count);
    println!("fleet start:    {:.2} s", report.fleet_start_s);
    println!(
        "kiln sweep:     {:.2} s  ({:.0} BMCs/s, {n} calls in flight)",
        report.sweep_s, report.kiln_per_s
    );
    if let Some(cpu) = report.sweep_cpu_s {
        println!("sweep CPU:      {cpu:.2} s (fleet and kiln, all threads)");
    }
    match (report.ipmitool_per_s, report.ratio) {
        (Some(rate), Some(ratio)) => println!(
            "vs a sequential ipmitool loop ({SEQUENTIAL_SAMPLE}-BMC sample, extrapolated): {rate:.1} BMCs/s  \
             (kiln is {ratio:.0}x)"
        ),
        _ => println!(
            "vs a sequential ipmitool loop: not measured ({})",
            describe(&outcome.ipmitool_sequential)
        ),
    }
    for (label, peer) in [
        (
            format!("vs {n} parallel ipmitool processes (xargs -P {n})"),
            &outcome.ipmitool_parallel,
        ),
        (
            format!(
                "vs a parallel Redfish client (curl --parallel --parallel-max {})",
                n.min(CURL_PARALLEL_MAX)
            ),
            &outcome.curl_parallel,
        ),
    ] {
        match (peer.wall_s(), outcome.ratio(peer)) {
            (Some(wall), Some(ratio)) => println!(
                "{label}: {wall:.2} s  (kiln is {ratio:.2}x; kiln wall / peer wall = {:.2})",
                1.0 / ratio
            ),
            _ => println!("{label}: {}", describe(peer)),
        }
    }
    println!(
        "failed:         {} {:?}",
        report.failed, report.failures_by_kind
    );
    Ok(())
}

/// One line for a peer that was not measured.
fn describe(peer: &PeerRun) -> String {
    match peer {
        PeerRun::Ok { wall_s, successes } => format!("{wall_s:.2} s, {successes} read"),
        PeerRun::Skipped { reason } => format!("skipped: {reason}"),
        PeerRun::Failed {
            reason,
            stderr_tail,
            ..
        } => format!("FAILED: {reason}; stderr tail: {:?}", stderr_tail.trim()),
    }
}

/// Starts the fleet (every BMC serving Redfish and IPMI), sweeps it with kiln, then runs each peer over it.
pub(crate) async fn run(config: &SweepConfig) -> anyhow::Result<SweepOutcome> {
    if config.count == 0 {
        bail!("--count must be at least 1 BMC");
    }
    if config.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let started = Instant::now();
    let fleet = SimFleet::start(SimFleetConfig {
        count: config.count,
        tls: config.tls,
        user: USER.into(),
        password: PASSWORD.into(),
        ipmi_count: None,
        timing: Timing {
            power_on: Duration::ZERO,
            graceful_off: Duration::ZERO,
            task: Duration::ZERO,
        },
        ..SimFleetConfig::default()
    })
    .await
    .context("starting the simulated BMCs")?;
    let fleet_start_s = started.elapsed().as_secs_f64();
    let (sweep_s, sweep_cpu_s, failed, failures_by_kind) = kiln_sweep(&fleet, config).await;

    let ipmi_ports = fleet
        .endpoints()
        .iter()
        .map(|ep| {
            ep.ipmi_port
                .with_context(|| format!("simulated BMC {} serves no IPMI", ep.index))
        })
        .collect::<anyhow::Result<Vec<u16>>>()?;
    let system_urls = fleet
        .endpoints()
        .iter()
        .map(|ep| {
            kiln_bmc_sim::profile::by_name(ep.profile)
                .map(|p| format!("{}/redfish/v1/Systems/{}", ep.redfish_url, p.system_id))
                .with_context(|| format!("unknown simulator profile {:?}", ep.profile))
        })
        .collect::<anyhow::Result<Vec<String>>>()?;

    let sample = &ipmi_ports[..ipmi_ports.len().min(SEQUENTIAL_SAMPLE)];
    eprintln!(
        "bench: sequential ipmitool loop over {} BMCs …",
        sample.len()
    );
    let ipmitool_sequential = ipmitool_sequential(sample, config.peer_timeout).await;
    eprintln!(
        "bench: xargs -P {} ipmitool over {} BMCs …",
        config.concurrency, config.count
    );
    let ipmitool_parallel =
        ipmitool_parallel(&ipmi_ports, config.concurrency, config.peer_timeout).await;
    eprintln!(
        "bench: curl --parallel over {} ComputerSystem URLs …",
        config.count
    );
    let curl_parallel = curl_parallel(&system_urls, config.concurrency, config.peer_timeout).await;
    fleet.shutdown();

    let kiln_per_s = if sweep_s > 0.0 {
        config.count as f64 / sweep_s
    } else {
        0.0
    };
    let ipmitool_per_s = match &ipmitool_sequential {
        PeerRun::Ok { wall_s, successes } if *wall_s > 0.0 => Some(*successes as f64 / wall_s),
        _ => None,
    };
    let ratio = ipmitool_per_s
        .filter(|rate| *rate > 0.0)
        .map(|rate| kiln_per_s / rate);
    Ok(SweepOutcome {
        report: SweepBenchReport {
            count: config.count,
            fleet_start_s,
            sweep_s,
            sweep_cpu_s,
            kiln_per_s,
            ipmitool_per_s,
            ratio,
            failed,
            failures_by_kind,
        },
        concurrency: config.concurrency,
        ipmitool_sequential,
        ipmitool_parallel,
        curl_parallel,
    })
}

/// kiln's sweep, as `kiln bmc sweep` runs it: basic auth, each BMC's certificate pinned, `concurrency` calls in
/// flight, two attempts. Returns wall seconds, CPU seconds, failures and failures by kind.
async fn kiln_sweep(
    fleet: &SimFleet,
    config: &SweepConfig,
) -> (f64, Option<f64>, usize, Vec<(String, usize)>) {
    let targets: Vec<(String, (String, Option<TlsPolicy>))> = fleet
        .endpoints()
        .iter()
        .map(|ep| {
            let tls = ep.fingerprint.map(TlsPolicy::Pinned);
            (ep.redfish_url.clone(), (ep.redfish_url.clone(), tls))
        })
        .collect();
    let timeout = Duration::from_secs(30);
    let options = FleetOptions {
        concurrency: config.concurrency,
        attempt_timeout: timeout,
        max_attempts: 2,
        ..FleetOptions::default()
    };
    let cpu_before = process_cpu_s();
    let summary = fleet::run(targets, options, move |target, _attempt| async move {
        let (url, tls) = &*target;
        let mut config = RedfishConfig::new(url, Credentials::new(USER, PASSWORD), *tls);
        config.auth = AuthMode::Basic;
        config.request_timeout = timeout;
        RedfishClient::new(config)?.power_state().await
    })
    .await;
    let cpu = cpu_before
        .zip(process_cpu_s())
        .map(|(before, after)| after - before);
    let by_kind = summary
        .failures_by_kind()
        .into_iter()
        .map(|(kind, n)| (kind.to_string(), n))
        .collect();
    (
        summary.elapsed.as_secs_f64(),
        cpu,
        summary.failed.len(),
        by_kind,
    )
}

/// CPU seconds (user + system, every thread) this process has used, from `/proc/self/stat` (USER_HZ = 100).
fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the parenthesized command name (which may contain spaces); utime and stime are the
    // 12th and 13th of them.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}

/// `ipmitool`'s arguments for one BMC's power status.
fn ipmitool_args(port: u16) -> Vec<String> {
    let line = format!(
        "-I lanplus -H 127.0.0.1 -p {port} -U {USER} -P {PASSWORD} -C 3 chassis power status"
    );
    line.split(' ').map(str::to_string).collect()
}

/// Lines of ipmitool output that report a power state, one per BMC read.
fn ipmitool_successes(stdout: &str) -> usize {
    stdout
        .lines()
        .filter(|line| line.starts_with("Chassis Power is "))
        .count()
}

/// One ipmitool process per BMC, one after another (an operator's shell loop).
async fn ipmitool_sequential(ports: &[u16], timeout: Duration) -> PeerRun {
    if let Some(skipped) = missing(&["ipmitool"]) {
        return skipped;
    }
    let started = Instant::now();
    let mut successes = 0;
    for (done, port) in ports.iter().enumerate() {
        let mut command = tokio::process::Command::new("ipmitool");
        command.args(ipmitool_args(*port));
        let left = timeout.saturating_sub(started.elapsed());
        let run = run_tool(command, None, left, 1, ipmitool_successes).await;
        match run {
            PeerRun::Ok { .. } => successes += 1,
            PeerRun::Failed {
                reason,
                stderr_tail,
                ..
            } => {
                return PeerRun::Failed {
                    reason: format!("BMC {done} (port {port}): {reason}"),
                    successes,
                    wall_s: started.elapsed().as_secs_f64(),
                    stderr_tail,
                };
            }
            skipped @ PeerRun::Skipped { .. } => return skipped,
        }
    }
    PeerRun::Ok {
        wall_s: started.elapsed().as_secs_f64(),
        successes,
    }
}

/// `xargs -P N -L 1 ipmitool`, one argument line per BMC on stdin.
async fn ipmitool_parallel(ports: &[u16], parallel: usize, timeout: Duration) -> PeerRun {
    if let Some(skipped) = missing(&["xargs", "ipmitool"]) {
        return skipped;
    }
    let mut lines = String::new();
    for port in ports {
        lines.push_str(&ipmitool_args(*port).join(" "));
        lines.push('\n');
    }
    let mut command = tokio::process::Command::new("xargs");
    command.args(["-P", &parallel.to_string(), "-L", "1", "ipmitool"]);
    run_tool(
        command,
        Some(lines.into_bytes()),
        timeout,
        ports.len(),
        ipmitool_successes,
    )
    .await
}

/// `curl --parallel` over `urls`, each body discarded and its HTTP status written on a line of its own; URLs
/// and outputs come from a config file (`-K`), so the command line stays short for any fleet size.
async fn curl_parallel(urls: &[String], parallel: usize, timeout: Duration) -> PeerRun {
    if let Some(skipped) = missing(&["curl"]) {
        return skipped;
    }
    let config = urls
        .iter()
        .map(|url| format!("url = \"{url}\"\noutput = \"/dev/null\"\n"))
        .collect::<String>();
    let file = match tempfile::NamedTempFile::new()
        .and_then(|file| std::fs::write(file.path(), config).map(|()| file))
    {
        Ok(file) => file,
        Err(error) => {
            return PeerRun::Failed {
                reason: format!("cannot write curl's URL list: {error}"),
                successes: 0,
                wall_s: 0.0,
                stderr_tail: String::new(),
            };
        }
    };
    let mut command = tokio::process::Command::new("curl");
    command
        .args(["--parallel", "--parallel-max"])
        .arg(parallel.min(CURL_PARALLEL_MAX).to_string())
        .args(["-k", "-u", &format!("{USER}:{PASSWORD}")])
        .args(["--silent", "--show-error", "--fail"])
        .args(["--write-out", "%{http_code}\\n", "-K"])
        .arg(file.path());
    let ok = |stdout: &str| stdout.lines().filter(|line| line.trim() == "200").count();
    run_tool(command, None, timeout, urls.len(), ok).await
}

/// A skip naming the first of `tools` not found on `PATH`.
fn missing(tools: &[&str]) -> Option<PeerRun> {
    tools
        .iter()
        .find(|tool| find_on_path(tool).is_none())
        .map(|tool| PeerRun::Skipped {
            reason: format!("{tool} not found on PATH"),
        })
}

/// Where `tool` is on `PATH` (an executable file), as `which` would say.
fn find_on_path(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(tool))
        .find(|path| {
            path.metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `command` (stdin from `input`), timing it; `successes` counts the BMCs its stdout shows read. Fails on
/// a spawn error, a timeout, a non-zero exit or fewer than `expected` successes.
async fn run_tool(
    mut command: tokio::process::Command,
    input: Option<Vec<u8>>,
    timeout: Duration,
    expected: usize,
    successes: impl Fn(&str) -> usize,
) -> PeerRun {
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let failed = |reason: String, successes: usize, stderr: &[u8]| PeerRun::Failed {
        reason,
        successes,
        wall_s: started.elapsed().as_secs_f64(),
        stderr_tail: tail(stderr),
    };
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return failed(format!("cannot start {program}: {error}"), 0, b""),
    };
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // Written concurrently with the reads below, so a full pipe cannot deadlock; dropped (EOF) at the end.
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        });
    }
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => return failed(format!("waiting for {program}: {error}"), 0, b""),
        Err(_) => {
            return failed(
                format!("{program} did not finish within {} s", timeout.as_secs()),
                0,
                b"",
            );
        }
    };
    let read = successes(&String::from_utf8_lossy(&output.stdout));
    if !output.status.success() || read < expected {
        return failed(
            format!(
                "{program} exited with {}; {read} of {expected} BMCs read",
                output.status
            ),
            read,
            &output.stderr,
        );
    }
    PeerRun::Ok {
        wall_s: started.elapsed().as_secs_f64(),
        successes: read,
    }
}

/// The last [`STDERR_TAIL`] bytes of `stderr`, as text.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut start = text.len().saturating_sub(STDERR_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

#[cfg(test)]
mod tests;
