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
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn controller(sanicap: u32, fna: u8, oacs: u16) -> Vec<u8> {
        let mut buf = vec![0u8; IDENTIFY_LEN];
        buf[4..24].copy_from_slice(b"SN123               ");
        buf[24..64].copy_from_slice(b"QEMU NVMe Ctrl                          ");
        buf[256..258].copy_from_slice(&oacs.to_le_bytes());
        buf[328..332].copy_from_slice(&sanicap.to_le_bytes());
        buf[524] = fna;
        buf
    }

    #[test]
    fn identify_controller_reads_sanicap_fna_oacs_and_strings() {
        let id = parse_identify_controller(&controller(0b011, 0b100, 0b10)).unwrap();
        assert_eq!(id.serial, "SN123");
        assert_eq!(id.model, "QEMU NVMe Ctrl");
        assert!(id.sanitize_crypto && id.sanitize_block && !id.sanitize_overwrite);
        assert!(id.format_crypto && id.format_supported && !id.format_all_namespaces);
        let none = parse_identify_controller(&controller(0, 0, 0)).unwrap();
        assert!(
            !none.sanitize_crypto
                && !none.sanitize_block
                && !none.format_crypto
                && !none.format_supported
        );
        assert_eq!(
            parse_identify_controller(&[0u8; 100]),
            Err(NvmeParseError::Short {
                what: "Identify Controller data",
                got: 100,
                need: 525
            })
        );
    }

    fn namespace(nlbaf: u8, flbas: u8, dps: u8) -> Vec<u8> {
        let mut buf = vec![0u8; IDENTIFY_LEN];
        buf[0..8].copy_from_slice(&2048u64.to_le_bytes());
        buf[25] = nlbaf;
        buf[26] = flbas;
        buf[29] = dps;
        buf[128 + 2] = 9; // format 0: 512 B
        buf[132] = 8; // format 1: 8 bytes metadata, 4 KiB
        buf[132 + 2] = 12;
        buf
    }

    #[test]
    fn identify_namespace_reads_the_current_format() {
        let ns = parse_identify_namespace(&namespace(1, 0x11, 0b1001)).unwrap();
        assert_eq!(ns.blocks, 2048);
        assert_eq!(ns.lba_format, 1);
        assert!(ns.metadata_extended);
        assert_eq!((ns.protection_type, ns.protection_first), (1, true));
        assert_eq!(
            ns.formats[1],
            LbaFormat {
                metadata_bytes: 8,
                lba_shift: 12
            }
        );
        assert_eq!(ns.block_size(), Some(4096));
        // More than 16 formats: FLBAS bits 6:5 are the upper bits of the index.
        let ns = parse_identify_namespace(&namespace(33, 0x21, 0)).unwrap();
        assert_eq!(ns.lba_format, 17);
        let err = parse_identify_namespace(&namespace(1, 0x05, 0)).unwrap_err();
        assert!(
            err.to_string()
                .contains("current LBA format 5 but only 2 formats"),
            "{err}"
        );
        let err = parse_identify_namespace(&namespace(200, 0, 0)).unwrap_err();
        assert!(err.to_string().contains("at most 64"), "{err}");
    }

    #[test]
    fn sanitize_log_maps_states_to_progress() {
        let log = |sprog: u16, sstat: u16| {
            let mut b = vec![0u8; SANITIZE_LOG_LEN];
            b[0..2].copy_from_slice(&sprog.to_le_bytes());
            b[2..4].copy_from_slice(&sstat.to_le_bytes());
            parse_sanitize_status(&b).unwrap().progress()
        };
        assert_eq!(log(32768, 2), EraseProgress::Running(Some(0.5)));
        // Bits above 2:0 (overwrite passes, global data erased) do not change the state.
        assert_eq!(log(0, 0x0101), EraseProgress::Done);
        assert_eq!(log(0, 4), EraseProgress::Done);
        assert!(matches!(log(0, 3), EraseProgress::Failed(r) if r.contains("failed")));
        assert!(
            matches!(log(0, 0), EraseProgress::Failed(r) if r.contains("no sanitize ever ran"))
        );
        assert!(matches!(log(0, 6), EraseProgress::Failed(r) if r.contains("unknown state 6")));
        assert!(parse_sanitize_status(&[1, 2, 3]).is_err());
    }

    #[test]
    fn completion_status_maps_to_device_errors() {
        // Invalid Field, DNR set: what a controller without sanitize answers.
        let s = NvmeStatus::parse(0x4002);
        assert_eq!(
            s,
            NvmeStatus {
                sct: 0,
                sc: 2,
                dnr: true
            }
        );
        assert_eq!(
            s.to_error("Sanitize crypto erase"),
            DeviceError::Unsupported(
                "Sanitize crypto erase: NVMe status type 0x0 code 0x02 (Invalid Field in Command)"
                    .into()
            )
        );
        assert!(matches!(
            NvmeStatus::parse(0x0001).to_error("x"),
            DeviceError::Unsupported(_)
        ));
        assert_eq!(
            NvmeStatus::parse(0x010a).to_error("Format NVM"),
            DeviceError::Command(
                "Format NVM: NVMe status type 0x1 code 0x0a (Invalid Format)".into()
            )
        );
        assert_eq!(
            NvmeStatus::parse(0x0020).to_error("w"),
            DeviceError::ReadOnly
        );
        assert_eq!(
            NvmeStatus::parse(0x02c1).to_string(),
            "NVMe status type 0x2 code 0xc1"
        );
    }

    #[test]
    fn command_builders_set_the_documented_dwords() {
        let c = identify_controller_cmd();
        assert_eq!((c.opcode, c.nsid, c.cdw10), (0x06, 0, 1));
        let c = identify_namespace_cmd(3);
        assert_eq!((c.opcode, c.nsid, c.cdw10), (0x06, 3, 0));
        let c = sanitize_cmd(SanitizeAction::CryptoErase);
        assert_eq!(
            (c.opcode, c.nsid, c.cdw10, c.cdw11),
            (0x84, 0xffff_ffff, 4, 0)
        );
        assert_eq!(sanitize_cmd(SanitizeAction::BlockErase).cdw10, 2);
        assert_eq!(sanitize_cmd(SanitizeAction::ExitFailureMode).cdw10, 1);
        let c = sanitize_log_cmd();
        // LID 0x81, NUMDL = 127 dwords - 1 (512 bytes).
        assert_eq!((c.opcode, c.cdw10, c.cdw11), (0x02, 0x007f_0081, 0));
        let ns = parse_identify_namespace(&namespace(1, 0x11, 0b1001)).unwrap();
        let c = format_cmd(1, &ns, SecureErase::Crypto);
        // LBAF 1, MSET 1 (bit 4), PI 1 (bits 7:5), PIL 1 (bit 8), SES 2 (bits 11:9).
        assert_eq!((c.opcode, c.nsid, c.cdw10), (0x80, 1, 0b0101_0011_0001));
        assert_eq!(c.timeout_ms, FORMAT_TIMEOUT_MS);
        let plain = parse_identify_namespace(&namespace(1, 0, 0)).unwrap();
        assert_eq!(format_cmd(1, &plain, SecureErase::UserData).cdw10, 1 << 9);
        let wide = parse_identify_namespace(&namespace(33, 0x21, 0)).unwrap();
        assert_eq!(
            format_cmd(2, &wide, SecureErase::UserData).cdw10,
            1 | (1 << 9) | (1 << 12)
        );
        for c in [
            identify_controller_cmd(),
            sanitize_log_cmd(),
            format_cmd(1, &plain, SecureErase::Crypto),
        ] {
            assert_eq!(
                (c.addr, c.data_len),
                (0, 0),
                "the ioctl wrapper fills the buffer fields"
            );
        }
    }

    #[test]
    fn namespace_ids_from_kernel_names() {
        assert_eq!(nsid_from_name("nvme0n1"), Some(1));
        assert_eq!(nsid_from_name("nvme12n34"), Some(34));
        assert_eq!(nsid_from_name("nvme1c2n3"), Some(3));
        assert_eq!(nsid_from_name("nvme0n1p2"), Some(1));
        assert_eq!(nsid_from_name("nvme0"), None);
        assert_eq!(nsid_from_name("nvme0n0"), None);
        assert_eq!(nsid_from_name("sda"), None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = parse_identify_controller(&bytes);
            let _ = parse_sanitize_status(&bytes).map(|s| s.progress());
            if let Ok(ns) = parse_identify_namespace(&bytes) {
                let _ = ns.block_size();
                let _ = format_cmd(1, &ns, SecureErase::Crypto);
            }
        }

        #[test]
        fn status_words_never_panic(raw in any::<u16>()) {
            let s = NvmeStatus::parse(raw);
            let _ = s.to_error("cmd").to_string();
        }

        #[test]
        fn names_never_panic(name in "\\PC{0,16}") {
            let _ = nsid_from_name(&name);
        }

        #[test]
        fn identify_namespace_with_garbled_counts(nlbaf in any::<u8>(), flbas in any::<u8>(), len in 0usize..400) {
            let mut buf = vec![0u8; len];
            if len > 26 { buf[25] = nlbaf; buf[26] = flbas; }
            if let Ok(ns) = parse_identify_namespace(&buf) {
                prop_assert!(usize::from(ns.lba_format) < ns.formats.len());
            }
        }
    }
}
