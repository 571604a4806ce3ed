//! nccl-tests `all_reduce_perf` text output for a simulated run, in the layout nccl-tests prints (banner,
//! devices, the size table, the footer), with a bus bandwidth that rises with message size towards a target.

use std::fmt::Write as _;

/// One host of a run with its GPU count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunHost {
    /// Host name as in the `-H` list.
    pub name: String,
    /// GPUs it contributes.
    pub gpus: u32,
}

/// Smallest and largest message sizes (nccl-tests `-b 8 -e 8G -f 2`).
const MIN_BYTES: u64 = 8;
const MAX_BYTES: u64 = 8 << 30;
/// Message size at which the simulated bandwidth reaches half its peak.
const HALF_PEAK_BYTES: f64 = 48.0 * 1024.0 * 1024.0;

fn sizes() -> impl Iterator<Item = u64> {
    std::iter::successors(Some(MIN_BYTES), |s| (*s < MAX_BYTES).then_some(s * 2))
}

fn curve(size: u64) -> f64 {
    let s = size as f64;
    s / (s + HALF_PEAK_BYTES)
}

/// The output of an all-reduce over `hosts` whose mean bus bandwidth over messages of at least
/// `judged_from_bytes` is `busbw_gbps`, for a GPU named `gpu_name`.
pub fn all_reduce_output(
    hosts: &[RunHost],
    gpu_name: &str,
    busbw_gbps: f64,
    judged_from_bytes: u64,
) -> String {
    let ranks: u32 = hosts.iter().map(|h| h.gpus).sum();
    let mut out = String::new();
    let first = hosts.first().map_or("localhost", |h| h.name.as_str());
    let _ = writeln!(
        out,
        "{first}:4100:4100 [0] NCCL INFO NCCL version 2.21.5+cuda12.4"
    );
    let _ = writeln!(
        out,
        "# nThread 1 nGpus 1 minBytes {MIN_BYTES} maxBytes {MAX_BYTES} step: 2(factor) warmup iters: 5 \
         iters: 20 agg iters: 1 validation: 1 graph: 0\n#\n# Using devices"
    );
    let mut rank = 0u32;
    for host in hosts {
        for device in 0..host.gpus {
            let bus = crate::hardware::GPU_BUS_IDS
                .get(device as usize)
                .map_or("0000:00:00", |b| &b[..10]);
            let _ = writeln!(
                out,
                "#  Rank {rank:>2} Group  0 Pid {:>6} on {:>10} device {device:>2} [{bus}] {gpu_name}",
                4100 + rank,
                host.name
            );
            rank += 1;
        }
    }
    out.push_str(
        "#\n#                                                              out-of-place                       in-place          \n\
         #       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong\n\
         #        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)       \n",
    );
    // Scale the curve so the judged rows average to the target.
    let judged: Vec<f64> = sizes()
        .filter(|s| *s >= judged_from_bytes)
        .map(curve)
        .collect();
    let mean_shape = if judged.is_empty() {
        1.0
    } else {
        judged.iter().sum::<f64>() / judged.len() as f64
    };
    let peak = busbw_gbps / mean_shape;
    // all-reduce: busbw = algbw × 2(n-1)/n.
    let n = f64::from(ranks.max(2));
    let bus_factor = 2.0 * (n - 1.0) / n;
    let mut total_busbw = 0.0;
    let mut rows = 0u32;
    for size in sizes() {
        let busbw = peak * curve(size);
        let algbw = busbw / bus_factor;
        let time_us = size as f64 / (algbw * 1e3);
        total_busbw += busbw;
        rows += 1;
        let side = format!("{time_us:>8.2} {algbw:>7.2} {busbw:>7.2} {:>6}", 0);
        let _ = writeln!(
            out,
            "{size:>12} {:>13}     float     sum      -1 {side} {side}",
            size / 4
        );
    }
    let _ = writeln!(
        out,
        "# Out of bounds values : 0 OK\n# Avg bus bandwidth    : {:.3} \n#",
        total_busbw / f64::from(rows.max(1))
    );
    out
}

#[cfg(test)]
mod tests {
    use kiln_health::nccl::{NcclRun, judge_run, parse};

    use super::*;

    fn hosts(n: usize) -> Vec<RunHost> {
        (0..n)
            .map(|i| RunHost {
                name: format!("KSIM{i:06}"),
                gpus: 8,
            })
            .collect()
    }

    #[test]
    fn kiln_health_parses_and_judges_it() {
        let profile = kiln_health::SkuCatalog::builtin()
            .expect("catalog")
            .get("h100-sxm-80gb")
            .expect("sku")
            .clone();
        let judge = |n: usize, busbw: f64| {
            let hosts = hosts(n);
            let text = all_reduce_output(
                &hosts,
                "NVIDIA H100 80GB HBM3",
                busbw,
                profile.nccl_min_size_bytes,
            );
            let report = parse(&text).expect("parses");
            assert_eq!(report.ranks, 8 * n as u32);
            assert_eq!(report.hosts.len(), n);
            assert!(report.completed());
            judge_run(
                &NcclRun {
                    hosts: hosts.iter().map(|h| h.name.clone()).collect(),
                    exit_code: Some(0),
                    timed_out: false,
                    output: text,
                },
                &profile,
            )
        };
        let good = judge(4, 360.0);
        assert!(good.passed(), "{}", good.render_table());
        let busbw = good
            .checks
            .iter()
            .find(|c| c.name == "nccl.busbw")
            .and_then(|c| c.measured.as_f64())
            .expect("busbw");
        assert!((busbw - 360.0).abs() < 1.0, "{busbw}");
        let slow = judge(2, 150.0);
        assert!(!slow.passed());
        assert!(slow.failures().any(|c| c.name == "nccl.busbw"));
    }
}
