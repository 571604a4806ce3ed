//! The typed shape of `kiln.toml`: unknown keys and values of the wrong type are errors with the file's line.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole file. Every key is optional; a missing key leaves the flag's environment value or default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The fields are read through the key table (toml::Table); this struct validates them.
pub struct FileConfig {
    database: Option<Database>,
    api: Option<Api>,
    engine: Option<Engine>,
    boot: Option<Boot>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Database {
    url: Option<String>,
    key_file: Option<PathBuf>,
    signing_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Api {
    listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_listen: Option<SocketAddr>,
    tls_ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Engine {
    enabled: Option<bool>,
    instance: Option<String>,
    workers: Option<usize>,
    image: Option<String>,
    policy: Option<PathBuf>,
    time_scale: Option<f64>,
    ssh_user: Option<String>,
    ssh_key: Option<PathBuf>,
    image_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Boot {
    server_ip: Option<Ipv4Addr>,
    url: Option<String>,
    assets: Option<PathBuf>,
    image: Option<String>,
    kernel_args: Option<String>,
    dhcp_pool: Option<String>,
    dhcp_proxy: Option<bool>,
    dhcp_interface: Option<String>,
    dhcp_listen: Option<SocketAddr>,
    dhcp_proxy_listen: Option<SocketAddr>,
    dhcp_prefix_len: Option<u8>,
    dhcp_router: Option<Ipv4Addr>,
    dhcp_reserve: Option<Vec<String>>,
    dhcp_lease_secs: Option<i64>,
    tftp_root: Option<PathBuf>,
    tftp_listen: Option<SocketAddr>,
    ipv6_ra: Option<bool>,
}

/// A parsed file: its path and its tables (validated against [`FileConfig`]).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Where it was read from.
    pub path: PathBuf,
    /// The text's tables, for the key table to read.
    pub table: toml::Table,
    /// The text, for line numbers in value errors.
    pub text: String,
}

/// Parses `text` (read from `path`): errors name the file, line and key.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<Loaded> {
    let shown = path.display();
    toml::from_str::<FileConfig>(text)
        .map_err(|e| anyhow::anyhow!("{shown}: {}", describe(&e, text)))?;
    let table: toml::Table =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{shown}: {}", describe(&e, text)))?;
    Ok(Loaded {
        path: path.to_path_buf(),
        table,
        text: text.to_string(),
    })
}

/// Reads and parses the file at `path`.
pub fn load(path: &Path) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading config file {}: {e}", path.display()))?;
    parse(path, &text)
}

/// toml's message, led by `line L, column C` computed from the error's span.
fn describe(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim();
    match err.span() {
        Some(span) => {
            let (line, column) = line_col(text, span.start);
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The 1-based line of `name = …` inside `[section]`, for errors found after parsing.
pub fn line_of(text: &str, section: &str, name: &str) -> Option<usize> {
    let mut current = String::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(header) = trimmed.strip_prefix('[') {
            current = header.trim_end_matches(']').trim().to_string();
            continue;
        }
        if current == section
            && let Some(rest) = trimmed.strip_prefix(name)
            && rest.trim_start().starts_with('=')
        {
            return Some(index + 1);
        }
    }
    None
}
