//! `kiln doctor`: preflight checks before kiln serves a provisioning network, each one a pass/warn/fail line
//! with what was found. It reads the same settings `kiln serve` runs on ([`DoctorInput`]), changes nothing (no
//! database file is created, no migration applied, every probe socket is closed again) and can run as any user:
//! a check that needs privileges it lacks says so instead of failing.
//!
//! The checks: interfaces and addresses, ports free, another DHCP server on the segment, the database (reachable,
//! engine and version), clock skew against the database server, disk space for images, ramdisk and iPXE assets.

mod system;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kiln_inventory::MacAddr;
use kiln_provisioner::boot::dhcp::probe::{ProbeTarget, probe_dhcp_servers};
use serde::Serialize;

use crate::BootConfig;

/// What the checks look at: `kiln serve`'s settings plus the doctor's thresholds.
#[derive(Debug, Clone)]
pub struct DoctorInput {
    /// Inventory database URL.
    pub db_url: String,
    /// The API's listen address.
    pub listen: SocketAddr,
    /// The network boot settings.
    pub boot: BootConfig,
    /// The content-addressed image store's directory.
    pub image_dir: PathBuf,
    /// Less free space than this under `image_dir` fails (twice this warns).
    pub min_free_bytes: u64,
    /// A database clock further off than this fails (a fifth of it warns).
    pub max_clock_skew: Duration,
    /// Where the DHCP probe broadcasts; `None` probes the real segment (`0.0.0.0:68` → `255.255.255.255:67`
    /// on the DHCP interface). Tests point it at loopback.
    pub dhcp_probe: Option<ProbeTarget>,
    /// How long the DHCP probe listens for offers.
    pub dhcp_wait: Duration,
    /// Probe for DHCP servers even when kiln is not set to serve DHCP.
    pub force_dhcp_probe: bool,
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Pass,
    /// Works, but look at it.
    Warn,
    /// kiln will not work like this.
    Fail,
    /// Not applicable to these settings, or not checkable as this user.
    Skip,
}

impl Status {
    /// The word printed at the start of the check's line.
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One check's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short name (`interfaces`, `port tcp 0.0.0.0:8080`, `dhcp segment`, `database`, `clock`, `disk`,
    /// `ramdisk`, `ipxe`).
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// What was found, and what to do about a failure.
    pub detail: String,
}

impl Check {
    pub(crate) fn new(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
        }
    }
}

/// Whether a set of checks lets kiln run: no check failed.
pub fn all_passed(checks: &[Check]) -> bool {
    checks.iter().all(|check| check.status != Status::Fail)
}

/// Runs every check, in the order of the module doc.
pub async fn run(input: &DoctorInput) -> Vec<Check> {
    let mut checks = vec![system::interfaces(&input.boot)];
    checks.extend(system::ports(input.listen, &input.boot).await);
    checks.push(dhcp_segment(input).await);
    checks.extend(database(input).await);
    checks.push(system::disk(&input.image_dir, input.min_free_bytes));
    checks.extend(system::assets(&input.boot));
    checks
}

/// A locally administered MAC for the probe's DISCOVER (never a real node's).
const PROBE_MAC: MacAddr = MacAddr([0x02, 0x6b, 0x69, 0x6c, 0x6e, 0x00]);

async fn dhcp_segment(input: &DoctorInput) -> Check {
    const NAME: &str = "dhcp segment";
    let full = input.boot.pool.is_some();
    let proxy = input.boot.proxy;
    if !full && !proxy && !input.force_dhcp_probe {
        return Check::new(
            NAME,
            Status::Skip,
            "kiln is not set to serve DHCP (--dhcp-pool or --dhcp-proxy); --probe-dhcp probes anyway",
        );
    }
    let target = match (&input.dhcp_probe, &input.boot.interface) {
        (Some(target), _) => target.clone(),
        (None, Some(interface)) => ProbeTarget::broadcast(Some(interface.clone())),
        // Broadcasting on every interface would probe networks kiln is not meant to serve.
        (None, None) => {
            return Check::new(
                NAME,
                Status::Warn,
                "not probed: name the provisioning interface with --dhcp-interface",
            );
        }
    };
    let offers = match probe_dhcp_servers(&target, PROBE_MAC, input.dhcp_wait).await {
        Ok(offers) => offers,
        Err(err) => {
            let cause = std::error::Error::source(&err)
                .map(|source| source.to_string())
                .unwrap_or_default();
            let status = if cause.contains("ermission") {
                Status::Skip
            } else {
                Status::Warn
            };
            return Check::new(
                NAME,
                status,
                format!(
                    "cannot probe ({err}: {cause}); run as root, with no DHCP client holding port 68"
                ),
            );
        }
    };
    let (servers, proxies): (Vec<_>, Vec<_>) =
        offers.iter().partition(|offer| offer.offered.is_some());
    let list = |offers: &[&kiln_provisioner::boot::dhcp::probe::DhcpOffer]| {
        offers
            .iter()
            .map(|offer| match (offer.offered, &offer.boot_file) {
                (Some(ip), Some(file)) => {
                    format!("{} (offered {ip}, boot file {file})", offer.server)
                }
                (Some(ip), None) => format!("{} (offered {ip})", offer.server),
                (None, Some(file)) => format!("{} (boot file {file})", offer.server),
                (None, None) => offer.server.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let waited = format!("{:.1} s", input.dhcp_wait.as_secs_f64());
    if full || !proxy {
        if offers.is_empty() {
            return Check::new(
                NAME,
                Status::Pass,
                format!("no other DHCP server answered in {waited}"),
            );
        }
        return Check::new(
            NAME,
            if full { Status::Fail } else { Status::Warn },
            format!(
                "another DHCP server answers on this segment: {}; two servers hand nodes addresses and boot \
                 files kiln did not choose (stop it, or run kiln with --dhcp-proxy)",
                list(&offers.iter().collect::<Vec<_>>())
            ),
        );
    }
    // ProxyDHCP: a DHCP server that owns the addresses must answer; another ProxyDHCP must not.
    match (servers.is_empty(), proxies.is_empty()) {
        (true, _) => Check::new(
            NAME,
            Status::Fail,
            format!(
                "ProxyDHCP needs a DHCP server that hands out addresses; none answered in {waited}"
            ),
        ),
        (false, true) => Check::new(
            NAME,
            Status::Pass,
            format!("address server: {}", list(&servers)),
        ),
        (false, false) => Check::new(
            NAME,
            Status::Warn,
            format!(
                "address server: {}; another ProxyDHCP also answers: {}",
                list(&servers),
                list(&proxies)
            ),
        ),
    }
}

async fn database(input: &DoctorInput) -> Vec<Check> {
    let shown = kiln_inventory::redact_url(&input.db_url);
    let info = match kiln_inventory::probe_database(&input.db_url, Duration::from_secs(5)).await {
        Ok(info) => info,
        Err(err) => {
            let mut detail = format!("{:#}", anyhow::Error::from(err));
            if !detail.contains(&shown) {
                detail = format!("{shown}: {detail}");
            }
            return vec![
                Check::new("database", Status::Fail, detail),
                Check::new("clock", Status::Skip, "no database to compare with"),
            ];
        }
    };
    let database = match &info.file {
        None => Check::new(
            "database",
            Status::Pass,
            format!("PostgreSQL {} at {shown}", info.version),
        ),
        Some((path, true)) => Check::new(
            "database",
            Status::Pass,
            format!("SQLite {}, file {}", info.version, path.display()),
        ),
        Some((path, false)) => system::sqlite_file_to_create(&info.version, path),
    };
    let clock = match info.server_time {
        None => Check::new("clock", Status::Skip, "SQLite runs on this host's clock"),
        Some(server) => {
            let skew = (server - chrono::Utc::now()).num_milliseconds();
            let max = i64::try_from(input.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
            let detail = format!(
                "database clock is {:+.3} s from this host's (fails beyond ±{:.1} s: claims and SLAs \
                 compare times written by several hosts)",
                skew as f64 / 1000.0,
                max as f64 / 1000.0
            );
            let status = match skew.abs() {
                s if s > max => Status::Fail,
                s if s > max / 5 => Status::Warn,
                _ => Status::Pass,
            };
            Check::new("clock", status, detail)
        }
    };
    vec![database, clock]
}

#[cfg(test)]
mod tests;
