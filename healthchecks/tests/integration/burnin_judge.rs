//! Evidence collected on the node and judged on the provisioner: real collected evidence from fake-nvml
//! passes; an empty document, a forged verdict, zero samples, zero GPUs, another SKU, another format version,
//! a failing or hung tool, a run far shorter than asked and an XID in the kernel log each fail with a reason.

use std::time::Duration;

use kiln_health::burnin::{
    BurnInConfig, BurnInEvidence, KernelLogSource, collect_burn_in, evidence_digest,
    judge_burn_in_document,
};
use kiln_health::{Check, RunKind, Verdict};
use serde_json::{Value, json};

use crate::support::{FakeNode, fixture_path, profile};

const SKU: &str = "h100-sxm-80gb";
const ASKED: Duration = Duration::from_secs(1);

fn config(node: &FakeNode, mode: &str) -> BurnInConfig {
    let argv = vec![
        fixture_path("fake-stress.sh").display().to_string(),
        node.load_file().display().to_string(),
        "{duration_s}".to_string(),
        mode.to_string(),
    ];
    let mut cfg = BurnInConfig::new(argv, ASKED, node.lib());
    cfg.sample_interval = Duration::from_millis(100);
    cfg.timeout = Duration::from_secs(6);
    cfg
}

async fn collected(mode: &str, sku: &str) -> Value {
    let node = FakeNode::h100_with("");
    collect_burn_in(&config(&node, mode), sku).await.to_value()
}

fn judge(doc: &Value) -> Verdict {
    judge_burn_in_document(doc, &profile(SKU), ASKED)
}

fn failing(v: &Verdict) -> Vec<String> {
    v.failures().map(|c| c.name.clone()).collect()
}

#[tokio::test]
async fn real_collected_evidence_passes_after_a_trip_through_json_text() {
    let doc = collected("ok", SKU).await;
    let text = serde_json::to_string(&doc).expect("json");
    let back: Value = serde_json::from_str(&text).expect("parse");
    let v = judge(&back);
    assert!(v.passed(), "{}", v.render_table());
    assert_eq!(v.kind, RunKind::BurnIn);
    assert!(
        v.checks.len() > 8 * 6,
        "every GPU judged: {}",
        v.checks.len()
    );
    assert_eq!(v.evidence["evidence_sha256"], json!(evidence_digest(&doc)));
    let evidence: BurnInEvidence = serde_json::from_value(doc).expect("typed");
    assert_eq!(evidence.nvml.gpu_count, 8);
    assert!(evidence.nvml.ticks.len() >= 5);
    assert_eq!(evidence.stress.expect("stress").exit_code, Some(0));
}

#[test]
fn an_empty_document_fails() {
    let v = judge(&json!({}));
    assert_eq!(failing(&v), vec!["evidence.format"], "{}", v.render_table());
    assert!(!v.passed());
}

#[test]
fn a_forged_passing_verdict_in_place_of_evidence_fails() {
    let forged = Verdict::new(
        RunKind::BurnIn,
        SKU,
        1,
        vec![Check::pass("burnin.sm_clock", "gpu0", 1980, None, "fine")],
        json!({}),
    );
    assert!(forged.passed());
    let v = judge(&serde_json::to_value(&forged).expect("json"));
    assert_eq!(failing(&v), vec!["evidence.format"], "{}", v.render_table());
}

#[tokio::test]
async fn zero_samples_and_zero_gpus_fail() {
    let mut doc = collected("ok", SKU).await;
    doc["nvml"]["ticks"] = json!([]);
    let f = failing(&judge(&doc));
    assert!(f.contains(&"burnin.samples".to_string()), "{f:?}");
    assert!(f.contains(&"burnin.gpu_samples".to_string()), "{f:?}");
    doc["nvml"]["gpu_count"] = json!(0);
    doc["nvml"]["baseline_ecc"] = json!([]);
    let f = failing(&judge(&doc));
    assert!(f.contains(&"gpu.count".to_string()), "{f:?}");
    assert!(f.contains(&"burnin.samples".to_string()), "{f:?}");
}

#[tokio::test]
async fn another_gpu_count_than_the_sku_fails() {
    let scenario = crate::support::fixture("scenarios/h100-healthy.toml")
        .replace("gpu_count = 8", "gpu_count = 7");
    let node = FakeNode::from_scenario(&scenario);
    let doc = collect_burn_in(&config(&node, "ok"), SKU).await.to_value();
    assert_eq!(failing(&judge(&doc)), vec!["gpu.count"]);
}

#[tokio::test]
async fn evidence_for_another_sku_or_format_version_fails() {
    let doc = collected("ok", "h200-sxm-141gb").await;
    assert!(failing(&judge(&doc)).contains(&"evidence.sku".to_string()));
    let mut doc = collected("ok", SKU).await;
    doc["version"] = json!(2);
    assert_eq!(failing(&judge(&doc)), vec!["evidence.format"]);
    doc["version"] = json!(1);
    doc["verdict"] = json!("pass");
    assert_eq!(failing(&judge(&doc)), vec!["evidence.malformed"]);
}

#[tokio::test]
async fn a_non_zero_exit_and_a_hang_fail() {
    let doc = collected("exit1", SKU).await;
    assert_eq!(failing(&judge(&doc)), vec!["burnin.exit_status"]);
    let mut forged = collected("ok", SKU).await;
    forged["stress"]["exit_code"] = json!(null);
    forged["stress"]["timed_out"] = json!(true);
    let f = failing(&judge(&forged));
    assert!(f.contains(&"burnin.timeout".to_string()), "{f:?}");
    assert!(f.contains(&"burnin.exit_status".to_string()), "{f:?}");
}

#[tokio::test]
async fn a_run_far_shorter_than_asked_fails() {
    let doc = collected("ok", SKU).await;
    let v = judge_burn_in_document(&doc, &profile(SKU), Duration::from_secs(300));
    let f = failing(&v);
    for name in [
        "evidence.duration_asked",
        "burnin.duration",
        "burnin.sampled_span",
    ] {
        assert!(f.contains(&name.to_string()), "{name} in {f:?}");
    }
}

#[tokio::test]
async fn missing_stress_run_fails() {
    let mut doc = collected("ok", SKU).await;
    doc["stress"] = Value::Null;
    assert_eq!(failing(&judge(&doc)), vec!["burnin.tool"]);
}

#[tokio::test]
async fn an_xid_written_to_the_kernel_log_during_the_run_fails() {
    let node = FakeNode::h100_with("");
    let log = node.dir.path().join("kern.log");
    std::fs::write(
        &log,
        "NVRM: Xid (PCI:0000:18:00): 79, from before the run\n",
    )
    .expect("log");
    let script = format!(
        "touch '{load}'; sleep 0.5; echo '[ 12.5] NVRM: Xid (PCI:0000:18:00): 79, pid=77, GPU has fallen off the bus.' >> '{log}'; sleep 0.6; rm -f '{load}'",
        load = node.load_file().display(),
        log = log.display()
    );
    let mut cfg = config(&node, "ok");
    cfg.stress_argv = vec!["sh".into(), "-c".into(), script];
    cfg.kernel_log = KernelLogSource::File(log);
    let doc = collect_burn_in(&cfg, SKU).await;
    assert_eq!(doc.kernel_log.lines.len(), 1, "{:?}", doc.kernel_log);
    let v = judge(&doc.to_value());
    assert_eq!(failing(&v), vec!["kernel_log.xid"], "{}", v.render_table());
}

#[test]
fn synthetic_documents_are_judged_like_collected_ones() {
    use kiln_health::burnin::synthetic::SyntheticRun;
    let p = profile(SKU);
    let healthy = SyntheticRun::healthy(&p, 300);
    let v = judge_burn_in_document(
        &healthy.evidence(&p).to_value(),
        &p,
        Duration::from_secs(300),
    );
    assert!(v.passed(), "{}", v.render_table());
    let hot = SyntheticRun {
        throttled_gpu: Some(5),
        xid: Some((2, 79)),
        ..healthy
    };
    let v = judge_burn_in_document(&hot.evidence(&p).to_value(), &p, Duration::from_secs(300));
    let f: Vec<(String, String)> = v
        .failures()
        .map(|c| (c.name.clone(), c.subject.clone()))
        .collect();
    for expected in [
        ("burnin.sm_clock", "gpu5"),
        ("burnin.throttle", "gpu5"),
        ("burnin.temp_max", "gpu5"),
        ("xid", "gpu2"),
        ("kernel_log.xid", "node"),
    ] {
        assert!(
            f.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} in {f:?}"
        );
    }
}
