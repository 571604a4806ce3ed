//! Judgement, on the provisioner: a [`BurnInEvidence`] document against the SKU profile and the duration
//! asked. Evidence that is missing, malformed, for another SKU, too short, or from a tool that failed is a
//! failing check with its reason, never a pass.

use std::time::Duration;

use serde_json::{Value, json};

use super::doc::{
    BurnInEvidence, EVIDENCE_FORMAT, EVIDENCE_VERSION, NvmlEvidence, StressEvidence,
    evidence_digest,
};
use crate::nvml::checks::judge_xids;
use crate::nvml::{GpuSample, THROTTLE_FAILING_MASK, XidEvent};
use crate::sku::SkuProfile;
use crate::stress;
use crate::verdict::{Check, CheckStatus, RunKind, Verdict};
use crate::xid::kernel_log_xids;

/// Most GPUs judged one by one.
const MAX_GPUS_JUDGED: u32 = 64;

/// Fewest NVML ticks that can show sustained behaviour.
pub const MIN_TICKS: usize = 3;

/// The stress tool must have run at least this share of the duration asked.
pub const MIN_DURATION_RATIO: f64 = 0.9;

/// The NVML samples must span at least this share of the duration asked.
pub const MIN_SAMPLED_RATIO: f64 = 0.75;

/// Judges a raw evidence document (as the node sent it) for `profile`, after asking for `asked`. A document
/// that does not decode fails with the decoder's reason. The verdict's `evidence` holds a summary and the
/// document's digest ([`evidence_digest`]).
pub fn judge_burn_in_document(document: &Value, profile: &SkuProfile, asked: Duration) -> Verdict {
    let digest = evidence_digest(document);
    let format = document.get("format").and_then(Value::as_str);
    let version = document.get("version").and_then(Value::as_u64);
    if format != Some(EVIDENCE_FORMAT) || version != Some(u64::from(EVIDENCE_VERSION)) {
        let check = Check::fail(
            "evidence.format",
            "node",
            json!({ "format": format, "version": version }),
            Some(json!({ "format": EVIDENCE_FORMAT, "version": EVIDENCE_VERSION })),
            "the node's answer is not burn-in evidence of a format kiln judges (a verdict or an empty \
             document proves nothing)",
        );
        return Verdict::new(
            RunKind::BurnIn,
            &profile.id,
            0,
            vec![check],
            json!({ "evidence_sha256": digest }),
        );
    }
    match serde_json::from_value::<BurnInEvidence>(document.clone()) {
        Ok(evidence) => {
            let mut verdict = judge_burn_in(&evidence, profile, asked);
            verdict.evidence["evidence_sha256"] = json!(digest);
            verdict
        }
        Err(err) => Verdict::new(
            RunKind::BurnIn,
            &profile.id,
            0,
            vec![Check::fail(
                "evidence.malformed",
                "node",
                err.to_string(),
                None,
                "the burn-in evidence document does not decode",
            )],
            json!({ "evidence_sha256": digest }),
        ),
    }
}

/// Judges decoded evidence for `profile`, after asking for `asked`.
pub fn judge_burn_in(evidence: &BurnInEvidence, profile: &SkuProfile, asked: Duration) -> Verdict {
    let asked_s = asked.as_secs().max(1);
    let mut checks = vec![
        Check::judged(
            evidence.format == EVIDENCE_FORMAT && evidence.version == EVIDENCE_VERSION,
            "evidence.format",
            "node",
            json!({ "format": evidence.format, "version": evidence.version }),
            Some(json!({ "format": EVIDENCE_FORMAT, "version": EVIDENCE_VERSION })),
            "burn-in evidence must be of the format kiln judges",
        ),
        Check::judged(
            evidence.sku == profile.id,
            "evidence.sku",
            "node",
            evidence.sku.as_str(),
            Some(json!(profile.id)),
            "burn-in evidence must be collected for the node's SKU",
        ),
        Check::judged(
            evidence.duration_s >= asked_s,
            "evidence.duration_asked",
            "node",
            evidence.duration_s,
            Some(json!({ "min_s": asked_s })),
            "the node must have run the burn-in duration kiln asked for",
        ),
    ];
    if let Some(reason) = &evidence.nvml.error {
        checks.push(Check::fail(
            "nvml.available",
            "node",
            reason.as_str(),
            None,
            "NVML cannot be loaded: burn-in not started (a stress run without monitoring proves nothing)",
        ));
        return verdict(evidence, profile, checks);
    }
    match &evidence.stress {
        None => checks.push(Check::fail(
            "burnin.tool",
            "node",
            Value::Null,
            None,
            "the evidence holds no stress tool run",
        )),
        Some(StressEvidence {
            spawn_error: Some(err),
            ..
        }) => checks.push(Check::fail(
            "burnin.tool",
            "node",
            err.as_str(),
            None,
            "stress tool could not be started",
        )),
        Some(stress) => {
            checks.extend(judge_tool(stress));
            checks.extend(judge_stress_figures(stress, profile));
            checks.push(Check::judged(
                stress.elapsed_s >= asked_s as f64 * MIN_DURATION_RATIO,
                "burnin.duration",
                "node",
                stress.elapsed_s,
                Some(json!({ "min_s": asked_s as f64 * MIN_DURATION_RATIO, "asked_s": asked_s })),
                "the stress tool must run for the duration asked (a short run proves nothing)",
            ));
        }
    }
    checks.extend(judge_samples(&evidence.nvml, profile, asked_s));
    let kernel: Vec<XidEvent> = kernel_log_xids(&evidence.kernel_log.lines)
        .into_iter()
        .map(|xid| XidEvent { gpu: u32::MAX, xid })
        .collect();
    checks.push(match &evidence.kernel_log.error {
        Some(err) => Check::new(
            "kernel_log.read",
            "node",
            CheckStatus::Note,
            err.as_str(),
            None,
            "the kernel log could not be read: driver XIDs are judged from NVML events only",
        ),
        None => Check::pass(
            "kernel_log.read",
            "node",
            json!({ "source": evidence.kernel_log.source, "lines": evidence.kernel_log.lines.len() }),
            None,
            "the kernel log since the start was read",
        ),
    });
    checks.extend(judge_xids(&kernel).into_iter().map(|mut c| {
        c.name = "kernel_log.xid".to_string();
        c
    }));
    verdict(evidence, profile, checks)
}

fn verdict(evidence: &BurnInEvidence, profile: &SkuProfile, checks: Vec<Check>) -> Verdict {
    Verdict::new(
        RunKind::BurnIn,
        &profile.id,
        evidence.started_at_unix_s,
        checks,
        summarize(evidence),
    )
}

fn judge_tool(run: &StressEvidence) -> Vec<Check> {
    let mut checks = vec![
        if run.timed_out {
            Check::fail(
                "burnin.timeout",
                "node",
                true,
                None,
                "stress tool hung past the hard timeout and was killed",
            )
        } else {
            Check::pass(
                "burnin.timeout",
                "node",
                false,
                None,
                "finished within the timeout",
            )
        },
        Check::judged(
            run.exit_code == Some(0) && !run.timed_out,
            "burnin.exit_status",
            "node",
            run.exit_code.map_or(Value::Null, |c| json!(c)),
            Some(json!(0)),
            "stress tool must exit 0",
        ),
    ];
    let bad_lines: Vec<&str> = run
        .stdout_tail
        .lines()
        .chain(run.stderr_tail.lines())
        .filter(|l| output_line_fails(l))
        .take(20)
        .collect();
    checks.push(Check::judged(
        bad_lines.is_empty(),
        "burnin.output",
        "node",
        json!(bad_lines),
        None,
        "stress tool output must report no errors (exit 0 alone is not trusted)",
    ));
    checks
}

/// The stress tool's own figures, where kiln knows the tool (gpu_burn, gpu-fryer, DCGM targeted stress): each
/// GPU's throughput against the node's best, and computation errors as `sdc`. Output of a known tool that cannot
/// be read fails; an unknown tool is noted (its output is still scanned by `burnin.output`).
fn judge_stress_figures(run: &StressEvidence, profile: &SkuProfile) -> Vec<Check> {
    let known = stress::detect(&run.argv).or_else(|| stress::detect_output(&run.stdout_tail));
    if known.is_none() {
        let program = run.argv.first().map_or("", String::as_str);
        return vec![Check::new(
            "stress.output",
            "node",
            CheckStatus::Note,
            program,
            None,
            "not a stress tool kiln reads figures from (gpu_burn, gpu-fryer, dcgmi): per-GPU throughput and \
             silent data corruption are judged from the output scan only",
        )];
    }
    stress::judge_stress_output(
        &run.argv,
        &run.stdout_tail,
        profile.gates.stress_gpu_min_ratio,
    )
}

/// A tool output line that reports a failure: `FAULTY` (gpu_burn), `fail`/`FAILED` (dcgmi diag), or a
/// non-zero error count, but not gpu_burn's healthy `errors: 0`.
pub fn output_line_fails(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    if l.contains("faulty") || l.contains("fail") {
        return true;
    }
    if l.contains("no error") || l.contains(" 0 errors") || l.starts_with("0 errors") {
        return false;
    }
    let Some(at) = l.find("error") else {
        return false;
    };
    let after = l[at + "error".len()..]
        .trim_start_matches('s')
        .trim_start_matches([':', '=', ' ']);
    let number: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    !matches!(number.parse::<f64>(), Ok(v) if v == 0.0)
}

fn judge_samples(s: &NvmlEvidence, p: &SkuProfile, asked_s: u64) -> Vec<Check> {
    let mut checks = vec![Check::judged(
        s.gpu_count == p.gpus_per_node,
        "gpu.count",
        "node",
        s.gpu_count,
        Some(json!(p.gpus_per_node)),
        "GPU count at burn-in start must match the SKU",
    )];
    checks.push(Check::judged(
        s.ticks.len() >= MIN_TICKS,
        "burnin.samples",
        "node",
        s.ticks.len(),
        Some(json!({ "min": MIN_TICKS })),
        "enough NVML samples to judge sustained behaviour",
    ));
    let misshapen = s
        .ticks
        .iter()
        .filter(|t| t.gpus.len() != s.gpu_count as usize || !t.t_s.is_finite())
        .count();
    checks.push(Check::judged(
        misshapen == 0,
        "burnin.sample_shape",
        "node",
        misshapen,
        Some(json!(0)),
        "every sampling tick must hold one reading (or error) per GPU counted",
    ));
    let first = s.ticks.first().map_or(0.0, |t| t.t_s);
    let span = s.ticks.last().map_or(0.0, |t| t.t_s) - first;
    checks.push(Check::judged(
        span >= asked_s as f64 * MIN_SAMPLED_RATIO,
        "burnin.sampled_span",
        "node",
        span,
        Some(json!({ "min_s": asked_s as f64 * MIN_SAMPLED_RATIO })),
        "NVML must be sampled across the run, not only at its start",
    ));
    // Bounded: a document claiming billions of GPUs fails gpu.count without costing a check per claim.
    for gpu in 0..s.gpu_count.min(MAX_GPUS_JUDGED) as usize {
        checks.extend(judge_gpu_samples(s, gpu, p));
    }
    checks.extend(judge_xids(
        &s.xids
            .iter()
            .map(|e| XidEvent {
                gpu: e.gpu,
                xid: e.xid,
            })
            .collect::<Vec<_>>(),
    ));
    checks
}

fn judge_gpu_samples(s: &NvmlEvidence, gpu: usize, p: &SkuProfile) -> Vec<Check> {
    let subject = format!("gpu{gpu}");
    let g = subject.as_str();
    let mut checks = Vec::new();
    let per_tick: Vec<(f64, &Result<GpuSample, String>)> = s
        .ticks
        .iter()
        .filter_map(|t| t.gpus.get(gpu).map(|r| (t.t_s, r)))
        .collect();
    if let Some((t, Err(err))) = per_tick.iter().find(|(_, r)| r.is_err()) {
        checks.push(Check::fail(
            "burnin.gpu_present",
            g,
            json!({ "t_s": t, "error": err }),
            None,
            "GPU stopped answering NVML during burn-in",
        ));
    }
    let ok: Vec<&GpuSample> = per_tick
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let Some(last) = ok.last() else {
        checks.push(Check::fail(
            "burnin.gpu_samples",
            g,
            0,
            Some(json!({ "min": 1 })),
            "no NVML reading of this GPU during burn-in",
        ));
        return checks;
    };
    let baseline = s
        .baseline_ecc
        .get(gpu)
        .copied()
        .flatten()
        .unwrap_or(last.ecc_uncorrected_volatile);
    let new_ecc = last.ecc_uncorrected_volatile.saturating_sub(baseline);
    checks.push(Check::judged(
        new_ecc == 0,
        "burnin.ecc_new",
        g,
        new_ecc,
        Some(json!(0)),
        "no new uncorrectable ECC errors under load",
    ));
    let max_temp = ok.iter().map(|x| x.temp_c).max().unwrap_or(0);
    checks.push(Check::judged(
        max_temp < p.max_gpu_temp_c,
        "burnin.temp_max",
        g,
        max_temp,
        Some(json!({ "below_c": p.max_gpu_temp_c })),
        "GPU temperature under load must stay below the slowdown limit",
    ));
    // A board drawing well past its limit is misreporting or faulty (limits are enforced by firmware).
    let max_power_w = ok.iter().map(|x| x.power_w).fold(0.0_f64, f64::max);
    let power_ceiling_w = f64::from(p.power_limit_w) * 1.05;
    checks.push(Check::judged(
        max_power_w <= power_ceiling_w,
        "burnin.power_max",
        g,
        max_power_w,
        Some(json!({ "max_w": power_ceiling_w, "limit_w": p.power_limit_w })),
        "power draw under load must stay within the board limit",
    ));
    if let Some(max_hbm) = ok.iter().filter_map(|x| x.memory_temp_c).max() {
        checks.push(Check::judged(
            max_hbm < p.max_memory_temp_c,
            "burnin.memory_temp_max",
            g,
            max_hbm,
            Some(json!({ "below_c": p.max_memory_temp_c })),
            "HBM temperature under load must stay below the SKU's limit",
        ));
    }
    let throttled = ok
        .iter()
        .filter(|x| x.throttle_reasons & THROTTLE_FAILING_MASK != 0)
        .count();
    checks.push(Check::judged(
        throttled == 0,
        "burnin.throttle",
        g,
        json!({ "samples_throttled": throttled, "samples": ok.len() }),
        Some(json!(0)),
        "no thermal, hardware-slowdown or power-brake throttling under load",
    ));
    // Sustained clock: the median over the ticks under load (the same ticks the under-load checks use), so a
    // tick sampled before the stress tool ramped up or after it stopped does not count as a slow clock.
    let (loaded, basis) = super::load::loaded_samples(&ok);
    let mut clocks: Vec<u32> = loaded.iter().map(|x| x.sm_clock_mhz).collect();
    clocks.sort_unstable();
    let floor = f64::from(p.sm_clock_expected_mhz) * p.sm_clock_min_ratio;
    let threshold = json!({ "min_mhz": floor.round(), "expected_mhz": p.sm_clock_expected_mhz });
    let Some(&median) = clocks.get(clocks.len() / 2) else {
        let load = json!({ "basis": basis.name(), "loaded_ticks": 0, "ticks": ok.len() });
        checks.push(super::load::never_loaded(
            "burnin.sm_clock",
            g,
            &load,
            threshold,
        ));
        checks.extend(super::load::judge_under_load(&ok, g, p));
        return checks;
    };
    checks.push(Check::judged(
        f64::from(median) >= floor,
        "burnin.sm_clock",
        g,
        median,
        Some(threshold),
        "sustained SM clock under load must reach the SKU's expected clock",
    ));
    checks.extend(super::load::judge_under_load(&ok, g, p));
    checks
}

/// A short summary of the evidence for humans (the document itself is stored beside the verdict).
fn summarize(e: &BurnInEvidence) -> Value {
    let s = &e.nvml;
    let per_gpu: Vec<Value> = (0..s.gpu_count as usize)
        .map(|gpu| {
            let ok: Vec<&GpuSample> =
                s.ticks.iter().filter_map(|t| t.gpus.get(gpu).and_then(|r| r.as_ref().ok())).collect();
            json!({
                "gpu": gpu,
                "samples": ok.len(),
                "temp_max_c": ok.iter().map(|x| x.temp_c).max(),
                "power_max_w": ok.iter().map(|x| x.power_w).fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))),
                "sm_clock_min_mhz": ok.iter().map(|x| x.sm_clock_mhz).min(),
                "sm_clock_max_mhz": ok.iter().map(|x| x.sm_clock_mhz).max(),
                "util_max_pct": ok.iter().filter_map(|x| x.gpu_util_pct).max(),
                "pcie_gen_max": ok.iter().filter_map(|x| x.pcie_gen_current).max(),
                "pcie_gen_min": ok.iter().filter_map(|x| x.pcie_gen_current).min(),
            })
        })
        .collect();
    let mut out = json!({
        "samples": s.ticks.len(),
        "gpus": { "per_gpu": per_gpu, "xids": s.xids },
        "kernel_log_lines": e.kernel_log.lines.len(),
        "collector": e.collector,
    });
    if let Some(stress) = &e.stress {
        out["argv"] = json!(stress.argv);
        out["elapsed_s"] = json!(stress.elapsed_s);
        out["stdout_tail"] = json!(stress.stdout_tail);
        out["stderr_tail"] = json!(stress.stderr_tail);
    }
    out
}
