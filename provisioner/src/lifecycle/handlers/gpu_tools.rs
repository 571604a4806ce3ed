//! The checks around the burn-in that read the node's own tools, judged here:
//!
//! - the kernel log at burn-in start and end (`dmesg`), scanned for Xid and SXid events: what the driver
//!   logged since boot before kiln's NVML sampling started, and what the burn-in added (SXids exist only there);
//! - DCGM's diagnostic at the SKU's level, and nvbandwidth's copy matrices, where the installed OS has them (a
//!   tool that is not installed is noted, not failed).

use std::time::Duration;

use kiln_health::bandwidth::{NvbandwidthFloors, judge_nvbandwidth, parse_nvbandwidth};
use kiln_health::dcgm::{judge_dcgm, parse_diag};
use kiln_health::kernlog::{KernelScan, judge_kernel_events, judge_unparsed, new_events, scan};
use kiln_health::verdict::now_unix_s;
use kiln_health::{Check, RunKind, SkuProfile, Verdict};
use serde_json::json;

use crate::lifecycle::access::{
    AccessError, KERNEL_LOG_COMMAND, NVBANDWIDTH_COMMAND, NodeAccess, NodeHost, ToolReply,
    dcgm_command,
};

/// Limit for `dmesg`.
pub const KERNEL_LOG_TIMEOUT: Duration = Duration::from_secs(60);

/// Most characters of a tool's output kept with its verdict.
const OUTPUT_KEPT: usize = 16_000;

/// What reading the kernel log gave: the scan, or why the log could not be read.
pub type KernelRead = Result<KernelScan, String>;

/// Reads and scans `host`'s kernel log. An unreachable node is `Err`; a `dmesg` that fails is `Ok(Err(why))`.
pub async fn read_kernel_log(
    access: &dyn NodeAccess,
    host: &NodeHost,
) -> Result<KernelRead, AccessError> {
    let reply = access
        .run_tool(host, KERNEL_LOG_COMMAND, KERNEL_LOG_TIMEOUT)
        .await?;
    if reply.exit_code == Some(0) {
        return Ok(Ok(scan(&reply.stdout)));
    }
    Ok(Err(format!(
        "`{KERNEL_LOG_COMMAND}` {}: {}",
        exit_words(&reply),
        tail(reply.stderr.trim(), 300)
    )))
}

/// The kernel log checks of a burn-in: every failing event logged since boot before it started (the scan at
/// start, subjects `before burn-in: PCI`), every event the burn-in added (subjects `PCI`), notes for lines kiln
/// could not read, and a failure for a log that could not be read at either end.
pub fn kernel_checks(before: &KernelRead, after: &KernelRead) -> Vec<Check> {
    let unreadable = |when: &str, why: &str| {
        Check::fail(
            "kernel.log",
            "node",
            why,
            None,
            &format!(
                "the kernel log must be readable at burn-in {when} (Xid and SXid events are only there)"
            ),
        )
    };
    let mut checks = Vec::new();
    match before {
        Ok(start) => {
            checks.extend(judge_kernel_events(&start.events, "before burn-in: "));
            checks.extend(judge_unparsed(start, "before burn-in: "));
        }
        Err(why) => checks.push(unreadable("start", why)),
    }
    match (before, after) {
        (_, Err(why)) => checks.push(unreadable("end", why)),
        (Ok(start), Ok(end)) => {
            checks.extend(judge_kernel_events(&new_events(start, end), ""));
            checks.extend(judge_unparsed(end, ""));
        }
        (Err(_), Ok(end)) => {
            checks.extend(judge_kernel_events(&end.events, ""));
            checks.extend(judge_unparsed(end, ""));
        }
    }
    checks
}

/// A tool run after a passing burn-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeTool {
    /// `dcgmi diag`.
    Dcgm,
    /// `nvbandwidth`.
    Nvbandwidth,
}

impl NodeTool {
    /// The tool's name, for the node's history.
    pub fn name(self) -> &'static str {
        match self {
            NodeTool::Dcgm => "DCGM diag",
            NodeTool::Nvbandwidth => "nvbandwidth",
        }
    }
}

/// How long `dcgmi diag -r level` may take: r1 is seconds, r2 about 2 min, r3 about 15 min, r4 hours.
pub fn dcgm_timeout(level: u8) -> Duration {
    Duration::from_secs(match level {
        0 | 1 => 120,
        2 => 600,
        3 => 2_700,
        _ => 4 * 3_600,
    })
}

/// Runs DCGM's diagnostic at the SKU's level on `host` and judges it; `None` when DCGM is not installed.
pub async fn run_dcgm(
    access: &dyn NodeAccess,
    host: &NodeHost,
    profile: &SkuProfile,
) -> Result<Option<Verdict>, AccessError> {
    let level = profile.gates.dcgm_level;
    let command = dcgm_command(level);
    let started = now_unix_s();
    let reply = access.run_tool(host, &command, dcgm_timeout(level)).await?;
    if reply.not_installed() {
        return Ok(None);
    }
    let checks = if reply.timed_out {
        vec![Check::fail(
            "dcgm.run",
            "node",
            dcgm_timeout(level).as_secs(),
            None,
            &format!("`{command}` did not finish within its time limit"),
        )]
    } else {
        match parse_diag(&reply.stdout) {
            // dcgmi exits non-zero when a test fails: the document says which, so it is judged, not the exit.
            Ok(diag) => judge_dcgm(&diag, profile.gpus_per_node),
            Err(err) => vec![Check::fail(
                "dcgm.output",
                "node",
                err.to_string(),
                None,
                &format!(
                    "`{command}` {} without a diagnostic kiln can read",
                    exit_words(&reply)
                ),
            )],
        }
    };
    Ok(Some(tool_verdict(
        RunKind::Dcgm,
        profile,
        started,
        checks,
        &command,
        &reply,
    )))
}

/// How long nvbandwidth may take (all its default testcases on 8 GPUs take a few minutes).
pub const NVBANDWIDTH_TIMEOUT: Duration = Duration::from_secs(1_800);

/// Runs nvbandwidth on `host` and judges its matrices against the SKU's floors; `None` when not installed.
pub async fn run_nvbandwidth(
    access: &dyn NodeAccess,
    host: &NodeHost,
    profile: &SkuProfile,
) -> Result<Option<Verdict>, AccessError> {
    let started = now_unix_s();
    let reply = access
        .run_tool(host, NVBANDWIDTH_COMMAND, NVBANDWIDTH_TIMEOUT)
        .await?;
    if reply.not_installed() {
        return Ok(None);
    }
    let checks = if reply.timed_out || reply.exit_code != Some(0) {
        vec![Check::fail(
            "bandwidth.run",
            "node",
            reply
                .exit_code
                .map_or(serde_json::Value::Null, |c| json!(c)),
            Some(json!(0)),
            &format!(
                "`{NVBANDWIDTH_COMMAND}` {}: {}",
                exit_words(&reply),
                tail(reply.stderr.trim(), 300)
            ),
        )]
    } else {
        nvbandwidth_checks(&reply.stdout, profile)
    };
    Ok(Some(tool_verdict(
        RunKind::Bandwidth,
        profile,
        started,
        checks,
        NVBANDWIDTH_COMMAND,
        &reply,
    )))
}

/// nvbandwidth's output judged against the SKU's floors; output kiln cannot read fails.
pub fn nvbandwidth_checks(stdout: &str, profile: &SkuProfile) -> Vec<Check> {
    let floors = NvbandwidthFloors {
        h2d_min_gbps: profile.gates.nvbandwidth_h2d_min_gbps,
        d2h_min_gbps: profile.gates.nvbandwidth_d2h_min_gbps,
        d2d_min_gbps: profile.gates.nvbandwidth_d2d_min_gbps,
    };
    match parse_nvbandwidth(stdout) {
        Ok(result) => judge_nvbandwidth(&result, &floors),
        Err(err) => vec![Check::fail(
            "bandwidth.output",
            "node",
            err.to_string(),
            None,
            "nvbandwidth printed nothing kiln can read",
        )],
    }
}

/// A tool run's verdict, with the command, its exit and the tail of its output as evidence.
pub fn tool_verdict(
    kind: RunKind,
    profile: &SkuProfile,
    started: u64,
    checks: Vec<Check>,
    command: &str,
    reply: &ToolReply,
) -> Verdict {
    Verdict::new(
        kind,
        &profile.id,
        started,
        checks,
        json!({
            "command": command,
            "exit_code": reply.exit_code,
            "timed_out": reply.timed_out,
            "stdout_tail": tail(&reply.stdout, OUTPUT_KEPT),
            "stderr_tail": tail(&reply.stderr, 2_000),
        }),
    )
}

/// `exited N`, `was killed` or `timed out`, for messages.
fn exit_words(reply: &ToolReply) -> String {
    match (reply.timed_out, reply.exit_code) {
        (true, _) => "timed out".to_string(),
        (false, Some(code)) => format!("exited {code}"),
        (false, None) => "was killed".to_string(),
    }
}

/// The last `max` characters of `text`.
fn tail(text: &str, max: usize) -> String {
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(max)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: &str =
        "[    4.871532] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.127.05\n";
    const OLD_XID: &str = "[    9.100000] NVRM: Xid (PCI:0000:18:00): 79, pid=812, name=Xorg, GPU has fallen off the bus.\n";
    const SXID: &str = "[  612.004512] nvidia-nvswitch1: SXid (PCI:0000:06:00.0): 12022, Fatal, Link 17 egress input ECC DBE error\n";

    fn names(checks: &[Check]) -> Vec<(String, String, bool)> {
        checks
            .iter()
            .map(|c| (c.name.clone(), c.subject.clone(), c.failed()))
            .collect()
    }

    #[test]
    fn events_before_the_burn_in_and_new_ones_are_judged_apart() {
        let before = Ok(scan(&format!("{BOOT}{OLD_XID}")));
        let after = Ok(scan(&format!("{BOOT}{OLD_XID}{SXID}")));
        let checks = kernel_checks(&before, &after);
        let judged = names(&checks);
        assert!(
            judged.contains(&(
                "kernel.xid".into(),
                "before burn-in: 0000:18:00".into(),
                true
            )),
            "{judged:?}"
        );
        assert!(
            judged.contains(&("kernel.sxid".into(), "0000:06:00.0".into(), true)),
            "{judged:?}"
        );
        // The old Xid is not counted a second time as new.
        assert_eq!(
            judged.iter().filter(|(n, _, _)| n == "kernel.xid").count(),
            1
        );
    }

    #[test]
    fn a_clean_log_passes_and_an_unreadable_one_fails() {
        let clean = Ok(scan(BOOT));
        assert!(kernel_checks(&clean, &clean).iter().all(|c| !c.failed()));
        let denied: KernelRead = Err("`dmesg` exited 1: Operation not permitted".into());
        let checks = kernel_checks(&denied, &clean);
        assert_eq!(
            names(&checks)
                .into_iter()
                .filter(|(_, _, fails)| *fails)
                .map(|(n, _, _)| n)
                .collect::<Vec<_>>(),
            vec!["kernel.log".to_string()]
        );
        assert!(checks[0].reason.contains("start"), "{}", checks[0].reason);
    }
}
