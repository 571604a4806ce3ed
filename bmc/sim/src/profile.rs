//! Vendor profiles: the shapes in which different BMC firmware presents the same Redfish service. Modeled on
//! public vendor documentation; the differences are the ones that break naive clients.

/// Where a profile keeps a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Under {
    /// Under `Systems/<id>`.
    System,
    /// Under `Managers/<id>`.
    Manager,
}

/// How a profile answers a successful PATCH or action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 204 No Content.
    NoContent,
    /// 200 with a `@Message.ExtendedInfo` body.
    OkWithBody,
    /// 202 Accepted with a `Location` task monitor that completes after the task delay.
    AcceptedTask,
}

/// How a profile uses ETags on the ComputerSystem resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtagStyle {
    /// No ETag at all.
    None,
    /// `@odata.etag` in the body, `If-Match` optional.
    BodyOptional,
    /// `ETag` header; a boot PATCH without a matching `If-Match` is refused (428 / 412).
    HeaderRequired,
}

/// One vendor's Redfish shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorProfile {
    /// Short name (`dell`, `hpe`, `supermicro`, `openbmc`).
    pub name: &'static str,
    /// `ComputerSystem.Manufacturer`.
    pub manufacturer: &'static str,
    /// `ComputerSystem.Model`.
    pub model: &'static str,
    /// `ServiceRoot.Vendor`, if the firmware sets it.
    pub vendor: Option<&'static str>,
    /// `Systems/<id>`.
    pub system_id: &'static str,
    /// `Managers/<id>`.
    pub manager_id: &'static str,
    /// `ResetType@Redfish.AllowableValues`.
    pub reset_types: &'static [&'static str],
    /// `BootSourceOverrideTarget@Redfish.AllowableValues`.
    pub boot_targets: &'static [&'static str],
    /// Whether `BootSourceOverrideMode` exists.
    pub has_boot_mode: bool,
    /// Whether a boot PATCH without `BootSourceOverrideMode` is refused (400 PropertyMissing).
    pub boot_patch_requires_mode: bool,
    /// Where VirtualMedia lives.
    pub media_under: Under,
    /// Virtual media slots: (id, media types).
    pub media_slots: &'static [(&'static str, &'static [&'static str])],
    /// Whether slots offer InsertMedia/EjectMedia actions (else PATCH the slot).
    pub media_actions: bool,
    /// ETag handling.
    pub etag: EtagStyle,
    /// Answer to a boot PATCH.
    pub patch_answer: Answer,
    /// Answer to a reset action.
    pub reset_answer: Answer,
    /// Where the event log lives, and its id.
    pub log_under: Under,
    /// The event log's LogService id.
    pub log_id: &'static str,
    /// Whether the session service exists (else 404 on login: clients must fall back to basic auth).
    pub sessions: bool,
    /// `$expand` support advertised in `ProtocolFeaturesSupported.ExpandQuery`: `Some("ExpandAll")`
    /// (`$expand=*`) or `Some("NoLinks")` (`$expand=.`); `None`: not advertised and the query is ignored.
    pub expand: Option<&'static str>,
    /// NIC ids under `EthernetInterfaces`.
    pub nic_ids: &'static [&'static str],
    /// BMC firmware version.
    pub bmc_firmware: &'static str,
    /// `#ComputerSystem.Decommission` with these `DecommissionTypes` (empty: the action is not offered).
    pub decommission_types: &'static [&'static str],
}

/// Dell iDRAC-like (iDRAC10 firmware: Decommission with Tpm): long ids, PowerCycle offered, VirtualMedia under the manager with actions, body ETag,
/// boot PATCH answered 202 with a job (task monitor).
pub const DELL: VendorProfile = VendorProfile {
    name: "dell",
    manufacturer: "Dell Inc.",
    model: "PowerEdge XE9680",
    vendor: Some("Dell"),
    system_id: "System.Embedded.1",
    manager_id: "iDRAC.Embedded.1",
    reset_types: &[
        "On",
        "ForceOff",
        "ForceRestart",
        "GracefulRestart",
        "GracefulShutdown",
        "PushPowerButton",
        "Nmi",
        "PowerCycle",
    ],
    boot_targets: &[
        "None",
        "Pxe",
        "Floppy",
        "Cd",
        "Hdd",
        "BiosSetup",
        "Utilities",
        "UefiTarget",
        "SDCard",
        "UefiHttp",
    ],
    has_boot_mode: true,
    boot_patch_requires_mode: false,
    media_under: Under::Manager,
    media_slots: &[("CD", &["CD", "DVD"]), ("RemovableDisk", &["USBStick"])],
    media_actions: true,
    etag: EtagStyle::BodyOptional,
    patch_answer: Answer::AcceptedTask,
    reset_answer: Answer::NoContent,
    log_under: Under::Manager,
    log_id: "Sel",
    sessions: true,
    expand: Some("ExpandAll"),
    nic_ids: &["NIC.Integrated.1-1-1", "NIC.Integrated.1-2-1"],
    bmc_firmware: "7.10.30.00",
    decommission_types: &["Tpm", "BiosConfig", "ManagerConfig", "UserData", "Logs"],
};

/// HPE iLO-like: numeric ids, no PowerCycle (cycle = ForceRestart), VirtualMedia under the manager set by
/// PATCH (no actions), ETag header required on boot PATCH, 200 with body.
pub const HPE: VendorProfile = VendorProfile {
    name: "hpe",
    manufacturer: "HPE",
    model: "ProLiant XD685",
    vendor: Some("HPE"),
    system_id: "1",
    manager_id: "1",
    reset_types: &[
        "On",
        "ForceOff",
        "GracefulShutdown",
        "ForceRestart",
        "Nmi",
        "PushPowerButton",
        "GracefulRestart",
    ],
    boot_targets: &[
        "None",
        "Cd",
        "Hdd",
        "Usb",
        "SDCard",
        "Utilities",
        "Diags",
        "BiosSetup",
        "Pxe",
        "UefiShell",
        "UefiHttp",
        "UefiTarget",
    ],
    has_boot_mode: true,
    boot_patch_requires_mode: false,
    media_under: Under::Manager,
    media_slots: &[("1", &["Floppy", "USBStick"]), ("2", &["CD", "DVD"])],
    media_actions: false,
    etag: EtagStyle::HeaderRequired,
    patch_answer: Answer::OkWithBody,
    reset_answer: Answer::OkWithBody,
    log_under: Under::System,
    log_id: "IML",
    sessions: true,
    expand: Some("NoLinks"),
    nic_ids: &["1", "2"],
    bmc_firmware: "iLO 6 v1.62",
    decommission_types: &[],
};

/// Supermicro-like (older firmware): only On/ForceOff/GracefulShutdown (cycle = ForceOff then On), odd boot
/// target names (`UsbCd`), boot PATCH refused without `BootSourceOverrideMode`, no session service.
pub const SUPERMICRO: VendorProfile = VendorProfile {
    name: "supermicro",
    manufacturer: "Supermicro",
    model: "SYS-821GE-TNHR",
    vendor: None,
    system_id: "1",
    manager_id: "1",
    reset_types: &["On", "ForceOff", "GracefulShutdown"],
    boot_targets: &[
        "None",
        "Pxe",
        "Hdd",
        "Diags",
        "BiosSetup",
        "UsbCd",
        "UsbHdd",
        "UefiShell",
        "UefiHttp",
    ],
    has_boot_mode: true,
    boot_patch_requires_mode: true,
    media_under: Under::Manager,
    media_slots: &[("CD1", &["CD", "DVD"])],
    media_actions: true,
    etag: EtagStyle::None,
    patch_answer: Answer::OkWithBody,
    reset_answer: Answer::OkWithBody,
    log_under: Under::Manager,
    log_id: "Log1",
    sessions: false,
    expand: None,
    nic_ids: &["1"],
    bmc_firmware: "01.01.10",
    decommission_types: &[],
};

/// OpenBMC-like (NVIDIA HGX/DGX): `system`/`bmc` ids, VirtualMedia under the system, no UefiHttp, no boot mode
/// property, 204 answers.
pub const OPENBMC: VendorProfile = VendorProfile {
    name: "openbmc",
    manufacturer: "NVIDIA",
    model: "DGX H100",
    vendor: Some("OpenBMC"),
    system_id: "system",
    manager_id: "bmc",
    reset_types: &[
        "On",
        "ForceOff",
        "GracefulShutdown",
        "ForceRestart",
        "GracefulRestart",
        "PowerCycle",
    ],
    boot_targets: &["None", "Pxe", "Hdd", "Cd", "Diags", "BiosSetup", "Usb"],
    has_boot_mode: false,
    boot_patch_requires_mode: false,
    media_under: Under::System,
    media_slots: &[
        ("Slot_0", &["CD", "USBStick"]),
        ("Slot_1", &["CD", "USBStick"]),
    ],
    media_actions: true,
    etag: EtagStyle::None,
    patch_answer: Answer::NoContent,
    reset_answer: Answer::NoContent,
    log_under: Under::System,
    log_id: "EventLog",
    sessions: true,
    expand: None,
    nic_ids: &["eth0", "eth1"],
    bmc_firmware: "2.17.0-dev",
    decommission_types: &[],
};

/// All profiles; a fleet cycles through them.
pub const ALL: [&VendorProfile; 4] = [&DELL, &HPE, &SUPERMICRO, &OPENBMC];

/// A profile by name.
pub fn by_name(name: &str) -> Option<&'static VendorProfile> {
    ALL.iter()
        .copied()
        .find(|profile| profile.name.eq_ignore_ascii_case(name))
}
