//! kiln-bmc: the [`Bmc`] trait (power, boot device, virtual media, system inventory, event log) with a Redfish
//! implementation ([`redfish::RedfishClient`]), plus fleet operations with bounded concurrency, per-BMC
//! timeouts and retries ([`fleet`]).
//!
//! Errors are typed ([`BmcError`]) and say whether a retry can help ([`BmcError::is_transient`]).

mod error;
pub mod fleet;
pub mod ipmi;
pub mod redfish;
pub mod target;
mod types;

pub use error::BmcError;
pub use kiln_model::{BiosChange, BiosSettings, FirmwareComponent, FirmwareInventory};
pub use types::{
    BootDevice, BootMode, BootOverride, Credentials, Inspection, LogEntry, Password, PowerAction,
    PowerState, SystemInventory, VirtualMediaSlot,
};

/// A BMC kiln can drive. Implemented by the Redfish and IPMI clients; the simulator serves the same operations
/// over the real wire protocols.
#[async_trait::async_trait]
pub trait Bmc: Send + Sync {
    /// The BMC's address, for logs and errors.
    fn addr(&self) -> &str;

    /// Whether the server has power.
    async fn power_state(&self) -> Result<PowerState, BmcError>;

    /// Power on, off, soft off, cycle or reset. Asking for the state the server is already in is a no-op.
    async fn set_power(&self, action: PowerAction) -> Result<(), BmcError>;

    /// Sets the boot device for the next boot or persistently.
    async fn set_boot(&self, boot: BootOverride) -> Result<(), BmcError>;

    /// Lists the virtual media slots.
    async fn virtual_media(&self) -> Result<Vec<VirtualMediaSlot>, BmcError>;

    /// Attaches an image URL to a virtual media slot (`None`: the first CD/DVD slot).
    async fn insert_media(&self, slot: Option<&str>, image_url: &str) -> Result<(), BmcError>;

    /// Detaches the image from a virtual media slot (`None`: the first CD/DVD slot).
    async fn eject_media(&self, slot: Option<&str>) -> Result<(), BmcError>;

    /// Reads the server's identity, firmware versions and MACs.
    async fn inventory(&self) -> Result<SystemInventory, BmcError>;

    /// Reads the event log (SEL).
    async fn read_log(&self) -> Result<Vec<LogEntry>, BmcError>;

    /// Clears the event log.
    async fn clear_log(&self) -> Result<(), BmcError>;

    /// Power state, identity and capabilities in one answer (`kiln bmc inspect`).
    async fn inspect(&self) -> Result<Inspection, BmcError>;

    /// Clears the server's TPM (owner hierarchy and keys) between tenants. BMCs that do not offer it answer
    /// [`BmcError::Unsupported`] (the default: IPMI has no such command); Redfish uses
    /// `#ComputerSystem.Decommission` with `DecommissionTypes: ["Tpm"]` where the System advertises it.
    async fn clear_tpm(&self) -> Result<(), BmcError> {
        Err(BmcError::Unsupported {
            addr: self.addr().to_string(),
            what: "TPM clear".into(),
        })
    }

    /// The firmware inventory (`kiln bmc firmware`). The default reads the BIOS and BMC versions from
    /// [`Bmc::inventory`] (IPMI: Get Device ID); Redfish reads `UpdateService/FirmwareInventory`.
    async fn firmware(&self) -> Result<FirmwareInventory, BmcError> {
        let inventory = self.inventory().await?;
        let component = |id: &str, version| FirmwareComponent::version_only(id, version, "ipmi");
        let mut components = vec![component("BMC", inventory.bmc_firmware_version)];
        if inventory.bios_version.is_some() {
            components.push(component("BIOS", inventory.bios_version));
        }
        Ok(FirmwareInventory {
            components,
            warnings: Vec::new(),
        })
    }

    /// The BIOS attributes and pending changes (`kiln bmc bios`). Unsupported by default (IPMI has none).
    async fn bios(&self) -> Result<BiosSettings, BmcError> {
        Err(BmcError::Unsupported {
            addr: self.addr().to_string(),
            what: "BIOS settings".into(),
        })
    }

    /// Asks for BIOS attribute changes (only those that differ are sent) and says when they apply.
    async fn set_bios(
        &self,
        changes: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<BiosChange, BmcError> {
        let _ = changes;
        Err(BmcError::Unsupported {
            addr: self.addr().to_string(),
            what: "BIOS settings".into(),
        })
    }

    /// Releases what the client holds on the BMC (a Redfish session). Errors are logged, not returned.
    async fn close(&self) {}
}
