//! `kiln doctor [serve flags]`: preflight checks for the settings `kiln serve` would run with, one
//! PASS/WARN/FAIL/SKIP line each (kiln-server's `doctor`); exits 1 when a check fails.

use std::net::SocketAddr;
use std::time::Duration;

use kiln_server::doctor::{self, DoctorInput, Status};

use crate::GlobalArgs;
use crate::cmd::boot_serve::BootServeArgs;
use crate::cmd::engine_args::EngineArgs;
use crate::global::print_json;

/// Preflight checks: interfaces, ports, other DHCP servers, database, clock, disk, ramdisk assets.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The API address `kiln serve` will listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Free space the image store needs, in GiB (twice this or less warns).
    #[arg(long, value_name = "GIB", default_value_t = 20)]
    min_free_gib: u64,
    /// Largest tolerated clock difference to the PostgreSQL server, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    max_clock_skew: f64,
    /// Probe the segment for DHCP servers even when kiln is not set to serve DHCP (needs root: port 68).
    #[arg(long)]
    probe_dhcp: bool,
    /// How long to listen for DHCP offers, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    dhcp_wait: f64,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    boot: BootServeArgs,
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow::anyhow!("{flag} {value}: not a number of seconds"))
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let input = DoctorInput {
        db_url: global.db.clone(),
        listen: args.listen,
        boot: args.boot.config(),
        image_dir: args.engine.image_dir.clone(),
        min_free_bytes: args.min_free_gib.saturating_mul(1 << 30),
        max_clock_skew: seconds(args.max_clock_skew, "--max-clock-skew")?,
        dhcp_probe: None,
        dhcp_wait: seconds(args.dhcp_wait, "--dhcp-wait")?,
        force_dhcp_probe: args.probe_dhcp,
    };
    let checks = doctor::run(&input).await;
    let count = |status: Status| checks.iter().filter(|c| c.status == status).count();
    let failed = count(Status::Fail);
    if global.json {
        print_json(&serde_json::json!({ "ok": failed == 0, "checks": checks }))?;
    } else {
        let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for check in &checks {
            println!(
                "{}  {:width$}  {}",
                check.status.word(),
                check.name,
                check.detail
            );
        }
        println!(
            "kiln doctor: {} passed, {} warning(s), {failed} failed, {} skipped",
            count(Status::Pass),
            count(Status::Warn),
            count(Status::Skip)
        );
    }
    if failed > 0 {
        anyhow::bail!("{failed} preflight check(s) failed");
    }
    Ok(())
}
