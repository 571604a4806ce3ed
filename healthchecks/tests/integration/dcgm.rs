//! DCGM diag JSON over fixtures written from both documented shapes (4.x entity results, 3.x `gpu_id`
//! results): passes, failures with DCGM_FR codes, warnings, skips, iterations, runtime errors and bad input.

use kiln_health::dcgm::{DcgmFormat, DcgmParseError, DcgmStatus, judge_dcgm, parse_diag};
use kiln_health::verdict::{Check, CheckStatus};
use proptest::prelude::*;
use serde_json::json;

use crate::support::fixture;

fn find<'a>(checks: &'a [Check], name: &str, subject: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name && c.subject == subject)
        .unwrap_or_else(|| panic!("no {name} for {subject} in {checks:#?}"))
}

#[test]
fn v4_pass_with_leading_noise() {
    let d = parse_diag(&fixture("dcgm/v4_pass_r3.json")).expect("parses");
    assert_eq!(d.format, DcgmFormat::Entity);
    assert_eq!(d.dcgm_version.as_deref(), Some("4.1.1"));
    assert_eq!(d.driver_version.as_deref(), Some("550.90.07"));
    assert_eq!(d.level, None, "the JSON does not carry the level");
    assert_eq!(d.gpus_listed, (0..8).collect::<Vec<u32>>());
    assert_eq!(d.gpus_seen(), (0..8).collect::<Vec<u32>>());
    assert_eq!(d.tests.len(), 7);
    assert_eq!(d.tests[2].name, "memory");
    assert_eq!(d.tests[2].category, "Hardware");
    assert_eq!(d.tests[2].summary, Some(DcgmStatus::Pass));
    let d = d.with_level(3);
    let checks = judge_dcgm(&d, 8);
    assert!(
        checks.iter().all(|c| c.status == CheckStatus::Pass),
        "{checks:#?}"
    );
    assert_eq!(
        find(&checks, "dcgm.memory", "node")
            .measured
            .as_array()
            .map(Vec::len),
        Some(8)
    );
    assert!(find(&checks, "dcgm.run", "node").reason.contains("(r3)"));
}

#[test]
fn v4_failures_warnings_and_skips() {
    let d = parse_diag(&fixture("dcgm/v4_memory_fail.json")).expect("parses");
    let memory = d.tests.iter().find(|t| t.name == "memory").unwrap();
    assert_eq!(memory.summary, Some(DcgmStatus::Fail));
    let gpu3 = memory.results.iter().find(|r| r.gpu() == Some(3)).unwrap();
    assert_eq!(gpu3.status, DcgmStatus::Fail);
    assert_eq!(gpu3.warnings[0].error_id, Some(52));
    assert_eq!(
        gpu3.warnings[0].error_name.as_deref(),
        Some("DCGM_FR_FAULTY_MEMORY")
    );
    assert_eq!(gpu3.info, ["Allocated 79800 MB of 81559 MB"]);

    let checks = judge_dcgm(&d, 8);
    let mem = find(&checks, "dcgm.memory", "gpu3");
    assert!(mem.failed());
    assert_eq!(
        mem.measured,
        json!({ "status": "fail", "errors": ["DCGM_FR_FAULTY_MEMORY"] })
    );
    assert!(
        mem.reason.contains("DCGM_FR_FAULTY_MEMORY (52, isolate)"),
        "{}",
        mem.reason
    );
    assert!(mem.reason.contains("Allocated 79800 MB"));
    let unknown = find(&checks, "dcgm.diagnostic", "gpu6");
    assert!(unknown.failed());
    assert_eq!(
        unknown.measured["errors"],
        json!([4000]),
        "unknown ids stay numbers"
    );
    let power = find(&checks, "dcgm.targeted_power", "gpu5");
    assert_eq!(power.status, CheckStatus::Note);
    assert!(power.reason.contains("DCGM_FR_TARGET_POWER"));
    let bw = find(&checks, "dcgm.memory_bandwidth", "gpu0");
    assert_eq!(bw.status, CheckStatus::Note);
    assert!(bw.reason.contains("skipped") && bw.reason.contains("not supported"));
    assert!(find(&checks, "dcgm.pcie", "node").status == CheckStatus::Pass);
    assert_eq!(
        checks.iter().filter(|c| c.failed()).count(),
        2,
        "{checks:#?}"
    );
}

#[test]
fn legacy_shape_pass_and_fail() {
    let d = parse_diag(&fixture("dcgm/v3_pass_r3.json")).expect("parses");
    assert_eq!(d.format, DcgmFormat::Legacy);
    assert_eq!(d.dcgm_version.as_deref(), Some("3.3.7"));
    assert_eq!(d.gpus_listed.len(), 8);
    assert_eq!(d.gpus_seen().len(), 8);
    let checks = judge_dcgm(&d, 8);
    assert!(checks.iter().all(|c| !c.failed()), "{checks:#?}");
    assert!(checks.iter().any(|c| c.name == "dcgm.targeted_stress"));
    assert!(checks.iter().any(|c| c.name == "dcgm.persistence_mode"));

    let d =
        parse_diag(&fixture("dcgm/v3_fail.json")).expect("noise lines before the JSON are skipped");
    let checks = judge_dcgm(&d, 8);
    let pm = find(&checks, "dcgm.persistence_mode", "gpu0");
    assert!(pm.failed());
    assert!(
        pm.reason
            .contains("DCGM_FR_PERSISTENCE_MODE (29, config) Persistence mode"),
        "{}",
        pm.reason
    );
    let pcie = find(&checks, "dcgm.pcie", "gpu2");
    assert!(pcie.failed());
    assert!(pcie.reason.contains("DCGM_FR_PCIE_GENERATION"));
    assert!(pcie.reason.contains("info: GPU 2 host-to-device bandwidth"));
}

#[test]
fn legacy_level_1_counts_the_listed_gpus() {
    let doc = r#"{"DCGM GPU Diagnostic": {"test_categories": [{"category": "Deployment", "tests": [
        {"name": "Denylist", "results": [{"status": "Pass"}]},
        {"name": "Persistence Mode", "results": [{"status": "Pass"}]}
    ]}]}, "version": "3.3.7", "GPU Device IDs": ["2330", "2330", "2330", "2330"]}"#;
    let d = parse_diag(doc).expect("parses").with_level(1);
    assert!(d.gpus_seen().is_empty());
    let checks = judge_dcgm(&d, 4);
    assert!(checks.iter().all(|c| !c.failed()), "{checks:#?}");
    assert!(find(&judge_dcgm(&d, 8), "dcgm.gpus", "node").failed());
}

#[test]
fn fewer_gpus_than_expected_fails() {
    let d = parse_diag(&fixture("dcgm/v4_four_gpus.json")).expect("parses");
    let checks = judge_dcgm(&d, 8);
    let gpus = find(&checks, "dcgm.gpus", "node");
    assert!(gpus.failed());
    assert_eq!(gpus.measured, json!([0, 1, 2, 3]));
    assert_eq!(gpus.threshold, Some(json!({ "min_gpus": 8 })));
    assert!(!find(&judge_dcgm(&d, 4), "dcgm.gpus", "node").failed());
}

#[test]
fn no_results_and_runtime_errors_fail() {
    let d = parse_diag(&fixture("dcgm/no_results.json")).expect("parses");
    assert!(find(&judge_dcgm(&d, 8), "dcgm.run", "node").failed());
    let d = parse_diag(&fixture("dcgm/runtime_error.json")).expect("parses");
    assert!(
        d.runtime_error
            .as_deref()
            .unwrap()
            .contains("unable to establish a connection")
    );
    let checks = judge_dcgm(&d, 8);
    assert!(
        find(&checks, "dcgm.run", "node")
            .reason
            .contains("could not run")
    );
    assert!(find(&checks, "dcgm.gpus", "node").failed());
}

#[test]
fn iterations_are_merged() {
    let d = parse_diag(&fixture("dcgm/iterations.json")).expect("parses");
    assert_eq!(d.iterations, 2);
    assert_eq!(d.tests.len(), 14);
    let checks = judge_dcgm(&d, 2);
    let pcie = find(&checks, "dcgm.pcie", "gpu1");
    assert!(pcie.failed());
    assert!(pcie.reason.contains("DCGM_FR_PCI_REPLAY_RATE (3, triage)"));
}

#[test]
fn truncated_garbage_and_foreign_json_are_clear_errors() {
    match parse_diag(&fixture("dcgm/truncated.json")) {
        Err(DcgmParseError::Malformed { line, .. }) => assert!(line > 1),
        other => panic!("truncated: {other:?}"),
    }
    match parse_diag(&fixture("dcgm/garbage.txt")) {
        Err(e @ DcgmParseError::Malformed { .. }) => {
            assert!(e.to_string().contains("truncated or malformed"))
        }
        other => panic!("garbage: {other:?}"),
    }
    assert!(matches!(
        parse_diag("no json at all\n"),
        Err(DcgmParseError::NoJson)
    ));
    assert!(matches!(
        parse_diag("{\"nccl\": 1}"),
        Err(DcgmParseError::NotDiag)
    ));
    let bad = r#"{"DCGM Diagnostic": {"test_categories": [{"category": "x", "tests": 5}]}}"#;
    match parse_diag(bad) {
        Err(DcgmParseError::Shape { path, .. }) => {
            assert!(path.ends_with("test_categories[0].tests"))
        }
        other => panic!("shape: {other:?}"),
    }
}

#[test]
fn unknown_or_missing_status_fails_and_gpu_ids_lists_expand() {
    let doc = r#"{"DCGM GPU Diagnostic": {"test_categories": [{"category": "Hardware", "tests": [
        {"name": "Diagnostic", "results": [{"gpu_ids": "0,1", "status": "PASS"}, {"gpu_id": 2}, {"gpu_id": "3", "status": "Exploded"}]}
    ]}]}}"#;
    let d = parse_diag(doc).expect("parses");
    assert_eq!(d.gpus_seen(), [0, 1, 2, 3]);
    let checks = judge_dcgm(&d, 4);
    assert!(find(&checks, "dcgm.diagnostic", "gpu2").failed());
    let exploded = find(&checks, "dcgm.diagnostic", "gpu3");
    assert!(exploded.failed());
    assert!(exploded.reason.contains("\"Exploded\""));
    assert_eq!(exploded.measured, json!("Exploded"));
}

#[test]
fn serialization_is_stable() {
    let d = parse_diag(&fixture("dcgm/v4_memory_fail.json")).expect("parses");
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["format"], "entity");
    assert_eq!(v["tests"][2]["results"][3]["status"], "fail");
    assert_eq!(v["tests"][2]["results"][3]["entity_group"], "GPU");
    assert_eq!(
        v["tests"][2]["results"][3]["warnings"][0]["error_name"],
        "DCGM_FR_FAULTY_MEMORY"
    );
    let back: kiln_health::dcgm::DcgmDiag = serde_json::from_value(v).unwrap();
    assert_eq!(back, d);
}

proptest! {
    #[test]
    fn parse_never_panics(text in ".{0,300}") {
        let _ = parse_diag(&text);
    }

    #[test]
    fn truncating_a_valid_document_never_panics(cut in 0usize..18000) {
        let full = fixture("dcgm/v4_pass_r3.json");
        let cut = cut.min(full.len());
        let end = (0..=cut).rev().find(|i| full.is_char_boundary(*i)).unwrap_or(0);
        let _ = parse_diag(&full[..end]);
    }
}
