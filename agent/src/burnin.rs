//! `kiln-agent burn-in`: collects burn-in evidence on the node and prints it as one JSON document. The agent
//! does not judge: the provisioner judges the evidence with the node's SKU profile.
//!
//! ```text
//! kiln-agent burn-in [--json] --duration-s N [--sku S] [--nvml-lib PATH] [--kernel-log FILE|dmesg|none]
//!                    [--stress CMD ARG...]
//! ```
//! Defaults for a real node: the SKU detected from GPU 0's NVML name, NVML from `--nvml-lib`, else
//! `KILN_NVML_LIB`, else `libnvidia-ml.so.1`; the kernel log through `dmesg`; the stress tool
//! `gpu_burn {duration_s}` (`{duration_s}` expands to the duration in seconds). `--stress` takes every
//! argument after it.

use std::path::PathBuf;
use std::time::Duration;

use kiln_health::burnin::{BurnInConfig, BurnInEvidence, KernelLogSource, collect_burn_in};
use kiln_health::nvml::{detect_sku, resolve_lib_path};

/// Usage of the subcommand.
pub const USAGE: &str = "usage: kiln-agent burn-in [--json] --duration-s N [--sku S] [--nvml-lib PATH] \
                         [--kernel-log FILE|dmesg|none] [--stress CMD ARG...]";

/// The stress tool run when `--stress` is not given.
pub const DEFAULT_STRESS: &[&str] = &["gpu_burn", "{duration_s}"];

/// Most NVML ticks a run aims for: long runs sample less often, so the document stays a few MiB.
const TARGET_TICKS: u32 = 3000;

/// What `kiln-agent burn-in` was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnInArgs {
    /// Print compact JSON (the provisioner's form); otherwise pretty JSON.
    pub json: bool,
    /// How long to stress.
    pub duration: Duration,
    /// SKU profile id; `None`: detected from NVML.
    pub sku: Option<String>,
    /// NVML library flag.
    pub nvml_lib: Option<PathBuf>,
    /// Where the kernel log comes from.
    pub kernel_log: KernelLogSource,
    /// The stress command.
    pub stress: Vec<String>,
}

/// Why the arguments were refused.
#[derive(Debug, thiserror::Error)]
pub enum BurnInArgsError {
    /// An option is unknown, lacks its value, or a value does not parse.
    #[error("{0}\n{USAGE}")]
    Usage(String),
}

/// Parses the arguments after `burn-in`.
pub fn parse_args(args: &[String]) -> Result<BurnInArgs, BurnInArgsError> {
    let usage = |m: String| BurnInArgsError::Usage(m);
    let mut json = false;
    let mut duration = None;
    let mut sku = None;
    let mut nvml_lib = None;
    let mut kernel_log = KernelLogSource::Dmesg;
    let mut stress: Vec<String> = DEFAULT_STRESS.iter().map(|s| s.to_string()).collect();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| usage(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--json" => json = true,
            "--duration-s" => {
                let v = value("--duration-s")?;
                let secs: u64 = v.parse().map_err(|_| {
                    usage(format!(
                        "--duration-s {v:?} is not a whole number of seconds"
                    ))
                })?;
                if secs == 0 {
                    return Err(usage("--duration-s must be at least 1".into()));
                }
                duration = Some(Duration::from_secs(secs));
            }
            "--sku" => sku = Some(value("--sku")?),
            "--nvml-lib" => nvml_lib = Some(PathBuf::from(value("--nvml-lib")?)),
            "--kernel-log" => {
                kernel_log = match value("--kernel-log")?.as_str() {
                    "none" => KernelLogSource::None,
                    "dmesg" => KernelLogSource::Dmesg,
                    path => KernelLogSource::File(PathBuf::from(path)),
                }
            }
            "--stress" => {
                stress = it.by_ref().cloned().collect();
                if stress.is_empty() {
                    return Err(usage("--stress needs a command".into()));
                }
            }
            other => return Err(usage(format!("unknown argument {other:?}"))),
        }
    }
    let duration = duration.ok_or_else(|| usage("--duration-s is required".into()))?;
    Ok(BurnInArgs {
        json,
        duration,
        sku,
        nvml_lib,
        kernel_log,
        stress,
    })
}

/// The collection config for `args`: NVML sampled every second, less often on long runs.
pub fn config(args: &BurnInArgs) -> BurnInConfig {
    let mut cfg = BurnInConfig::new(
        args.stress.clone(),
        args.duration,
        resolve_lib_path(args.nvml_lib.as_deref()),
    );
    cfg.sample_interval = (args.duration / TARGET_TICKS).max(Duration::from_secs(1));
    cfg.kernel_log = args.kernel_log.clone();
    cfg.collector = format!("kiln-agent {}", env!("CARGO_PKG_VERSION"));
    cfg
}

/// Collects the evidence `args` asks for. Fails only when the SKU is neither given nor detectable; NVML
/// missing, a tool that fails or hangs are recorded in the document for the provisioner to judge.
pub async fn collect(args: &BurnInArgs) -> Result<BurnInEvidence, String> {
    let cfg = config(args);
    let sku = match &args.sku {
        Some(sku) => sku.clone(),
        None => {
            let catalog = kiln_health::SkuCatalog::builtin().map_err(|e| e.to_string())?;
            let lib = cfg.nvml_lib.clone();
            tokio::task::spawn_blocking(move || detect_sku(&lib, &catalog))
                .await
                .map_err(|e| format!("SKU detection stopped: {e}"))??
        }
    };
    Ok(collect_burn_in(&cfg, &sku).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_parse_and_stress_takes_the_rest() {
        let a = parse_args(&args(
            "--json --duration-s 300 --sku h100-sxm-80gb --nvml-lib /x.so --kernel-log /var/log/kern.log --stress gpu_burn -d {duration_s}",
        ))
        .expect("parses");
        assert!(a.json);
        assert_eq!(a.duration, Duration::from_secs(300));
        assert_eq!(a.sku.as_deref(), Some("h100-sxm-80gb"));
        assert_eq!(
            a.kernel_log,
            KernelLogSource::File("/var/log/kern.log".into())
        );
        assert_eq!(a.stress, args("gpu_burn -d {duration_s}"));
        let d = parse_args(&args("--duration-s 14400")).expect("defaults");
        assert_eq!(d.stress, args("gpu_burn {duration_s}"));
        assert_eq!(d.kernel_log, KernelLogSource::Dmesg);
        assert_eq!(config(&d).sample_interval, Duration::from_millis(4800));
        assert_eq!(config(&a).sample_interval, Duration::from_secs(1));
    }

    #[test]
    fn bad_arguments_are_refused_with_the_reason() {
        for (line, says) in [
            ("--json", "--duration-s is required"),
            ("--duration-s soon", "not a whole number"),
            ("--duration-s 0", "at least 1"),
            ("--duration-s 5 --sku", "--sku needs a value"),
            ("--duration-s 5 --stress", "--stress needs a command"),
            ("--duration-s 5 --verdict pass", "unknown argument"),
        ] {
            let err = parse_args(&args(line)).expect_err(line).to_string();
            assert!(err.contains(says), "{line}: {err}");
        }
    }
}
