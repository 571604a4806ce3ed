//! nvbandwidth text output (github.com/NVIDIA/nvbandwidth) and its judgement.
//!
//! Each testcase prints `Running <name>.`, then one or more matrices: a description line ending in its unit
//! (`memcpy CE CPU(row) -> GPU(column) bandwidth (GB/s)`), a line of column labels, one line per row (label, then
//! one cell per column, `N/A` where there is no measurement), a blank line and `SUM <name> <total>`. Bidirectional
//! testcases print several matrices (`Read1`, `Read2`, `Total`). A testcase that does not apply prints `Waived`;
//! a failing one prints `ERROR: …`.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::BandwidthParseError;
use crate::verdict::Check;

/// One matrix of one testcase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NvbandwidthTestcase {
    /// Testcase key (`host_to_device_memcpy_ce`), from its `Running` line or its `SUM` line.
    pub name: String,
    /// The description line as printed (says which side is the row and which the column).
    pub description: String,
    /// Unit from the description's last parentheses (`GB/s`; latency testcases print `ns`).
    pub unit: String,
    /// Row labels as printed (`0`, `1`, …; the CPU is row 0 of a host testcase).
    pub row_labels: Vec<String>,
    /// Column labels as printed.
    pub column_labels: Vec<String>,
    /// `cells[row][column]`; `None` for `N/A`.
    pub cells: Vec<Vec<Option<f64>>>,
    /// The `SUM` line's total; `None` when the output stops before it.
    pub sum: Option<f64>,
}

/// Everything read from one nvbandwidth run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NvbandwidthResult {
    /// `nvbandwidth Version: v0.8` when printed.
    pub version: Option<String>,
    /// Every matrix, in output order.
    pub testcases: Vec<NvbandwidthTestcase>,
    /// `Waived` lines (a testcase that does not apply to this system, e.g. peer copies on one GPU).
    pub waived: Vec<String>,
    /// `ERROR` lines and matrices that could not be read.
    pub errors: Vec<String>,
}

impl NvbandwidthResult {
    /// The first matrix of testcase `name`.
    pub fn testcase(&self, name: &str) -> Option<&NvbandwidthTestcase> {
        self.testcases.iter().find(|t| t.name == name)
    }
}

/// Per-GPU floors, GB/s; `None` is not gated. Embeddable in a SKU profile (`[sku.gates.nvbandwidth]`-style).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvbandwidthFloors {
    /// Host→device copy per GPU (`host_to_device_memcpy_ce`).
    pub h2d_min_gbps: Option<f64>,
    /// Device→host copy per GPU (`device_to_host_memcpy_ce`).
    pub d2h_min_gbps: Option<f64>,
    /// Device→device copy per GPU pair, every off-diagonal cell (`device_to_device_memcpy_read_ce`).
    pub d2d_min_gbps: Option<f64>,
}

/// Parses nvbandwidth's text output. Fails only when no matrix, `Waived` or `ERROR` line is found at all.
pub fn parse_nvbandwidth(text: &str) -> Result<NvbandwidthResult, BandwidthParseError> {
    let mut result = NvbandwidthResult::default();
    let mut running: Option<String> = None;
    let mut current: Option<NvbandwidthTestcase> = None;
    let mut lines = 0usize;
    for raw in text.lines() {
        lines += 1;
        let line = raw.trim();
        if let Some(mut open) = current.take() {
            match matrix_line(&mut open, line) {
                MatrixLine::Consumed => {
                    current = Some(open);
                    continue;
                }
                MatrixLine::Ended => result.testcases.push(open),
                MatrixLine::Broken(why) => {
                    result.errors.push(format!(
                        "{}: unreadable matrix line {line:?}: {why}",
                        open.name
                    ));
                    result.testcases.push(open);
                }
            }
        }
        if line.is_empty() {
            continue;
        }
        if let Some(v) = line.strip_prefix("nvbandwidth Version:") {
            result.version = Some(v.trim().to_string());
        } else if let Some(name) = line.strip_prefix("Running ") {
            running = Some(name.trim().trim_end_matches('.').trim().to_string());
        } else if line.starts_with("Waived") {
            // nvbandwidth prints a waived testcase's status without its name (and without a `Running` line).
            result.waived.push(line.to_string());
        } else if line.starts_with("ERROR") || line.starts_with("Error") {
            result.errors.push(
                running
                    .as_ref()
                    .map_or(line.to_string(), |n| format!("{n}: {line}")),
            );
        } else if let Some(rest) = line
            .strip_prefix("SUM ")
            .or_else(|| line.strip_prefix("&&&& PERF "))
        {
            apply_sum(&mut result, rest);
        } else if let Some(unit) = description_unit(line) {
            current = Some(NvbandwidthTestcase {
                name: running.clone().unwrap_or_default(),
                description: line.to_string(),
                unit,
                row_labels: Vec::new(),
                column_labels: Vec::new(),
                cells: Vec::new(),
                sum: None,
            });
        }
    }
    if let Some(open) = current.take() {
        result.testcases.push(open);
    }
    if result.testcases.is_empty() && result.waived.is_empty() && result.errors.is_empty() {
        return Err(BandwidthParseError::NotToolOutput {
            tool: "nvbandwidth",
            lines,
        });
    }
    for t in &result.testcases {
        if t.cells.is_empty() {
            result.errors.push(format!(
                "{}: matrix {:?} has no rows",
                t.name, t.description
            ));
        }
    }
    Ok(result)
}

enum MatrixLine {
    Consumed,
    Ended,
    Broken(String),
}

fn matrix_line(m: &mut NvbandwidthTestcase, line: &str) -> MatrixLine {
    if line.is_empty() {
        return if m.column_labels.is_empty() {
            MatrixLine::Consumed
        } else {
            MatrixLine::Ended
        };
    }
    let tokens: Vec<&str> = line.split_whitespace().collect();
    if m.column_labels.is_empty() {
        if tokens.iter().any(|t| t.contains('.')) {
            return MatrixLine::Broken("expected column labels".to_string());
        }
        m.column_labels = tokens.iter().map(|t| t.to_string()).collect();
        return MatrixLine::Consumed;
    }
    if tokens.len() != m.column_labels.len() + 1 {
        return MatrixLine::Broken(format!(
            "{} cells for {} columns",
            tokens.len().saturating_sub(1),
            m.column_labels.len()
        ));
    }
    let mut cells = Vec::with_capacity(m.column_labels.len());
    for cell in &tokens[1..] {
        if cell.eq_ignore_ascii_case("N/A") {
            cells.push(None);
        } else {
            match cell.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => cells.push(Some(v)),
                _ => return MatrixLine::Broken(format!("cell {cell:?} is not a bandwidth")),
            }
        }
    }
    m.row_labels.push(tokens[0].to_string());
    m.cells.push(cells);
    MatrixLine::Consumed
}

/// `memcpy CE CPU(row) -> GPU(column) bandwidth (GB/s)` → `GB/s`.
fn description_unit(line: &str) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    if !(lower.contains("bandwidth") || lower.contains("latency")) {
        return None;
    }
    let inner = line.strip_suffix(')')?;
    let open = inner.rfind('(')?;
    let unit = &inner[open + 1..];
    (!unit.is_empty() && !unit.contains(char::is_whitespace)).then(|| unit.to_string())
}

/// `SUM host_to_device_memcpy_ce 443.40` (or `&&&& PERF key value unit`): the total of the latest open matrix.
fn apply_sum(result: &mut NvbandwidthResult, rest: &str) {
    let mut fields = rest.split_whitespace();
    let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
        result.errors.push(format!("unreadable SUM line: {rest}"));
        return;
    };
    let value = value
        .trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '/')
        .parse::<f64>()
        .ok();
    match result.testcases.iter_mut().rev().find(|t| t.sum.is_none()) {
        Some(t) => {
            if t.name.is_empty() {
                t.name = key.to_string();
            }
            t.sum = value;
        }
        None => result
            .errors
            .push(format!("SUM line without a matrix: {rest}")),
    }
}

/// Which testcases feed each gate, best first: nvbandwidth's copy-engine cases (what aznhc runs), then the SM ones.
const H2D_CASES: [&str; 2] = ["host_to_device_memcpy_ce", "host_to_device_memcpy_sm"];
const D2H_CASES: [&str; 2] = ["device_to_host_memcpy_ce", "device_to_host_memcpy_sm"];
const D2D_CASES: [&str; 4] = [
    "device_to_device_memcpy_read_ce",
    "device_to_device_memcpy_write_ce",
    "device_to_device_memcpy_read_sm",
    "device_to_device_memcpy_write_sm",
];

/// Judges nvbandwidth results: one check per GPU for H2D and D2H (`bandwidth.h2d`, `bandwidth.d2h`, subject
/// `gpuN`), one per ordered GPU pair for D2D (`bandwidth.d2d`, subject `gpuA-gpuB`, the diagonal skipped). A gated
/// testcase that is missing, waived or has an `N/A` cell fails. Unset floors give no checks.
pub fn judge_nvbandwidth(result: &NvbandwidthResult, floors: &NvbandwidthFloors) -> Vec<Check> {
    let mut checks = Vec::new();
    let gates = [
        (
            "bandwidth.h2d",
            "host→device",
            &H2D_CASES[..],
            floors.h2d_min_gbps,
            false,
        ),
        (
            "bandwidth.d2h",
            "device→host",
            &D2H_CASES[..],
            floors.d2h_min_gbps,
            false,
        ),
        (
            "bandwidth.d2d",
            "device↔device",
            &D2D_CASES[..],
            floors.d2d_min_gbps,
            true,
        ),
    ];
    for (name, what, cases, floor, pairwise) in gates {
        let Some(floor) = floor else { continue };
        let Some(tc) = cases.iter().find_map(|c| result.testcase(c)) else {
            checks.push(Check::fail(
                name,
                "node",
                json!(null),
                Some(json!({ "min_gbps": floor })),
                &format!(
                    "nvbandwidth output has no {what} result ({}); it was not run, was waived or failed",
                    cases.join(" or ")
                ),
            ));
            continue;
        };
        if tc.cells.is_empty() {
            checks.push(Check::fail(
                name,
                "node",
                json!(null),
                Some(json!({ "min_gbps": floor })),
                &format!("{} printed no matrix rows", tc.name),
            ));
            continue;
        }
        if pairwise {
            judge_pairs(tc, name, floor, &mut checks);
        } else {
            judge_per_gpu(tc, name, what, floor, &mut checks);
        }
    }
    checks
}

/// Host testcases: the CPU is the row, each GPU a column; a GPU's figure is its column's lowest cell.
fn judge_per_gpu(
    tc: &NvbandwidthTestcase,
    name: &str,
    what: &str,
    floor: f64,
    checks: &mut Vec<Check>,
) {
    for (col, label) in tc.column_labels.iter().enumerate() {
        let subject = format!("gpu{label}");
        let cells: Vec<Option<f64>> = tc
            .cells
            .iter()
            .map(|r| r.get(col).copied().flatten())
            .collect();
        let threshold = Some(json!({ "min_gbps": floor }));
        if cells.iter().any(Option::is_none) {
            checks.push(Check::fail(
                name,
                &subject,
                json!(null),
                threshold,
                &format!("{}: no {what} measurement (N/A) for GPU {label}", tc.name),
            ));
            continue;
        }
        let worst = cells
            .iter()
            .flatten()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let reason = if worst >= floor {
            format!(
                "{what} {worst:.2} GB/s reaches the floor {floor} GB/s ({})",
                tc.name
            )
        } else {
            format!(
                "{what} {worst:.2} GB/s is below the floor {floor} GB/s ({}): check the PCIe link",
                tc.name
            )
        };
        checks.push(Check::judged(
            worst >= floor,
            name,
            &subject,
            worst,
            threshold,
            &reason,
        ));
    }
}

/// Device testcases: every off-diagonal cell is one GPU pair.
fn judge_pairs(tc: &NvbandwidthTestcase, name: &str, floor: f64, checks: &mut Vec<Check>) {
    for (row, row_label) in tc.row_labels.iter().enumerate() {
        for (col, col_label) in tc.column_labels.iter().enumerate() {
            if row_label == col_label {
                continue;
            }
            let subject = format!("gpu{row_label}-gpu{col_label}");
            let threshold = Some(json!({ "min_gbps": floor }));
            match tc
                .cells
                .get(row)
                .and_then(|r| r.get(col))
                .copied()
                .flatten()
            {
                None => checks.push(Check::fail(
                    name,
                    &subject,
                    json!(null),
                    threshold,
                    &format!(
                        "{}: no peer measurement (N/A) between GPU {row_label} and GPU {col_label}",
                        tc.name
                    ),
                )),
                Some(v) => {
                    let reason = if v >= floor {
                        format!(
                            "peer copy {v:.2} GB/s reaches the floor {floor} GB/s ({})",
                            tc.name
                        )
                    } else {
                        format!(
                            "peer copy {v:.2} GB/s is below the floor {floor} GB/s ({}): check NVLink/NVSwitch",
                            tc.name
                        )
                    };
                    checks.push(Check::judged(
                        v >= floor,
                        name,
                        &subject,
                        v,
                        threshold,
                        &reason,
                    ));
                }
            }
        }
    }
}
