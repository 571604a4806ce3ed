//! `kiln bench inventory`: import a hall-sized manifest and run state transitions on SQLite and PostgreSQL,
//! printing per-operation latency percentiles. A benchmark, not a test: numbers depend on the machine.

use std::time::{Duration, Instant};

use anyhow::Context;
use kiln_inventory::{
    ManifestFormat, NodeFilter, NodeState, ScratchDatabase, SecretKey, Store, StoreOptions,
    parse_manifest,
};
use serde::Serialize;

use crate::fixtures::{generate_manifest, walk_concurrently};
use crate::output::print_json;
use crate::{Output, table};

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

/// Imports a manifest of `nodes` nodes and times `transitions` transitions on SQLite and on PostgreSQL at `pg`
/// (`off`: SQLite only).
pub async fn exec(nodes: u32, transitions: u32, pg: &str, out: &Output) -> anyhow::Result<()> {
    let manifest = generate_manifest(nodes);
    let mut stats = Vec::new();
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    eprintln!("bench: SQLite, {nodes} nodes, {transitions} transitions …");
    stats.extend(run_backend("sqlite", &sqlite_url, &manifest, transitions).await?);
    if pg == "off" {
        eprintln!("bench: PostgreSQL skipped (--pg off)");
    } else {
        let scratch = ScratchDatabase::create(pg, "kiln_bench")
            .await
            .context("creating a scratch PostgreSQL database (pass --pg off to skip)")?;
        eprintln!("bench: PostgreSQL, {nodes} nodes, {transitions} transitions …");
        let result = run_backend("postgres", &scratch.url, &manifest, transitions).await;
        scratch.drop_now().await?;
        stats.extend(result?);
    }
    if out.json {
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
    let path = NodeState::BRING_UP;
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
