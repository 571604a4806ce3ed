//! A simulated hall driven by the real control plane in this process: the demo and `kiln bench bringup`. The
//! control plane (API, boot endpoints, image server, engine) listens on loopback; the kiln-sim nodes power on
//! through their simulated BMCs (real Redfish), fetch their iPXE scripts, write the demo image over HTTP, and
//! answer the engine's SSH checks (a russh server per node, or in-process at scale).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use kiln_images::{ContentStore, ImageFormat, ImageLibrary, ImageMeta};
use kiln_inventory::{ManifestFormat, Store, parse_manifest};
use kiln_provisioner::lifecycle::ssh::{SshNodeAccess, load_or_create_key};
use kiln_provisioner::lifecycle::{EngineConfig, NodeAccess};
use kiln_sim::{DiskMode, FaultFractions, SimConfig, SimHall, SshMode};

use kiln_server::{Running, ServerOptions};

/// Name and version of the image the simulated hall is imaged with.
pub const DEMO_IMAGE: (&str, &str) = ("kiln-demo-os", "1");

/// How to run the hall.
#[derive(Debug, Clone)]
pub struct SimRunOptions {
    /// Nodes in the hall.
    pub nodes: usize,
    /// Nodes per rack (the NCCL group).
    pub nodes_per_rack: usize,
    /// Planted faults.
    pub faults: FaultFractions,
    /// Seed of the fault placement.
    pub seed: u64,
    /// Time compression: simulated hardware and the engine's SLAs and waits run this many times faster.
    pub speed: f64,
    /// A russh server per node (else the engine's SSH checks are answered in-process).
    pub ssh_servers: bool,
    /// Node handlers running at once.
    pub workers: usize,
    /// Size of the demo image in MiB.
    pub image_mib: usize,
    /// Write images to sparse files in the working directory (else into a null sink).
    pub sparse_files: bool,
}

/// A running simulated hall with its control plane.
pub struct SimRun {
    /// The control plane.
    pub running: Running,
    /// The virtual nodes.
    pub hall: SimHall,
    /// Serials of the hall's nodes.
    pub serials: HashSet<String>,
    /// When the nodes were enrolled (the bring-up's start).
    pub enrolled_at: std::time::Instant,
}

/// Writes the demo image (a small raw disk with a marker) and adds it to the catalog, once.
async fn add_demo_image(store: &Store, dir: &Path, mib: usize) -> anyhow::Result<()> {
    if store.image(DEMO_IMAGE.0, DEMO_IMAGE.1).await?.is_some() {
        return Ok(());
    }
    let path = dir.join("kiln-demo-os.img");
    let mut bytes = vec![0u8; mib.max(1) * 1024 * 1024];
    let marker = b"kiln demo OS image: if you can read this, the disk was imaged by kiln\n";
    bytes[..marker.len()].copy_from_slice(marker);
    for (i, chunk) in bytes.chunks_mut(4096).enumerate().skip(1).step_by(64) {
        chunk[..8].copy_from_slice(&(i as u64).to_le_bytes());
    }
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    let library = ImageLibrary::new(store.clone(), ContentStore::new(dir.join("images")));
    library
        .add(
            &path,
            &ImageMeta {
                name: DEMO_IMAGE.0.into(),
                version: DEMO_IMAGE.1.into(),
                os: Some("kiln-demo".into()),
                format: Some(ImageFormat::Raw),
                signature: None,
                signing_key_id: None,
                verify_with: None,
            },
        )
        .await
        .context("adding the demo image")?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Starts the control plane and the hall in `dir`, and enrolls the hall's nodes.
pub async fn start(store: &Store, dir: &Path, options: &SimRunOptions) -> anyhow::Result<SimRun> {
    add_demo_image(store, dir, options.image_mib).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the control plane's listener")?;
    let url = format!("http://{}", listener.local_addr()?);
    let speed = options.speed.max(1.0);
    let mut sim = SimConfig::new(options.nodes);
    sim.nodes_per_rack = options.nodes_per_rack.max(1);
    sim.faults = options.faults;
    sim.seed = options.seed;
    sim.time_scale = 1.0 / speed;
    sim.bmc_tls = true;
    sim.disk = if options.sparse_files {
        let disks = dir.join("disks");
        std::fs::create_dir_all(&disks).with_context(|| format!("creating {}", disks.display()))?;
        DiskMode::SparseFiles(disks)
    } else {
        DiskMode::Null
    };
    let ssh_key = if options.ssh_servers {
        let (key, _) = load_or_create_key(&dir.join("kiln-ssh.key")).map_err(anyhow::Error::msg)?;
        sim.ssh = SshMode::Servers {
            client_key: key.public_key().clone(),
        };
        Some(key)
    } else {
        None
    };
    let hall = SimHall::start(sim, &url)
        .await
        .context("starting the simulated hall")?;
    let access: Arc<dyn NodeAccess> = match ssh_key {
        Some(key) => {
            let mut ssh = SshNodeAccess::new("root", key);
            ssh.command_timeout = std::time::Duration::from_secs(10);
            Arc::new(ssh)
        }
        None => Arc::new(hall.access()),
    };
    let mut engine = EngineConfig::default().compressed(speed);
    engine.instance = format!("kiln-demo-{}", std::process::id());
    engine.workers = options.workers.max(1);
    engine.claim_batch = engine.workers as i64;
    engine.image = Some((DEMO_IMAGE.0.into(), DEMO_IMAGE.1.into()));
    engine.limits.bmc_calls = engine.limits.bmc_calls.max(engine.workers);
    let running = kiln_server::start(
        store.clone(),
        ServerOptions {
            listen: listener.local_addr()?,
            public_url: Some(url),
            image_dir: dir.join("images"),
            assets_dir: dir.join("assets"),
            engine: Some(engine),
            access: Some(access),
            bmcs: None,
            listener: Some(listener),
            boot_router: None,
            signing_key: Some(
                kiln_health::evidence::load_or_create_signing_key(&dir.join("kiln-signing.key"))?.0,
            ),
            tls: None,
        },
    )
    .await?;
    let manifest = hall.manifest_csv();
    let rows = parse_manifest(&manifest, ManifestFormat::Csv, &|_| None)
        .context("the simulator's manifest")?;
    let serials = rows.iter().map(|r| r.serial.clone()).collect();
    std::fs::write(dir.join("manifest.csv"), &manifest).ok();
    let enrolled_at = std::time::Instant::now();
    store
        .import_manifest(&rows, "demo-site", "kiln-sim")
        .await
        .context("enrolling the simulated hall")?;
    Ok(SimRun {
        running,
        hall,
        serials,
        enrolled_at,
    })
}

/// Parses `--faults`: `demo`, `none`, or `kind=fraction,…` with kinds dead_bmc, flaky_bmc, wrong_gpu_count,
/// xid_burn_in, slow_nccl, changed_host_key, erase_fails (seen at a turnover), pcie_downtrain, sxid_burn_in,
/// slow_gpu (flagged against the hall's fleet baseline), and flaky_error_rate (the share of a flaky BMC's requests that fail,
/// 0.1 unless given).
pub fn parse_faults(text: &str) -> anyhow::Result<FaultFractions> {
    match text.trim() {
        "demo" => return Ok(FaultFractions::demo()),
        "none" | "" => return Ok(FaultFractions::default()),
        _ => {}
    }
    let mut faults = FaultFractions::default();
    for part in text.split(',') {
        let (kind, value) = part
            .split_once('=')
            .with_context(|| format!("--faults: {part:?} is not KIND=FRACTION"))?;
        let value: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| (0.0..=1.0).contains(v))
            .with_context(|| format!("--faults: {value:?} is not a fraction between 0 and 1"))?;
        let slot = match kind.trim() {
            "dead_bmc" => &mut faults.dead_bmc,
            "flaky_bmc" => &mut faults.flaky_bmc,
            "flaky_error_rate" => &mut faults.flaky_error_rate,
            "wrong_gpu_count" => &mut faults.wrong_gpu_count,
            "xid_burn_in" => &mut faults.xid_burn_in,
            "slow_nccl" => &mut faults.slow_nccl,
            "changed_host_key" => &mut faults.changed_host_key,
            "erase_fails" => &mut faults.erase_fails,
            "pcie_downtrain" => &mut faults.pcie_downtrain,
            "sxid_burn_in" => &mut faults.sxid_burn_in,
            "slow_gpu" => &mut faults.slow_gpu,
            other => anyhow::bail!(
                "--faults: unknown fault {other:?} (dead_bmc, flaky_bmc, flaky_error_rate, wrong_gpu_count, xid_burn_in, slow_nccl, changed_host_key, erase_fails, pcie_downtrain, sxid_burn_in, slow_gpu)"
            ),
        };
        *slot = value;
    }
    if faults.flaky_bmc > 0.0 && faults.flaky_error_rate == 0.0 {
        faults.flaky_error_rate = 0.1;
    }
    Ok(faults)
}
