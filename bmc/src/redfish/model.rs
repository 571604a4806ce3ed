//! Lenient serde models of the few Redfish resources kiln reads (DSP8010 schema names).
//!
//! Real BMCs omit "required" properties, add OEM blocks, put the wrong JSON type in a field and use odd casing, so
//! every field here is optional, a field of the wrong type reads as absent, unknown enum strings are kept as
//! `Other(…)`, and object keys are matched case-insensitively against the names kiln knows
//! ([`parse_resource`]). Only a body that is not a JSON object at all is an error.

use serde::de::Deserializer;
use serde::{Deserialize, Serialize, Serializer};

pub use super::lenient::{ModelError, parse_resource};
use super::lenient::{lenient, lenient_enum, lenient_vec};

lenient_enum! {
    /// `Resource.PowerState`.
    RfPowerState {
        /// Powered on.
        On => "On",
        /// Powered off.
        Off => "Off",
        /// Powering on.
        PoweringOn => "PoweringOn",
        /// Powering off.
        PoweringOff => "PoweringOff",
        /// Paused (still powered).
        Paused => "Paused",
    }
}

lenient_enum! {
    /// `Resource.ResetType`.
    ResetType {
        /// Turn on.
        On => "On",
        /// Turn off immediately.
        ForceOff => "ForceOff",
        /// Orderly OS shutdown.
        GracefulShutdown => "GracefulShutdown",
        /// Orderly OS restart.
        GracefulRestart => "GracefulRestart",
        /// Immediate restart.
        ForceRestart => "ForceRestart",
        /// Non-maskable interrupt.
        Nmi => "Nmi",
        /// Turn on immediately.
        ForceOn => "ForceOn",
        /// Simulate the power button.
        PushPowerButton => "PushPowerButton",
        /// Off then on.
        PowerCycle => "PowerCycle",
        /// Full power cycle including auxiliary power.
        FullPowerCycle => "FullPowerCycle",
    }
}

lenient_enum! {
    /// `ComputerSystem.BootSource`.
    BootSource {
        /// No override.
        None => "None",
        /// PXE.
        Pxe => "Pxe",
        /// CD/DVD.
        Cd => "Cd",
        /// Local hard disk.
        Hdd => "Hdd",
        /// USB device.
        Usb => "Usb",
        /// UEFI HTTP boot.
        UefiHttp => "UefiHttp",
        /// BIOS setup.
        BiosSetup => "BiosSetup",
        /// UEFI shell.
        UefiShell => "UefiShell",
        /// A UEFI device path.
        UefiTarget => "UefiTarget",
        /// Diagnostics.
        Diags => "Diags",
    }
}

lenient_enum! {
    /// `ComputerSystem.BootSourceOverrideEnabled`.
    OverrideEnabled {
        /// No override.
        Disabled => "Disabled",
        /// Next boot only.
        Once => "Once",
        /// Until cleared.
        Continuous => "Continuous",
    }
}

lenient_enum! {
    /// `Task.TaskState`.
    TaskState {
        /// Created, not started.
        New => "New",
        /// Starting.
        Starting => "Starting",
        /// Running.
        Running => "Running",
        /// Pending.
        Pending => "Pending",
        /// Finished successfully.
        Completed => "Completed",
        /// Killed.
        Killed => "Killed",
        /// Cancelled.
        Cancelled => "Cancelled",
        /// Ended with an error.
        Exception => "Exception",
    }
}

impl TaskState {
    /// Whether the task has ended; `Other` states are treated as still running.
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Killed | TaskState::Cancelled | TaskState::Exception
        )
    }
}

/// A reference to another resource (`{"@odata.id": "…"}`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Link {
    /// The resource's path.
    #[serde(rename = "@odata.id", deserialize_with = "lenient")]
    pub odata_id: Option<String>,
}

/// The service root, `/redfish/v1/`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServiceRoot {
    /// The Systems collection.
    #[serde(rename = "Systems", deserialize_with = "lenient")]
    pub systems: Option<Link>,
    /// The Managers collection.
    #[serde(rename = "Managers", deserialize_with = "lenient")]
    pub managers: Option<Link>,
    /// The session service.
    #[serde(rename = "SessionService", deserialize_with = "lenient")]
    pub session_service: Option<Link>,
    /// The update service (firmware inventory and updates).
    #[serde(rename = "UpdateService", deserialize_with = "lenient")]
    pub update_service: Option<Link>,
    /// Shortcut links, including the sessions collection.
    #[serde(rename = "Links", deserialize_with = "lenient")]
    pub links: Option<RootLinks>,
    /// The vendor that built the service.
    #[serde(rename = "Vendor", deserialize_with = "lenient")]
    pub vendor: Option<String>,
    /// Optional protocol features, `$expand` among them.
    #[serde(rename = "ProtocolFeaturesSupported", deserialize_with = "lenient")]
    pub protocol_features: Option<ProtocolFeatures>,
}

/// `ServiceRoot.ProtocolFeaturesSupported`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProtocolFeatures {
    /// Which forms of `$expand` the service honours.
    #[serde(rename = "ExpandQuery", deserialize_with = "lenient")]
    pub expand_query: Option<ExpandQuery>,
}

/// `ProtocolFeaturesSupported.ExpandQuery`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ExpandQuery {
    /// `$expand=*` (every hyperlink).
    #[serde(rename = "ExpandAll", deserialize_with = "lenient")]
    pub expand_all: Option<bool>,
    /// `$expand=.` (hyperlinks outside `Links`, e.g. collection members).
    #[serde(rename = "NoLinks", deserialize_with = "lenient")]
    pub no_links: Option<bool>,
}

impl ServiceRoot {
    /// The query that expands a collection's members in place, if the service advertises one.
    pub fn expand_members_query(&self) -> Option<&'static str> {
        let expand = self.protocol_features.as_ref()?.expand_query.as_ref()?;
        if expand.no_links == Some(true) {
            Some("$expand=.")
        } else if expand.expand_all == Some(true) {
            Some("$expand=*")
        } else {
            None
        }
    }
}

/// `ServiceRoot.Links`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RootLinks {
    /// The sessions collection.
    #[serde(rename = "Sessions", deserialize_with = "lenient")]
    pub sessions: Option<Link>,
}

/// Any resource collection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Collection {
    /// The members.
    #[serde(rename = "Members", deserialize_with = "lenient_vec")]
    pub members: Vec<Link>,
}

/// The Systems collection read with `$expand`: whole systems as members (or only their `@odata.id` where the
/// service ignored the query).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SystemCollection {
    /// The members.
    #[serde(rename = "Members", deserialize_with = "lenient_vec")]
    pub members: Vec<ComputerSystem>,
}

/// An action's target and allowable values (`"#ComputerSystem.Reset": {...}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResetAction {
    /// Where to POST.
    #[serde(rename = "target", deserialize_with = "lenient")]
    pub target: Option<String>,
    /// The reset types this BMC accepts.
    #[serde(
        rename = "ResetType@Redfish.AllowableValues",
        deserialize_with = "lenient_vec"
    )]
    pub allowable: Vec<ResetType>,
}

/// An action with only a target.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ActionTarget {
    /// Where to POST.
    #[serde(rename = "target", deserialize_with = "lenient")]
    pub target: Option<String>,
}

/// `ComputerSystem.Actions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SystemActions {
    /// The reset action.
    #[serde(rename = "#ComputerSystem.Reset", deserialize_with = "lenient")]
    pub reset: Option<ResetAction>,
    /// The decommission action (TPM clear, BIOS and BMC config reset, data erase), where offered.
    #[serde(rename = "#ComputerSystem.Decommission", deserialize_with = "lenient")]
    pub decommission: Option<DecommissionAction>,
}

/// `#ComputerSystem.Decommission`: where to POST and the decommission types the BMC accepts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DecommissionAction {
    /// Where to POST.
    #[serde(rename = "target", deserialize_with = "lenient")]
    pub target: Option<String>,
    /// `DecommissionTypes` the BMC accepts (`Tpm`, `BiosConfig`, …); empty when it does not say.
    #[serde(
        rename = "DecommissionTypes@Redfish.AllowableValues",
        deserialize_with = "lenient_vec"
    )]
    pub allowable_types: Vec<String>,
}

/// `ComputerSystem.Boot`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Boot {
    /// Whether an override is active.
    #[serde(rename = "BootSourceOverrideEnabled", deserialize_with = "lenient")]
    pub override_enabled: Option<OverrideEnabled>,
    /// The override target.
    #[serde(rename = "BootSourceOverrideTarget", deserialize_with = "lenient")]
    pub override_target: Option<BootSource>,
    /// Targets the BMC accepts.
    #[serde(
        rename = "BootSourceOverrideTarget@Redfish.AllowableValues",
        deserialize_with = "lenient_vec"
    )]
    pub allowable_targets: Vec<BootSource>,
    /// `UEFI` or `Legacy`, as the BMC spells it.
    #[serde(rename = "BootSourceOverrideMode", deserialize_with = "lenient")]
    pub override_mode: Option<String>,
}

/// `ComputerSystem`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ComputerSystem {
    /// The system's path.
    #[serde(rename = "@odata.id", deserialize_with = "lenient")]
    pub odata_id: Option<String>,
    /// The system's id.
    #[serde(rename = "Id", deserialize_with = "lenient")]
    pub id: Option<String>,
    /// Manufacturer.
    #[serde(rename = "Manufacturer", deserialize_with = "lenient")]
    pub manufacturer: Option<String>,
    /// Model.
    #[serde(rename = "Model", deserialize_with = "lenient")]
    pub model: Option<String>,
    /// Serial number.
    #[serde(rename = "SerialNumber", deserialize_with = "lenient")]
    pub serial_number: Option<String>,
    /// BIOS version.
    #[serde(rename = "BiosVersion", deserialize_with = "lenient")]
    pub bios_version: Option<String>,
    /// Power state.
    #[serde(rename = "PowerState", deserialize_with = "lenient")]
    pub power_state: Option<RfPowerState>,
    /// Boot override settings.
    #[serde(rename = "Boot", deserialize_with = "lenient")]
    pub boot: Option<Boot>,
    /// Actions.
    #[serde(rename = "Actions", deserialize_with = "lenient")]
    pub actions: Option<SystemActions>,
    /// NICs collection.
    #[serde(rename = "EthernetInterfaces", deserialize_with = "lenient")]
    pub ethernet_interfaces: Option<Link>,
    /// Virtual media collection (newer BMCs keep it under the system).
    #[serde(rename = "VirtualMedia", deserialize_with = "lenient")]
    pub virtual_media: Option<Link>,
    /// The BIOS attributes resource.
    #[serde(rename = "Bios", deserialize_with = "lenient")]
    pub bios: Option<Link>,
    /// Log services collection.
    #[serde(rename = "LogServices", deserialize_with = "lenient")]
    pub log_services: Option<Link>,
    /// ETag embedded in the body.
    #[serde(rename = "@odata.etag", deserialize_with = "lenient")]
    pub odata_etag: Option<String>,
}

/// `Manager`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Manager {
    /// BMC firmware version.
    #[serde(rename = "FirmwareVersion", deserialize_with = "lenient")]
    pub firmware_version: Option<String>,
    /// Virtual media collection (older BMCs keep it under the manager).
    #[serde(rename = "VirtualMedia", deserialize_with = "lenient")]
    pub virtual_media: Option<Link>,
    /// Log services collection.
    #[serde(rename = "LogServices", deserialize_with = "lenient")]
    pub log_services: Option<Link>,
}

/// `EthernetInterface`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EthernetInterface {
    /// Current MAC address.
    #[serde(rename = "MACAddress", deserialize_with = "lenient")]
    pub mac_address: Option<String>,
    /// Burned-in MAC address.
    #[serde(rename = "PermanentMACAddress", deserialize_with = "lenient")]
    pub permanent_mac_address: Option<String>,
}

/// `VirtualMedia.Actions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VirtualMediaActions {
    /// Insert action.
    #[serde(rename = "#VirtualMedia.InsertMedia", deserialize_with = "lenient")]
    pub insert: Option<ActionTarget>,
    /// Eject action.
    #[serde(rename = "#VirtualMedia.EjectMedia", deserialize_with = "lenient")]
    pub eject: Option<ActionTarget>,
}

/// `VirtualMedia`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VirtualMedia {
    /// Slot id.
    #[serde(rename = "Id", deserialize_with = "lenient")]
    pub id: Option<String>,
    /// Attached image URL.
    #[serde(rename = "Image", deserialize_with = "lenient")]
    pub image: Option<String>,
    /// Whether media is attached.
    #[serde(rename = "Inserted", deserialize_with = "lenient")]
    pub inserted: Option<bool>,
    /// Media types the slot emulates (`CD`, `DVD`, `USBStick`, …).
    #[serde(rename = "MediaTypes", deserialize_with = "lenient_vec")]
    pub media_types: Vec<String>,
    /// Insert/eject actions, when the BMC offers them (else PATCH the slot).
    #[serde(rename = "Actions", deserialize_with = "lenient")]
    pub actions: Option<VirtualMediaActions>,
}

/// `LogService`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogService {
    /// Service id (`SEL`, `Sel`, `IML`, `EventLog`).
    #[serde(rename = "Id", deserialize_with = "lenient")]
    pub id: Option<String>,
    /// The entries collection.
    #[serde(rename = "Entries", deserialize_with = "lenient")]
    pub entries: Option<Link>,
    /// Actions, including ClearLog.
    #[serde(rename = "Actions", deserialize_with = "lenient")]
    pub actions: Option<LogServiceActions>,
}

/// `LogService.Actions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogServiceActions {
    /// Clear action.
    #[serde(rename = "#LogService.ClearLog", deserialize_with = "lenient")]
    pub clear: Option<ActionTarget>,
}

/// A log entries collection with the entries expanded inline (as BMCs return them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogEntryCollection {
    /// The entries.
    #[serde(rename = "Members", deserialize_with = "lenient_vec")]
    pub members: Vec<RfLogEntry>,
}

/// `LogEntry`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RfLogEntry {
    /// Entry id.
    #[serde(rename = "Id", deserialize_with = "lenient")]
    pub id: Option<String>,
    /// Creation time.
    #[serde(rename = "Created", deserialize_with = "lenient")]
    pub created: Option<String>,
    /// Severity.
    #[serde(rename = "Severity", deserialize_with = "lenient")]
    pub severity: Option<String>,
    /// Message text.
    #[serde(rename = "Message", deserialize_with = "lenient")]
    pub message: Option<String>,
}

/// `Task` (also what a task monitor returns while the task runs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Task {
    /// The task's state.
    #[serde(rename = "TaskState", deserialize_with = "lenient")]
    pub task_state: Option<TaskState>,
}

/// A Redfish error body (`{"error": {"message": …, "@Message.ExtendedInfo": [...]}}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    /// The error.
    #[serde(rename = "error", deserialize_with = "lenient")]
    pub error: Option<ErrorDetail>,
}

/// The inner part of [`ErrorBody`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    /// Summary message.
    #[serde(rename = "message", deserialize_with = "lenient")]
    pub message: Option<String>,
    /// Detailed messages.
    #[serde(rename = "@Message.ExtendedInfo", deserialize_with = "lenient_vec")]
    pub extended: Vec<ExtendedInfo>,
}

/// One `@Message.ExtendedInfo` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ExtendedInfo {
    /// Message id.
    #[serde(rename = "MessageId", deserialize_with = "lenient")]
    pub message_id: Option<String>,
    /// Message text.
    #[serde(rename = "Message", deserialize_with = "lenient")]
    pub message: Option<String>,
}

impl ErrorBody {
    /// A one-line summary of the BMC's error message, if the body is a Redfish error.
    pub fn summary(&self) -> Option<String> {
        let error = self.error.as_ref()?;
        let mut parts: Vec<String> = error.message.iter().cloned().collect();
        for info in &error.extended {
            if let Some(text) = info.message.as_ref().or(info.message_id.as_ref()) {
                parts.push(text.clone());
            }
        }
        if parts.is_empty() {
            None
        } else {
            Some(parts.join("; "))
        }
    }
}
