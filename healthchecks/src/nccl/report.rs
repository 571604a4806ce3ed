//! What a parsed nccl-tests run is (the `kiln health nccl-parse --json` contract) and helpers both readers share.
//!
//! Kept apart from the text and JSON readers so neither imports the other: `parse` dispatches to both, and both
//! build these types.

use serde::{Deserialize, Serialize};

/// Why a text could not be read as nccl-tests output.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Neither a nccl-tests header, a result row, a footer nor a test failure line was found.
    #[error(
        "input is not nccl-tests output (no header, result rows or footer found in {lines} lines)"
    )]
    NotNcclTests {
        /// How many lines were examined.
        lines: usize,
    },
    /// The input looked like JSON but is not a nccl-tests `-J` document.
    #[error("input is JSON but not a nccl-tests result document")]
    BadJson {
        /// What serde_json could not accept.
        #[source]
        source: serde_json::Error,
    },
}

/// Timing and bandwidth for one placement (out-of-place or in-place) of one message size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementResult {
    /// Average time of one collective, in microseconds.
    pub time_us: f64,
    /// Algorithm bandwidth (bytes / time), GB/s. Not what the judge uses.
    pub algbw_gbps: f64,
    /// Bus bandwidth (algbw × the collective's factor), GB/s: what the judge compares with the profile.
    pub busbw_gbps: f64,
    /// Number of wrong elements found by validation; `None` when validation was off (`N/A`).
    pub wrong: Option<u64>,
}

/// One result row: one message size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// Message size in bytes.
    pub size_bytes: u64,
    /// Element count.
    pub count: u64,
    /// Element type as printed (`float`, `half`, `bfloat16`, …).
    pub dtype: String,
    /// Reduction operation (`sum`, …); `None` for collectives without one or when the column is absent.
    pub redop: Option<String>,
    /// Root rank as printed (`-1` when the collective has none); `None` when the version has no root column.
    pub root: Option<i64>,
    /// Out-of-place measurement.
    pub out_of_place: PlacementResult,
    /// In-place measurement.
    pub in_place: PlacementResult,
}

/// One rank from the `# Using devices` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankDevice {
    /// Global rank number.
    pub rank: u32,
    /// Host name the rank ran on.
    pub host: String,
    /// CUDA device index on that host.
    pub device: u32,
    /// PCI bus id as printed (`0000:18:00` or `0x18`).
    pub bus_id: String,
    /// GPU model name as printed.
    pub gpu_name: String,
}

/// Everything read from one nccl-tests run. Serializes to the `kiln health nccl-parse --json` contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NcclReport {
    /// Collective name without `_perf` (`all_reduce`, `all_gather`, …), or `unknown` when it cannot be told.
    pub collective: String,
    /// NCCL library version (`2.x.y`) when the output shows it.
    pub nccl_version: Option<String>,
    /// Number of ranks in the run.
    pub ranks: u32,
    /// Hosts the ranks ran on, in order of first appearance.
    pub hosts: Vec<String>,
    /// One row per message size.
    pub rows: Vec<ResultRow>,
    /// The footer's average bus bandwidth, GB/s; `None` when the run did not finish.
    pub avg_busbw_gbps: Option<f64>,
    /// The footer's out-of-bounds count (non-zero means corrupted results); `None` when absent.
    pub out_of_bounds: Option<u64>,
    /// Failure lines (NCCL WARN, test failures) and parser notes (truncation, unreadable rows).
    pub errors: Vec<String>,
    /// Per-rank device details (not part of the JSON contract; kept for flagging ranks and hosts).
    #[serde(skip)]
    pub devices: Vec<RankDevice>,
    /// What the reader tolerated without calling it a failure: MPI line prefixes stripped, blank or extra columns,
    /// fields it ignored. Not part of the JSON contract and never judged; evidence for a human reading a verdict.
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl NcclReport {
    /// True when the run reached its footer (it did not hang or die mid-table).
    pub fn completed(&self) -> bool {
        self.avg_busbw_gbps.is_some()
    }
}

pub(crate) fn hosts_in_order(devices: &[RankDevice]) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for d in devices {
        if !hosts.contains(&d.host) {
            hosts.push(d.host.clone());
        }
    }
    hosts
}

/// Strips the `_perf` suffix and any directory from a program name (`/opt/nccl-tests/build/all_reduce_perf`).
pub(crate) fn collective_from_program(program: &str) -> Option<String> {
    let base = program.trim().rsplit('/').next()?.trim();
    let name = base.strip_suffix("_perf").unwrap_or(base);
    (!name.is_empty()).then(|| name.to_string())
}

/// `#wrong` is a count (`0`, `1e+06`), `N/A` when validation is off, or an error magnitude in old versions
/// (`0e+00`, `1.2e-03`): any non-zero magnitude counts as at least one wrong element.
pub(crate) fn parse_wrong(field: &str) -> Option<Option<u64>> {
    if field.eq_ignore_ascii_case("n/a") {
        return Some(None);
    }
    let value = field
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)?;
    // Float-to-int `as` saturates, which is what we want for absurd counts.
    Some(Some(if value > 0.0 {
        value.ceil().max(1.0) as u64
    } else {
        0
    }))
}

/// Tells the collective from the columns and the busbw/algbw ratio when the output does not name it.
pub(crate) fn infer_collective(rows: &[ResultRow], ranks: u32) -> &'static str {
    let Some(row) = rows.iter().rev().find(|r| r.out_of_place.algbw_gbps > 0.0) else {
        return "unknown";
    };
    let n = f64::from(ranks.max(1));
    let ratio = row.out_of_place.busbw_gbps / row.out_of_place.algbw_gbps;
    let close = |factor: f64| (ratio - factor).abs() <= 0.02 * factor.max(0.1);
    let rooted = row.root.is_some_and(|r| r >= 0);
    match (row.redop.is_some(), rooted) {
        (true, true) => "reduce",
        (false, true) => "broadcast",
        (true, false) if close(2.0 * (n - 1.0) / n) => "all_reduce",
        (true, false) if close((n - 1.0) / n) => "reduce_scatter",
        (false, false) if close((n - 1.0) / n) => "all_gather",
        _ => "unknown",
    }
}

impl NcclReport {
    /// A plain-text summary and one line per message size (human output of `kiln health nccl-parse`).
    pub fn render_table(&self) -> String {
        let mut out = format!(
            "collective {}  ranks {}  hosts {}  nccl {}\n",
            self.collective,
            self.ranks,
            if self.hosts.is_empty() {
                "-".to_string()
            } else {
                self.hosts.join(",")
            },
            self.nccl_version.as_deref().unwrap_or("-"),
        );
        out.push_str(&format!(
            "{:>12} {:>12} {:>8} {:>11} {:>11} {:>8} {:>11} {:>11} {:>8}\n",
            "size_bytes",
            "count",
            "dtype",
            "oop_algbw",
            "oop_busbw",
            "oop_wrong",
            "ip_algbw",
            "ip_busbw",
            "ip_wrong"
        ));
        let wrong = |w: Option<u64>| w.map_or("N/A".to_string(), |w| w.to_string());
        for r in &self.rows {
            out.push_str(&format!(
                "{:>12} {:>12} {:>8} {:>11.2} {:>11.2} {:>8} {:>11.2} {:>11.2} {:>8}\n",
                r.size_bytes,
                r.count,
                r.dtype,
                r.out_of_place.algbw_gbps,
                r.out_of_place.busbw_gbps,
                wrong(r.out_of_place.wrong),
                r.in_place.algbw_gbps,
                r.in_place.busbw_gbps,
                wrong(r.in_place.wrong),
            ));
        }
        out.push_str(&format!(
            "avg busbw {} GB/s  out-of-bounds {}\n",
            self.avg_busbw_gbps
                .map_or("- (run did not finish)".to_string(), |v| v.to_string()),
            self.out_of_bounds
                .map_or("-".to_string(), |v| v.to_string()),
        ));
        for e in &self.errors {
            out.push_str(&format!("error: {e}\n"));
        }
        out
    }
}
