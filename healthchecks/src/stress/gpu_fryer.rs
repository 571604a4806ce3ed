//! gpu-fryer output, human or `--json`.
//!
//! Human: after per-second progress lines it prints, per GPU,
//! `GPU #3:  51494 Gflops/s (min: 50577.53, max: 51677.05, dev: 51493.79)`, a temperature line and
//! `Throttling HW: false, Thermal SW: false, Thermal HW: false`; then `All GPUs seem healthy` or
//! `Some GPUs are not healthy. Reasons:` followed by `  - GPU 3 - <reason>` lines.
//! JSON (`--json`): one object per line, `{"type":"results","gpus":[{"burn_result":{"gpu_idx":3,…},
//! "flops_avg":5.1e13}]}` (flops per second) and `{"type":"problems","problems":[{"gpu_idx":3,"reason":"LowFlops"}]}`.
//! gpu-fryer does not compare results, so it never reports computation errors.

use serde_json::Value;

use super::{StressParseError, StressReport, StressTool};

pub(super) fn parse(stdout: &str) -> Result<StressReport, StressParseError> {
    let mut report = StressReport::new(StressTool::GpuFryer);
    let mut lines = 0usize;
    let mut last_gpu: Option<u32> = None;
    let mut saw_summary = false;
    for raw in stdout.lines() {
        lines += 1;
        let line = raw.trim();
        if line.starts_with('{') {
            match serde_json::from_str::<Value>(line) {
                Ok(v) => saw_summary |= json_line(&v, &mut report),
                Err(_) => report.notes.push(format!("unreadable JSON line: {line}")),
            }
        } else if let Some(rest) = line.strip_prefix("GPU #") {
            let Some((index, after)) = rest.split_once(':') else {
                continue;
            };
            let (Ok(gpu), Some(figure)) =
                (index.trim().parse::<u32>(), after.split_whitespace().next())
            else {
                continue;
            };
            // `GPU #3: Using 75000 MB` (memory) shares the prefix; only the results line has `Gflops/s`.
            if !after.contains("Gflops/s") {
                continue;
            }
            match figure.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => {
                    report.gpu_mut(gpu).value = Some(v);
                    last_gpu = Some(gpu);
                }
                _ => report.notes.push(format!("unreadable result line: {line}")),
            }
        } else if line.starts_with("Throttling HW:") {
            if let Some(gpu) = last_gpu {
                let throttled: Vec<&str> = line
                    .split(',')
                    .filter(|part| part.trim_end().ends_with("true"))
                    .map(|part| part.split(':').next().unwrap_or_default().trim())
                    .collect();
                if !throttled.is_empty() {
                    report.gpu_mut(gpu).problems.push(format!(
                        "gpu-fryer saw throttling: {}",
                        throttled.join(", ")
                    ));
                }
            }
        } else if line.starts_with("All GPUs seem healthy")
            || line.starts_with("Some GPUs are not healthy")
        {
            saw_summary = true;
        } else if let Some(rest) = line.strip_prefix("- GPU ")
            && let Some((index, reason)) = rest.split_once(" - ")
            && let Ok(gpu) = index.trim().parse::<u32>()
        {
            report
                .gpu_mut(gpu)
                .problems
                .push(format!("gpu-fryer: {}", reason.trim()));
        }
    }
    if report.per_gpu.iter().all(|g| g.value.is_none()) {
        return Err(StressParseError::NoResults {
            tool: StressTool::GpuFryer,
            lines,
        });
    }
    if !saw_summary {
        report.complete = false;
        report
            .notes
            .push("no health summary line: the run was cut short".to_string());
    }
    Ok(report.finish())
}

/// One `--json` line; true when it was the final problems summary.
fn json_line(v: &Value, report: &mut StressReport) -> bool {
    match v.get("type").and_then(Value::as_str) {
        Some("results") => {
            for g in v
                .get("gpus")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let gpu = g
                    .pointer("/burn_result/gpu_idx")
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok());
                let flops = g.get("flops_avg").and_then(Value::as_f64);
                match (gpu, flops) {
                    (Some(gpu), Some(f)) if f.is_finite() && f >= 0.0 => {
                        report.gpu_mut(gpu).value = Some(f / 1e9);
                        let b = g.get("burn_result");
                        let throttled = [
                            "throttling_hw",
                            "throttling_thermal_sw",
                            "throttling_thermal_hw",
                        ]
                        .iter()
                        .filter(|k| {
                            b.and_then(|b| b.get(**k))
                                .and_then(Value::as_u64)
                                .unwrap_or(0)
                                > 0
                        })
                        .copied()
                        .collect::<Vec<_>>();
                        if !throttled.is_empty() {
                            report.gpu_mut(gpu).problems.push(format!(
                                "gpu-fryer saw throttling: {}",
                                throttled.join(", ")
                            ));
                        }
                    }
                    _ => report.notes.push(format!("unreadable results entry: {g}")),
                }
            }
            false
        }
        Some("problems") => {
            for p in v
                .get("problems")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let gpu = p
                    .get("gpu_idx")
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok());
                let reason = p
                    .get("reason")
                    .map(|r| r.as_str().map_or(r.to_string(), str::to_string));
                if let (Some(gpu), Some(reason)) = (gpu, reason) {
                    report
                        .gpu_mut(gpu)
                        .problems
                        .push(format!("gpu-fryer: {reason}"));
                }
            }
            true
        }
        _ => false,
    }
}
