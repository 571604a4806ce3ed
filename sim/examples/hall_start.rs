//! Starts a scale-mode hall of N nodes (default 10240) and prints how long that took and the process's RSS:
//! `cargo run --release -p kiln-sim --example hall_start -- 10240`.

use std::time::Instant;

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let nodes: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10240);
    let before = rss_mb();
    let started = Instant::now();
    let hall =
        kiln_sim::SimHall::start(kiln_sim::SimConfig::new(nodes), "http://127.0.0.1:9").await?;
    println!(
        "{} nodes started in {:.2}s; RSS {:.0} MB ({:.1} MB per 1,000 nodes)",
        hall.nodes().len(),
        started.elapsed().as_secs_f64(),
        rss_mb(),
        (rss_mb() - before) * 1000.0 / nodes as f64
    );
    Ok(())
}
