//! `kiln bench bringup --nodes N [--db URL] [--json]`: a simulated hall brought up by the real engine with
//! compressed durations. Prints the wall time, the critical path (the lower bound the simulated durations and
//! the concurrency limits allow), their ratio (goal ≤ 1.10), and CPU time and peak RSS per 1,000 nodes (of
//! this process, which runs both kiln and the simulator). With `--json` the last line is `{"nodes", "wall_s",
//! "critical_path_s", "ratio", "cpu_s", "peak_rss_mb"}`.

use std::time::Duration;

use anyhow::Context;
use kiln_inventory::{NodeState, ScratchDatabase, SecretKey, Store, StoreOptions};
use kiln_provisioner::lifecycle::EngineConfig;
use kiln_sim::{Durations, FaultFractions, SimConfig};

use crate::Output;
use crate::output::print_json_line;
use crate::progress::{summary_line, watch};
use crate::simrun::{self, SimRunOptions, parse_faults};

/// Options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Nodes in the simulated hall.
    #[arg(long, default_value_t = 1024)]
    nodes: usize,
    /// Nodes per rack.
    #[arg(long, default_value_t = 8)]
    nodes_per_rack: usize,
    /// Database server: a PostgreSQL URL (a scratch database is created there and dropped), or `sqlite`
    /// (a temporary file).
    #[arg(long, default_value = "sqlite")]
    db: String,
    /// Time compression of the simulated hardware and the engine's waits.
    #[arg(long, default_value_t = 200.0)]
    speed: f64,
    /// Node handlers running at once. Fewer than the nodes due at once on purpose: claims hand out nodes
    /// nearest the image slots first, and that order only holds when handlers are claimed as workers free up
    /// (on this 2-core machine 48 measured best: ratio 1.09–1.11 at 1,024 nodes against 1.20 with 256).
    #[arg(long, default_value_t = 48)]
    workers: usize,
    /// Planted faults (`none`, `demo`, or `kind=fraction,…`); the critical path assumes none.
    #[arg(long, default_value = "none")]
    faults: String,
    /// Keep the SQLite database at this path after the run (for `kiln --db … node show` and the event log).
    #[arg(long, value_name = "PATH")]
    keep_db: Option<std::path::PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_s: u64,
}

/// CPU seconds and peak RSS (MiB) of this process so far.
#[allow(unsafe_code)]
fn usage() -> (f64, f64) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer we pass, which points at storage we own and sized
    // for one `rusage`; RUSAGE_SELF is a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) } != 0 {
        return (0.0, 0.0);
    }
    // SAFETY: the call succeeded, so the struct is initialized (and it was zeroed before anyway).
    let ru = unsafe { ru.assume_init() };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    // ru_maxrss is in KiB on Linux.
    (
        secs(ru.ru_utime) + secs(ru.ru_stime),
        ru.ru_maxrss as f64 / 1024.0,
    )
}

/// The lower bound on the bring-up time of `nodes` healthy nodes: the longest of the per-node chain of
/// simulated steps and what each concurrency limit allows.
pub fn critical_path(sim: &SimConfig, engine: &EngineConfig) -> Duration {
    let d: Durations = sim.effective_durations();
    let boot = d.power_on + d.post;
    let burn_in = kiln_sim::config::scale_duration(
        Duration::from_secs(engine.burn_in.as_secs().max(1)),
        sim.time_scale,
    );
    let discover = boot + d.ramdisk_boot + d.inspect;
    let image = boot + d.ramdisk_boot + d.image_write;
    let first_boot = boot + d.installed_boot;
    let limits = engine.limits;
    // The first power-on of a rack's last node waits for the others (K per rack per second).
    let inrush = Duration::from_secs_f64(
        sim.nodes_per_rack.saturating_sub(1) as f64 / limits.power_ons_per_rack_per_s.max(1) as f64,
    );
    let chain = inrush + discover + image + first_boot + burn_in + d.nccl;
    let n = sim.nodes as u32;
    let waves = |limit: usize| n.div_ceil(limit.max(1) as u32);
    let by_images = chain - image + image * waves(limits.image_writes);
    let by_burn_in = chain - burn_in + burn_in * waves(limits.burn_ins);
    // Three power-ons per node, at most K per rack per second: a rack's last power-on (a disk boot) comes at
    // least (3 × nodes − 1) / K after its first, and the installed boot, burn-in and NCCL follow it.
    let power_ons = Duration::from_secs_f64(
        (3.0 * sim.nodes_per_rack as f64 - 1.0).max(0.0)
            / limits.power_ons_per_rack_per_s.max(1) as f64,
    ) + boot
        + d.installed_boot
        + burn_in
        + d.nccl;
    chain.max(by_images).max(by_burn_in).max(power_ons)
}

/// Prints how long nodes stayed in each working state (mean and slowest, from the event log): where the
/// wall time above the critical path went.
async fn print_state_times(store: &Store, nodes: &[kiln_inventory::Node]) -> anyhow::Result<()> {
    let mut stays: std::collections::BTreeMap<NodeState, Vec<f64>> = Default::default();
    for node in nodes {
        let transitions: Vec<_> = store
            .node_events(node.id)
            .await?
            .into_iter()
            .filter(|e| e.to_state.is_some())
            .collect();
        for pair in transitions.windows(2) {
            if let Some(state) = pair[0].to_state {
                let stay = (pair[1].at - pair[0].at).num_milliseconds() as f64 / 1000.0;
                stays.entry(state).or_default().push(stay);
            }
        }
    }
    let mut line = String::from("  time per state (mean / max s):");
    for (state, times) in &stays {
        let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
        let max = times.iter().copied().fold(0.0, f64::max);
        line.push_str(&format!(" {state} {mean:.2}/{max:.2}"));
    }
    eprintln!("{line}");
    Ok(())
}

pub async fn exec(args: Args, output: &Output) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let (url, scratch) = if args.db == "sqlite" {
        let path = args
            .keep_db
            .clone()
            .unwrap_or_else(|| dir.path().join("bench.db"));
        (format!("sqlite://{}", path.display()), None)
    } else {
        let scratch = ScratchDatabase::create(&args.db, "kiln_bringup")
            .await
            .context("creating a scratch PostgreSQL database")?;
        (scratch.url.clone(), Some(scratch))
    };
    let store = Store::open(StoreOptions::new(url).key(Some(SecretKey::generate())))
        .await
        .context("opening the bench inventory")?;
    let faults: FaultFractions = parse_faults(&args.faults)?;
    let options = SimRunOptions {
        nodes: args.nodes,
        nodes_per_rack: args.nodes_per_rack,
        faults,
        seed: 1,
        speed: args.speed,
        ssh_servers: false,
        workers: args.workers,
        image_mib: 1,
        sparse_files: false,
    };
    eprintln!(
        "bench: bringing up {} simulated nodes on {} …",
        args.nodes,
        if scratch.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    let (cpu_before, _) = usage();
    let run = simrun::start(&store, dir.path(), &options).await?;
    // The clock starts when the nodes are enrolled: the hall's own start-up (certificates, keys) is not kiln's.
    let started = run.enrolled_at;
    let engine_config = run
        .running
        .engine
        .as_ref()
        .map(|e| e.ctx().config.as_ref().clone())
        .context("the bench runs an engine")?;
    let critical = critical_path(run.hall.config(), &engine_config);
    let watched = watch(
        &store,
        None,
        Some(&run.serials),
        output.json,
        Duration::from_secs(args.timeout_s),
    )
    .await;
    let wall = started.elapsed();
    let (cpu_after, peak_rss_mb) = usage();
    run.running.stop().await;
    run.hall.shutdown();
    let watched = watched?;
    if let Err(err) = print_state_times(&store, &watched.nodes).await {
        eprintln!("bench: cannot read the time per state: {err:#}");
    }
    // The critical path assumes healthy nodes: a quarantine in a run without planted faults is a finding.
    let reasons = crate::progress::quarantine_reasons(&store, &watched.nodes)
        .await
        .unwrap_or_default();
    for (serial, reason) in reasons.iter().take(10) {
        eprintln!("  quarantined {serial}: {reason}");
    }
    if reasons.len() > 10 {
        eprintln!("  … and {} more quarantined", reasons.len() - 10);
    }
    store.close().await;
    if let Some(scratch) = scratch {
        let _ = scratch.drop_now().await;
    }
    let available = watched
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Available)
        .count();
    let cpu_s = cpu_after - cpu_before;
    let ratio = wall.as_secs_f64() / critical.as_secs_f64().max(1e-9);
    let per_k = 1000.0 / args.nodes.max(1) as f64;
    eprintln!(
        "bench bringup: {} nodes ({}) in {:.1}s; critical path {:.1}s; ratio {:.2} (goal ≤ 1.10)\n  CPU {:.1}s ({:.2}s per 1,000 nodes), peak RSS {:.0} MiB ({:.0} MiB per 1,000 nodes); kiln and the simulator share this process",
        args.nodes,
        summary_line(&watched.nodes),
        wall.as_secs_f64(),
        critical.as_secs_f64(),
        ratio,
        cpu_s,
        cpu_s * per_k,
        peak_rss_mb,
        peak_rss_mb * per_k
    );
    if !watched.finished {
        anyhow::bail!(
            "bring-up did not finish within {}s ({available} available)",
            args.timeout_s
        );
    }
    if output.json {
        print_json_line(&serde_json::json!({
            "nodes": args.nodes,
            "wall_s": wall.as_secs_f64(),
            "critical_path_s": critical.as_secs_f64(),
            "ratio": ratio,
            "cpu_s": cpu_s,
            "peak_rss_mb": peak_rss_mb,
            "available": available,
            "quarantined": reasons.len(),
            "quarantine_reasons": reasons,
            "cpu_s_per_1000_nodes": cpu_s * per_k,
            "peak_rss_mb_per_1000_nodes": peak_rss_mb * per_k,
        }))?;
    }
    Ok(())
}
