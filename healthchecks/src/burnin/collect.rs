//! Collection, on the node: run the stress tool under its hard timeout while NVML is sampled on its own
//! thread, read the kernel log written meanwhile, and put it all in a [`BurnInEvidence`] document. Nothing
//! here judges; a node that cannot collect says why in the document.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::doc::{
    BurnInEvidence, KERNEL_LOG_MAX_LINES, KernelLogEvidence, MAX_TICKS, NvmlEvidence,
    OUTPUT_TAIL_CHARS, SampleTick, StressEvidence, TimedXid, bound_lines,
};
use crate::nvml::GpuNvml;
use crate::process::{run_with_timeout, tail};
use crate::verdict::now_unix_s;

/// Where the kernel log comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelLogSource {
    /// Not read (recorded as such; the judge does not require it).
    None,
    /// `dmesg` before and after the run; the lines added meanwhile are kept.
    Dmesg,
    /// A text file (e.g. `/var/log/kern.log`); the bytes appended during the run are kept.
    File(PathBuf),
}

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
    /// The kernel log to keep.
    pub kernel_log: KernelLogSource,
    /// Node-clock seconds per wall-clock second: 1 on real nodes. The hall simulator runs its nodes' time
    /// compressed (a 300 s burn-in in 3 s of wall time is 100) and records times on that clock; `timeout` and
    /// `duration` are node-clock times, `sample_interval` is wall-clock.
    pub clock_rate: f64,
    /// Who collects (`kiln-agent 0.1.0`), written into the document.
    pub collector: String,
}

impl BurnInConfig {
    /// A config with a 1 s sampling period, a timeout of duration + 60 s and no kernel log.
    pub fn new(stress_argv: Vec<String>, duration: Duration, nvml_lib: PathBuf) -> Self {
        Self {
            stress_argv,
            duration,
            timeout: duration + Duration::from_secs(60),
            sample_interval: Duration::from_secs(1),
            nvml_lib,
            env: Vec::new(),
            kernel_log: KernelLogSource::None,
            clock_rate: 1.0,
            collector: format!("kiln-health {}", env!("CARGO_PKG_VERSION")),
        }
    }

    fn rate(&self) -> f64 {
        if self.clock_rate.is_finite() && self.clock_rate > 0.0 {
            self.clock_rate
        } else {
            1.0
        }
    }
}

/// Collects burn-in evidence for SKU `sku`. Never panics; NVML missing is recorded and the tool is not run
/// (a stress run without monitoring proves nothing).
pub async fn collect_burn_in(cfg: &BurnInConfig, sku: &str) -> BurnInEvidence {
    let rate = cfg.rate();
    let mut doc = BurnInEvidence::new(sku, cfg.duration.as_secs(), &cfg.collector);
    doc.started_at_unix_s = now_unix_s();
    let wall_start = Instant::now();
    let log_mark = kernel_log_mark(&cfg.kernel_log).await;
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let lib = cfg.nvml_lib.clone();
    let interval = cfg.sample_interval.max(Duration::from_millis(1));
    // NVML calls block; they run on their own thread, never on the async runtime.
    let sampler = std::thread::spawn(move || sample_loop(&lib, interval, rate, &stop_rx, ready_tx));
    let ready = ready_rx
        .await
        .unwrap_or_else(|_| Err("NVML sampler ended before starting".to_string()));
    if let Err(reason) = ready {
        drop(stop_tx);
        doc.nvml = join_sampler(sampler).await;
        doc.nvml.error = Some(reason);
        doc.kernel_log = kernel_log_since(&cfg.kernel_log, log_mark).await;
        doc.finished_at_unix_s = finished_at(doc.started_at_unix_s, wall_start, rate);
        return doc;
    }
    let argv: Vec<String> = cfg
        .stress_argv
        .iter()
        .map(|a| a.replace("{duration_s}", &cfg.duration.as_secs().max(1).to_string()))
        .collect();
    let wall_timeout = cfg.timeout.div_f64(rate);
    tracing::info!(argv = ?argv, timeout_s = cfg.timeout.as_secs_f64(), "burn-in starting");
    let run = run_with_timeout(&argv, &cfg.env, wall_timeout).await;
    let _ = stop_tx.send(());
    doc.nvml = join_sampler(sampler).await;
    doc.nvml.sample_interval_s = micros(interval.as_secs_f64() * rate);
    let mut stress = StressEvidence {
        argv,
        timeout_s: micros(cfg.timeout.as_secs_f64()),
        ..StressEvidence::default()
    };
    match run {
        Ok(captured) => {
            stress.exit_code = captured.exit_code;
            stress.timed_out = captured.timed_out;
            stress.elapsed_s = micros(captured.elapsed.as_secs_f64() * rate);
            stress.stdout_tail = tail(&captured.stdout, OUTPUT_TAIL_CHARS);
            stress.stderr_tail = tail(&captured.stderr, OUTPUT_TAIL_CHARS);
        }
        Err(err) => {
            use std::error::Error as _;
            let source = err.source().map(ToString::to_string).unwrap_or_default();
            stress.spawn_error = Some(format!("{err}: {source}"));
        }
    }
    doc.stress = Some(stress);
    doc.kernel_log = kernel_log_since(&cfg.kernel_log, log_mark).await;
    doc.finished_at_unix_s = finished_at(doc.started_at_unix_s, wall_start, rate);
    doc
}

/// Seconds rounded to whole microseconds: the document's times then survive a trip through JSON text exactly
/// (serde_json's default float parsing is exact only for short decimals), so its digest does too.
fn micros(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e6
}

fn finished_at(started: u64, wall_start: Instant, rate: f64) -> u64 {
    started + (wall_start.elapsed().as_secs_f64() * rate).ceil() as u64
}

async fn join_sampler(handle: std::thread::JoinHandle<NvmlEvidence>) -> NvmlEvidence {
    tokio::task::spawn_blocking(move || handle.join().unwrap_or_default())
        .await
        .unwrap_or_default()
}

fn sample_loop(
    lib: &Path,
    interval: Duration,
    rate: f64,
    stop: &mpsc::Receiver<()>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) -> NvmlEvidence {
    let nvml = match GpuNvml::open(lib) {
        Ok(n) => n,
        Err(err) => {
            use std::error::Error as _;
            let source = err.source().map(ToString::to_string).unwrap_or_default();
            let _ = ready.send(Err(format!("{err}: {source}")));
            return NvmlEvidence::default();
        }
    };
    let gpu_count = match nvml.gpu_count() {
        Ok(n) => n,
        Err(err) => {
            let _ = ready.send(Err(format!("NVML cannot count GPUs: {err}")));
            return NvmlEvidence::default();
        }
    };
    let mut sampled = NvmlEvidence {
        driver_version: nvml.driver_version().ok(),
        gpu_count,
        baseline_ecc: (0..gpu_count)
            .map(|i| nvml.sample(i).ok().map(|s| s.ecc_uncorrected_volatile))
            .collect(),
        ..NvmlEvidence::default()
    };
    let watch = nvml.xid_watch();
    if let Err(err) = &watch {
        tracing::warn!(error = %err, "XID events cannot be watched during burn-in");
        sampled.xid_watch_error = Some(err.to_string());
    }
    let t0 = Instant::now();
    let sample_all = |t_s: f64| SampleTick {
        t_s,
        gpus: (0..gpu_count)
            .map(|i| nvml.sample(i).map_err(|e| e.to_string()))
            .collect(),
    };
    // The first tick is taken before the stress tool starts: an idle baseline, whatever the scheduling.
    sampled.ticks.push(sample_all(0.0));
    let _ = ready.send(Ok(()));
    loop {
        let stopped = !matches!(
            stop.recv_timeout(interval),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        let t_s = micros(t0.elapsed().as_secs_f64() * rate);
        // After the stop only the events are drained: the tool has ended, an idle tick would not be under load.
        if !stopped && sampled.ticks.len() < MAX_TICKS {
            sampled.ticks.push(sample_all(t_s));
        }
        if let Ok(w) = &watch {
            let t_ms = (t_s * 1000.0) as u64;
            sampled.xids.extend(
                w.drain()
                    .into_iter()
                    .take(MAX_TICKS.saturating_sub(sampled.xids.len()))
                    .map(|e| TimedXid {
                        t_ms,
                        gpu: e.gpu,
                        xid: e.xid,
                    }),
            );
        }
        if stopped {
            break;
        }
    }
    sampled
}

/// Where the kernel log stood at the start: a byte offset (file) or a line count (`dmesg`).
#[derive(Debug, Clone, Copy)]
enum LogMark {
    None,
    At(u64),
    Failed,
}

const DMESG_TIMEOUT: Duration = Duration::from_secs(10);

async fn dmesg_lines() -> Result<Vec<String>, String> {
    let run = run_with_timeout(&["dmesg".to_string()], &[], DMESG_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if run.exit_code != Some(0) {
        return Err(format!(
            "dmesg exited {:?}: {}",
            run.exit_code,
            run.stderr.trim()
        ));
    }
    Ok(run.stdout.lines().map(str::to_string).collect())
}

async fn kernel_log_mark(source: &KernelLogSource) -> LogMark {
    match source {
        KernelLogSource::None => LogMark::None,
        KernelLogSource::Dmesg => match dmesg_lines().await {
            Ok(lines) => LogMark::At(lines.len() as u64),
            Err(_) => LogMark::Failed,
        },
        KernelLogSource::File(path) => match std::fs::metadata(path) {
            Ok(meta) => LogMark::At(meta.len()),
            // A file that appears during the run is read from its start.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => LogMark::At(0),
            Err(_) => LogMark::Failed,
        },
    }
}

async fn kernel_log_since(source: &KernelLogSource, mark: LogMark) -> KernelLogEvidence {
    let mut out = KernelLogEvidence {
        source: match source {
            KernelLogSource::None => "none".to_string(),
            KernelLogSource::Dmesg => "dmesg".to_string(),
            KernelLogSource::File(path) => path.display().to_string(),
        },
        ..KernelLogEvidence::default()
    };
    let lines = match (source, mark) {
        (KernelLogSource::None, _) | (_, LogMark::None) => return out,
        (KernelLogSource::Dmesg, mark) => dmesg_lines().await.map(|all| {
            let skip = match mark {
                LogMark::At(n) if (n as usize) <= all.len() => n as usize,
                _ => 0,
            };
            all.into_iter().skip(skip).collect::<Vec<_>>()
        }),
        (KernelLogSource::File(path), mark) => read_appended(path, mark),
    };
    match lines {
        Ok(lines) => {
            let (kept, dropped) = bound_lines(lines, KERNEL_LOG_MAX_LINES);
            out.lines = kept;
            out.dropped_lines = dropped;
        }
        Err(err) => out.error = Some(err),
    }
    out
}

/// Most bytes read of a kernel log file's new part (its end is kept).
const KERNEL_LOG_MAX_BYTES: u64 = 4 * 1024 * 1024;

fn read_appended(path: &Path, mark: LogMark) -> Result<Vec<String>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?
        .len();
    let from = match mark {
        // Shorter than at the start: rotated or truncated, so all of it is new.
        LogMark::At(at) if at <= len => at,
        _ => 0,
    };
    let from = from.max(len.saturating_sub(KERNEL_LOG_MAX_BYTES));
    file.seek(SeekFrom::Start(from))
        .map_err(|e| format!("cannot seek {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(KERNEL_LOG_MAX_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::micros;

    #[test]
    fn microsecond_times_survive_json_text_exactly() {
        // Times as the sampler makes them: elapsed wall seconds times a clock rate, 17 significant digits.
        for k in 1..20_000u32 {
            let t = micros(f64::from(k) * 0.000_731_234_567_89 * 37.3);
            let text = serde_json::to_string(&t).expect("json");
            let back: f64 = serde_json::from_str(&text).expect("parse");
            assert_eq!(back.to_bits(), t.to_bits(), "{text}");
        }
    }
}
