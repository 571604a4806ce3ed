//! kiln's real NVML path (nvml-wrapper + raw bindings, loaded at run time) against fake-nvml scenarios:
//! a healthy node passes and every injected fault is caught with the right check, subject and reason.

use std::path::Path;

use kiln_health::nvml::check_node;
use kiln_health::{CheckStatus, Verdict};

use crate::support::{FakeNode, profile};

fn check(node: &FakeNode) -> Verdict {
    check_node(&node.lib(), &profile("h100-sxm-80gb"))
}

/// The single failing check, asserting there is exactly one.
fn only_failure(v: &Verdict) -> &kiln_health::Check {
    let failures: Vec<_> = v.failures().collect();
    assert_eq!(
        failures.len(),
        1,
        "expected one failure:\n{}",
        v.render_table()
    );
    failures[0]
}

#[test]
fn healthy_node_passes_every_check() {
    let v = check(&FakeNode::h100_with(""));
    assert!(v.passed(), "{}", v.render_table());
    // 8 GPUs × 15 checks each + availability + count.
    assert_eq!(
        v.checks
            .iter()
            .filter(|c| c.status == CheckStatus::Pass)
            .count(),
        2 + 8 * 15
    );
    let hbm = v
        .checks
        .iter()
        .find(|c| c.name == "thermal.memory_temp")
        .expect("HBM check via field values");
    assert_eq!(hbm.measured, 36);
    let links = v
        .checks
        .iter()
        .find(|c| c.name == "nvlink.active")
        .expect("nvlink check");
    assert_eq!(links.measured["active"], 18);
    assert_eq!(v.evidence["gpus"].as_array().map(Vec::len), Some(8));
    assert_eq!(
        v.evidence["gpus"][0]["uuid"],
        "GPU-fa4e0000-0000-4000-8000-000000000000"
    );
    assert_eq!(v.evidence["driver_version"], "550.54.15");
}

#[test]
fn xid_79_is_caught_on_its_gpu() {
    let v = check(&FakeNode::h100_with(
        "[[fault]]\nkind = \"xid\"\ngpu = 3\nxid = 79\n",
    ));
    let f = only_failure(&v);
    assert_eq!((f.name.as_str(), f.subject.as_str()), ("xid", "gpu3"));
    assert_eq!(f.measured, 79);
    assert!(f.reason.contains("fallen off the bus"), "{}", f.reason);
    assert_eq!(f.threshold, Some(serde_json::json!("rma")));
}

#[test]
fn application_xid_is_recorded_but_does_not_fail() {
    let v = check(&FakeNode::h100_with(
        "[[fault]]\nkind = \"xid\"\ngpu = 2\nxid = 13\n",
    ));
    assert!(v.passed());
    assert!(
        v.checks
            .iter()
            .any(|c| c.name == "xid" && c.status == CheckStatus::Note && c.subject == "gpu2")
    );
}

#[test]
fn pending_row_remap_is_caught_through_raw_bindings() {
    let v = check(&FakeNode::h100_with(
        "[[fault]]\nkind = \"row_remap_pending\"\ngpu = 1\n",
    ));
    let f = only_failure(&v);
    assert_eq!(
        (f.name.as_str(), f.subject.as_str()),
        ("row_remap.pending", "gpu1")
    );
    assert!(f.reason.contains("reset"));
}

#[test]
fn row_remap_failure_and_too_many_uncorrectable_remaps_fail() {
    let v = check(&FakeNode::h100_with(
        "[[fault]]\nkind = \"row_remap_failure\"\ngpu = 0\n\n[[fault]]\nkind = \"row_remaps_uncorrectable\"\ngpu = 7\ncount = 512\n",
    ));
    let names: Vec<(&str, &str)> = v
        .failures()
        .map(|c| (c.name.as_str(), c.subject.as_str()))
        .collect();
    assert_eq!(names.len(), 2, "{}", v.render_table());
    assert!(names.contains(&("row_remap.failure", "gpu0")));
    assert!(names.contains(&("row_remap.uncorrectable", "gpu7")));
}

#[test]
fn pcie_x8_is_caught() {
    let v = check(&FakeNode::h100_with(
        "[[fault]]\nkind = \"pcie_width\"\ngpu = 2\nwidth = 8\n",
    ));
    let f = only_failure(&v);
    assert_eq!(
        (f.name.as_str(), f.subject.as_str()),
        ("pcie.width", "gpu2")
    );
    assert_eq!(f.measured, 8);
    assert_eq!(f.threshold, Some(serde_json::json!(16)));
}

#[test]
fn nvlink_5_down_is_caught() {
    let v = check(&FakeNode::h100_with(
        "[[fault]]\nkind = \"nvlink_down\"\ngpu = 4\nlink = 5\n",
    ));
    let f = only_failure(&v);
    assert_eq!(
        (f.name.as_str(), f.subject.as_str()),
        ("nvlink.active", "gpu4")
    );
    assert_eq!(f.measured["inactive_links"], serde_json::json!([5]));
    assert_eq!(f.measured["active"], 17);
}

#[test]
fn thermal_throttle_under_load_is_caught() {
    let node = FakeNode::h100_with(
        "[[fault]]\nkind = \"thermal_throttle\"\ngpu = 5\ntemp_c = 93\nsm_clock_mhz = 1100\n",
    );
    // Idle: the fault only shows under load.
    assert!(check(&node).passed());
    std::fs::write(node.load_file(), "").expect("load on");
    let v = check(&node);
    let failing: Vec<(&str, &str)> = v
        .failures()
        .map(|c| (c.name.as_str(), c.subject.as_str()))
        .collect();
    assert_eq!(failing.len(), 2, "{}", v.render_table());
    assert!(failing.contains(&("thermal.temp", "gpu5")));
    assert!(failing.contains(&("clocks.throttle", "gpu5")));
}

#[test]
fn hot_hbm_under_load_is_caught_through_field_values() {
    let node = FakeNode::h100_with("[[fault]]\nkind = \"hbm_hot\"\ngpu = 7\ntemp_c = 99\n");
    std::fs::write(node.load_file(), "").expect("load on");
    let v = check(&node);
    let f = only_failure(&v);
    assert_eq!(
        (f.name.as_str(), f.subject.as_str()),
        ("thermal.memory_temp", "gpu7")
    );
    assert_eq!(f.measured, 99);
}

#[test]
fn retired_pages_over_the_limit_and_pending_retirement_fail() {
    let v = check(&FakeNode::h100_with(
        "[[fault]]\nkind = \"retired_pages\"\ngpu = 6\nsingle_bit = 40\ndouble_bit = 23\npending = true\n",
    ));
    let failing: Vec<&str> = v.failures().map(|c| c.name.as_str()).collect();
    assert_eq!(failing.len(), 2, "{}", v.render_table());
    assert!(failing.contains(&"retired_pages.total") && failing.contains(&"retired_pages.pending"));
    let total = v
        .failures()
        .find(|c| c.name == "retired_pages.total")
        .expect("total");
    assert_eq!(total.measured, 63);
}

#[test]
fn uncorrectable_ecc_is_caught() {
    let v = check(&FakeNode::h100_with(
        "[[fault]]\nkind = \"ecc_uncorrectable\"\ngpu = 0\ncount = 3\n",
    ));
    let f = only_failure(&v);
    assert_eq!(
        (f.name.as_str(), f.subject.as_str(), f.measured.as_u64()),
        ("ecc.uncorrectable", "gpu0", Some(3))
    );
}

#[test]
fn a_gpu_that_does_not_answer_fails_without_crashing() {
    let v = check(&FakeNode::h100_with(
        "[[fault]]\nkind = \"gpu_lost\"\ngpu = 6\n",
    ));
    let f = only_failure(&v);
    assert_eq!(
        (f.name.as_str(), f.subject.as_str()),
        ("gpu.responds", "gpu6")
    );
    assert!(
        f.measured
            .as_str()
            .expect("error text")
            .contains("fell off the bus"),
        "{}",
        f.measured
    );
}

#[test]
fn missing_gpu_and_wrong_sku_fail_inventory() {
    let node = FakeNode::from_scenario(
        &crate::support::fixture("scenarios/h100-healthy.toml")
            .replace("gpu_count = 8", "gpu_count = 7"),
    );
    let v = check(&node);
    let f = only_failure(&v);
    assert_eq!(
        (f.name.as_str(), f.measured.as_u64()),
        ("gpu.count", Some(7))
    );

    let v = check_node(&FakeNode::h100_with("").lib(), &profile("h200-sxm-141gb"));
    let names: Vec<&str> = v.failures().map(|c| c.name.as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == "inventory.name").count(), 8);
    assert_eq!(
        names.iter().filter(|n| **n == "inventory.memory").count(),
        8
    );
}

#[test]
fn missing_nvml_is_a_clear_failing_result() {
    let v = check_node(
        Path::new("/nonexistent/libnvidia-ml.so.1"),
        &profile("h100-sxm-80gb"),
    );
    let f = only_failure(&v);
    assert_eq!(f.name, "nvml.available");
    assert!(
        f.measured
            .as_str()
            .expect("text")
            .contains("/nonexistent/libnvidia-ml.so.1")
    );
}

#[test]
fn nvml_that_fails_to_initialise_is_a_clear_failing_result() {
    let v = check(&FakeNode::from_scenario("this is not a scenario"));
    let f = only_failure(&v);
    assert_eq!(f.name, "nvml.available");
}

#[test]
fn samples_carry_utilisation_the_current_pcie_link_and_nvlink_counters_idle_and_loaded() {
    use kiln_health::nvml::{GpuNvml, NvlinkErrorCounts};
    let node = FakeNode::h100_with(
        "[[fault]]\nkind = \"pcie_downtrain\"\ngpu = 2\ngen = 4\nwidth = 8\n\n\
         [[fault]]\nkind = \"nvlink_errors\"\ngpu = 1\nlink = 17\ncrc_per_s = 1000000\nreplay_per_s = 1000000\n",
    );
    let nvml = GpuNvml::open(&node.lib()).expect("fake NVML opens");
    let idle = nvml.sample(0).expect("sample");
    assert_eq!(idle.gpu_util_pct, Some(0));
    assert_eq!(
        (idle.pcie_gen_current, idle.pcie_width_current),
        (Some(1), Some(16))
    );
    assert_eq!(idle.nvlink_errors, Some(NvlinkErrorCounts::default()));
    assert_eq!(nvml.sample(2).expect("gpu2").pcie_width_current, Some(8));
    std::fs::write(node.load_file(), "").expect("load on");
    let first = nvml.sample(1).expect("gpu1");
    std::thread::sleep(std::time::Duration::from_millis(30));
    let loaded = nvml.sample(0).expect("sample");
    assert_eq!(loaded.gpu_util_pct, Some(100));
    assert_eq!(loaded.pcie_gen_current, Some(5));
    let downtrained = nvml.sample(2).expect("gpu2");
    assert_eq!(
        (downtrained.pcie_gen_current, downtrained.pcie_width_current),
        (Some(4), Some(8))
    );
    let later = nvml
        .sample(1)
        .expect("gpu1")
        .nvlink_errors
        .expect("counters");
    let before = first.nvlink_errors.expect("counters");
    // 30 ms under load at a million per second: the counters (on link 17, the last one summed) grew.
    assert!(
        later.crc > before.crc && later.replay > before.replay,
        "{before:?} → {later:?}"
    );
    assert_eq!(later.recovery, 0);
    std::fs::remove_file(node.load_file()).expect("load off");
    let after = nvml
        .sample(1)
        .expect("gpu1")
        .nvlink_errors
        .expect("counters");
    assert!(after.crc >= later.crc, "counters never go back");
    // The static check sees the idle, downshifted links and the x8 width.
    let v = check(&node);
    assert_eq!(only_failure(&v).name, "pcie.width");
}

#[test]
fn a_gpu_without_nvlink_reports_no_counters() {
    let scenario = crate::support::fixture("scenarios/h100-healthy.toml")
        .replace("nvlink_links = 18", "nvlink_links = 0");
    let node = FakeNode::from_scenario(&scenario);
    let nvml = kiln_health::nvml::GpuNvml::open(&node.lib()).expect("opens");
    assert_eq!(nvml.sample(0).expect("sample").nvlink_errors, None);
}

#[test]
fn without_the_per_link_call_the_all_link_totals_are_read() {
    let node = FakeNode::h100_with(
        "nvlink_counters_per_link = false\n[[fault]]\nkind = \"nvlink_errors\"\ngpu = 0\nlink = 3\nrecovery_per_s = 1000000\n",
    );
    let nvml = kiln_health::nvml::GpuNvml::open(&node.lib()).expect("opens");
    let idle = nvml.sample(0).expect("sample").nvlink_errors;
    assert_eq!(idle, Some(kiln_health::nvml::NvlinkErrorCounts::default()));
    std::fs::write(node.load_file(), "").expect("load on");
    let _ = nvml.sample(0).expect("opens the load interval");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let loaded = nvml
        .sample(0)
        .expect("sample")
        .nvlink_errors
        .expect("totals");
    assert!(loaded.recovery > 0, "{loaded:?}");
    assert_eq!((loaded.crc, loaded.replay), (0, 0));
}
