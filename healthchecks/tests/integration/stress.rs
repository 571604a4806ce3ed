//! Stress-tool profiles: argv templates, detection, parsers and the judge over fixtures written from each tool's
//! documented output.

use kiln_health::CheckStatus;
use kiln_health::stress::{
    GFLOPS, STRESS_LEVEL, StressParseError, StressTool, detect, detect_output, judge_stress,
    judge_stress_output, parse,
};
use proptest::prelude::*;

use crate::support::fixture;

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn argv_templates_and_serde_names() {
    assert_eq!(
        StressTool::GpuBurn.argv(300),
        argv(&["gpu_burn", "-tc", "300"])
    );
    assert_eq!(StressTool::GpuFryer.argv(60), argv(&["gpu-fryer", "60"]));
    assert_eq!(
        StressTool::DcgmTargetedStress.argv(60),
        argv(&["dcgmi", "diag", "-r", "targeted_stress", "-j"])
    );
    let names: Vec<String> = StressTool::ALL
        .iter()
        .map(|t| {
            serde_json::to_value(t)
                .expect("json")
                .as_str()
                .expect("str")
                .to_string()
        })
        .collect();
    assert_eq!(names, ["gpu_burn", "gpu_fryer", "dcgm_targeted_stress"]);
    let back: StressTool = serde_json::from_str("\"gpu_fryer\"").expect("parse");
    assert_eq!(back, StressTool::GpuFryer);
}

#[test]
fn detect_by_program_name_through_wrappers() {
    assert_eq!(
        detect(&argv(&["/opt/gpu-burn/gpu_burn", "-tc", "60"])),
        Some(StressTool::GpuBurn)
    );
    assert_eq!(
        detect(&argv(&["timeout", "600", "gpu-burn", "60"])),
        Some(StressTool::GpuBurn)
    );
    assert_eq!(
        detect(&argv(&[
            "numactl",
            "-N",
            "0",
            "/usr/local/bin/gpu-fryer",
            "60"
        ])),
        Some(StressTool::GpuFryer)
    );
    assert_eq!(
        detect(&argv(&["dcgmi", "diag", "-r", "targeted_stress", "-j"])),
        Some(StressTool::DcgmTargetedStress)
    );
    assert_eq!(detect(&argv(&["dcgmi", "discovery", "-l"])), None);
    assert_eq!(detect(&argv(&["sh", "-c", "echo", "sim-stress"])), None);
    assert_eq!(detect(&[]), None);
    assert_eq!(
        detect_output("50.0%  proc'd: 1 (2 Gflop/s)   errors: 0"),
        Some(StressTool::GpuBurn)
    );
}

#[test]
fn gpu_burn_healthy_node() {
    let r = parse(
        StressTool::GpuBurn,
        &fixture("stress/gpu_burn_h100_8gpu_ok.txt"),
    )
    .expect("parses");
    assert_eq!(r.per_gpu.len(), 8);
    assert!(r.complete);
    assert_eq!(r.errors_total, 0);
    for g in &r.per_gpu {
        assert_eq!(g.unit, GFLOPS);
        let v = g.value.expect("per-GPU figure");
        assert!((60_500.0..61_900.0).contains(&v), "gpu{} {v}", g.gpu);
        assert!(!g.faulty && g.problems.is_empty());
    }
    let checks = judge_stress(&r, 0.90);
    assert_eq!(checks.len(), 16, "throughput and sdc per GPU");
    assert!(
        checks.iter().all(|c| c.status == CheckStatus::Pass),
        "{checks:#?}"
    );
}

#[test]
fn gpu_burn_faulty_gpu_is_sdc_and_slow_gpu_fails_throughput() {
    let r = parse(
        StressTool::GpuBurn,
        &fixture("stress/gpu_burn_h100_8gpu_faulty_slow.txt"),
    )
    .expect("parses");
    assert_eq!(
        r.per_gpu[3].errors, 2,
        "errors of the interval before the summary reset are kept"
    );
    assert!(r.per_gpu[3].faulty);
    assert_eq!(r.errors_total, 2);
    let checks = judge_stress(&r, 0.90);
    let failed: Vec<(&str, &str)> = checks
        .iter()
        .filter(|c| c.failed())
        .map(|c| (c.name.as_str(), c.subject.as_str()))
        .collect();
    assert_eq!(
        failed,
        [("stress.throughput", "gpu6"), ("stress.sdc", "gpu3")]
    );
    let sdc = checks
        .iter()
        .find(|c| c.name == "stress.sdc" && c.failed())
        .expect("sdc");
    assert!(sdc.reason.starts_with("sdc:"), "{}", sdc.reason);
    let slow = checks
        .iter()
        .find(|c| c.subject == "gpu6" && c.name == "stress.throughput")
        .expect("slow");
    let ratio = slow.threshold.as_ref().expect("threshold")["ratio_of_best"].as_f64();
    assert_eq!(ratio, Some(0.90));
    assert!(slow.measured.as_f64().is_some_and(|v| v < 52_000.0));
    // Loosen the ratio: only the SDC remains.
    assert_eq!(
        judge_stress(&r, 0.75).iter().filter(|c| c.failed()).count(),
        1
    );
}

#[test]
fn gpu_burn_single_total_gives_notes_not_failures() {
    let r = parse(
        StressTool::GpuBurn,
        &fixture("stress/gpu_burn_single_total.txt"),
    )
    .expect("parses");
    assert_eq!(r.per_gpu.len(), 4);
    assert!(r.per_gpu.iter().all(|g| g.value.is_none() && !g.faulty));
    assert!(r.node_total.is_some_and(|t| t > 200_000.0));
    let checks = judge_stress(&r, 0.90);
    assert!(!checks.iter().any(|c| c.failed()), "{checks:#?}");
    let notes = checks
        .iter()
        .filter(|c| c.status == CheckStatus::Note && c.name == "stress.throughput")
        .count();
    assert_eq!(notes, 4);
}

#[test]
fn simulator_stand_in_output_reads_as_gpu_burn() {
    // What sim/src/burnin.rs STRESS_SCRIPT prints for two GPUs.
    let sim = "Burning for 300 seconds.\n50.0%  proc'd: 6400 (61000 Gflop/s) - 6400 (61000 Gflop/s)   errors: 0 - 0   temps: 68 C - 68 C\n100.0%  proc'd: 12800 (61000 Gflop/s) - 12800 (61000 Gflop/s)   errors: 0 - 0   temps: 68 C - 68 C\nTested 2 GPUs:\n\tGPU 0: OK\n\tGPU 1: OK\n";
    let checks = judge_stress_output(&argv(&["sh", "-c", "script", "sim-stress"]), sim, 0.9);
    assert_eq!(checks.len(), 4, "{checks:#?}");
    assert!(
        checks.iter().all(|c| c.status == CheckStatus::Pass),
        "{checks:#?}"
    );
    let single = "50.0%  proc'd: 6400 (61000 Gflop/s)   errors: 0   temps: 68 C\nTested 2 GPUs:\n\tGPU 0: OK\n\tGPU 1: OK\n";
    let r = parse(StressTool::GpuBurn, single).expect("parses");
    assert_eq!(r.node_total, Some(61000.0));
    assert!(!judge_stress(&r, 0.9).iter().any(|c| c.failed()));
}

#[test]
fn gpu_burn_died_and_cut_short() {
    let r = parse(
        StressTool::GpuBurn,
        &fixture("stress/gpu_burn_died_cut_short.txt"),
    )
    .expect("parses");
    assert!(!r.complete);
    assert!(
        r.per_gpu[2].problems.iter().any(|p| p.contains("died")),
        "{:?}",
        r.per_gpu[2]
    );
    let checks = judge_stress(&r, 0.90);
    assert!(
        checks
            .iter()
            .any(|c| c.name == "stress.tool" && c.subject == "gpu2" && c.failed())
    );
    assert!(
        checks
            .iter()
            .any(|c| c.name == "stress.complete" && c.status == CheckStatus::Note)
    );
    assert!(
        !checks
            .iter()
            .any(|c| c.name == "stress.sdc" && c.status == CheckStatus::Pass),
        "no SDC pass without the final list"
    );
}

#[test]
fn gpu_fryer_human_output_with_a_slow_throttled_gpu() {
    let text = fixture("stress/gpu_fryer_h100_8gpu_one_slow.txt");
    assert_eq!(detect_output(&text), Some(StressTool::GpuFryer));
    let r = parse(StressTool::GpuFryer, &text).expect("parses");
    assert_eq!(r.per_gpu.len(), 8);
    assert_eq!(r.per_gpu[0].value, Some(51494.0));
    assert_eq!(r.per_gpu[5].value, Some(44120.0));
    assert_eq!(
        r.per_gpu[5].problems.len(),
        3,
        "{:?}",
        r.per_gpu[5].problems
    );
    assert!(r.complete);
    let checks = judge_stress(&r, 0.90);
    let failed: Vec<(&str, &str)> = checks
        .iter()
        .filter(|c| c.failed())
        .map(|c| (c.name.as_str(), c.subject.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            ("stress.throughput", "gpu5"),
            ("stress.tool", "gpu5"),
            ("stress.tool", "gpu5"),
            ("stress.tool", "gpu5")
        ]
    );
    let sdc = checks
        .iter()
        .find(|c| c.name == "stress.sdc")
        .expect("sdc note");
    assert_eq!(
        (sdc.status, sdc.subject.as_str()),
        (CheckStatus::Note, "node")
    );
}

#[test]
fn gpu_fryer_json_lines() {
    let r = parse(
        StressTool::GpuFryer,
        &fixture("stress/gpu_fryer_h100_4gpu.jsonl"),
    )
    .expect("parses");
    assert_eq!(r.per_gpu.len(), 4);
    assert_eq!(
        r.per_gpu[2].value,
        Some(51602.0),
        "flops per second as Gflop/s"
    );
    assert!(r.complete);
    assert!(!judge_stress(&r, 0.90).iter().any(|c| c.failed()));
}

#[test]
fn dcgm_targeted_stress_v4_and_v3() {
    let r = parse(
        StressTool::DcgmTargetedStress,
        &fixture("stress/dcgm_targeted_stress_v4_pass.json"),
    )
    .expect("parses");
    assert_eq!(r.per_gpu.len(), 4);
    assert_eq!(r.per_gpu[1].value, Some(1933.0));
    assert_eq!(r.per_gpu[1].unit, STRESS_LEVEL);
    assert!(
        judge_stress(&r, 0.9)
            .iter()
            .all(|c| c.status == CheckStatus::Pass)
    );

    let r = parse(
        StressTool::DcgmTargetedStress,
        &fixture("stress/dcgm_targeted_stress_v3_pass.json"),
    )
    .expect("parses");
    assert_eq!(
        r.per_gpu.iter().map(|g| g.value).collect::<Vec<_>>(),
        [Some(1911.0), Some(1908.0)]
    );

    let r = parse(
        StressTool::DcgmTargetedStress,
        &fixture("stress/dcgm_targeted_stress_v4_fail.json"),
    )
    .expect("parses");
    assert!(
        r.per_gpu[2].faulty,
        "a miscompare is silent data corruption"
    );
    let checks = judge_stress(&r, 0.9);
    let failed: Vec<(&str, &str)> = checks
        .iter()
        .filter(|c| c.failed())
        .map(|c| (c.name.as_str(), c.subject.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            ("stress.throughput", "gpu1"),
            ("stress.sdc", "gpu2"),
            ("stress.tool", "gpu1"),
            ("stress.tool", "gpu2")
        ]
    );
}

#[test]
fn unreadable_output_fails_never_passes() {
    let cases: [(&[&str], &str); 4] = [
        (&["gpu_burn", "-tc", "60"], ""),
        (
            &["gpu_burn", "-tc", "60"],
            "Couldn't init CUDA: no CUDA-capable device is detected\n",
        ),
        (&["gpu-fryer", "60"], "Error: Unable to burn GPU #0\n"),
        (
            &["dcgmi", "diag", "-r", "targeted_stress", "-j"],
            "Error: unable to connect to host engine\n",
        ),
    ];
    for (words, out) in cases {
        let checks = judge_stress_output(&argv(words), out, 0.9);
        assert_eq!(checks.len(), 1, "{words:?}");
        assert!(
            checks[0].failed() && checks[0].name == "stress.output",
            "{:?}",
            checks[0]
        );
    }
    let unknown = judge_stress_output(
        &argv(&["stress-ng", "--gpu", "8"]),
        "stress-ng: info: passed\n",
        0.9,
    );
    assert!(
        unknown[0].failed() && unknown[0].reason.contains("cannot tell"),
        "{unknown:?}"
    );
    assert!(matches!(
        parse(StressTool::DcgmTargetedStress, "{\"a\": [1, 2]}"),
        Err(StressParseError::NoResults { .. })
    ));
    assert!(matches!(
        parse(StressTool::DcgmTargetedStress, "{ broken"),
        Err(StressParseError::BadDcgmJson { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn stress_parsers_never_panic(input in "\\PC*") {
        for tool in StressTool::ALL {
            if let Ok(r) = parse(tool, &input) {
                let _ = judge_stress(&r, 0.9);
            }
        }
        let _ = judge_stress_output(&[], &input, 0.9);
    }

    #[test]
    fn stress_parsers_never_panic_on_mangled_fixtures(cut in 0usize..12000, noise in "[ -~\\n\\r]{0,80}", at in 0usize..12000) {
        for (tool, name) in [
            (StressTool::GpuBurn, "stress/gpu_burn_h100_8gpu_faulty_slow.txt"),
            (StressTool::GpuFryer, "stress/gpu_fryer_h100_8gpu_one_slow.txt"),
            (StressTool::DcgmTargetedStress, "stress/dcgm_targeted_stress_v4_fail.json"),
        ] {
            let text = fixture(name);
            let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            let cut = bounds.iter().copied().take_while(|i| *i <= cut).last().unwrap_or(0);
            let at = bounds.iter().copied().take_while(|i| *i <= at.min(cut)).last().unwrap_or(0);
            let mangled = format!("{}{}{}", &text[..at], noise, &text[at..cut]);
            if let Ok(r) = parse(tool, &mangled) {
                let _ = judge_stress(&r, 0.9);
            }
        }
    }
}
