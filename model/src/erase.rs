//! Disk erase records: what the node agent did to each local disk between two tenants, as the agent reports it,
//! the store keeps it and the next lease's acceptance record cites it.
//!
//! The JSON shape of [`EraseRecord`] is a contract (`kiln-agent wipe --json` prints one per line): `device`,
//! `model`, `serial`, `bytes`, `method`, `nist`, `tried`, `started_at`, `finished_at`, `verified`, `result` and,
//! on failure, `error`. Fields may be added, never renamed or dropped.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One erase method, strongest first within a device family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EraseMethod {
    /// NVMe Sanitize, crypto erase (SANACT 4).
    NvmeSanitizeCrypto,
    /// NVMe Sanitize, block erase (SANACT 2).
    NvmeSanitizeBlock,
    /// NVMe Format NVM with Secure Erase Setting 2 (cryptographic erase).
    NvmeFormatCrypto,
    /// NVMe Format NVM with Secure Erase Setting 1 (user data erase).
    NvmeFormatUserData,
    /// ATA SECURITY ERASE UNIT, enhanced mode.
    AtaSecurityEraseEnhanced,
    /// ATA SECURITY ERASE UNIT, normal mode.
    AtaSecurityErase,
    /// SCSI SANITIZE, cryptographic erase service action.
    ScsiSanitizeCrypto,
    /// SCSI SANITIZE, block erase service action.
    ScsiSanitizeBlock,
    /// SCSI SANITIZE, overwrite service action.
    ScsiSanitizeOverwrite,
    /// Zeros written over every byte from the host, the last resort and the only method for plain block devices.
    Overwrite,
}

impl EraseMethod {
    /// Every method, in the order the chains try them within a family.
    pub const ALL: [EraseMethod; 10] = [
        EraseMethod::NvmeSanitizeCrypto,
        EraseMethod::NvmeSanitizeBlock,
        EraseMethod::NvmeFormatCrypto,
        EraseMethod::NvmeFormatUserData,
        EraseMethod::AtaSecurityEraseEnhanced,
        EraseMethod::AtaSecurityErase,
        EraseMethod::ScsiSanitizeCrypto,
        EraseMethod::ScsiSanitizeBlock,
        EraseMethod::ScsiSanitizeOverwrite,
        EraseMethod::Overwrite,
    ];

    /// The name used in JSON, on the command line and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            EraseMethod::NvmeSanitizeCrypto => "nvme_sanitize_crypto",
            EraseMethod::NvmeSanitizeBlock => "nvme_sanitize_block",
            EraseMethod::NvmeFormatCrypto => "nvme_format_crypto",
            EraseMethod::NvmeFormatUserData => "nvme_format_user_data",
            EraseMethod::AtaSecurityEraseEnhanced => "ata_security_erase_enhanced",
            EraseMethod::AtaSecurityErase => "ata_security_erase",
            EraseMethod::ScsiSanitizeCrypto => "scsi_sanitize_crypto",
            EraseMethod::ScsiSanitizeBlock => "scsi_sanitize_block",
            EraseMethod::ScsiSanitizeOverwrite => "scsi_sanitize_overwrite",
            EraseMethod::Overwrite => "overwrite",
        }
    }

    /// The NIST SP 800-88 class a successful, verified erase by this method reaches.
    pub fn nist(self) -> NistClass {
        match self {
            EraseMethod::NvmeFormatUserData
            | EraseMethod::AtaSecurityErase
            | EraseMethod::Overwrite => NistClass::Clear,
            _ => NistClass::Purge,
        }
    }

    /// Whether the method destroys the media encryption key rather than the data: verified by comparing the
    /// sampled ranges' digests before and after, not by reading zeros.
    pub fn is_crypto(self) -> bool {
        matches!(
            self,
            EraseMethod::NvmeSanitizeCrypto
                | EraseMethod::NvmeFormatCrypto
                | EraseMethod::ScsiSanitizeCrypto
        )
    }
}

impl fmt::Display for EraseMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An erase method name that kiln does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown erase method {0:?} (one of: {list})", list = EraseMethod::ALL.map(EraseMethod::as_str).join(", "))]
pub struct UnknownEraseMethod(pub String);

impl std::str::FromStr for EraseMethod {
    type Err = UnknownEraseMethod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EraseMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownEraseMethod(s.to_string()))
    }
}

/// NIST SP 800-88 sanitization class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NistClass {
    /// Logical techniques against the user-addressable space (overwrite, user-data format).
    Clear,
    /// Device-level techniques that defeat laboratory recovery (sanitize, crypto erase, enhanced erase).
    Purge,
}

/// A method that was tried on a device and failed, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TriedMethod {
    /// The method.
    pub method: EraseMethod,
    /// Why it failed (or was skipped: "not supported by the device").
    pub error: String,
}

/// The outcome of one device's erase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EraseResult {
    /// Erased and verified.
    Ok,
    /// Not erased, or not verified.
    Failed,
}

/// How an erase was verified: sampled ranges read back after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EraseVerification {
    /// `zeros` (overwrite, block erase, user-data format) or `changed` (crypto erase: each sampled range's sha256
    /// differs from its value before the erase).
    pub check: String,
    /// Ranges read back (the first and last MiB and random ones between).
    pub ranges: u32,
    /// Bytes read back.
    pub bytes_read: u64,
}

/// What the agent did to one device (the JSON contract above).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EraseRecord {
    /// The device path (`/dev/nvme0n1`).
    pub device: String,
    /// The model the device reports, empty when unknown.
    pub model: String,
    /// The serial the device reports, empty when unknown.
    pub serial: String,
    /// The device's size in bytes.
    pub bytes: u64,
    /// The method that erased it; on failure, the last one tried (null when none could be tried).
    pub method: Option<EraseMethod>,
    /// The NIST class reached; null when the erase failed.
    pub nist: Option<NistClass>,
    /// Methods tried before `method` that failed or were not offered, in order.
    pub tried: Vec<TriedMethod>,
    /// When the erase of this device started.
    pub started_at: DateTime<Utc>,
    /// When it finished (verification included).
    pub finished_at: DateTime<Utc>,
    /// Whether the sampled read-back confirmed the erase.
    pub verified: bool,
    /// `ok` only when erased and verified.
    pub result: EraseResult,
    /// Why it failed, naming the device and cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How it was verified, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<EraseVerification>,
}

impl EraseRecord {
    /// Whether this device is erased and verified.
    pub fn is_ok(&self) -> bool {
        self.result == EraseResult::Ok && self.verified
    }

    /// One line for events and quarantine reasons: `nvme1n1: nvme_format_crypto (purge), verified` or
    /// `nvme1n1: sanitize not supported; format: …`.
    pub fn summary(&self) -> String {
        let name = self.device.rsplit('/').next().unwrap_or(&self.device);
        if self.is_ok() {
            let method = self.method.map(EraseMethod::as_str).unwrap_or("?");
            let nist = match self.nist {
                Some(NistClass::Purge) => "purge",
                _ => "clear",
            };
            return format!("{name}: {method} ({nist}), verified");
        }
        let mut parts: Vec<String> = self
            .tried
            .iter()
            .map(|t| format!("{}: {}", t.method, t.error))
            .collect();
        if let Some(error) = &self.error {
            parts.push(error.clone());
        }
        if parts.is_empty() {
            parts.push("failed".into());
        }
        format!("{name}: {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(result: EraseResult) -> EraseRecord {
        EraseRecord {
            device: "/dev/nvme1n1".into(),
            model: "M".into(),
            serial: "S".into(),
            bytes: 1 << 30,
            method: Some(EraseMethod::NvmeFormatCrypto),
            nist: (result == EraseResult::Ok).then_some(NistClass::Purge),
            tried: vec![TriedMethod {
                method: EraseMethod::NvmeSanitizeCrypto,
                error: "sanitize not supported".into(),
            }],
            started_at: DateTime::UNIX_EPOCH,
            finished_at: DateTime::UNIX_EPOCH,
            verified: result == EraseResult::Ok,
            result,
            error: (result == EraseResult::Failed).then(|| "format: I/O error".into()),
            verification: None,
        }
    }

    #[test]
    fn the_contract_fields_are_in_the_json() {
        let json = serde_json::to_value(record(EraseResult::Ok)).expect("json");
        for key in [
            "device",
            "model",
            "serial",
            "bytes",
            "method",
            "nist",
            "tried",
            "started_at",
            "finished_at",
            "verified",
            "result",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        assert_eq!(json["method"], "nvme_format_crypto");
        assert_eq!(json["nist"], "purge");
        assert_eq!(json["result"], "ok");
        assert_eq!(json["tried"][0]["method"], "nvme_sanitize_crypto");
        assert!(json.get("error").is_none());
    }

    #[test]
    fn summaries_name_the_device_and_the_causes() {
        assert_eq!(
            record(EraseResult::Ok).summary(),
            "nvme1n1: nvme_format_crypto (purge), verified"
        );
        assert_eq!(
            record(EraseResult::Failed).summary(),
            "nvme1n1: nvme_sanitize_crypto: sanitize not supported; format: I/O error"
        );
    }

    #[test]
    fn method_names_round_trip_and_unknown_ones_are_named() {
        for method in EraseMethod::ALL {
            assert_eq!(method.as_str().parse::<EraseMethod>(), Ok(method));
            let json = serde_json::to_string(&method).expect("json");
            assert_eq!(json, format!("\"{}\"", method.as_str()));
        }
        let err = "shred".parse::<EraseMethod>().expect_err("unknown");
        assert!(err.to_string().contains("\"shred\""));
        assert_eq!(EraseMethod::Overwrite.nist(), NistClass::Clear);
        assert!(EraseMethod::NvmeSanitizeCrypto.is_crypto());
    }
}
