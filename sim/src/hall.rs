//! [`SimHall`]: a running simulated hall: the BMC fleet (real Redfish/IPMI on loopback, faults applied), one
//! virtual node per BMC reacting to its power events, SSH servers when asked for, and the manifest that
//! enrolls it all in kiln.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_bmc_sim::{Faults, SimEventKind, SimFleet, SimFleetConfig, Timing};
use kiln_health::SkuCatalog;
use kiln_inventory::MacAddr;
use rand::SeedableRng;
use rand::rngs::StdRng;
use russh::keys::{Algorithm, PrivateKey};
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::access::SimAccess;
use crate::answers::HallContext;
use crate::config::{DiskMode, SimConfig, SshMode, scale_duration};
use crate::faults::{self, FaultKind, PlantedFault, reasons};
use crate::node::{Disk, VirtualNode};
use crate::{SimError, boot, ssh};

/// Where one virtual node can be reached, as the lead's tools and tests need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimNode {
    /// Chassis serial.
    pub serial: String,
    /// The PXE NIC's MAC.
    pub boot_mac: MacAddr,
    /// Rack name (`R01`, …).
    pub rack: String,
    /// Slot in the rack (1-based).
    pub slot: u32,
    /// Redfish base URL of its BMC (`https://127.0.0.1:PORT` or `http://`).
    pub bmc_url: String,
    /// SHA-256 fingerprint of the BMC's certificate (TLS only), to pin.
    pub bmc_fingerprint: Option<String>,
    /// IPMI UDP port on 127.0.0.1, when the BMC serves IPMI.
    pub ipmi_port: Option<u16>,
    /// `host:port` its installed OS's agent reports for SSH.
    pub ssh_address: String,
    /// The planted fault.
    pub fault: Option<FaultKind>,
}

/// What a virtual node is doing, for tests and progress views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Power-ons seen.
    pub boots: u64,
    /// Successful image writes.
    pub images_written: u64,
    /// The disk holds a verified image.
    pub imaged: bool,
    /// The installed OS is up.
    pub os_up: bool,
}

/// A running simulated hall. Dropping it stops the BMCs, nodes and SSH servers.
#[derive(Debug)]
pub struct SimHall {
    config: SimConfig,
    hall: Arc<HallContext>,
    fleet: SimFleet,
    nodes: Vec<SimNode>,
    tasks: Vec<JoinHandle<()>>,
}

fn bmc_faults(kind: Option<FaultKind>, config: &SimConfig) -> Option<Faults> {
    match kind {
        Some(FaultKind::DeadBmc) => Some(Faults {
            drop_connections: true,
            udp_drop_rate: 1.0,
            ..Faults::default()
        }),
        Some(FaultKind::FlakyBmc) => Some(Faults {
            error_rate: config.faults.flaky_error_rate,
            udp_drop_rate: config.faults.flaky_error_rate,
            ..Faults::default()
        }),
        _ => None,
    }
}

impl SimHall {
    /// Starts the hall; firmware of its nodes fetches boot scripts from `provisioner_url` (e.g.
    /// `http://127.0.0.1:8080`). Nodes stay off until the provisioner powers them on through their BMCs.
    pub async fn start(config: SimConfig, provisioner_url: &str) -> Result<Self, SimError> {
        Self::start_with_provisioners(config, &[provisioner_url.to_string()]).await
    }

    /// Like [`SimHall::start`] with several provisioners sharing one inventory: node `i` fetches its boot
    /// script from `provisioner_urls[i % n]` and fails over to the next one on an error.
    pub async fn start_with_provisioners(
        config: SimConfig,
        provisioner_urls: &[String],
    ) -> Result<Self, SimError> {
        if provisioner_urls.is_empty() {
            return Err(SimError::Config("no provisioner URL given".into()));
        }
        if config.nodes == 0 || config.nodes_per_rack == 0 {
            return Err(SimError::Config(
                "a hall needs at least one node and one node per rack".into(),
            ));
        }
        let profile = SkuCatalog::builtin()?.get(&config.sku)?.clone();
        crate::hardware::gpu_device(&config.sku)?;
        let durations = config.effective_durations();
        let scaled = |d: Duration| scale_duration(d, config.time_scale);
        let fleet = SimFleet::start(SimFleetConfig {
            count: config.nodes,
            tls: config.bmc_tls,
            user: config.bmc_user.clone(),
            password: config.bmc_password.clone(),
            timing: Timing {
                power_on: durations.power_on,
                graceful_off: scaled(Duration::from_secs(30)),
                task: scaled(Duration::from_secs(2)),
            },
            ipmi_count: (!config.bmc_ipmi).then_some(0),
            ..SimFleetConfig::default()
        })
        .await?;
        let placed = faults::place(
            config.nodes,
            &config.faults,
            &config.evidence_faults,
            config.seed,
        );
        let mut rng = StdRng::seed_from_u64(config.seed ^ 0x6b69_6c6e_2d73_696d);
        let mut listeners = Vec::new();
        let mut virtual_nodes = Vec::with_capacity(config.nodes);
        let mut nodes = Vec::with_capacity(config.nodes);
        for (endpoint, fault) in fleet.endpoints().iter().zip(placed) {
            let index = endpoint.index;
            let bmc = &endpoint.bmc;
            if let Some(faults) = bmc_faults(fault, &config) {
                bmc.set_faults(faults);
            }
            let boot_mac: MacAddr = bmc
                .macs
                .first()
                .and_then(|mac| mac.parse().ok())
                .ok_or_else(|| SimError::Config(format!("BMC {index} has no usable NIC MAC")))?;
            let reported = PrivateKey::random(&mut rng, Algorithm::Ed25519)?;
            let presented = if fault == Some(FaultKind::ChangedHostKey) {
                PrivateKey::random(&mut rng, Algorithm::Ed25519)?
            } else {
                reported.clone()
            };
            let ssh_address = match &config.ssh {
                SshMode::Servers { .. } => {
                    let listener = TcpListener::bind(("127.0.0.1", 0))
                        .await
                        .map_err(SimError::Bind)?;
                    let address = listener.local_addr().map_err(SimError::Bind)?.to_string();
                    listeners.push(listener);
                    address
                }
                // `.invalid` never resolves: only SimAccess reaches these nodes.
                SshMode::InProcess => format!("{}.kiln-sim.invalid:22", bmc.serial),
            };
            let per_rack = config.nodes_per_rack;
            let rack = format!("R{:02}", index / per_rack + 1);
            let slot = u32::try_from(index % per_rack + 1).unwrap_or(u32::MAX);
            let gpus = profile.gpus_per_node
                - u32::from(fault == Some(FaultKind::WrongGpuCount) && profile.gpus_per_node > 0);
            nodes.push(SimNode {
                serial: bmc.serial.clone(),
                boot_mac,
                rack: rack.clone(),
                slot,
                bmc_url: endpoint.redfish_url.clone(),
                bmc_fingerprint: endpoint.fingerprint.as_ref().map(ToString::to_string),
                ipmi_port: endpoint.ipmi_port,
                ssh_address: ssh_address.clone(),
                fault,
            });
            virtual_nodes.push(Arc::new(VirtualNode::new(
                index,
                bmc.serial.clone(),
                boot_mac,
                rack,
                slot,
                gpus,
                fault,
                reported.public_key().clone(),
                presented,
                ssh_address,
            )));
        }
        let by_serial: HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.serial.clone(), i))
            .collect();
        let (disks_root, scratch) = match &config.disk {
            DiskMode::SparseFiles(dir) => (dir.clone(), None),
            DiskMode::Null => {
                let scratch = tempfile::Builder::new()
                    .prefix("kiln-sim-disks-")
                    .tempdir()
                    .map_err(SimError::DiskDir)?;
                (scratch.path().to_path_buf(), Some(scratch))
            }
        };
        let hall = Arc::new(HallContext {
            provisioner_urls: provisioner_urls
                .iter()
                .map(|url| url.trim_end_matches('/').to_string())
                .collect(),
            gpu_name: format!("NVIDIA {}", profile.nvml_name_contains),
            profile,
            durations,
            time_scale: config.time_scale,
            nodes: virtual_nodes,
            by_serial,
            http: kiln_images::http_client(),
            disk: config.disk.clone(),
            disks_root,
            scratch,
            fake_nvml: fake_nvml_pool(&config),
        });
        let mut tasks = Vec::new();
        if let SshMode::Servers { client_key } = &config.ssh {
            for (node, listener) in hall.nodes.iter().zip(listeners) {
                tasks.push(tokio::spawn(ssh::serve(
                    hall.clone(),
                    node.clone(),
                    listener,
                    client_key.clone(),
                )));
            }
        }
        tasks.push(tokio::spawn(dispatch(
            hall.clone(),
            fleet.subscribe(),
            fleet_handles(&fleet),
        )));
        info!(nodes = config.nodes, racks = config.racks(), sku = %config.sku, "simulated hall started");
        Ok(Self {
            config,
            hall,
            fleet,
            nodes,
            tasks,
        })
    }

    /// The nodes, in BMC index order.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// The BMC fleet (to change fault knobs at run time, or power nodes directly in tests).
    pub fn fleet(&self) -> &SimFleet {
        &self.fleet
    }

    /// The configuration the hall was started with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Every planted fault, with the quarantine reason substring kiln must give (`None`: must end available).
    pub fn planted_faults(&self) -> Vec<PlantedFault> {
        let gpus = self.hall.profile.gpus_per_node;
        self.nodes
            .iter()
            .filter_map(|node| {
                let kind = node.fault?;
                let expected_reason = match kind {
                    FaultKind::DeadBmc => Some(reasons::BMC_UNREACHABLE.to_string()),
                    FaultKind::FlakyBmc => None,
                    FaultKind::WrongGpuCount => {
                        Some(faults::wrong_gpu_reason(gpus, &self.hall.gpu_name))
                    }
                    FaultKind::XidBurnIn => Some(reasons::XID.to_string()),
                    FaultKind::SlowNccl => Some(reasons::BUSBW.to_string()),
                    FaultKind::ChangedHostKey => Some(reasons::HOST_KEY.to_string()),
                    FaultKind::ThrottledGpu => Some(reasons::SM_CLOCK.to_string()),
                    FaultKind::ForgedVerdict | FaultKind::EmptyEvidence => {
                        Some(reasons::NOT_EVIDENCE.to_string())
                    }
                    FaultKind::CollectorFails => Some(reasons::NO_EVIDENCE.to_string()),
                    FaultKind::EraseFails => Some(reasons::ERASE_FAILED.to_string()),
                    FaultKind::PcieDowntrain => Some(reasons::PCIE_UNDER_LOAD.to_string()),
                    FaultKind::SxidBurnIn => Some(reasons::SXID.to_string()),
                    FaultKind::SlowGpu => None,
                };
                Some(PlantedFault {
                    serial: node.serial.clone(),
                    kind,
                    expected_reason,
                })
            })
            .collect()
    }

    /// The hall as a kiln rack manifest (CSV, the columns of `examples/hall-a.csv`), with the simulator's BMC
    /// URLs and credentials, for `kiln rack import`.
    pub fn manifest_csv(&self) -> String {
        let c = &self.config;
        let mut out = format!(
            "# kiln-sim hall {}: {} nodes in {} racks of {} ({}), seed {}. Simulator passwords only.\n\
             hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n",
            c.hall,
            c.nodes,
            c.racks(),
            c.nodes_per_rack,
            c.sku,
            c.seed
        );
        for node in &self.nodes {
            out.push_str(&format!(
                "{},{},{},{},{},{},redfish,{},{},{}\n",
                c.hall,
                node.rack,
                node.slot,
                node.serial,
                c.sku,
                node.bmc_url,
                c.bmc_user,
                c.bmc_password,
                node.boot_mac
            ));
        }
        out
    }

    /// In-process access to the nodes' installed OS (what their SSH servers would answer).
    pub fn access(&self) -> SimAccess {
        SimAccess::new(self.hall.clone())
    }

    /// What the node with this serial is doing.
    pub fn node_status(&self, serial: &str) -> Option<NodeStatus> {
        let node = self.hall.node(serial)?;
        let runtime = node.runtime();
        Some(NodeStatus {
            boots: runtime.boots,
            images_written: runtime.images_written,
            imaged: matches!(runtime.disk, Disk::Imaged { .. }),
            os_up: runtime.os_up,
        })
    }

    /// Stops the BMCs, nodes and SSH servers (also done on drop).
    pub fn shutdown(&self) {
        self.fleet.shutdown();
        for task in &self.tasks {
            task.abort();
        }
        for node in &self.hall.nodes {
            node.power_off();
        }
    }
}

impl Drop for SimHall {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The BMCs' power state readers, for resynchronising after missed events.
fn fleet_handles(fleet: &SimFleet) -> Vec<Arc<kiln_bmc_sim::SimBmc>> {
    fleet.endpoints().iter().map(|e| e.bmc.clone()).collect()
}

fn start_boot(
    hall: &Arc<HallContext>,
    node: &Arc<VirtualNode>,
    boot_target: Option<String>,
    bmc: &kiln_bmc_sim::SimBmc,
) {
    node.power_off();
    let generation = bmc.lock().power_generation;
    let task = tokio::spawn(boot::run(hall.clone(), node.clone(), boot_target));
    let mut runtime = node.runtime();
    runtime.boot = Some(task.abort_handle());
    runtime.boots += 1;
    runtime.burn_ins_since_boot = 0;
    runtime.power_generation = generation;
}

/// Copies of the fake NVML library that SSH-mode burn-ins collect through (at most 8, fewer for small halls).
/// Scale mode, or a build without the library, gets `None`: evidence is then built from sample types.
fn fake_nvml_pool(config: &SimConfig) -> Option<crate::burnin::FakeNvmlPool> {
    if matches!(config.ssh, SshMode::InProcess) {
        return None;
    }
    let Some(library) = crate::burnin::locate_fake_nvml() else {
        warn!(
            env = crate::burnin::FAKE_NVML_ENV,
            "fake NVML library not found: burn-in evidence is built without NVML"
        );
        return None;
    };
    match crate::burnin::FakeNvmlPool::new(&library, config.nodes.clamp(1, 8)) {
        Ok(pool) => Some(pool),
        Err(err) => {
            warn!(library = %library.display(), error = %err, "cannot copy the fake NVML library: burn-in evidence is built without NVML");
            None
        }
    }
}

/// Turns BMC power events into node boots.
async fn dispatch(
    hall: Arc<HallContext>,
    mut events: tokio::sync::broadcast::Receiver<kiln_bmc_sim::SimEvent>,
    bmcs: Vec<Arc<kiln_bmc_sim::SimBmc>>,
) {
    loop {
        match events.recv().await {
            Ok(event) => {
                let (Some(node), Some(bmc)) = (hall.nodes.get(event.bmc), bmcs.get(event.bmc))
                else {
                    continue;
                };
                match event.kind {
                    SimEventKind::PoweredOn { boot_target } => {
                        start_boot(&hall, node, boot_target, bmc)
                    }
                    SimEventKind::PoweredOff => node.power_off(),
                    _ => {}
                }
            }
            Err(RecvError::Lagged(missed)) => {
                // Events were lost: bring every node in line with its BMC's power state.
                warn!(
                    missed,
                    "simulated hall missed BMC events; resynchronising nodes"
                );
                for (node, bmc) in hall.nodes.iter().zip(&bmcs) {
                    let (on, generation) = {
                        let inner = bmc.lock();
                        (
                            inner.power == kiln_bmc::PowerState::On,
                            inner.power_generation,
                        )
                    };
                    let missed_power_on = node.runtime().power_generation != generation;
                    if !on {
                        node.power_off();
                    } else if missed_power_on {
                        // The one-time boot override, if any, is gone with the event: normal boot order.
                        start_boot(&hall, node, None, bmc);
                    }
                }
            }
            Err(RecvError::Closed) => break,
        }
    }
}
