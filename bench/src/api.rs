//! `kiln bench api`: seeds a hall-sized inventory, serves the API in-process, loads it with `wrk` (Debian's
//! HTTP benchmark tool) on a page of nodes and on one node's detail, and times leasing a 4,096-node hall through
//! the API. A benchmark, not a test: the numbers depend on the machine.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kiln_api::ApiState;
use kiln_inventory::{
    ManifestFormat, NodeFilter, NodeState, Role, ScratchDatabase, SecretKey, Store, StoreOptions,
    parse_manifest,
};
use serde::Serialize;

use crate::fixtures::{generate_manifest, walk_concurrently};
use crate::output::print_json;
use crate::{Output, table};

/// Load the web API.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Nodes in the generated inventory (4,096 per hall; hall-0 is made available and leased).
    #[arg(long, default_value_t = 10_240)]
    nodes: u32,
    /// wrk run length per target.
    #[arg(long, value_parser = kiln_health::duration::parse_duration, default_value = "30s")]
    duration: Duration,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 4)]
    threads: u32,
    /// PostgreSQL server for the inventory (a scratch database is created and dropped); `off`: SQLite file.
    #[arg(long, env = "KILN_BENCH_PG", default_value = "off")]
    pg: String,
}

/// What `wrk` measured on one URL.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct WrkFigures {
    /// Requests per second over the run.
    requests_per_s: f64,
    /// Median latency.
    p50_ms: f64,
    /// 99th percentile latency.
    p99_ms: f64,
    /// Answers that were not 2xx/3xx.
    non_2xx: u64,
}

#[derive(Debug, Serialize)]
struct TargetResult {
    target: &'static str,
    path: String,
    #[serde(flatten)]
    figures: WrkFigures,
}

pub async fn exec(args: Args, output: &Output) -> anyhow::Result<()> {
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("`wrk` is not installed (Debian: apt-get install wrk)");
    }
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let (url, scratch) = if args.pg == "off" {
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        (url, None)
    } else {
        let scratch = ScratchDatabase::create(&args.pg, "kiln_bench_api")
            .await
            .context("creating a scratch PostgreSQL database")?;
        (scratch.url.clone(), Some(scratch))
    };
    let store = Store::open(StoreOptions::new(url).key(Some(SecretKey::generate()))).await?;
    let result = run(&args, &store, output).await;
    store.close().await;
    if let Some(scratch) = scratch {
        scratch.drop_now().await?;
    }
    result
}

async fn run(args: &Args, store: &Store, output: &Output) -> anyhow::Result<()> {
    eprintln!(
        "bench api: seeding {} nodes on {:?} …",
        args.nodes,
        store.backend()
    );
    let rows = parse_manifest(&generate_manifest(args.nodes), ManifestFormat::Csv, &|_| {
        None
    })?;
    store.import_manifest(&rows, "bench", "bench").await?;
    let hall0 = store
        .list_nodes(&NodeFilter {
            hall: Some("hall-0".into()),
            ..NodeFilter::default()
        })
        .await?;
    let path = NodeState::BRING_UP;
    walk_concurrently(store, &hall0, &path).await?;
    let (token, _) = store
        .create_api_token(Role::Admin, None, Some("bench"))
        .await?;
    let token = token.expose().to_string();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = ApiState::new(store.clone())
        .with_signing_key(kiln_health::evidence::generate_signing_key());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kiln_api::serve(listener, state, async move {
        let _ = stopped.await;
    }));

    let serial = hall0
        .get(hall0.len() / 2)
        .map_or_else(|| "BENCH-000000".to_string(), |n| n.serial.clone());
    let targets = [
        ("page of 100 nodes", "/api/v1/nodes?limit=100".to_string()),
        ("node detail", format!("/api/v1/nodes/{serial}")),
    ];
    let mut results = Vec::new();
    for (target, path) in targets {
        eprintln!(
            "bench api: wrk {} connections × {:?} on {path} …",
            args.connections, args.duration
        );
        let figures = wrk(args, &format!("http://{addr}{path}"), &token).await?;
        results.push(TargetResult {
            target,
            path,
            figures,
        });
    }

    let hall = store.hall_by_name("hall-0").await?;
    let client = kiln_images::http_client();
    let started = Instant::now();
    let response = client
        .post(format!("http://{addr}/api/v1/halls/{}/lease", hall.id))
        .bearer_auth(&token)
        .json(&serde_json::json!({"lessee": "bench-lessee"}))
        .send()
        .await
        .context("leasing hall-0 through the API")?;
    let lease_ms = started.elapsed().as_secs_f64() * 1e3;
    let status = response.status();
    let outcome: serde_json::Value = response.json().await.unwrap_or_default();
    let _ = stop.send(());
    let _ = server.await;
    if !status.is_success() {
        bail!("leasing hall-0 answered {status}: {outcome}");
    }
    let leased = outcome["nodes_leased"].as_i64().unwrap_or(0);

    if output.json {
        return print_json(&serde_json::json!({
            "nodes": args.nodes, "backend": format!("{:?}", store.backend()),
            "connections": args.connections, "duration_s": args.duration.as_secs_f64(),
            "targets": results, "lease": {"nodes_leased": leased, "ms": lease_ms},
        }));
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.target.to_string(),
                format!("{:.0}", r.figures.requests_per_s),
                format!("{:.2}", r.figures.p50_ms),
                format!("{:.2}", r.figures.p99_ms),
                r.figures.non_2xx.to_string(),
            ]
        })
        .collect();
    println!(
        "{} nodes on {:?}, wrk {} connections, {} threads, {:?} per target",
        args.nodes,
        store.backend(),
        args.connections,
        args.threads,
        args.duration
    );
    println!(
        "{}",
        table::render(&["TARGET", "REQ/S", "P50 MS", "P99 MS", "NON-2XX"], &rows)
    );
    println!("lease of a {leased}-node hall through the API: {lease_ms:.0} ms");
    Ok(())
}

/// Runs wrk on `url` and reads its summary.
async fn wrk(args: &Args, url: &str, token: &str) -> anyhow::Result<WrkFigures> {
    let mut command = std::process::Command::new("wrk");
    command
        .arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(url);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("reading wrk's output:\n{text}"))
}

/// Reads requests/s, the 50% and 99% latency lines and the non-2xx count from `wrk --latency` output.
fn parse_wrk(text: &str) -> anyhow::Result<WrkFigures> {
    let mut figures = WrkFigures {
        requests_per_s: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        non_2xx: 0,
    };
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(value)) => figures.requests_per_s = value.parse()?,
            (Some("50%"), Some(value)) => figures.p50_ms = latency_ms(value)?,
            (Some("99%"), Some(value)) => figures.p99_ms = latency_ms(value)?,
            _ if line.starts_with("Non-2xx or 3xx responses:") => {
                figures.non_2xx = line.rsplit(' ').next().unwrap_or("0").parse()?;
            }
            _ => {}
        }
    }
    if figures.requests_per_s.is_nan() || figures.p50_ms.is_nan() || figures.p99_ms.is_nan() {
        bail!("no Requests/sec or latency distribution found");
    }
    Ok(figures)
}

/// `812.00us`, `1.25ms`, `2.01s`, `1.5m` → milliseconds.
fn latency_ms(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("latency {text:?} has no unit"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse()?;
    Ok(match unit {
        "us" => value / 1e3,
        "ms" => value,
        "s" => value * 1e3,
        "m" => value * 60e3,
        other => bail!("unknown latency unit {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::{WrkFigures, parse_wrk};

    #[test]
    fn reads_a_wrk_summary() {
        // The layout `wrk --latency` prints (numbers made up).
        let text = "Running 30s test @ http://127.0.0.1:1/api/v1/nodes?limit=100
  4 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.52ms    3.01ms  80.10ms   88.00%
    Req/Sec     1.52k   120.00     1.80k    70.00%
  Latency Distribution
     50%  812.00us
     75%   11.00ms
     90%   14.20ms
     99%    1.02s
  181234 requests in 30.01s, 1.10GB read
  Non-2xx or 3xx responses: 3
Requests/sec:   6039.12
Transfer/sec:     37.61MB
";
        assert_eq!(
            parse_wrk(text).ok(),
            Some(WrkFigures {
                requests_per_s: 6039.12,
                p50_ms: 0.812,
                p99_ms: 1020.0,
                non_2xx: 3
            })
        );
        assert!(parse_wrk("Running 1s test\n").is_err());
    }
}
