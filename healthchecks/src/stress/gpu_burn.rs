//! gpu-burn output.
//!
//! Progress is one line per report, rewritten in place with `\r`:
//! `50.0%  proc'd: 6400 (61000 Gflop/s) - 6300 (60500 Gflop/s)   errors: 0 - 3  (WARNING!)- 0   temps: 68 C - 70 C`
//! (one `count (G Gflop/s)` per GPU; `-1` and `(DIED!)` for a GPU whose process died). Every tenth of the run it
//! prints `Summary at:` and the date and resets the error counts, so errors are summed over those intervals. At the
//! end: `Tested N GPUs:` and one `GPU i: OK` or `GPU i: FAULTY` line each; FAULTY means some result differed from
//! the reference (silent data corruption). A stand-in may print a single `proc'd` entry for the whole node: then
//! the figure is the node's total and no GPU gets one.

use super::{StressParseError, StressReport, StressTool};

#[derive(Debug, Default)]
struct Progress {
    /// Gflop/s readings per GPU position, positive ones only.
    gflops: Vec<Vec<f64>>,
    /// Errors in the current report interval, per GPU position.
    interval_errors: Vec<u64>,
    /// Errors of finished intervals, per GPU position.
    past_errors: Vec<u64>,
    died: Vec<bool>,
    lines: usize,
}

pub(super) fn parse(stdout: &str) -> Result<StressReport, StressParseError> {
    let mut report = StressReport::new(StressTool::GpuBurn);
    let mut progress = Progress::default();
    let mut verdicts: Vec<(u32, bool)> = Vec::new();
    let mut lines = 0usize;
    // `GPU i:` lines count only after `Tested N GPUs:`; before it they are `nvidia-smi -L` (`GPU 0: NVIDIA H100 …`).
    let mut in_verdicts = false;
    for raw in stdout.split(['\n', '\r']) {
        lines += 1;
        let line = raw.trim();
        if line.contains("proc'd:") {
            if !progress_line(line, &mut progress) {
                report
                    .notes
                    .push(format!("unreadable progress line: {line}"));
            }
        } else if line.starts_with("Summary at:") {
            for (past, now) in progress
                .past_errors
                .iter_mut()
                .zip(progress.interval_errors.iter_mut())
            {
                *past = past.saturating_add(*now);
                *now = 0;
            }
        } else if line.starts_with("Tested ") && line.ends_with("GPUs:") {
            in_verdicts = true;
        } else if in_verdicts
            && let Some(rest) = line.strip_prefix("GPU ")
            && let Some((index, status)) = rest.split_once(':')
            && let Ok(gpu) = index.trim().parse::<u32>()
        {
            match status.trim() {
                "OK" => verdicts.push((gpu, false)),
                "FAULTY" => verdicts.push((gpu, true)),
                other => report
                    .notes
                    .push(format!("unknown gpu-burn verdict for GPU {gpu}: {other}")),
            }
        }
    }
    if progress.lines == 0 && verdicts.is_empty() {
        return Err(StressParseError::NoResults {
            tool: StressTool::GpuBurn,
            lines,
        });
    }
    let positions = progress.gflops.len();
    let single_total = positions == 1 && verdicts.len() > 1;
    if single_total {
        report.node_total = median(&progress.gflops[0]);
        report.notes.push(format!(
            "progress lines give one figure for {} GPUs: node total, no per-GPU throughput",
            verdicts.len()
        ));
    } else {
        for pos in 0..positions {
            let gpu = u32::try_from(pos).unwrap_or(u32::MAX);
            let entry = report.gpu_mut(gpu);
            entry.value = median(&progress.gflops[pos]);
            entry.errors = progress.past_errors[pos].saturating_add(progress.interval_errors[pos]);
            if progress.died[pos] {
                entry
                    .problems
                    .push("gpu-burn reports the GPU's process died (DIED!)".to_string());
            }
        }
    }
    if single_total {
        let errors = progress.past_errors[0].saturating_add(progress.interval_errors[0]);
        if errors > 0 {
            report.notes.push(format!(
                "{errors} computation errors reported for the node as a whole"
            ));
        }
    }
    for (gpu, faulty) in &verdicts {
        report.gpu_mut(*gpu).faulty = *faulty;
    }
    if verdicts.is_empty() {
        report.complete = false;
        report.notes.push(
            "no final `Tested N GPUs` list: the run was cut short, per-GPU OK/FAULTY unknown"
                .to_string(),
        );
    } else if !single_total && positions > 0 && positions != verdicts.len() {
        report.notes.push(format!(
            "progress lines list {positions} GPUs, the final list {}",
            verdicts.len()
        ));
    }
    Ok(report.finish())
}

/// Reads one progress line; false when it has no readable `proc'd` entry.
fn progress_line(line: &str, p: &mut Progress) -> bool {
    let Some((_, after)) = line.split_once("proc'd:") else {
        return false;
    };
    let (procd, rest) = after.split_once("errors:").unwrap_or((after, ""));
    let errors = rest.split_once("temps:").map_or(rest, |(e, _)| e);
    // `count (G Gflop/s)` per GPU: the figure is the token after `(`, the count the token before it.
    let tokens: Vec<&str> = procd.split_whitespace().collect();
    let mut readings: Vec<(i64, f64)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if let Some(figure) = t.strip_prefix('(')
            && let Ok(g) = figure.parse::<f64>()
            && let Some(count) = i.checked_sub(1).and_then(|j| tokens[j].parse::<i64>().ok())
        {
            readings.push((count, g));
        }
    }
    if readings.is_empty() {
        return false;
    }
    let mut error_counts: Vec<(u64, bool)> = Vec::new();
    for t in errors.split_whitespace() {
        if let Ok(n) = t.trim_end_matches('-').parse::<u64>() {
            error_counts.push((n, false));
        } else if t.contains("DIED")
            && let Some(last) = error_counts.last_mut()
        {
            last.1 = true;
        }
    }
    let n = readings.len();
    if p.gflops.len() < n {
        p.gflops.resize(n, Vec::new());
        p.interval_errors.resize(n, 0);
        p.past_errors.resize(n, 0);
        p.died.resize(n, false);
    }
    for (pos, (count, g)) in readings.iter().enumerate() {
        if g.is_finite() && *g > 0.0 {
            p.gflops[pos].push(*g);
        }
        if *count < 0 {
            p.died[pos] = true;
        }
    }
    for (pos, (errs, died)) in error_counts.iter().enumerate().take(n) {
        p.interval_errors[pos] = *errs;
        p.died[pos] |= *died;
    }
    p.lines += 1;
    true
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}
