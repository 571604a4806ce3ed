//! One simulated BMC's state: power state machine with delays, boot override, virtual media, event log,
//! sessions, fault knobs, and the events it publishes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kiln_bmc::PowerState;
use tokio::sync::broadcast;
use tracing::debug;

use crate::profile::VendorProfile;

/// Fault knobs of one simulated BMC; change them at run time with [`SimBmc::set_faults`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Extra delay before every answer.
    pub latency: Duration,
    /// Probability (0..=1) that a request is answered 500.
    pub error_rate: f64,
    /// Answer every request 503 (with `Retry-After`), as a BMC busy with a firmware job does.
    pub busy: bool,
    /// Reset requests are accepted but the power state never changes.
    pub stuck_power: bool,
    /// The BMC rejects every credential, as after a password rotation kiln missed.
    pub wrong_credentials: bool,
    /// At most this many sessions at once (0: no limit); more logins are refused 503.
    pub session_limit: usize,
    /// Connections are accepted and closed at once without a TLS handshake or answer.
    pub drop_connections: bool,
    /// Probability (0..=1) that an IPMI datagram is dropped.
    pub udp_drop_rate: f64,
    /// The firmware inventory lists a member that answers 404, and its `Members@odata.count` is one short.
    pub firmware_dangling: bool,
    /// The virtual media collection lists a slot that answers 404.
    pub media_dangling: bool,
    /// Every request needs basic auth, session login included (as sushy-emulator with basic auth on).
    pub basic_only: bool,
}

/// One component of the simulated firmware inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFirmware {
    /// Member id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Running version.
    pub version: String,
    /// Whether SimpleUpdate may target it.
    pub updateable: bool,
    /// The image family.
    pub software_id: String,
}

/// Something a simulated BMC did that a node simulator reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEventKind {
    /// The server finished powering on; it boots from `boot_target` (`None`: its normal boot order).
    PoweredOn {
        /// The one-time or persistent override in force at power-on, Redfish spelling.
        boot_target: Option<String>,
    },
    /// The server lost power.
    PoweredOff,
    /// The boot override changed.
    BootOverride {
        /// Redfish target name.
        target: String,
        /// Redfish `BootSourceOverrideEnabled`.
        enabled: String,
    },
    /// An image was attached to virtual media.
    MediaInserted {
        /// The slot.
        slot: String,
        /// The image URL.
        image: String,
    },
    /// Virtual media was detached.
    MediaEjected {
        /// The slot.
        slot: String,
    },
}

/// An event with the index of the BMC that raised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    /// Index of the BMC in its fleet.
    pub bmc: usize,
    /// What happened.
    pub kind: SimEventKind,
}

/// One virtual media slot's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaState {
    /// Slot id.
    pub id: String,
    /// Media types.
    pub media_types: Vec<String>,
    /// Attached image.
    pub image: Option<String>,
}

/// One event log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelEntry {
    /// Entry id.
    pub id: u32,
    /// Severity (`OK`, `Warning`, `Critical`).
    pub severity: &'static str,
    /// Message.
    pub message: String,
}

/// The boot override in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootState {
    /// `Disabled`, `Once`, `Continuous`.
    pub enabled: String,
    /// Redfish target (`None`, `Pxe`, …).
    pub target: String,
    /// `UEFI` or `Legacy`.
    pub mode: String,
}

/// Everything mutable about one simulated BMC.
#[derive(Debug)]
pub struct Inner {
    /// Power state.
    pub power: PowerState,
    /// Bumped on every power request, so a stale delayed transition does nothing.
    pub power_generation: u64,
    /// Boot override.
    pub boot: BootState,
    /// Bumped on every change of the system resource; the ETag.
    pub system_version: u64,
    /// Virtual media slots.
    pub media: Vec<MediaState>,
    /// Event log.
    pub sel: Vec<SelEntry>,
    /// Next SEL id.
    pub next_sel_id: u32,
    /// Live sessions: token → session id.
    pub sessions: HashMap<String, u64>,
    /// Next session id.
    pub next_session_id: u64,
    /// Task monitors: id → time at which the task completes.
    pub tasks: HashMap<String, tokio::time::Instant>,
    /// Count of requests answered, for tests and benchmarks.
    pub requests: u64,
    /// TPM clears done through `#ComputerSystem.Decommission` (profiles that offer it).
    pub tpm_clears: u32,
    /// The firmware inventory.
    pub firmware: Vec<SimFirmware>,
    /// Current BIOS attributes.
    pub bios: serde_json::Map<String, serde_json::Value>,
    /// BIOS attributes PATCHed into the settings object, applied at the next power-on.
    pub bios_pending: serde_json::Map<String, serde_json::Value>,
}

/// The firmware a simulated server ships with: the BMC's own version from the profile, BIOS, NIC, GPU.
fn default_firmware(profile: &VendorProfile) -> Vec<SimFirmware> {
    let item =
        |id: &str, name: &str, version: &str, updateable: bool, software_id: &str| SimFirmware {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            updateable,
            software_id: software_id.into(),
        };
    vec![
        item("BMC", "BMC Firmware", profile.bmc_firmware, true, "bmc"),
        item("BIOS", "BIOS", SIM_BIOS_VERSION, true, "bios"),
        item(
            "NIC.Slot.1",
            "ConnectX-7 NIC",
            "28.39.1002",
            true,
            "mlnx-cx7",
        ),
        item(
            "GPU.0",
            "GPU VBIOS",
            "96.00.89.00.01",
            false,
            "nvidia-vbios",
        ),
    ]
}

/// The BIOS version the simulated System and its firmware inventory report.
pub const SIM_BIOS_VERSION: &str = "2.19.1";

/// BIOS attributes as a simulated server ships them.
fn default_bios() -> serde_json::Map<String, serde_json::Value> {
    [
        ("BootMode", "Uefi"),
        ("LogicalProc", "Enabled"),
        ("ProcVirtualization", "Enabled"),
        ("SriovGlobalEnable", "Disabled"),
        ("SysProfile", "PerfPerWattOptimizedDapc"),
        ("PcieAspmL1", "Enabled"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), serde_json::Value::from(value)))
    .collect()
}

/// Timing of the simulated hardware.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From power-on request to `On`.
    pub power_on: Duration,
    /// From graceful shutdown request to `Off`.
    pub graceful_off: Duration,
    /// How long a 202 task runs.
    pub task: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            power_on: Duration::from_secs(2),
            graceful_off: Duration::from_secs(1),
            task: Duration::from_millis(500),
        }
    }
}

/// One simulated BMC.
#[derive(Debug)]
pub struct SimBmc {
    /// Index in the fleet.
    pub index: usize,
    /// Hardware model.
    pub profile: &'static VendorProfile,
    /// Server serial number.
    pub serial: String,
    /// Server NIC MACs, one per profile NIC id.
    pub macs: Vec<String>,
    /// Accepted user.
    pub user: String,
    /// Accepted password (a simulator's password; not a secret worth redacting).
    pub password: String,
    /// Hardware timing.
    pub timing: Timing,
    inner: Mutex<Inner>,
    faults: Mutex<Faults>,
    events: broadcast::Sender<SimEvent>,
}

impl SimBmc {
    /// A powered-off BMC of the given profile.
    pub fn new(
        index: usize,
        profile: &'static VendorProfile,
        user: &str,
        password: &str,
        timing: Timing,
        events: broadcast::Sender<SimEvent>,
    ) -> Arc<Self> {
        let macs = (0..profile.nic_ids.len())
            .map(|nic| {
                let n = index as u32;
                format!(
                    "02:4b:{:02x}:{:02x}:{:02x}:{:02x}",
                    (n >> 16) & 0xff,
                    (n >> 8) & 0xff,
                    n & 0xff,
                    nic
                )
            })
            .collect();
        let media = profile
            .media_slots
            .iter()
            .map(|(id, types)| MediaState {
                id: (*id).to_string(),
                media_types: types.iter().map(|t| (*t).to_string()).collect(),
                image: None,
            })
            .collect();
        Arc::new(SimBmc {
            index,
            profile,
            serial: format!("KSIM{index:06}"),
            macs,
            user: user.to_string(),
            password: password.to_string(),
            timing,
            inner: Mutex::new(Inner {
                power: PowerState::Off,
                power_generation: 0,
                boot: BootState {
                    enabled: "Disabled".into(),
                    target: "None".into(),
                    mode: "UEFI".into(),
                },
                system_version: 1,
                media,
                sel: vec![SelEntry {
                    id: 1,
                    severity: "OK",
                    message: "Log area reset/cleared".into(),
                }],
                next_sel_id: 2,
                sessions: HashMap::new(),
                next_session_id: 1,
                tasks: HashMap::new(),
                requests: 0,
                tpm_clears: 0,
                firmware: default_firmware(profile),
                bios: default_bios(),
                bios_pending: serde_json::Map::new(),
            }),
            faults: Mutex::new(Faults::default()),
            events,
        })
    }

    /// Locks the mutable state. A panic while holding the lock cannot leave it inconsistent in a way that
    /// matters to a simulator, so a poisoned lock is used as is.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current fault knobs.
    pub fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the fault knobs.
    pub fn set_faults(&self, faults: Faults) {
        *self
            .faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = faults;
    }

    /// Changes some fault knobs.
    pub fn update_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(
            &mut self
                .faults
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
    }

    /// The current power state.
    pub fn power(&self) -> PowerState {
        self.lock().power
    }

    /// Sets the power state directly (test setup; no delay, no event).
    pub fn force_power(&self, power: PowerState) {
        let mut inner = self.lock();
        inner.power = power;
        inner.power_generation += 1;
        inner.system_version += 1;
    }

    /// Whether `user`/`password` are accepted now.
    pub fn credentials_ok(&self, user: &str, password: &str) -> bool {
        !self.faults().wrong_credentials && user == self.user && password == self.password
    }

    fn publish(&self, kind: SimEventKind) {
        // No subscribers is fine: nobody is simulating the node.
        let _ = self.events.send(SimEvent {
            bmc: self.index,
            kind,
        });
    }

    fn log(inner: &mut Inner, severity: &'static str, message: String) {
        let id = inner.next_sel_id;
        inner.next_sel_id += 1;
        inner.sel.push(SelEntry {
            id,
            severity,
            message,
        });
        // Keep the log bounded, as real BMCs do.
        if inner.sel.len() > 512 {
            inner.sel.remove(0);
        }
    }

    /// Applies a Redfish reset type. Returns `false` for a reset type this profile does not offer.
    pub fn reset(self: &Arc<Self>, reset_type: &str) -> bool {
        if !self.profile.reset_types.contains(&reset_type) {
            return false;
        }
        self.apply_reset(reset_type);
        true
    }

    /// Applies a reset without checking the profile's list (IPMI chassis control maps onto these names).
    pub fn apply_reset(self: &Arc<Self>, reset_type: &str) {
        if self.faults().stuck_power {
            debug!(bmc = self.index, reset_type, "power stuck: reset ignored");
            return;
        }
        let mut inner = self.lock();
        inner.power_generation += 1;
        inner.system_version += 1;
        let generation = inner.power_generation;
        let was_on = matches!(inner.power, PowerState::On | PowerState::PoweringOff);
        match reset_type {
            "On" | "ForceOn" => {
                if !was_on {
                    self.begin_power_on(&mut inner, generation);
                }
            }
            "PushPowerButton" => {
                if was_on {
                    self.begin_power_off(&mut inner, generation, self.timing.graceful_off);
                } else {
                    self.begin_power_on(&mut inner, generation);
                }
            }
            "ForceOff" => self.power_off_now(&mut inner),
            "GracefulShutdown" => {
                if was_on {
                    self.begin_power_off(&mut inner, generation, self.timing.graceful_off);
                }
            }
            // Restarts and cycles: power drops now and comes back after the power-on delay.
            _ => {
                if was_on {
                    self.power_off_now(&mut inner);
                }
                self.begin_power_on(&mut inner, generation);
            }
        }
    }

    /// The server turned itself off (its OS shut down): `On` becomes `Off`, logged and published. A power
    /// transition the BMC has under way is left alone: it was asked after the shutdown began.
    pub fn server_powered_off(&self) {
        let mut inner = self.lock();
        if inner.power == PowerState::On {
            inner.power_generation += 1;
            inner.system_version += 1;
            self.power_off_now(&mut inner);
        }
    }

    fn power_off_now(&self, inner: &mut Inner) {
        if inner.power != PowerState::Off {
            inner.power = PowerState::Off;
            Self::log(inner, "OK", "System power off".into());
            self.publish(SimEventKind::PoweredOff);
        }
    }

    fn begin_power_off(self: &Arc<Self>, inner: &mut Inner, generation: u64, delay: Duration) {
        inner.power = PowerState::PoweringOff;
        let bmc = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut inner = bmc.lock();
            if inner.power_generation == generation {
                inner.system_version += 1;
                bmc.power_off_now(&mut inner);
            }
        });
    }

    fn begin_power_on(self: &Arc<Self>, inner: &mut Inner, generation: u64) {
        if self.timing.power_on.is_zero() {
            self.finish_power_on(inner);
            return;
        }
        inner.power = PowerState::PoweringOn;
        let bmc = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(bmc.timing.power_on).await;
            let mut inner = bmc.lock();
            if inner.power_generation == generation {
                bmc.finish_power_on(&mut inner);
            }
        });
    }

    fn finish_power_on(&self, inner: &mut Inner) {
        inner.power = PowerState::On;
        // The BIOS applies pending settings while the server starts.
        if !inner.bios_pending.is_empty() {
            let pending = std::mem::take(&mut inner.bios_pending);
            let count = pending.len();
            inner.bios.extend(pending);
            Self::log(
                inner,
                "OK",
                format!("BIOS applied {count} pending setting(s)"),
            );
        }
        inner.system_version += 1;
        let boot_target = (inner.boot.enabled != "Disabled").then(|| inner.boot.target.clone());
        if inner.boot.enabled == "Once" {
            inner.boot.enabled = "Disabled".into();
            inner.boot.target = "None".into();
        }
        Self::log(inner, "OK", "System power on".into());
        self.publish(SimEventKind::PoweredOn { boot_target });
    }

    /// Records a boot override and publishes it.
    pub fn set_boot(&self, enabled: &str, target: &str, mode: Option<&str>) {
        let mut inner = self.lock();
        inner.boot.enabled = enabled.to_string();
        inner.boot.target = target.to_string();
        if let Some(mode) = mode {
            inner.boot.mode = mode.to_string();
        }
        inner.system_version += 1;
        drop(inner);
        self.publish(SimEventKind::BootOverride {
            target: target.to_string(),
            enabled: enabled.to_string(),
        });
    }

    /// Attaches or detaches virtual media. Returns `false` if there is no such slot.
    pub fn set_media(&self, slot: &str, image: Option<String>) -> bool {
        let mut inner = self.lock();
        let Some(state) = inner.media.iter_mut().find(|m| m.id == slot) else {
            return false;
        };
        state.image = image.clone();
        drop(inner);
        match image {
            Some(image) => self.publish(SimEventKind::MediaInserted {
                slot: slot.to_string(),
                image,
            }),
            None => self.publish(SimEventKind::MediaEjected {
                slot: slot.to_string(),
            }),
        }
        true
    }

    /// Adds an event log entry (test setup and simulated hardware faults).
    pub fn add_log(&self, severity: &'static str, message: impl Into<String>) {
        Self::log(&mut self.lock(), severity, message.into());
    }

    /// Clears the event log, leaving the "cleared" entry as real BMCs do.
    pub fn clear_log(&self) {
        let mut inner = self.lock();
        inner.sel.clear();
        Self::log(&mut inner, "OK", "Log area reset/cleared".into());
    }
}
