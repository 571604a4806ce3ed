//! Catalog image types: an image's byte layout and a cataloged image, as the store keeps them and the writer
//! reads them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How an image's bytes are laid out.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ImageFormat {
    /// A raw disk image, written byte for byte.
    #[serde(rename = "raw")]
    Raw,
    /// A QEMU qcow2 (v2/v3) image; its clusters are expanded to a raw disk.
    #[serde(rename = "qcow2")]
    Qcow2,
    /// A raw disk image compressed with zstd.
    #[serde(rename = "raw.zst")]
    RawZstd,
}

impl ImageFormat {
    /// The stored and displayed name: `raw`, `qcow2` or `raw.zst`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::RawZstd => "raw.zst",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name kiln does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown image format {0:?} (expected raw, qcow2 or raw.zst)")]
pub struct UnknownImageFormat(pub String);

impl FromStr for ImageFormat {
    type Err = UnknownImageFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "raw" | "img" => Ok(ImageFormat::Raw),
            "qcow2" => Ok(ImageFormat::Qcow2),
            "raw.zst" | "zst" | "zstd" => Ok(ImageFormat::RawZstd),
            _ => Err(UnknownImageFormat(s.to_string())),
        }
    }
}

/// A cataloged image.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Database id.
    pub id: i64,
    /// Image name, e.g. `ubuntu-24.04-gpu`.
    pub name: String,
    /// Version within the name, e.g. `2026.11.1`.
    pub version: String,
    /// Operating system it carries, free text (`ubuntu 24.04`).
    pub os: Option<String>,
    /// Byte layout.
    pub format: ImageFormat,
    /// Size of the stored file (compressed size for `raw.zst`, file size for `qcow2`).
    pub size_bytes: i64,
    /// Lowercase hex sha256 of the stored file: the content address, checked by every writer.
    pub sha256: String,
    /// Detached ed25519 signature over the 32 digest bytes, base64.
    pub signature: Option<String>,
    /// Which key made `signature` (free-form id the site manages).
    pub signing_key_id: Option<String>,
    /// When it was cataloged.
    pub created_at: DateTime<Utc>,
}

/// Reads a catalog image reference `NAME:VERSION` (the version may itself hold colons); both parts non-empty.
pub fn parse_image_ref(text: &str) -> Result<(String, String), String> {
    match text.trim().split_once(':') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() => {
            Ok((name.to_string(), version.to_string()))
        }
        _ => Err(format!("{text:?} is not NAME:VERSION")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_image_ref;

    #[test]
    fn image_refs() {
        assert_eq!(
            parse_image_ref("ubuntu:24.04"),
            Ok(("ubuntu".into(), "24.04".into()))
        );
        assert_eq!(parse_image_ref("img:1:2"), Ok(("img".into(), "1:2".into())));
        for bad in ["ubuntu", ":1", "ubuntu:", ""] {
            assert!(parse_image_ref(bad).is_err(), "{bad}");
        }
    }
}
