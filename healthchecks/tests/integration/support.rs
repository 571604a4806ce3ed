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
