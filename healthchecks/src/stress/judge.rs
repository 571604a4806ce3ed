//! Judgement of a stress report: throughput against the node's best GPU, computation errors as SDC, the tool's own
//! complaints.

use serde_json::json;

use super::{StressReport, StressTool, detect, detect_output, parse};
use crate::verdict::{Check, CheckStatus};

/// Checks for one stress run:
/// - `stress.throughput` per GPU: its figure must be at least `min_ratio_of_best` × the best GPU's (same unit); a
///   GPU without a figure is a note, and a node whose best figure is zero fails (no work was done);
/// - `stress.sdc` per GPU: any computation error or FAULTY verdict fails with a reason starting `sdc:`; a tool
///   that does not check results gives one note on `node` instead of passes;
/// - `stress.tool` per GPU for each problem the tool reported (died, throttled, DCGM failure): failing;
/// - `stress.complete` note when the output stops before the tool's final verdict;
/// - `stress.output` failing when the report has no GPU at all.
pub fn judge_stress(report: &StressReport, min_ratio_of_best: f64) -> Vec<Check> {
    let tool = report.tool.program();
    let mut checks = Vec::new();
    if report.per_gpu.is_empty() {
        checks.push(Check::fail(
            "stress.output",
            "node",
            json!(null),
            None,
            &format!("{tool} output names no GPU: nothing to judge"),
        ));
        return checks;
    }
    for g in &report.per_gpu {
        let subject = format!("gpu{}", g.gpu);
        let Some(value) = g.value else {
            let total = report
                .node_total
                .map_or(String::new(), |t| format!(" (node total {t} {})", g.unit));
            checks.push(Check::new(
                "stress.throughput",
                &subject,
                CheckStatus::Note,
                json!(null),
                None,
                &format!("{tool} gave no per-GPU throughput for this GPU{total}"),
            ));
            continue;
        };
        let best = report
            .per_gpu
            .iter()
            .filter(|o| o.unit == g.unit)
            .filter_map(|o| o.value)
            .fold(0.0_f64, f64::max);
        let floor = best * min_ratio_of_best;
        let threshold = Some(
            json!({ "min": floor, "best": best, "ratio_of_best": min_ratio_of_best, "unit": g.unit }),
        );
        let (ok, reason) = if best <= 0.0 {
            (
                false,
                format!("{tool} reports no throughput on any GPU: no work was done"),
            )
        } else if value >= floor {
            (
                true,
                format!(
                    "{value:.0} {} is {:.1}% of the node's best GPU",
                    g.unit,
                    100.0 * value / best
                ),
            )
        } else {
            (
                false,
                format!(
                    "{value:.0} {} is {:.1}% of the node's best GPU ({best:.0}), below {:.0}%: check clocks, power and cooling",
                    g.unit,
                    100.0 * value / best,
                    100.0 * min_ratio_of_best
                ),
            )
        };
        checks.push(Check::judged(
            ok,
            "stress.throughput",
            &subject,
            value,
            threshold,
            &reason,
        ));
    }
    if report.tool.checks_results() {
        for g in &report.per_gpu {
            let subject = format!("gpu{}", g.gpu);
            if g.faulty || g.errors > 0 {
                let verdict = if g.faulty { ", verdict FAULTY" } else { "" };
                checks.push(Check::fail(
                    "stress.sdc",
                    &subject,
                    g.errors,
                    Some(json!(0)),
                    &format!(
                        "sdc: {tool} found {} computation error(s) on GPU {}{verdict}: silent data corruption, RMA candidate",
                        g.errors, g.gpu
                    ),
                ));
            } else if report.complete {
                checks.push(Check::pass(
                    "stress.sdc",
                    &subject,
                    0,
                    Some(json!(0)),
                    &format!("{tool} found no computation errors"),
                ));
            }
        }
    } else {
        checks.push(Check::new(
            "stress.sdc",
            "node",
            CheckStatus::Note,
            json!(null),
            None,
            &format!("{tool} does not verify its results: silent data corruption is not covered by this run"),
        ));
    }
    for g in &report.per_gpu {
        for problem in &g.problems {
            checks.push(Check::fail(
                "stress.tool",
                &format!("gpu{}", g.gpu),
                problem.clone(),
                None,
                &format!("{tool} reported a problem on GPU {}", g.gpu),
            ));
        }
    }
    if !report.complete {
        checks.push(Check::new(
            "stress.complete",
            "node",
            CheckStatus::Note,
            false,
            Some(json!(true)),
            &format!(
                "{tool} output stops before its final verdict: {}",
                report.notes.join("; ")
            ),
        ));
    }
    checks
}

/// The whole path for burn-in evidence: tells the tool from `argv` (or, failing that, from the output), parses
/// `stdout` and judges it. Output that names no known tool or cannot be read is one failing `stress.output` check
/// with the reason, never a pass.
pub fn judge_stress_output(argv: &[String], stdout: &str, min_ratio_of_best: f64) -> Vec<Check> {
    let Some(tool) = detect(argv).or_else(|| detect_output(stdout)) else {
        let program = argv.first().map_or("(empty argv)", String::as_str);
        return vec![Check::fail(
            "stress.output",
            "node",
            json!(program),
            None,
            &format!(
                "cannot tell which stress tool produced this output (program {program}); known: {}",
                StressTool::ALL.map(StressTool::program).join(", ")
            ),
        )];
    };
    match parse(tool, stdout) {
        Ok(report) => judge_stress(&report, min_ratio_of_best),
        Err(err) => vec![Check::fail(
            "stress.output",
            "node",
            json!(tool.program()),
            None,
            &format!("stress output unreadable: {err}"),
        )],
    }
}
