//! Evidence documents built from sample types without NVML, for simulators at scale and for tests' fake
//! nodes: what the collector would write for a node of a SKU at the profile's healthy load values, with an
//! optional XID or throttling GPU, and faults that show only under load ([`LoadFault`]). The provisioner judges these like any other document; nothing here is a
//! verdict.

use super::doc::{BurnInEvidence, NvmlEvidence, SampleTick, StressEvidence, TimedXid};
use crate::nvml::{GpuSample, NvlinkErrorCounts};
use crate::sku::SkuProfile;
use crate::verdict::now_unix_s;

/// The kernel log line of the driver for XID `xid` (`NVRM: Xid (PCI:…): 79, …`).
pub fn xid_log_line(xid: u64) -> String {
    format!(
        "NVRM: Xid (PCI:0000:3a:00): {xid}, pid=4242, name=gpu_burn, GPU has fallen off the bus."
    )
}

/// A fault that shows only under load, planted by [`SyntheticRun::evidence_with`] (the synthetic twins of
/// fake-nvml's `pcie_downtrain`, `nvlink_errors` and `low_power` faults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadFault {
    /// The GPU's PCIe link stays at this generation and width under load (idle it downshifts as usual).
    PcieDowntrain {
        /// GPU index.
        gpu: u32,
        /// Generation under load.
        generation: u32,
        /// Width under load, lanes.
        width: u32,
    },
    /// The GPU's NVLink error counters grow by these totals over the run, evenly while under load.
    NvlinkErrors {
        /// GPU index.
        gpu: u32,
        /// CRC errors (flit + data) added over the run.
        crc: u64,
        /// Replays added over the run.
        replay: u64,
        /// Recoveries added over the run.
        recovery: u64,
    },
    /// The GPU draws only this much power under load.
    LowPower {
        /// GPU index.
        gpu: u32,
        /// Power under load, W.
        power_w: f64,
    },
}

impl LoadFault {
    /// The GPU it is planted on.
    pub fn gpu(&self) -> u32 {
        match self {
            LoadFault::PcieDowntrain { gpu, .. }
            | LoadFault::NvlinkErrors { gpu, .. }
            | LoadFault::LowPower { gpu, .. } => *gpu,
        }
    }

    /// Applies the fault to a sample taken `progress` (0..=1) through the run.
    fn apply(&self, sample: &mut GpuSample, loaded: bool, progress: f64) {
        match *self {
            LoadFault::PcieDowntrain {
                generation, width, ..
            } if loaded => {
                sample.pcie_gen_current = Some(generation);
                sample.pcie_width_current = Some(width);
            }
            LoadFault::NvlinkErrors {
                crc,
                replay,
                recovery,
                ..
            } => {
                let grown = |total: u64| (total as f64 * progress).round() as u64;
                sample.nvlink_errors = Some(NvlinkErrorCounts {
                    crc: grown(crc),
                    replay: grown(replay),
                    recovery: grown(recovery),
                });
            }
            LoadFault::LowPower { power_w, .. } if loaded => sample.power_w = power_w,
            _ => {}
        }
    }
}

/// A burn-in to describe.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticRun {
    /// GPUs the node has.
    pub gpus: u32,
    /// Duration asked and run, seconds.
    pub duration_s: u64,
    /// SKU the node was asked to burn in as.
    pub sku: String,
    /// An XID `(gpu, xid)` at half-time, in NVML and in the kernel log.
    pub xid: Option<(u32, u64)>,
    /// A GPU that thermal-throttles under load.
    pub throttled_gpu: Option<u32>,
    /// The collector named in the document.
    pub collector: String,
    /// Gflop/s each GPU reaches in the stress tool's output ([`HEALTHY_GFLOPS`] for a healthy node).
    pub gflops: f64,
}

/// Gflop/s per GPU of a healthy synthetic node (an H100 SXM in gpu_burn's tensor-core mode is in this range).
pub const HEALTHY_GFLOPS: f64 = 61_000.0;

/// What gpu_burn prints for `gpus` GPUs each at `gflops` over `duration_s`: two multi-GPU progress lines and the
/// final per-GPU verdicts.
pub fn gpu_burn_output(gpus: u32, duration_s: u64, gflops: f64) -> String {
    let progress = |pct: f64, done: u64| {
        let each = |f: &dyn Fn(u32) -> String| (0..gpus).map(f).collect::<Vec<_>>().join(" - ");
        format!(
            "{pct:.1}%  proc'd: {}   errors: {}   temps: {}\n",
            each(&|_| format!("{done} ({gflops:.0} Gflop/s)")),
            each(&|_| "0".to_string()),
            each(&|_| "68 C".to_string()),
        )
    };
    let mut out = format!("Burning for {duration_s} seconds.\n");
    out.push_str(&progress(50.0, 6400));
    out.push_str(&progress(100.0, 12800));
    out.push_str(&format!("Tested {gpus} GPUs:\n"));
    for g in 0..gpus {
        out.push_str(&format!("\tGPU {g}: OK\n"));
    }
    out
}

impl SyntheticRun {
    /// A healthy run of a `profile` node for `duration_s`.
    pub fn healthy(profile: &SkuProfile, duration_s: u64) -> Self {
        Self {
            gpus: profile.gpus_per_node,
            duration_s,
            sku: profile.id.clone(),
            xid: None,
            throttled_gpu: None,
            collector: "synthetic (no NVML)".to_string(),
            gflops: HEALTHY_GFLOPS,
        }
    }

    fn sample(&self, p: &SkuProfile, gpu: u32, loaded: bool) -> GpuSample {
        let hot = loaded && self.throttled_gpu == Some(gpu);
        GpuSample {
            index: gpu,
            temp_c: if hot {
                p.max_gpu_temp_c + 6
            } else if loaded {
                p.max_gpu_temp_c.saturating_sub(19)
            } else {
                33
            },
            memory_temp_c: Some(if loaded {
                p.max_memory_temp_c.saturating_sub(21)
            } else {
                36
            }),
            power_w: if loaded {
                f64::from(p.power_limit_w * 9 / 10)
            } else {
                72.0
            },
            sm_clock_mhz: if hot {
                p.sm_clock_expected_mhz * 11 / 20
            } else if loaded {
                p.sm_clock_expected_mhz
            } else {
                345
            },
            // HW thermal slowdown while hot, GPU idle before the load.
            throttle_reasons: if hot {
                0x40
            } else if loaded {
                0
            } else {
                0x1
            },
            ecc_uncorrected_volatile: 0,
            gpu_util_pct: Some(if loaded { 100 } else { 0 }),
            // Real GPUs downshift the link at idle.
            pcie_gen_current: Some(if loaded { p.pcie_gen } else { 1 }),
            pcie_width_current: Some(p.pcie_width),
            nvlink_errors: (p.nvlink_links > 0).then_some(NvlinkErrorCounts::default()),
        }
    }

    /// The document, with the profile's healthy load values (the first tick idle).
    pub fn evidence(&self, profile: &SkuProfile) -> BurnInEvidence {
        self.evidence_with(profile, &[])
    }

    /// [`Self::evidence`] with faults that show only under load planted on their GPUs (a GPU outside the run's
    /// GPUs is ignored).
    pub fn evidence_with(&self, profile: &SkuProfile, faults: &[LoadFault]) -> BurnInEvidence {
        const TICKS: u64 = 24;
        let d = self.duration_s;
        let ticks = (0..=TICKS)
            .map(|i| SampleTick {
                // Whole milliseconds, as exact through JSON text as the collector's microseconds.
                t_s: (d as f64 * i as f64 * 1000.0 / TICKS as f64).round() / 1000.0,
                gpus: (0..self.gpus)
                    .map(|g| {
                        let mut sample = self.sample(profile, g, i > 0);
                        for f in faults.iter().filter(|f| f.gpu() == g) {
                            f.apply(&mut sample, i > 0, i as f64 / TICKS as f64);
                        }
                        Ok(sample)
                    })
                    .collect(),
            })
            .collect();
        let started = now_unix_s();
        let mut doc = BurnInEvidence::new(&self.sku, d, &self.collector);
        doc.started_at_unix_s = started;
        doc.finished_at_unix_s = started + d;
        doc.nvml = NvmlEvidence {
            gpu_count: self.gpus,
            baseline_ecc: vec![Some(0); self.gpus as usize],
            ticks,
            xids: self
                .xid
                .map(|(gpu, xid)| TimedXid {
                    t_ms: d * 500,
                    gpu,
                    xid,
                })
                .into_iter()
                .collect(),
            sample_interval_s: (d as f64 * 1000.0 / TICKS as f64).round() / 1000.0,
            ..NvmlEvidence::default()
        };
        let stdout = gpu_burn_output(self.gpus, d, self.gflops);
        doc.stress = Some(StressEvidence {
            argv: vec!["gpu_burn".into(), "-tc".into(), d.to_string()],
            exit_code: Some(0),
            timeout_s: d as f64 + 60.0,
            elapsed_s: d as f64,
            stdout_tail: stdout,
            ..StressEvidence::default()
        });
        doc.kernel_log.source = "synthetic".into();
        if let Some((_, xid)) = self.xid {
            doc.kernel_log.lines.push(xid_log_line(xid));
        }
        doc
    }
}
