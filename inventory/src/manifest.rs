//! Rack manifests: one row per node (hall, rack, slot, serial, SKU, BMC address/protocol/user/password, boot
//! MAC), as CSV with a header line or as TOML `[[node]]` tables. Parsing checks every row and reports every
//! problem with its line number; [`crate::Store::import_manifest`] adds the checks against the database.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::model::{BmcProtocol, MacAddr};
use crate::secret::Secret;

/// The manifest file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    /// Comma-separated, first line is the header; `#` starts a comment line.
    Csv,
    /// `[[node]]` tables, optionally a top-level `site = "…"`.
    Toml,
}

impl ManifestFormat {
    /// The format a file's extension names (`.csv`, `.toml`).
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(ManifestFormat::Csv),
            "toml" => Some(ManifestFormat::Toml),
            _ => None,
        }
    }
}

/// One node of a manifest, checked and typed.
#[derive(Debug, Clone)]
pub struct ManifestRow {
    /// Line in the file where the row starts (1-based).
    pub line: usize,
    /// Site, when the manifest names one.
    pub site: Option<String>,
    /// Hall name.
    pub hall: String,
    /// Rack name.
    pub rack: String,
    /// Slot in the rack.
    pub slot: i64,
    /// Chassis serial.
    pub serial: String,
    /// Expected SKU id.
    pub sku: String,
    /// BMC host, host:port or URL.
    pub bmc_address: String,
    /// BMC protocol.
    pub bmc_protocol: BmcProtocol,
    /// BMC login.
    pub bmc_user: String,
    /// BMC password, from the file or from the variable the file names.
    pub bmc_password: Secret,
    /// MAC of the PXE NIC.
    pub boot_mac: MacAddr,
}

/// One problem in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a manifest; when any is reported nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "manifest rejected, nothing imported ({} problem(s)):",
            self.0.len()
        )?;
        for error in &self.0 {
            if error.line == 0 {
                write!(f, "\n  {}", error.message)?;
            } else {
                write!(f, "\n  line {}: {}", error.line, error.message)?;
            }
        }
        Ok(())
    }
}

/// A field that TOML may give as a number and CSV always gives as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Field {
    Int(i64),
    Text(String),
}

impl Field {
    fn text(&self) -> String {
        match self {
            Field::Int(int) => int.to_string(),
            Field::Text(text) => text.trim().to_string(),
        }
    }
}

const COLUMNS: [&str; 12] = [
    "site",
    "hall",
    "rack",
    "slot",
    "serial",
    "sku",
    "bmc_address",
    "bmc_protocol",
    "bmc_user",
    "bmc_password",
    "bmc_password_env",
    "boot_mac",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRow {
    site: Option<Field>,
    hall: Option<Field>,
    rack: Option<Field>,
    slot: Option<Field>,
    serial: Option<Field>,
    sku: Option<Field>,
    bmc_address: Option<Field>,
    bmc_protocol: Option<Field>,
    bmc_user: Option<Field>,
    bmc_password: Option<Field>,
    bmc_password_env: Option<Field>,
    boot_mac: Option<Field>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlManifest {
    site: Option<String>,
    #[serde(default)]
    node: Vec<toml::Spanned<RawRow>>,
}

/// Parses and checks a manifest. `env` looks up `bmc_password_env` variables (normally `std::env::var`).
pub fn parse_manifest(
    text: &str,
    format: ManifestFormat,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ManifestRow>, ManifestErrors> {
    let (raw, mut errors) = match format {
        ManifestFormat::Csv => read_csv(text),
        ManifestFormat::Toml => read_toml(text),
    };
    let mut rows = Vec::new();
    for (line, site, raw) in raw {
        match check_row(line, site, raw, env) {
            Ok(row) => rows.push(row),
            Err(mut row_errors) => errors.append(&mut row_errors),
        }
    }
    if rows.is_empty() && errors.is_empty() {
        errors.push(ManifestError {
            line: 0,
            message: "the manifest lists no nodes".into(),
        });
    }
    errors.extend(check_duplicates(&rows));
    if errors.is_empty() {
        Ok(rows)
    } else {
        errors.sort_by_key(|error| error.line);
        Err(ManifestErrors(errors))
    }
}

type RawRows = Vec<(usize, Option<String>, RawRow)>;

fn read_csv(text: &str) -> (RawRows, Vec<ManifestError>) {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(err) => {
            errors.push(ManifestError {
                line: 1,
                message: format!("cannot read the CSV header: {err}"),
            });
            return (rows, errors);
        }
    };
    let unknown: Vec<&str> = headers.iter().filter(|h| !COLUMNS.contains(h)).collect();
    if !unknown.is_empty() {
        errors.push(ManifestError {
            line: 1,
            message: format!(
                "unknown column(s) {unknown:?}; the columns are {}",
                COLUMNS.join(", ")
            ),
        });
        return (rows, errors);
    }
    for record in reader.records() {
        match record {
            Ok(record) => {
                let line = record
                    .position()
                    .map_or(0, |p| data_line(text, p.byte() as usize));
                // Empty cells mean "not given".
                let cells: Vec<Option<&str>> = record
                    .iter()
                    .map(|cell| if cell.is_empty() { None } else { Some(cell) })
                    .collect();
                let mut raw = RawRow::default();
                for (header, cell) in headers.iter().zip(cells) {
                    raw.set(header, cell.map(|c| Field::Text(c.to_string())));
                }
                rows.push((line, None, raw));
            }
            Err(err) => {
                let line = err
                    .position()
                    .map_or(0, |p| data_line(text, p.byte() as usize));
                errors.push(ManifestError {
                    line,
                    message: format!("malformed CSV row: {}", csv_problem(&err)),
                });
            }
        }
    }
    (rows, errors)
}

/// A CSV error in words, without the position (the line is reported beside it).
fn csv_problem(err: &csv::Error) -> String {
    match err.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        _ => err.to_string(),
    }
}

impl RawRow {
    fn set(&mut self, column: &str, value: Option<Field>) {
        let slot = match column {
            "site" => &mut self.site,
            "hall" => &mut self.hall,
            "rack" => &mut self.rack,
            "slot" => &mut self.slot,
            "serial" => &mut self.serial,
            "sku" => &mut self.sku,
            "bmc_address" => &mut self.bmc_address,
            "bmc_protocol" => &mut self.bmc_protocol,
            "bmc_user" => &mut self.bmc_user,
            "bmc_password" => &mut self.bmc_password,
            "bmc_password_env" => &mut self.bmc_password_env,
            "boot_mac" => &mut self.boot_mac,
            _ => return,
        };
        *slot = value;
    }
}

/// The line of the first data row at or after `offset`. The csv crate reports a record's position before the
/// comment and blank lines it skips, so its own line numbers can point at a comment.
fn data_line(text: &str, offset: usize) -> usize {
    let mut line = line_of(text, offset);
    let rest = text.get(offset..).unwrap_or_default();
    for candidate in rest.split('\n') {
        let trimmed = candidate.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            break;
        }
        line += 1;
    }
    line
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count() + 1)
}

fn read_toml(text: &str) -> (RawRows, Vec<ManifestError>) {
    match toml::from_str::<TomlManifest>(text) {
        Ok(manifest) => {
            let rows = manifest
                .node
                .into_iter()
                .map(|spanned| {
                    let line = line_of(text, spanned.span().start);
                    (line, manifest.site.clone(), spanned.into_inner())
                })
                .collect();
            (rows, Vec::new())
        }
        Err(err) => {
            let line = err.span().map_or(0, |span| line_of(text, span.start));
            (
                Vec::new(),
                vec![ManifestError {
                    line,
                    message: format!("not a valid manifest: {}", err.message()),
                }],
            )
        }
    }
}

fn check_row(
    line: usize,
    file_site: Option<String>,
    raw: RawRow,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ManifestRow, Vec<ManifestError>> {
    let mut errors = Vec::new();
    let mut fail = |message: String| errors.push(ManifestError { line, message });
    let mut required = |name: &str, field: &Option<Field>| match field.as_ref().map(Field::text) {
        Some(text) if !text.is_empty() => text,
        _ => {
            fail(format!("missing {name}"));
            String::new()
        }
    };
    let hall = required("hall", &raw.hall);
    let rack = required("rack", &raw.rack);
    let slot_text = required("slot", &raw.slot);
    let serial = required("serial", &raw.serial);
    let sku = required("sku", &raw.sku);
    let bmc_address = required("bmc_address", &raw.bmc_address);
    let protocol_text = required("bmc_protocol", &raw.bmc_protocol);
    let bmc_user = required("bmc_user", &raw.bmc_user);
    let mac_text = required("boot_mac", &raw.boot_mac);

    let slot = match slot_text.parse::<i64>() {
        Ok(slot) if slot >= 0 => Some(slot),
        _ if slot_text.is_empty() => None,
        _ => {
            fail(format!(
                "slot {slot_text:?} is not a non-negative whole number"
            ));
            None
        }
    };
    let protocol = match protocol_text.parse::<BmcProtocol>() {
        Ok(protocol) => Some(protocol),
        Err(err) if !protocol_text.is_empty() => {
            fail(err.to_string());
            None
        }
        Err(_) => None,
    };
    let mac = match mac_text.parse::<MacAddr>() {
        Ok(mac) => Some(mac),
        Err(err) if !mac_text.is_empty() => {
            fail(format!("boot_mac: {err}"));
            None
        }
        Err(_) => None,
    };
    let password = match (
        raw.bmc_password.map(|f| f.text()),
        raw.bmc_password_env.map(|f| f.text()),
    ) {
        (Some(_), Some(_)) => {
            fail("give bmc_password or bmc_password_env, not both".into());
            None
        }
        (Some(password), None) => Some(Secret::new(password)),
        (None, Some(var)) => match env(&var) {
            Some(value) => Some(Secret::new(value)),
            None => {
                fail(format!("bmc_password_env names {var}, which is not set"));
                None
            }
        },
        (None, None) => {
            fail("missing bmc_password or bmc_password_env".into());
            None
        }
    };
    let site = raw
        .site
        .map(|f| f.text())
        .filter(|s| !s.is_empty())
        .or(file_site);
    match (slot, protocol, mac, password) {
        (Some(slot), Some(bmc_protocol), Some(boot_mac), Some(bmc_password))
            if errors.is_empty() =>
        {
            Ok(ManifestRow {
                line,
                site,
                hall,
                rack,
                slot,
                serial,
                sku,
                bmc_address,
                bmc_protocol,
                bmc_user,
                bmc_password,
                boot_mac,
            })
        }
        _ => Err(errors),
    }
}

/// Rows that collide with an earlier row of the same manifest.
fn check_duplicates(rows: &[ManifestRow]) -> Vec<ManifestError> {
    let mut errors = Vec::new();
    let mut serials: HashMap<&str, usize> = HashMap::new();
    let mut places: HashMap<(&str, &str, i64), usize> = HashMap::new();
    let mut macs: HashMap<MacAddr, usize> = HashMap::new();
    let mut bmcs: HashMap<&str, usize> = HashMap::new();
    for row in rows {
        let mut dup = |what: String, first: Option<usize>| {
            if let Some(first) = first {
                errors.push(ManifestError {
                    line: row.line,
                    message: format!("{what} already given on line {first}"),
                });
            }
        };
        dup(
            format!("serial {}", row.serial),
            serials.insert(&row.serial, row.line),
        );
        dup(
            format!("hall {} rack {} slot {}", row.hall, row.rack, row.slot),
            places.insert((&row.hall, &row.rack, row.slot), row.line),
        );
        dup(
            format!("boot MAC {}", row.boot_mac),
            macs.insert(row.boot_mac, row.line),
        );
        dup(
            format!("BMC address {}", row.bmc_address),
            bmcs.insert(&row.bmc_address, row.line),
        );
    }
    errors
}

/// Rows naming a SKU not in `known`.
pub(crate) fn check_skus(rows: &[ManifestRow], known: &HashSet<String>) -> Vec<ManifestError> {
    let mut names: Vec<&String> = known.iter().collect();
    names.sort();
    rows.iter()
        .filter(|row| !known.contains(&row.sku))
        .map(|row| ManifestError {
            line: row.line,
            message: format!(
                "unknown SKU {:?} (known: {})",
                row.sku,
                names
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
        .collect()
}
