//! The IPMI commands kiln needs that `ipmi-rs` 0.6 lacks, as its `IpmiCommand`s: chassis status and control,
//! system boot options, and session privilege.

use ipmi_rs::connection::{IpmiCommand, Message};

/// A response too short or otherwise unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadResponse(pub &'static str);

/// Get Chassis Status (netfn 0x00, cmd 0x01).
#[derive(Debug, Clone, Copy)]
pub struct GetChassisStatus;

/// What Get Chassis Status reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChassisStatus {
    /// System power is on.
    pub power_on: bool,
    /// Power overload, interlock, fault or control fault bits (1–4) of the current power state byte.
    pub power_fault: bool,
}

impl From<GetChassisStatus> for Message {
    fn from(_: GetChassisStatus) -> Self {
        Message::new_raw(0x00, 0x01, Vec::new())
    }
}

impl IpmiCommand for GetChassisStatus {
    type Output = ChassisStatus;
    type Error = BadResponse;

    fn parse_success_response(data: &[u8]) -> Result<Self::Output, Self::Error> {
        let state = *data
            .first()
            .ok_or(BadResponse("chassis status without data"))?;
        Ok(ChassisStatus {
            power_on: state & 0x01 != 0,
            power_fault: state & 0x1e != 0,
        })
    }
}

/// Chassis Control (netfn 0x00, cmd 0x02).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChassisControl {
    /// Power down (hard).
    PowerDown = 0,
    /// Power up.
    PowerUp = 1,
    /// Power cycle.
    PowerCycle = 2,
    /// Hard reset.
    HardReset = 3,
    /// ACPI soft shutdown.
    SoftShutdown = 5,
}

impl From<ChassisControl> for Message {
    fn from(control: ChassisControl) -> Self {
        Message::new_raw(0x00, 0x02, vec![control as u8])
    }
}

impl IpmiCommand for ChassisControl {
    type Output = ();
    type Error = BadResponse;

    fn parse_success_response(_data: &[u8]) -> Result<Self::Output, Self::Error> {
        Ok(())
    }
}

/// Set System Boot Options (netfn 0x00, cmd 0x08): parameter selector and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSystemBootOptions {
    /// Parameter selector (4: boot info acknowledge, 5: boot flags).
    pub parameter: u8,
    /// Parameter data.
    pub data: Vec<u8>,
}

impl SetSystemBootOptions {
    /// Parameter 5, boot flags: valid, next boot only unless `persistent`, EFI if `uefi`, device selector.
    pub fn boot_flags(device_selector: u8, persistent: bool, uefi: bool) -> Self {
        let mut first = 0x80;
        if persistent {
            first |= 0x40;
        }
        if uefi {
            first |= 0x20;
        }
        SetSystemBootOptions {
            parameter: 5,
            data: vec![first, (device_selector & 0x0f) << 2, 0, 0, 0],
        }
    }
}

impl From<SetSystemBootOptions> for Message {
    fn from(options: SetSystemBootOptions) -> Self {
        let mut data = vec![options.parameter & 0x7f];
        data.extend_from_slice(&options.data);
        Message::new_raw(0x00, 0x08, data)
    }
}

impl IpmiCommand for SetSystemBootOptions {
    type Output = ();
    type Error = BadResponse;

    fn parse_success_response(_data: &[u8]) -> Result<Self::Output, Self::Error> {
        Ok(())
    }
}

/// Get System Boot Options (netfn 0x00, cmd 0x09) for one parameter.
#[derive(Debug, Clone, Copy)]
pub struct GetSystemBootOptions(pub u8);

/// A boot options parameter as returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOptionsParameter {
    /// The parameter selector.
    pub parameter: u8,
    /// Parameter data.
    pub data: Vec<u8>,
}

impl From<GetSystemBootOptions> for Message {
    fn from(GetSystemBootOptions(parameter): GetSystemBootOptions) -> Self {
        Message::new_raw(0x00, 0x09, vec![parameter & 0x7f, 0x00, 0x00])
    }
}

impl IpmiCommand for GetSystemBootOptions {
    type Output = BootOptionsParameter;
    type Error = BadResponse;

    fn parse_success_response(data: &[u8]) -> Result<Self::Output, Self::Error> {
        if data.len() < 2 {
            return Err(BadResponse("boot options answer shorter than 2 bytes"));
        }
        Ok(BootOptionsParameter {
            parameter: data[1] & 0x7f,
            data: data[2..].to_vec(),
        })
    }
}

/// Set Session Privilege Level (netfn 0x06, cmd 0x3B).
#[derive(Debug, Clone, Copy)]
pub struct SetSessionPrivilegeLevel(pub u8);

/// The administrator privilege level.
pub const PRIVILEGE_ADMINISTRATOR: u8 = 0x04;

impl From<SetSessionPrivilegeLevel> for Message {
    fn from(SetSessionPrivilegeLevel(level): SetSessionPrivilegeLevel) -> Self {
        Message::new_raw(0x06, 0x3b, vec![level])
    }
}

impl IpmiCommand for SetSessionPrivilegeLevel {
    type Output = u8;
    type Error = BadResponse;

    fn parse_success_response(data: &[u8]) -> Result<Self::Output, Self::Error> {
        data.first()
            .copied()
            .ok_or(BadResponse("privilege answer without data"))
    }
}
