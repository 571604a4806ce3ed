//! A hall in a test: fake BMCs (`fake_bmc.rs`) that log the boots the engine asks for, a "player" that answers each boot with
//! the reports a real node's agent would send, and a fake node access (SSH side) with planted faults.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use kiln_agent::inspect::{PciGpu, SystemInfo};
use kiln_agent::{AgentReport, AgentStep, Inspection};
use kiln_bmc::BootDevice;
use kiln_health::SkuCatalog;
use kiln_health::burnin::synthetic::SyntheticRun;
use kiln_health::nccl::NcclRun;
use kiln_inventory::{
    ImageFormat, ManifestFormat, ManualClock, NewImage, Node, NodeFilter, NodeState, SecretKey,
    Store, StoreOptions, parse_manifest,
};
use kiln_provisioner::boot::decision::{BootAction, RamdiskMode, action_for_state};
use kiln_provisioner::lifecycle::access::{BurnInReply, KERNEL_LOG_COMMAND, ToolReply};
use kiln_provisioner::lifecycle::{
    AccessError, Ctx, Engine, EngineConfig, Limits, NodeAccess, NodeHost, PostImageFacts,
};

pub use crate::fake_bmc::FakeBmcs;

pub const IMAGE_SHA: &str = "5f3d6e0e0d2a4c1f9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f";
/// The digest of the second cataloged image, `os:2` (what a technician's `reimage --image os:2` writes).
pub const IMAGE2_SHA: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
const GPU_MODEL: &str = "NVIDIA H100 80GB HBM3";

/// Faults planted on nodes by serial.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    pub dead_bmc: HashSet<String>,
    pub missing_gpu: HashSet<String>,
    pub slow_nccl: HashSet<String>,
    /// Erase methods whose erase fails verification on the node (ending that disk's chain), by serial.
    pub wipe_stuck: HashMap<String, Vec<kiln_inventory::EraseMethod>>,
    /// Nodes whose BMC offers a TPM clear.
    pub tpm_offered: HashSet<String>,
    /// Nodes whose wipe agent reports booted, then nothing (it hangs), by serial.
    pub wipe_silent: HashSet<String>,
    /// Nodes whose kernel log gains an Xid 79 once a burn-in has run.
    pub kernel_xid: HashSet<String>,
    /// Nodes with DCGM installed whose diagnostic fails (the others have no DCGM).
    pub dcgm_fail: HashSet<String>,
    /// Nodes whose GPUs run the stress load 7% slower than the others'.
    pub slow_stress: HashSet<String>,
    /// The H100 profile gates on fleet outliers (`gates.fleet_gate = true`).
    pub fleet_gate: bool,
}

/// One burn-in as the fake saw it: which engine ran it on which node, and when.
#[derive(Debug, Clone)]
pub struct Handled {
    pub serial: String,
    pub instance: String,
    pub start: std::time::Instant,
    pub end: std::time::Instant,
}

/// The SSH side.
#[derive(Debug, Clone, Default)]
pub struct FakeAccess {
    faults: Arc<RwLock<Faults>>,
    /// Time a burn-in takes.
    pub latency: Duration,
    /// The engine this access belongs to (for the log).
    pub instance: String,
    /// Every burn-in run, shared between engines.
    pub log: Arc<Mutex<Vec<Handled>>>,
}

impl FakeAccess {
    fn planted(&self, serial: &str, pick: impl Fn(&Faults) -> &HashSet<String>) -> bool {
        pick(&self.faults.read().expect("faults")).contains(serial)
    }

    fn burned_in(&self, serial: &str) -> bool {
        self.log
            .lock()
            .expect("lock")
            .iter()
            .any(|h| h.serial == serial)
    }
}

fn nccl_output(hosts: &[NodeHost], slow: bool) -> String {
    let fixture = if hosts.len() == 1 {
        include_str!("../../../healthchecks/tests/fixtures/nccl/all_reduce_h100_1node.txt")
    } else {
        include_str!("../../../healthchecks/tests/fixtures/nccl/all_reduce_h100_2node.txt")
    };
    let mut text = fixture.to_string();
    for (i, host) in hosts.iter().enumerate() {
        text = text.replace(&format!("host-0{}", i + 1), &host.serial);
    }
    if slow {
        // A degraded link: large messages run at a third of the bus bandwidth.
        text = text
            .lines()
            .map(|line| {
                let mut cols: Vec<String> = line.split_whitespace().map(str::to_string).collect();
                let large = cols
                    .first()
                    .and_then(|c| c.parse::<u64>().ok())
                    .is_some_and(|size| size >= 1 << 30);
                if large && cols.len() == 13 {
                    for i in [7, 11] {
                        if let Ok(busbw) = cols[i].parse::<f64>() {
                            cols[i] = format!("{:.2}", busbw / 3.0);
                        }
                    }
                    cols.join("  ")
                } else {
                    line.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    text
}

#[async_trait::async_trait]
impl NodeAccess for FakeAccess {
    async fn post_image_check(&self, host: &NodeHost) -> Result<PostImageFacts, AccessError> {
        Ok(PostImageFacts {
            kernel: "6.1.0-test".into(),
            driver: Some("550.54.15".into()),
            gpu_count: 8,
            transcript: format!("checked {}", host.serial),
        })
    }
    async fn burn_in_evidence(
        &self,
        host: &NodeHost,
        duration: Duration,
        sku: &str,
        _stress: &[String],
    ) -> Result<BurnInReply, AccessError> {
        let start = std::time::Instant::now();
        tokio::time::sleep(self.latency).await;
        self.log.lock().expect("lock").push(Handled {
            serial: host.serial.clone(),
            instance: self.instance.clone(),
            start,
            end: std::time::Instant::now(),
        });
        // A healthy node's raw evidence, built from kiln-health's sample types; the provisioner judges it.
        let catalog = SkuCatalog::builtin().expect("skus");
        let profile = catalog.get(sku).expect("sku profile");
        let mut run = SyntheticRun::healthy(profile, duration.as_secs().max(1));
        if self.planted(&host.serial, |f| &f.slow_stress) {
            run.gflops *= 0.93;
        }
        Ok(BurnInReply {
            document: run.evidence(profile).to_value(),
            exit_code: Some(0),
            wall: start.elapsed(),
        })
    }
    async fn run_tool(
        &self,
        host: &NodeHost,
        command: &str,
        _timeout: Duration,
    ) -> Result<ToolReply, AccessError> {
        // The installed OS of a healthy test node: a clean kernel log and no DCGM or nvbandwidth installed.
        let (stdout, stderr, code) = match command {
            KERNEL_LOG_COMMAND => {
                let mut log = format!(
                    "[    0.000000] Linux version 6.1.0-test ({})\n",
                    host.serial
                );
                if self.planted(&host.serial, |f| &f.kernel_xid) && self.burned_in(&host.serial) {
                    log.push_str(
                        "[  301.250000] NVRM: Xid (PCI:0000:3a:00): 79, pid=4242, name=gpu_burn, GPU has fallen off the bus.\n",
                    );
                }
                (log, String::new(), 0)
            }
            "dcgmi diag -r 3 -j" if self.planted(&host.serial, |f| &f.dcgm_fail) => (
                include_str!("../../../healthchecks/tests/fixtures/dcgm/v3_fail.json").to_string(),
                String::new(),
                226,
            ),
            other => (
                String::new(),
                format!("sh: 1: {other}: not found\n"),
                kiln_provisioner::lifecycle::access::NOT_INSTALLED,
            ),
        };
        Ok(ToolReply {
            stdout,
            stderr,
            exit_code: Some(code),
            timed_out: false,
        })
    }
    async fn nccl(&self, hosts: &[NodeHost]) -> Result<NcclRun, AccessError> {
        let slow = hosts.iter().any(|h| {
            self.faults
                .read()
                .expect("lock")
                .slow_nccl
                .contains(&h.serial)
        });
        let output = nccl_output(hosts, slow);
        Ok(NcclRun {
            hosts: hosts.iter().map(|h| h.serial.clone()).collect(),
            exit_code: Some(0),
            timed_out: false,
            output,
        })
    }
}

/// A wipe boot the player answered: the node's serial and the `kiln.erase_skip` methods its script carried.
pub type WipeBoot = (String, Vec<kiln_inventory::EraseMethod>);

/// A hall of `racks` × `per_rack` nodes with an engine over fakes, on a manual clock.
pub struct Hall {
    pub store: Store,
    pub clock: Arc<ManualClock>,
    pub engine: Engine,
    pub bmcs: FakeBmcs,
    pub access: FakeAccess,
    pub faults: Arc<RwLock<Faults>>,
    /// Every wipe boot answered: the serial and the `kiln.erase_skip` methods its script carried.
    pub wipe_boots: Arc<Mutex<Vec<WipeBoot>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Hall {
    pub async fn new(racks: usize, per_rack: usize, faults: Faults) -> Self {
        Self::with_config(racks, per_rack, faults, |_| {}).await
    }

    /// [`Hall::new`] with the engine's configuration adjusted by `tweak`.
    pub async fn with_config(
        racks: usize,
        per_rack: usize,
        faults: Faults,
        tweak: impl FnOnce(&mut EngineConfig),
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0)
                .single()
                .expect("time"),
        ));
        let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
        let store = Store::open(
            StoreOptions::new(url)
                .key(Some(SecretKey::generate()))
                .clock(clock.clone()),
        )
        .await
        .expect("store");
        let mut config = EngineConfig {
            instance: "test-engine".into(),
            recheck: Duration::from_secs(1),
            bmc_retry: Duration::from_secs(1),
            boot_timeout: Duration::from_secs(20),
            ..test_config()
        };
        tweak(&mut config);
        Self::build(
            store,
            clock,
            Some(dir),
            racks,
            per_rack,
            faults,
            config,
            Duration::ZERO,
        )
        .await
    }

    /// A hall on `store` (its clock is the wall clock) driven by an engine named `instance` whose burn-ins take
    /// `latency`, in real time.
    pub async fn real_time(
        store: Store,
        racks: usize,
        per_rack: usize,
        instance: &str,
        latency: Duration,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        Self::build(
            store,
            clock,
            None,
            racks,
            per_rack,
            Faults::default(),
            real_time_config(instance),
            latency,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn build(
        store: Store,
        clock: Arc<ManualClock>,
        dir: Option<tempfile::TempDir>,
        racks: usize,
        per_rack: usize,
        faults: Faults,
        config: EngineConfig,
        latency: Duration,
    ) -> Self {
        let mut csv = String::from(
            "hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n",
        );
        for r in 0..racks {
            for s in 0..per_rack {
                let n = r * per_rack + s;
                csv.push_str(&format!(
                    "H1,R{r},{s},SN{n},h100-sxm-80gb,10.{}.{}.{s},redfish,admin,pw,52:54:{:02x}:{:02x}:{:02x}:{s:02x}\n",
                    r / 256, r % 256, r / 65536, (r / 256) % 256, r % 256
                ));
            }
        }
        let rows = parse_manifest(&csv, ManifestFormat::Csv, &|_| None).expect("manifest");
        store
            .import_manifest(&rows, "site", "test")
            .await
            .expect("import");
        store
            .add_image(&NewImage {
                name: "os".into(),
                version: "1".into(),
                os: None,
                format: ImageFormat::Raw,
                size_bytes: 1024,
                sha256: IMAGE_SHA.into(),
                signature: None,
                signing_key_id: None,
            })
            .await
            .expect("image");
        store
            .add_image(&NewImage {
                name: "os".into(),
                version: "2".into(),
                os: None,
                format: ImageFormat::Raw,
                size_bytes: 2048,
                sha256: IMAGE2_SHA.into(),
                signature: None,
                signing_key_id: None,
            })
            .await
            .expect("image 2");
        let faults = Arc::new(RwLock::new(faults));
        let bmcs = FakeBmcs {
            state: Arc::default(),
            faults: faults.clone(),
        };
        let access = FakeAccess {
            faults: faults.clone(),
            latency,
            instance: config.instance.clone(),
            log: Arc::default(),
        };
        let engine = engine_over(store.clone(), config, &bmcs, access.clone());
        Hall {
            store,
            clock,
            engine,
            bmcs,
            access,
            faults,
            wipe_boots: Arc::default(),
            _dir: dir,
        }
    }

    /// A second engine on `store` (another process's connection to the same database), sharing this hall's
    /// BMCs and burn-in log.
    pub fn second_engine(&self, store: Store, instance: &str) -> Engine {
        let access = FakeAccess {
            instance: instance.to_string(),
            ..self.access.clone()
        };
        engine_over(store, real_time_config(instance), &self.bmcs, access)
    }

    /// Answers every boot asked since the last call as the node's agent would.
    pub async fn play(&self) {
        let boots = std::mem::take(&mut self.bmcs.state.lock().expect("lock").boots);
        for (serial, device) in boots {
            let node = self.store.node_by_serial(&serial).await.expect("node");
            let steps = match (device, action_for_state(node.state)) {
                (BootDevice::Pxe, BootAction::Ramdisk(RamdiskMode::Inspect)) => vec![
                    booted("ramdisk", None),
                    AgentStep::Inspected {
                        inspection: inspection(
                            !self
                                .faults
                                .read()
                                .expect("lock")
                                .missing_gpu
                                .contains(&serial),
                        ),
                        sku_mismatches: Vec::new(),
                    },
                ],
                (BootDevice::Pxe, BootAction::Ramdisk(RamdiskMode::Image)) => vec![
                    booted("ramdisk", None),
                    AgentStep::ImageWritten {
                        // What the node's script names: a technician's image choice, else the engine's.
                        sha256: self.image_for(&node).await,
                        disk_bytes: 1024,
                        downloaded_bytes: 1024,
                        elapsed_ms: 5,
                    },
                ],
                (BootDevice::Pxe, BootAction::Ramdisk(RamdiskMode::Wipe)) => {
                    let stuck = self
                        .faults
                        .read()
                        .expect("lock")
                        .wipe_stuck
                        .get(&serial)
                        .cloned();
                    let skip = crate::wipe_support::wipe_boot_skip(&self.store, &node).await;
                    self.wipe_boots
                        .lock()
                        .expect("lock")
                        .push((serial.clone(), skip.clone()));
                    let now = self.store.now();
                    if self
                        .faults
                        .read()
                        .expect("lock")
                        .wipe_silent
                        .contains(&serial)
                    {
                        vec![booted("ramdisk", None)]
                    } else {
                        vec![
                            booted("ramdisk", None),
                            crate::wipe_support::wipe_answer(
                                &skip,
                                &stuck.unwrap_or_default(),
                                now,
                            ),
                        ]
                    }
                }
                (BootDevice::Disk, _) => vec![booted("installed", Some(&serial))],
                _ => Vec::new(),
            };
            for (seq, step) in steps.into_iter().enumerate() {
                self.report(&node, seq as u64, step).await;
            }
        }
    }

    /// The digest the node's image ramdisk would write: its work record's image (a technician's reimage
    /// choice) when it names one, else the engine's.
    async fn image_for(&self, node: &Node) -> String {
        let stored = self.store.node_work(node.id).await.expect("work");
        match kiln_provisioner::lifecycle::Work::parse(node, stored.work.as_deref()).image {
            Some((name, version)) => {
                self.store
                    .image(&name, &version)
                    .await
                    .expect("image")
                    .expect("cataloged")
                    .sha256
            }
            None => IMAGE_SHA.into(),
        }
    }

    pub async fn report(&self, node: &Node, seq: u64, step: AgentStep) {
        let report = AgentReport {
            boot_mac: Some(node.boot_mac),
            seq,
            nonce: None,
            agent_version: "test".into(),
            step,
        };
        let body = serde_json::to_string(&report).expect("json");
        let name = kiln_provisioner::lifecycle::reports::step_name(&report.step);
        self.store
            .record_agent_report(node.id, None, name, &body, None, true)
            .await
            .expect("report");
    }

    /// Rounds of engine + agents + one second of clock, until no node is active or `rounds` ran out.
    pub async fn settle(&self, rounds: usize) -> Vec<Node> {
        for _ in 0..rounds {
            self.engine.run_once(1000).await.expect("round");
            self.play().await;
            self.clock.advance(chrono::Duration::seconds(1));
            let nodes = self.nodes().await;
            if nodes.iter().all(|n| !n.state.is_active()) {
                return nodes;
            }
        }
        self.nodes().await
    }

    pub async fn nodes(&self) -> Vec<Node> {
        self.store
            .list_nodes(&NodeFilter::default())
            .await
            .expect("nodes")
    }

    /// Replaces the planted faults (a technician fixed something).
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.write().expect("lock") = faults;
    }

    pub async fn state_of(&self, serial: &str) -> NodeState {
        self.store.node_by_serial(serial).await.expect("node").state
    }
}

fn booted(environment: &str, serial: Option<&str>) -> AgentStep {
    AgentStep::Booted {
        kernel: Some("6.1.0".into()),
        environment: environment.into(),
        ssh_host_key: serial.map(|_| {
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5CFqdiXJXAiTWuTvq8d3n/4pIpAqSPI1WGl7Kz2xjA"
                .to_string()
        }),
        ssh_address: serial.map(|_| "127.0.0.1:22".to_string()),
    }
}

fn inspection(all_gpus: bool) -> Inspection {
    let count = if all_gpus { 8 } else { 7 };
    Inspection {
        system: SystemInfo::default(),
        memory_bytes: 2 << 40,
        gpus: (0..count)
            .map(|i| PciGpu {
                pci_bus_id: format!("0000:{:02x}:00.0", 0x18 + 0x10 * i),
                vendor_id: 0x10de,
                device_id: 0x2330,
                model: GPU_MODEL.into(),
            })
            .collect(),
        ..Inspection::default()
    }
}

fn test_config() -> EngineConfig {
    EngineConfig {
        image: Some(("os".into(), "1".into())),
        limits: Limits {
            power_ons_per_rack_per_s: 1000,
            ..Limits::default()
        },
        ..EngineConfig::default()
    }
}

fn real_time_config(instance: &str) -> EngineConfig {
    EngineConfig {
        instance: instance.into(),
        // Few workers and long burn-ins: the simulated work, not this 2-core machine's CPU, sets the pace, so
        // two instances halve it.
        workers: 8,
        claim_batch: 8,
        recheck: Duration::from_millis(50),
        bmc_retry: Duration::from_millis(50),
        boot_timeout: Duration::from_secs(10),
        poll: Duration::from_millis(20),
        claim_ttl: Duration::from_secs(5),
        ..test_config()
    }
}

fn engine_over(store: Store, config: EngineConfig, bmcs: &FakeBmcs, access: FakeAccess) -> Engine {
    let catalog = if access.faults.read().expect("faults").fleet_gate {
        // The built-in profiles with the H100's (the first profile's) gates failing fleet outliers.
        let text = include_str!("../../../healthchecks/profiles/skus.toml").replacen(
            "fleet_gate = false\n",
            "fleet_gate = true\n",
            1,
        );
        assert!(
            text.contains("fleet_gate = true"),
            "the H100 profile sets fleet_gate"
        );
        SkuCatalog::from_toml(&text, "test: fleet-gated").expect("gated skus")
    } else {
        SkuCatalog::builtin().expect("skus")
    };
    let ctx = Ctx::new(
        store,
        config,
        Arc::new(bmcs.clone()),
        Arc::new(access),
        Arc::new(catalog),
    );
    Engine::new(ctx)
}

/// The reason of `serial`'s latest move to quarantined (empty when it never was).
pub async fn quarantine_reason(hall: &Hall, serial: &str) -> String {
    let node = hall.store.node_by_serial(serial).await.expect("node");
    let events = hall.store.node_events(node.id).await.expect("events");
    events
        .iter()
        .rev()
        .find(|e| e.to_state == Some(NodeState::Quarantined))
        .map(|e| e.reason.clone())
        .unwrap_or_default()
}
