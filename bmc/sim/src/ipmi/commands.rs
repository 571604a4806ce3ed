//! The IPMI commands a simulated BMC answers inside a session: device id, session privilege and close,
//! chassis status and control, system boot options, SEL and FRU (see [`super::fru`]). The session handshake
//! and the datagram loop are in [`super::server`].

use kiln_bmc::PowerState;

use super::codes::{PRIV_ADMIN, PRIV_OPERATOR, PRIV_USER, cc};
use super::packet::Request;
use super::packet::u32_at;
use super::server::Responder;

impl Responder {
    /// Runs an IPMI command inside an established session.
    pub(super) fn command(&mut self, session_id: u32, request: &Request) -> (u8, Vec<u8>) {
        let Some(session) = self.sessions.get(&session_id) else {
            return (cc::INVALID_COMMAND, Vec::new());
        };
        let privilege = session.privilege;
        let operator = privilege >= PRIV_OPERATOR;
        let data = &request.data;
        match (request.netfn, request.cmd) {
            (0x06, 0x38) => (cc::OK, self.auth_capabilities()),
            (0x06, 0x54) => self.cipher_suites(request),
            (0x06, 0x01) => (cc::OK, self.device_id()),
            (0x06, 0x3b) => self.set_privilege(session_id, data),
            (0x06, 0x3c) => self.close_session(session_id, data),
            (0x00, 0x01) => {
                let on = matches!(self.bmc.power(), PowerState::On | PowerState::PoweringOff);
                // Power restore policy "previous" (bits 6:5 = 01), no faults.
                (cc::OK, vec![u8::from(on) | 0x20, 0x00, 0x00, 0x00])
            }
            (0x00, 0x02 | 0x08) | (0x0a, 0x47) if !operator => (cc::PRIVILEGE, Vec::new()),
            (0x00, 0x02) => self.chassis_control(data),
            (0x00, 0x08) => self.set_boot_options(data),
            (0x00, 0x09) => self.get_boot_options(data),
            (0x0a, 0x10) => self.fru_area_info(data),
            (0x0a, 0x11) => self.read_fru_data(data),
            (0x0a, 0x42) => {
                self.sel_reservation = self.sel_reservation.wrapping_add(1).max(1);
                (cc::OK, self.sel_reservation.to_le_bytes().to_vec())
            }
            (0x0a, 0x43) => self.sel_entry(data),
            (0x0a, 0x47) => self.clear_sel(data),
            _ => (cc::INVALID_COMMAND, Vec::new()),
        }
    }

    /// Set Session Privilege Level: 0 reads the current level; a level above the session's limit is refused.
    fn set_privilege(&mut self, session_id: u32, data: &[u8]) -> (u8, Vec<u8>) {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return (cc::INVALID_COMMAND, Vec::new());
        };
        let Some(&wanted) = data.first() else {
            return (cc::REQUEST_DATA_LENGTH, Vec::new());
        };
        let wanted = wanted & 0x0f;
        if wanted == 0 {
            return (cc::OK, vec![session.privilege]);
        }
        if !(PRIV_USER..=PRIV_ADMIN).contains(&wanted) {
            return (cc::INVALID_DATA_FIELD, Vec::new());
        }
        if wanted > session.max_privilege {
            return (cc::PRIVILEGE_LIMIT, Vec::new());
        }
        session.privilege = wanted;
        (cc::OK, vec![wanted])
    }

    /// Close Session: this session (id 0 or its own) or another one.
    fn close_session(&mut self, session_id: u32, data: &[u8]) -> (u8, Vec<u8>) {
        let target = u32_at(data, 0).unwrap_or(session_id);
        if target == session_id || target == 0 {
            self.sessions.remove(&session_id);
            (cc::OK, Vec::new())
        } else if self.sessions.remove(&target).is_some() {
            (cc::OK, Vec::new())
        } else {
            (0x87, Vec::new())
        }
    }

    /// Chassis Control, mapped onto the Redfish reset types the state machine knows.
    fn chassis_control(&self, data: &[u8]) -> (u8, Vec<u8>) {
        let action = match data.first().map(|b| b & 0x0f) {
            Some(0) => "ForceOff",
            Some(1) => "On",
            Some(2) => "PowerCycle",
            Some(3) => "ForceRestart",
            Some(5) => "GracefulShutdown",
            Some(_) => return (cc::INVALID_DATA_FIELD, Vec::new()),
            None => return (cc::REQUEST_DATA_LENGTH, Vec::new()),
        };
        self.bmc.apply_reset(action);
        (cc::OK, Vec::new())
    }

    /// Set System Boot Options: parameter 5 (boot flags) sets the override; 0–4 are accepted and not kept.
    fn set_boot_options(&self, data: &[u8]) -> (u8, Vec<u8>) {
        let Some(&selector) = data.first() else {
            return (cc::REQUEST_DATA_LENGTH, Vec::new());
        };
        match selector & 0x7f {
            // Set in progress, service partition, boot info acknowledge: accepted, nothing to keep.
            0x00..=0x04 => (cc::OK, Vec::new()),
            0x05 => {
                let Some(flags) = data.get(1..3) else {
                    return (cc::REQUEST_DATA_LENGTH, Vec::new());
                };
                let enabled = match (flags[0] & 0x80 != 0, flags[0] & 0x40 != 0) {
                    (false, _) => "Disabled",
                    (true, false) => "Once",
                    (true, true) => "Continuous",
                };
                let target = match (flags[1] >> 2) & 0x0f {
                    0x0 => "None",
                    0x1 => "Pxe",
                    0x2 | 0x3 => "Hdd",
                    0x4 => "Diags",
                    0x5 => "Cd",
                    0x6 => "BiosSetup",
                    0xf => "Floppy",
                    _ => return (cc::INVALID_DATA_FIELD, Vec::new()),
                };
                let mode = if flags[0] & 0x20 != 0 {
                    "UEFI"
                } else {
                    "Legacy"
                };
                self.bmc.set_boot(enabled, target, Some(mode));
                (cc::OK, Vec::new())
            }
            _ => (cc::PARAMETER_NOT_SUPPORTED, Vec::new()),
        }
    }

    /// Get System Boot Options: parameter 0 (set in progress) and 5 (boot flags).
    fn get_boot_options(&self, data: &[u8]) -> (u8, Vec<u8>) {
        let selector = data.first().copied().unwrap_or(0) & 0x7f;
        match selector {
            0x00 => (cc::OK, vec![0x01, 0x00, 0x00]),
            0x05 => {
                let boot = self.bmc.lock().boot.clone();
                let mut first = match boot.enabled.as_str() {
                    "Once" => 0x80,
                    "Continuous" => 0xc0,
                    _ => 0x00,
                };
                if boot.mode == "UEFI" {
                    first |= 0x20;
                }
                let device: u8 = match boot.target.as_str() {
                    "Pxe" => 0x1,
                    "Hdd" => 0x2,
                    "Diags" => 0x4,
                    "Cd" => 0x5,
                    "BiosSetup" => 0x6,
                    "Floppy" => 0xf,
                    _ => 0x0,
                };
                (
                    cc::OK,
                    vec![0x01, 0x05, first, device << 2, 0x00, 0x00, 0x00],
                )
            }
            _ => (cc::PARAMETER_NOT_SUPPORTED, Vec::new()),
        }
    }

    /// Clear SEL: needs the current reservation and "CLR"; 0xAA erases, 0x00 asks for the status.
    fn clear_sel(&self, data: &[u8]) -> (u8, Vec<u8>) {
        let Some(data) = data.get(..6) else {
            return (cc::REQUEST_DATA_LENGTH, Vec::new());
        };
        if u16::from_le_bytes([data[0], data[1]]) != self.sel_reservation {
            return (0xc5, Vec::new());
        }
        if &data[2..5] != b"CLR" {
            return (cc::INVALID_DATA_FIELD, Vec::new());
        }
        if data[5] == 0xaa {
            self.bmc.clear_log();
        }
        // Erasure completed.
        (cc::OK, vec![0x01])
    }

    /// Get SEL Entry: the simulator's log entries as 16-byte system event records (sensor type 0x12
    /// "system event", event data 1 = 0 OK / 1 Warning / 2 Critical).
    fn sel_entry(&self, data: &[u8]) -> (u8, Vec<u8>) {
        let Some(request) = data.get(..6) else {
            return (cc::REQUEST_DATA_LENGTH, Vec::new());
        };
        let wanted = u16::from_le_bytes([request[2], request[3]]);
        let (offset, length) = (request[4] as usize, request[5] as usize);
        let sel = self.bmc.lock().sel.clone();
        let index = match wanted {
            0x0000 => 0,
            0xffff => sel.len().saturating_sub(1),
            id => match sel.iter().position(|e| e.id as u16 == id) {
                Some(index) => index,
                None => return (0xcb, Vec::new()),
            },
        };
        let Some(entry) = sel.get(index) else {
            return (0xcb, Vec::new());
        };
        let next = sel.get(index + 1).map_or(0xffff, |e| e.id as u16);
        let severity = match entry.severity {
            "Critical" => 2,
            "Warning" => 1,
            _ => 0,
        };
        let mut record = (entry.id as u16).to_le_bytes().to_vec();
        record.push(0x02);
        record.extend_from_slice(&(1_795_000_000u32 + entry.id).to_le_bytes());
        record.extend_from_slice(&[
            0x20,
            0x00,
            0x04,
            0x12,
            (entry.id & 0xff) as u8,
            0x6f,
            severity,
            0xff,
            0xff,
        ]);
        let end = if length == 0xff {
            record.len()
        } else {
            (offset + length).min(record.len())
        };
        let mut out = next.to_le_bytes().to_vec();
        out.extend_from_slice(record.get(offset.min(end)..end).unwrap_or_default());
        (cc::OK, out)
    }

    pub(super) fn device_id(&self) -> Vec<u8> {
        // Device id 0x20, revision 1 (provides SDRs: no), firmware 2.10, IPMI 2.0, additional support 0xbf,
        // manufacturer 0x001291 (an IANA number also used by ipmi_sim examples), product 0x0f02.
        vec![
            0x20, 0x01, 0x02, 0x10, 0x02, 0xbf, 0x91, 0x12, 0x00, 0x02, 0x0f,
        ]
    }
}
