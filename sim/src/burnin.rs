//! Burn-in on virtual nodes, collected the way a real node collects it: kiln-health's collector (the one
//! `kiln-agent burn-in` runs) loads the fake NVML library (healthchecks/fake-nvml) with a scenario made from
//! the node's SKU and planted fault, runs a short stress stand-in (`sh` putting the GPUs "under load" for the
//! compressed duration, writing the driver's XID line to a kernel log file when the fault says so) and reads
//! that log. Nothing here judges: the provisioner judges the document.
//!
//! Each fake-nvml copy holds one scenario at a time (its state is global to the loaded library), so a hall
//! keeps a small pool of copies, each beside its own scenario file, and a burn-in holds one for its run. Scale
//! mode (no SSH servers, thousands of nodes) builds the same document type from the same sample types without
//! loading the library ([`synthetic_evidence`]); the provisioner still judges it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kiln_health::SkuProfile;
use kiln_health::burnin::synthetic::{LoadFault, SyntheticRun};
use kiln_health::burnin::{BurnInConfig, BurnInEvidence, KernelLogSource, collect_burn_in};

use crate::faults::{FaultKind, PLANTED_XID, SLOW_GPU_FACTOR};
use crate::node::VirtualNode;

/// Environment variable naming the fake NVML library (`libnvidia_ml.so` built from healthchecks/fake-nvml).
pub const FAKE_NVML_ENV: &str = "KILN_SIM_FAKE_NVML";

/// The GPU a planted XID or throttle lands on.
const FAULTY_GPU: u32 = 3;

/// The stress stand-in: `sh -c SCRIPT sim-stress LOAD_FILE HALF_WALL_S NODE_S KERNEL_LOG XID GPUS GFLOPS`. It
/// prints gpu_burn's multi-GPU progress lines (per GPU: work done and Gflop/s, errors, temperatures) and its
/// final per-GPU verdicts, which the provisioner's stress parser reads.
const STRESS_SCRIPT: &str = r#"load="$1"; half="$2"; secs="$3"; klog="$4"; xid="$5"; gpus="$6"; gflops="$7"
trap 'rm -f "$load"' EXIT
touch "$load"
progress() {
  line="$1%  proc'd:"; errs="errors:"; temps="temps:"; g=0
  while [ "$g" -lt "$gpus" ]; do
    sep=""; [ "$g" -gt 0 ] && sep=" -"
    line="$line$sep $2 ($gflops Gflop/s)"; errs="$errs$sep 0"; temps="$temps$sep 68 C"
    g=$((g + 1))
  done
  echo "$line   $errs   $temps"
}
echo "Burning for $secs seconds."
sleep "$half"
progress 50.0 6400
if [ "$xid" = 1 ]; then echo "NVRM: Xid (PCI:0000:3a:00): 79, pid=$$, name=gpu_burn, GPU has fallen off the bus." >> "$klog"; fi
sleep "$half"
progress 100.0 12800
echo "Tested $gpus GPUs:"
g=0; while [ "$g" -lt "$gpus" ]; do echo "	GPU $g: OK"; g=$((g + 1)); done
"#;

pub use kiln_health::burnin::synthetic::HEALTHY_GFLOPS;

/// Finds the fake NVML library: [`FAKE_NVML_ENV`], else beside the running executable or in its `deps/`
/// (where cargo puts it: kiln-sim depends on fake-nvml, so every build of kiln has it).
pub fn locate_fake_nvml() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(FAKE_NVML_ENV) {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join("libnvidia_ml.so"),
        dir.join("deps/libnvidia_ml.so"),
        dir.join("../libnvidia_ml.so"),
        dir.join("../deps/libnvidia_ml.so"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Copies of the fake NVML library, one burn-in at a time each.
#[derive(Debug)]
pub struct FakeNvmlPool {
    slots: Vec<tokio::sync::Mutex<PathBuf>>,
    next: AtomicUsize,
    _dir: tempfile::TempDir,
}

impl FakeNvmlPool {
    /// `slots` copies of `library` in a temporary directory.
    pub fn new(library: &Path, slots: usize) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("kiln-sim-nvml").tempdir()?;
        let mut paths = Vec::new();
        for i in 0..slots.max(1) {
            let slot = dir.path().join(format!("gpu-slot-{i}"));
            std::fs::create_dir_all(&slot)?;
            // A copy, not a link: the loader would hand back the one already loaded for the same file.
            std::fs::copy(library, slot.join("libnvidia-ml.so"))?;
            paths.push(tokio::sync::Mutex::new(slot));
        }
        Ok(Self {
            slots: paths,
            next: AtomicUsize::new(0),
            _dir: dir,
        })
    }

    /// Number of copies.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when there are no copies (never: `new` makes at least one).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    async fn acquire(&self) -> tokio::sync::MutexGuard<'_, PathBuf> {
        for slot in &self.slots {
            if let Ok(guard) = slot.try_lock() {
                return guard;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        self.slots[i].lock().await
    }
}

/// The fake-nvml scenario of `node` for a burn-in of `duration_s` node seconds, at `rate` node seconds per wall
/// second: the SKU's GPUs at healthy load values, and the node's planted fault.
pub fn scenario(
    profile: &SkuProfile,
    gpu_name: &str,
    node: &VirtualNode,
    duration_s: u64,
    rate: f64,
) -> String {
    let faulty = FAULTY_GPU.min(node.gpus.saturating_sub(1));
    let mut text = format!(
        "gpu_name = {gpu_name:?}\ngpu_count = {}\nmemory_total_mib = {}\npcie_gen = {}\npcie_width = {}\n\
         nvlink_links = {}\ntemp_load_c = {}\nmemory_temp_load_c = {}\ntemp_slowdown_c = {}\npower_load_w = {}\n\
         sm_clock_max_mhz = {}\ntime_scale = {rate}\nload_file = \"under-load\"\n",
        node.gpus,
        profile.memory_min_mib + 1024,
        profile.pcie_gen,
        profile.pcie_width,
        profile.nvlink_links,
        profile.max_gpu_temp_c.saturating_sub(19),
        profile.max_memory_temp_c.saturating_sub(21),
        profile.max_gpu_temp_c,
        profile.power_limit_w * 9 / 10,
        profile.sm_clock_expected_mhz,
    );
    match node.fault {
        Some(FaultKind::XidBurnIn) => text.push_str(&format!(
            "\n[[fault]]\nkind = \"xid\"\ngpu = {faulty}\nat_s = {}\nxid = {PLANTED_XID}\n",
            duration_s as f64 / 2.0
        )),
        Some(FaultKind::ThrottledGpu) => text.push_str(&format!(
            "\n[[fault]]\nkind = \"thermal_throttle\"\ngpu = {faulty}\ntemp_c = {}\nsm_clock_mhz = {}\n",
            profile.max_gpu_temp_c + 6,
            profile.sm_clock_expected_mhz * 11 / 20
        )),
        Some(FaultKind::PcieDowntrain) => text.push_str(&format!(
            "\n[[fault]]\nkind = \"pcie_downtrain\"\ngpu = {faulty}\ngen = {DOWNTRAINED_GEN}\n"
        )),
        _ => {}
    }
    text
}

/// The PCIe generation [`FaultKind::PcieDowntrain`]'s GPU stays at under load.
pub const DOWNTRAINED_GEN: u32 = 3;

/// Collects `node`'s burn-in evidence through a fake NVML copy from `pool` and kiln-health's collector.
/// `time_scale` is wall seconds per node second (the hall's), so `duration_s` runs `duration_s × time_scale`.
#[allow(clippy::too_many_arguments)]
pub async fn collect_with_fake_nvml(
    pool: &FakeNvmlPool,
    profile: &SkuProfile,
    gpu_name: &str,
    node: &VirtualNode,
    duration_s: u64,
    sku: &str,
    time_scale: f64,
) -> BurnInEvidence {
    let rate = stress_clock_rate(node_clock_rate(time_scale), duration_s);
    let slot = pool.acquire().await;
    let dir = slot.as_path();
    let kernel_log = dir.join("kern.log");
    let written = std::fs::write(
        dir.join(nvidia_ml::SCENARIO_BESIDE_LIBRARY),
        scenario(profile, gpu_name, node, duration_s, rate),
    )
    .and_then(|()| std::fs::write(&kernel_log, ""));
    if let Err(err) = written {
        tracing::warn!(serial = %node.serial, error = %err, "cannot write the fake NVML scenario");
    }
    let wall = Duration::from_secs(duration_s).div_f64(rate);
    let argv = vec![
        "sh".to_string(),
        "-c".to_string(),
        STRESS_SCRIPT.to_string(),
        "sim-stress".to_string(),
        dir.join("under-load").display().to_string(),
        format!("{:.3}", wall.as_secs_f64() / 2.0),
        duration_s.to_string(),
        kernel_log.display().to_string(),
        u8::from(node.fault == Some(FaultKind::XidBurnIn)).to_string(),
        node.gpus.to_string(),
        format!("{:.0}", stress_gflops(node)),
    ];
    let mut cfg = BurnInConfig::new(
        argv,
        Duration::from_secs(duration_s),
        dir.join("libnvidia-ml.so"),
    );
    cfg.clock_rate = rate;
    // The grace past the duration is at least 10 wall seconds: starting a shell under load takes real time,
    // however compressed the node's clock (at 1000× the default 60 s grace is 60 ms).
    cfg.timeout = cfg
        .timeout
        .max(cfg.duration + Duration::from_secs(10).mul_f64(rate));
    // About 24 ticks per run, whatever the compression.
    cfg.sample_interval = (wall / 24).clamp(Duration::from_millis(5), Duration::from_secs(1));
    cfg.kernel_log = KernelLogSource::File(kernel_log);
    cfg.collector = format!("kiln-sim {} (fake NVML)", env!("CARGO_PKG_VERSION"));
    collect_burn_in(&cfg, sku).await
}

/// Gflop/s per GPU `node`'s stress load reaches: [`HEALTHY_GFLOPS`], less [`SLOW_GPU_FACTOR`] on a slow node.
pub fn stress_gflops(node: &VirtualNode) -> f64 {
    if node.has(FaultKind::SlowGpu) {
        HEALTHY_GFLOPS * SLOW_GPU_FACTOR
    } else {
        HEALTHY_GFLOPS
    }
}

/// The shortest wall time a fake-NVML stress run is compressed to. Shorter, and a loaded machine's shell
/// start-up and sampler scheduling eat the run: too few NVML ticks land under load to judge it.
pub const MIN_STRESS_WALL: Duration = Duration::from_millis(300);

/// The node clock rate a stress run of `duration_s` node seconds runs at: the hall's `rate`, slowed so the run
/// lasts at least [`MIN_STRESS_WALL`] of wall time (the node clock stays consistent: it still lasts `duration_s`).
pub fn stress_clock_rate(rate: f64, duration_s: u64) -> f64 {
    let longest = duration_s as f64 / MIN_STRESS_WALL.as_secs_f64();
    if duration_s > 0 && rate > longest {
        longest
    } else {
        rate
    }
}

/// Node seconds per wall second for a hall's `time_scale` (wall seconds per node second).
pub fn node_clock_rate(time_scale: f64) -> f64 {
    if time_scale.is_finite() && time_scale > 0.0 {
        1.0 / time_scale
    } else {
        1.0
    }
}

/// Scale mode: the document the collector would write for `node`, built from the same sample types without
/// loading NVML (the caller waits out the run). Healthy load values, and the planted XID or throttle.
pub fn synthetic_evidence(
    profile: &SkuProfile,
    node: &VirtualNode,
    duration_s: u64,
    sku: &str,
) -> BurnInEvidence {
    let faulty = FAULTY_GPU.min(node.gpus.saturating_sub(1));
    let run = SyntheticRun {
        gpus: node.gpus,
        duration_s,
        sku: sku.to_string(),
        xid: (node.fault == Some(FaultKind::XidBurnIn)).then_some((faulty, PLANTED_XID)),
        throttled_gpu: (node.fault == Some(FaultKind::ThrottledGpu)).then_some(faulty),
        collector: format!(
            "kiln-sim {} (scale mode, no NVML)",
            env!("CARGO_PKG_VERSION")
        ),
        gflops: stress_gflops(node),
    };
    let faults: Vec<LoadFault> = match node.fault {
        Some(FaultKind::PcieDowntrain) => vec![LoadFault::PcieDowntrain {
            gpu: faulty,
            generation: DOWNTRAINED_GEN,
            width: profile.pcie_width,
        }],
        _ => Vec::new(),
    };
    let mut doc = run.evidence_with(profile, &faults);
    doc.nvml.driver_version = Some(crate::answers::DRIVER_VERSION.to_string());
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_health::Verdict;
    use kiln_health::burnin::judge_burn_in_document;

    const ASKED: Duration = Duration::from_secs(300);
    /// 300 node seconds in 1.2 s.
    const TIME_SCALE: f64 = 0.004;

    fn profile() -> SkuProfile {
        kiln_health::SkuCatalog::builtin()
            .expect("catalog")
            .get("h100-sxm-80gb")
            .expect("sku")
            .clone()
    }

    fn node(fault: Option<FaultKind>) -> VirtualNode {
        crate::node::test_node(fault)
    }

    /// The provisioner's judgement (kiln-health with the SKU profile) of a node's document.
    fn judged(doc: &BurnInEvidence) -> Verdict {
        judge_burn_in_document(&doc.to_value(), &profile(), ASKED)
    }

    fn failing(v: &Verdict) -> Vec<(String, String)> {
        v.failures()
            .map(|c| (c.name.clone(), c.subject.clone()))
            .collect()
    }

    #[test]
    fn a_stress_run_is_never_compressed_below_its_wall_floor() {
        // 5 node seconds at 1000x would be 5 ms: slowed to 5 s / 0.3 s.
        let slowed = stress_clock_rate(1000.0, 5);
        assert!((slowed - 5.0 / 0.3).abs() < 1e-9, "{slowed}");
        // 300 node seconds at 250x already last 1.2 s: unchanged; so is real time and a zero duration.
        assert_eq!(stress_clock_rate(250.0, 300), 250.0);
        assert_eq!(stress_clock_rate(1.0, 5), 1.0);
        assert_eq!(stress_clock_rate(1000.0, 0), 1000.0);
    }

    async fn through_fake_nvml(fault: Option<FaultKind>) -> BurnInEvidence {
        let library = locate_fake_nvml().expect("fake-nvml is built as kiln-sim's dependency");
        let pool = FakeNvmlPool::new(&library, 1).expect("pool");
        let p = profile();
        let name = format!("NVIDIA {}", p.nvml_name_contains);
        collect_with_fake_nvml(&pool, &p, &name, &node(fault), 300, &p.id, TIME_SCALE).await
    }

    #[tokio::test]
    async fn a_healthy_node_collects_passing_evidence_through_fake_nvml() {
        let doc = through_fake_nvml(None).await;
        let v = judged(&doc);
        assert!(v.passed(), "{}", v.render_table());
        assert!(doc.nvml.ticks.len() >= 10, "{}", doc.nvml.ticks.len());
        let stress = doc.stress.expect("stress");
        assert!(
            stress.elapsed_s >= 270.0,
            "node clock: {}",
            stress.elapsed_s
        );
        assert!(stress.stdout_tail.contains("GPU 7: OK"));
        // The SM clock is measured, not asserted: the median of the loaded samples.
        let clock = v
            .checks
            .iter()
            .find(|c| c.name == "burnin.sm_clock" && c.subject == "gpu0")
            .expect("clock");
        assert_eq!(clock.measured, 1980);
    }

    #[tokio::test]
    async fn a_planted_xid_reaches_nvml_and_the_kernel_log_and_fails_the_judgement() {
        let doc = through_fake_nvml(Some(FaultKind::XidBurnIn)).await;
        let v = judged(&doc);
        let f = failing(&v);
        assert!(
            f.contains(&("xid".into(), "gpu3".into())),
            "{}",
            v.render_table()
        );
        assert!(
            f.contains(&("kernel_log.xid".into(), "node".into())),
            "{f:?}"
        );
        assert!(
            v.failures()
                .any(|c| c.reason.contains(crate::faults::reasons::XID))
        );
    }

    #[tokio::test]
    async fn a_throttling_gpu_fails_on_its_samples() {
        let doc = through_fake_nvml(Some(FaultKind::ThrottledGpu)).await;
        let v = judged(&doc);
        let f = failing(&v);
        for name in ["burnin.sm_clock", "burnin.temp_max", "burnin.throttle"] {
            assert!(
                f.contains(&(name.into(), "gpu3".into())),
                "{name}: {}",
                v.render_table()
            );
        }
        assert!(
            v.failures()
                .any(|c| c.reason.contains(crate::faults::reasons::SM_CLOCK))
        );
    }

    #[test]
    fn scale_mode_documents_are_judged_the_same_way() {
        let p = profile();
        let healthy = synthetic_evidence(&p, &node(None), 300, &p.id);
        assert!(
            judged(&healthy).passed(),
            "{}",
            judged(&healthy).render_table()
        );
        let xid = judged(&synthetic_evidence(
            &p,
            &node(Some(FaultKind::XidBurnIn)),
            300,
            &p.id,
        ));
        assert!(failing(&xid).contains(&("xid".into(), "gpu3".into())));
        assert!(failing(&xid).contains(&("kernel_log.xid".into(), "node".into())));
        let hot = judged(&synthetic_evidence(
            &p,
            &node(Some(FaultKind::ThrottledGpu)),
            300,
            &p.id,
        ));
        assert!(failing(&hot).contains(&("burnin.sm_clock".into(), "gpu3".into())));
        let slow_link = judged(&synthetic_evidence(
            &p,
            &node(Some(FaultKind::PcieDowntrain)),
            300,
            &p.id,
        ));
        assert_eq!(
            failing(&slow_link),
            vec![("burnin.pcie_under_load".into(), "gpu3".into())],
            "{}",
            slow_link.render_table()
        );
    }

    #[tokio::test]
    async fn a_downtrained_link_fails_under_load_through_fake_nvml() {
        let doc = through_fake_nvml(Some(FaultKind::PcieDowntrain)).await;
        let v = judged(&doc);
        assert_eq!(
            failing(&v),
            vec![("burnin.pcie_under_load".into(), "gpu3".into())],
            "{}",
            v.render_table()
        );
        // Idle, every GPU downshifted: that alone never fails.
        let first = doc.nvml.ticks.first().expect("ticks");
        assert!(
            first
                .gpus
                .iter()
                .flatten()
                .all(|g| g.pcie_gen_current == Some(1))
        );
    }
}
