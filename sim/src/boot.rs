//! One boot of a virtual node, from power-on to the agent's last report: POST, then network boot (fetch and
//! run kiln's iPXE script) or disk boot (the installed OS), acting with the real agent library.

use std::sync::Arc;
use std::time::Duration;

use kiln_agent::error_chain;
use kiln_agent::image::write_and_report_with;
use kiln_agent::{AgentStep, Backoff, ReportClient};
use kiln_images::{Target, WriteRequest};
use kiln_provisioner::boot::decision::RamdiskMode;
use tracing::{debug, info, warn};

use crate::answers::{HallContext, INSTALLED_KERNEL, RAMDISK_KERNEL};
use crate::config::DiskMode;
use crate::disks::NodeDisks;
use crate::faults::FaultKind;
use crate::hardware::NodeHardware;
use crate::node::{AgentSeed, Disk, VirtualNode};
use crate::script::{self, BootScript, RamdiskArgs};

/// Retry schedule of reports and script fetches while the provisioner is away (a crash test kills it): long
/// enough to outlive a restart, short waits so nodes resume soon after.
pub fn report_backoff() -> Backoff {
    Backoff {
        max_attempts: 1200,
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
    }
}

/// Runs one boot; returns when the node has nothing more to do until the next power event.
pub async fn run(hall: Arc<HallContext>, node: Arc<VirtualNode>, boot_target: Option<String>) {
    tokio::time::sleep(hall.durations.post).await;
    let imaged = matches!(node.runtime().disk, Disk::Imaged { .. });
    let network = match boot_target.as_deref() {
        Some("Pxe") => true,
        Some("Hdd") => false,
        // The normal boot order: the disk when it holds an OS, else the network.
        _ => !imaged,
    };
    if network {
        let text = fetch_script(&hall, &node).await;
        match script::parse(&text) {
            Ok(BootScript::Ramdisk(args)) => ramdisk(&hall, &node, args).await,
            Ok(BootScript::LocalDisk) => disk_boot(&hall, &node).await,
            Err(err) => {
                warn!(serial = %node.serial, error = %err, "boot script not understood; node halts")
            }
        }
    } else {
        disk_boot(&hall, &node).await;
    }
}

async fn fetch_script(hall: &HallContext, node: &VirtualNode) -> String {
    let urls = &hall.provisioner_urls;
    let backoff = report_backoff();
    let mut failures = 0u32;
    loop {
        let base = &urls[(node.index + failures as usize) % urls.len().max(1)];
        let url = format!("{base}/boot/{}.ipxe", node.boot_mac);
        let failure = match hall.http.get(&url).send().await {
            Ok(response) if response.status().is_success() => match response.text().await {
                Ok(text) => return text,
                Err(err) => format!("reading the body: {err}"),
            },
            Ok(response) => format!("HTTP {}", response.status()),
            Err(err) => format!("request failed: {err}"),
        };
        failures = failures.saturating_add(1);
        debug!(serial = %node.serial, %url, failures, reason = %failure, "boot script fetch failed; retrying");
        tokio::time::sleep(backoff.delay(failures)).await;
    }
}

fn reports(url: &str, token: &str, node: &VirtualNode) -> ReportClient {
    ReportClient::new(url, token, Some(node.boot_mac)).with_backoff(report_backoff())
}

/// Sends a report; `false` when it could not be delivered (the boot then stops, as the agent would exit).
async fn send(client: &ReportClient, node: &VirtualNode, step: AgentStep) -> bool {
    match client.send(step).await {
        Ok(_) => true,
        Err(err) => {
            warn!(serial = %node.serial, error = %err, "agent report not delivered; the agent stops");
            false
        }
    }
}

async fn ramdisk(hall: &HallContext, node: &VirtualNode, args: RamdiskArgs) {
    tokio::time::sleep(hall.durations.ramdisk_boot).await;
    let client = reports(&args.url, &args.token, node);
    let booted = AgentStep::Booted {
        kernel: Some(RAMDISK_KERNEL.into()),
        environment: "ramdisk".into(),
        ssh_host_key: None,
        ssh_address: None,
    };
    if !send(&client, node, booted).await {
        return;
    }
    info!(serial = %node.serial, mode = args.mode.as_str(), "ramdisk booted");
    match args.mode {
        RamdiskMode::Inspect | RamdiskMode::Discovery => inspect(hall, node, &client).await,
        RamdiskMode::Image => image(hall, node, &client, &args).await,
        RamdiskMode::Wipe => wipe(hall, node, &client, &args).await,
    }
}

async fn inspect(hall: &HallContext, node: &VirtualNode, client: &ReportClient) {
    tokio::time::sleep(hall.durations.inspect).await;
    let hardware = NodeHardware {
        serial: node.serial.clone(),
        boot_mac: node.boot_mac,
        sku: hall.profile.id.clone(),
        gpus: node.gpus as usize,
    };
    let step = match tokio::task::spawn_blocking(move || hardware.inspect()).await {
        // The ramdisk does not know the node's SKU: the provisioner compares (as the real agent's `run`).
        Ok(Ok(inspection)) => AgentStep::Inspected {
            inspection,
            sku_mismatches: Vec::new(),
        },
        Ok(Err(err)) => AgentStep::Failed {
            error: error_chain(&err),
        },
        Err(err) => AgentStep::Failed {
            error: format!("inspection task failed: {err}"),
        },
    };
    send(client, node, step).await;
}

async fn image(hall: &HallContext, node: &VirtualNode, client: &ReportClient, args: &RamdiskArgs) {
    let Some(image) = &args.image else {
        send(
            client,
            node,
            AgentStep::Failed {
                error: "image mode without kiln.image on the kernel command line".into(),
            },
        )
        .await;
        return;
    };
    {
        let mut runtime = node.runtime();
        runtime.disk = Disk::Blank;
        runtime.seed = None;
    }
    let target = match &hall.disk {
        DiskMode::SparseFiles(dir) => {
            let disks = NodeDisks::new(dir, &node.serial);
            match disks.create_dir() {
                Ok(()) => Target::file(&disks.os_disk(), None),
                Err(err) => {
                    let error = format!("cannot create {}: {err}", disks.dir().display());
                    send(client, node, AgentStep::Failed { error }).await;
                    return;
                }
            }
        }
        DiskMode::Null => Target::null(),
    };
    let target = match target {
        Ok(target) => target,
        Err(err) => {
            let error = error_chain(&err);
            send(client, node, AgentStep::Failed { error }).await;
            return;
        }
    };
    tokio::time::sleep(hall.durations.image_write).await;
    let mut request = WriteRequest::new(image.url.clone(), image.sha256, image.format);
    request.sparse = true;
    // The disk state is set before `image_written` goes out: the engine power-cycles the node into its disk as
    // soon as it reads that report, which ends this task.
    let on_written = |written: &kiln_images::WriteReport| {
        let mut runtime = node.runtime();
        runtime.disk = Disk::Imaged {
            sha256: written.sha256,
        };
        runtime.seed = Some(AgentSeed {
            url: args.url.clone(),
            token: args.token.clone(),
        });
        runtime.images_written += 1;
        info!(serial = %node.serial, bytes = written.disk_bytes, "image written and verified");
    };
    if let Err(err) = write_and_report_with(&hall.http, client, &request, target, on_written).await
    {
        warn!(serial = %node.serial, error = %error_chain(&err), "imaging failed");
    }
}

/// Wipe mode: the tenant's data is erased from the node's disk files by the agent's erase chain
/// ([`crate::disks`]); `Wiped` with the records when every disk is erased and verified, else `WipeFailed`.
async fn wipe(hall: &HallContext, node: &VirtualNode, client: &ReportClient, args: &RamdiskArgs) {
    tokio::time::sleep(hall.durations.wipe).await;
    {
        let mut runtime = node.runtime();
        runtime.disk = Disk::Blank;
        runtime.seed = None;
    }
    let disks = NodeDisks::new(&hall.disks_root, &node.serial);
    let skip = args.erase_skip.clone();
    let bad_sector = node.has(FaultKind::EraseFails);
    let scratch = matches!(hall.disk, DiskMode::Null);
    let erased = tokio::task::spawn_blocking(move || {
        disks.plant_tenant_data()?;
        let records = disks.erase(&skip, bad_sector);
        if scratch {
            // Null-disk mode keeps no disk files between wipes.
            std::fs::remove_dir_all(disks.dir())?;
        }
        Ok::<_, std::io::Error>(records)
    })
    .await;
    let step = match erased {
        // The same report the real agent's wipe mode sends for these records.
        Ok(Ok(records)) => kiln_agent::erase::wipe::wipe_step(records),
        Ok(Err(err)) => AgentStep::Failed {
            error: format!("the simulated disks: {err}"),
        },
        Err(err) => AgentStep::Failed {
            error: format!("erase task failed: {err}"),
        },
    };
    match &step {
        AgentStep::Wiped { disks, .. } => {
            info!(serial = %node.serial, ?disks, "disks erased and verified")
        }
        AgentStep::WipeFailed { error, .. } | AgentStep::Failed { error } => {
            warn!(serial = %node.serial, %error, "erase failed")
        }
        _ => {}
    }
    send(client, node, step).await;
}

/// Boots the disk: the installed OS comes up and its agent reports with the seed the image ramdisk left.
async fn disk_boot(hall: &HallContext, node: &VirtualNode) {
    let seed = {
        let runtime = node.runtime();
        match (&runtime.disk, &runtime.seed) {
            (Disk::Imaged { .. }, Some(seed)) => seed.clone(),
            _ => {
                info!(serial = %node.serial, "no bootable disk; the node halts");
                return;
            }
        }
    };
    tokio::time::sleep(hall.durations.installed_boot).await;
    node.runtime().os_up = true;
    let client = reports(&seed.url, &seed.token, node);
    let booted = AgentStep::Booted {
        kernel: Some(INSTALLED_KERNEL.into()),
        environment: "installed".into(),
        ssh_host_key: Some(node.reported_key.to_openssh().unwrap_or_default()),
        ssh_address: Some(node.ssh_address.clone()),
    };
    if send(&client, node, booted).await {
        info!(serial = %node.serial, "installed OS booted");
    }
}
