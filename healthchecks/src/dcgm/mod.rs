//! DCGM diagnostics: parse `dcgmi diag -r N -j` output and judge it as its own check kind (`dcgm.<test>`).
//!
//! Two documented shapes are read (DCGM's `dcgmi/Diag.cpp` and `nvvs/include/NvvsJsonStrings.h`):
//! - **DCGM 3.x and older** — `{"DCGM GPU Diagnostic": {"test_categories": [{"category", "tests": [{"name",
//!   "results": [{"gpu_id": "0", "status": "Pass"|"Fail"|"Warn"|"Skip", "info": "…", "warnings": [{"warning",
//!   "error_id", "error_category", "error_severity"}]}]}]}]}, "version", "Driver Version Detected", "GPU Device
//!   IDs"}`. Deployment tests carry no `gpu_id` (or one only beside an error) and write an error's text under
//!   `warnings` instead of `warning`; old builds give `"gpu_ids": "0,1,2,3"`.
//! - **DCGM 4.x** — `{"DCGM Diagnostic": {"test_categories": [… {"name", "results": [{"entity_group": "GPU",
//!   "entity_group_id", "entity_id", "status", "info": ["…"], "warnings": [{"warning", "error_id", …}]}],
//!   "test_summary": {"status", …}}]}, "entity_groups": [{"entity_group", "entities": [{"entity_id", …}]}],
//!   "metadata": {"version", "Driver Version Detected"}}`.
//!
//! Either may come wrapped in `{"iterations": [doc, …], "Overall Result"}` (`--iterations`), or be just
//! `{"<root>": {"version", "runtime_error"}}` when the run could not start. DCGM publishes no stable schema, so
//! the reader is lenient about types (ids as strings or numbers, `info` as a string or a list) but never guesses
//! a status: a missing or unknown one is kept as `unknown` and fails.

mod codes;
mod judge;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use codes::{failure_name, severity_name};
pub use judge::judge_dcgm;

/// Why `dcgmi diag -j` output could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DcgmParseError {
    /// No line starts a JSON object.
    #[error("no JSON object in the input (expected `dcgmi diag -j` output)")]
    NoJson,
    /// A JSON object starts but does not parse (truncated output, garbage).
    #[error(
        "the DCGM JSON document is truncated or malformed at line {line}, column {column}: {detail}"
    )]
    Malformed {
        /// Line of the error within the input.
        line: usize,
        /// Column of the error.
        column: usize,
        /// What serde_json reported.
        detail: String,
    },
    /// JSON, but not a DCGM diagnostic document.
    #[error(
        "the JSON object is not DCGM diagnostic output: no \"DCGM Diagnostic\" or \"DCGM GPU Diagnostic\" key"
    )]
    NotDiag,
    /// A diagnostic document whose structure kiln cannot read.
    #[error("DCGM diagnostic output has an unexpected shape at {path}: {detail}")]
    Shape {
        /// JSON path of the offending value.
        path: String,
        /// What was wrong.
        detail: String,
    },
}

/// Which documented layout a document had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DcgmFormat {
    /// `DCGM GPU Diagnostic` root, `gpu_id` per result (DCGM 3.x and older).
    Legacy,
    /// `DCGM Diagnostic` root, `entity_group`/`entity_id` per result (DCGM 4.x).
    Entity,
}

/// Outcome of one test on one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DcgmStatus {
    /// Passed.
    Pass,
    /// Failed.
    Fail,
    /// Passed with a warning.
    Warn,
    /// Skipped (not supported, disabled, or prerequisites missing).
    Skip,
    /// Not run.
    NotRun,
    /// Missing or not a status kiln knows: judged as a failure.
    Unknown,
}

impl DcgmStatus {
    fn parse(text: &str) -> Self {
        match text.trim().to_ascii_lowercase().as_str() {
            "pass" | "passed" => DcgmStatus::Pass,
            "fail" | "failed" => DcgmStatus::Fail,
            "warn" | "warning" => DcgmStatus::Warn,
            "skip" | "skipped" => DcgmStatus::Skip,
            "not run" | "not_run" | "notrun" => DcgmStatus::NotRun,
            _ => DcgmStatus::Unknown,
        }
    }
}

/// One error or warning DCGM attached to a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DcgmWarning {
    /// DCGM's text.
    pub message: String,
    /// Numeric error id (`error_id`), when given.
    pub error_id: Option<u32>,
    /// Its `DCGM_FR_*` name when kiln's table has it.
    pub error_name: Option<String>,
    /// Error category number (`error_category`), when given.
    pub category: Option<u32>,
    /// Error severity number (`error_severity`), when given.
    pub severity: Option<u32>,
}

/// One test's result on one entity (a GPU, or the node for tests without an entity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DcgmResult {
    /// Entity group (`GPU`, `CPU`, `Switch`…), None for node-wide results.
    pub entity_group: Option<String>,
    /// Entity id within the group (the GPU index for `GPU`).
    pub entity_id: Option<u32>,
    /// Outcome.
    pub status: DcgmStatus,
    /// The status text as written, when kiln did not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
    /// Informational messages.
    pub info: Vec<String>,
    /// Errors and warnings with their DCGM_FR codes.
    pub warnings: Vec<DcgmWarning>,
}

impl DcgmResult {
    /// The GPU index when this result is about a GPU.
    pub fn gpu(&self) -> Option<u32> {
        match &self.entity_group {
            Some(g) if g.eq_ignore_ascii_case("gpu") => self.entity_id,
            _ => None,
        }
    }
}

/// One DCGM test (plugin) and its results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DcgmTest {
    /// Category (`Deployment`, `Hardware`, `Integration`, `Stress`…).
    pub category: String,
    /// Test name as DCGM wrote it (`Memory`, `memory`, `targeted_stress`, `PCIe`…).
    pub name: String,
    /// Overall status (`test_summary`, DCGM 4.x), when given.
    pub summary: Option<DcgmStatus>,
    /// Errors attached to the summary (failures not tied to one entity).
    pub summary_warnings: Vec<DcgmWarning>,
    /// Per-entity results.
    pub results: Vec<DcgmResult>,
}

/// A parsed `dcgmi diag -j` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DcgmDiag {
    /// Which layout it had.
    pub format: DcgmFormat,
    /// Diagnostic level (`-r N`). The JSON does not carry it; the caller that ran dcgmi sets it.
    pub level: Option<u8>,
    /// DCGM version, when given.
    pub dcgm_version: Option<String>,
    /// Driver version, when given.
    pub driver_version: Option<String>,
    /// Why the run could not start or finish (`runtime_error`), when given.
    pub runtime_error: Option<String>,
    /// GPU ids the document lists as tested (`entity_groups` or `GPU Device IDs`); empty when not listed.
    pub gpus_listed: Vec<u32>,
    /// Iterations read (1 unless `--iterations`).
    pub iterations: u32,
    /// Every test of every iteration, in document order.
    pub tests: Vec<DcgmTest>,
}

impl DcgmDiag {
    /// The GPUs that appear in any result, sorted.
    pub fn gpus_seen(&self) -> Vec<u32> {
        let mut gpus: Vec<u32> = self
            .tests
            .iter()
            .flat_map(|t| t.results.iter().filter_map(DcgmResult::gpu))
            .collect();
        gpus.sort_unstable();
        gpus.dedup();
        gpus
    }

    /// Sets the level the caller ran (`dcgmi diag -r N`).
    pub fn with_level(mut self, level: u8) -> Self {
        self.level = Some(level);
        self
    }
}

/// Parses `dcgmi diag -j` output; lines before the JSON object (banners, warnings) are skipped.
pub fn parse_diag(text: &str) -> Result<DcgmDiag, DcgmParseError> {
    let root = first_object(text)?;
    if let Some(iterations) = root.get("iterations").and_then(Value::as_array) {
        let mut merged: Option<DcgmDiag> = None;
        for (i, doc) in iterations.iter().enumerate() {
            let one = parse_document(doc, &format!("iterations[{i}]"))?;
            merged = Some(match merged {
                None => one,
                Some(mut m) => {
                    m.iterations += 1;
                    m.tests.extend(one.tests);
                    m.runtime_error = m.runtime_error.or(one.runtime_error);
                    m
                }
            });
        }
        return merged.ok_or(DcgmParseError::Shape {
            path: "iterations".into(),
            detail: "no iteration in the list".into(),
        });
    }
    parse_document(&root, "$")
}

/// The first line-leading `{` from which a DCGM diagnostic object parses (trailing text after it is ignored).
fn first_object(text: &str) -> Result<Value, DcgmParseError> {
    let mut first_error = None;
    let mut saw_other_object = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start().len();
        let start = offset + indent;
        offset += line.len();
        if !line.trim_start().starts_with('{') {
            continue;
        }
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) if is_diag_root(&value) => return Ok(value),
            Some(Ok(_)) => saw_other_object = true,
            Some(Err(err)) => {
                let eof = err.is_eof();
                if first_error.is_none() {
                    first_error = Some(DcgmParseError::Malformed {
                        line: text[..start].matches('\n').count() + err.line(),
                        column: err.column(),
                        // serde_json's text ends with its own position; ours is relative to the input.
                        detail: err
                            .to_string()
                            .rsplit_once(" at line ")
                            .map_or_else(|| err.to_string(), |(head, _)| head.to_string()),
                    });
                }
                // Every later `{` line is inside this unfinished object: stop rather than read its pieces.
                if eof {
                    break;
                }
            }
            None => {}
        }
    }
    Err(match first_error {
        Some(err) => err,
        None if saw_other_object => DcgmParseError::NotDiag,
        None => DcgmParseError::NoJson,
    })
}

fn is_diag_root(v: &Value) -> bool {
    ["DCGM Diagnostic", "DCGM GPU Diagnostic", "iterations"]
        .iter()
        .any(|k| v.get(k).is_some())
}

fn parse_document(doc: &Value, path: &str) -> Result<DcgmDiag, DcgmParseError> {
    let (format, body, root_key) = if let Some(b) = doc.get("DCGM Diagnostic") {
        (DcgmFormat::Entity, b, "DCGM Diagnostic")
    } else if let Some(b) = doc.get("DCGM GPU Diagnostic") {
        (DcgmFormat::Legacy, b, "DCGM GPU Diagnostic")
    } else {
        return Err(DcgmParseError::NotDiag);
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let metadata = doc.get("metadata");
    let mut diag = DcgmDiag {
        format,
        level: doc
            .get("level")
            .and_then(Value::as_u64)
            .and_then(|l| u8::try_from(l).ok()),
        dcgm_version: text(metadata.and_then(|m| m.get("version")))
            .or_else(|| text(doc.get("version")))
            .or_else(|| text(body.get("version"))),
        driver_version: text(metadata.and_then(|m| m.get("Driver Version Detected")))
            .or_else(|| text(doc.get("Driver Version Detected"))),
        runtime_error: text(body.get("runtime_error")),
        gpus_listed: listed_gpus(doc),
        iterations: 1,
        tests: Vec::new(),
    };
    let categories = match body.get("test_categories") {
        None | Some(Value::Null) => return Ok(diag),
        Some(Value::Array(c)) => c,
        Some(_) => {
            return Err(shape(
                &format!("{path}.{root_key}.test_categories"),
                "not a list",
            ));
        }
    };
    for (ci, cat) in categories.iter().enumerate() {
        let cat_path = format!("{path}.{root_key}.test_categories[{ci}]");
        let category = text(cat.get("category")).unwrap_or_default();
        let tests = match cat.get("tests") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(t)) => t,
            Some(_) => return Err(shape(&format!("{cat_path}.tests"), "not a list")),
        };
        for (ti, test) in tests.iter().enumerate() {
            // dcgmi leaves `null` holes in the list where it skipped a test it did not run.
            if test.is_null() {
                continue;
            }
            let test_path = format!("{cat_path}.tests[{ti}]");
            diag.tests.push(parse_test(test, &category, &test_path)?);
        }
    }
    Ok(diag)
}

fn parse_test(test: &Value, category: &str, path: &str) -> Result<DcgmTest, DcgmParseError> {
    let name = test
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| shape(&format!("{path}.name"), "a test has no name"))?
        .to_string();
    let empty = Vec::new();
    let results = match test.get("results") {
        None | Some(Value::Null) => &empty,
        Some(Value::Array(r)) => r,
        Some(_) => return Err(shape(&format!("{path}.results"), "not a list")),
    };
    let mut out = Vec::new();
    for r in results.iter().filter(|r| !r.is_null()) {
        out.extend(parse_result(r));
    }
    let summary = test.get("test_summary");
    Ok(DcgmTest {
        category: category.to_string(),
        name,
        summary: summary
            .and_then(|s| s.get("status"))
            .and_then(Value::as_str)
            .map(DcgmStatus::parse),
        summary_warnings: summary.map(warnings).unwrap_or_default(),
        results: out,
    })
}

/// One result object; a legacy `gpu_ids: "0,1,2"` result stands for one result per GPU listed.
fn parse_result(r: &Value) -> Vec<DcgmResult> {
    let status_text = r.get("status").and_then(Value::as_str);
    let status = status_text.map_or(DcgmStatus::Unknown, DcgmStatus::parse);
    let info = match r.get("info") {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let base = DcgmResult {
        entity_group: None,
        entity_id: None,
        status,
        status_text: (status == DcgmStatus::Unknown)
            .then(|| status_text.unwrap_or("(missing)").to_string()),
        info,
        warnings: warnings(r),
    };
    if let Some(group) = r.get("entity_group").and_then(Value::as_str) {
        return vec![DcgmResult {
            entity_group: Some(group.to_string()),
            entity_id: r.get("entity_id").and_then(as_u32),
            ..base
        }];
    }
    if let Some(id) = r.get("gpu_id").and_then(as_u32) {
        return vec![DcgmResult {
            entity_group: Some("GPU".into()),
            entity_id: Some(id),
            ..base
        }];
    }
    if let Some(list) = r.get("gpu_ids").and_then(Value::as_str) {
        let ids: Vec<u32> = list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        if !ids.is_empty() {
            return ids
                .into_iter()
                .map(|id| DcgmResult {
                    entity_group: Some("GPU".into()),
                    entity_id: Some(id),
                    ..base.clone()
                })
                .collect();
        }
    }
    vec![base]
}

fn warnings(v: &Value) -> Vec<DcgmWarning> {
    let Some(list) = v.get("warnings").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|w| {
            // Legacy deployment tests write the text under `warnings`; newer ones under `warning`.
            let message = w
                .get("warning")
                .or_else(|| w.get("warnings"))
                .and_then(Value::as_str)
                .or_else(|| w.as_str())?
                .to_string();
            let error_id = w.get("error_id").and_then(as_u32);
            Some(DcgmWarning {
                message,
                error_id,
                error_name: error_id.and_then(failure_name).map(str::to_string),
                category: w.get("error_category").and_then(as_u32),
                severity: w.get("error_severity").and_then(as_u32),
            })
        })
        .collect()
}

/// GPU ids listed beside the results: DCGM 4.x `entity_groups`, legacy `GPU Device IDs` (a list per GPU).
fn listed_gpus(doc: &Value) -> Vec<u32> {
    if let Some(groups) = doc.get("entity_groups").and_then(Value::as_array) {
        let mut ids: Vec<u32> = groups
            .iter()
            .filter(|g| {
                g.get("entity_group")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.eq_ignore_ascii_case("gpu"))
            })
            .filter_map(|g| g.get("entities").and_then(Value::as_array))
            .flatten()
            .filter_map(|e| e.get("entity_id").and_then(as_u32))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        return ids;
    }
    match doc.get("GPU Device IDs").and_then(Value::as_array) {
        Some(devs) => (0..devs.len())
            .filter_map(|i| u32::try_from(i).ok())
            .collect(),
        None => Vec::new(),
    }
}

/// A non-negative integer written as a number or a string.
fn as_u32(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn shape(path: &str, detail: &str) -> DcgmParseError {
    DcgmParseError::Shape {
        path: path.to_string(),
        detail: detail.to_string(),
    }
}
