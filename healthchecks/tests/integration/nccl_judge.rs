//! NCCL judge on healthy and degraded runs, and bisection with a fake runner.

use std::sync::Mutex;

use kiln_health::CheckStatus;
use kiln_health::nccl::{NcclRun, NcclRunError, NcclRunner, bisect, judge_run};

use crate::support::{fixture, profile, synth_all_reduce};

fn run_of(output: String, hosts: &[&str]) -> NcclRun {
    NcclRun {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        exit_code: Some(0),
        timed_out: false,
        output,
    }
}

fn failing<'a>(v: &'a kiln_health::Verdict, name: &str) -> Vec<&'a kiln_health::Check> {
    v.failures().filter(|c| c.name == name).collect()
}

#[test]
fn healthy_single_node_h100_passes_with_measured_busbw_and_threshold() {
    let v = judge_run(
        &run_of(fixture("nccl/all_reduce_h100_1node.txt"), &["host-01"]),
        &profile("h100-sxm-80gb"),
    );
    assert!(v.passed(), "{}", v.render_table());
    let busbw = v
        .checks
        .iter()
        .find(|c| c.name == "nccl.busbw")
        .expect("busbw check");
    assert_eq!(busbw.status, CheckStatus::Pass);
    let measured = busbw.measured.as_f64().expect("number");
    assert!(measured > 460.0 && measured < 490.0, "{measured}");
    assert_eq!(
        busbw
            .threshold
            .as_ref()
            .map(|t| t["min_busbw_gbps"].clone()),
        Some(serde_json::json!(460.0))
    );
}

#[test]
fn broken_fabric_run_fails_on_busbw_wrong_and_out_of_bounds() {
    let v = judge_run(
        &run_of(fixture("nccl/all_reduce_h100_degraded.txt"), &["host-09"]),
        &profile("h100-sxm-80gb"),
    );
    assert!(!v.passed());
    let busbw = failing(&v, "nccl.busbw");
    assert_eq!(busbw.len(), 1);
    assert!(busbw[0].measured.as_f64().expect("number") < 100.0);
    assert_eq!(failing(&v, "nccl.wrong")[0].measured, serde_json::json!(5));
    assert_eq!(
        failing(&v, "nccl.out_of_bounds")[0].measured,
        serde_json::json!(2)
    );
    assert!(v.checks[0].failed(), "failing checks sort first");
}

#[test]
fn truncated_multi_node_run_flags_the_warning_host_and_incompleteness() {
    let hosts = ["host-01", "host-02", "host-03", "host-04"];
    let mut run = run_of(fixture("nccl/all_reduce_4node_warn_truncated.txt"), &hosts);
    run.timed_out = true;
    run.exit_code = None;
    let v = judge_run(&run, &profile("h100-sxm-80gb"));
    assert!(!v.passed());
    assert_eq!(failing(&v, "nccl.timeout").len(), 1);
    assert_eq!(failing(&v, "nccl.exit_status").len(), 1);
    assert_eq!(failing(&v, "nccl.completed").len(), 1);
    let warned: Vec<&str> = failing(&v, "nccl.error")
        .iter()
        .map(|c| c.subject.as_str())
        .collect();
    assert!(warned.contains(&"host-03"), "{warned:?}");
    assert!(
        v.evidence["output_tail"]
            .as_str()
            .expect("tail")
            .contains("port error"),
        "partial output kept"
    );
}

#[test]
fn exit_zero_with_failure_lines_still_fails() {
    let v = judge_run(
        &run_of(fixture("nccl/all_reduce_crash.txt"), &["host-05"]),
        &profile("h100-sxm-80gb"),
    );
    assert!(!v.passed());
    assert!(failing(&v, "nccl.error").len() >= 2);
    assert!(
        failing(&v, "nccl.busbw")
            .iter()
            .any(|c| c.reason.contains("no result rows"))
    );
}

#[test]
fn missing_host_and_wrong_gpu_model_are_flagged() {
    let hosts: Vec<String> = vec!["host-01".into(), "host-02".into()];
    let output = synth_all_reduce(&hosts[..1], 480.0);
    let v = judge_run(
        &run_of(output, &["host-01", "host-02"]),
        &profile("h100-sxm-80gb"),
    );
    assert_eq!(failing(&v, "nccl.host_missing")[0].subject, "host-02");
    assert_eq!(failing(&v, "nccl.ranks")[0].measured, serde_json::json!(8));

    let h200 = judge_run(
        &run_of(synth_all_reduce(&hosts[..1], 480.0), &["host-01"]),
        &profile("h200-sxm-141gb"),
    );
    assert_eq!(
        failing(&h200, "nccl.gpu_model").len(),
        8,
        "every rank on an H100 is wrong for an H200 profile"
    );
}

#[test]
fn unparseable_output_is_a_failing_check_not_an_error() {
    let v = judge_run(
        &run_of("segfault\n".into(), &["host-01"]),
        &profile("h100-sxm-80gb"),
    );
    assert_eq!(failing(&v, "nccl.output").len(), 1);
}

/// A fake fabric: a run is healthy unless it includes a planted bad node or spans a planted bad link.
struct FakeFabric {
    bad_nodes: Vec<String>,
    bad_link: Option<(String, String)>,
    calls: Mutex<Vec<Vec<String>>>,
}

impl NcclRunner for FakeFabric {
    async fn run(&self, hosts: &[String]) -> Result<NcclRun, NcclRunError> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(hosts.to_vec());
        }
        let bad_node = hosts.iter().any(|h| self.bad_nodes.contains(h));
        let bad_link = self
            .bad_link
            .as_ref()
            .is_some_and(|(a, b)| hosts.contains(a) && hosts.contains(b));
        // Multi-node floors are lower; a healthy fabric gives 470 GB/s at any size here.
        let busbw = if bad_node || bad_link { 90.0 } else { 470.0 };
        Ok(NcclRun {
            hosts: hosts.to_vec(),
            exit_code: Some(0),
            timed_out: false,
            output: synth_all_reduce(hosts, busbw),
        })
    }
}

fn hosts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("node-{i:02}")).collect()
}

#[tokio::test]
async fn bisection_finds_a_planted_bad_node() {
    let fabric = FakeFabric {
        bad_nodes: vec!["node-06".into()],
        bad_link: None,
        calls: Mutex::default(),
    };
    let outcome = bisect(&fabric, &hosts(8), &profile("h100-sxm-80gb"))
        .await
        .expect("bisects");
    assert_eq!(outcome.bad_hosts, vec!["node-06".to_string()]);
    assert!(outcome.unresolved.is_empty());
    // 8 → 4+4 → 2+2 → 1+1: 7 runs, logarithmic rather than one per node pair.
    assert_eq!(outcome.steps.len(), 7);
    assert!(!outcome.steps[0].passed);
    assert_eq!(outcome.steps[0].busbw_gbps, Some(90.0));
}

#[tokio::test]
async fn bisection_finds_two_bad_nodes_in_an_odd_sized_set() {
    let fabric = FakeFabric {
        bad_nodes: vec!["node-01".into(), "node-07".into()],
        bad_link: None,
        calls: Mutex::default(),
    };
    let outcome = bisect(&fabric, &hosts(7), &profile("h100-sxm-80gb"))
        .await
        .expect("bisects");
    let mut bad = outcome.bad_hosts.clone();
    bad.sort();
    assert_eq!(bad, vec!["node-01".to_string(), "node-07".to_string()]);
}

#[tokio::test]
async fn bisection_of_a_healthy_set_runs_once_and_a_bad_link_is_unresolved() {
    let healthy = FakeFabric {
        bad_nodes: vec![],
        bad_link: None,
        calls: Mutex::default(),
    };
    let outcome = bisect(&healthy, &hosts(4), &profile("h100-sxm-80gb"))
        .await
        .expect("bisects");
    assert!(outcome.bad_hosts.is_empty());
    assert_eq!(healthy.calls.lock().expect("calls").len(), 1);

    let link = FakeFabric {
        bad_nodes: vec![],
        bad_link: Some(("node-02".into(), "node-03".into())),
        calls: Mutex::default(),
    };
    let outcome = bisect(&link, &hosts(4), &profile("h100-sxm-80gb"))
        .await
        .expect("bisects");
    assert!(outcome.bad_hosts.is_empty());
    assert_eq!(outcome.unresolved, vec![hosts(4)]);
}
