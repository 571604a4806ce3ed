//! Tests of [`super::open_with_sysfs`] over fixture trees and of the device on files that are not disks.

use std::fs;
use std::path::PathBuf;

use kiln_model::EraseMethod;

use super::sysfs::fixture::write;
use super::*;

fn fixture(
    name: &str,
    files: &[(&str, &str)],
    size: usize,
) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    write(&sys, name, files);
    let dev = tmp.path().join(name);
    fs::write(&dev, vec![0x5au8; size]).unwrap();
    (tmp, dev, sys)
}

#[test]
fn a_missing_path_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let Err(err) = open_with_sysfs(&tmp.path().join("nvme7n1"), tmp.path()) else {
        panic!("a missing device opened");
    };
    assert!(
        matches!(&err, DeviceError::Gone(m) if m.contains("nvme7n1") && m.contains("does not exist")),
        "{err}"
    );
}

#[test]
fn nvme_fixture_is_classified_and_its_commands_fail_cleanly_on_a_file() {
    let (_tmp, dev, sys) = fixture(
        "nvme0n1",
        &[
            ("size", "16"),
            ("queue/logical_block_size", "4096"),
            ("ro", "0"),
            ("nsid", "1"),
            ("device/model", "QEMU NVMe Ctrl"),
            ("device/serial", "deadbeef"),
        ],
        8192,
    );
    let mut d = open_with_sysfs(&dev, &sys).unwrap();
    let info = d.info().clone();
    assert_eq!(info.kind, DeviceKind::Nvme);
    assert_eq!(
        (info.model.as_str(), info.serial.as_str()),
        ("QEMU NVMe Ctrl", "deadbeef")
    );
    assert_eq!(
        (info.bytes, info.block_size, info.read_only),
        (16 * 512, 4096, false)
    );
    // A regular file takes no NVMe ioctl: the error says the device cannot do it, nothing panics.
    assert!(
        matches!(d.offered(), Err(DeviceError::Unsupported(m)) if m.contains("Identify Controller"))
    );
    let err = d.start(EraseMethod::NvmeSanitizeCrypto).unwrap_err();
    assert!(
        matches!(&err, DeviceError::Unsupported(m) if m.contains("Sanitize")),
        "{err}"
    );
    let err = d.start(EraseMethod::NvmeFormatUserData).unwrap_err();
    assert!(
        matches!(&err, DeviceError::Unsupported(m) if m.contains("Identify Namespace")),
        "{err}"
    );
    assert!(matches!(d.progress(), Err(DeviceError::Command(m)) if m.contains("before an erase")));
    // Other families' methods are refused by name.
    let err = d.start(EraseMethod::AtaSecurityErase).unwrap_err();
    assert_eq!(
        err,
        DeviceError::Unsupported("ata_security_erase on a Nvme device".into())
    );
    // Data goes through the file.
    let mut buf = vec![0u8; 4096];
    d.read_at(4096, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0x5a));
    d.write_at(0, &vec![0u8; 4096]).unwrap();
    d.flush().unwrap();
    assert!(fs::read(&dev).unwrap()[..4096].iter().all(|b| *b == 0));
}

#[test]
fn ata_and_scsi_fixtures_fail_cleanly_on_a_file() {
    let (_tmp, dev, sys) = fixture(
        "sda",
        &[
            ("size", "8"),
            ("device/vendor", "ATA"),
            ("device/model", "ST4000"),
        ],
        4096,
    );
    let mut d = open_with_sysfs(&dev, &sys).unwrap();
    assert_eq!(d.info().kind, DeviceKind::Ata);
    assert_eq!(d.info().bytes, 8 * 512);
    assert!(matches!(d.offered(), Err(DeviceError::Unsupported(m)) if m.contains("ATA IDENTIFY")));
    assert!(matches!(
        d.start(EraseMethod::AtaSecurityEraseEnhanced),
        Err(DeviceError::Unsupported(_))
    ));

    let (_tmp, dev, sys) = fixture("sdb", &[("size", "8"), ("device/vendor", "SEAGATE")], 4096);
    let mut d = open_with_sysfs(&dev, &sys).unwrap();
    assert_eq!(d.info().kind, DeviceKind::Scsi);
    assert!(
        matches!(d.offered(), Err(DeviceError::Unsupported(m)) if m.contains("REPORT SUPPORTED"))
    );
    assert!(
        matches!(d.start(EraseMethod::ScsiSanitizeOverwrite), Err(DeviceError::Unsupported(m)) if m.contains("SANITIZE"))
    );
}

#[test]
fn read_only_in_sysfs_refuses_erase_and_writes() {
    let (_tmp, dev, sys) = fixture("nvme1n1", &[("size", "8"), ("ro", "1")], 4096);
    let mut d = open_with_sysfs(&dev, &sys).unwrap();
    assert!(d.info().read_only);
    assert_eq!(
        d.start(EraseMethod::NvmeSanitizeBlock),
        Err(DeviceError::ReadOnly)
    );
    assert_eq!(d.write_at(0, &[0u8; 512]), Err(DeviceError::ReadOnly));
}

#[test]
fn a_plain_device_offers_nothing() {
    let (_tmp, dev, sys) = fixture(
        "vdb",
        &[("size", "8"), ("queue/logical_block_size", "512")],
        4096,
    );
    let mut d = open_with_sysfs(&dev, &sys).unwrap();
    assert_eq!(d.info().kind, DeviceKind::Plain);
    assert_eq!(d.offered(), Ok(vec![]));
    assert!(matches!(
        d.start(EraseMethod::NvmeSanitizeCrypto),
        Err(DeviceError::Unsupported(_))
    ));
}

#[test]
fn errnos_map_to_device_errors() {
    let e = |code| map_errno(&io::Error::from_raw_os_error(code), "NVMe Sanitize");
    assert!(
        matches!(e(libc::ENOTTY), DeviceError::Unsupported(m) if m.starts_with("NVMe Sanitize"))
    );
    assert!(matches!(e(libc::ENODEV), DeviceError::Gone(_)));
    assert!(matches!(e(libc::ENOMEDIUM), DeviceError::Gone(_)));
    assert!(matches!(e(libc::EACCES), DeviceError::Command(m) if m.contains("need root")));
    assert!(matches!(e(libc::EIO), DeviceError::Command(_)));
    assert_eq!(e(libc::EROFS), DeviceError::ReadOnly);
}

#[test]
fn sg_outcomes_map_to_device_errors() {
    let outcome = |status, host_status, sense: Vec<u8>| SgOutcome {
        status,
        host_status,
        driver_status: 0,
        sense,
        resid: 0,
    };
    assert_eq!(sg_result(&outcome(0, 0, vec![]), "x"), Ok(None));
    assert!(matches!(
        sg_result(&outcome(0, DID_NO_CONNECT, vec![]), "x"),
        Err(DeviceError::Gone(_))
    ));
    assert!(
        matches!(sg_result(&outcome(0x08, 0, vec![]), "x"), Err(DeviceError::Command(m)) if m.contains("0x08"))
    );
    let mut illegal = vec![0u8; 18];
    illegal[0] = 0x70;
    illegal[2] = scsi::KEY_ILLEGAL_REQUEST;
    illegal[12] = 0x20;
    let (sense, _) = sg_result(&outcome(2, 0, illegal), "x").unwrap().unwrap();
    assert!(
        matches!(sense_error(&sense, "SCSI SANITIZE"), DeviceError::Unsupported(m) if m.contains("ILLEGAL REQUEST"))
    );
    assert!(
        matches!(sg_result(&outcome(2, 0, vec![0x10, 0]), "x"), Err(DeviceError::Command(m)) if m.contains("response code"))
    );
}
