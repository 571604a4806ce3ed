//! The IPMI (RMCP+ "lanplus", cipher suite 3) implementation of [`Bmc`], over `ipmi-rs` 0.6.
//!
//! `ipmi-rs` uses a blocking `std::net::UdpSocket`, so every exchange runs on tokio's blocking pool. It has
//! `todo!()` branches and `unwrap()`s on unexpected answers: each exchange also runs under `catch_unwind`, so a
//! bad BMC yields [`BmcError::Protocol`], never a dead process. One session is kept per client and re-opened
//! after any failure; after opening it, kiln raises the session to administrator (Set Session Privilege Level),
//! without which chassis control fails with completion code 0xD4. The server's identity (manufacturer, model,
//! serial) comes from FRU device 0 ([`fru`]).

pub mod commands;
pub mod fru;

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipmi_rs::app::GetDeviceId;
use ipmi_rs::connection::{CompletionErrorCode, IpmiCommand};
use ipmi_rs::rmcp::Rmcp;
use ipmi_rs::storage::sel::{ClearSel, Entry as SelEntry, GetSelEntry, RecordId, ReserveSel};
use ipmi_rs::{Ipmi, IpmiError};
use tracing::debug;

use crate::{
    Bmc, BmcError, BootDevice, BootMode, BootOverride, Credentials, Inspection, LogEntry,
    PowerAction, PowerState, SystemInventory, VirtualMediaSlot,
};
use commands::{
    ChassisControl, GetChassisStatus, GetSystemBootOptions, PRIVILEGE_ADMINISTRATOR,
    SetSessionPrivilegeLevel, SetSystemBootOptions,
};
use fru::FruInventory;

/// IPMI limits passwords to 20 bytes (RMCP+ Kuid).
pub const MAX_PASSWORD_BYTES: usize = 20;

/// An IPMI-over-LAN BMC.
pub struct IpmiClient {
    addr: String,
    host: String,
    port: u16,
    credentials: Credentials,
    timeout: Duration,
    session: Arc<Mutex<Option<Ipmi<Rmcp>>>>,
}

impl std::fmt::Debug for IpmiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpmiClient")
            .field("addr", &self.addr)
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl IpmiClient {
    /// A client for `host:port`; nothing is sent until the first operation. `timeout` bounds each datagram
    /// exchange (ipmi-rs waits that long for each answer).
    pub fn new(
        host: &str,
        port: u16,
        credentials: Credentials,
        timeout: Duration,
    ) -> Result<Self, BmcError> {
        let addr = format!("{host}:{port}");
        if credentials.password.expose().len() > MAX_PASSWORD_BYTES {
            return Err(BmcError::Config {
                addr,
                detail: "IPMI passwords are at most 20 bytes".into(),
            });
        }
        Ok(IpmiClient {
            addr,
            host: host.to_string(),
            port,
            credentials,
            timeout,
            session: Arc::new(Mutex::new(None)),
        })
    }

    /// Runs `work` with an activated, administrator-level session on the blocking pool, guarded against panics.
    async fn with_session<T, F>(&self, what: &'static str, work: F) -> Result<T, BmcError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ipmi<Rmcp>, &str) -> Result<T, BmcError> + Send + 'static,
    {
        let slot = self.session.clone();
        let addr = self.addr.clone();
        let host = self.host.clone();
        let port = self.port;
        let user = self.credentials.user.clone();
        let password = self.credentials.password.clone();
        let timeout = self.timeout;
        let join = tokio::task::spawn_blocking(move || {
            let guarded = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let mut guard = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let mut ipmi = match guard.take() {
                    Some(ipmi) => ipmi,
                    None => open_session(&addr, &host, port, &user, password.expose(), timeout)?,
                };
                let result = work(&mut ipmi, &addr);
                // Keep the session only while it works; any failure re-opens it next time.
                if result.is_ok() {
                    *guard = Some(ipmi);
                }
                result
            }));
            match guarded {
                Ok(result) => result,
                Err(_) => Err(BmcError::Protocol {
                    addr,
                    detail: format!("the IPMI library panicked during {what} (unexpected answer)"),
                }),
            }
        });
        match join.await {
            Ok(result) => result,
            Err(err) => Err(BmcError::Protocol {
                addr: self.addr.clone(),
                detail: format!("{what}: {err}"),
            }),
        }
    }
}

/// Opens an RMCP+ session and raises it to administrator.
fn open_session(
    addr: &str,
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    timeout: Duration,
) -> Result<Ipmi<Rmcp>, BmcError> {
    let mut rmcp = Rmcp::new((host, port), timeout).map_err(|err| BmcError::Connect {
        addr: addr.to_string(),
        source: Box::new(err),
    })?;
    rmcp.activate(true, Some(user), Some(password.as_bytes()))
        .map_err(|err| activation_error(addr, err, timeout))?;
    let mut ipmi = Ipmi::new(rmcp);
    send(
        &mut ipmi,
        addr,
        SetSessionPrivilegeLevel(PRIVILEGE_ADMINISTRATOR),
        "raise privilege",
    )?;
    debug!(bmc = %addr, "IPMI session open at administrator level");
    Ok(ipmi)
}

fn activation_error(
    addr: &str,
    err: ipmi_rs::rmcp::ActivationError,
    timeout: Duration,
) -> BmcError {
    use ipmi_rs::rmcp::{ActivationError as A, V2_0ActivationError as V2};
    let text = format!("{err:?}");
    match err {
        A::PongReceive(io) | A::PingSend(io) | A::BindSocket(io) => {
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                BmcError::Timeout {
                    addr: addr.to_string(),
                    timeout,
                }
            } else {
                BmcError::Connect {
                    addr: addr.to_string(),
                    source: Box::new(io),
                }
            }
        }
        // RAKP failures (unknown user, wrong password, either side's HMAC not matching) are credential problems.
        A::V2_0(
            V2::ServerAuthenticationFailed
            | V2::RakpMessage2Parse(_)
            | V2::RakpMessage4Parse(_)
            | V2::RakpMessage4InvalidIntegrityCheckValue,
        ) => BmcError::Auth {
            addr: addr.to_string(),
            tried: "RMCP+ RAKP",
        },
        _ if text.contains("WouldBlock") || text.contains("TimedOut") => BmcError::Timeout {
            addr: addr.to_string(),
            timeout,
        },
        _ => BmcError::Protocol {
            addr: addr.to_string(),
            detail: format!("session activation failed: {text}"),
        },
    }
}

/// Sends one command and maps the library's error onto [`BmcError`].
fn send<C>(ipmi: &mut Ipmi<Rmcp>, addr: &str, command: C, what: &str) -> Result<C::Output, BmcError>
where
    C: IpmiCommand,
    C::Error: std::fmt::Debug,
{
    ipmi.send_recv(command)
        .map_err(|err| ipmi_error(addr, what, err))
}

/// Maps an `ipmi-rs` error onto [`BmcError`]: 0xC0 (node busy) is transient, other completion codes are a
/// rejection, socket timeouts are timeouts.
fn ipmi_error<E: std::fmt::Debug>(
    addr: &str,
    what: &str,
    err: IpmiError<ipmi_rs::rmcp::RmcpIpmiError, E>,
) -> BmcError {
    match err {
        IpmiError::Failed {
            completion_code: CompletionErrorCode::NodeBusy,
            ..
        } => BmcError::Busy {
            addr: addr.to_string(),
            detail: format!("{what}: node busy (0xc0)"),
        },
        IpmiError::Failed {
            completion_code, ..
        } => BmcError::Rejected {
            addr: addr.to_string(),
            operation: what.to_string(),
            // IPMI completion codes are not HTTP statuses; 0 keeps them out of the "5xx is transient" rule.
            status: 0,
            detail: format!("completion code {completion_code:?}"),
        },
        IpmiError::Connection(conn) => {
            let text = format!("{conn:?}");
            if text.contains("WouldBlock") || text.contains("TimedOut") {
                BmcError::Timeout {
                    addr: addr.to_string(),
                    timeout: Duration::ZERO,
                }
            } else {
                BmcError::Protocol {
                    addr: addr.to_string(),
                    detail: format!("{what}: {text}"),
                }
            }
        }
        other => BmcError::Protocol {
            addr: addr.to_string(),
            detail: format!("{what}: {other:?}"),
        },
    }
}

/// Most SEL entries kiln reads in one go.
const MAX_SEL_ENTRIES: usize = 4096;

/// A SEL record as a log entry. IPMI records carry codes, not text, so the message spells the codes out.
fn sel_log_entry(entry: &SelEntry) -> LogEntry {
    match entry {
        SelEntry::System {
            record_id,
            timestamp,
            sensor_type,
            sensor_number,
            event_type,
            event_direction,
            event_data,
            ..
        } => LogEntry {
            id: record_id.value().to_string(),
            created: Some(format!("{timestamp}")),
            severity: None,
            message: format!(
                "sensor type {sensor_type:#04x} #{sensor_number} event type {event_type:#04x} {event_direction:?} {event_data:?}"
            ),
        },
        SelEntry::OemTimestamped {
            record_id,
            ty,
            timestamp,
            manufacturer_id,
            data,
        } => LogEntry {
            id: record_id.value().to_string(),
            created: Some(format!("{timestamp}")),
            severity: None,
            message: format!("OEM record type {ty:#04x} from IANA {manufacturer_id}: {data:02x?}"),
        },
        SelEntry::OemNotTimestamped {
            record_id,
            ty,
            data,
        } => LogEntry {
            id: record_id.value().to_string(),
            created: None,
            severity: None,
            message: format!("OEM record type {ty:#04x}: {data:02x?}"),
        },
    }
}

/// FRU device 0's identity when the BMC says it has one; a BMC that refuses the FRU commands (a completion
/// code) has none, while a timeout or an unreadable answer is an error.
fn read_fru_if_any(
    ipmi: &mut Ipmi<Rmcp>,
    addr: &str,
    supported: bool,
) -> Result<FruInventory, BmcError> {
    if !supported {
        return Ok(FruInventory::default());
    }
    match fru::read_fru(ipmi, addr) {
        Err(BmcError::Rejected { detail, .. }) => {
            debug!(bmc = %addr, %detail, "no FRU inventory");
            Ok(FruInventory::default())
        }
        other => other,
    }
}

/// The IPMI boot device selector for a device, if IPMI has one.
fn boot_selector(device: BootDevice) -> Option<u8> {
    match device {
        BootDevice::Pxe => Some(0x1),
        BootDevice::Disk => Some(0x2),
        BootDevice::Cd => Some(0x5),
        BootDevice::UefiHttp => None,
    }
}

#[async_trait::async_trait]
impl Bmc for IpmiClient {
    fn addr(&self) -> &str {
        &self.addr
    }

    async fn power_state(&self) -> Result<PowerState, BmcError> {
        self.with_session("power status", |ipmi, addr| {
            let status = send(ipmi, addr, GetChassisStatus, "get chassis status")?;
            Ok(if status.power_on {
                PowerState::On
            } else {
                PowerState::Off
            })
        })
        .await
    }

    async fn set_power(&self, action: PowerAction) -> Result<(), BmcError> {
        self.with_session("power control", move |ipmi, addr| {
            let on = send(ipmi, addr, GetChassisStatus, "get chassis status")?.power_on;
            let control = match (action, on) {
                (PowerAction::On, true) | (PowerAction::ForceOff | PowerAction::SoftOff, false) => {
                    return Ok(());
                }
                (PowerAction::On, false) => ChassisControl::PowerUp,
                (PowerAction::ForceOff, true) => ChassisControl::PowerDown,
                (PowerAction::SoftOff, true) => ChassisControl::SoftShutdown,
                // A power cycle of a server that is off is refused by many BMCs: power it up instead.
                (PowerAction::Cycle | PowerAction::Reset, false) => ChassisControl::PowerUp,
                (PowerAction::Cycle, true) => ChassisControl::PowerCycle,
                (PowerAction::Reset, true) => ChassisControl::HardReset,
            };
            send(ipmi, addr, control, "chassis control")
        })
        .await
    }

    async fn set_boot(&self, boot: BootOverride) -> Result<(), BmcError> {
        let selector = boot_selector(boot.device).ok_or_else(|| BmcError::Unsupported {
            addr: self.addr.clone(),
            what: "UEFI HTTP boot over IPMI".into(),
        })?;
        let uefi = boot.mode == Some(BootMode::Uefi);
        self.with_session("boot options", move |ipmi, addr| {
            let flags = SetSystemBootOptions::boot_flags(selector, !boot.once, uefi);
            send(ipmi, addr, flags, "set boot flags")
        })
        .await
    }

    async fn virtual_media(&self) -> Result<Vec<VirtualMediaSlot>, BmcError> {
        // Standard IPMI has no virtual media; an empty list says so without failing inspection.
        Ok(Vec::new())
    }

    async fn insert_media(&self, _slot: Option<&str>, _image_url: &str) -> Result<(), BmcError> {
        Err(BmcError::Unsupported {
            addr: self.addr.clone(),
            what: "virtual media over IPMI".into(),
        })
    }

    async fn eject_media(&self, _slot: Option<&str>) -> Result<(), BmcError> {
        Err(BmcError::Unsupported {
            addr: self.addr.clone(),
            what: "virtual media over IPMI".into(),
        })
    }

    async fn inventory(&self) -> Result<SystemInventory, BmcError> {
        self.with_session("inventory", |ipmi, addr| {
            let device = send(ipmi, addr, GetDeviceId, "get device id")?;
            let fru = read_fru_if_any(ipmi, addr, device.fru_inventory_support)?;
            Ok(SystemInventory {
                manufacturer: fru
                    .manufacturer()
                    .or_else(|| Some(format!("IANA {}", device.manufacturer_id))),
                model: fru.model(),
                serial: fru.serial(),
                bmc_firmware_version: Some(format!(
                    "{}.{:02}",
                    device.major_fw_revision, device.minor_fw_revision
                )),
                ..SystemInventory::default()
            })
        })
        .await
    }

    async fn read_log(&self) -> Result<Vec<LogEntry>, BmcError> {
        self.with_session("read SEL", |ipmi, addr| {
            let mut entries = Vec::new();
            let mut next = RecordId::FIRST;
            // Bounded: a BMC whose "next" ids loop must not keep kiln here forever.
            for _ in 0..MAX_SEL_ENTRIES {
                match ipmi.send_recv(GetSelEntry::new(None, next)) {
                    Ok(info) => {
                        entries.push(sel_log_entry(&info.entry));
                        if info.next_entry.is_last() {
                            break;
                        }
                        next = info.next_entry;
                    }
                    // An empty SEL answers "requested data not present".
                    Err(IpmiError::Failed {
                        completion_code: CompletionErrorCode::RequestedDatapointNotPresent,
                        ..
                    }) if entries.is_empty() => break,
                    Err(err) => {
                        return Err(BmcError::Protocol {
                            addr: addr.to_string(),
                            detail: format!("reading the SEL: {err:?}"),
                        });
                    }
                }
            }
            Ok(entries)
        })
        .await
    }

    async fn clear_log(&self) -> Result<(), BmcError> {
        self.with_session("clear SEL", |ipmi, addr| {
            let reservation = send(ipmi, addr, ReserveSel, "reserve SEL")?;
            send(
                ipmi,
                addr,
                ClearSel::initiate(Some(reservation)),
                "clear SEL",
            )
            .map(|_| ())
        })
        .await
    }

    async fn inspect(&self) -> Result<Inspection, BmcError> {
        let (power_state, boot_mode, fru) = self
            .with_session("inspect", |ipmi, addr| {
                let status = send(ipmi, addr, GetChassisStatus, "get chassis status")?;
                let flags = send(ipmi, addr, GetSystemBootOptions(5), "get boot flags").ok();
                let mode = flags.and_then(|p| p.data.first().copied()).map(|first| {
                    if first & 0x20 != 0 {
                        "UEFI".to_string()
                    } else {
                        "Legacy".to_string()
                    }
                });
                let device = send(ipmi, addr, GetDeviceId, "get device id")?;
                let fru = read_fru_if_any(ipmi, addr, device.fru_inventory_support)?;
                Ok((
                    if status.power_on {
                        PowerState::On
                    } else {
                        PowerState::Off
                    },
                    mode,
                    fru,
                ))
            })
            .await?;
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        Ok(Inspection {
            power_state,
            manufacturer: fru.manufacturer(),
            model: fru.model(),
            serial: fru.serial(),
            // What IPMI chassis control offers, in Redfish spelling.
            reset_types: strings(&[
                "On",
                "ForceOff",
                "GracefulShutdown",
                "PowerCycle",
                "ForceRestart",
            ]),
            boot_targets: strings(&["Pxe", "Hdd", "Cd"]),
            boot_mode,
            virtual_media: Vec::new(),
            warnings: Vec::new(),
        })
    }
}
