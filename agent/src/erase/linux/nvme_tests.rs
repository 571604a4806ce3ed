//! Tests of the NVMe builders and parsers over crafted buffers, and property tests that no input panics.

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
    assert!(matches!(log(0, 0), EraseProgress::Failed(r) if r.contains("no sanitize ever ran")));
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
        DeviceError::Command("Format NVM: NVMe status type 0x1 code 0x0a (Invalid Format)".into())
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
