//! Stress tools as profiles: each has a default command line and an output parser whose numbers feed the verdict.
//!
//! | tool | default argv | per-GPU figure | computation check |
//! |---|---|---|---|
//! | [`StressTool::GpuBurn`] (wilicc/gpu-burn) | `gpu_burn -tc {duration_s}` | Gflop/s, median of its progress readings | compares every result with a reference; `FAULTY` / `errors:` |
//! | [`StressTool::GpuFryer`] (huggingface/gpu-fryer) | `gpu-fryer {duration_s}` | Gflop/s average it prints per GPU | none (it checks throughput and throttling only) |
//! | [`StressTool::DcgmTargetedStress`] | `dcgmi diag -r targeted_stress -j` | `relative stress level`, or `gigaflops` where DCGM prints them | DCGM's per-GPU status and warnings |
//!
//! DCGM's targeted stress is chosen over `dcgmproftester` because `dcgmi diag -j` gives per-GPU results as JSON with
//! DCGM's own pass/fail and error codes; `dcgmproftester` only prints activity metrics and no verdict.
//!
//! [`judge_stress`] turns a [`StressReport`] into checks: each GPU's figure against the node's best
//! (`stress.throughput`, gpu-fryer's rule), computation errors as `stress.sdc` failures whose reason starts with
//! `sdc:` (silent data corruption), and the tool's own complaints as `stress.tool`. [`judge_stress_output`] does the
//! whole path from argv and stdout, and fails (never passes) output it cannot read.

mod dcgm;
mod gpu_burn;
mod gpu_fryer;
mod judge;

use serde::{Deserialize, Serialize};

pub use judge::{judge_stress, judge_stress_output};

/// A stress tool kiln knows how to run and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StressTool {
    /// `gpu_burn` (github.com/wilicc/gpu-burn): matrix multiplies with result comparison.
    GpuBurn,
    /// `gpu-fryer` (github.com/huggingface/gpu-fryer): matmul throughput and throttling per GPU.
    GpuFryer,
    /// DCGM's targeted stress plugin through `dcgmi diag -r targeted_stress -j`.
    DcgmTargetedStress,
}

/// Placeholder in [`StressTool::argv_template`] replaced by the run's duration in seconds.
pub const DURATION_PLACEHOLDER: &str = "{duration_s}";

impl StressTool {
    /// Every tool, in the order [`detect`] tries them.
    pub const ALL: [StressTool; 3] = [
        StressTool::GpuBurn,
        StressTool::GpuFryer,
        StressTool::DcgmTargetedStress,
    ];

    /// The default command line, with [`DURATION_PLACEHOLDER`] where the duration goes. DCGM's targeted stress
    /// runs for the duration its plugin is configured with (30 s by default) and takes no duration argument here.
    pub fn argv_template(self) -> &'static [&'static str] {
        match self {
            StressTool::GpuBurn => &["gpu_burn", "-tc", DURATION_PLACEHOLDER],
            StressTool::GpuFryer => &["gpu-fryer", DURATION_PLACEHOLDER],
            StressTool::DcgmTargetedStress => &["dcgmi", "diag", "-r", "targeted_stress", "-j"],
        }
    }

    /// The default command line for a run of `duration_s` seconds.
    pub fn argv(self, duration_s: u64) -> Vec<String> {
        self.argv_template()
            .iter()
            .map(|a| a.replace(DURATION_PLACEHOLDER, &duration_s.to_string()))
            .collect()
    }

    /// Unit of the per-GPU figure this tool reports (DCGM's targeted stress may report either).
    pub fn unit(self) -> &'static str {
        match self {
            StressTool::GpuBurn | StressTool::GpuFryer => GFLOPS,
            StressTool::DcgmTargetedStress => STRESS_LEVEL,
        }
    }

    /// Whether the tool checks its computations (so a clean run says "no silent data corruption").
    pub fn checks_results(self) -> bool {
        !matches!(self, StressTool::GpuFryer)
    }

    /// Program name as an operator would say it.
    pub fn program(self) -> &'static str {
        self.argv_template()[0]
    }
}

/// Unit string for GFLOP per second.
pub const GFLOPS: &str = "Gflop/s";
/// Unit string for DCGM's targeted-stress "relative stress level".
pub const STRESS_LEVEL: &str = "relative stress level";

/// One GPU's result from a stress tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuThroughput {
    /// GPU index as the tool numbers it (CUDA / NVML order).
    pub gpu: u32,
    /// The GPU's throughput; `None` when the tool gave no per-GPU figure (a single node total, or DCGM without an
    /// info line): the judge notes it rather than failing it.
    pub value: Option<f64>,
    /// Unit of `value` ([`GFLOPS`] or [`STRESS_LEVEL`]).
    pub unit: String,
    /// Computation errors the tool counted on this GPU (gpu-burn's `errors:`, summed over its report intervals).
    pub errors: u64,
    /// The tool's verdict that this GPU computed wrong results (gpu-burn `FAULTY`): silent data corruption.
    pub faulty: bool,
    /// Other problems the tool reported for this GPU (process died, throttled, low flops, DCGM failure text).
    pub problems: Vec<String>,
}

/// Everything read from one stress-tool run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StressReport {
    /// Which tool produced it.
    pub tool: StressTool,
    /// One entry per GPU, by index.
    pub per_gpu: Vec<GpuThroughput>,
    /// Sum of `per_gpu[].errors`.
    pub errors_total: u64,
    /// The node's total when the tool printed only one figure for all GPUs.
    pub node_total: Option<f64>,
    /// False when the output stops before the tool's final per-GPU verdict (gpu-burn's `Tested N GPUs` list).
    pub complete: bool,
    /// What the parser tolerated or could not place (unreadable lines, a missing final list).
    pub notes: Vec<String>,
}

/// Why a stress tool's output could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StressParseError {
    /// No per-GPU result at all.
    #[error("{tool:?} output has no per-GPU result in {lines} lines")]
    NoResults {
        /// The tool whose output was expected.
        tool: StressTool,
        /// How many lines were examined.
        lines: usize,
    },
    /// DCGM's output is not the JSON `dcgmi diag -j` writes.
    #[error("dcgmi diag output is not its JSON document: {detail}")]
    BadDcgmJson {
        /// What was wrong with it.
        detail: String,
    },
}

/// Tells the tool from a command line by program name: the first argument whose base name is a known tool
/// (`/opt/gpu-burn/gpu_burn`, `gpu-burn`, `gpu-fryer`, `dcgmi diag -r targeted_stress`), so wrappers such as
/// `timeout 600 gpu_burn …` or `numactl … gpu-fryer …` are seen through.
pub fn detect(argv: &[String]) -> Option<StressTool> {
    for (i, arg) in argv.iter().enumerate() {
        let first = arg.split_whitespace().next().unwrap_or_default();
        let base = first.rsplit('/').next().unwrap_or_default();
        match base {
            "gpu_burn" | "gpu-burn" | "gpu_burn-drv" => return Some(StressTool::GpuBurn),
            "gpu-fryer" | "gpu_fryer" => return Some(StressTool::GpuFryer),
            "dcgmi" => {
                let rest = argv[i + 1..].join(" ");
                let rest = if rest.is_empty() { arg.clone() } else { rest };
                if rest.contains("diag")
                    && (rest.contains("targeted_stress") || rest.contains("diagnostic"))
                {
                    return Some(StressTool::DcgmTargetedStress);
                }
            }
            _ => {}
        }
    }
    None
}

/// Tells the tool from its output when the argv does not (a wrapper script, the simulator's stand-in).
pub fn detect_output(stdout: &str) -> Option<StressTool> {
    if stdout.contains("proc'd:") || (stdout.contains("Tested ") && stdout.contains(": OK")) {
        Some(StressTool::GpuBurn)
    } else if stdout.contains("Gflops/s") || stdout.contains("\"flops_avg\"") {
        Some(StressTool::GpuFryer)
    } else if stdout.trim_start().starts_with('{') && stdout.contains("results") {
        Some(StressTool::DcgmTargetedStress)
    } else {
        None
    }
}

/// Parses `stdout` as the output of `tool`.
pub fn parse(tool: StressTool, stdout: &str) -> Result<StressReport, StressParseError> {
    match tool {
        StressTool::GpuBurn => gpu_burn::parse(stdout),
        StressTool::GpuFryer => gpu_fryer::parse(stdout),
        StressTool::DcgmTargetedStress => dcgm::parse(stdout),
    }
}

impl StressReport {
    fn new(tool: StressTool) -> Self {
        Self {
            tool,
            per_gpu: Vec::new(),
            errors_total: 0,
            node_total: None,
            complete: true,
            notes: Vec::new(),
        }
    }

    /// The entry for `gpu`, created (with no figure yet) when missing; keeps `per_gpu` sorted by index.
    fn gpu_mut(&mut self, gpu: u32) -> &mut GpuThroughput {
        let at = match self.per_gpu.binary_search_by_key(&gpu, |g| g.gpu) {
            Ok(i) => i,
            Err(i) => {
                self.per_gpu.insert(
                    i,
                    GpuThroughput {
                        gpu,
                        value: None,
                        unit: self.tool.unit().to_string(),
                        errors: 0,
                        faulty: false,
                        problems: Vec::new(),
                    },
                );
                i
            }
        };
        &mut self.per_gpu[at]
    }

    fn finish(mut self) -> Self {
        self.errors_total = self.per_gpu.iter().map(|g| g.errors).sum();
        self
    }
}
