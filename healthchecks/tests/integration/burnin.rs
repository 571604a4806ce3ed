//! Burn-in runner with the fake stress tool and fake-nvml: samples, output and exit status are all judged,
//! a hung tool is killed at the hard timeout with partial evidence kept, and faults during the run are caught,
//! including those that show only under load (a downtrained PCIe link, NVLink errors, low power).

use std::path::Path;
use std::time::Duration;

use kiln_health::Verdict;
use kiln_health::burnin::{BurnInConfig, output_line_fails, run_burn_in};

use crate::support::{FakeNode, fixture_path, profile};

fn config(node: &FakeNode, mode: &str, seconds: u64) -> BurnInConfig {
    let tool = fixture_path("fake-stress.sh");
    let argv = vec![
        tool.display().to_string(),
        node.load_file().display().to_string(),
        "{duration_s}".to_string(),
        mode.to_string(),
    ];
    let mut cfg = BurnInConfig::new(argv, Duration::from_secs(seconds), node.lib());
    cfg.sample_interval = Duration::from_millis(100);
    cfg.timeout = Duration::from_secs(seconds + 5);
    cfg
}

async fn burn(node: &FakeNode, mode: &str) -> Verdict {
    run_burn_in(&config(node, mode, 1), &profile("h100-sxm-80gb")).await
}

fn failing(v: &Verdict) -> Vec<(String, String)> {
    v.failures()
        .map(|c| (c.name.clone(), c.subject.clone()))
        .collect()
}

#[tokio::test]
async fn healthy_burn_in_passes_with_loaded_clocks_sampled() {
    let node = FakeNode::h100_with("");
    let v = burn(&node, "ok").await;
    assert!(v.passed(), "{}", v.render_table());
    assert!(v.evidence["samples"].as_u64().expect("count") >= 5);
    let clock = v
        .checks
        .iter()
        .find(|c| c.name == "burnin.sm_clock")
        .expect("clock check");
    assert_eq!(clock.measured, 1980, "median taken under load");
    assert_eq!(v.evidence["gpus"]["per_gpu"][0]["temp_max_c"], 68);
    assert_eq!(v.evidence["gpus"]["per_gpu"][0]["util_max_pct"], 100);
    assert_eq!(v.evidence["gpus"]["per_gpu"][0]["pcie_gen_max"], 5);
    for name in [
        "burnin.pcie_under_load",
        "burnin.power_under_load",
        "burnin.nvlink_errors",
    ] {
        assert_eq!(
            v.checks.iter().filter(|c| c.name == name).count(),
            8,
            "{name} judged per GPU"
        );
    }
    let power = v
        .checks
        .iter()
        .find(|c| c.name == "burnin.power_max")
        .expect("power check");
    assert_eq!(power.measured, 640.0);
    assert!(!node.load_file().exists(), "tool removed its load marker");
}

#[tokio::test]
async fn tool_exiting_zero_but_printing_faulty_fails() {
    let v = burn(&FakeNode::h100_with(""), "faulty").await;
    assert_eq!(
        failing(&v),
        vec![("burnin.output".to_string(), "node".to_string())],
        "{}",
        v.render_table()
    );
    let lines = v
        .failures()
        .next()
        .expect("failure")
        .measured
        .as_array()
        .expect("lines")
        .len();
    assert_eq!(lines, 2, "the errors: 12 line and the FAULTY line");
}

#[tokio::test]
async fn tool_exit_status_and_silent_errors_are_judged() {
    let v = burn(&FakeNode::h100_with(""), "exit1").await;
    assert_eq!(
        failing(&v),
        vec![("burnin.exit_status".to_string(), "node".to_string())]
    );
    let v = burn(&FakeNode::h100_with(""), "silent-error").await;
    assert_eq!(
        failing(&v),
        vec![("burnin.output".to_string(), "node".to_string())]
    );
}

#[tokio::test]
async fn hung_tool_is_killed_at_the_timeout_with_partial_evidence() {
    let node = FakeNode::h100_with("");
    let mut cfg = config(&node, "hang", 30);
    cfg.timeout = Duration::from_millis(1500);
    let v = run_burn_in(&cfg, &profile("h100-sxm-80gb")).await;
    let f = failing(&v);
    assert!(
        f.contains(&("burnin.timeout".to_string(), "node".to_string())),
        "{}",
        v.render_table()
    );
    assert!(f.contains(&("burnin.exit_status".to_string(), "node".to_string())));
    assert!(
        v.evidence["stdout_tail"]
            .as_str()
            .expect("stdout")
            .contains("Burning for 30 seconds")
    );
    assert!(
        v.evidence["stderr_tail"]
            .as_str()
            .expect("stderr")
            .contains("stuck in a CUDA kernel")
    );
    assert!(
        v.evidence["samples"].as_u64().expect("samples") >= 3,
        "samples before the kill are kept"
    );
    assert!(v.evidence["elapsed_s"].as_f64().expect("elapsed") < 10.0);
}

#[tokio::test]
async fn xid_79_at_t20_and_a_lost_gpu_are_caught_during_the_run() {
    // time_scale 40: scenario t = 20 s arrives 0.5 s into the run.
    let node = FakeNode::h100_with(
        "time_scale = 40.0\n[[fault]]\nkind = \"xid\"\ngpu = 3\nat_s = 20\nxid = 79\n\n[[fault]]\nkind = \"gpu_lost\"\ngpu = 3\nat_s = 20\n",
    );
    let v = burn(&node, "ok").await;
    let f = failing(&v);
    assert!(
        f.contains(&("xid".to_string(), "gpu3".to_string())),
        "{}",
        v.render_table()
    );
    assert!(f.contains(&("burnin.gpu_present".to_string(), "gpu3".to_string())));
    let lost = v
        .failures()
        .find(|c| c.name == "burnin.gpu_present")
        .expect("lost");
    assert!(
        lost.measured["t_s"].as_f64().expect("t") >= 0.4,
        "{}",
        lost.measured
    );
}

#[tokio::test]
async fn thermal_throttle_power_brake_and_new_ecc_under_load_fail() {
    let node = FakeNode::h100_with(
        "time_scale = 40.0\n\
         [[fault]]\nkind = \"thermal_throttle\"\ngpu = 5\ntemp_c = 93\nsm_clock_mhz = 1100\n\n\
         [[fault]]\nkind = \"power_brake\"\ngpu = 6\n\n\
         [[fault]]\nkind = \"hbm_hot\"\ngpu = 1\ntemp_c = 98\n\n\
         [[fault]]\nkind = \"ecc_uncorrectable\"\ngpu = 2\nat_s = 10\ncount = 4\n",
    );
    let v = burn(&node, "ok").await;
    let f = failing(&v);
    for expected in [
        ("burnin.temp_max", "gpu5"),
        ("burnin.throttle", "gpu5"),
        ("burnin.sm_clock", "gpu5"),
        ("burnin.throttle", "gpu6"),
        ("burnin.ecc_new", "gpu2"),
        ("burnin.memory_temp_max", "gpu1"),
    ] {
        assert!(
            f.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} in\n{}",
            v.render_table()
        );
    }
    assert_eq!(f.len(), 6, "{}", v.render_table());
}

#[tokio::test]
async fn power_draw_past_the_board_limit_fails() {
    let scenario = crate::support::fixture("scenarios/h100-healthy.toml")
        .replace("power_load_w = 640", "power_load_w = 900");
    let node = FakeNode::from_scenario(&scenario);
    let v = burn(&node, "ok").await;
    let f = failing(&v);
    assert_eq!(f.len(), 8, "{}", v.render_table());
    assert!(f.iter().all(|(name, _)| name == "burnin.power_max"));
}

#[tokio::test]
async fn missing_nvml_fails_before_running_the_tool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let argv = vec!["touch".to_string(), marker.display().to_string()];
    let cfg = BurnInConfig::new(
        argv,
        Duration::from_secs(1),
        Path::new("/nonexistent/libnvidia-ml.so").into(),
    );
    let v = run_burn_in(&cfg, &profile("h100-sxm-80gb")).await;
    assert_eq!(
        failing(&v),
        vec![("nvml.available".to_string(), "node".to_string())]
    );
    assert!(!marker.exists(), "stress tool must not run blind");
}

#[tokio::test]
async fn a_stress_tool_that_does_not_exist_fails_clearly() {
    let node = FakeNode::h100_with("");
    let cfg = BurnInConfig::new(
        vec!["/nonexistent/gpu_burn".into()],
        Duration::from_secs(1),
        node.lib(),
    );
    let v = run_burn_in(&cfg, &profile("h100-sxm-80gb")).await;
    assert!(
        failing(&v).contains(&("burnin.tool".to_string(), "node".to_string())),
        "{}",
        v.render_table()
    );
}

#[test]
fn output_failure_patterns() {
    for bad in [
        "GPU 1: FAULTY",
        "Diagnostic ... Fail",
        "errors: 12 (WARNING!)",
        "CUDA error: out of memory",
    ] {
        assert!(output_line_fails(bad), "{bad}");
    }
    for good in [
        "10.0%  proc'd: 800   errors: 0   temps: 66 C",
        "GPU 0: OK",
        "Burning for 300 seconds.",
        "no errors",
    ] {
        assert!(!output_line_fails(good), "{good}");
    }
}

fn check_named<'v>(v: &'v Verdict, name: &str, subject: &str) -> &'v kiln_health::Check {
    v.checks
        .iter()
        .find(|c| c.name == name && c.subject == subject)
        .unwrap_or_else(|| panic!("no {name} for {subject}:\n{}", v.render_table()))
}

#[tokio::test]
async fn a_link_downtrained_to_gen3_passes_the_idle_check_but_fails_under_load() {
    let node = FakeNode::h100_with("[[fault]]\nkind = \"pcie_downtrain\"\ngpu = 4\ngen = 3\n");
    // Idle, every GPU's link is downshifted (Gen1) and the static check rightly lets it be.
    let idle = kiln_health::nvml::check_node(&node.lib(), &profile("h100-sxm-80gb"));
    assert!(idle.passed(), "{}", idle.render_table());
    let gen_check = check_named(&idle, "pcie.gen", "gpu4");
    assert_eq!(gen_check.measured["current"], 1, "idle downshift");
    let v = burn(&node, "ok").await;
    assert_eq!(
        failing(&v),
        vec![("burnin.pcie_under_load".to_string(), "gpu4".to_string())],
        "{}",
        v.render_table()
    );
    let c = check_named(&v, "burnin.pcie_under_load", "gpu4");
    assert_eq!(c.measured["gen"], 3);
    assert_eq!(c.measured["width"], 16);
    assert_eq!(c.measured["load"]["basis"], "utilisation");
    assert_eq!(
        c.threshold,
        Some(serde_json::json!({ "gen": 5, "width": 16 }))
    );
    // Healthy GPUs reached Gen5 under load, though they idled at Gen1 before and after the tool.
    assert_eq!(
        check_named(&v, "burnin.pcie_under_load", "gpu0").measured["gen"],
        5
    );
}

#[tokio::test]
async fn nvlink_errors_growing_under_load_fail() {
    // time_scale 40: the 1 s run is about 40 scenario seconds under load; 50 CRC/s and 1 recovery/s grow far past
    // the H100 limits (100 CRC, 0 recoveries) whatever the scheduling jitter.
    let node = FakeNode::h100_with(
        "time_scale = 40.0\n[[fault]]\nkind = \"nvlink_errors\"\ngpu = 6\nlink = 7\ncrc_per_s = 50\nrecovery_per_s = 1\n",
    );
    let v = burn(&node, "ok").await;
    assert_eq!(
        failing(&v),
        vec![("burnin.nvlink_errors".to_string(), "gpu6".to_string())],
        "{}",
        v.render_table()
    );
    let c = check_named(&v, "burnin.nvlink_errors", "gpu6");
    assert!(
        c.measured["crc_growth"].as_u64().expect("crc") > 100,
        "{}",
        c.measured
    );
    assert!(c.measured["recovery_growth"].as_u64().expect("rec") > 0);
    assert_eq!(c.measured["replay_growth"], 0);
    let healthy = check_named(&v, "burnin.nvlink_errors", "gpu0");
    assert_eq!(healthy.measured["crc_growth"], 0);
}

#[tokio::test]
async fn a_gpu_drawing_little_power_under_load_fails() {
    let node = FakeNode::h100_with("[[fault]]\nkind = \"low_power\"\ngpu = 1\npower_w = 210\n");
    let v = burn(&node, "ok").await;
    assert_eq!(
        failing(&v),
        vec![("burnin.power_under_load".to_string(), "gpu1".to_string())],
        "{}",
        v.render_table()
    );
    let c = check_named(&v, "burnin.power_under_load", "gpu1");
    assert_eq!(c.measured["median_w"], 210.0);
    assert_eq!(c.threshold.as_ref().expect("floor")["min_w"], 490.0);
    assert_eq!(
        check_named(&v, "burnin.power_under_load", "gpu0").measured["median_w"],
        640.0
    );
}

#[tokio::test]
async fn gpus_the_tool_never_loads_fail_the_checks_under_load() {
    let node = FakeNode::h100_with("util_load_pct = 20\n");
    let v = burn(&node, "ok").await;
    let f = failing(&v);
    assert_eq!(f.len(), 24, "{}", v.render_table());
    for g in 0..8 {
        for name in [
            "burnin.sm_clock",
            "burnin.pcie_under_load",
            "burnin.power_under_load",
        ] {
            assert!(
                f.contains(&(name.to_string(), format!("gpu{g}"))),
                "{name} gpu{g}"
            );
        }
    }
}
