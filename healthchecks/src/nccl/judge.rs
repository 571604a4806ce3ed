//! Judges a nccl-tests run: busbw at large messages against the SKU profile's floor for the node count, plus
//! everything that means the figures cannot be trusted (no footer, corrupted values, wrong elements, NCCL
//! warnings, missing ranks, a non-zero exit, a timeout). Flags the hosts and ranks it can blame.

use serde_json::json;

use super::parse::{NcclReport, parse};
use crate::process::tail;
use crate::sku::SkuProfile;
use crate::verdict::{Check, CheckStatus, RunKind, Verdict, now_unix_s};

/// How much of a run's output is kept in the verdict as evidence.
const EVIDENCE_TAIL_CHARS: usize = 4000;

/// One nccl-tests invocation as the runner saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NcclRun {
    /// Hosts the run was launched on (one per node).
    pub hosts: Vec<String>,
    /// Exit code; `None` when killed.
    pub exit_code: Option<i32>,
    /// True when the runner's hard timeout killed it.
    pub timed_out: bool,
    /// Everything it printed (stdout then stderr).
    pub output: String,
}

/// Judges a whole run: exit status, timeout, and the parsed output.
pub fn judge_run(run: &NcclRun, profile: &SkuProfile) -> Verdict {
    let nodes = u32::try_from(run.hosts.len().max(1)).unwrap_or(u32::MAX);
    let mut checks = Vec::new();
    checks.push(if run.timed_out {
        Check::fail(
            "nccl.timeout",
            "run",
            true,
            None,
            "nccl-tests did not finish within the timeout (hung run)",
        )
    } else {
        Check::pass(
            "nccl.timeout",
            "run",
            false,
            None,
            "finished within the timeout",
        )
    });
    checks.push(Check::judged(
        run.exit_code == Some(0),
        "nccl.exit_status",
        "run",
        run.exit_code.map_or(serde_json::Value::Null, |c| json!(c)),
        Some(json!(0)),
        if run.exit_code == Some(0) {
            "exited 0"
        } else {
            "nccl-tests exited non-zero or was killed"
        },
    ));
    let mut evidence =
        json!({ "hosts": run.hosts, "output_tail": tail(&run.output, EVIDENCE_TAIL_CHARS) });
    match parse(&run.output) {
        Ok(report) => {
            checks.extend(judge_report(&report, profile, nodes, &run.hosts));
            evidence["nccl_version"] = json!(report.nccl_version);
            evidence["avg_busbw_gbps"] = json!(report.avg_busbw_gbps);
        }
        Err(err) => checks.push(Check::fail(
            "nccl.output",
            "run",
            err.to_string(),
            None,
            "output is not nccl-tests output; the tool did not run",
        )),
    }
    Verdict::new(RunKind::Nccl, &profile.id, now_unix_s(), checks, evidence)
}

/// Checks on parsed output for a run over `nodes` nodes; `hosts` (may be empty) are the hosts it was launched on.
pub fn judge_report(
    report: &NcclReport,
    profile: &SkuProfile,
    nodes: u32,
    hosts: &[String],
) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(Check::judged(
        report.completed(),
        "nccl.completed",
        "run",
        report.completed(),
        Some(json!(true)),
        if report.completed() {
            "output reaches the footer"
        } else {
            "output ends before the footer"
        },
    ));
    if let Some(oob) = report.out_of_bounds {
        checks.push(Check::judged(
            oob == 0,
            "nccl.out_of_bounds",
            "run",
            oob,
            Some(json!(0)),
            if oob == 0 {
                "no out-of-bounds values"
            } else {
                "out-of-bounds values: results are corrupted"
            },
        ));
    }
    checks.push(wrong_check(report));
    checks.extend(rank_checks(report, profile, nodes, hosts));
    checks.push(busbw_check(report, profile, nodes));
    for line in &report.errors {
        let subject = blamed_host(line).unwrap_or_else(|| "run".to_string());
        checks.push(Check::fail(
            "nccl.error",
            &subject,
            line.clone(),
            None,
            "NCCL or the test reported a failure",
        ));
    }
    checks
}

fn wrong_check(report: &NcclReport) -> Check {
    let counts: Vec<u64> = report
        .rows
        .iter()
        .flat_map(|r| [r.out_of_place.wrong, r.in_place.wrong])
        .flatten()
        .collect();
    if counts.is_empty() {
        return Check::new(
            "nccl.wrong",
            "run",
            CheckStatus::Note,
            "N/A",
            None,
            "validation was off (-c 0): data correctness not checked",
        );
    }
    let total: u64 = counts.iter().fold(0u64, |a, b| a.saturating_add(*b));
    Check::judged(
        total == 0,
        "nccl.wrong",
        "run",
        total,
        Some(json!(0)),
        if total == 0 {
            "no wrong elements"
        } else {
            "collectives produced wrong elements"
        },
    )
}

fn rank_checks(
    report: &NcclReport,
    profile: &SkuProfile,
    nodes: u32,
    hosts: &[String],
) -> Vec<Check> {
    let mut checks = Vec::new();
    let expected = nodes.saturating_mul(profile.gpus_per_node);
    if report.ranks > 0 {
        checks.push(Check::judged(
            report.ranks == expected,
            "nccl.ranks",
            "run",
            report.ranks,
            Some(json!(expected)),
            if report.ranks == expected {
                "every GPU took part"
            } else {
                "rank count differs from nodes × GPUs per node"
            },
        ));
    }
    if !report.devices.is_empty() {
        for host in hosts.iter().filter(|h| !report.hosts.contains(h)) {
            checks.push(Check::fail(
                "nccl.host_missing",
                host,
                false,
                Some(json!(true)),
                "host took no rank in the run",
            ));
        }
        for d in report
            .devices
            .iter()
            .filter(|d| !d.gpu_name.contains(&profile.nvml_name_contains))
        {
            checks.push(Check::fail(
                "nccl.gpu_model",
                &format!("{}/rank{}", d.host, d.rank),
                d.gpu_name.clone(),
                Some(json!(profile.nvml_name_contains)),
                "rank ran on a GPU that is not this SKU",
            ));
        }
    }
    checks
}

fn busbw_check(report: &NcclReport, profile: &SkuProfile, nodes: u32) -> Check {
    let Some(threshold) = profile.nccl_threshold(nodes) else {
        return Check::fail(
            "nccl.busbw",
            "run",
            serde_json::Value::Null,
            None,
            "profile has no NCCL threshold",
        );
    };
    let large: Vec<f64> = report
        .rows
        .iter()
        .filter(|r| r.size_bytes >= profile.nccl_min_size_bytes)
        .flat_map(|r| [r.out_of_place.busbw_gbps, r.in_place.busbw_gbps])
        .collect();
    let threshold_json = Some(
        json!({ "min_busbw_gbps": threshold.min_busbw_gbps, "nodes": nodes,
        "min_size_bytes": profile.nccl_min_size_bytes }),
    );
    if large.is_empty() {
        return Check::fail(
            "nccl.busbw",
            "run",
            serde_json::Value::Null,
            threshold_json,
            "no result rows at large message sizes to judge",
        );
    }
    #[allow(clippy::cast_precision_loss)]
    let mean = large.iter().sum::<f64>() / large.len() as f64;
    let mean = (mean * 100.0).round() / 100.0;
    let judged_collective = matches!(report.collective.as_str(), "all_reduce" | "unknown");
    let status = match (judged_collective, mean >= threshold.min_busbw_gbps) {
        (false, _) => CheckStatus::Note,
        (true, true) => CheckStatus::Pass,
        (true, false) => CheckStatus::Fail,
    };
    let reason = match status {
        CheckStatus::Note => "profile floors are for all_reduce; recorded only",
        CheckStatus::Pass => "mean busbw at large messages meets the floor",
        CheckStatus::Fail => "mean busbw at large messages is below the floor",
    };
    Check::new("nccl.busbw", "run", status, mean, threshold_json, reason)
}

/// NCCL prefixes its log lines with `host:pid:tid [dev]`; returns the host when the line has that shape.
pub fn blamed_host(line: &str) -> Option<String> {
    let first = line.split_whitespace().next()?;
    let mut parts = first.split(':');
    let host = parts.next()?;
    let pid = parts.next()?;
    (!host.is_empty() && pid.chars().all(|c| c.is_ascii_digit()) && !pid.is_empty())
        .then(|| host.to_string())
}
