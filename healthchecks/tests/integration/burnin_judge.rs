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

fn judged_300(doc: &Value, p: &kiln_health::SkuProfile) -> Verdict {
    judge_burn_in_document(doc, p, Duration::from_secs(300))
}

fn failing_on(v: &Verdict) -> Vec<(String, String)> {
    v.failures()
        .map(|c| (c.name.clone(), c.subject.clone()))
        .collect()
}

#[test]
fn under_load_faults_in_synthetic_documents_fail_their_checks() {
    use kiln_health::burnin::synthetic::{LoadFault, SyntheticRun};
    let p = profile(SKU);
    let run = SyntheticRun::healthy(&p, 300);
    let healthy = judged_300(&run.evidence(&p).to_value(), &p);
    let pcie = healthy
        .checks
        .iter()
        .find(|c| c.name == "burnin.pcie_under_load" && c.subject == "gpu0")
        .expect("pcie check");
    // The first tick is idle at Gen1: the check judges only the 24 loaded ticks.
    assert_eq!(pcie.measured["gen"], 5);
    assert_eq!(pcie.measured["load"]["loaded_ticks"], 24);
    assert_eq!(pcie.measured["load"]["ticks"], 25);
    let faults = [
        LoadFault::PcieDowntrain {
            gpu: 1,
            generation: 3,
            width: 16,
        },
        LoadFault::PcieDowntrain {
            gpu: 2,
            generation: 5,
            width: 8,
        },
        LoadFault::NvlinkErrors {
            gpu: 3,
            crc: 0,
            replay: 101,
            recovery: 0,
        },
        // Within the limits (CRC <= 100): not a failure.
        LoadFault::NvlinkErrors {
            gpu: 4,
            crc: 100,
            replay: 0,
            recovery: 0,
        },
        LoadFault::LowPower {
            gpu: 5,
            power_w: 400.0,
        },
        // Past the GPUs of the run: ignored.
        LoadFault::LowPower {
            gpu: 9,
            power_w: 1.0,
        },
    ];
    let v = judged_300(&run.evidence_with(&p, &faults).to_value(), &p);
    let mut f = failing_on(&v);
    f.sort();
    let expected: Vec<(String, String)> = [
        ("burnin.nvlink_errors", "gpu3"),
        ("burnin.pcie_under_load", "gpu1"),
        ("burnin.pcie_under_load", "gpu2"),
        ("burnin.power_under_load", "gpu5"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(f, expected, "{}", v.render_table());
    let nvlink = v
        .failures()
        .find(|c| c.name == "burnin.nvlink_errors")
        .expect("nvlink");
    assert_eq!(nvlink.measured["replay_growth"], 101);
    assert_eq!(
        nvlink.threshold.as_ref().expect("limits")["replay_growth_max"],
        100
    );
}

/// A healthy document as written before GpuSample carried utilisation, PCIe and NVLink counters.
fn without_new_sample_fields(doc: &mut Value) {
    for tick in doc["nvml"]["ticks"].as_array_mut().expect("ticks") {
        for gpu in tick["gpus"].as_array_mut().expect("gpus") {
            let sample = gpu["Ok"].as_object_mut().expect("ok sample");
            for key in [
                "gpu_util_pct",
                "pcie_gen_current",
                "pcie_width_current",
                "nvlink_errors",
            ] {
                assert!(sample.remove(key).is_some(), "{key} written");
            }
        }
    }
}

#[test]
fn old_evidence_without_the_new_readings_decodes_and_fails_as_not_reported() {
    use kiln_health::burnin::synthetic::SyntheticRun;
    let p = profile(SKU);
    let mut doc = SyntheticRun::healthy(&p, 300).evidence(&p).to_value();
    without_new_sample_fields(&mut doc);
    let v = judged_300(&doc, &p);
    let f = failing_on(&v);
    assert_eq!(f.len(), 16, "{}", v.render_table());
    for g in 0..8 {
        let gpu = format!("gpu{g}");
        assert!(f.contains(&("burnin.pcie_under_load".to_string(), gpu.clone())));
        assert!(f.contains(&("burnin.nvlink_errors".to_string(), gpu.clone())));
    }
    // Power is still judged, on the middle of the run (no utilisation to tell load from idle).
    let power = v
        .checks
        .iter()
        .find(|c| c.name == "burnin.power_under_load" && c.subject == "gpu0")
        .expect("power");
    assert_eq!(power.status, kiln_health::CheckStatus::Pass);
    assert_eq!(power.measured["load"]["basis"], "middle_of_run");
    assert_eq!(power.measured["load"]["loaded_ticks"], 21);
    // On a SKU without NVLink, missing counters are a note, not a failure.
    let mut pcie_card = p.clone();
    pcie_card.nvlink_links = 0;
    let v = judged_300(&doc, &pcie_card);
    let notes: Vec<&kiln_health::Check> = v
        .checks
        .iter()
        .filter(|c| c.name == "burnin.nvlink_errors")
        .collect();
    assert_eq!(notes.len(), 8);
    assert!(
        notes
            .iter()
            .all(|c| c.status == kiln_health::CheckStatus::Note)
    );
    assert!(
        v.failures().all(|c| c.name == "burnin.pcie_under_load"),
        "{}",
        v.render_table()
    );
}

#[test]
fn a_profile_power_floor_from_the_gates_table_is_used() {
    use kiln_health::burnin::synthetic::SyntheticRun;
    let mut p = profile(SKU);
    // The synthetic load draws 0.9 × 700 = 630 W.
    p.gates.power_load_min_w = Some(650.0);
    let v = judged_300(&SyntheticRun::healthy(&p, 300).evidence(&p).to_value(), &p);
    assert_eq!(v.failures().count(), 8, "{}", v.render_table());
    assert!(v.failures().all(|c| c.name == "burnin.power_under_load"));
    p.gates.power_load_min_w = None;
    assert_eq!(p.power_load_floor_w(), 490.0, "0.7 × the 700 W limit");
}

#[test]
fn a_synthetic_document_keeps_its_digest_through_json_text() {
    use kiln_health::burnin::synthetic::SyntheticRun;
    let p = profile(SKU);
    // 7 s over 24 ticks: times with long decimal expansions.
    let doc = SyntheticRun::healthy(&p, 7).evidence(&p).to_value();
    let back: Value = serde_json::from_str(&doc.to_string()).expect("parse");
    assert_eq!(evidence_digest(&back), evidence_digest(&doc));
}

/// The stress tool's own figures are judged with the burn-in: a GPU far below the node's best fails
/// `stress.throughput`, computation errors fail `stress.sdc`, and a tool kiln does not know is only noted.
#[test]
fn the_stress_tools_figures_are_part_of_the_burn_in_verdict() {
    use kiln_health::burnin::synthetic::{SyntheticRun, gpu_burn_output};
    let p = kiln_health::SkuCatalog::builtin()
        .expect("catalog")
        .get(SKU)
        .expect("sku")
        .clone();
    let judge = |stdout: String, argv: Vec<&str>| {
        let mut doc = SyntheticRun::healthy(&p, 300).evidence(&p);
        let stress = doc.stress.as_mut().expect("stress");
        stress.stdout_tail = stdout;
        stress.argv = argv.into_iter().map(str::to_string).collect();
        judge_burn_in_document(&doc.to_value(), &p, Duration::from_secs(300))
    };
    let failing = |v: &Verdict| -> Vec<(String, String)> {
        v.failures()
            .map(|c| (c.name.clone(), c.subject.clone()))
            .collect()
    };
    let healthy = judge(
        gpu_burn_output(8, 300, 61_000.0),
        vec!["gpu_burn", "-tc", "300"],
    );
    assert!(healthy.passed(), "{}", healthy.render_table());
    assert!(healthy.checks.iter().any(|c| c.name == "stress.throughput"));

    // GPU 3 at 80% of the others.
    let slow = gpu_burn_output(8, 300, 61_000.0).replace(
        "- 12800 (61000 Gflop/s) - 12800 (61000 Gflop/s) - 12800 (61000 Gflop/s) - 12800 (61000 Gflop/s)",
        "- 12800 (61000 Gflop/s) - 12800 (61000 Gflop/s) - 12800 (48800 Gflop/s) - 12800 (61000 Gflop/s)",
    );
    let slow = slow.replace(
        "- 6400 (61000 Gflop/s) - 6400 (61000 Gflop/s) - 6400 (61000 Gflop/s) - 6400 (61000 Gflop/s)",
        "- 6400 (61000 Gflop/s) - 6400 (61000 Gflop/s) - 6400 (48800 Gflop/s) - 6400 (61000 Gflop/s)",
    );
    assert_ne!(slow, gpu_burn_output(8, 300, 61_000.0));
    let v = judge(slow, vec!["gpu_burn", "-tc", "300"]);
    assert_eq!(
        failing(&v),
        vec![("stress.throughput".to_string(), "gpu3".to_string())],
        "{}",
        v.render_table()
    );

    // Computation errors on GPU 1: silent data corruption.
    let corrupt = gpu_burn_output(8, 300, 61_000.0)
        .replace("errors: 0 - 0 - ", "errors: 0 - 3 - ")
        .replace("\tGPU 1: OK", "\tGPU 1: FAULTY");
    let v = judge(corrupt, vec!["gpu_burn", "-tc", "300"]);
    let sdc: Vec<&Check> = v.failures().filter(|c| c.name == "stress.sdc").collect();
    assert!(!sdc.is_empty(), "{}", v.render_table());
    assert!(sdc.iter().all(|c| c.reason.starts_with("sdc:")), "{sdc:?}");

    // A stress command kiln has no parser for: noted, the rest of the burn-in still judged.
    let v = judge("all good\n".to_string(), vec!["my-stress", "300"]);
    assert!(v.passed(), "{}", v.render_table());
    let note = v
        .checks
        .iter()
        .find(|c| c.name == "stress.output")
        .expect("noted");
    assert_eq!(note.status, kiln_health::CheckStatus::Note);
}

#[test]
fn idle_ticks_before_the_load_ramps_up_do_not_count_as_a_slow_sm_clock() {
    use kiln_health::burnin::synthetic::SyntheticRun;
    let p = profile(SKU);
    let mut doc = SyntheticRun::healthy(&p, 300).evidence(&p).to_value();
    // A stress tool slow to start: more than half the ticks were sampled while the GPUs idled.
    let ticks = doc["nvml"]["ticks"].as_array_mut().expect("ticks");
    let idle = ticks.len() / 2 + 1;
    for tick in ticks.iter_mut().take(idle) {
        for gpu in tick["gpus"].as_array_mut().expect("gpus") {
            gpu["Ok"]["gpu_util_pct"] = json!(0);
            gpu["Ok"]["sm_clock_mhz"] = json!(345);
        }
    }
    let v = judged_300(&doc, &p);
    assert!(v.passed(), "{}", v.render_table());
    let clock = v
        .checks
        .iter()
        .find(|c| c.name == "burnin.sm_clock" && c.subject == "gpu0")
        .expect("sm clock");
    assert_eq!(clock.measured, json!(p.sm_clock_expected_mhz));
    // A slow clock on the loaded ticks still fails.
    for tick in doc["nvml"]["ticks"].as_array_mut().expect("ticks") {
        tick["gpus"][2]["Ok"]["sm_clock_mhz"] = json!(900);
    }
    let slow = judged_300(&doc, &p);
    assert_eq!(
        failing_on(&slow),
        vec![("burnin.sm_clock".to_string(), "gpu2".to_string())],
        "{}",
        slow.render_table()
    );
}
