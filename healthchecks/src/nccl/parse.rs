//! Parser for nccl-tests output (`all_reduce_perf` and friends), text and `-J` JSON.
//!
//! Real logs vary by version: the `root` column is absent in old versions, `#wrong` may be `N/A` (validation off)
//! or an error magnitude (`0e+00`, old versions), multi-node runs list ranks on several hosts, NCCL_DEBUG=INFO noise
//! is interleaved, and a hung or killed run stops mid-table. The parser keeps going through all of that and records
//! what it could not read in `errors`; only input with no nccl-tests marker at all is rejected.

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
}

impl NcclReport {
    /// True when the run reached its footer (it did not hang or die mid-table).
    pub fn completed(&self) -> bool {
        self.avg_busbw_gbps.is_some()
    }
}

/// Parses nccl-tests output: text as printed on stdout, or the JSON document written by `-J`.
pub fn parse(input: &str) -> Result<NcclReport, ParseError> {
    let trimmed = input.trim_start();
    if trimmed.starts_with('{') {
        return super::parse_json::parse_json(trimmed);
    }
    parse_text(input)
}

/// Column layout learnt from the table header, when there is one.
#[derive(Debug, Default, Clone, Copy)]
struct Layout {
    /// The header names a `root` column.
    has_root: Option<bool>,
    /// The header names a `redop` column.
    has_redop: Option<bool>,
    /// Fields per placement (4 normally, 8 with per-iteration statistics).
    per_side: usize,
}

#[derive(Debug, Default)]
struct TextState {
    report_collective: Option<String>,
    nccl_version: Option<String>,
    header_ranks: Option<u32>,
    devices: Vec<RankDevice>,
    rows: Vec<ResultRow>,
    avg_busbw_gbps: Option<f64>,
    out_of_bounds: Option<u64>,
    errors: Vec<String>,
    layout: Layout,
    saw_marker: bool,
}

fn parse_text(input: &str) -> Result<NcclReport, ParseError> {
    let mut st = TextState {
        layout: Layout {
            per_side: 4,
            ..Layout::default()
        },
        ..TextState::default()
    };
    let mut lines = 0usize;
    for raw in input.lines() {
        lines += 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if st.nccl_version.is_none() {
            st.nccl_version = nccl_version_in(line);
        }
        if is_failure_line(line) {
            // NCCL WARN alone may come from any NCCL program; the test harness's own failure lines are nccl-tests.
            st.saw_marker |= line.contains("Test ");
            st.errors.push(line.to_string());
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            parse_comment(comment.trim(), &mut st);
            continue;
        }
        parse_data_line(line, &mut st);
    }
    if !st.saw_marker {
        return Err(ParseError::NotNcclTests { lines });
    }
    if st.avg_busbw_gbps.is_none() {
        st.errors.push(format!(
            "output ends before the footer after {} result rows (run hung, was killed or failed)",
            st.rows.len()
        ));
    }
    let hosts = hosts_in_order(&st.devices);
    let ranks = if st.devices.is_empty() {
        st.header_ranks.unwrap_or(0)
    } else {
        u32::try_from(st.devices.len()).unwrap_or(u32::MAX)
    };
    let collective = st
        .report_collective
        .clone()
        .unwrap_or_else(|| infer_collective(&st.rows, ranks).to_string());
    Ok(NcclReport {
        collective,
        nccl_version: st.nccl_version,
        ranks,
        hosts,
        rows: st.rows,
        avg_busbw_gbps: st.avg_busbw_gbps,
        out_of_bounds: st.out_of_bounds,
        errors: st.errors,
        devices: st.devices,
    })
}

pub(super) fn hosts_in_order(devices: &[RankDevice]) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for d in devices {
        if !hosts.contains(&d.host) {
            hosts.push(d.host.clone());
        }
    }
    hosts
}

/// Strips the `_perf` suffix and any directory from a program name (`/opt/nccl-tests/build/all_reduce_perf`).
pub(super) fn collective_from_program(program: &str) -> Option<String> {
    let base = program.trim().rsplit('/').next()?.trim();
    let name = base.strip_suffix("_perf").unwrap_or(base);
    (!name.is_empty()).then(|| name.to_string())
}

fn is_failure_line(line: &str) -> bool {
    line.contains("NCCL WARN")
        || line.contains("NCCL ERROR")
        || line.contains("Test NCCL failure")
        || line.contains("Test CUDA failure")
        || line.contains("Test failure")
        || line.starts_with("# error:")
}

/// Finds `NCCL version 2.18.3+cuda12.2` (INFO line or banner) and returns `2.18.3`.
fn nccl_version_in(line: &str) -> Option<String> {
    let idx = line.find("NCCL version ")?;
    let token = line[idx + "NCCL version ".len()..]
        .split_whitespace()
        .next()?;
    let version = token.split('+').next()?;
    let looks_like_version = version.split('.').count() >= 2
        && version
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    looks_like_version.then(|| version.to_string())
}

fn parse_comment(comment: &str, st: &mut TextState) {
    let tokens: Vec<&str> = comment.split_whitespace().collect();
    if let Some(program) = comment.strip_prefix("Collective test starting:") {
        st.saw_marker = true;
        st.report_collective = collective_from_program(program);
    } else if tokens.first() == Some(&"nThread") {
        st.saw_marker = true;
        let value_after = |key: &str| {
            tokens
                .iter()
                .position(|t| *t == key)
                .and_then(|i| tokens.get(i + 1))
                .and_then(|v| v.parse::<u32>().ok())
        };
        if let (Some(threads), Some(gpus)) = (value_after("nThread"), value_after("nGpus")) {
            st.header_ranks = Some(threads.saturating_mul(gpus));
        }
    } else if comment.starts_with("Using devices") {
        st.saw_marker = true;
    } else if tokens.first() == Some(&"Rank") {
        if let Some(device) = parse_rank_line(&tokens)
            && !st.devices.iter().any(|d| d.rank == device.rank)
        {
            st.devices.push(device);
        }
    } else if tokens.contains(&"size") && (tokens.contains(&"busbw") || tokens.contains(&"algbw")) {
        st.saw_marker = true;
        st.layout.has_root = Some(tokens.contains(&"root"));
        st.layout.has_redop = Some(tokens.contains(&"redop"));
        st.layout.per_side = if tokens.contains(&"i_min") { 8 } else { 4 };
    } else if let Some(rest) = comment.strip_prefix("Out of bounds values") {
        st.saw_marker = true;
        st.out_of_bounds = value_after_colon(rest).and_then(|v| v.parse().ok());
    } else if let Some(rest) = comment.strip_prefix("Avg bus bandwidth") {
        st.saw_marker = true;
        st.avg_busbw_gbps = value_after_colon(rest)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite());
    }
}

fn value_after_colon(rest: &str) -> Option<&str> {
    rest.split_once(':')?.1.split_whitespace().next()
}

/// `Rank  0 Group  0 Pid  1234 on  host-01 device  0 [0x18] NVIDIA H100 80GB HBM3` (Group is absent in old versions).
fn parse_rank_line(tokens: &[&str]) -> Option<RankDevice> {
    let after = |key: &str| {
        tokens
            .iter()
            .position(|t| *t == key)
            .and_then(|i| tokens.get(i + 1))
            .copied()
    };
    let rank = after("Rank")?.parse().ok()?;
    let host = after("on")?.to_string();
    let device_pos = tokens.iter().position(|t| *t == "device")?;
    let device = tokens.get(device_pos + 1)?.parse().ok()?;
    let mut rest = tokens.get(device_pos + 2..).unwrap_or_default().iter();
    let bus_id = match rest.clone().next() {
        Some(t) if t.starts_with('[') => {
            rest.next();
            t.trim_matches(|c| c == '[' || c == ']').to_string()
        }
        _ => String::new(),
    };
    let gpu_name = rest.copied().collect::<Vec<_>>().join(" ");
    Some(RankDevice {
        rank,
        host,
        device,
        bus_id,
        gpu_name,
    })
}

fn parse_data_line(line: &str, st: &mut TextState) {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    // Result rows start with two unsigned integers; anything else (NCCL INFO noise, mpirun chatter) is skipped.
    let (Some(size), Some(count)) = (
        tokens.first().and_then(|t| t.parse::<u64>().ok()),
        tokens.get(1).and_then(|t| t.parse::<u64>().ok()),
    ) else {
        return;
    };
    match parse_row(size, count, &tokens, st.layout) {
        Some(row) => {
            st.saw_marker = true;
            st.rows.push(row);
        }
        None => st
            .errors
            .push(format!("unreadable or truncated result row: {line}")),
    }
}

fn parse_row(size_bytes: u64, count: u64, tokens: &[&str], layout: Layout) -> Option<ResultRow> {
    let dtype = tokens.get(2)?;
    if dtype.parse::<f64>().is_ok() {
        return None;
    }
    let mut idx = 3;
    let mut redop = None;
    let has_redop = layout
        .has_redop
        .unwrap_or_else(|| tokens.get(idx).is_some_and(|t| t.parse::<f64>().is_err()));
    if has_redop {
        let op = tokens.get(idx)?;
        if op.parse::<f64>().is_ok() {
            return None;
        }
        redop = (*op != "none").then(|| op.to_string());
        idx += 1;
    }
    let mut values: Vec<&str> = tokens.get(idx..)?.to_vec();
    // A trailing timestamp (`-T`): `2025-01-01 12:00:00`.
    while values
        .last()
        .is_some_and(|t| t.contains(':') || t.matches('-').count() == 2)
    {
        values.pop();
    }
    let per_side = layout.per_side.max(4);
    let has_root = layout.has_root.unwrap_or(values.len() == 2 * per_side + 1);
    let mut root = None;
    if has_root {
        root = Some(values.first()?.parse::<i64>().ok()?);
        values.remove(0);
    }
    if values.len() != 2 * per_side {
        return None;
    }
    let out_of_place = parse_placement(&values[..4])?;
    let in_place = parse_placement(&values[per_side..per_side + 4])?;
    Some(ResultRow {
        size_bytes,
        count,
        dtype: dtype.to_string(),
        redop,
        root,
        out_of_place,
        in_place,
    })
}

fn parse_placement(fields: &[&str]) -> Option<PlacementResult> {
    let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    Some(PlacementResult {
        time_us: number(fields.first()?)?,
        algbw_gbps: number(fields.get(1)?)?,
        busbw_gbps: number(fields.get(2)?)?,
        wrong: parse_wrong(fields.get(3)?)?,
    })
}

/// `#wrong` is a count (`0`, `1e+06`), `N/A` when validation is off, or an error magnitude in old versions
/// (`0e+00`, `1.2e-03`): any non-zero magnitude counts as at least one wrong element.
pub(super) fn parse_wrong(field: &str) -> Option<Option<u64>> {
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
pub(super) fn infer_collective(rows: &[ResultRow], ranks: u32) -> &'static str {
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
