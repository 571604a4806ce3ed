//! Judging a DCGM diagnostic: one check kind, `dcgm.<test>`, beside `dcgm.run` and `dcgm.gpus`.

use serde_json::json;

use super::{DcgmDiag, DcgmResult, DcgmStatus, DcgmTest, DcgmWarning, severity_name};
use crate::verdict::{Check, CheckStatus};

/// Checks for a DCGM diagnostic run on a node that should have `expected_gpus` GPUs.
///
/// - `dcgm.run` fails when DCGM reported a runtime error or no test result at all.
/// - `dcgm.gpus` fails when fewer GPUs than expected appear in the results (in a document whose results name
///   no GPU, as legacy r1 runs, the GPUs it lists count).
/// - `dcgm.<test>` (test name in lower case, spaces as `_`): a failing check per entity whose result is Fail (or
///   a status kiln does not know), naming the DCGM_FR code and DCGM's text; a note per Warn or Skip; a failing
///   node check when the test's summary failed but no entity did; otherwise one passing check per test
///   (subject `node`, measured: the entities that passed).
pub fn judge_dcgm(diag: &DcgmDiag, expected_gpus: u32) -> Vec<Check> {
    let mut checks = Vec::new();
    let level = diag.level.map(|l| format!(" (r{l})")).unwrap_or_default();
    let results: usize = diag.tests.iter().map(|t| t.results.len()).sum();
    if let Some(err) = &diag.runtime_error {
        checks.push(Check::fail(
            "dcgm.run",
            "node",
            err.as_str(),
            None,
            &format!("DCGM diagnostic{level} could not run: {err}"),
        ));
    } else if results == 0 {
        checks.push(Check::fail(
            "dcgm.run",
            "node",
            0,
            Some(json!({ "min_results": 1 })),
            &format!("DCGM diagnostic{level} output holds no test results"),
        ));
    } else {
        checks.push(Check::pass(
            "dcgm.run",
            "node",
            json!({ "tests": diag.tests.len(), "results": results, "iterations": diag.iterations }),
            None,
            &format!("DCGM diagnostic{level} ran"),
        ));
    }
    // Results name their GPU, except legacy r1 documents, whose deployment tests are node-wide: there the
    // GPUs the document lists are the ones tested.
    let seen = match diag.gpus_seen() {
        seen if seen.is_empty() => diag.gpus_listed.clone(),
        seen => seen,
    };
    checks.push(Check::judged(
        seen.len() >= expected_gpus as usize,
        "dcgm.gpus",
        "node",
        json!(seen),
        Some(json!({ "min_gpus": expected_gpus })),
        &format!(
            "DCGM must report results for every GPU: {} of {expected_gpus} seen",
            seen.len()
        ),
    ));
    for test in &diag.tests {
        checks.extend(judge_test(test));
    }
    checks
}

fn judge_test(test: &DcgmTest) -> Vec<Check> {
    let name = format!("dcgm.{}", check_suffix(&test.name));
    let mut checks = Vec::new();
    let mut passed = Vec::new();
    for r in &test.results {
        let subject = subject(r);
        match r.status {
            DcgmStatus::Pass => passed.push(subject),
            DcgmStatus::Fail | DcgmStatus::Unknown => {
                checks.push(Check::fail(
                    &name,
                    &subject,
                    measured(r),
                    Some(json!("pass")),
                    &reason(test, r),
                ));
            }
            DcgmStatus::Warn | DcgmStatus::Skip | DcgmStatus::NotRun => {
                checks.push(Check::new(
                    &name,
                    &subject,
                    CheckStatus::Note,
                    measured(r),
                    Some(json!("pass")),
                    &reason(test, r),
                ));
            }
        }
    }
    let entity_failed = checks.iter().any(Check::failed);
    if !entity_failed && matches!(test.summary, Some(DcgmStatus::Fail)) {
        let codes = describe(&test.summary_warnings);
        checks.push(Check::fail(
            &name,
            "node",
            "fail",
            Some(json!("pass")),
            &format!("DCGM {} failed{}", test.name, codes),
        ));
    }
    if checks.is_empty() && !passed.is_empty() {
        checks.push(Check::pass(
            &name,
            "node",
            json!(passed),
            None,
            &format!("DCGM {} passed", test.name),
        ));
    }
    checks
}

/// `Targeted Stress` → `targeted_stress`; `PCIe` → `pcie`.
fn check_suffix(test: &str) -> String {
    let s: String = test
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "unnamed".to_string()
    } else {
        s
    }
}

fn subject(r: &DcgmResult) -> String {
    match (r.gpu(), &r.entity_group, r.entity_id) {
        (Some(gpu), _, _) => format!("gpu{gpu}"),
        (None, Some(group), Some(id)) => format!("{}{id}", group.to_ascii_lowercase()),
        _ => "node".to_string(),
    }
}

/// The status and the DCGM_FR names (or numbers) of the result's errors.
fn measured(r: &DcgmResult) -> serde_json::Value {
    let codes: Vec<serde_json::Value> = r
        .warnings
        .iter()
        .filter_map(|w| match (&w.error_name, w.error_id) {
            (Some(name), _) => Some(json!(name)),
            (None, Some(id)) => Some(json!(id)),
            _ => None,
        })
        .collect();
    let status = match r.status {
        DcgmStatus::Unknown => r.status_text.clone().unwrap_or_default(),
        other => format!("{other:?}").to_lowercase(),
    };
    if codes.is_empty() {
        json!(status)
    } else {
        json!({ "status": status, "errors": codes })
    }
}

fn reason(test: &DcgmTest, r: &DcgmResult) -> String {
    let verb = match r.status {
        DcgmStatus::Fail => "failed".to_string(),
        DcgmStatus::Warn => "warned".to_string(),
        DcgmStatus::Skip => "was skipped".to_string(),
        DcgmStatus::NotRun => "was not run".to_string(),
        DcgmStatus::Pass => "passed".to_string(),
        DcgmStatus::Unknown => format!(
            "reported status {:?}, which kiln does not know",
            r.status_text.as_deref().unwrap_or("")
        ),
    };
    let mut out = format!("DCGM {} {verb}{}", test.name, describe(&r.warnings));
    if !r.info.is_empty() {
        out.push_str(&format!("; info: {}", r.info.join("; ")));
    }
    out
}

/// `: DCGM_FR_FAULTY_MEMORY (52, isolate) text; …`, or nothing when there are no warnings.
fn describe(warnings: &[DcgmWarning]) -> String {
    if warnings.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = warnings
        .iter()
        .map(|w| {
            let mut tags = Vec::new();
            if let Some(id) = w.error_id {
                tags.push(id.to_string());
            }
            if let Some(s) = w.severity {
                tags.push(severity_name(s).map_or(s.to_string(), str::to_string));
            }
            let head = match (&w.error_name, tags.is_empty()) {
                (Some(name), false) => format!("{name} ({}) ", tags.join(", ")),
                (Some(name), true) => format!("{name} "),
                (None, false) => format!("error ({}) ", tags.join(", ")),
                (None, true) => String::new(),
            };
            format!("{head}{}", w.message.trim())
        })
        .collect();
    format!(": {}", parts.join("; "))
}
