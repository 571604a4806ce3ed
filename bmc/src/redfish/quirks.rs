//! Vendor quirk profiles, as data. The client behaves by the Redfish standard and consults these only where
//! a vendor's firmware is known to need something different; a BMC that matches no profile gets the defaults.

use super::model::{BootSource, ResetType};
use crate::{BootDevice, PowerAction};

/// What is different about one vendor's Redfish service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quirks {
    /// Profile name, for logs.
    pub name: &'static str,
    /// Always send `BootSourceOverrideMode` with a boot override (Supermicro ignores or refuses the PATCH
    /// without it).
    pub boot_patch_needs_mode: bool,
    /// Boot targets to try, in order, for a CD boot when `Cd` is not offered (Supermicro spells it `UsbCd`).
    pub cd_boot_aliases: &'static [&'static str],
}

/// Defaults for a BMC that matches no profile.
pub const STANDARD: Quirks = Quirks {
    name: "standard",
    boot_patch_needs_mode: false,
    cd_boot_aliases: &[],
};

/// Known profiles: (substring of the manufacturer or service vendor, lower-case; quirks).
pub const PROFILES: &[(&str, Quirks)] = &[
    (
        "dell",
        Quirks {
            name: "dell-idrac",
            ..STANDARD
        },
    ),
    (
        "hpe",
        Quirks {
            name: "hpe-ilo",
            ..STANDARD
        },
    ),
    (
        "lenovo",
        Quirks {
            name: "lenovo-xcc",
            ..STANDARD
        },
    ),
    (
        "supermicro",
        Quirks {
            name: "supermicro",
            boot_patch_needs_mode: true,
            cd_boot_aliases: &["UsbCd", "UefiCd", "UsbCdDvd"],
        },
    ),
    (
        "nvidia",
        Quirks {
            name: "nvidia-openbmc",
            ..STANDARD
        },
    ),
    (
        "openbmc",
        Quirks {
            name: "openbmc",
            ..STANDARD
        },
    ),
];

/// The quirks for a BMC identified by its manufacturer and service vendor strings.
pub fn quirks_for(manufacturer: Option<&str>, vendor: Option<&str>) -> Quirks {
    let names = [manufacturer, vendor];
    for name in names.into_iter().flatten() {
        let lower = name.to_ascii_lowercase();
        if let Some((_, quirks)) = PROFILES.iter().find(|(needle, _)| lower.contains(needle)) {
            return *quirks;
        }
    }
    STANDARD
}

/// The reset types to POST, in order, for a kiln power action, given what the BMC advertises. An empty
/// `allowable` list means the BMC did not say; then the standard value is used. Returns `None` when the BMC
/// offers no way to do it.
pub fn reset_plan(action: PowerAction, allowable: &[ResetType]) -> Option<Vec<ResetType>> {
    let offers = |t: &ResetType| allowable.is_empty() || allowable.contains(t);
    let first_offered = |choices: &[ResetType]| choices.iter().find(|t| offers(t)).cloned();
    match action {
        PowerAction::On => first_offered(&[
            ResetType::On,
            ResetType::ForceOn,
            ResetType::PushPowerButton,
        ])
        .map(|t| vec![t]),
        PowerAction::ForceOff => first_offered(&[ResetType::ForceOff]).map(|t| vec![t]),
        PowerAction::SoftOff => {
            first_offered(&[ResetType::GracefulShutdown, ResetType::PushPowerButton])
                .map(|t| vec![t])
        }
        PowerAction::Cycle => first_offered(&[ResetType::PowerCycle, ResetType::ForceRestart])
            .map(|t| vec![t])
            .or_else(|| {
                (offers(&ResetType::ForceOff) && offers(&ResetType::On))
                    .then(|| vec![ResetType::ForceOff, ResetType::On])
            }),
        PowerAction::Reset => first_offered(&[
            ResetType::ForceRestart,
            ResetType::GracefulRestart,
            ResetType::PowerCycle,
        ])
        .map(|t| vec![t]),
    }
}

/// The boot override target for a device, given what the BMC advertises (empty: the standard name).
pub fn boot_target(
    device: BootDevice,
    allowable: &[BootSource],
    quirks: &Quirks,
) -> Option<BootSource> {
    let standard = match device {
        BootDevice::Pxe => BootSource::Pxe,
        BootDevice::Disk => BootSource::Hdd,
        BootDevice::Cd => BootSource::Cd,
        BootDevice::UefiHttp => BootSource::UefiHttp,
    };
    if allowable.is_empty() || allowable.contains(&standard) {
        return Some(standard);
    }
    if device == BootDevice::Cd {
        for alias in quirks.cd_boot_aliases {
            if let Some(found) = allowable
                .iter()
                .find(|t| t.as_str().eq_ignore_ascii_case(alias))
            {
                return Some(found.clone());
            }
        }
    }
    None
}
