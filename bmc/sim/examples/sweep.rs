//! Runs the power-status sweep benchmark without the CLI: `cargo run --release -p kiln-bmc-sim --example sweep
//! -- COUNT [CONCURRENCY] [http]`.

use kiln_bmc_sim::bench::{SweepBenchConfig, bmc_sweep};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let count = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let concurrency = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(256);
    let tls = args.get(3).map(String::as_str) != Some("http");
    let report = bmc_sweep(&SweepBenchConfig {
        count,
        concurrency,
        tls,
        ..SweepBenchConfig::default()
    })
    .await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
