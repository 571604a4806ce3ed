//! Firmware and BIOS settings as a BMC reports them (`kiln bmc firmware`, `kiln bmc bios`) and as the inventory
//! keeps them per node (`kiln node firmware`, `kiln hall firmware`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One firmware component (BMC, BIOS/UEFI, NIC, GPU VBIOS, NVSwitch, drive, CPLD …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FirmwareComponent {
    /// The component's id on the BMC (the FirmwareInventory member's `Id`, or `BMC` / `BIOS`).
    pub id: String,
    /// Its name as the BMC gives it.
    pub name: Option<String>,
    /// The running version.
    pub version: Option<String>,
    /// Whether the BMC can update it.
    #[serde(default)]
    pub updateable: Option<bool>,
    /// The vendor's id for the firmware image family (`SoftwareId`), matched against baselines.
    pub software_id: Option<String>,
    /// Who made it.
    pub manufacturer: Option<String>,
    /// `Status.Health` (`OK`, `Warning`, `Critical`), when given.
    pub health: Option<String>,
    /// Where the reading came from: `redfish` (UpdateService/FirmwareInventory), `ipmi` (Get Device ID) or
    /// `system` (the Redfish System's `BiosVersion` / the Manager's `FirmwareVersion` where no inventory is
    /// offered).
    pub source: String,
}

impl FirmwareComponent {
    /// A component known only by id and version (the BMC's own Get Device ID, a System's `BiosVersion`), its
    /// id doubling as its name.
    pub fn version_only(id: &str, version: Option<String>, source: &str) -> Self {
        FirmwareComponent {
            id: id.to_string(),
            name: Some(id.to_string()),
            version,
            updateable: None,
            software_id: None,
            manufacturer: None,
            health: None,
            source: source.to_string(),
        }
    }
}

/// A BMC's firmware inventory; parts that could not be read are warnings, never a failure of the whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareInventory {
    /// Every component read, in the BMC's order.
    pub components: Vec<FirmwareComponent>,
    /// What could not be read (a member that failed to load, a count that disagrees with the list).
    pub warnings: Vec<String>,
}

/// A server's BIOS attributes and the changes waiting to be applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BiosSettings {
    /// The current attributes (`Bios.Attributes`).
    pub attributes: Map<String, Value>,
    /// Attributes in the pending settings object that differ from the current ones (applied at the next reset
    /// on most BMCs).
    pub pending: Map<String, Value>,
    /// When the BMC applies a settings change (`@Redfish.SettingsApplyTime` / `SupportedApplyTimes`), e.g.
    /// `OnReset`, `Immediate`; empty when it does not say.
    pub apply_times: Vec<String>,
    /// What could not be read (the settings object).
    pub warnings: Vec<String>,
}

/// What a BIOS settings change did (kiln-bmc's `Bmc::set_bios`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BiosChange {
    /// The attributes sent (only those that differed from the current values).
    pub changed: Map<String, Value>,
    /// Attributes asked for that already had the value (nothing sent for them).
    pub unchanged: Vec<String>,
    /// When the change takes effect: `OnReset` (the next reboot), `Immediate`, or what the BMC named.
    pub applies: String,
}

impl BiosSettings {
    /// The `kiln bmc bios --json` contract: `{"attributes":{…},"pending":{…}}` plus apply times and warnings.
    pub fn contract_json(&self) -> Value {
        serde_json::json!({
            "attributes": self.attributes,
            "pending": self.pending,
            "apply_times": self.apply_times,
            "warnings": self.warnings,
        })
    }
}

impl FirmwareInventory {
    /// The `kiln bmc firmware --json` contract: `{"components":[{"id","name","version","updateable",…}]}`.
    pub fn contract_json(&self) -> Value {
        serde_json::json!({ "components": self.components, "warnings": self.warnings })
    }
}
