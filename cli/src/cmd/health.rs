//! `kiln health …`: local GPU checks, burn-in, nccl-tests runs and parsing, and signed acceptance records.
//! All logic lives in kiln-health; this file maps arguments to it and prints the result.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use kiln_health::burnin::{BurnInConfig, run_burn_in};
use kiln_health::duration::parse_duration;
use kiln_health::evidence::{self, AcceptanceRecord};
use kiln_health::nccl::{
    self, CommandNcclRunner, NcclRunner, SshNcclRunner, bisect, judge_run, parse_pinned_hosts,
};
use kiln_health::nvml::{check_node, detect_sku, resolve_lib_path};
use kiln_health::verdict::now_unix_s;
use kiln_health::{SkuCatalog, SkuProfile, Verdict};

use crate::GlobalArgs;
use crate::global::{KeyUse, print_json};
use kiln_inventory::NewHealthRun;

/// GPU health: NVML checks, burn-in, NCCL, signed evidence.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: HealthCommand,
}

/// Options shared by the commands that judge against a SKU profile.
#[derive(Debug, clap::Args)]
struct ProfileArgs {
    /// SKU profile id (e.g. h100-sxm-80gb); detected from GPU 0's name when left out.
    #[arg(long)]
    sku: Option<String>,
    /// TOML file of SKU profiles layered over the built-in ones.
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// NVML library to load (default: KILN_NVML_LIB, else libnvidia-ml.so.1).
    #[arg(long)]
    nvml_lib: Option<PathBuf>,
    /// Also store the verdict as a health run of the node with this chassis serial in the inventory (--db).
    #[arg(long, value_name = "SERIAL")]
    record: Option<String>,
}

#[derive(Debug, Subcommand)]
enum HealthCommand {
    /// Static NVML checks of this node against its SKU profile.
    Check {
        #[command(flatten)]
        profile: ProfileArgs,
    },
    /// Run a stress tool while sampling NVML every second (faster on runs under 10 s); judge samples, output
    /// and exit status.
    BurnIn {
        #[command(flatten)]
        profile: ProfileArgs,
        /// How long to stress (300, 90s, 5m); default: the profile's burn-in duration.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Hard timeout; default: duration + 60 s.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// The stress command; `{duration_s}` expands to the duration in seconds.
        #[arg(last = true, default_values_t = ["gpu_burn".to_string(), "{duration_s}".to_string()])]
        stress: Vec<String>,
    },
    /// Run nccl-tests over hosts and judge busbw against the profile; optionally bisect a failing set.
    Nccl {
        #[command(flatten)]
        profile: ProfileArgs,
        /// Hosts, comma-separated (one per node). A single host runs all_reduce_perf locally.
        #[arg(long, value_delimiter = ',', required = true)]
        hosts: Vec<String>,
        /// Command template; {hosts}, {hosts_slots}, {np}, {gpus} expand. Default: local all_reduce_perf for
        /// one host, `mpirun -H {hosts_slots} -np {np} all_reduce_perf …` for several.
        #[arg(long, allow_hyphen_values = true, num_args = 1..)]
        command: Option<Vec<String>>,
        /// Hard timeout per run.
        #[arg(long, value_parser = parse_duration, default_value = "15m")]
        timeout: Duration,
        /// On failure, find the bad node(s) by re-running on halves.
        #[arg(long)]
        bisect: bool,
        /// Run the launcher on the first host over SSH with this private key (OpenSSH format).
        #[arg(long, requires = "pinned_hosts")]
        ssh_key: Option<PathBuf>,
        /// SSH user.
        #[arg(long, default_value = "root")]
        ssh_user: String,
        /// Pinned host keys: one `NAME HOST:PORT KEYTYPE BASE64` per line; hosts not listed are refused.
        #[arg(long, requires = "ssh_key")]
        pinned_hosts: Option<PathBuf>,
    },
    /// Parse nccl-tests output (text or -J JSON); exits 1 when it is not nccl-tests output.
    NcclParse {
        /// The output file ("-" for stdin).
        file: PathBuf,
    },
    /// Scan kernel log text (dmesg, `dmesg -T`, `journalctl -k`, syslog, /dev/kmsg) for Xid and NVSwitch SXid
    /// events; exits 1 when an event fails the node, 2 when the input cannot be read.
    XidScan {
        /// The log file ("-" or nothing for stdin).
        file: Option<PathBuf>,
    },
    /// Parse and judge `dcgmi diag -j` output; exits 1 when the diagnostic fails the node, 2 when the file
    /// cannot be read or is not DCGM diagnostic JSON.
    DcgmParse {
        /// The output file ("-" for stdin).
        file: PathBuf,
        /// GPUs the node must have results for; default: the GPUs the document lists, else those with results.
        #[arg(long)]
        gpus: Option<u32>,
        /// The level the diagnostic ran at (`dcgmi diag -r N`), for the report.
        #[arg(long)]
        level: Option<u8>,
    },
    /// Sign an acceptance record from verdict files (`kiln health check --json > v.json`).
    Sign {
        /// ed25519 site signing key: 32-byte seed as hex.
        #[arg(long)]
        signing_key: PathBuf,
        /// Node identifier.
        #[arg(long)]
        node: String,
        /// SKU profile id.
        #[arg(long)]
        sku: String,
        /// sha256 of the installed image.
        #[arg(long)]
        image_digest: Option<String>,
        /// Verdict JSON files.
        #[arg(required = true)]
        verdicts: Vec<PathBuf>,
    },
    /// Verify offline, with the site's public key, a signed acceptance record or a whole lease acceptance report
    /// (`kiln hall report LEASE --out FILE`).
    Verify {
        /// The signed record or report file.
        record: PathBuf,
        /// Site public key: hex, or a file holding hex.
        #[arg(long)]
        public_key: String,
    },
    /// Create a new ed25519 site signing key file and print its public key.
    Keygen {
        /// Where to write the secret seed (hex); refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        HealthCommand::Check { profile } => {
            let (lib, sku) = resolve(&profile)?;
            let verdict = tokio::task::spawn_blocking(move || check_node(&lib, &sku)).await?;
            record_verdict(&verdict, profile.record.as_deref(), global).await?;
            report_verdict(&verdict, global)
        }
        HealthCommand::BurnIn {
            profile,
            duration,
            timeout,
            stress,
        } => {
            let (lib, sku) = resolve(&profile)?;
            let duration = duration.unwrap_or(Duration::from_secs(sku.burn_in_duration_s));
            let mut cfg = BurnInConfig::new(stress, duration, lib);
            // Every second, faster on short runs so they still show sustained behaviour.
            cfg.sample_interval =
                (duration / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
            if let Some(t) = timeout {
                cfg.timeout = t;
            }
            let verdict = run_burn_in(&cfg, &sku).await;
            record_verdict(&verdict, profile.record.as_deref(), global).await?;
            report_verdict(&verdict, global)
        }
        HealthCommand::Nccl {
            profile,
            hosts,
            command,
            timeout,
            bisect: do_bisect,
            ssh_key,
            ssh_user,
            pinned_hosts,
        } => {
            let sku = load_profile(&profile, &resolve_lib_path(profile.nvml_lib.as_deref()))?;
            let local = nccl_runner(command, &hosts, &sku, timeout);
            match (ssh_key, pinned_hosts) {
                (Some(key), Some(pins)) => {
                    let key = russh_key(&key)?;
                    let text = std::fs::read_to_string(&pins)
                        .with_context(|| format!("reading {}", pins.display()))?;
                    let runner = SshNcclRunner {
                        user: ssh_user,
                        key,
                        hosts: parse_pinned_hosts(&text)?,
                        command: local,
                        connect_timeout: Duration::from_secs(30),
                    };
                    run_nccl(
                        &runner,
                        &hosts,
                        &sku,
                        do_bisect,
                        profile.record.as_deref(),
                        global,
                    )
                    .await
                }
                _ => {
                    run_nccl(
                        &local,
                        &hosts,
                        &sku,
                        do_bisect,
                        profile.record.as_deref(),
                        global,
                    )
                    .await
                }
            }
        }
        HealthCommand::NcclParse { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let report =
                nccl::parse(&text).with_context(|| format!("parsing {}", file.display()))?;
            if global.json {
                print_json(&report)
            } else {
                print!("{}", report.render_table());
                Ok(())
            }
        }
        HealthCommand::XidScan { file } => xid_scan(file.as_deref(), global),
        HealthCommand::DcgmParse { file, gpus, level } => dcgm_parse(&file, gpus, level, global),
        HealthCommand::Sign {
            signing_key,
            node,
            sku,
            image_digest,
            verdicts,
        } => {
            let key = evidence::load_signing_key(&signing_key)?;
            let mut parsed: Vec<Verdict> = Vec::new();
            for path in &verdicts {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                parsed.push(
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not a verdict", path.display()))?,
                );
            }
            let hardware = parsed
                .iter()
                .find(|v| v.kind == kiln_health::RunKind::NvmlCheck)
                .map(|v| serde_json::json!({ "gpus": v.evidence["gpus"], "driver_version": v.evidence["driver_version"] }))
                .unwrap_or(serde_json::Value::Null);
            let nccl_figures: Vec<serde_json::Value> = parsed
                .iter()
                .filter(|v| v.kind == kiln_health::RunKind::Nccl)
                .map(|v| serde_json::json!({ "hosts": v.evidence["hosts"], "avg_busbw_gbps": v.evidence["avg_busbw_gbps"] }))
                .collect();
            let record = AcceptanceRecord {
                node,
                sku,
                hardware,
                firmware: serde_json::Value::Null,
                image_digest,
                verdicts: parsed,
                evidence_sha256: Vec::new(),
                nccl: serde_json::json!(nccl_figures),
                created_at_unix_s: now_unix_s(),
                erased_before_lease: None,
            };
            print_json(&evidence::sign(&record, &key)?)
        }
        HealthCommand::Verify { record, public_key } => {
            let key = evidence::load_public_key(&public_key)?;
            let text = std::fs::read_to_string(&record)
                .with_context(|| format!("reading {}", record.display()))?;
            if kiln_api::report::is_report(&text) {
                return verify_report(&text, &key, &record, global);
            }
            let verified = evidence::verify(&text, &key)
                .with_context(|| format!("verifying {}", record.display()))?;
            if let Some(erased) = &verified.erased_before_lease {
                kiln_health::erasure::check(erased).map_err(|reason| {
                    anyhow::anyhow!(
                        "{}: node {}: erased before this lease: {reason}",
                        record.display(),
                        verified.node
                    )
                })?;
            }
            let passed = verified.verdicts.iter().all(Verdict::passed);
            if global.json {
                print_json(
                    &serde_json::json!({ "valid": true, "node": verified.node, "sku": verified.sku,
                    "all_verdicts_passed": passed }),
                )
            } else {
                println!(
                    "signature valid: node {} ({}), {} verdicts, all passed: {passed}",
                    verified.node,
                    verified.sku,
                    verified.verdicts.len()
                );
                Ok(())
            }
        }
        HealthCommand::Keygen { out } => {
            if out.exists() {
                bail!(
                    "{} exists; refusing to overwrite a signing key",
                    out.display()
                );
            }
            let key = evidence::create_signing_key(&out)?;
            println!("{}", hex::encode(key.verifying_key().as_bytes()));
            Ok(())
        }
    }
}

/// Verifies a lease acceptance report (`kiln hall report`): every node's signature and the derivable aggregates.
fn verify_report(
    text: &str,
    key: &ed25519_dalek::VerifyingKey,
    path: &std::path::Path,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let verified = kiln_api::report::verify(text, key)
        .with_context(|| format!("verifying the acceptance report {}", path.display()))?;
    if global.json {
        let mut value = serde_json::to_value(&verified)?;
        value["valid"] = serde_json::Value::Bool(true);
        return print_json(&value);
    }
    println!(
        "report valid: lease {} of hall {}: {} signed node record(s), {} GPU(s), all verdicts passed: {}, nodes owed: {}, erased and verified before this lease: {}",
        verified.lease_id,
        verified.hall,
        verified.nodes,
        verified.gpu_count,
        verified.all_verdicts_passed,
        verified.nodes_owed,
        verified.nodes_erased_before_lease
    );
    Ok(())
}

async fn run_nccl<R: NcclRunner>(
    runner: &R,
    hosts: &[String],
    sku: &SkuProfile,
    do_bisect: bool,
    record: Option<&str>,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let run = runner.run(hosts).await?;
    let verdict = judge_run(&run, sku);
    record_verdict(&verdict, record, global).await?;
    if verdict.passed() || !do_bisect || hosts.len() < 2 {
        return report_verdict(&verdict, global);
    }
    let outcome = bisect(runner, hosts, sku).await?;
    if global.json {
        print_json(&serde_json::json!({
            "verdict": verdict,
            "bisect": { "bad_hosts": outcome.bad_hosts, "unresolved": outcome.unresolved,
                        "runs": outcome.steps.len() },
        }))?;
    } else {
        print!("{}", verdict.render_table());
        println!(
            "bisection ({} runs): bad hosts {:?}; fabric suspects {:?}",
            outcome.steps.len(),
            outcome.bad_hosts,
            outcome.unresolved
        );
    }
    bail!("NCCL run failed")
}

/// Stores a verdict (passing or not) as a health run of the node with chassis serial `serial`.
async fn record_verdict(
    verdict: &Verdict,
    serial: Option<&str>,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let Some(serial) = serial else { return Ok(()) };
    let store = global.open_store(KeyUse::IfPresent).await?;
    let result = async {
        let node = store.node_by_serial(serial).await?;
        let evidence = serde_json::to_value(verdict)?;
        let started_at = i64::try_from(verdict.started_at_unix_s)
            .ok()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .unwrap_or_else(chrono::Utc::now);
        let kind = verdict.kind.as_str();
        store
            .record_health_run(&NewHealthRun {
                node: node.id,
                kind,
                passed: verdict.passed(),
                started_at,
                finished_at: Some(chrono::Utc::now()),
                evidence: &evidence,
            })
            .await?;
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    result.with_context(|| format!("recording the {:?} verdict for node {serial}", verdict.kind))
}

fn russh_key(
    path: &std::path::Path,
) -> anyhow::Result<std::sync::Arc<kiln_health::nccl::ssh::PrivateKey>> {
    let key = kiln_health::nccl::ssh::load_private_key(path)?;
    Ok(std::sync::Arc::new(key))
}

fn resolve(profile: &ProfileArgs) -> anyhow::Result<(PathBuf, SkuProfile)> {
    let lib = resolve_lib_path(profile.nvml_lib.as_deref());
    let sku = load_profile(profile, &lib)?;
    Ok((lib, sku))
}

fn load_profile(profile: &ProfileArgs, lib: &std::path::Path) -> anyhow::Result<SkuProfile> {
    let catalog = match &profile.profiles {
        Some(path) => SkuCatalog::builtin_with_overrides(path)?,
        None => SkuCatalog::builtin()?,
    };
    let id = match &profile.sku {
        Some(id) => id.clone(),
        None => detect_sku(lib, &catalog).map_err(anyhow::Error::msg)?,
    };
    Ok(catalog.get(&id)?.clone())
}

fn nccl_runner(
    command: Option<Vec<String>>,
    hosts: &[String],
    sku: &SkuProfile,
    timeout: Duration,
) -> CommandNcclRunner {
    let mut runner = CommandNcclRunner::single_node("all_reduce_perf", sku.gpus_per_node, timeout);
    if let Some(argv) = command {
        runner.argv_template = argv;
    } else if hosts.len() > 1 {
        let argv = [
            "mpirun",
            "-H",
            "{hosts_slots}",
            "-np",
            "{np}",
            "-x",
            "NCCL_DEBUG=INFO",
            "all_reduce_perf",
            "-b",
            "8",
            "-e",
            "8G",
            "-f",
            "2",
            "-g",
            "1",
            "-c",
            "1",
        ];
        runner.argv_template = argv.iter().map(|s| s.to_string()).collect();
    }
    runner
}

fn report_verdict(verdict: &Verdict, global: &GlobalArgs) -> anyhow::Result<()> {
    if global.json {
        print_json(verdict)?;
    } else {
        print!("{}", verdict.render_table());
    }
    let failed = verdict.failures().count();
    if failed > 0 {
        bail!("{failed} health check(s) failed");
    }
    Ok(())
}

/// Reads a file ("-" or none: stdin) as text, replacing bytes that are not UTF-8; exits 2 when it cannot.
fn read_input_or_exit(file: Option<&std::path::Path>) -> (String, String) {
    let (name, bytes) = match file {
        None => ("stdin".to_string(), read_stdin()),
        Some(p) if p.as_os_str() == "-" => ("stdin".to_string(), read_stdin()),
        Some(p) => (p.display().to_string(), std::fs::read(p)),
    };
    match bytes {
        Ok(bytes) => (String::from_utf8_lossy(&bytes).into_owned(), name),
        Err(err) => {
            eprintln!("error: reading {name}: {err}");
            std::process::exit(2)
        }
    }
}

fn read_stdin() -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
    Ok(buf)
}

fn xid_scan(file: Option<&std::path::Path>, global: &GlobalArgs) -> anyhow::Result<()> {
    let (text, name) = read_input_or_exit(file);
    let scan = kiln_health::kernlog::scan(&text);
    if global.json {
        print_json(&scan)?;
    } else {
        print!("{}", scan.render_text());
    }
    let failing = scan.failing().count();
    if failing > 0 {
        bail!("{name}: {failing} kernel log event(s) fail the node");
    }
    Ok(())
}

fn dcgm_parse(
    file: &std::path::Path,
    gpus: Option<u32>,
    level: Option<u8>,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let (text, name) = read_input_or_exit(Some(file));
    let mut diag = match kiln_health::dcgm::parse_diag(&text) {
        Ok(diag) => diag,
        Err(err) => {
            eprintln!("error: {name}: {err}");
            std::process::exit(2)
        }
    };
    if let Some(level) = level {
        diag = diag.with_level(level);
    }
    let expected = gpus.unwrap_or_else(|| {
        let listed = diag.gpus_listed.len().max(diag.gpus_seen().len());
        u32::try_from(listed).unwrap_or(u32::MAX)
    });
    let checks = kiln_health::dcgm::judge_dcgm(&diag, expected);
    let failed = checks.iter().filter(|c| c.failed()).count();
    if global.json {
        print_json(&serde_json::json!({ "diag": diag, "checks": checks, "passed": failed == 0 }))?;
    } else {
        println!(
            "DCGM diagnostic{} (DCGM {}): {}",
            diag.level.map(|l| format!(" r{l}")).unwrap_or_default(),
            diag.dcgm_version.as_deref().unwrap_or("version unknown"),
            if failed == 0 { "PASS" } else { "FAIL" }
        );
        for c in &checks {
            let status = match c.status {
                kiln_health::CheckStatus::Pass => "pass",
                kiln_health::CheckStatus::Fail => "FAIL",
                kiln_health::CheckStatus::Note => "note",
            };
            println!("{status:<6} {:<28} {:<8} {}", c.name, c.subject, c.reason);
        }
    }
    if failed > 0 {
        bail!("{name}: {failed} DCGM check(s) failed");
    }
    Ok(())
}
