//! The Redfish implementation of [`Bmc`]: a thin client over reqwest + serde.
//!
//! Resources are found from the service root (never hard-coded ids), the BMC's advertised reset types and boot
//! targets decide how kiln's actions are expressed, and vendor differences live in [`quirks`] as data.

mod decommission;
mod event_log;
mod firmware;
mod lenient;
mod media;
pub mod model;
pub mod quirks;
pub mod tls;
mod transport;

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tracing::{debug, info};

use crate::{
    Bmc, BmcError, BootMode, BootOverride, Credentials, Inspection, LogEntry, PowerAction,
    PowerState, SystemInventory, VirtualMediaSlot,
};
use model::{
    Collection, ComputerSystem, EthernetInterface, Manager, OverrideEnabled, RfPowerState,
    ServiceRoot, SystemCollection, Task,
};
use quirks::{Quirks, boot_target, quirks_for, reset_plan};
pub use tls::{CertFingerprint, TlsPolicy, probe_fingerprint};
pub use transport::AuthMode;
use transport::{RfResponse, Transport, TransportConfig};

/// Everything needed to talk to one Redfish BMC.
#[derive(Debug, Clone)]
pub struct RedfishConfig {
    /// `https://host:port` (or `http://` for tests); any path is ignored, discovery starts at `/redfish/v1/`.
    pub url: String,
    /// User and password.
    pub credentials: Credentials,
    /// Certificate trust for `https`; required there.
    pub tls: Option<TlsPolicy>,
    /// Session or basic authentication.
    pub auth: AuthMode,
    /// Limit for one HTTP exchange (connect, send, receive).
    pub request_timeout: Duration,
    /// Largest response body kiln reads; larger answers are an error, never an allocation.
    pub max_body_bytes: usize,
    /// How often to poll a task monitor or a power transition.
    pub poll_interval: Duration,
    /// How long to wait for a task or a power transition before giving up.
    pub task_timeout: Duration,
}

impl RedfishConfig {
    /// A configuration with kiln's defaults: session auth with basic fallback, 10 s requests, 4 MiB bodies,
    /// tasks polled every 250 ms for up to 5 minutes.
    pub fn new(url: impl Into<String>, credentials: Credentials, tls: Option<TlsPolicy>) -> Self {
        RedfishConfig {
            url: url.into(),
            credentials,
            tls,
            auth: AuthMode::SessionOrBasic,
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 4 * 1024 * 1024,
            poll_interval: Duration::from_millis(250),
            task_timeout: Duration::from_secs(300),
        }
    }
}

/// Paths found by discovery. The manager is looked up only when an operation needs it (firmware version,
/// virtual media or logs under the manager), so a power-status read costs three requests, not four.
#[derive(Debug)]
struct Discovery {
    system: String,
    managers: Option<String>,
    manager: OnceCell<Option<String>>,
    vendor: Option<String>,
    /// The service root's UpdateService link.
    update_service: Option<String>,
}

/// A Redfish BMC.
#[derive(Debug)]
pub struct RedfishClient {
    transport: Transport,
    discovery: OnceCell<Discovery>,
    poll_interval: Duration,
    task_timeout: Duration,
}

impl RedfishClient {
    /// Builds a client; nothing is sent until the first operation.
    pub fn new(config: RedfishConfig) -> Result<Self, BmcError> {
        let url = Url::parse(&config.url).map_err(|err| BmcError::Config {
            addr: config.url.clone(),
            detail: format!("bad URL: {err}"),
        })?;
        let mut base = url.clone();
        base.set_path("/");
        base.set_query(None);
        base.set_fragment(None);
        // Credentials travel in `credentials`, never in the URL: a link resolved against the base must carry
        // no user information of its own (see `Transport::resolve`).
        if base.set_username("").is_err() || base.set_password(None).is_err() {
            return Err(BmcError::Config {
                addr: config.url.clone(),
                detail: "URL cannot hold a host".into(),
            });
        }
        let transport = Transport::new(TransportConfig {
            base,
            credentials: config.credentials,
            tls: config.tls,
            auth: config.auth,
            request_timeout: config.request_timeout,
            max_body_bytes: config.max_body_bytes,
        })?;
        Ok(RedfishClient {
            transport,
            discovery: OnceCell::new(),
            poll_interval: config.poll_interval,
            task_timeout: config.task_timeout,
        })
    }

    /// Deletes the session if one was created. Call when done with a BMC; the BMC expires it otherwise.
    pub async fn logout(&self) {
        self.transport.logout().await;
    }

    /// Whether the client currently holds a session (diagnostics and tests).
    pub async fn has_session(&self) -> bool {
        self.transport.has_session().await
    }

    /// Reads the service root and the Systems collection once.
    async fn discovery(&self) -> Result<&Discovery, BmcError> {
        Ok(self.discovery_and_system().await?.0)
    }

    /// Like [`Self::discovery`], plus the system resource itself when this very call did the discovery and
    /// the BMC expanded the Systems collection (`$expand`): a read just now, which spares a power-status
    /// read its third request. Later calls get `None` and read the system again.
    async fn discovery_and_system(&self) -> Result<(&Discovery, Option<ComputerSystem>), BmcError> {
        let mut fresh = None;
        let discovery = self
            .discovery
            .get_or_try_init(|| async {
                let (discovery, system) = self.discover().await?;
                fresh = system;
                Ok::<_, BmcError>(discovery)
            })
            .await?;
        Ok((discovery, fresh))
    }

    /// The system resource for a read-only look: the one discovery just expanded, else a fresh GET.
    async fn system_for_reading(&self) -> Result<ComputerSystem, BmcError> {
        match self.discovery_and_system().await? {
            (_, Some(system)) => Ok(system),
            (_, None) => Ok(self.system().await?.0),
        }
    }

    async fn discover(&self) -> Result<(Discovery, Option<ComputerSystem>), BmcError> {
        let t = &self.transport;
        let response = t.send_anonymous(Method::GET, "/redfish/v1/", None).await?;
        // Some BMCs want credentials even for the service root.
        let response = if response.status == StatusCode::UNAUTHORIZED {
            t.send(Method::GET, "/redfish/v1/", None, None).await?
        } else {
            response
        };
        let response = t.check_status(response, "GET service root")?;
        let root: ServiceRoot = model::parse_resource(&response.body)
            .map_err(|err| t.protocol(format!("service root: {err}")))?;
        let sessions = root
            .links
            .as_ref()
            .and_then(|links| links.sessions.as_ref())
            .and_then(|link| link.odata_id.clone())
            .or_else(|| {
                root.session_service
                    .as_ref()
                    .and_then(|link| link.odata_id.as_ref())
                    .map(|path| format!("{}/Sessions", path.trim_end_matches('/')))
            });
        t.set_sessions_path(sessions);
        let systems_path = root
            .systems
            .as_ref()
            .and_then(|link| link.odata_id.clone())
            .ok_or_else(|| t.protocol("service root has no Systems collection"))?;
        let (system, expanded) = self
            .first_system(&systems_path, root.expand_members_query())
            .await?;
        debug!(bmc = %t.addr(), system = %system, expanded = expanded.is_some(), "discovered");
        let discovery = Discovery {
            system,
            managers: root.managers.and_then(|link| link.odata_id),
            manager: OnceCell::new(),
            vendor: root.vendor,
            update_service: root.update_service.and_then(|link| link.odata_id),
        };
        Ok((discovery, expanded))
    }

    /// The first member of the Systems collection, and the member itself when the BMC expanded it. A BMC
    /// that advertises `$expand` but refuses it (4xx) is asked again without.
    async fn first_system(
        &self,
        systems_path: &str,
        expand: Option<&str>,
    ) -> Result<(String, Option<ComputerSystem>), BmcError> {
        let t = &self.transport;
        if let Some(query) = expand {
            let separator = if systems_path.contains('?') { '&' } else { '?' };
            let expanded = t
                .get::<SystemCollection>(&format!("{systems_path}{separator}{query}"))
                .await;
            match expanded {
                Ok((collection, _)) => {
                    if let Some(first) = collection.members.into_iter().next() {
                        let path = first
                            .odata_id
                            .clone()
                            .ok_or_else(|| t.protocol("Systems member without @odata.id"))?;
                        // Only a member with a power state was really expanded.
                        let system = first.power_state.is_some().then_some(first);
                        return Ok((path, system));
                    }
                }
                Err(BmcError::Rejected { status, .. }) if (400..500).contains(&status) => {
                    debug!(bmc = %t.addr(), status, "$expand refused, reading the collection plainly");
                }
                Err(err) => return Err(err),
            }
        }
        let (systems, _) = t.get::<Collection>(systems_path).await?;
        let system = systems
            .members
            .into_iter()
            .find_map(|link| link.odata_id)
            .ok_or_else(|| t.protocol("Systems collection is empty"))?;
        Ok((system, None))
    }

    async fn system(&self) -> Result<(ComputerSystem, RfResponse), BmcError> {
        let path = self.discovery().await?.system.clone();
        self.transport.get(&path).await
    }

    /// The first member of the Managers collection, read on first use.
    async fn manager_path(&self) -> Result<Option<String>, BmcError> {
        let discovery = self.discovery().await?;
        let path = discovery
            .manager
            .get_or_try_init(|| async {
                let Some(collection) = &discovery.managers else {
                    return Ok(None);
                };
                let (managers, _) = self.transport.get::<Collection>(collection).await?;
                Ok::<_, BmcError>(managers.members.into_iter().find_map(|link| link.odata_id))
            })
            .await?;
        Ok(path.clone())
    }

    async fn manager(&self) -> Result<Option<Manager>, BmcError> {
        match self.manager_path().await? {
            Some(path) => Ok(Some(self.transport.get::<Manager>(&path).await?.0)),
            None => Ok(None),
        }
    }

    async fn quirks(&self, system: &ComputerSystem) -> Result<Quirks, BmcError> {
        let vendor = self.discovery().await?.vendor.clone();
        Ok(quirks_for(
            system.manufacturer.as_deref(),
            vendor.as_deref(),
        ))
    }

    fn unsupported(&self, what: impl Into<String>) -> BmcError {
        BmcError::Unsupported {
            addr: self.transport.addr().to_string(),
            what: what.into(),
        }
    }

    /// Waits for an operation's answer to finish: 202 + `Location` is a task monitor to poll; anything else 2xx
    /// is done. A task that ends in any state but `Completed` is an error.
    async fn finish(&self, response: RfResponse, operation: &str) -> Result<(), BmcError> {
        let t = &self.transport;
        if response.status != StatusCode::ACCEPTED {
            return Ok(());
        }
        let Some(monitor) = response.location() else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + self.task_timeout;
        loop {
            let response = t.send(Method::GET, &monitor, None, None).await?;
            let response = t.check_status(response, &format!("{operation} task monitor"))?;
            let task: Task = model::parse_resource(&response.body).unwrap_or_default();
            match task.task_state {
                Some(state) if state.is_finished() => {
                    if state == model::TaskState::Completed {
                        return Ok(());
                    }
                    return Err(BmcError::TaskFailed {
                        addr: t.addr().to_string(),
                        task: monitor,
                        state: state.as_str().to_string(),
                    });
                }
                Some(_) => {}
                None if response.status != StatusCode::ACCEPTED => return Ok(()),
                None => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BmcError::Timeout {
                    addr: t.addr().to_string(),
                    timeout: self.task_timeout,
                });
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// Polls the power state until it is `want` or the task timeout passes.
    async fn wait_power(&self, want: PowerState) -> Result<(), BmcError> {
        let deadline = tokio::time::Instant::now() + self.task_timeout;
        loop {
            if self.power_state().await? == want {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BmcError::Timeout {
                    addr: self.transport.addr().to_string(),
                    timeout: self.task_timeout,
                });
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }
}

fn power_from_redfish(state: &RfPowerState) -> Option<PowerState> {
    match state {
        RfPowerState::On | RfPowerState::Paused => Some(PowerState::On),
        RfPowerState::Off => Some(PowerState::Off),
        RfPowerState::PoweringOn => Some(PowerState::PoweringOn),
        RfPowerState::PoweringOff => Some(PowerState::PoweringOff),
        RfPowerState::Other(_) => None,
    }
}

/// Normalizes a MAC address to lower-case colon form; `None` if it is not six hex octets.
pub fn normalize_mac(text: &str) -> Option<String> {
    let digits: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let separators_ok = text
        .chars()
        .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '-' | '.'));
    if digits.len() != 12 || !separators_ok {
        return None;
    }
    let lower = digits.to_ascii_lowercase();
    let octets: Vec<&str> = (0..6).map(|i| &lower[i * 2..i * 2 + 2]).collect();
    Some(octets.join(":"))
}

#[async_trait::async_trait]
impl Bmc for RedfishClient {
    fn addr(&self) -> &str {
        self.transport.addr()
    }

    async fn power_state(&self) -> Result<PowerState, BmcError> {
        let system = self.system_for_reading().await?;
        let state = system
            .power_state
            .ok_or_else(|| self.transport.protocol("system has no PowerState"))?;
        power_from_redfish(&state).ok_or_else(|| {
            self.transport
                .protocol(format!("unknown PowerState {:?}", state.as_str()))
        })
    }

    async fn set_power(&self, action: PowerAction) -> Result<(), BmcError> {
        let t = &self.transport;
        let (system, _) = self.system().await?;
        let current = system.power_state.as_ref().and_then(power_from_redfish);
        // Naturally idempotent: asking for the state the server is already in does nothing.
        match (action, current) {
            (PowerAction::On, Some(PowerState::On)) => return Ok(()),
            (PowerAction::ForceOff | PowerAction::SoftOff, Some(PowerState::Off)) => return Ok(()),
            _ => {}
        }
        let reset = system.actions.and_then(|a| a.reset).unwrap_or_default();
        let target = match reset.target {
            Some(target) => target,
            None => format!(
                "{}/Actions/ComputerSystem.Reset",
                self.discovery().await?.system.trim_end_matches('/')
            ),
        };
        let plan = reset_plan(action, &reset.allowable)
            .ok_or_else(|| self.unsupported(format!("power action {action:?}")))?;
        for (step, reset_type) in plan.iter().enumerate() {
            if step > 0 {
                // ForceOff then On: the second step only makes sense once the server is off.
                self.wait_power(PowerState::Off).await?;
            }
            info!(bmc = %t.addr(), action = ?action, reset_type = reset_type.as_str(), "reset");
            let body = json!({ "ResetType": reset_type.as_str() });
            let operation = format!("reset {}", reset_type.as_str());
            let response = t
                .send_ok(Method::POST, &target, Some(&body), None, &operation)
                .await?;
            self.finish(response, &operation).await?;
        }
        Ok(())
    }

    async fn set_boot(&self, boot: BootOverride) -> Result<(), BmcError> {
        let t = &self.transport;
        let system_path = self.discovery().await?.system.clone();
        for attempt in 0..2 {
            let (system, response) = self.system().await?;
            let quirks = self.quirks(&system).await?;
            let current = system.boot.clone().unwrap_or_default();
            let target = boot_target(boot.device, &current.allowable_targets, &quirks)
                .ok_or_else(|| self.unsupported(format!("boot device {}", boot.device)))?;
            let enabled = if boot.once {
                OverrideEnabled::Once
            } else {
                OverrideEnabled::Continuous
            };
            let mut patch = json!({
                "BootSourceOverrideEnabled": enabled.as_str(),
                "BootSourceOverrideTarget": target.as_str(),
            });
            let mode = match boot.mode {
                Some(BootMode::Uefi) => Some("UEFI".to_string()),
                Some(BootMode::Legacy) => Some("Legacy".to_string()),
                None if quirks.boot_patch_needs_mode => Some(
                    current
                        .override_mode
                        .clone()
                        .unwrap_or_else(|| "UEFI".into()),
                ),
                None => None,
            };
            if let (Some(mode), Some(map)) = (mode, patch.as_object_mut()) {
                map.insert("BootSourceOverrideMode".into(), Value::String(mode));
            }
            let etag = response.etag().or(system.odata_etag);
            let body = json!({ "Boot": patch });
            let answer = t
                .send(Method::PATCH, &system_path, Some(&body), etag.as_deref())
                .await?;
            if answer.status == StatusCode::PRECONDITION_FAILED && attempt == 0 {
                debug!(bmc = %t.addr(), "ETag changed under us, reading the system again");
                continue;
            }
            let answer = t.check_status(answer, "boot override")?;
            info!(bmc = %t.addr(), device = %boot.device, once = boot.once, profile = quirks.name, "boot override set");
            return self.finish(answer, "boot override").await;
        }
        Err(BmcError::Rejected {
            addr: t.addr().to_string(),
            operation: "boot override".into(),
            status: StatusCode::PRECONDITION_FAILED.as_u16(),
            detail: "ETag kept changing".into(),
        })
    }

    async fn virtual_media(&self) -> Result<Vec<VirtualMediaSlot>, BmcError> {
        let (slots, warnings) = self.media_slots().await?;
        for warning in warnings {
            tracing::warn!(bmc = %self.transport.addr(), "{warning}");
        }
        Ok(slots)
    }

    async fn insert_media(&self, slot: Option<&str>, image_url: &str) -> Result<(), BmcError> {
        self.media_insert(slot, image_url).await
    }

    async fn eject_media(&self, slot: Option<&str>) -> Result<(), BmcError> {
        self.media_eject(slot).await
    }

    async fn inventory(&self) -> Result<SystemInventory, BmcError> {
        let t = &self.transport;
        let (system, _) = self.system().await?;
        let manager = self.manager().await?;
        let mut macs = Vec::new();
        if let Some(path) = system
            .ethernet_interfaces
            .as_ref()
            .and_then(|link| link.odata_id.clone())
        {
            let (members, _) = t.get::<Collection>(&path).await?;
            for nic in members.members.into_iter().filter_map(|link| link.odata_id) {
                let (nic, _) = t.get::<EthernetInterface>(&nic).await?;
                if let Some(mac) = nic
                    .mac_address
                    .or(nic.permanent_mac_address)
                    .as_deref()
                    .and_then(normalize_mac)
                {
                    macs.push(mac);
                }
            }
        }
        Ok(SystemInventory {
            manufacturer: system.manufacturer,
            model: system.model,
            serial: system.serial_number,
            bios_version: system.bios_version,
            bmc_firmware_version: manager.and_then(|m| m.firmware_version),
            macs,
        })
    }

    async fn read_log(&self) -> Result<Vec<LogEntry>, BmcError> {
        self.log_entries().await
    }

    async fn clear_log(&self) -> Result<(), BmcError> {
        self.log_clear().await
    }

    async fn clear_tpm(&self) -> Result<(), BmcError> {
        self.decommission_tpm().await
    }

    async fn firmware(&self) -> Result<crate::FirmwareInventory, BmcError> {
        self.firmware_inventory().await
    }

    async fn bios(&self) -> Result<crate::BiosSettings, BmcError> {
        self.bios_settings().await
    }

    async fn set_bios(
        &self,
        changes: &serde_json::Map<String, Value>,
    ) -> Result<crate::BiosChange, BmcError> {
        self.patch_bios(changes).await
    }

    async fn close(&self) {
        self.logout().await;
    }

    async fn inspect(&self) -> Result<Inspection, BmcError> {
        let system = self.system_for_reading().await?;
        let power_state = system
            .power_state
            .as_ref()
            .and_then(power_from_redfish)
            .ok_or_else(|| self.transport.protocol("system has no readable PowerState"))?;
        let boot = system.boot.clone().unwrap_or_default();
        let reset_types = system
            .actions
            .as_ref()
            .and_then(|a| a.reset.as_ref())
            .map(|r| r.allowable.iter().map(|t| t.as_str().to_string()).collect())
            .unwrap_or_default();
        let (virtual_media, warnings) = self.media_slots().await?;
        Ok(Inspection {
            power_state,
            manufacturer: system.manufacturer.clone(),
            model: system.model.clone(),
            serial: system.serial_number.clone(),
            reset_types,
            boot_targets: boot
                .allowable_targets
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
            boot_mode: boot.override_mode,
            virtual_media,
            warnings,
        })
    }
}
