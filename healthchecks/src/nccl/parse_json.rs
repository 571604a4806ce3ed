//! Reader for the JSON document nccl-tests writes with `-J FILE` (format version 2).

use serde::Deserialize;

use super::report::{
    NcclReport, ParseError, PlacementResult, RankDevice, ResultRow, collective_from_program,
    hosts_in_order, infer_collective, parse_wrong,
};

#[derive(Debug, Deserialize)]
struct JsonDoc {
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    nccl_version: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<JsonConfig>,
    results: Vec<JsonRow>,
    #[serde(default)]
    out_of_bounds: Option<JsonOutOfBounds>,
    #[serde(default)]
    average_bus_bandwidth: Option<JsonAvg>,
    #[serde(default)]
    errors: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct JsonConfig {
    #[serde(default)]
    nthreads: Option<u32>,
    #[serde(default)]
    ngpus: Option<u32>,
    #[serde(default)]
    devices: Vec<JsonDevice>,
}

#[derive(Debug, Deserialize)]
struct JsonDevice {
    rank: u32,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    device: u32,
    #[serde(default)]
    device_hex: String,
    #[serde(default)]
    device_info: String,
}

#[derive(Debug, Deserialize)]
struct JsonRow {
    size: u64,
    count: u64,
    #[serde(rename = "type")]
    dtype: String,
    #[serde(default)]
    redop: Option<String>,
    #[serde(default)]
    root: Option<serde_json::Value>,
    out_of_place: Option<JsonPlacement>,
    in_place: Option<JsonPlacement>,
}

#[derive(Debug, Deserialize)]
struct JsonPlacement {
    #[serde(alias = "cpu_time")]
    time: JsonNumber,
    alg_bw: JsonNumber,
    bus_bw: JsonNumber,
    #[serde(default)]
    nwrong: Option<JsonNumber>,
}

/// nccl-tests writes NaN as the string `"nan"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonNumber {
    Number(f64),
    Text(String),
}

impl JsonNumber {
    fn value(&self) -> f64 {
        match self {
            JsonNumber::Number(v) => *v,
            JsonNumber::Text(t) => t.trim().parse().unwrap_or(f64::NAN),
        }
    }
}

#[derive(Debug, Deserialize)]
struct JsonOutOfBounds {
    count: u64,
}

#[derive(Debug, Deserialize)]
struct JsonAvg {
    bandwidth: JsonNumber,
}

pub(super) fn parse_json(input: &str) -> Result<NcclReport, ParseError> {
    let doc: JsonDoc =
        serde_json::from_str(input).map_err(|source| ParseError::BadJson { source })?;
    let mut errors = doc.errors.clone();
    let devices: Vec<RankDevice> = doc
        .config
        .as_ref()
        .map(|c| {
            c.devices
                .iter()
                .map(|d| RankDevice {
                    rank: d.rank,
                    host: d.hostname.clone(),
                    device: d.device,
                    bus_id: d.device_hex.clone(),
                    gpu_name: d.device_info.trim().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut rows = Vec::with_capacity(doc.results.len());
    for row in &doc.results {
        match convert_row(row) {
            Some(r) => rows.push(r),
            None => errors.push(format!(
                "result row for {} bytes has no usable measurements",
                row.size
            )),
        }
    }
    let ranks = if devices.is_empty() {
        doc.config
            .as_ref()
            .and_then(|c| Some(c.nthreads?.saturating_mul(c.ngpus?)))
            .unwrap_or(0)
    } else {
        u32::try_from(devices.len()).unwrap_or(u32::MAX)
    };
    let avg_busbw_gbps = doc
        .average_bus_bandwidth
        .as_ref()
        .map(|a| a.bandwidth.value())
        .filter(|v| v.is_finite());
    if avg_busbw_gbps.is_none() {
        errors.push("JSON document has no average bus bandwidth (run did not finish)".to_string());
    }
    let collective = doc
        .args
        .first()
        .and_then(|p| collective_from_program(p))
        .unwrap_or_else(|| infer_collective(&rows, ranks).to_string());
    Ok(NcclReport {
        collective,
        nccl_version: doc.nccl_version.as_ref().and_then(version_from_json),
        ranks,
        hosts: hosts_in_order(&devices),
        rows,
        avg_busbw_gbps,
        out_of_bounds: doc.out_of_bounds.map(|o| o.count),
        errors,
        devices,
        notes: Vec::new(),
    })
}

/// NCCL encodes its version as an integer: `major*10000 + minor*100 + patch` since 2.9 (`22703` → `2.27.3`),
/// `major*1000 + minor*100 + patch` before.
fn version_from_json(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => {
            let code = n.as_u64()?;
            let (major, minor, patch) = if code >= 20900 {
                (code / 10000, (code % 10000) / 100, code % 100)
            } else {
                (code / 1000, (code % 1000) / 100, code % 100)
            };
            Some(format!("{major}.{minor}.{patch}"))
        }
        _ => None,
    }
}

fn convert_row(row: &JsonRow) -> Option<ResultRow> {
    let placement = |p: &JsonPlacement| -> Option<PlacementResult> {
        let finite = |v: f64| (v.is_finite() && v >= 0.0).then_some(v);
        let wrong = match &p.nwrong {
            None => None,
            Some(n) => parse_wrong(&n.value().to_string())?,
        };
        Some(PlacementResult {
            time_us: finite(p.time.value())?,
            algbw_gbps: finite(p.alg_bw.value())?,
            busbw_gbps: finite(p.bus_bw.value())?,
            wrong,
        })
    };
    let root = match &row.root {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Some(ResultRow {
        size_bytes: row.size,
        count: row.count,
        dtype: row.dtype.clone(),
        redop: row.redop.clone().filter(|r| r != "none"),
        root,
        out_of_place: placement(row.out_of_place.as_ref()?)?,
        in_place: placement(row.in_place.as_ref()?)?,
    })
}
