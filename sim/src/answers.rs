//! What a virtual node's installed OS answers to the command set of `kiln_provisioner::lifecycle::access`:
//! one place for the answers, used by the SSH servers ([`crate::ssh`]) and the in-process [`crate::SimAccess`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_health::burnin::BurnInEvidence;
use kiln_health::nccl::NcclRun;
use kiln_health::verdict::now_unix_s;
use kiln_health::{Check, RunKind, SkuProfile, Verdict};
use serde_json::{Value, json};

use crate::burnin::{FakeNvmlPool, collect_with_fake_nvml, synthetic_evidence};
use crate::config::{DiskMode, Durations, scale_duration};
use crate::faults::FaultKind;
use crate::nccl_text::{RunHost, all_reduce_output};
use crate::node::VirtualNode;

/// `uname -r` of the installed OS.
pub const INSTALLED_KERNEL: &str = "6.8.0-49-generic";
/// `uname -r` of the kiln ramdisk.
pub const RAMDISK_KERNEL: &str = "6.8.0-kiln-ramdisk";
/// `/sys/module/nvidia/version`.
pub const DRIVER_VERSION: &str = "550.127.05";
/// Bus bandwidth of a healthy group, relative to the SKU's floor for its size.
const HEALTHY_BUSBW: f64 = 1.06;
/// Bus bandwidth of a group with a slow node, relative to the floor.
const SLOW_BUSBW: f64 = 0.40;

/// Everything the nodes of a hall share.
#[derive(Debug)]
pub struct HallContext {
    /// Provisioner base URLs where firmware fetches boot scripts (node `i` starts at `i % len`, failing over
    /// to the next on an error).
    pub provisioner_urls: Vec<String>,
    /// The SKU's health profile.
    pub profile: SkuProfile,
    /// NVML's name of the GPUs.
    pub gpu_name: String,
    /// Durations after scaling.
    pub durations: Durations,
    /// The time scale (also applied to burn-in durations asked for).
    pub time_scale: f64,
    /// The nodes, by index.
    pub nodes: Vec<Arc<VirtualNode>>,
    /// Node index by serial.
    pub by_serial: HashMap<String, usize>,
    /// HTTP client for scripts and images.
    pub http: reqwest::Client,
    /// Where images go.
    pub disk: DiskMode,
    /// Where the nodes' disk files live ([`crate::disks`]): the sparse-file directory, or `scratch`.
    pub disks_root: std::path::PathBuf,
    /// The temporary directory of null-disk mode, where disk files exist only while a wipe runs.
    pub scratch: Option<tempfile::TempDir>,
    /// Fake NVML copies burn-ins run against (SSH mode); `None`: scale mode builds evidence without NVML.
    pub fake_nvml: Option<FakeNvmlPool>,
}

impl HallContext {
    /// The node with this serial.
    pub fn node(&self, serial: &str) -> Option<&Arc<VirtualNode>> {
        self.by_serial.get(serial).map(|i| &self.nodes[*i])
    }
}

/// A command of the fixed set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `uname -r`.
    Kernel,
    /// `cat /sys/module/nvidia/version`.
    Driver,
    /// `nvidia-smi -L`.
    GpuList,
    /// `kiln-agent burn-in --json --duration-s N [--sku S] …` (the agent's own argument parser).
    BurnIn {
        /// Seconds asked for.
        duration_s: u64,
        /// SKU asked for (`None`: the node's own).
        sku: Option<String>,
    },
    /// `dmesg`: the kernel log ([`crate::kernel_log`]).
    KernelLog,
    /// `dcgmi diag -r N -j` ([`crate::tools`]).
    Dcgm {
        /// The diagnostic level.
        level: u8,
    },
    /// `nvbandwidth` ([`crate::tools`]).
    Nvbandwidth,
    /// The nccl-tests launcher over these hosts.
    Nccl {
        /// Host names from `-H`.
        hosts: Vec<String>,
    },
}

/// Reads one command line of the set; anything else is refused with the shell's words.
pub fn parse_command(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["uname", "-r"] => Ok(Command::Kernel),
        ["cat", "/sys/module/nvidia/version"] => Ok(Command::Driver),
        ["nvidia-smi", "-L"] => Ok(Command::GpuList),
        ["dmesg"] => Ok(Command::KernelLog),
        ["dcgmi", "diag", "-r", level, "-j"] => level
            .parse()
            .ok()
            .filter(|l| (1..=4).contains(l))
            .map(|level| Command::Dcgm { level })
            .ok_or_else(|| format!("Error: invalid run level {level:?}")),
        ["nvbandwidth"] => Ok(Command::Nvbandwidth),
        ["kiln-agent", "burn-in", rest @ ..] => {
            let args: Vec<String> = rest.iter().map(|w| w.to_string()).collect();
            let parsed = kiln_agent::burnin::parse_args(&args)
                .map_err(|err| format!("kiln-agent: {err}"))?;
            Ok(Command::BurnIn {
                duration_s: parsed.duration.as_secs(),
                sku: parsed.sku,
            })
        }
        ["mpirun", rest @ ..] if rest.iter().any(|w| w.ends_with("all_reduce_perf")) => {
            let list = rest
                .iter()
                .position(|w| *w == "-H")
                .and_then(|i| rest.get(i + 1))
                .ok_or("mpirun: no host list (-H) given")?;
            let hosts = list
                .trim_matches('\'')
                .split(',')
                .map(|slot| slot.split(':').next().unwrap_or(slot).to_string())
                .filter(|h| !h.is_empty())
                .collect::<Vec<_>>();
            if hosts.is_empty() {
                return Err("mpirun: empty host list".into());
            }
            Ok(Command::Nccl { hosts })
        }
        [program, ..] => Err(format!("sh: 1: {program}: not found")),
        [] => Err("sh: empty command".into()),
    }
}

/// `nvidia-smi -L` of a node.
pub fn gpu_list(hall: &HallContext, node: &VirtualNode) -> String {
    (0..node.gpus)
        .map(|gpu| {
            format!(
                "GPU {gpu}: {} (UUID: GPU-{:08x}-{:04x}-4000-8000-{:012x})\n",
                hall.gpu_name,
                node.index,
                gpu,
                node.index * 8 + gpu as usize
            )
        })
        .collect()
}

/// How long a burn-in of `duration_s` seconds takes on the simulated clock.
pub fn burn_in_time(hall: &HallContext, duration_s: u64) -> Duration {
    scale_duration(Duration::from_secs(duration_s), hall.time_scale)
}

/// What the failing collector of [`FaultKind::CollectorFails`] prints (on stdout, where the simulator puts
/// all output).
pub const COLLECTOR_ERROR: &str =
    "kiln-agent: the burn-in collector failed: cannot start the async runtime\n";

/// What `node` prints for a burn-in: raw evidence collected like a real node's ([`crate::burnin`]), or, for
/// the hostile faults, a passing verdict of its own or `{}` (which the provisioner must refuse).
pub async fn burn_in_document(
    hall: &HallContext,
    node: &VirtualNode,
    duration_s: u64,
    sku: Option<&str>,
) -> Value {
    match node.fault {
        Some(FaultKind::ForgedVerdict) => {
            tokio::time::sleep(burn_in_time(hall, duration_s)).await;
            serde_json::to_value(forged_verdict(&hall.profile, node)).unwrap_or_default()
        }
        Some(FaultKind::EmptyEvidence) => {
            tokio::time::sleep(burn_in_time(hall, duration_s)).await;
            json!({})
        }
        _ => {
            let evidence = burn_in_evidence(hall, node, duration_s, sku).await;
            node.runtime().burn_ins_since_boot += 1;
            evidence.to_value()
        }
    }
}

/// `node`'s burn-in evidence: through a fake NVML copy and kiln-health's collector when the hall has them,
/// else (scale mode) the same document built from sample types after the compressed run time.
pub async fn burn_in_evidence(
    hall: &HallContext,
    node: &VirtualNode,
    duration_s: u64,
    sku: Option<&str>,
) -> BurnInEvidence {
    let sku = sku.unwrap_or(&hall.profile.id);
    match &hall.fake_nvml {
        Some(pool) => {
            collect_with_fake_nvml(
                pool,
                &hall.profile,
                &hall.gpu_name,
                node,
                duration_s,
                sku,
                hall.time_scale,
            )
            .await
        }
        None => {
            tokio::time::sleep(burn_in_time(hall, duration_s)).await;
            synthetic_evidence(&hall.profile, node, duration_s, sku)
        }
    }
}

/// The verdict a hostile node prints in place of evidence: every check passing.
pub fn forged_verdict(profile: &SkuProfile, node: &VirtualNode) -> Verdict {
    let checks = (0..node.gpus)
        .map(|gpu| {
            Check::pass(
                "burnin.sm_clock",
                &format!("gpu{gpu}"),
                profile.sm_clock_expected_mhz,
                Some(json!({ "min_mhz": profile.sm_clock_expected_mhz })),
                "sustained SM clock under load must reach the SKU's expected clock",
            )
        })
        .collect();
    Verdict::new(
        RunKind::BurnIn,
        &profile.id,
        now_unix_s(),
        checks,
        json!({ "samples": 300 }),
    )
}

/// Runs the NCCL launcher over `hosts` as the hall's fabric would: unknown or down hosts make `mpirun` fail,
/// a group with a slow node is slow, others reach the SKU's floor with a margin.
pub fn nccl_run(hall: &HallContext, hosts: &[String]) -> NcclRun {
    let mut run_hosts = Vec::new();
    let mut slow = false;
    for host in hosts {
        match hall.node(host).filter(|node| node.os_up()) {
            Some(node) => {
                slow |= node.has(FaultKind::SlowNccl);
                run_hosts.push(RunHost {
                    name: host.clone(),
                    gpus: node.gpus,
                });
            }
            None => {
                return NcclRun {
                    hosts: hosts.to_vec(),
                    exit_code: Some(1),
                    timed_out: false,
                    output: format!(
                        "ssh: connect to host {host} port 22: Connection refused\n\
                         ORTE was unable to reliably start one or more daemons.\n"
                    ),
                };
            }
        }
    }
    let nodes = u32::try_from(hosts.len()).unwrap_or(u32::MAX);
    let floor = hall
        .profile
        .nccl_threshold(nodes)
        .map_or(100.0, |t| t.min_busbw_gbps);
    let busbw = floor * if slow { SLOW_BUSBW } else { HEALTHY_BUSBW };
    NcclRun {
        hosts: hosts.to_vec(),
        exit_code: Some(0),
        timed_out: false,
        output: all_reduce_output(
            &run_hosts,
            &hall.gpu_name,
            busbw,
            hall.profile.nccl_min_size_bytes,
        ),
    }
}

/// The text answer to a command: stdout, exit status, and how long the command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Standard output (or the error text, for a failed command).
    pub output: String,
    /// Exit status.
    pub exit_status: u32,
    /// Time the command takes.
    pub takes: Duration,
}

/// The answer of `node`'s installed OS to a command line (a burn-in runs its collection before answering).
pub async fn answer(hall: &HallContext, node: &VirtualNode, line: &str) -> Answer {
    let ok = |output: String, takes: Duration| Answer {
        output,
        exit_status: 0,
        takes,
    };
    match parse_command(line) {
        Err(error) => Answer {
            output: format!("{error}\n"),
            exit_status: 127,
            takes: Duration::ZERO,
        },
        Ok(Command::Kernel) => ok(format!("{INSTALLED_KERNEL}\n"), Duration::ZERO),
        Ok(Command::Driver) => ok(format!("{DRIVER_VERSION}\n"), Duration::ZERO),
        Ok(Command::GpuList) => ok(gpu_list(hall, node), Duration::ZERO),
        Ok(Command::KernelLog) => ok(crate::kernel_log::dmesg(node), Duration::ZERO),
        Ok(Command::Dcgm { level }) => ok(
            format!(
                "{:#}\n",
                crate::tools::dcgm_diag(node, level, DRIVER_VERSION)
            ),
            hall.durations.nccl,
        ),
        Ok(Command::Nvbandwidth) => ok(
            crate::tools::nvbandwidth(node, &hall.gpu_name),
            hall.durations.nccl,
        ),
        Ok(Command::BurnIn { .. }) if node.has(FaultKind::CollectorFails) => Answer {
            output: COLLECTOR_ERROR.to_string(),
            exit_status: 1,
            takes: Duration::ZERO,
        },
        Ok(Command::BurnIn { duration_s, sku }) => {
            let document = burn_in_document(hall, node, duration_s, sku.as_deref()).await;
            // The evidence is the answer, whatever it shows: the provisioner judges it.
            ok(format!("{document}\n"), Duration::ZERO)
        }
        Ok(Command::Nccl { hosts }) => {
            let run = nccl_run(hall, &hosts);
            Answer {
                output: run.output,
                exit_status: run.exit_code.map_or(1, |c| c.unsigned_abs()),
                takes: hall.durations.nccl,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_set_parses_and_other_commands_do_not() {
        assert_eq!(parse_command("uname -r"), Ok(Command::Kernel));
        assert_eq!(
            parse_command("cat /sys/module/nvidia/version"),
            Ok(Command::Driver)
        );
        assert_eq!(parse_command("nvidia-smi -L"), Ok(Command::GpuList));
        assert_eq!(
            parse_command(kiln_provisioner::lifecycle::access::KERNEL_LOG_COMMAND),
            Ok(Command::KernelLog)
        );
        assert_eq!(
            parse_command(&kiln_provisioner::lifecycle::access::dcgm_command(3)),
            Ok(Command::Dcgm { level: 3 })
        );
        assert!(parse_command("dcgmi diag -r 9 -j").is_err());
        assert_eq!(
            parse_command(kiln_provisioner::lifecycle::access::NVBANDWIDTH_COMMAND),
            Ok(Command::Nvbandwidth)
        );
        assert_eq!(
            parse_command("kiln-agent burn-in --json --duration-s 300"),
            Ok(Command::BurnIn {
                duration_s: 300,
                sku: None
            })
        );
        assert_eq!(
            parse_command(&kiln_provisioner::lifecycle::ssh::burn_in_command(
                Duration::from_secs(144),
                "h100-sxm-80gb",
                &["gpu_burn".into(), "-tc".into(), "{duration_s}".into()],
            )),
            Ok(Command::BurnIn {
                duration_s: 144,
                sku: Some("h100-sxm-80gb".into())
            })
        );
        assert!(parse_command("kiln-agent burn-in --json --duration-s soon").is_err());
        let argv = kiln_health::nccl::CommandNcclRunner {
            argv_template: kiln_provisioner::lifecycle::access::NCCL_TEMPLATE
                .iter()
                .map(|s| s.to_string())
                .collect(),
            gpus_per_node: 8,
            timeout: Duration::from_secs(1),
            env: Vec::new(),
        }
        .argv_for(&["KSIM000001".into(), "KSIM000002".into()]);
        assert_eq!(
            parse_command(&argv.join(" ")),
            Ok(Command::Nccl {
                hosts: vec!["KSIM000001".into(), "KSIM000002".into()]
            })
        );
        assert_eq!(
            parse_command("rm -rf /"),
            Err("sh: 1: rm: not found".into())
        );
        assert!(parse_command("mpirun all_reduce_perf").is_err());
        assert!(parse_command("").is_err());
    }
}
