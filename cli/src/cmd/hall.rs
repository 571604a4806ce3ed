//! `kiln hall list|lease|release|report`: halls with node counts, leasing a hall, releasing a lease (with a
//! progress bar while its nodes go back to available), and the signed acceptance report. On the local database
//! or over the API (`--server`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use kiln_api::report::AcceptanceReport;
use kiln_api::routes::leases::{LeaseProgress, LeaseRequest};
use kiln_health::duration::parse_duration;
use kiln_inventory::{AcceptanceRule, HallSummary};

use crate::client::Client;
use crate::global::{KeyUse, print_json};
use crate::{GlobalArgs, table};

/// Halls.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: HallCommand,
}

#[derive(Debug, Subcommand)]
enum HallCommand {
    /// List halls with node counts per state.
    List,
    /// Firmware drift: nodes per component and version (a component on more than one version is mixed).
    Firmware {
        /// Only this hall (default: the whole site).
        #[arg(long)]
        hall: Option<String>,
    },
    /// Lease a hall to a lessee: every available node moves under the lease at once, or nothing changes.
    Lease {
        /// Hall name (or id).
        hall: String,
        /// Lessee name (created if new).
        #[arg(long)]
        lessee: String,
        /// Accept the lease when at least this fraction of the hall's nodes is verified (default: all nodes);
        /// the rest are owed.
        #[arg(long, value_name = "F")]
        min_fraction: Option<f64>,
        /// End of the lease: an RFC 3339 time (2027-01-31T00:00:00Z) or a duration from now (720h).
        #[arg(long, value_parser = parse_end)]
        end: Option<DateTime<Utc>>,
    },
    /// Release a lease: its nodes go to wiping (erase, reimage, re-verify) before they are available again.
    Release {
        /// Lease id.
        lease: i64,
        /// Follow the nodes with a progress bar until all are available (or quarantined).
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long (90s, 30m, 2h).
        #[arg(long, value_parser = parse_duration, default_value = "30m")]
        timeout: Duration,
        /// Time between progress polls.
        #[arg(long, value_parser = parse_duration, default_value = "2s", hide = true)]
        poll: Duration,
    },
    /// The lease's acceptance report: per-node signed records and hall aggregates (verify it offline with
    /// `kiln health verify FILE --public-key KEY`).
    Report {
        /// Lease id.
        lease: i64,
        /// Write the report (JSON) to this file instead of printing a summary.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `--end`: an RFC 3339 time or a duration from now.
fn parse_end(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let span = parse_duration(text)
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a duration like 720h"))?;
    chrono::Duration::from_std(span)
        .ok()
        .and_then(|span| Utc::now().checked_add_signed(span))
        .ok_or_else(|| format!("{text:?} is too far in the future"))
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let client = Client::open(global, KeyUse::IfPresent).await?;
    let result = run(args.command, &client, global).await;
    client.close().await;
    result
}

async fn run(command: HallCommand, client: &Client, global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        HallCommand::Firmware { hall } => {
            let drift = client.firmware_drift(hall.as_deref()).await?;
            if global.json {
                return print_json(&drift);
            }
            let rows: Vec<Vec<String>> = drift
                .versions
                .iter()
                .map(|v| {
                    vec![
                        v.component.clone(),
                        v.version.clone().unwrap_or_else(|| "-".into()),
                        v.nodes.to_string(),
                    ]
                })
                .collect();
            println!(
                "{}",
                crate::table::render(&["COMPONENT", "VERSION", "NODES"], &rows)
            );
            let mut mixed: Vec<&str> = drift
                .versions
                .windows(2)
                .filter(|w| w[0].component == w[1].component)
                .map(|w| w[0].component.as_str())
                .collect();
            mixed.dedup();
            if mixed.is_empty() {
                println!("every component runs one version");
            } else {
                println!("mixed versions: {}", mixed.join(", "));
            }
            Ok(())
        }
        HallCommand::List => {
            let halls = client.halls().await?;
            if global.json {
                print_json(&halls)?;
            } else if halls.is_empty() {
                println!("no halls yet: import a rack manifest with `kiln rack import FILE`");
            } else {
                println!("{}", render_halls(&halls));
            }
            Ok(())
        }
        HallCommand::Lease {
            hall,
            lessee,
            min_fraction,
            end,
        } => {
            let hall_id = client.hall_id(&hall).await?;
            let request = LeaseRequest {
                lessee,
                starts_at: None,
                ends_at: end,
                acceptance: min_fraction
                    .map(|fraction| AcceptanceRule::MinVerifiedFraction { fraction }),
            };
            let outcome = client
                .lease(hall_id, &request)
                .await
                .with_context(|| format!("leasing hall {hall}"))?;
            if global.json {
                return print_json(&outcome);
            }
            println!(
                "lease {}: hall {hall} leased to {}: {} of {} node(s), {} owed",
                outcome.lease.id,
                request.lessee,
                outcome.nodes_leased,
                outcome.nodes_total,
                outcome.nodes_owed
            );
            Ok(())
        }
        HallCommand::Release {
            lease,
            wait,
            timeout,
            poll,
        } => {
            // With --wait, an already released lease is only followed (so a timed-out wait can be resumed).
            let already = wait && client.progress(lease).await?.lease.status != "active";
            if already {
                eprintln!("lease {lease} is already released; following its nodes");
                let progress = follow(client, lease, timeout, poll, global.json).await?;
                return print_release_progress(lease, &progress, global);
            }
            let released = client.release(lease).await?;
            if !wait {
                if global.json {
                    return print_json(&released);
                }
                println!(
                    "lease {lease} released: {} node(s) sent to wiping (erase, reimage, re-verify)",
                    released.nodes_wiping
                );
                return Ok(());
            }
            let progress = follow(client, lease, timeout, poll, global.json).await?;
            print_release_progress(lease, &progress, global)
        }
        HallCommand::Report { lease, out } => {
            let report = client.report(lease).await?;
            match out {
                Some(path) => {
                    let text = serde_json::to_string_pretty(&report)?;
                    std::fs::write(&path, format!("{text}\n"))
                        .with_context(|| format!("writing {}", path.display()))?;
                    let key = client.signing_public_key().await?;
                    eprintln!(
                        "wrote the acceptance report of lease {lease} to {}; verify it offline with\n  kiln health verify {} --public-key {key}",
                        path.display(),
                        path.display()
                    );
                    Ok(())
                }
                None if global.json => print_json(&report),
                None => {
                    print!("{}", render_report(&report));
                    Ok(())
                }
            }
        }
    }
}

/// Polls the release progress with a progress bar until done or `timeout`.
async fn follow(
    client: &Client,
    lease: i64,
    timeout: Duration,
    poll: Duration,
    quiet: bool,
) -> anyhow::Result<LeaseProgress> {
    let started = Instant::now();
    let mut progress = client.progress(lease).await?;
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(progress.released as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} available  {msg}",
        )
        .map_err(|err| anyhow::anyhow!("progress bar template: {err}"))?
        .progress_chars("=> "),
    );
    loop {
        bar.set_position((progress.available + progress.quarantined) as u64);
        bar.set_message(states_text(&progress));
        if progress.done {
            bar.finish();
            return Ok(progress);
        }
        if started.elapsed() >= timeout {
            bar.abandon();
            bail!(
                "gave up after {}: {} of {} node(s) of lease {lease} are available again ({}); wiping, reimaging \
                 and re-verifying are driven by the lifecycle engine of `kiln serve` — check that it is running, \
                 then follow again with `kiln hall release {lease} --wait` (the release itself is done)",
                humantime(timeout),
                progress.available,
                progress.released,
                states_text(&progress)
            );
        }
        tokio::time::sleep(poll.min(timeout.saturating_sub(started.elapsed()))).await;
        progress = client.progress(lease).await?;
    }
}

fn print_release_progress(
    lease: i64,
    progress: &LeaseProgress,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    if global.json {
        return print_json(progress);
    }
    println!(
        "lease {lease}: {} of {} node(s) available again, {} quarantined",
        progress.available, progress.released, progress.quarantined
    );
    if !progress.turnover.is_empty() {
        print!("{}", render_turnover(progress));
    }
    Ok(())
}

/// The per-node turnover summary `kiln hall release --wait` ends with.
fn render_turnover(progress: &LeaseProgress) -> String {
    let rows: Vec<Vec<String>> = progress
        .turnover
        .iter()
        .map(|t| {
            let outcome = match (&t.quarantined, t.reverified) {
                (Some(why), _) => format!("quarantined: {why}"),
                (None, true) => "re-verified, available".to_string(),
                (None, false) => t.state.to_string(),
            };
            let erased = if t.erased.is_empty() {
                "not erased".to_string()
            } else {
                t.erased.join("; ")
            };
            vec![t.serial.clone(), erased, outcome]
        })
        .collect();
    format!(
        "turnover:\n{}\n",
        table::render(&["SERIAL", "ERASED", "OUTCOME"], &rows)
    )
}

fn humantime(span: Duration) -> String {
    let secs = span.as_secs();
    match secs {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

fn states_text(progress: &LeaseProgress) -> String {
    let parts: Vec<String> = progress
        .states
        .iter()
        .map(|(state, count)| format!("{state}={count}"))
        .collect();
    if parts.is_empty() {
        "no released nodes".to_string()
    } else {
        parts.join(" ")
    }
}

/// The human summary of an acceptance report.
fn render_report(report: &AcceptanceReport) -> String {
    let a = &report.aggregates;
    let mut out = format!(
        "acceptance report of lease {} (hall {}, {}), generated {}\n",
        report.lease.id,
        report.hall,
        report.lease.status,
        report.generated_at.to_rfc3339()
    );
    out.push_str(&format!(
        "  nodes      {} leased of {}, {} owed\n  gpus       {}\n",
        a.nodes_leased, a.nodes_total, a.nodes_owed, a.gpu_count
    ));
    match &a.nccl_busbw_gbps {
        Some(d) => out.push_str(&format!(
            "  nccl busbw {} node(s): min {:.1} p10 {:.1} p50 {:.1} p90 {:.1} max {:.1} GB/s\n",
            d.nodes, d.min, d.p10, d.p50, d.p90, d.max
        )),
        None => out.push_str("  nccl busbw no NCCL runs recorded\n"),
    }
    if let Some(fleet) = &a.fleet {
        for b in &fleet.baselines {
            let d = &b.distribution;
            out.push_str(&format!(
                "  fleet      {} {} over {} node(s): min {:.1} p10 {:.1} p50 {:.1} p90 {:.1} max {:.1}\n",
                b.sku, b.metric, d.nodes, d.min, d.p10, d.p50, d.p90, d.max
            ));
        }
        for o in &fleet.outliers {
            out.push_str(&format!(
                "  outlier    {} {} {:.1} is {:.1}% below the hall median {:.1}\n",
                o.serial,
                o.metric,
                o.value,
                o.shortfall * 100.0,
                o.median
            ));
        }
        if fleet.outliers.is_empty() {
            out.push_str(&format!(
                "  outliers   none more than {:.0}% below a hall median\n",
                fleet.outlier_ratio * 100.0
            ));
        }
    }
    out.push_str(&format!("  signed by  {}\n", report.public_key_hex));
    let rows: Vec<Vec<String>> = report
        .nodes
        .iter()
        .map(|n| {
            let verdicts = n.signed_record.record["verdicts"]
                .as_array()
                .map_or(0, Vec::len);
            vec![
                n.serial.clone(),
                n.rack.clone(),
                n.slot.to_string(),
                n.sku.clone(),
                verdicts.to_string(),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["SERIAL", "RACK", "SLOT", "SKU", "VERDICTS"],
        &rows,
    ));
    out.push('\n');
    out
}

/// The hall table of `kiln hall list` (also printed by `kiln demo`).
pub fn render_halls(halls: &[HallSummary]) -> String {
    let rows: Vec<Vec<String>> = halls
        .iter()
        .map(|hall| {
            let mut states: Vec<String> = hall
                .states
                .iter()
                .map(|(state, count)| format!("{state}={count}"))
                .collect();
            if hall.drained > 0 {
                states.push(format!("drained={}", hall.drained));
            }
            vec![
                hall.site.clone(),
                hall.name.clone(),
                hall.racks.to_string(),
                hall.nodes.to_string(),
                states.join(" "),
            ]
        })
        .collect();
    table::render(&["SITE", "HALL", "RACKS", "NODES", "STATES"], &rows)
}
