//! The chain over [`FakeDevice`]: every fallback and every failure.

use std::time::Duration;

use kiln_model::{EraseMethod::*, EraseResult, NistClass};

use super::*;
use crate::erase::device::DeviceKind;
use crate::erase::fake::FakeDevice;

const MIB: usize = 1 << 20;

fn opts() -> EraseOptions {
    EraseOptions {
        samples: 4,
        poll_interval: Duration::from_millis(1),
        seed: Some(15),
        ..EraseOptions::default()
    }
}

fn nvme() -> FakeDevice {
    FakeDevice::new(DeviceKind::Nvme, 6 * MIB)
}

/// `(method, error)` of each tried entry.
fn tried_of(record: &EraseRecord) -> Vec<(EraseMethod, String)> {
    record
        .tried
        .iter()
        .map(|t| (t.method, t.error.clone()))
        .collect()
}

fn assert_ok(record: &EraseRecord, method: EraseMethod) {
    assert_eq!(record.result, EraseResult::Ok, "{record:?}");
    assert!(record.verified && record.is_ok());
    assert_eq!(record.method, Some(method));
    assert_eq!(record.nist, Some(method.nist()));
    assert_eq!(record.error, None);
    assert!(record.finished_at >= record.started_at);
}

fn assert_failed(record: &EraseRecord, needle: &str) {
    assert_eq!(record.result, EraseResult::Failed, "{record:?}");
    assert!(!record.verified && !record.is_ok());
    assert_eq!(record.nist, None);
    assert_eq!(record.verification, None);
    let error = record.error.as_deref().unwrap_or("");
    assert!(error.contains(needle), "{error:?} lacks {needle:?}");
}

#[test]
fn nvme_sanitize_crypto_comes_first_and_is_verified_by_digests() {
    let mut dev = nvme().with_progress_steps(3);
    let mut steps = Vec::new();
    let record = erase_device_reporting(&mut dev, &opts(), &mut |s| steps.push(s.clone()));
    assert_ok(&record, NvmeSanitizeCrypto);
    assert_eq!(record.nist, Some(NistClass::Purge));
    assert!(record.tried.is_empty());
    let verification = record.verification.as_ref().expect("verification");
    assert_eq!(verification.check, "changed");
    assert_eq!(verification.ranges, 6);
    assert_eq!(verification.bytes_read, 6 * MIB as u64);
    assert_eq!(dev.started, [NvmeSanitizeCrypto]);
    assert_eq!(
        steps
            .iter()
            .filter(|s| matches!(s, EraseStep::Running(_)))
            .count(),
        3,
        "{steps:?}"
    );
    assert_eq!(record.device, "/dev/nvme0n1");
    assert_eq!(record.serial, "FAKE-nvme0n1");
    assert_eq!(record.bytes, 6 * MIB as u64);
}

#[test]
fn sanitize_crypto_not_offered_falls_to_block_erase() {
    let mut dev = nvme().with_offered(&[NvmeSanitizeBlock, NvmeFormatCrypto, NvmeFormatUserData]);
    let record = erase_device(&mut dev, &opts());
    assert_ok(&record, NvmeSanitizeBlock);
    assert_eq!(
        tried_of(&record),
        [(NvmeSanitizeCrypto, "not supported by the device".into())]
    );
    assert_eq!(record.verification.expect("verified").check, "zeros");
    assert!(dev.content.iter().all(|b| *b == 0));
}

#[test]
fn format_crypto_failing_falls_to_user_data_format() {
    let mut dev = nvme()
        .with_offered(&[NvmeFormatCrypto, NvmeFormatUserData])
        .with_start_error(
            NvmeFormatCrypto,
            DeviceError::Command("Invalid Format (0x10a)".into()),
        );
    let record = erase_device(&mut dev, &opts());
    assert_ok(&record, NvmeFormatUserData);
    assert_eq!(record.nist, Some(NistClass::Clear));
    let tried = tried_of(&record);
    assert_eq!(tried.len(), 3, "{tried:?}");
    assert_eq!(tried[2].0, NvmeFormatCrypto);
    assert!(tried[2].1.contains("Invalid Format"), "{tried:?}");
}

#[test]
fn all_device_methods_failing_ends_in_overwrite() {
    let mut dev = nvme()
        .with_start_error(
            NvmeSanitizeCrypto,
            DeviceError::Unsupported("SANICAP lacks CES".into()),
        )
        .with_failed_progress(NvmeSanitizeBlock, "sanitize status 3 (failed)")
        .with_start_error(NvmeFormatCrypto, DeviceError::Command("status 0x2".into()))
        .with_start_error(NvmeFormatUserData, DeviceError::Io("ioctl: EIO".into()));
    let record = erase_device(&mut dev, &opts());
    assert_ok(&record, Overwrite);
    let tried = tried_of(&record);
    assert_eq!(
        tried.iter().map(|t| t.0).collect::<Vec<_>>(),
        [
            NvmeSanitizeCrypto,
            NvmeSanitizeBlock,
            NvmeFormatCrypto,
            NvmeFormatUserData
        ]
    );
    assert!(tried[1].1.contains("sanitize status 3"), "{tried:?}");
    assert!(dev.content.iter().all(|b| *b == 0));
}

#[test]
fn the_skip_list_is_honoured_and_recorded() {
    let mut dev = nvme();
    let options = EraseOptions {
        skip: vec![NvmeSanitizeCrypto, NvmeSanitizeBlock],
        ..opts()
    };
    let record = erase_device(&mut dev, &options);
    assert_ok(&record, NvmeFormatCrypto);
    assert_eq!(
        tried_of(&record),
        [
            (NvmeSanitizeCrypto, "skipped: kiln.erase_skip".into()),
            (NvmeSanitizeBlock, "skipped: kiln.erase_skip".into())
        ]
    );
    assert_eq!(dev.started, [NvmeFormatCrypto]);
}

#[test]
fn only_tries_just_that_method() {
    let mut dev = nvme();
    let record = erase_device(
        &mut dev,
        &EraseOptions {
            only: Some(Overwrite),
            ..opts()
        },
    );
    assert_ok(&record, Overwrite);
    assert!(record.tried.is_empty() && dev.started.is_empty());

    // A method of another family is not offered: failed, nothing run.
    let mut dev = nvme();
    let record = erase_device(
        &mut dev,
        &EraseOptions {
            only: Some(AtaSecurityErase),
            ..opts()
        },
    );
    assert_failed(&record, "no erase method left to try");
    assert_eq!(record.method, None);
    assert_eq!(
        tried_of(&record),
        [(AtaSecurityErase, "not supported by the device".into())]
    );

    // The only method failing is the record's method and error; nothing else is tried.
    let mut dev =
        nvme().with_start_error(NvmeFormatCrypto, DeviceError::Command("status 0x2".into()));
    let record = erase_device(
        &mut dev,
        &EraseOptions {
            only: Some(NvmeFormatCrypto),
            ..opts()
        },
    );
    assert_failed(&record, "nvme_format_crypto: command failed: status 0x2");
    assert_eq!(record.method, Some(NvmeFormatCrypto));
    assert!(record.tried.is_empty());
}

#[test]
fn a_frozen_ata_drive_is_named_and_overwritten() {
    let mut dev = FakeDevice::new(DeviceKind::Ata, 4 * MIB).with_frozen();
    let record = erase_device(&mut dev, &opts());
    assert_ok(&record, Overwrite);
    let tried = tried_of(&record);
    assert_eq!(tried.len(), 2);
    assert!(
        tried.iter().all(|t| t.1.contains("security frozen")),
        "{tried:?}"
    );

    // Without overwrite the record fails naming the frozen state (the ladder's power-cycle step keys on it).
    let mut dev = FakeDevice::new(DeviceKind::Ata, 4 * MIB).with_frozen();
    let record = erase_device(
        &mut dev,
        &EraseOptions {
            skip: vec![Overwrite],
            ..opts()
        },
    );
    assert_failed(&record, "ata_security_erase: security frozen");
    assert!(
        record
            .summary()
            .contains("ata_security_erase_enhanced: security frozen")
    );
}

#[test]
fn a_never_completing_sanitize_times_out_then_the_next_method_runs() {
    let mut dev = nvme().with_never_completing(NvmeSanitizeCrypto);
    let options = EraseOptions {
        sanitize_timeout: Duration::from_secs(1),
        poll_interval: Duration::from_millis(20),
        ..opts()
    };
    let record = erase_device(&mut dev, &options);
    assert_ok(&record, NvmeSanitizeBlock);
    assert_eq!(
        tried_of(&record),
        [(NvmeSanitizeCrypto, "did not complete within 1 s".into())]
    );
}

#[test]
fn a_device_gone_mid_overwrite_fails_naming_it() {
    let mut dev = FakeDevice::new(DeviceKind::Plain, 16 * MIB).with_gone_after_writes(2);
    let record = erase_device(&mut dev, &opts());
    assert_failed(
        &record,
        "overwrite: device disappeared: /dev/vda was removed",
    );
    assert_eq!(record.method, Some(Overwrite));

    // Gone during a device method ends the chain too: nothing after it runs.
    let mut dev = nvme().with_start_error(
        NvmeSanitizeCrypto,
        DeviceError::Gone("controller reset".into()),
    );
    let record = erase_device(&mut dev, &opts());
    assert_failed(
        &record,
        "nvme_sanitize_crypto: device disappeared: controller reset",
    );
    assert_eq!(dev.started, [NvmeSanitizeCrypto]);
}

#[test]
fn a_read_only_device_fails_without_trying() {
    let mut dev = nvme().with_read_only();
    let record = erase_device(&mut dev, &opts());
    assert_failed(&record, "read-only");
    assert_eq!(record.method, None);
    assert!(dev.started.is_empty());

    // A device that turns out read-only when written (the kernel flag was not set) ends the chain there.
    let mut dev = nvme().with_start_error(NvmeSanitizeCrypto, DeviceError::ReadOnly);
    let record = erase_device(&mut dev, &opts());
    assert_failed(&record, "nvme_sanitize_crypto: device is read-only");
}

#[test]
fn an_io_error_is_named_with_its_offset() {
    // The error lies in a sampled range (the first MiB): the crypto methods cannot sample, block erase cannot be
    // verified, overwrite cannot write: every method is tried and the record fails.
    let mut dev = nvme().with_io_error_at(4096);
    let record = erase_device(&mut dev, &opts());
    assert_failed(
        &record,
        "overwrite: I/O error: writing at offset 4096: medium error",
    );
    assert_eq!(record.tried.len(), 4);
    assert!(
        record.tried[0]
            .error
            .contains("reading 1048576 bytes at offset 0"),
        "{:?}",
        record.tried
    );
}

#[test]
fn a_crypto_erase_that_changed_nothing_fails_verification_and_the_next_method_runs() {
    let mut dev = nvme().with_crypto_noop();
    let record = erase_device(&mut dev, &opts());
    assert_ok(&record, NvmeSanitizeBlock);
    let tried = tried_of(&record);
    assert_eq!(tried[0].0, NvmeSanitizeCrypto);
    assert!(
        tried[0].1.contains("read the same as before the erase"),
        "{tried:?}"
    );

    // Zeros after a crypto erase are verified (deallocated blocks read as zeros).
    let mut dev = nvme().with_crypto_noop();
    dev.content.fill(0);
    let record = erase_device(&mut dev, &opts());
    assert_ok(&record, NvmeSanitizeCrypto);
}

#[test]
fn a_block_erase_that_left_data_fails_verification_naming_the_offset() {
    let mut dev = nvme()
        .with_offered(&[NvmeSanitizeBlock])
        .with_block_leaving_data();
    let record = erase_device(
        &mut dev,
        &EraseOptions {
            samples: 0,
            ..opts()
        },
    );
    // The byte left behind (the middle) is not in the first or last MiB: with no random ranges the block erase
    // passes; that is why random ranges are sampled.
    assert_ok(&record, NvmeSanitizeBlock);

    let mut dev = FakeDevice::new(DeviceKind::Nvme, MIB)
        .with_offered(&[NvmeSanitizeBlock])
        .with_block_leaving_data();
    let record = erase_device(&mut dev, &opts());
    assert_ok(&record, Overwrite);
    let tried = tried_of(&record);
    assert_eq!(tried[1].0, NvmeSanitizeBlock);
    assert!(
        tried[1]
            .1
            .contains(&format!("byte at offset {} is 0xa5", MIB / 2)),
        "{tried:?}"
    );
}

#[test]
fn identify_failing_leaves_only_overwrite() {
    let mut dev = nvme().with_offered_error(DeviceError::Io("identify: EIO".into()));
    let record = erase_device(&mut dev, &opts());
    assert_ok(&record, Overwrite);
    assert_eq!(record.tried.len(), 4);
    assert!(
        record.tried[0]
            .error
            .contains("identify failed: I/O error: identify: EIO")
    );
}

#[test]
fn scsi_and_plain_chains() {
    let mut dev = FakeDevice::new(DeviceKind::Scsi, 3 * MIB)
        .with_offered(&[ScsiSanitizeBlock, ScsiSanitizeOverwrite]);
    let record = erase_device(&mut dev, &opts());
    assert_ok(&record, ScsiSanitizeBlock);
    assert_eq!(
        tried_of(&record),
        [(ScsiSanitizeCrypto, "not supported by the device".into())]
    );

    let mut dev = FakeDevice::new(DeviceKind::Plain, 3 * MIB);
    let record = erase_device(&mut dev, &opts());
    assert_ok(&record, Overwrite);
    assert!(record.tried.is_empty());
}

#[test]
fn the_record_json_carries_the_contract_fields() {
    let mut dev = nvme().with_offered(&[NvmeFormatCrypto]);
    let record = erase_device(&mut dev, &opts());
    let json = serde_json::to_value(&record).expect("json");
    assert_eq!(json["device"], "/dev/nvme0n1");
    assert_eq!(json["model"], "FAKE-DISK");
    assert_eq!(json["serial"], "FAKE-nvme0n1");
    assert_eq!(json["bytes"], 6 * MIB as u64);
    assert_eq!(json["method"], "nvme_format_crypto");
    assert_eq!(json["nist"], "purge");
    assert_eq!(json["tried"][0]["method"], "nvme_sanitize_crypto");
    assert_eq!(json["tried"][0]["error"], "not supported by the device");
    assert_eq!(json["verified"], true);
    assert_eq!(json["result"], "ok");
    assert_eq!(json["verification"]["check"], "changed");
    assert!(json["started_at"].is_string() && json["finished_at"].is_string());
    assert!(json.get("error").is_none());

    let mut dev = nvme().with_read_only();
    let json = serde_json::to_value(erase_device(&mut dev, &opts())).expect("json");
    assert_eq!(json["result"], "failed");
    assert_eq!(json["verified"], false);
    assert!(json["nist"].is_null() && json["method"].is_null());
    assert_eq!(json["error"], "device is read-only");
}
