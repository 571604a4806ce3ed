//! The sweep benchmark on a small fleet.

use kiln_bmc_sim::bench::{SweepBenchConfig, bmc_sweep};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_bench_sweeps_every_bmc_and_reports_the_contract_line() {
    let report = bmc_sweep(&SweepBenchConfig {
        count: 40,
        concurrency: 16,
        ..SweepBenchConfig::default()
    })
    .await
    .expect("bench runs");
    assert_eq!(report.count, 40);
    assert_eq!(report.failed, 0, "{:?}", report.failures_by_kind);
    assert!(report.kiln_per_s > 0.0);
    assert!(
        report.sweep_cpu_s.is_some_and(|cpu| cpu >= 0.0),
        "Linux has /proc/self/stat"
    );
    let line = report.contract_json();
    let keys: Vec<&str> = line
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5);
    for key in ["count", "kiln_per_s", "ipmitool_per_s", "ratio", "failed"] {
        assert!(line.get(key).is_some(), "{key} missing");
    }
    assert_eq!(line["count"], 40);
    // CI installs ipmitool, so the comparison is measured.
    let ipmitool = report.ipmitool_per_s.expect("ipmitool rate measured");
    assert!(ipmitool > 0.0);
    assert!(report.ratio.is_some_and(|r| r > 0.0));
}
