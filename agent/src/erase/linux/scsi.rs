//! SCSI pieces of erase: SANITIZE, REQUEST SENSE and REPORT SUPPORTED OPERATION CODES CDBs, and the sense data
//! parser (fixed and descriptor formats) shared with ATA pass-through. Pure: the SG_IO call is in `mod.rs`.
//! Layouts from SPC-5 and SBC-4.

use std::fmt;

use crate::erase::EraseProgress;

/// SANITIZE.
pub const OP_SANITIZE: u8 = 0x48;
/// Sense key NOT READY.
pub const KEY_NOT_READY: u8 = 0x02;
/// Sense key MEDIUM ERROR.
pub const KEY_MEDIUM_ERROR: u8 = 0x03;
/// Sense key ILLEGAL REQUEST.
pub const KEY_ILLEGAL_REQUEST: u8 = 0x05;
/// Sense key UNIT ATTENTION.
pub const KEY_UNIT_ATTENTION: u8 = 0x06;
/// Sense key DATA PROTECT.
pub const KEY_DATA_PROTECT: u8 = 0x07;

/// Sense data kiln cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenseParseError {
    /// Too short for its format.
    #[error("sense data is {got} bytes, its format needs {need}")]
    Short {
        /// Bytes given.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The response code is neither fixed (70h/71h) nor descriptor (72h/73h) format.
    #[error("sense data has unknown response code 0x{0:02x}")]
    ResponseCode(u8),
}

/// The two sense data formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenseFormat {
    /// Response code 70h/71h.
    Fixed,
    /// Response code 72h/73h.
    Descriptor,
}

/// Parsed sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// Which format it came in.
    pub format: SenseFormat,
    /// Sense key.
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// The progress indication of the sense-key specific field (numerator over 65536), when valid.
    pub progress: Option<u16>,
}

/// Parses fixed or descriptor format sense data.
pub fn parse_sense(raw: &[u8]) -> Result<Sense, SenseParseError> {
    let short = |need: usize| SenseParseError::Short {
        got: raw.len(),
        need,
    };
    let code = *raw.first().ok_or(short(1))? & 0x7f;
    match code {
        0x70 | 0x71 => {
            if raw.len() < 14 {
                return Err(short(14));
            }
            // Sense-key specific: bytes 15..18, SKSV bit 7 of byte 15.
            let progress = (raw.len() >= 18 && raw[15] & 0x80 != 0)
                .then(|| u16::from_be_bytes([raw[16], raw[17]]));
            Ok(Sense {
                format: SenseFormat::Fixed,
                key: raw[2] & 0x0f,
                asc: raw[12],
                ascq: raw[13],
                progress,
            })
        }
        0x72 | 0x73 => {
            if raw.len() < 8 {
                return Err(short(8));
            }
            let end = raw.len().min(8 + usize::from(raw[7]));
            let mut progress = None;
            let mut at = 8;
            while at + 2 <= end {
                let kind = raw[at];
                let len = usize::from(raw[at + 1]);
                // Sense-key specific descriptor (02h), SKSV in byte 4.
                if kind == 0x02 && len >= 6 && at + 7 <= raw.len() && raw[at + 4] & 0x80 != 0 {
                    progress = Some(u16::from_be_bytes([raw[at + 5], raw[at + 6]]));
                }
                at += 2 + len;
            }
            Ok(Sense {
                format: SenseFormat::Descriptor,
                key: raw[1] & 0x0f,
                asc: raw[2],
                ascq: raw[3],
                progress,
            })
        }
        other => Err(SenseParseError::ResponseCode(other)),
    }
}

impl Sense {
    /// The name of the sense key.
    pub fn key_name(&self) -> &'static str {
        match self.key {
            0x0 => "NO SENSE",
            0x1 => "RECOVERED ERROR",
            0x2 => "NOT READY",
            0x3 => "MEDIUM ERROR",
            0x4 => "HARDWARE ERROR",
            0x5 => "ILLEGAL REQUEST",
            0x6 => "UNIT ATTENTION",
            0x7 => "DATA PROTECT",
            0xb => "ABORTED COMMAND",
            _ => "other sense key",
        }
    }

    /// A sanitize is running (NOT READY, 04h/1Bh).
    pub fn sanitize_in_progress(&self) -> bool {
        self.key == KEY_NOT_READY && self.asc == 0x04 && self.ascq == 0x1b
    }

    /// The last sanitize failed (MEDIUM ERROR, 31h/03h).
    pub fn sanitize_failed(&self) -> bool {
        self.asc == 0x31 && self.ascq == 0x03
    }

    /// What REQUEST SENSE's answer says about a sanitize kiln started.
    pub fn sanitize_progress(&self) -> EraseProgress {
        if self.sanitize_in_progress() {
            EraseProgress::Running(self.progress.map(|p| f64::from(p) / 65536.0))
        } else if self.sanitize_failed() {
            EraseProgress::Failed(format!("the drive reports the sanitize failed ({self})"))
        } else if self.key == KEY_NOT_READY || self.key == KEY_MEDIUM_ERROR || self.key == 0x4 {
            EraseProgress::Failed(format!("the drive is not ready after sanitize ({self})"))
        } else {
            EraseProgress::Done
        }
    }
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sense key 0x{:x} {} asc/ascq 0x{:02x}/0x{:02x}",
            self.key,
            self.key_name(),
            self.asc,
            self.ascq
        )
    }
}

/// A SANITIZE service action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeAction {
    /// 01h: overwrite (needs a parameter list, [`overwrite_parameters`]).
    Overwrite,
    /// 02h: block erase.
    BlockErase,
    /// 03h: cryptographic erase.
    CryptoErase,
    /// 1Fh: exit failure mode.
    ExitFailureMode,
}

impl SanitizeAction {
    /// The service action code.
    pub fn code(self) -> u8 {
        match self {
            SanitizeAction::Overwrite => 0x01,
            SanitizeAction::BlockErase => 0x02,
            SanitizeAction::CryptoErase => 0x03,
            SanitizeAction::ExitFailureMode => 0x1f,
        }
    }
}

/// SANITIZE(10) with IMMED (the command returns at once; progress through REQUEST SENSE) and
/// `parameter_len` bytes of parameter list.
pub fn sanitize_cdb(action: SanitizeAction, parameter_len: u16) -> [u8; 10] {
    let [hi, lo] = parameter_len.to_be_bytes();
    [OP_SANITIZE, 0x80 | action.code(), 0, 0, 0, 0, 0, hi, lo, 0]
}

/// The SANITIZE overwrite parameter list: one pass (OWCOUNT 1), not inverted, of a 4-byte zero pattern.
pub fn overwrite_parameters() -> [u8; 8] {
    [0x01, 0, 0, 4, 0, 0, 0, 0]
}

/// REQUEST SENSE asking for fixed-format sense of `len` bytes.
pub fn request_sense_cdb(len: u8) -> [u8; 6] {
    [0x03, 0, 0, 0, len, 0]
}

/// REPORT SUPPORTED OPERATION CODES (MAINTENANCE IN 0xA3/0x0C), reporting option 2: one command by opcode
/// and service action.
pub fn report_supported_cdb(opcode: u8, service_action: u16, len: u32) -> [u8; 12] {
    let [sa_hi, sa_lo] = service_action.to_be_bytes();
    let [l0, l1, l2, l3] = len.to_be_bytes();
    [0xa3, 0x0c, 0x02, opcode, sa_hi, sa_lo, l0, l1, l2, l3, 0, 0]
}

/// Whether REPORT SUPPORTED OPERATION CODES says the command is supported (SUPPORT field 011b: per the
/// standard, or 101b: vendor specific).
pub fn parse_report_supported(buf: &[u8]) -> Result<bool, SenseParseError> {
    let support = buf.get(1).ok_or(SenseParseError::Short {
        got: buf.len(),
        need: 2,
    })? & 0b111;
    Ok(matches!(support, 0b011 | 0b101))
}

/// VPD page 80h (Unit Serial Number), as sysfs exposes it in `vpd_pg80`.
pub fn parse_vpd_serial(buf: &[u8]) -> Option<String> {
    if buf.len() < 4 || buf[1] != 0x80 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let body = buf.get(4..4 + len).unwrap_or(&buf[4..]);
    let serial = String::from_utf8_lossy(body)
        .trim_matches(|c: char| c == ' ' || c == '\0')
        .to_string();
    (!serial.is_empty()).then_some(serial)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fixed(key: u8, asc: u8, ascq: u8, progress: Option<u16>) -> Vec<u8> {
        let mut raw = vec![0u8; 18];
        raw[0] = 0x70;
        raw[2] = key;
        raw[7] = 10;
        raw[12] = asc;
        raw[13] = ascq;
        if let Some(p) = progress {
            raw[15] = 0x80;
            raw[16..18].copy_from_slice(&p.to_be_bytes());
        }
        raw
    }

    #[test]
    fn fixed_sense_with_sanitize_progress() {
        let s = parse_sense(&fixed(KEY_NOT_READY, 0x04, 0x1b, Some(16384))).unwrap();
        assert_eq!(s.format, SenseFormat::Fixed);
        assert!(s.sanitize_in_progress());
        assert_eq!(s.sanitize_progress(), EraseProgress::Running(Some(0.25)));
        let s = parse_sense(&fixed(KEY_NOT_READY, 0x04, 0x1b, None)).unwrap();
        assert_eq!(s.sanitize_progress(), EraseProgress::Running(None));
        let s = parse_sense(&fixed(0, 0, 0, None)).unwrap();
        assert_eq!(s.sanitize_progress(), EraseProgress::Done);
        let s = parse_sense(&fixed(KEY_MEDIUM_ERROR, 0x31, 0x03, None)).unwrap();
        assert!(
            matches!(s.sanitize_progress(), EraseProgress::Failed(r) if r.contains("sanitize failed"))
        );
        assert_eq!(
            s.to_string(),
            "sense key 0x3 MEDIUM ERROR asc/ascq 0x31/0x03"
        );
    }

    #[test]
    fn descriptor_sense_with_sense_key_specific_progress() {
        let raw = [
            0x72, 0x02, 0x04, 0x1b, 0, 0, 0, 8, 0x02, 0x06, 0, 0, 0x80, 0x80, 0x00, 0,
        ];
        let s = parse_sense(&raw).unwrap();
        assert_eq!(
            (s.format, s.key, s.asc, s.ascq),
            (SenseFormat::Descriptor, 2, 4, 0x1b)
        );
        assert_eq!(s.progress, Some(0x8000));
        assert_eq!(s.sanitize_progress(), EraseProgress::Running(Some(0.5)));
    }

    #[test]
    fn bad_sense_is_an_error() {
        assert_eq!(
            parse_sense(&[]),
            Err(SenseParseError::Short { got: 0, need: 1 })
        );
        assert_eq!(
            parse_sense(&[0x70, 0, 5]),
            Err(SenseParseError::Short { got: 3, need: 14 })
        );
        assert_eq!(
            parse_sense(&[0x72, 0, 5]),
            Err(SenseParseError::Short { got: 3, need: 8 })
        );
        assert_eq!(
            parse_sense(&[0x10; 20]),
            Err(SenseParseError::ResponseCode(0x10))
        );
    }

    #[test]
    fn cdbs_byte_for_byte() {
        assert_eq!(
            sanitize_cdb(SanitizeAction::CryptoErase, 0),
            [0x48, 0x83, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            sanitize_cdb(SanitizeAction::BlockErase, 0),
            [0x48, 0x82, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            sanitize_cdb(SanitizeAction::Overwrite, 8),
            [0x48, 0x81, 0, 0, 0, 0, 0, 0, 8, 0]
        );
        assert_eq!(sanitize_cdb(SanitizeAction::ExitFailureMode, 0)[1], 0x9f);
        assert_eq!(overwrite_parameters(), [1, 0, 0, 4, 0, 0, 0, 0]);
        assert_eq!(request_sense_cdb(252), [0x03, 0, 0, 0, 252, 0]);
        assert_eq!(
            report_supported_cdb(0x48, 3, 512),
            [0xa3, 0x0c, 0x02, 0x48, 0, 3, 0, 0, 2, 0, 0, 0]
        );
    }

    #[test]
    fn report_supported_support_field() {
        assert_eq!(parse_report_supported(&[0, 0b011, 0, 10]), Ok(true));
        assert_eq!(parse_report_supported(&[0, 0b101]), Ok(true));
        assert_eq!(parse_report_supported(&[0, 0b001]), Ok(false));
        assert_eq!(parse_report_supported(&[0, 0]), Ok(false));
        assert!(parse_report_supported(&[0]).is_err());
    }

    #[test]
    fn vpd_serial() {
        assert_eq!(
            parse_vpd_serial(b"\x00\x80\x00\x0a  ZA1B2C3D").as_deref(),
            Some("ZA1B2C3D")
        );
        assert_eq!(
            parse_vpd_serial(b"\x00\x80\x00\x40ZA1").as_deref(),
            Some("ZA1")
        );
        assert_eq!(parse_vpd_serial(b"\x00\x83\x00\x02ab"), None);
        assert_eq!(parse_vpd_serial(b"\x00\x80"), None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(s) = parse_sense(&bytes) {
                let _ = s.sanitize_progress();
                let _ = s.to_string();
            }
            let _ = parse_report_supported(&bytes);
            let _ = parse_vpd_serial(&bytes);
        }

        #[test]
        fn progress_is_a_fraction(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(s) = parse_sense(&bytes)
                && let EraseProgress::Running(Some(p)) = s.sanitize_progress()
            {
                prop_assert!((0.0..1.0).contains(&p));
            }
        }
    }
}
