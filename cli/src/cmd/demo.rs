//! `kiln demo`: a simulated hall from rack to lease, and through a tenant turnover, on a fresh SQLite database.
//! kiln runs in-process (API, boot endpoints, image server, lifecycle engine); kiln-sim provides the nodes, with
//! faults planted; the engine brings the hall up, remediates and quarantines the faulty nodes, and the hall is
//! leased to `demo-lessee`. Then the lease is released: the engine erases every released node (the sim nodes
//! run the agent's real erase code on their disk files), re-images, burns in and runs the fabric test again,
//! and the hall is leased to `demo-lessee-2` (`--no-turnover` stops after the first lease).
//!
//! Contract: with `--json`, the last line of stdout is one JSON object `{"nodes", "leased", "available",
//! "quarantined", "quarantine_reasons": {serial: reason}, "hall", "lessee", "elapsed_s"}` (the bring-up and the
//! first lease) with, unless `--no-turnover`, `"turnover": {"released", "wiped", "reverified",
//! "leased_again", …}`. The database stays in `--dir` for `kiln node list` and friends.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use kiln_inventory::{AcceptanceRule, NodeState, SecretKey, Store, StoreOptions};

use crate::cmd::demo_turnover::{self, NEXT_LESSEE};
use crate::global::print_json_line;
use crate::progress::{quarantine_reasons, summary_line, watch};
use crate::simrun::{self, SimRunOptions, parse_faults};
use crate::{GlobalArgs, table};

/// Run the demo (always on its own fresh SQLite file; `--db` is not used).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the demo's database, keys and image store (the database is recreated on every run).
    #[arg(long, default_value = "kiln-demo")]
    dir: PathBuf,
    /// Nodes in the simulated hall.
    #[arg(long, default_value_t = 32)]
    nodes: usize,
    /// Nodes per rack (each rack is one NCCL group).
    #[arg(long, default_value_t = 8)]
    nodes_per_rack: usize,
    /// Planted faults: `demo` (a mix of every kind), `none`, or `kind=fraction,…` (dead_bmc, flaky_bmc,
    /// wrong_gpu_count, xid_burn_in, slow_nccl, changed_host_key, erase_fails).
    #[arg(long, default_value = "demo")]
    faults: String,
    /// Seed of the fault placement (same seed, same faulty nodes).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Time compression of the simulated hardware and the engine's waits.
    #[arg(long, default_value_t = 100.0)]
    speed: f64,
    /// Answer the engine's SSH checks in-process instead of a russh server per node (default above 256 nodes).
    #[arg(long)]
    no_ssh: bool,
    /// Stop after the first lease: no release, erase and second lease.
    #[arg(long)]
    no_turnover: bool,
    /// Give up after this many seconds (bring-up and turnover together).
    #[arg(long, default_value_t = 110)]
    timeout_s: u64,
}

/// The hall's first lessee.
const LESSEE: &str = "demo-lessee";

fn reset_database(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let db_path = dir.join("kiln.db");
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", db_path.display()));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("removing the old demo database {}", path.display()));
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir.join("images"));
    let _ = std::fs::remove_dir_all(dir.join("disks"));
    Ok(db_path)
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let faults = parse_faults(&args.faults)?;
    let db_path = reset_database(&args.dir)?;
    // The demo keeps its own key beside its database so it never touches a real site key.
    let key_path = args.dir.join("kiln.key");
    let key = match std::env::var_os(kiln_inventory::SECRET_KEY_ENV) {
        Some(_) => SecretKey::load(&key_path)?,
        None => Some(SecretKey::load_or_create(&key_path)?.0),
    };
    let url = format!("sqlite://{}", db_path.display());
    let store = Store::open(StoreOptions::new(url.clone()).key(key))
        .await
        .context("creating the demo inventory")?;
    let options = SimRunOptions {
        nodes: args.nodes,
        nodes_per_rack: args.nodes_per_rack,
        faults,
        seed: args.seed,
        speed: args.speed,
        ssh_servers: !args.no_ssh && args.nodes <= 256,
        workers: 64,
        image_mib: 4,
        sparse_files: args.nodes <= 256,
    };
    let run = simrun::start(&store, &args.dir, &options).await?;
    let hall_name = run.hall.config().hall.clone();
    if !global.json {
        eprintln!(
            "kiln demo: {} simulated nodes in {} racks, kiln at {} (database {url})",
            args.nodes,
            run.hall.config().racks(),
            run.running.public_url
        );
        for fault in run.hall.planted_faults() {
            eprintln!("  planted: {} on {}", fault.kind.as_str(), fault.serial);
        }
    }
    let deadline = Duration::from_secs(args.timeout_s);
    let watched = watch(
        &store,
        Some(&hall_name),
        Some(&run.serials),
        global.json,
        deadline.saturating_sub(started.elapsed()),
    )
    .await;
    // The engine keeps running through the first lease and the turnover; it is stopped on every path.
    let story = async {
        let watched = watched?;
        let bringup_s = started.elapsed().as_secs_f64();
        let reasons = quarantine_reasons(&store, &watched.nodes).await?;
        // A drained node is not available (it is never leased), whatever its state.
        let count = |state| {
            watched
                .nodes
                .iter()
                .filter(|n| n.state == state && !(n.drained && state == NodeState::Available))
                .count()
        };
        let (available, quarantined) = (count(NodeState::Available), count(NodeState::Quarantined));
        let lease = lease_hall(&store, &hall_name, LESSEE, available, watched.nodes.len()).await;
        let turnover = match &lease {
            Ok(outcome) if !args.no_turnover && watched.finished && outcome.nodes_leased > 0 => {
                Some(
                    demo_turnover::run(
                        &store,
                        &hall_name,
                        &run.serials,
                        outcome.lease.id,
                        global.json,
                        deadline.saturating_sub(started.elapsed()),
                        |available, total| {
                            lease_hall(&store, &hall_name, NEXT_LESSEE, available, total)
                        },
                    )
                    .await?,
                )
            }
            _ => None,
        };
        anyhow::Ok((
            watched,
            bringup_s,
            reasons,
            available,
            quarantined,
            lease,
            turnover,
        ))
    }
    .await;
    run.running.stop().await;
    run.hall.shutdown();
    let (watched, bringup_s, reasons, available, quarantined, lease, turnover) = story?;
    let lessee = LESSEE;
    let leased = match &lease {
        Ok(outcome) => outcome.nodes_leased as usize,
        Err(_) => 0,
    };
    let planted = run.hall.planted_faults();
    let outliers = fleet_outliers(&store, &hall_name).await?;
    store.close().await;
    let elapsed = started.elapsed().as_secs_f64();
    let turnover_unfinished = turnover.as_ref().is_some_and(|t| !t.finished);
    if global.json {
        let mut line = serde_json::json!({
            "nodes": watched.nodes.len(),
            "leased": leased,
            "available": available,
            "quarantined": quarantined,
            "quarantine_reasons": reasons,
            "hall": hall_name,
            "lessee": lessee,
            "elapsed_s": elapsed,
            "bringup_s": bringup_s,
            "fleet_outliers": outliers,
        });
        if let Some(turnover) = &turnover {
            line["turnover"] = turnover.json();
        }
        print_json_line(&line)?;
        if turnover_unfinished {
            anyhow::bail!("the turnover did not finish within {}s", args.timeout_s);
        }
        return Ok(());
    }
    println!(
        "\nkiln demo: hall {hall_name} brought up in {bringup_s:.1}s: {}",
        summary_line(&watched.nodes)
    );
    let rows: Vec<Vec<String>> = planted
        .iter()
        .map(|fault| {
            let at_turnover = turnover
                .as_ref()
                .and_then(|t| t.quarantine_reasons.get(&fault.serial))
                .map(|reason| format!("at the turnover: {reason}"));
            let flagged = outliers
                .get(&fault.serial)
                .map(|why| format!("flagged: {why}"));
            let found = reasons
                .get(&fault.serial)
                .cloned()
                .or(at_turnover)
                .or(flagged);
            vec![
                fault.serial.clone(),
                fault.kind.as_str().to_string(),
                found.unwrap_or_else(|| {
                    let state = watched
                        .nodes
                        .iter()
                        .find(|n| n.serial == fault.serial)
                        .map_or("unknown".to_string(), |n| n.state.to_string());
                    format!("not quarantined ({state})")
                }),
            ]
        })
        .collect();
    if !rows.is_empty() {
        println!("\nplanted faults and what kiln concluded:");
        println!("{}", table::render(&["SERIAL", "PLANTED", "KILN"], &rows));
    }
    for (serial, reason) in reasons
        .iter()
        .filter(|(s, _)| !planted.iter().any(|f| &f.serial == *s))
    {
        println!("  also quarantined {serial}: {reason}");
    }
    match &lease {
        Ok(outcome) => println!(
            "\nleased hall {hall_name} to {lessee}: lease {}, {} node(s) handed over, {} owed",
            outcome.lease.id, outcome.nodes_leased, outcome.nodes_owed
        ),
        Err(err) => println!("\nthe hall was not leased: {err:#}"),
    }
    if let Some(turnover) = &turnover {
        turnover.print();
    }
    println!("\nkiln demo: {elapsed:.1}s in all");
    println!(
        "\nnext:\n  kiln --db {url} --key-file {key} rack status\n  kiln --db {url} --key-file {key} node list --state quarantined\n  kiln --db {url} --key-file {key} node show {serial}\n  kiln --db {url} --key-file {key} serve --no-engine   (hall map at http://127.0.0.1:8080/)",
        key = key_path.display(),
        serial = reasons.keys().next().map_or("SERIAL", String::as_str),
    );
    if !watched.finished {
        anyhow::bail!("the bring-up did not finish within {}s", args.timeout_s);
    }
    if turnover_unfinished {
        anyhow::bail!("the turnover did not finish within {}s", args.timeout_s);
    }
    Ok(())
}

/// The hall's nodes more than [`kiln_api::report::REPORT_OUTLIER_RATIO`] below their fleet baseline, by serial,
/// with what kiln says of each.
async fn fleet_outliers(
    store: &Store,
    hall: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let hall = store.hall_by_name(hall).await?;
    let mut found = std::collections::BTreeMap::new();
    for o in store
        .fleet_outliers(hall.id, kiln_api::report::REPORT_OUTLIER_RATIO)
        .await?
    {
        found.entry(o.serial.clone()).or_insert_with(|| {
            format!(
                "{} {:.1}% below the hall median ({:.0} vs {:.0})",
                o.metric,
                o.shortfall * 100.0,
                o.value,
                o.median
            )
        });
    }
    Ok(found)
}

/// Leases the hall to `lessee`, accepting it when every node that is not quarantined is verified.
async fn lease_hall(
    store: &Store,
    hall: &str,
    lessee: &str,
    available: usize,
    total: usize,
) -> anyhow::Result<kiln_inventory::LeaseOutcome> {
    let hall_id = store
        .list_halls()
        .await?
        .into_iter()
        .find(|h| h.name == hall)
        .map(|h| h.id)
        .with_context(|| format!("hall {hall} not found"))?;
    let lessee = store
        .upsert_lessee(lessee, Some("demo@example.invalid"))
        .await?;
    let fraction = (available as f64 / total.max(1) as f64).clamp(0.01, 1.0);
    Ok(store
        .lease_hall(
            hall_id,
            lessee.id,
            store.now(),
            None,
            AcceptanceRule::MinVerifiedFraction { fraction },
            "kiln-demo",
        )
        .await?)
}
