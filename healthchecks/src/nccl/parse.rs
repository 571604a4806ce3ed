//! Parser for nccl-tests output (`all_reduce_perf` and friends), text and `-J` JSON.
//!
//! Real logs vary by version and launcher, and the text reader maps every result row onto the columns its table
//! header names instead of fixed positions:
//! - the `root` column is absent in old versions, and alltoall-style collectives leave `redop` (or `root`) blank in
//!   the rows although the header names it;
//! - newer builds add columns (`-C` prints `cputime`, per-iteration timing adds `i_min i_max i_p99 i_cv%` to each
//!   placement, `-T` a trailing timestamp), all named in the header;
//! - `#wrong` may be `N/A` (validation off) or an error magnitude (`0e+00`, old versions);
//! - launchers prefix lines (Open MPI `--tag-output` `[1,0]<stdout>:`, Slurm `--label` `0: `, MPICH `[0] `);
//! - NCCL_DEBUG=INFO noise is interleaved, and a hung or killed run stops mid-table without its footer.
//!
//! The parser keeps going through all of that: real failures go to `errors` (the judge fails on each), what it
//! merely tolerated goes to `notes`; only input with no nccl-tests marker at all is rejected.

pub use super::report::{NcclReport, ParseError, PlacementResult, RankDevice, ResultRow};
use super::report::{collective_from_program, hosts_in_order, infer_collective, parse_wrong};

/// Parses nccl-tests output: text as printed on stdout, or the JSON document written by `-J`.
pub fn parse(input: &str) -> Result<NcclReport, ParseError> {
    let trimmed = input.trim_start();
    if trimmed.starts_with('{') {
        return super::parse_json::parse_json(trimmed);
    }
    parse_text(input)
}

/// Column names learnt from the table header (or the modern default when the output starts mid-table).
#[derive(Debug, Clone)]
struct Layout {
    /// Leading columns after `size count type`: `redop`, `root` (either may be missing in a version).
    optional_lead: Vec<String>,
    /// Column names of the out-of-place and the in-place set: `time algbw busbw #wrong` plus any extras.
    sides: [Vec<String>; 2],
}

impl Default for Layout {
    fn default() -> Self {
        let side: Vec<String> = ["time", "algbw", "busbw", "#wrong"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        Self {
            optional_lead: vec!["redop".to_string(), "root".to_string()],
            sides: [side.clone(), side],
        }
    }
}

impl Layout {
    /// Reads `size count type redop root time algbw busbw #wrong time …` (after the `#`).
    fn from_header(tokens: &[&str]) -> Option<Self> {
        let is_time = |t: &&str| *t == "time" || *t == "cputime";
        let first = tokens.iter().position(is_time)?;
        let second = tokens[first + 1..]
            .iter()
            .position(is_time)
            .map(|i| i + first + 1)?;
        let lead: Vec<String> = tokens[..first]
            .iter()
            .filter(|t| !matches!(**t, "size" | "count" | "type"))
            .map(|t| t.to_string())
            .collect();
        let side = |names: &[&str]| -> Vec<String> {
            names
                .iter()
                .filter(|t| **t != "timestamp")
                .map(|t| t.to_string())
                .collect()
        };
        Some(Self {
            optional_lead: lead,
            sides: [side(&tokens[first..second]), side(&tokens[second..])],
        })
    }

    fn tail_len(&self) -> usize {
        self.sides[0].len() + self.sides[1].len()
    }
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
    notes: Vec<String>,
    layout: Layout,
    saw_marker: bool,
}

impl TextState {
    fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

fn parse_text(input: &str) -> Result<NcclReport, ParseError> {
    let mut st = TextState::default();
    let mut lines = 0usize;
    // gpu_burn-style `\r` progress never appears here, but a CRLF log does: `lines()` keeps no `\r` at the end.
    for raw in input.lines() {
        lines += 1;
        let (unprefixed, prefix) = strip_launcher_prefix(raw);
        if let Some(prefix) = prefix {
            st.note(format!("stripped launcher line prefixes ({prefix})"));
        }
        let line = unprefixed.trim();
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
        if line.contains("NCCL INFO") {
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
        notes: st.notes,
    })
}

/// Removes a launcher's per-line tag and says which kind it was: Open MPI `--tag-output` (`[1,0]<stdout>:`,
/// `[1,0]<stderr>:`), MPICH `-prepend-rank` (`[0] `) or Slurm `srun --label` (`0: `).
fn strip_launcher_prefix(line: &str) -> (&str, Option<&'static str>) {
    let t = line.trim_start();
    if let Some(inner) = t.strip_prefix('[')
        && let Some(close) = inner.find(']')
    {
        let ids = &inner[..close];
        let after = &inner[close + 1..];
        let ids_ok = !ids.is_empty() && ids.chars().all(|c| c.is_ascii_digit() || c == ',');
        if ids_ok {
            for tag in ["<stdout>:", "<stderr>:", "<stddiag>:"] {
                if let Some(rest) = after.strip_prefix(tag) {
                    return (rest, Some("Open MPI --tag-output"));
                }
            }
            if !ids.contains(',')
                && let Some(rest) = after.strip_prefix(' ')
            {
                return (rest, Some("MPICH -prepend-rank"));
            }
        }
    }
    if let Some((label, rest)) = t.split_once(": ")
        && !label.is_empty()
        && label.len() <= 6
        && label.chars().all(|c| c.is_ascii_digit())
    {
        return (rest, Some("srun --label"));
    }
    (line, None)
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
    } else if comment.starts_with("Collective test concluded:") {
        st.saw_marker = true;
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
        match Layout::from_header(&tokens) {
            Some(layout) => st.layout = layout,
            None => st.note(format!("table header without two time columns: {comment}")),
        }
    } else if let Some(rest) = comment.strip_prefix("Out of bounds values") {
        st.saw_marker = true;
        st.out_of_bounds = value_after_colon(rest).and_then(|v| v.parse().ok());
    } else if let Some(rest) = comment.strip_prefix("Avg bus bandwidth") {
        st.saw_marker = true;
        let mut fields = rest
            .split_once(':')
            .map(|(_, v)| v)
            .unwrap_or_default()
            .split_whitespace();
        st.avg_busbw_gbps = fields
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite());
        // `NCCL_TESTS_MIN_BW=<GB/s>` makes nccl-tests judge its own average: `FAILED` below 90% of it.
        if fields.any(|f| f.eq_ignore_ascii_case("FAILED")) {
            st.errors.push(format!(
                "nccl-tests marked its average bus bandwidth FAILED: Avg bus bandwidth{rest}"
            ));
        }
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
    let mut tokens: Vec<&str> = line.split_whitespace().collect();
    // Result rows start with two unsigned integers; anything else (mpirun chatter, tool banners) is skipped.
    let (Some(size_bytes), Some(count)) = (
        tokens.first().and_then(|t| t.parse::<u64>().ok()),
        tokens.get(1).and_then(|t| t.parse::<u64>().ok()),
    ) else {
        return;
    };
    // A trailing timestamp (`-T`): `2025-01-01 12:00:00`.
    while tokens.len() > 3
        && tokens
            .last()
            .is_some_and(|t| t.contains(':') || t.matches('-').count() == 2)
    {
        tokens.pop();
    }
    match parse_row(size_bytes, count, &tokens, &st.layout) {
        Some((row, note)) => {
            st.saw_marker = true;
            st.rows.push(row);
            if let Some(note) = note {
                st.note(note);
            }
        }
        None => st
            .errors
            .push(format!("unreadable or truncated result row: {line}")),
    }
}

/// Fits a row onto the layout. The measurement sets are the fixed part; the optional leading columns (`redop`,
/// `root`) may be blank or extra, so the fit tries the header's count first, then fewer, then more, and only then
/// allows unnamed trailing fields. Returns the row and a note when the fit was not the header's exact shape.
fn parse_row(
    size_bytes: u64,
    count: u64,
    tokens: &[&str],
    layout: &Layout,
) -> Option<(ResultRow, Option<String>)> {
    let dtype = tokens.get(2)?;
    if dtype.parse::<f64>().is_ok() {
        return None;
    }
    let rest = tokens.get(3..)?;
    let expected = layout.optional_lead.len();
    let tail_len = layout.tail_len();
    let mut leads: Vec<usize> = vec![expected];
    leads.extend((0..expected).rev());
    leads.extend(expected + 1..=expected + 2);
    let exact = leads.iter().map(|k| (*k, false));
    let with_trailing = leads.iter().map(|k| (*k, true));
    for (k, allow_trailing) in exact.chain(with_trailing) {
        let fits = if allow_trailing {
            rest.len() > k + tail_len
        } else {
            rest.len() == k + tail_len
        };
        if !fits {
            continue;
        }
        let Some((redop, root)) = lead_fields(&rest[..k], &layout.optional_lead) else {
            continue;
        };
        let tail = &rest[k..k + tail_len];
        let (first, second) = tail.split_at(layout.sides[0].len());
        let (Some(out_of_place), Some(in_place)) = (
            parse_placement(first, &layout.sides[0]),
            parse_placement(second, &layout.sides[1]),
        ) else {
            continue;
        };
        let note = if allow_trailing {
            Some(format!(
                "ignored {} unnamed field(s) after the in-place set",
                rest.len() - k - tail_len
            ))
        } else if k < expected {
            Some(format!(
                "rows leave header column(s) blank: header names {:?}, rows give {k} value(s)",
                layout.optional_lead
            ))
        } else if k > expected {
            Some(format!(
                "rows carry {} leading field(s) the header does not name",
                k - expected
            ))
        } else {
            None
        };
        let row = ResultRow {
            size_bytes,
            count,
            dtype: dtype.to_string(),
            redop,
            root,
            out_of_place,
            in_place,
        };
        return Some((row, note));
    }
    None
}

/// Reads the optional leading fields. With the header's count they map by name; otherwise by content (an integer
/// is the root, a word is the reduction). A number with a fraction is never a leading field.
fn lead_fields(fields: &[&str], names: &[String]) -> Option<(Option<String>, Option<i64>)> {
    let mut redop = None;
    let mut root = None;
    if fields.len() == names.len() {
        for (field, name) in fields.iter().zip(names) {
            match name.as_str() {
                "root" => root = Some(field.parse::<i64>().ok()?),
                "redop" => {
                    if field.parse::<f64>().is_ok() {
                        return None;
                    }
                    redop = (*field != "none").then(|| field.to_string());
                }
                // A leading column this parser does not know: keep it out of the row, but it must not be a number
                // with a fraction, which would mean the measurement sets start here.
                _ if field.contains('.') && field.parse::<f64>().is_ok() => return None,
                _ => {}
            }
        }
        return Some((redop, root));
    }
    for field in fields {
        if let Ok(value) = field.parse::<i64>() {
            if root.is_none() {
                root = Some(value);
            }
        } else if field.parse::<f64>().is_ok() {
            return None;
        } else if redop.is_none() && *field != "none" {
            redop = Some(field.to_string());
        }
    }
    Some((redop, root))
}

fn parse_placement(fields: &[&str], names: &[String]) -> Option<PlacementResult> {
    let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    let field = |wanted: &[&str]| {
        names
            .iter()
            .position(|n| wanted.contains(&n.as_str()))
            .and_then(|i| fields.get(i))
            .copied()
    };
    Some(PlacementResult {
        time_us: number(field(&["time", "cputime"])?)?,
        algbw_gbps: number(field(&["algbw"])?)?,
        busbw_gbps: number(field(&["busbw"])?)?,
        // Old versions print an error magnitude under `error`.
        wrong: parse_wrong(field(&["#wrong", "error"])?)?,
    })
}
