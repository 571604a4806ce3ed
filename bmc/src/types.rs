//! The values kiln exchanges with any BMC, independent of protocol.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Whether the server behind a BMC has power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerState {
    /// Powered on.
    On,
    /// Powered off (standby power only).
    Off,
    /// Between off and on (Redfish `PoweringOn`).
    PoweringOn,
    /// Between on and off (Redfish `PoweringOff`).
    PoweringOff,
}

impl PowerState {
    /// The two-valued answer the CLI contract prints: a server that is powering off still has power (`On`), one
    /// that is powering on does not yet run anything (`Off`).
    pub fn contract_str(self) -> &'static str {
        match self {
            PowerState::On | PowerState::PoweringOff => "On",
            PowerState::Off | PowerState::PoweringOn => "Off",
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerState::On => "On",
            PowerState::Off => "Off",
            PowerState::PoweringOn => "PoweringOn",
            PowerState::PoweringOff => "PoweringOff",
        })
    }
}

/// A power action kiln asks for; each protocol maps it onto what the BMC offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerAction {
    /// Power on.
    On,
    /// Cut power now (no OS shutdown).
    ForceOff,
    /// Ask the OS to shut down (ACPI power button).
    SoftOff,
    /// Power off then on.
    Cycle,
    /// Hard reset without removing power.
    Reset,
}

/// Where the server should boot from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BootDevice {
    /// Network boot (PXE).
    Pxe,
    /// The local disk.
    Disk,
    /// CD/DVD, including virtual media.
    Cd,
    /// UEFI HTTP boot.
    UefiHttp,
}

impl fmt::Display for BootDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootDevice::Pxe => "pxe",
            BootDevice::Disk => "disk",
            BootDevice::Cd => "cd",
            BootDevice::UefiHttp => "http",
        })
    }
}

/// Firmware boot mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BootMode {
    /// Legacy BIOS boot.
    Legacy,
    /// UEFI boot.
    Uefi,
}

/// A boot device override: which device, for the next boot only or persistently, and in which firmware mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootOverride {
    /// The device to boot from.
    pub device: BootDevice,
    /// `true`: next boot only; `false`: until changed.
    pub once: bool,
    /// Firmware mode to request, or `None` to leave the BMC's setting alone.
    pub mode: Option<BootMode>,
}

/// One virtual media slot (a virtual CD or USB stick the BMC can attach from a URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualMediaSlot {
    /// The slot's id on the BMC (e.g. `CD`, `1`, `EXT1`).
    pub id: String,
    /// Whether an image is attached.
    pub inserted: bool,
    /// The attached image URL, if any.
    pub image: Option<String>,
    /// Whether kiln can insert media into this slot.
    pub insert_supported: bool,
}

/// What a BMC reports about its server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInventory {
    /// Server manufacturer.
    pub manufacturer: Option<String>,
    /// Server model.
    pub model: Option<String>,
    /// Server serial number.
    pub serial: Option<String>,
    /// BIOS/UEFI firmware version.
    pub bios_version: Option<String>,
    /// BMC firmware version.
    pub bmc_firmware_version: Option<String>,
    /// MAC addresses of the server's network interfaces, lower-case `aa:bb:cc:dd:ee:ff`.
    pub macs: Vec<String>,
}

/// One entry of the BMC's event log (Redfish LogService entries, IPMI SEL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The entry's id on the BMC.
    pub id: String,
    /// When the entry was created, as the BMC wrote it.
    pub created: Option<String>,
    /// Severity as the BMC wrote it (`OK`, `Warning`, `Critical`).
    pub severity: Option<String>,
    /// The message text.
    pub message: String,
}

/// What `kiln bmc inspect` shows: a BMC's power state, identity and capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspection {
    /// Power state.
    pub power_state: PowerState,
    /// Server manufacturer.
    pub manufacturer: Option<String>,
    /// Server model.
    pub model: Option<String>,
    /// Server serial number.
    pub serial: Option<String>,
    /// Reset types the BMC advertises, in its own spelling.
    pub reset_types: Vec<String>,
    /// Boot override targets the BMC advertises, in its own spelling.
    pub boot_targets: Vec<String>,
    /// The BMC's current boot override mode (`UEFI`, `Legacy`), if it reports one.
    pub boot_mode: Option<String>,
    /// Virtual media slots.
    pub virtual_media: Vec<VirtualMediaSlot>,
    /// Parts that could not be read (a virtual media slot the BMC lists but cannot serve); the rest is here.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Inspection {
    /// The JSON object of the `kiln bmc inspect --json` contract.
    pub fn contract_json(&self) -> serde_json::Value {
        serde_json::json!({
            "power_state": self.power_state.contract_str(),
            "manufacturer": self.manufacturer,
            "model": self.model,
            "serial": self.serial,
            "reset_types": self.reset_types,
            "boot_targets": self.boot_targets,
            "boot_mode": self.boot_mode,
            "virtual_media": self.virtual_media,
            "warnings": self.warnings,
        })
    }
}

/// A BMC password. Zeroed when dropped and never shown by `Debug` or `Display`.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Password(Zeroizing::new(password.into()))
    }

    /// The password itself, for the moment it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A user name and password for one BMC.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The BMC user name.
    pub user: String,
    /// The BMC password.
    pub password: Password,
}

impl Credentials {
    /// Builds credentials from a user name and a password.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            user: user.into(),
            password: Password::new(password),
        }
    }
}
