//! ATA security erase over SCSI/ATA Translation: ATA PASS-THROUGH(16) CDBs, the IDENTIFY DEVICE words kiln
//! reads, the security command payloads, and the ATA status libata returns in sense data. Pure: the SG_IO call
//! is in `mod.rs`. Word numbers are from ACS-3; CDB layout from SAT-4.

use std::time::Duration;

use super::scsi::{Sense, SenseFormat};

/// IDENTIFY DEVICE.
pub const CMD_IDENTIFY: u8 = 0xec;
/// SECURITY SET PASSWORD.
pub const CMD_SECURITY_SET_PASSWORD: u8 = 0xf1;
/// SECURITY ERASE PREPARE.
pub const CMD_SECURITY_ERASE_PREPARE: u8 = 0xf3;
/// SECURITY ERASE UNIT.
pub const CMD_SECURITY_ERASE_UNIT: u8 = 0xf4;
/// SECURITY DISABLE PASSWORD.
pub const CMD_SECURITY_DISABLE_PASSWORD: u8 = 0xf6;
/// The user password kiln sets for the erase (the erase clears it again).
pub const ERASE_PASSWORD: &[u8] = b"kiln-erase";

/// An ATA structure kiln cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtaParseError {
    /// IDENTIFY data shorter than 512 bytes.
    #[error("ATA IDENTIFY data is {0} bytes, need 512")]
    ShortIdentify(usize),
    /// The sense data carries no ATA status (neither a status return descriptor nor fixed-format ATA
    /// information).
    #[error("sense data carries no ATA status return: {0}")]
    NoAtaStatus(String),
}

/// The ATA security state (IDENTIFY word 128, with word 82 bit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityState {
    /// The security feature set is supported (word 82 bit 1 and word 128 bit 0).
    pub supported: bool,
    /// A user password is set (bit 1).
    pub enabled: bool,
    /// The drive is locked (bit 2).
    pub locked: bool,
    /// Security commands are frozen until the next power cycle (bit 3).
    pub frozen: bool,
    /// Password attempts are exhausted (bit 4).
    pub count_expired: bool,
    /// Enhanced security erase is supported (bit 5).
    pub enhanced_supported: bool,
}

/// What kiln reads from IDENTIFY DEVICE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtaIdentify {
    /// Serial number (words 10-19).
    pub serial: String,
    /// Model number (words 27-46).
    pub model: String,
    /// Security state.
    pub security: SecurityState,
    /// Time a normal erase takes (word 89), when the drive says.
    pub erase_time: Option<Duration>,
    /// Time an enhanced erase takes (word 90), when the drive says.
    pub enhanced_erase_time: Option<Duration>,
}

/// An ATA string: each 16-bit word holds two characters, the first in the high byte.
fn ata_string(words: &[u16]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    String::from_utf8_lossy(&bytes)
        .trim_matches(|c: char| c == ' ' || c == '\0')
        .to_string()
}

/// An erase time word (89 or 90): bit 15 set means the extended format (bits 14:0), otherwise bits 7:0; the
/// value counts 2-minute units; 0 means not reported; the maximum means "longer than it can say".
fn erase_time(word: u16) -> Option<Duration> {
    let (units, max) = if word & 0x8000 != 0 {
        (word & 0x7fff, 0x7fff)
    } else {
        (word & 0xff, 0xff)
    };
    if units == 0 || units == max {
        return None;
    }
    Some(Duration::from_secs(u64::from(units) * 120))
}

/// Parses the 512-byte IDENTIFY DEVICE data (little-endian words as the kernel hands them over).
pub fn parse_identify(buf: &[u8]) -> Result<AtaIdentify, AtaParseError> {
    if buf.len() < 512 {
        return Err(AtaParseError::ShortIdentify(buf.len()));
    }
    let words: Vec<u16> = buf[..512]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let w82 = words[82];
    let w128 = words[128];
    // Words 82 and 128 are valid only when not 0x0000 or 0xffff.
    let valid = |w: u16| w != 0 && w != 0xffff;
    let feature = valid(w82) && w82 & 0b10 != 0;
    let bits = if valid(w128) { w128 } else { 0 };
    Ok(AtaIdentify {
        serial: ata_string(&words[10..20]),
        model: ata_string(&words[27..47]),
        security: SecurityState {
            supported: feature && bits & 0b1 != 0,
            enabled: bits & 0b10 != 0,
            locked: bits & 0b100 != 0,
            frozen: bits & 0b1000 != 0,
            count_expired: bits & 0b1_0000 != 0,
            enhanced_supported: bits & 0b10_0000 != 0,
        },
        erase_time: erase_time(words[89]),
        enhanced_erase_time: erase_time(words[90]),
    })
}

/// How long the SG_IO of SECURITY ERASE UNIT may take: the drive's estimate plus half again and ten minutes,
/// or a day when it gives none (a large HDD overwrites at ~200 MB/s: 20 TB in ~28 h is the worst case seen;
/// the drive does not report its own estimate past 508 minutes in the short format).
pub fn erase_timeout(estimate: Option<Duration>) -> Duration {
    match estimate {
        Some(t) => t + t / 2 + Duration::from_secs(600),
        None => Duration::from_secs(36 * 3600),
    }
}

/// The ATA PASS-THROUGH protocol of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// No data (3).
    NonData,
    /// PIO data from the device (4).
    PioIn,
    /// PIO data to the device (5).
    PioOut,
}

/// ATA PASS-THROUGH(16) for a 28-bit command with `sectors` 512-byte blocks of data; CK_COND is set so the
/// device's status comes back in the sense data even on success.
pub fn pass_through_16(command: u8, protocol: Protocol, sectors: u8) -> [u8; 16] {
    let (proto, flags) = match protocol {
        // T_LENGTH 0: no data.
        Protocol::NonData => (3u8, 0x20u8),
        // CK_COND, T_DIR from device, BYT_BLK blocks, T_LENGTH in the count field.
        Protocol::PioIn => (4, 0x20 | 0x08 | 0x04 | 0x02),
        Protocol::PioOut => (5, 0x20 | 0x04 | 0x02),
    };
    let mut cdb = [0u8; 16];
    cdb[0] = 0x85;
    cdb[1] = proto << 1;
    cdb[2] = flags;
    cdb[6] = sectors;
    cdb[13] = 0x40; // device: LBA mode
    cdb[14] = command;
    cdb
}

/// The 512-byte payload of SECURITY SET PASSWORD (user password, high security) and of SECURITY ERASE UNIT /
/// SECURITY DISABLE PASSWORD (word 0 bit 1: enhanced erase).
pub fn password_payload(password: &[u8], enhanced: bool) -> [u8; 512] {
    let mut buf = [0u8; 512];
    // Word 0: bit 0 = 0 compare the user password; bit 1 = enhanced erase (ERASE UNIT only); bit 8 = 0 high.
    buf[0] = if enhanced { 0b10 } else { 0 };
    let len = password.len().min(32);
    buf[2..2 + len].copy_from_slice(&password[..len]);
    buf
}

/// The ATA registers a device returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtaStatusReturn {
    /// The error register.
    pub error: u8,
    /// The status register (bit 0 ERR, bit 3 DRQ, bit 5 DF, bit 6 DRDY, bit 7 BSY).
    pub status: u8,
}

impl AtaStatusReturn {
    /// The command failed (ERR or device fault).
    pub fn failed(&self) -> bool {
        self.status & 0x21 != 0
    }

    /// Words for a failure: the registers and, for the usual case, what they mean.
    pub fn describe(&self) -> String {
        let meaning = if self.error & 0x04 != 0 {
            " (command aborted by the drive)"
        } else {
            ""
        };
        format!(
            "ATA status 0x{:02x} error 0x{:02x}{meaning}",
            self.status, self.error
        )
    }
}

/// Finds the ATA status in sense data: the ATA Status Return descriptor (type 09h) of descriptor-format sense,
/// or the ATA information of fixed-format sense (ASC/ASCQ 00h/1Dh, SAT-4 12.2.2.6).
pub fn parse_ata_status(sense: &Sense, raw: &[u8]) -> Result<AtaStatusReturn, AtaParseError> {
    match sense.format {
        SenseFormat::Descriptor => {
            let mut at = 8;
            let end = raw.len().min(8 + usize::from(*raw.get(7).unwrap_or(&0)));
            while at + 2 <= end {
                let kind = raw[at];
                let len = usize::from(raw[at + 1]);
                if kind == 0x09 && len >= 12 && at + 14 <= raw.len() {
                    return Ok(AtaStatusReturn {
                        error: raw[at + 3],
                        status: raw[at + 13],
                    });
                }
                at += 2 + len;
            }
            Err(AtaParseError::NoAtaStatus(format!(
                "no ATA status return descriptor in {sense}"
            )))
        }
        SenseFormat::Fixed if sense.asc == 0x00 && sense.ascq == 0x1d && raw.len() >= 7 => {
            // Information field: byte 3 error, byte 4 status.
            Ok(AtaStatusReturn {
                error: raw[3],
                status: raw[4],
            })
        }
        SenseFormat::Fixed => Err(AtaParseError::NoAtaStatus(sense.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::erase::linux::scsi::parse_sense;

    fn put_string(buf: &mut [u8], word: usize, text: &str, words: usize) {
        let mut bytes = text.as_bytes().to_vec();
        bytes.resize(words * 2, b' ');
        for (i, pair) in bytes.chunks(2).enumerate() {
            // ATA strings: first character in the high byte of a little-endian word.
            buf[(word + i) * 2] = pair[1];
            buf[(word + i) * 2 + 1] = pair[0];
        }
    }

    fn identify(w82: u16, w128: u16, w89: u16, w90: u16) -> Vec<u8> {
        let mut buf = vec![0u8; 512];
        put_string(&mut buf, 10, "WD-1234", 10);
        put_string(&mut buf, 27, "WDC WD40EFRX", 20);
        for (word, value) in [(82, w82), (128, w128), (89, w89), (90, w90)] {
            buf[word * 2..word * 2 + 2].copy_from_slice(&value.to_le_bytes());
        }
        buf
    }

    #[test]
    fn identify_reads_strings_security_and_erase_times() {
        let id = parse_identify(&identify(0x746b, 0b10_0001, 30, 0x8000 | 400)).unwrap();
        assert_eq!(id.serial, "WD-1234");
        assert_eq!(id.model, "WDC WD40EFRX");
        let s = id.security;
        assert!(s.supported && s.enhanced_supported && !s.enabled && !s.locked && !s.frozen);
        assert_eq!(id.erase_time, Some(Duration::from_secs(60 * 60)));
        assert_eq!(id.enhanced_erase_time, Some(Duration::from_secs(400 * 120)));
        let frozen = parse_identify(&identify(0x0002, 0b1001, 0, 0xff)).unwrap();
        assert!(frozen.security.frozen && frozen.security.supported);
        assert_eq!(
            (frozen.erase_time, frozen.enhanced_erase_time),
            (None, None)
        );
        let locked = parse_identify(&identify(0x0002, 0b0111, 0, 0))
            .unwrap()
            .security;
        assert!(locked.locked && locked.enabled);
        // Word 82 without bit 1, or an invalid word 128: no security feature set.
        assert!(
            !parse_identify(&identify(0x0001, 0b1, 0, 0))
                .unwrap()
                .security
                .supported
        );
        assert!(
            !parse_identify(&identify(0x0002, 0xffff, 0, 0))
                .unwrap()
                .security
                .supported
        );
        assert_eq!(
            parse_identify(&[0; 100]),
            Err(AtaParseError::ShortIdentify(100))
        );
    }

    #[test]
    fn erase_timeouts_add_margin() {
        assert_eq!(
            erase_timeout(Some(Duration::from_secs(3600))),
            Duration::from_secs(3600 + 1800 + 600)
        );
        assert_eq!(erase_timeout(None), Duration::from_secs(36 * 3600));
    }

    #[test]
    fn pass_through_cdbs_byte_for_byte() {
        assert_eq!(
            pass_through_16(CMD_IDENTIFY, Protocol::PioIn, 1),
            [
                0x85, 0x08, 0x2e, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 0xec, 0
            ]
        );
        assert_eq!(
            pass_through_16(CMD_SECURITY_ERASE_UNIT, Protocol::PioOut, 1),
            [
                0x85, 0x0a, 0x26, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 0xf4, 0
            ]
        );
        assert_eq!(
            pass_through_16(CMD_SECURITY_ERASE_PREPARE, Protocol::NonData, 0),
            [
                0x85, 0x06, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0xf3, 0
            ]
        );
    }

    #[test]
    fn password_payloads() {
        let p = password_payload(ERASE_PASSWORD, true);
        assert_eq!(&p[..2], &[0b10, 0]);
        assert_eq!(&p[2..12], b"kiln-erase");
        assert!(p[12..].iter().all(|b| *b == 0));
        assert_eq!(password_payload(ERASE_PASSWORD, false)[0], 0);
        let long = password_payload(&[b'x'; 40], false);
        assert_eq!(&long[2..34], &[b'x'; 32]);
        assert_eq!(long[34], 0);
    }

    #[test]
    fn ata_status_from_descriptor_and_fixed_sense() {
        // Descriptor sense: RECOVERED ERROR 00/1D with an ATA status return descriptor, status 0x51 error 0x04.
        let mut raw = vec![0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 14];
        raw.extend_from_slice(&[0x09, 0x0c, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x51]);
        let sense = parse_sense(&raw).unwrap();
        let st = parse_ata_status(&sense, &raw).unwrap();
        assert_eq!(
            st,
            AtaStatusReturn {
                error: 0x04,
                status: 0x51
            }
        );
        assert!(st.failed());
        assert_eq!(
            st.describe(),
            "ATA status 0x51 error 0x04 (command aborted by the drive)"
        );
        // Fixed sense with ATA information: error byte 3, status byte 4.
        let mut fixed = vec![0u8; 18];
        fixed[0] = 0x70;
        fixed[2] = 0x01;
        fixed[3] = 0x00;
        fixed[4] = 0x50;
        fixed[7] = 10;
        fixed[13] = 0x1d;
        let sense = parse_sense(&fixed).unwrap();
        let st = parse_ata_status(&sense, &fixed).unwrap();
        assert_eq!(
            st,
            AtaStatusReturn {
                error: 0,
                status: 0x50
            }
        );
        assert!(!st.failed());
        // Sense without ATA status.
        let mut other = vec![0u8; 18];
        other[0] = 0x70;
        other[2] = 0x05;
        other[7] = 10;
        other[12] = 0x20;
        let sense = parse_sense(&other).unwrap();
        assert!(matches!(
            parse_ata_status(&sense, &other),
            Err(AtaParseError::NoAtaStatus(_))
        ));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            if let Ok(id) = parse_identify(&bytes) {
                let _ = erase_timeout(id.erase_time);
                let _ = erase_timeout(id.enhanced_erase_time);
            }
            if let Ok(sense) = parse_sense(&bytes) {
                let _ = parse_ata_status(&sense, &bytes).map(|s| s.describe());
            }
        }

        #[test]
        fn descriptor_walk_never_panics(len7 in any::<u8>(), descs in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut raw = vec![0x72, 0x01, 0x00, 0x1d, 0, 0, 0, len7];
            raw.extend_from_slice(&descs);
            if let Ok(sense) = parse_sense(&raw) {
                let _ = parse_ata_status(&sense, &raw);
            }
        }

        #[test]
        fn payloads_never_panic(password in proptest::collection::vec(any::<u8>(), 0..100), enhanced: bool) {
            let p = password_payload(&password, enhanced);
            prop_assert_eq!(p.len(), 512);
        }
    }
}
