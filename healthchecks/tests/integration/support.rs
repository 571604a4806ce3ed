//! Helpers shared by the test modules.

use std::path::PathBuf;

/// Path of a recorded fixture under `tests/fixtures`.
pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Text of a recorded fixture.
pub fn fixture(rel: &str) -> String {
    std::fs::read_to_string(fixture_path(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// The built-in profile with this id.
pub fn profile(id: &str) -> kiln_health::SkuProfile {
    kiln_health::SkuCatalog::builtin()
        .expect("built-in profiles")
        .get(id)
        .expect("profile")
        .clone()
}

/// Synthesizes all_reduce_perf output for `hosts` × 8 GPUs with the given busbw at every large size.
pub fn synth_all_reduce(hosts: &[String], busbw_gbps: f64) -> String {
    let ranks = hosts.len() * 8;
    let mut out = String::from(
        "# Collective test starting: all_reduce_perf\n# nThread 1 nGpus 1 minBytes 1073741824 maxBytes 8589934592 step: 2(factor) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0\n#\n# Using devices\n",
    );
    for (h, host) in hosts.iter().enumerate() {
        for d in 0..8 {
            out.push_str(&format!(
                "#  Rank {:2} Group  0 Pid {:6} on {host:>10} device {d:2} [0000:{:02x}:00] NVIDIA H100 80GB HBM3\n",
                h * 8 + d,
                1000 + h * 8 + d,
                0x18 + d * 16
            ));
        }
    }
    out.push_str("#\n#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong\n");
    let n = ranks as f64;
    let factor = 2.0 * (n - 1.0) / n;
    let mut size: u64 = 1 << 30;
    while size <= 8 << 30 {
        let algbw = busbw_gbps / factor;
        let time_us = size as f64 / (algbw * 1e3);
        out.push_str(&format!(
            "{size:12}  {:12}     float     sum      -1  {time_us:9.2}  {algbw:6.2}  {busbw_gbps:6.2}       0  {time_us:9.2}  {algbw:6.2}  {busbw_gbps:6.2}       0\n",
            size / 4
        ));
        size *= 2;
    }
    out.push_str(&format!(
        "# Out of bounds values : 0 OK\n# Avg bus bandwidth    : {busbw_gbps:.3}\n#\n"
    ));
    out
}

/// A node backed by fake-nvml: its own copy of the library beside its own scenario, in a temporary directory
/// (separate library instances, so tests run in parallel without sharing state or environment).
pub struct FakeNode {
    /// Holds the directory alive.
    pub dir: tempfile::TempDir,
}

impl FakeNode {
    /// The healthy H100 scenario with extra TOML (faults, overrides) appended.
    pub fn h100_with(extra: &str) -> Self {
        Self::from_scenario(&format!(
            "{}\n{extra}\n",
            fixture("scenarios/h100-healthy.toml")
        ))
    }

    /// A node from full scenario text.
    pub fn from_scenario(scenario: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(fake_nvml_library(), dir.path().join("libnvidia-ml.so"))
            .expect("copy fake-nvml");
        std::fs::write(dir.path().join("fake-nvml-scenario.toml"), scenario)
            .expect("write scenario");
        Self { dir }
    }

    /// Path to load as NVML.
    pub fn lib(&self) -> PathBuf {
        self.dir.path().join("libnvidia-ml.so")
    }

    /// The file whose existence means "GPUs under load" in the scenario.
    pub fn load_file(&self) -> PathBuf {
        self.dir.path().join("under-load")
    }
}

/// The fake-nvml cdylib built as this test's dev-dependency (beside the test binary, in `deps/`).
pub fn fake_nvml_library() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    let deps = exe.parent().expect("deps dir");
    let candidates = [
        deps.join("libnvidia_ml.so"),
        deps.join("../libnvidia_ml.so"),
    ];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| panic!("fake-nvml library not built (looked in {candidates:?}); run cargo build -p fake-nvml"))
}
