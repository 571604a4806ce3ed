//! "Erased before this lease": the part of a node's signed acceptance record that says how its disks were
//! erased after the previous tenant (per device: method, NIST class, times, verification and the digest of the
//! erase record kiln stored), or that there was no previous tenant. The signature covers it like the rest of the
//! record; [`check`] is what a verifier requires of it.

use serde::{Deserialize, Serialize};

/// Whether the lease had a previous tenant, and what was erased after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureStatus {
    /// The node's hall had no earlier lease: nothing to erase, and the record says so.
    FirstLease,
    /// The disks were erased after the previous lease; `devices` lists them.
    Erased,
    /// The hall had an earlier lease but kiln holds no erase of this node after it: a verify failure.
    NotRecorded,
}

/// One device's erase, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasedDevice {
    /// Device path on the node (`/dev/nvme0n1`).
    pub device: String,
    /// The serial the device reported.
    pub serial: String,
    /// The method that erased it (`nvme_format_crypto`), null when none could.
    pub method: Option<String>,
    /// NIST SP 800-88 class reached (`clear`, `purge`), null when the erase failed.
    pub nist: Option<String>,
    /// When the erase started, RFC 3339.
    pub started_at: String,
    /// When it finished (verification included), RFC 3339.
    pub finished_at: String,
    /// Whether the read-back confirmed it.
    pub verified: bool,
    /// `ok` or `failed`.
    pub result: String,
    /// sha256 (hex) of the stored erase record's canonical JSON, so the record can be matched later.
    pub record_sha256: String,
}

/// The erase that came before the lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasedBeforeLease {
    /// First lease, erased, or not recorded.
    pub status: ErasureStatus,
    /// The lease whose end the erase followed, when there was one.
    pub after_lease: Option<i64>,
    /// One entry per device (empty on a first lease).
    pub devices: Vec<ErasedDevice>,
    /// The same in words, for people reading the record.
    pub summary: String,
}

/// What a verifier requires: a first lease erased nothing; otherwise every device is listed, erased (`ok`) and
/// verified, with a method and a digest. `Err` says why not, naming the device.
pub fn check(erased: &ErasedBeforeLease) -> Result<(), String> {
    match erased.status {
        ErasureStatus::FirstLease if erased.devices.is_empty() => Ok(()),
        ErasureStatus::FirstLease => Err("a first lease lists erased devices".into()),
        ErasureStatus::NotRecorded => Err(format!(
            "no erase is recorded after lease {}",
            erased
                .after_lease
                .map_or_else(|| "?".to_string(), |id| id.to_string())
        )),
        ErasureStatus::Erased if erased.devices.is_empty() => {
            Err("erased, but no device is listed".into())
        }
        ErasureStatus::Erased => {
            for device in &erased.devices {
                if device.result != "ok" {
                    return Err(format!("{}: erase {}", device.device, device.result));
                }
                if !device.verified {
                    return Err(format!("{}: erase not verified", device.device));
                }
                if device.method.is_none() {
                    return Err(format!("{}: no erase method named", device.device));
                }
                if device.record_sha256.len() != 64
                    || !device.record_sha256.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(format!(
                        "{}: erase record digest is not sha256 hex",
                        device.device
                    ));
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> ErasedDevice {
        ErasedDevice {
            device: "/dev/nvme0n1".into(),
            serial: "S1".into(),
            method: Some("nvme_format_crypto".into()),
            nist: Some("purge".into()),
            started_at: "2026-12-03T10:00:00Z".into(),
            finished_at: "2026-12-03T10:00:05Z".into(),
            verified: true,
            result: "ok".into(),
            record_sha256: "ab".repeat(32),
        }
    }

    fn erased(devices: Vec<ErasedDevice>) -> ErasedBeforeLease {
        ErasedBeforeLease {
            status: ErasureStatus::Erased,
            after_lease: Some(1),
            devices,
            summary: String::new(),
        }
    }

    #[test]
    fn only_verified_ok_erases_and_honest_first_leases_pass() {
        assert_eq!(check(&erased(vec![device()])), Ok(()));
        let first = ErasedBeforeLease {
            status: ErasureStatus::FirstLease,
            after_lease: None,
            devices: Vec::new(),
            summary: "first lease".into(),
        };
        assert_eq!(check(&first), Ok(()));
        let lying_first = ErasedBeforeLease {
            devices: vec![device()],
            ..first
        };
        assert!(check(&lying_first).is_err());
        let unverified = ErasedDevice {
            verified: false,
            ..device()
        };
        let err = check(&erased(vec![device(), unverified])).expect_err("unverified");
        assert!(err.contains("not verified"), "{err}");
        let failed = ErasedDevice {
            result: "failed".into(),
            ..device()
        };
        assert!(
            check(&erased(vec![failed]))
                .expect_err("failed")
                .contains("failed")
        );
        let no_digest = ErasedDevice {
            record_sha256: "zz".into(),
            ..device()
        };
        assert!(check(&erased(vec![no_digest])).is_err());
        assert!(check(&erased(Vec::new())).is_err());
        let missing = ErasedBeforeLease {
            status: ErasureStatus::NotRecorded,
            ..erased(Vec::new())
        };
        assert!(check(&missing).expect_err("missing").contains("lease 1"));
    }
}
