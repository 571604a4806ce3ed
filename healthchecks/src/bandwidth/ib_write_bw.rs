//! perftest `ib_write_bw` output (github.com/linux-rdma/perftest) and its judgement per HCA port.
//!
//! A run prints a dashed rule, a title (`RDMA_Write BW Test`), a block of `key : value` settings (two per line,
//! tab-separated: `Device`, `Link type`, `Mtu`, …), the local and remote addresses, then the results table:
//! ` #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]` and one row per size.
//!
//! Units: with `--report_gbits` the table is in Gb/s (perftest divides bytes/s by 125,000,000, so 10^9 bits);
//! otherwise it is in `MB/sec`, spelled `MiB/sec` in newer releases, and both mean 2^20 bytes (perftest's
//! format factor is 0x100000), so 1 MB/sec = 1,048,576 × 8 / 10^9 Gb/s.
//!
//! perftest does not print the port; a run is taken to use port 1 (its `DEF_IB_PORT`) unless the text carries an
//! `ib_port` / `IB port` setting (wrappers that print it).

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::BandwidthParseError;
use crate::verdict::Check;

/// The table's bandwidth unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BwUnit {
    /// `Gb/sec` (`--report_gbits`): 10^9 bits per second.
    GbitPerSec,
    /// `MB/sec` or `MiB/sec` (default): 2^20 bytes per second.
    MebibytePerSec,
}

impl BwUnit {
    /// A table value in this unit as Gb/s.
    pub fn to_gbps(self, value: f64) -> f64 {
        match self {
            BwUnit::GbitPerSec => value,
            BwUnit::MebibytePerSec => mib_per_s_to_gbps(value),
        }
    }
}

/// perftest's `MB/sec` (2^20 bytes per second) as Gb/s (10^9 bits per second).
pub fn mib_per_s_to_gbps(mib_per_s: f64) -> f64 {
    mib_per_s * 1_048_576.0 * 8.0 / 1e9
}

/// One row of the results table, in the table's unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IbWriteBwRow {
    /// Message size, bytes.
    pub bytes: u64,
    /// Iterations measured.
    pub iterations: u64,
    /// Peak bandwidth (0 with `-D` duration runs, which do not compute it).
    pub peak: f64,
    /// Average bandwidth: what is judged.
    pub average: f64,
    /// Message rate, million messages per second, when printed.
    pub msg_rate_mpps: Option<f64>,
}

/// One `ib_write_bw` run (one HCA port).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IbWriteBwRun {
    /// HCA device (`mlx5_0`) from the `Device` setting.
    pub device: Option<String>,
    /// HCA port (1 unless the output names one).
    pub port: u32,
    /// `Link type` setting (`IB`, `Ethernet`).
    pub link_type: Option<String>,
    /// Unit of the table; `None` before a table header was seen.
    pub unit: Option<BwUnit>,
    /// Results rows.
    pub rows: Vec<IbWriteBwRow>,
    /// Average bandwidth at the largest message size, Gb/s; `None` without rows.
    pub avg_gbps_at_largest: Option<f64>,
    /// Failure lines (`Couldn't connect`, `Unable to …`, `Failed …`, completion errors) and unreadable rows.
    pub errors: Vec<String>,
    /// Warnings that do not fail a run (`Conflicting CPU frequency values`, relaxed-ordering advice).
    pub notes: Vec<String>,
}

impl IbWriteBwRun {
    fn new() -> Self {
        Self {
            device: None,
            port: 1,
            link_type: None,
            unit: None,
            rows: Vec::new(),
            avg_gbps_at_largest: None,
            errors: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// `mlx5_0:1`, or `unknown-hca:1` when the output never named the device.
    pub fn subject(&self) -> String {
        format!(
            "{}:{}",
            self.device.as_deref().unwrap_or("unknown-hca"),
            self.port
        )
    }

    fn is_empty(&self) -> bool {
        self.device.is_none()
            && self.unit.is_none()
            && self.rows.is_empty()
            && self.errors.is_empty()
    }
}

/// Column positions from the table header.
#[derive(Debug, Clone, Copy)]
struct Columns {
    bytes: usize,
    iterations: usize,
    peak: usize,
    average: usize,
    msg_rate: Option<usize>,
}

/// Parses one or more `ib_write_bw` runs (e.g. one per HCA, concatenated). Fails only when no run marker at all
/// (title, settings, table header or perftest failure line) is found.
pub fn parse_ib_write_bw(text: &str) -> Result<Vec<IbWriteBwRun>, BandwidthParseError> {
    let mut runs: Vec<IbWriteBwRun> = Vec::new();
    let mut run = IbWriteBwRun::new();
    let mut columns: Option<Columns> = None;
    let mut lines = 0usize;
    for raw in text.lines() {
        lines += 1;
        let line = raw.trim();
        if line.is_empty() || line.chars().all(|c| c == '-' || c == '*') {
            continue;
        }
        let starts_run = line.ends_with("BW Test")
            || (field_value(line, "Device").is_some() && run.device.is_some());
        if starts_run && !run.is_empty() {
            runs.push(finish(std::mem::replace(&mut run, IbWriteBwRun::new())));
            columns = None;
        }
        if line.ends_with("BW Test") {
            continue;
        }
        if let Some(device) = field_value(line, "Device") {
            run.device = Some(device.to_string());
        }
        if let Some(port) = field_value(line, "ib_port").or_else(|| field_value(line, "IB port")) {
            match port.parse() {
                Ok(p) => run.port = p,
                Err(_) => run.errors.push(format!("unreadable port setting: {line}")),
            }
        }
        if let Some(link) = field_value(line, "Link type") {
            run.link_type = Some(link.to_string());
        }
        if line.starts_with("#bytes") {
            match table_header(line) {
                Some((c, unit)) => {
                    columns = Some(c);
                    run.unit = Some(unit);
                }
                None => run
                    .errors
                    .push(format!("unreadable results header: {line}")),
            }
            continue;
        }
        if is_warning(line) {
            run.notes.push(line.to_string());
            continue;
        }
        if is_failure(line) {
            run.errors.push(line.to_string());
            continue;
        }
        if let Some(c) = columns
            && line.starts_with(|ch: char| ch.is_ascii_digit())
        {
            match table_row(line, c) {
                Some(row) => run.rows.push(row),
                None => run
                    .errors
                    .push(format!("unreadable or truncated result row: {line}")),
            }
        }
    }
    if !run.is_empty() {
        runs.push(finish(run));
    }
    if runs.is_empty() {
        return Err(BandwidthParseError::NotToolOutput {
            tool: "ib_write_bw",
            lines,
        });
    }
    Ok(runs)
}

fn finish(mut run: IbWriteBwRun) -> IbWriteBwRun {
    run.avg_gbps_at_largest = match (run.unit, run.rows.iter().max_by_key(|r| r.bytes)) {
        (Some(unit), Some(row)) => Some(unit.to_gbps(row.average)),
        _ => None,
    };
    run
}

/// `Device         : mlx5_0` inside a settings line (which may hold two settings separated by tabs).
fn field_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)?;
    // The key must start a setting: at the line start or after whitespace.
    if at > 0 && !line[..at].ends_with(char::is_whitespace) {
        return None;
    }
    let rest = line[at + key.len()..].trim_start();
    let value = rest.strip_prefix(':')?.split_whitespace().next()?;
    Some(value)
}

/// ` #bytes  #iterations  BW peak[Gb/sec]  BW average[Gb/sec]  MsgRate[Mpps] …` (with `#sl`, per-port or CPU
/// columns in some modes): positions by name, unit from the average column.
fn table_header(line: &str) -> Option<(Columns, BwUnit)> {
    let names: Vec<&str> = line.split_whitespace().filter(|t| *t != "BW").collect();
    let pos = |prefix: &str| names.iter().position(|n| n.starts_with(prefix));
    let average = pos("average")?;
    let unit_text = names[average].split_once('[')?.1.trim_end_matches(']');
    let unit = match unit_text {
        "Gb/sec" => BwUnit::GbitPerSec,
        "MB/sec" | "MiB/sec" => BwUnit::MebibytePerSec,
        _ => return None,
    };
    Some((
        Columns {
            bytes: pos("#bytes")?,
            iterations: pos("#iterations")?,
            peak: pos("peak")?,
            average,
            msg_rate: pos("MsgRate"),
        },
        unit,
    ))
}

fn table_row(line: &str, c: Columns) -> Option<IbWriteBwRow> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| {
        fields
            .get(i)?
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    Some(IbWriteBwRow {
        bytes: fields.get(c.bytes)?.parse().ok()?,
        iterations: fields.get(c.iterations)?.parse().ok()?,
        peak: number(c.peak)?,
        average: number(c.average)?,
        msg_rate_mpps: c.msg_rate.and_then(number),
    })
}

fn is_warning(line: &str) -> bool {
    line.starts_with("Conflicting CPU frequency values") || line.starts_with("WARNING")
}

fn is_failure(line: &str) -> bool {
    [
        "Couldn't",
        "Unable to",
        "Failed",
        "failed",
        "ERROR",
        "Error",
        "error",
    ]
    .iter()
    .any(|m| line.contains(m))
}

/// One check per HCA port (`bandwidth.ib_write`, subject `mlx5_0:1`): the port's average bandwidth at the largest
/// message size must reach `min_gbps`. A port seen in several runs is judged on its worst run; a run without a
/// result, or with failure lines, fails. No run at all is one failing check on `node`.
pub fn judge_ib_write_bw(runs: &[IbWriteBwRun], min_gbps: f64) -> Vec<Check> {
    let threshold = || Some(json!({ "min_gbps": min_gbps }));
    if runs.is_empty() {
        return vec![Check::fail(
            "bandwidth.ib_write",
            "node",
            json!(null),
            threshold(),
            "no ib_write_bw run to judge",
        )];
    }
    let mut subjects: Vec<String> = Vec::new();
    for r in runs {
        let s = r.subject();
        if !subjects.contains(&s) {
            subjects.push(s);
        }
    }
    let mut checks = Vec::new();
    for subject in subjects {
        let port_runs: Vec<&IbWriteBwRun> =
            runs.iter().filter(|r| r.subject() == subject).collect();
        let errors: Vec<&str> = port_runs
            .iter()
            .flat_map(|r| r.errors.iter().map(String::as_str))
            .collect();
        let figures: Vec<Option<f64>> = port_runs.iter().map(|r| r.avg_gbps_at_largest).collect();
        if figures.iter().any(Option::is_none) {
            let why = errors
                .first()
                .copied()
                .unwrap_or("the output has no results row");
            checks.push(Check::fail(
                "bandwidth.ib_write",
                &subject,
                json!(null),
                threshold(),
                &format!("ib_write_bw gave no bandwidth for {subject}: {why}"),
            ));
            continue;
        }
        let worst = figures
            .iter()
            .flatten()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let (ok, reason) = if !errors.is_empty() {
            (
                false,
                format!("ib_write_bw on {subject} reported a failure: {}", errors[0]),
            )
        } else if worst >= min_gbps {
            (
                true,
                format!("{worst:.2} Gb/s at the largest message reaches {min_gbps} Gb/s"),
            )
        } else {
            (
                false,
                format!(
                    "{worst:.2} Gb/s at the largest message is below {min_gbps} Gb/s: check the link rate, cable and \
                     GPUDirect RDMA"
                ),
            )
        };
        checks.push(Check::judged(
            ok,
            "bandwidth.ib_write",
            &subject,
            worst,
            threshold(),
            &reason,
        ));
    }
    checks
}
