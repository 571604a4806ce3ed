//! `kiln bench bmc-sweep-kiln-only`: kiln's power-status sweep alone over a simulated fleet (with the sequential
//! ipmitool sample), for fleets too big to give every simulated BMC an IPMI socket.

use crate::Output;

/// `kiln bench bmc-sweep`: arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of simulated BMCs.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// BMCs swept at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Plain HTTP instead of HTTPS with pinned certificates.
    #[arg(long)]
    http: bool,
}

/// `kiln bench bmc-sweep`: times kiln's power-status sweep over a simulated fleet. With `--json` the last line
/// is `{"count": N, "kiln_per_s": f64, "ipmitool_per_s": f64|null, "ratio": f64|null, "failed": n}`.
pub async fn exec(args: Args, out: &Output) -> anyhow::Result<()> {
    let report = kiln_bmc_sim::bench::bmc_sweep(&kiln_bmc_sim::bench::SweepBenchConfig {
        count: args.count,
        concurrency: args.concurrency,
        tls: !args.http,
        ..Default::default()
    })
    .await?;
    if out.json {
        println!("{}", serde_json::to_string(&report)?);
        println!("{}", report.contract_json());
    } else {
        println!("BMCs:           {}", report.count);
        println!("fleet start:    {:.2} s", report.fleet_start_s);
        println!(
            "kiln sweep:     {:.2} s  ({:.0} BMCs/s)",
            report.sweep_s, report.kiln_per_s
        );
        if let Some(cpu) = report.sweep_cpu_s {
            println!("sweep CPU:      {cpu:.2} s (fleet and kiln, all threads)");
        }
        match (report.ipmitool_per_s, report.ratio) {
            (Some(rate), Some(ratio)) => {
                println!("ipmitool:       {rate:.1} BMCs/s  (kiln is {ratio:.0}x)")
            }
            _ => println!("ipmitool:       not measured"),
        }
        println!(
            "failed:         {} {:?}",
            report.failed, report.failures_by_kind
        );
    }
    Ok(())
}
