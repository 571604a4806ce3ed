//! Burn-in: run a stress tool with a hard timeout while sampling NVML on every GPU, then judge the samples
//! (sustained clocks, thermal and power-brake throttling, new XIDs, new ECC errors, GPUs that disappear) *and* the
//! tool's output and exit status: a tool that exits 0 while printing errors still fails.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::nvml::checks::judge_xids;
use crate::nvml::{GpuNvml, GpuSample, THROTTLE_FAILING_MASK, XidEvent};
use crate::process::{CapturedRun, run_with_timeout, tail};
use crate::sku::SkuProfile;
use crate::verdict::{Check, RunKind, Verdict, now_unix_s};

/// How much tool output is kept as evidence.
const OUTPUT_TAIL_CHARS: usize = 8000;

/// What to run and how to watch it.
#[derive(Debug, Clone)]
pub struct BurnInConfig {
    /// The stress command, program first; `{duration_s}` expands to the duration in whole seconds.
    pub stress_argv: Vec<String>,
    /// How long the tool is asked to stress the GPUs.
    pub duration: Duration,
    /// Hard limit after which the tool (and its process group) is killed; the run then fails.
    pub timeout: Duration,
    /// NVML sampling period (1 s in production).
    pub sample_interval: Duration,
    /// NVML library to load.
    pub nvml_lib: PathBuf,
    /// Extra environment for the tool.
    pub env: Vec<(String, String)>,
}

impl BurnInConfig {
    /// A config with a 1 s sampling period and a timeout of duration + 60 s.
    pub fn new(stress_argv: Vec<String>, duration: Duration, nvml_lib: PathBuf) -> Self {
        Self {
            stress_argv,
            duration,
            timeout: duration + Duration::from_secs(60),
            sample_interval: Duration::from_secs(1),
            nvml_lib,
            env: Vec::new(),
        }
    }
}

/// One sampling tick over all GPUs.
#[derive(Debug, Clone, Serialize)]
pub struct SampleTick {
    /// Seconds since sampling started.
    pub t_s: f64,
    /// Per GPU: the sample, or why the GPU did not answer.
    pub gpus: Vec<Result<GpuSample, String>>,
}

/// What the sampling thread collected.
#[derive(Debug, Default, Serialize)]
struct Sampled {
    gpu_count: u32,
    baseline_ecc: Vec<Option<u64>>,
    ticks: Vec<SampleTick>,
    xids: Vec<(f64, XidEvent)>,
}

/// Runs the burn-in and judges it. Never panics; NVML missing fails before the tool starts.
pub async fn run_burn_in(cfg: &BurnInConfig, profile: &SkuProfile) -> Verdict {
    let started = now_unix_s();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let lib = cfg.nvml_lib.clone();
    let interval = cfg.sample_interval;
    // NVML calls block; they run on their own thread, never on the async runtime.
    let sampler = std::thread::spawn(move || sample_loop(&lib, interval, &stop_rx, ready_tx));
    let ready = ready_rx
        .await
        .unwrap_or_else(|_| Err("NVML sampler ended before starting".to_string()));
    if let Err(reason) = ready {
        drop(stop_tx);
        let _ = join_sampler(sampler).await;
        let check = Check::fail(
            "nvml.available",
            "node",
            reason,
            None,
            "NVML cannot be loaded: burn-in not started (a stress run without monitoring proves nothing)",
        );
        return Verdict::new(
            RunKind::BurnIn,
            &profile.id,
            started,
            vec![check],
            json!({}),
        );
    }
    let argv: Vec<String> = cfg
        .stress_argv
        .iter()
        .map(|a| a.replace("{duration_s}", &cfg.duration.as_secs().max(1).to_string()))
        .collect();
    tracing::info!(argv = ?argv, timeout_s = cfg.timeout.as_secs_f64(), "burn-in starting");
    let run = run_with_timeout(&argv, &cfg.env, cfg.timeout).await;
    let _ = stop_tx.send(());
    let sampled = join_sampler(sampler).await;
    let mut checks = Vec::new();
    let mut evidence = json!({ "argv": argv, "samples": sampled.ticks.len() });
    match &run {
        Ok(captured) => {
            checks.extend(judge_tool(captured));
            evidence["elapsed_s"] = json!(captured.elapsed.as_secs_f64());
            evidence["stdout_tail"] = json!(tail(&captured.stdout, OUTPUT_TAIL_CHARS));
            evidence["stderr_tail"] = json!(tail(&captured.stderr, OUTPUT_TAIL_CHARS));
        }
        Err(err) => checks.push(Check::fail(
            "burnin.tool",
            "node",
            err.to_string(),
            None,
            "stress tool could not be started",
        )),
    }
    checks.extend(judge_samples(&sampled, profile));
    evidence["gpus"] = summarize(&sampled);
    Verdict::new(RunKind::BurnIn, &profile.id, started, checks, evidence)
}

async fn join_sampler(handle: std::thread::JoinHandle<Sampled>) -> Sampled {
    tokio::task::spawn_blocking(move || handle.join().unwrap_or_default())
        .await
        .unwrap_or_default()
}

fn sample_loop(
    lib: &std::path::Path,
    interval: Duration,
    stop: &mpsc::Receiver<()>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) -> Sampled {
    let nvml = match GpuNvml::open(lib) {
        Ok(n) => n,
        Err(err) => {
            use std::error::Error as _;
            let source = err.source().map(ToString::to_string).unwrap_or_default();
            let _ = ready.send(Err(format!("{err}: {source}")));
            return Sampled::default();
        }
    };
    let gpu_count = match nvml.gpu_count() {
        Ok(n) => n,
        Err(err) => {
            let _ = ready.send(Err(format!("NVML cannot count GPUs: {err}")));
            return Sampled::default();
        }
    };
    let mut sampled = Sampled {
        gpu_count,
        baseline_ecc: (0..gpu_count)
            .map(|i| nvml.sample(i).ok().map(|s| s.ecc_uncorrected_volatile))
            .collect(),
        ..Sampled::default()
    };
    let watch = nvml.xid_watch();
    if let Err(err) = &watch {
        tracing::warn!(error = %err, "XID events cannot be watched during burn-in");
    }
    let _ = ready.send(Ok(()));
    let t0 = Instant::now();
    loop {
        let t_s = t0.elapsed().as_secs_f64();
        let gpus = (0..gpu_count)
            .map(|i| nvml.sample(i).map_err(|e| e.to_string()))
            .collect();
        sampled.ticks.push(SampleTick { t_s, gpus });
        if let Ok(w) = &watch {
            sampled.xids.extend(w.drain().into_iter().map(|e| (t_s, e)));
        }
        match stop.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    sampled
}

fn judge_tool(run: &CapturedRun) -> Vec<Check> {
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
            run.exit_code == Some(0),
            "burnin.exit_status",
            "node",
            run.exit_code.map_or(serde_json::Value::Null, |c| json!(c)),
            Some(json!(0)),
            "stress tool must exit 0",
        ),
    ];
    let bad_lines: Vec<&str> = run
        .stdout
        .lines()
        .chain(run.stderr.lines())
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

fn judge_samples(s: &Sampled, p: &SkuProfile) -> Vec<Check> {
    let mut checks = vec![Check::judged(
        s.gpu_count == p.gpus_per_node,
        "gpu.count",
        "node",
        s.gpu_count,
        Some(json!(p.gpus_per_node)),
        "GPU count at burn-in start must match the SKU",
    )];
    checks.push(Check::judged(
        s.ticks.len() >= 3,
        "burnin.samples",
        "node",
        s.ticks.len(),
        Some(json!({ "min": 3 })),
        "enough NVML samples to judge sustained behaviour",
    ));
    for gpu in 0..s.gpu_count as usize {
        checks.extend(judge_gpu_samples(s, gpu, p));
    }
    checks.extend(judge_xids(
        &s.xids.iter().map(|(_, e)| *e).collect::<Vec<_>>(),
    ));
    checks
}

fn judge_gpu_samples(s: &Sampled, gpu: usize, p: &SkuProfile) -> Vec<Check> {
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
    let Some(last) = ok.last() else { return checks };
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
    // Sustained clock: the median of the middle 80% of samples (ramp-up and wind-down excluded).
    let skip = ok.len() / 10;
    let mut clocks: Vec<u32> = ok[skip..ok.len() - skip]
        .iter()
        .map(|x| x.sm_clock_mhz)
        .collect();
    clocks.sort_unstable();
    let median = clocks.get(clocks.len() / 2).copied().unwrap_or(0);
    let floor = f64::from(p.sm_clock_expected_mhz) * p.sm_clock_min_ratio;
    checks.push(Check::judged(
        f64::from(median) >= floor,
        "burnin.sm_clock",
        g,
        median,
        Some(json!({ "min_mhz": floor.round(), "expected_mhz": p.sm_clock_expected_mhz })),
        "sustained SM clock under load must reach the SKU's expected clock",
    ));
    checks
}

fn summarize(s: &Sampled) -> serde_json::Value {
    let per_gpu: Vec<serde_json::Value> = (0..s.gpu_count as usize)
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
            })
        })
        .collect();
    json!({ "per_gpu": per_gpu, "xids": s.xids })
}
