//! `dcgmi diag -r targeted_stress -j` output, read for the stress report (the full DCGM diag judgement lives in
//! the `dcgm` module; this reads only the stress test's per-GPU figures and status).
//!
//! The JSON nests tests under `test_categories[].tests[]`, each with `name` (`Targeted Stress` in DCGM 3,
//! `targeted_stress` in DCGM 4) and `results[]`: one entry per GPU with `gpu_ids` / `gpu_id` (DCGM 3) or
//! `entity_id` (DCGM 4), `status` (`Pass`, `Fail`, `Skip`, …), `info` (a string or a list) and `warnings` /
//! `errors` (strings or objects with the text under `warning`, `error` or `message`). The per-GPU figure comes from
//! the info text: `relative stress level N`, or `calculated at approximately N gigaflops` where DCGM prints it.
//! A warning that speaks of miscompares or mismatches is a computation error (silent data corruption).

use serde_json::Value;

use super::{GFLOPS, STRESS_LEVEL, StressParseError, StressReport, StressTool};

/// Test names this reader takes, best first.
const STRESS_TESTS: [&str; 2] = ["targeted_stress", "diagnostic"];

pub(super) fn parse(stdout: &str) -> Result<StressReport, StressParseError> {
    let (Some(start), Some(end)) = (stdout.find('{'), stdout.rfind('}')) else {
        return Err(StressParseError::BadDcgmJson {
            detail: "no JSON object in the output".to_string(),
        });
    };
    let doc: Value =
        serde_json::from_str(stdout.get(start..=end).unwrap_or_default()).map_err(|e| {
            StressParseError::BadDcgmJson {
                detail: e.to_string(),
            }
        })?;
    let mut tests: Vec<(String, &Value)> = Vec::new();
    collect_tests(&doc, &mut tests);
    let chosen = STRESS_TESTS
        .iter()
        .find_map(|want| tests.iter().find(|(name, _)| name == want));
    let mut report = StressReport::new(StressTool::DcgmTargetedStress);
    let Some((name, results)) = chosen else {
        return Err(StressParseError::NoResults {
            tool: StressTool::DcgmTargetedStress,
            lines: stdout.lines().count(),
        });
    };
    if name != "targeted_stress" {
        report.notes.push(format!(
            "no targeted_stress test in the document; read `{name}` instead"
        ));
    }
    for entry in results.as_array().into_iter().flatten() {
        let Some(gpu) = gpu_of(entry) else {
            report
                .notes
                .push(format!("result without a GPU id: {entry}"));
            continue;
        };
        let status = entry
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let info = texts(entry.get("info"));
        let warnings: Vec<String> = ["warnings", "errors", "error"]
            .iter()
            .flat_map(|k| texts(entry.get(*k)))
            .collect();
        let g = report.gpu_mut(gpu);
        if let Some((value, unit)) = info.iter().find_map(|t| figure(t)) {
            g.value = Some(value);
            g.unit = unit.to_string();
        }
        for w in &warnings {
            let lower = w.to_ascii_lowercase();
            if lower.contains("miscompar") || lower.contains("mismatch") {
                g.faulty = true;
                g.errors = g.errors.saturating_add(1);
            }
        }
        match status.to_ascii_lowercase().as_str() {
            "pass" | "skip" | "not run" | "" => {}
            _ => {
                let detail = if warnings.is_empty() {
                    String::new()
                } else {
                    format!(": {}", warnings.join("; "))
                };
                g.problems
                    .push(format!("DCGM {name} status {status}{detail}"));
            }
        }
    }
    if report.per_gpu.is_empty() {
        return Err(StressParseError::NoResults {
            tool: StressTool::DcgmTargetedStress,
            lines: stdout.lines().count(),
        });
    }
    Ok(report.finish())
}

/// Every object with a `name` and a `results` list, the name normalised (`Targeted Stress` → `targeted_stress`).
fn collect_tests<'a>(v: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(map) => {
            if let (Some(name), Some(results)) =
                (map.get("name").and_then(Value::as_str), map.get("results"))
                && results.is_array()
            {
                out.push((
                    name.trim().to_ascii_lowercase().replace([' ', '-'], "_"),
                    results,
                ));
            }
            for child in map.values() {
                collect_tests(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_tests(i, out)),
        _ => {}
    }
}

fn gpu_of(entry: &Value) -> Option<u32> {
    let group_is_gpu = entry
        .get("entity_group")
        .and_then(Value::as_str)
        .is_none_or(|g| g.eq_ignore_ascii_case("gpu"));
    if !group_is_gpu {
        return None;
    }
    ["entity_id", "gpu_id", "gpu_ids"]
        .iter()
        .find_map(|k| match entry.get(*k)? {
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Value::String(s) => s.split(',').next()?.trim().parse().ok(),
            _ => None,
        })
}

/// The texts of an `info` / `warnings` value: a string, a list of strings, or objects holding one.
fn texts(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s.split(", GPU ").map(str::to_string).collect(),
        Some(Value::Array(items)) => items.iter().flat_map(|i| texts(Some(i))).collect(),
        Some(Value::Object(map)) => ["warning", "error", "message", "msg"]
            .iter()
            .filter_map(|k| map.get(*k).and_then(Value::as_str))
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// `GPU 0 relative stress level 1929` or `GPU 0 calculated at approximately 859.08 gigaflops during this test`.
fn figure(text: &str) -> Option<(f64, &'static str)> {
    let number_after = |key: &str| {
        let at = text.find(key)? + key.len();
        text[at..]
            .split_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    number_after("approximately")
        .map(|v| (v, GFLOPS))
        .or_else(|| number_after("relative stress level").map(|v| (v, STRESS_LEVEL)))
}
