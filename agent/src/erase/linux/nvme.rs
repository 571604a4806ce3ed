//! NVMe admin commands for erase: builders of the commands, parsers of what comes back (Identify Controller,
//! Identify Namespace, the Sanitize Status log page, the completion status), all pure and tested without a
//! device. Field offsets are from the NVMe Base Specification 2.0.

use std::fmt;

use super::ioctl::NvmePassthruCmd;
use crate::erase::{DeviceError, EraseProgress};

/// Identify (CNS in CDW10).
pub const OP_IDENTIFY: u8 = 0x06;
/// Get Log Page.
pub const OP_GET_LOG_PAGE: u8 = 0x02;
/// Sanitize.
pub const OP_SANITIZE: u8 = 0x84;
/// Format NVM.
pub const OP_FORMAT_NVM: u8 = 0x80;
/// Namespace id meaning "every namespace / the controller".
pub const NSID_ALL: u32 = 0xffff_ffff;
/// Size of an Identify data structure.
pub const IDENTIFY_LEN: usize = 4096;
/// Size of the Sanitize Status log page read.
pub const SANITIZE_LOG_LEN: usize = 512;
/// The log page id of Sanitize Status.
pub const LID_SANITIZE_STATUS: u8 = 0x81;

/// A parser was given a buffer it cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvmeParseError {
    /// The buffer is shorter than the structure.
    #[error("{what} is {got} bytes, need at least {need}")]
    Short {
        /// The structure being parsed.
        what: &'static str,
        /// Bytes given.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A field holds a value the structure cannot have.
    #[error("{what}: {detail}")]
    Garbled {
        /// The structure being parsed.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

fn need(what: &'static str, buf: &[u8], len: usize) -> Result<(), NvmeParseError> {
    if buf.len() < len {
        return Err(NvmeParseError::Short {
            what,
            got: buf.len(),
            need: len,
        });
    }
    Ok(())
}

fn le16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

fn le32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// An ASCII field of an identify structure, trimmed of its space padding (and NULs some drives use).
fn ascii_field(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_matches(|c: char| c == ' ' || c == '\0')
        .to_string()
}

/// What Identify Controller says about erase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifyController {
    /// Serial number (bytes 4..24).
    pub serial: String,
    /// Model number (bytes 24..64).
    pub model: String,
    /// OACS bit 1: Format NVM is supported.
    pub format_supported: bool,
    /// FNA bit 0: a format applies to every namespace.
    pub format_all_namespaces: bool,
    /// FNA bit 2: Format NVM can do a cryptographic erase (SES 2).
    pub format_crypto: bool,
    /// SANICAP bit 0: sanitize crypto erase.
    pub sanitize_crypto: bool,
    /// SANICAP bit 1: sanitize block erase.
    pub sanitize_block: bool,
    /// SANICAP bit 2: sanitize overwrite.
    pub sanitize_overwrite: bool,
}

/// Parses the Identify Controller data structure (CNS 1).
pub fn parse_identify_controller(buf: &[u8]) -> Result<IdentifyController, NvmeParseError> {
    const WHAT: &str = "Identify Controller data";
    // Up to and including FNA (byte 524); SANICAP is bytes 328..332.
    need(WHAT, buf, 525)?;
    let oacs = le16(buf, 256);
    let sanicap = le32(buf, 328);
    let fna = buf[524];
    Ok(IdentifyController {
        serial: ascii_field(&buf[4..24]),
        model: ascii_field(&buf[24..64]),
        format_supported: oacs & 0b10 != 0,
        format_all_namespaces: fna & 0b001 != 0,
        format_crypto: fna & 0b100 != 0,
        sanitize_crypto: sanicap & 0b001 != 0,
        sanitize_block: sanicap & 0b010 != 0,
        sanitize_overwrite: sanicap & 0b100 != 0,
    })
}

/// One LBA format of a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbaFormat {
    /// Metadata bytes per block.
    pub metadata_bytes: u16,
    /// Block size as a power of two (9 = 512 B, 12 = 4 KiB).
    pub lba_shift: u8,
}

/// What Identify Namespace says about the namespace's format, enough to format it the same way again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifyNamespace {
    /// Size in logical blocks (NSZE).
    pub blocks: u64,
    /// The current LBA format index (FLBAS bits 3:0, with bits 6:5 above them when more than 16 formats).
    pub lba_format: u8,
    /// FLBAS bit 4: metadata at the end of each block (the MSET of Format NVM).
    pub metadata_extended: bool,
    /// DPS bits 2:0: the protection information type (the PI of Format NVM).
    pub protection_type: u8,
    /// DPS bit 3: protection information first (the PIL of Format NVM).
    pub protection_first: bool,
    /// The supported LBA formats (NLBAF + 1 of them).
    pub formats: Vec<LbaFormat>,
}

impl IdentifyNamespace {
    /// The block size in bytes of the current format.
    pub fn block_size(&self) -> Option<u32> {
        let shift = self.formats.get(usize::from(self.lba_format))?.lba_shift;
        1u32.checked_shl(u32::from(shift))
    }
}

/// Parses the Identify Namespace data structure (CNS 0).
pub fn parse_identify_namespace(buf: &[u8]) -> Result<IdentifyNamespace, NvmeParseError> {
    const WHAT: &str = "Identify Namespace data";
    // LBA formats start at byte 128, 4 bytes each, up to 64 of them.
    need(WHAT, buf, 132)?;
    let blocks = u64::from_le_bytes(buf[0..8].try_into().unwrap_or_default());
    let nlbaf = usize::from(buf[25]) + 1;
    let flbas = buf[26];
    let dps = buf[29];
    if nlbaf > 64 {
        return Err(NvmeParseError::Garbled {
            what: WHAT,
            detail: format!("NLBAF says {nlbaf} formats, at most 64"),
        });
    }
    need(WHAT, buf, 128 + 4 * nlbaf)?;
    let mut lba_format = flbas & 0x0f;
    if nlbaf > 16 {
        lba_format |= ((flbas >> 5) & 0b11) << 4;
    }
    if usize::from(lba_format) >= nlbaf {
        return Err(NvmeParseError::Garbled {
            what: WHAT,
            detail: format!("current LBA format {lba_format} but only {nlbaf} formats"),
        });
    }
    let formats = (0..nlbaf)
        .map(|i| {
            let at = 128 + 4 * i;
            LbaFormat {
                metadata_bytes: le16(buf, at),
                lba_shift: buf[at + 2],
            }
        })
        .collect();
    Ok(IdentifyNamespace {
        blocks,
        lba_format,
        metadata_extended: flbas & 0x10 != 0,
        protection_type: dps & 0b111,
        protection_first: dps & 0b1000 != 0,
        formats,
    })
}

/// The Sanitize Status log page (LID 0x81), the fields kiln reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SanitizeStatus {
    /// SPROG: progress of the running sanitize, numerator over 65536.
    pub progress: u16,
    /// SSTAT bits 2:0: 0 never sanitized, 1 completed, 2 in progress, 3 failed, 4 completed without deallocate.
    pub state: u8,
}

/// Parses the Sanitize Status log page.
pub fn parse_sanitize_status(buf: &[u8]) -> Result<SanitizeStatus, NvmeParseError> {
    need("Sanitize Status log page", buf, 4)?;
    Ok(SanitizeStatus {
        progress: le16(buf, 0),
        state: (le16(buf, 2) & 0b111) as u8,
    })
}

impl SanitizeStatus {
    /// What the log page says about the sanitize kiln started.
    pub fn progress(&self) -> EraseProgress {
        match self.state {
            1 | 4 => EraseProgress::Done,
            2 => EraseProgress::Running(Some(f64::from(self.progress) / 65536.0)),
            0 => EraseProgress::Failed(
                "sanitize status log says no sanitize ever ran on this controller".into(),
            ),
            3 => {
                EraseProgress::Failed("the controller reports the sanitize operation failed".into())
            }
            other => {
                EraseProgress::Failed(format!("sanitize status log has an unknown state {other}"))
            }
        }
    }
}

/// The status field of an NVMe completion, as the kernel returns it from the ioctl (the CQE status without the
/// phase bit: SC bits 7:0, SCT bits 10:8, CRD 12:11, More bit 13, DNR bit 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvmeStatus {
    /// Status code type.
    pub sct: u8,
    /// Status code.
    pub sc: u8,
    /// Do Not Retry.
    pub dnr: bool,
}

impl NvmeStatus {
    /// Splits the status field.
    pub fn parse(raw: u16) -> Self {
        NvmeStatus {
            sct: ((raw >> 8) & 0b111) as u8,
            sc: (raw & 0xff) as u8,
            dnr: raw & 0x4000 != 0,
        }
    }

    /// The specification's name of the status, where kiln knows it.
    pub fn name(&self) -> Option<&'static str> {
        Some(match (self.sct, self.sc) {
            (0, 0x01) => "Invalid Command Opcode",
            (0, 0x02) => "Invalid Field in Command",
            (0, 0x04) => "Data Transfer Error",
            (0, 0x06) => "Internal Error",
            (0, 0x07) => "Command Abort Requested",
            (0, 0x0b) => "Invalid Namespace or Format",
            (0, 0x1d) => "Sanitize Failed",
            (0, 0x1e) => "Sanitize In Progress",
            (0, 0x20) => "Namespace is Write Protected",
            (0, 0x21) => "Command Interrupted",
            (1, 0x0a) => "Invalid Format",
            (1, 0x15) => "Namespace Insufficient Capacity",
            (1, 0x1d) => "Prohibited by Sanitize Config",
            (3, 0x70) => "Host Path Error",
            (3, 0x71) => "Host Aborted Command",
            _ => return None,
        })
    }

    /// The device error for a failed `command`: an invalid opcode or field means the device does not offer it.
    pub fn to_error(self, command: &str) -> DeviceError {
        match (self.sct, self.sc) {
            (0, 0x01) | (0, 0x02) => DeviceError::Unsupported(format!("{command}: {self}")),
            (0, 0x20) => DeviceError::ReadOnly,
            _ => DeviceError::Command(format!("{command}: {self}")),
        }
    }
}

impl fmt::Display for NvmeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NVMe status type 0x{:x} code 0x{:02x}",
            self.sct, self.sc
        )?;
        if let Some(name) = self.name() {
            write!(f, " ({name})")?;
        }
        Ok(())
    }
}

/// Identify Controller (CNS 1).
pub fn identify_controller_cmd() -> NvmePassthruCmd {
    NvmePassthruCmd {
        opcode: OP_IDENTIFY,
        nsid: 0,
        cdw10: 1,
        timeout_ms: 10_000,
        ..Default::default()
    }
}

/// Identify Namespace (CNS 0) of `nsid`.
pub fn identify_namespace_cmd(nsid: u32) -> NvmePassthruCmd {
    NvmePassthruCmd {
        opcode: OP_IDENTIFY,
        nsid,
        cdw10: 0,
        timeout_ms: 10_000,
        ..Default::default()
    }
}

/// A sanitize action (SANACT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeAction {
    /// 1: leave the failure mode a failed sanitize left the controller in.
    ExitFailureMode,
    /// 2: block erase.
    BlockErase,
    /// 4: crypto erase.
    CryptoErase,
}

/// Sanitize with `action`: unrestricted completion (AUSE 0, so a failure can be exited), deallocation allowed.
/// The controller starts it in the background and completes the command at once.
pub fn sanitize_cmd(action: SanitizeAction) -> NvmePassthruCmd {
    let sanact = match action {
        SanitizeAction::ExitFailureMode => 1,
        SanitizeAction::BlockErase => 2,
        SanitizeAction::CryptoErase => 4,
    };
    NvmePassthruCmd {
        opcode: OP_SANITIZE,
        nsid: NSID_ALL,
        cdw10: sanact,
        timeout_ms: 60_000,
        ..Default::default()
    }
}

/// Format NVM's Secure Erase Setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureErase {
    /// SES 1: user data erase.
    UserData,
    /// SES 2: cryptographic erase.
    Crypto,
}

/// How long a Format NVM may take before the kernel gives up on it: formats are synchronous and a large drive
/// that erases user data block by block can take a long time (two hours covers the slowest drives reported).
pub const FORMAT_TIMEOUT_MS: u32 = 2 * 60 * 60 * 1000;

/// Format NVM of namespace `nsid` into its current format (`ns`), with a secure erase.
pub fn format_cmd(nsid: u32, ns: &IdentifyNamespace, ses: SecureErase) -> NvmePassthruCmd {
    let ses = match ses {
        SecureErase::UserData => 1u32,
        SecureErase::Crypto => 2,
    };
    let lbaf = u32::from(ns.lba_format);
    let cdw10 = (lbaf & 0x0f)
        | (u32::from(ns.metadata_extended) << 4)
        | (u32::from(ns.protection_type) << 5)
        | (u32::from(ns.protection_first) << 8)
        | (ses << 9)
        | (((lbaf >> 4) & 0b11) << 12);
    NvmePassthruCmd {
        opcode: OP_FORMAT_NVM,
        nsid,
        cdw10,
        timeout_ms: FORMAT_TIMEOUT_MS,
        ..Default::default()
    }
}

/// Get Log Page of the Sanitize Status log ([`SANITIZE_LOG_LEN`] bytes).
pub fn sanitize_log_cmd() -> NvmePassthruCmd {
    let dwords = (SANITIZE_LOG_LEN / 4 - 1) as u32;
    NvmePassthruCmd {
        opcode: OP_GET_LOG_PAGE,
        nsid: NSID_ALL,
        cdw10: u32::from(LID_SANITIZE_STATUS) | ((dwords & 0xffff) << 16),
        cdw11: dwords >> 16,
        timeout_ms: 10_000,
        ..Default::default()
    }
}

/// The namespace id in a namespace's kernel name (`nvme0n1` → 1, `nvme1c2n3` → 3).
pub fn nsid_from_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("nvme")?;
    let (_, tail) = rest.rsplit_once('n')?;
    let digits: &str = tail.split('p').next()?;
    digits.parse().ok().filter(|n| *n > 0)
}

#[cfg(test)]
#[path = "nvme_tests.rs"]
mod tests;
