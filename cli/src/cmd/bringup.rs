//! `kiln rack bringup MANIFEST` (import, then drive every node of the manifest to available or quarantined with
//! the control plane running in this process, showing progress). `kiln rack status` is `kiln rack list`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use kiln_inventory::{ManifestFormat, NodeState, Store, parse_manifest};

use crate::GlobalArgs;
use crate::cmd::boot_serve::BootServeArgs;
use crate::cmd::engine_args::{EngineArgs, start_control_plane};
use crate::global::{KeyUse, print_json_line};
use crate::progress::{quarantine_reasons, summary_line, watch};

/// Options of `kiln rack bringup`.
#[derive(Debug, clap::Args)]
pub struct BringupArgs {
    /// The rack manifest (CSV or TOML).
    pub file: std::path::PathBuf,
    /// Site for rows that name none.
    #[arg(long, default_value = "default")]
    pub site: String,
    /// Address the control plane listens on (nodes fetch boot scripts and report here).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Give up watching after this many seconds (the nodes keep their states; `kiln serve` carries on).
    #[arg(long, default_value_t = 24 * 3600)]
    pub timeout_s: u64,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub boot: BootServeArgs,
}

/// Imports the manifest and brings its nodes up.
pub async fn bringup(args: BringupArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading manifest {}", args.file.display()))?;
    let format = ManifestFormat::from_path(&args.file).unwrap_or(ManifestFormat::Csv);
    let rows = parse_manifest(&text, format, &|var| std::env::var(var).ok())?;
    let serials: HashSet<String> = rows.iter().map(|r| r.serial.clone()).collect();
    let store = global.open_store(KeyUse::CreateIfMissing).await?;
    let summary = store
        .import_manifest(&rows, &args.site, "cli:rack-bringup")
        .await?;
    if !global.json {
        eprintln!(
            "kiln: imported {}: {} new node(s), {} already enrolled",
            args.file.display(),
            summary.created,
            summary.unchanged
        );
    }
    let (running, boot) =
        start_control_plane(&store, args.listen, &args.engine, &args.boot, None, None).await?;
    if !global.json {
        eprintln!(
            "kiln: control plane on {} — bringing up {} node(s)",
            running.public_url,
            serials.len()
        );
    }
    let watched = watch(
        &store,
        None,
        Some(&serials),
        global.json,
        Duration::from_secs(args.timeout_s),
    )
    .await;
    running.stop().await;
    if let Some(boot) = boot {
        boot.shutdown().await;
    }
    let watched = watched?;
    report(&store, &args.file, &watched, global.json).await?;
    store.close().await;
    if !watched.finished {
        anyhow::bail!(
            "bring-up not finished after {}s: {}",
            args.timeout_s,
            summary_line(&watched.nodes)
        );
    }
    Ok(())
}

async fn report(
    store: &Store,
    file: &Path,
    watched: &crate::progress::Watched,
    json: bool,
) -> anyhow::Result<()> {
    let reasons = quarantine_reasons(store, &watched.nodes).await?;
    // A drained node is not available (it is never leased), whatever its state.
    let count = |state| {
        watched
            .nodes
            .iter()
            .filter(|n| n.state == state && !(n.drained && state == NodeState::Available))
            .count()
    };
    if json {
        return print_json_line(&serde_json::json!({
            "event": "done",
            "manifest": file.display().to_string(),
            "nodes": watched.nodes.len(),
            "available": count(NodeState::Available),
            "quarantined": count(NodeState::Quarantined),
            "quarantine_reasons": reasons,
            "finished": watched.finished,
            "elapsed_s": watched.elapsed.as_secs_f64(),
        }));
    }
    println!(
        "bring-up of {} took {:.1}s: {}",
        file.display(),
        watched.elapsed.as_secs_f64(),
        summary_line(&watched.nodes)
    );
    for (serial, reason) in &reasons {
        println!("  quarantined {serial}: {reason}");
    }
    Ok(())
}
