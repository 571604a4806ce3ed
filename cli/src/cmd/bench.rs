//! `kiln bench inventory`: import a hall-sized manifest and run state transitions on SQLite and PostgreSQL,
//! printing per-operation latency percentiles. A benchmark, not a test: numbers depend on the machine.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use kiln_inventory::{
    ManifestFormat, NodeFilter, NodeState, ScratchDatabase, SecretKey, Store, StoreOptions,
    parse_manifest,
};
use serde::Serialize;

use crate::global::print_json;
use crate::{GlobalArgs, table};

/// Benchmarks.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Manifest import and node transitions on SQLite and PostgreSQL.
    Inventory {
        /// Nodes in the generated manifest.
        #[arg(long, default_value_t = 10_240)]
        nodes: u32,
        /// State transitions to time.
        #[arg(long, default_value_t = 10_000)]
        transitions: u32,
        /// PostgreSQL server to run on (a scratch database is created and dropped); `off` skips PostgreSQL.
        #[arg(
            long,
            env = "KILN_BENCH_PG",
            default_value = "postgres://postgres@127.0.0.1:5432/test"
        )]
        pg: String,
    },
    /// Power-status sweep over N simulated BMCs with kiln, against a sequential ipmitool loop, N parallel
    /// ipmitool processes (`xargs -P`) and a parallel Redfish client (`curl --parallel`).
    BmcSweep(crate::cmd::bench_sweep::Args),
    /// kiln's sweep alone (with the sequential ipmitool sample), for fleets too big to give every simulated BMC
    /// an IPMI socket as `bmc-sweep` does for its parallel peers.
    BmcSweepKilnOnly(crate::cmd::bmc::SweepBenchArgs),
    /// A simulated hall brought up by the engine: wall time against the critical path.
    Bringup(crate::cmd::bench_bringup::Args),
    /// Image serving (kiln vs nginx) and writing (kiln's writer vs curl | dd).
    Images(crate::cmd::bench_images::Args),
    /// The web API under load: `wrk` at 64 connections on a page of nodes and a node's detail, and leasing a
    /// 4,096-node hall through the API.
    Api(crate::cmd::bench_api::Args),
    /// Overwrite erase: kiln's overwrite against `dd oflag=direct bs=1M` on the same loop device (root).
    Erase(crate::cmd::bench_erase::Args),
}

/// Latency figures for one kind of operation on one backend.
#[derive(Debug, Serialize)]
struct OpStats {
    backend: &'static str,
    operation: &'static str,
    count: usize,
    total_ms: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    max_us: f64,
}

impl OpStats {
    fn new(
        backend: &'static str,
        operation: &'static str,
        mut samples: Vec<Duration>,
        total: Duration,
    ) -> Self {
        samples.sort_unstable();
        let pick = |q: f64| {
            let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(index).map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        Self {
            backend,
            operation,
            count: samples.len(),
            total_ms: total.as_secs_f64() * 1e3,
            p50_us: pick(0.50),
            p90_us: pick(0.90),
            p99_us: pick(0.99),
            max_us: pick(1.0),
        }
    }
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let (nodes, transitions, pg) = match args.command {
        BenchCommand::Inventory {
            nodes,
            transitions,
            pg,
        } => (nodes, transitions, pg),
        BenchCommand::BmcSweep(sweep) => return crate::cmd::bench_sweep::exec(sweep, global).await,
        BenchCommand::BmcSweepKilnOnly(sweep) => {
            return crate::cmd::bmc::bench_sweep(sweep, global).await;
        }
        BenchCommand::Bringup(bringup) => {
            return crate::cmd::bench_bringup::exec(bringup, global).await;
        }
        BenchCommand::Images(images) => {
            return crate::cmd::bench_images::exec(images, global).await;
        }
        BenchCommand::Api(api) => return crate::cmd::bench_api::exec(api, global).await,
        BenchCommand::Erase(erase) => return crate::cmd::bench_erase::exec(erase, global).await,
    };
    let manifest = generate_manifest(nodes);
    let mut stats = Vec::new();
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    eprintln!("bench: SQLite, {nodes} nodes, {transitions} transitions …");
    stats.extend(run_backend("sqlite", &sqlite_url, &manifest, transitions).await?);
    if pg == "off" {
        eprintln!("bench: PostgreSQL skipped (--pg off)");
    } else {
        let scratch = ScratchDatabase::create(&pg, "kiln_bench")
            .await
            .context("creating a scratch PostgreSQL database (pass --pg off to skip)")?;
        eprintln!("bench: PostgreSQL, {nodes} nodes, {transitions} transitions …");
        let result = run_backend("postgres", &scratch.url, &manifest, transitions).await;
        scratch.drop_now().await?;
        stats.extend(result?);
    }
    if global.json {
        return print_json(&stats);
    }
    let rows: Vec<Vec<String>> = stats
        .iter()
        .map(|s| {
            vec![
                s.backend.to_string(),
                s.operation.to_string(),
                s.count.to_string(),
                format!("{:.0}", s.total_ms),
                format!("{:.0}", s.p50_us),
                format!("{:.0}", s.p90_us),
                format!("{:.0}", s.p99_us),
                format!("{:.0}", s.max_us),
            ]
        })
        .collect();
    println!(
        "{}",
        table::render(
            &[
                "BACKEND",
                "OPERATION",
                "COUNT",
                "TOTAL ms",
                "p50 µs",
                "p90 µs",
                "p99 µs",
                "max µs"
            ],
            &rows
        )
    );
    let ratio = |op: &str| {
        let find = |backend: &str| {
            stats
                .iter()
                .find(|s| s.backend == backend && s.operation == op)
                .map(|s| s.p50_us)
        };
        find("postgres")
            .zip(find("sqlite"))
            .map(|(pg, lite)| pg / lite.max(1e-9))
    };
    if let Some(ratio) = ratio("transition") {
        println!("transition p50, PostgreSQL / SQLite: {ratio:.2}×");
    }
    Ok(())
}

/// Racks per hall in the generated manifest: 128 racks × 32 nodes = 4,096-node halls.
const RACKS_PER_HALL: u32 = 128;

/// A manifest of `nodes` H100 nodes, 32 per rack, 4,096 per hall.
pub(crate) fn generate_manifest(nodes: u32) -> String {
    let mut text = String::from(
        "hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n",
    );
    for i in 0..nodes {
        let (rack, slot) = (i / 32, i % 32);
        let hall = rack / RACKS_PER_HALL;
        let [_, b1, b2, b3] = i.to_be_bytes();
        text.push_str(&format!(
            "hall-{hall},r{rack:04},{slot},BENCH-{i:06},h100-sxm-80gb,10.{b1}.{b2}.{b3},redfish,admin,pw{i},02:00:00:{b1:02x}:{b2:02x}:{b3:02x}\n"
        ));
    }
    text
}

async fn run_backend(
    backend: &'static str,
    url: &str,
    manifest: &str,
    transitions: u32,
) -> anyhow::Result<Vec<OpStats>> {
    let store = Store::open(StoreOptions::new(url).key(Some(SecretKey::generate()))).await?;
    let rows = parse_manifest(manifest, ManifestFormat::Csv, &|_| None)?;
    let started = Instant::now();
    store.import_manifest(&rows, "bench", "bench").await?;
    let import = started.elapsed();
    let mut out = vec![OpStats::new(
        backend,
        "import (whole manifest)",
        vec![import],
        import,
    )];

    // Walk nodes along the happy path, one transition at a time, timing each; hall-0 is kept for leasing.
    let all_nodes = store.list_nodes(&NodeFilter::default()).await?;
    let (hall0, nodes): (Vec<_>, Vec<_>) = all_nodes.into_iter().partition(|n| n.hall == "hall-0");
    let path = [
        NodeState::Enrolled,
        NodeState::Discovering,
        NodeState::Inspecting,
        NodeState::Imaging,
        NodeState::Booting,
        NodeState::BurnIn,
        NodeState::FabricTest,
        NodeState::Available,
    ];
    let mut samples = Vec::with_capacity(transitions as usize);
    let started = Instant::now();
    'outer: for node in &nodes {
        for step in path.windows(2) {
            if samples.len() >= transitions as usize {
                break 'outer;
            }
            let t = Instant::now();
            store
                .transition(node.id, step[0], step[1], "bench", "benchmark")
                .await?;
            samples.push(t.elapsed());
        }
    }
    out.push(OpStats::new(
        backend,
        "transition",
        samples,
        started.elapsed(),
    ));

    let mut samples = Vec::new();
    let started = Instant::now();
    for node in nodes.iter().step_by((nodes.len() / 1000).max(1)) {
        let t = Instant::now();
        store.node_by_serial(&node.serial).await?;
        samples.push(t.elapsed());
    }
    out.push(OpStats::new(
        backend,
        "node_by_serial",
        samples,
        started.elapsed(),
    ));

    out.extend(lease_hall0(backend, &store, &hall0, &path).await?);

    let mut samples = Vec::new();
    let started = Instant::now();
    loop {
        let t = Instant::now();
        let claims = store
            .claim_due_nodes("bench", 100, chrono::Duration::seconds(60))
            .await?;
        samples.push(t.elapsed());
        if claims.is_empty() {
            break;
        }
    }
    out.push(OpStats::new(
        backend,
        "claim_due_nodes(100)",
        samples,
        started.elapsed(),
    ));
    store.close().await;
    Ok(out)
}

/// Walks `nodes` along `path` with 16 concurrent walkers; returns each transition's latency.
pub(crate) async fn walk_concurrently(
    store: &Store,
    nodes: &[kiln_inventory::Node],
    path: &[NodeState],
) -> anyhow::Result<Vec<Duration>> {
    let mut walkers = tokio::task::JoinSet::new();
    for chunk in nodes.chunks(nodes.len().div_ceil(16).max(1)) {
        let (store, ids, path) = (
            store.clone(),
            chunk.iter().map(|n| n.id).collect::<Vec<_>>(),
            path.to_vec(),
        );
        walkers.spawn(async move {
            let mut samples = Vec::new();
            for id in ids {
                for step in path.windows(2) {
                    let t = Instant::now();
                    store
                        .transition(id, step[0], step[1], "bench", "prepare lease")
                        .await?;
                    samples.push(t.elapsed());
                }
            }
            anyhow::Ok(samples)
        });
    }
    let mut samples = Vec::new();
    while let Some(result) = walkers.join_next().await {
        samples.extend(result??);
    }
    Ok(samples)
}

/// Brings hall-0 to `available` with 16 concurrent walkers (throughput), then times leasing and releasing it.
async fn lease_hall0(
    backend: &'static str,
    store: &Store,
    hall0: &[kiln_inventory::Node],
    path: &[NodeState],
) -> anyhow::Result<Vec<OpStats>> {
    if hall0.is_empty() {
        return Ok(Vec::new());
    }
    let started = Instant::now();
    let samples = walk_concurrently(store, hall0, path).await?;
    let mut out = vec![OpStats::new(
        backend,
        "transition (16 concurrent)",
        samples,
        started.elapsed(),
    )];
    let hall = store.hall_by_name("hall-0").await?;
    let lessee = store.upsert_lessee("bench-lessee", None).await?;
    let started = Instant::now();
    let outcome = store
        .lease_hall(
            hall.id,
            lessee.id,
            store.now(),
            None,
            kiln_inventory::AcceptanceRule::AllNodes,
            "bench",
        )
        .await?;
    let lease = started.elapsed();
    let label = if outcome.nodes_leased == 4096 {
        "lease 4,096-node hall"
    } else {
        "lease hall-0"
    };
    out.push(OpStats::new(backend, label, vec![lease], lease));
    let started = Instant::now();
    store.release_lease(outcome.lease.id, "bench").await?;
    let release = started.elapsed();
    out.push(OpStats::new(
        backend,
        "release that lease",
        vec![release],
        release,
    ));
    Ok(out)
}
