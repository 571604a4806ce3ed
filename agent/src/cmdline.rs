//! The `kiln.*` kernel arguments a kiln ramdisk boots with: what the provisioner's iPXE script tells the agent
//! (where to report, with which token, what to do, which image to write where). Parsed here once, for the agent
//! binary and for kiln-sim's virtual firmware.
//!
//! ```text
//! kiln.url=http://10.0.0.1:8080 kiln.mac=52:54:00:e2:00:01 kiln.token=T kiln.mode=image
//! kiln.image=http://10.0.0.1:8080/images/sha256/HEX kiln.sha256=HEX kiln.format=raw.zst kiln.disk=/dev/vda
//! ```

use std::path::PathBuf;
use std::str::FromStr;

use kiln_images::{ImageFormat, Sha256Digest};
use kiln_model::{EraseMethod, MacAddr};

/// Why the kiln ramdisk is booted; passed to the agent as `kiln.mode=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RamdiskMode {
    /// An unknown machine: report what it is so a technician can adopt it.
    Discovery,
    /// Read the hardware and report it (enrolled, discovering, inspecting, remediating).
    Inspect,
    /// Write the OS image to disk (imaging).
    Image,
    /// Secure-erase, then image (wiping).
    Wipe,
}

impl RamdiskMode {
    /// Every mode, in lifecycle order.
    pub const ALL: [RamdiskMode; 4] = [
        RamdiskMode::Discovery,
        RamdiskMode::Inspect,
        RamdiskMode::Image,
        RamdiskMode::Wipe,
    ];

    /// The name on the kernel command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RamdiskMode::Discovery => "discovery",
            RamdiskMode::Inspect => "inspect",
            RamdiskMode::Image => "image",
            RamdiskMode::Wipe => "wipe",
        }
    }
}

impl FromStr for RamdiskMode {
    type Err = CmdlineError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str() == text)
            .ok_or_else(|| CmdlineError::Invalid {
                key: "kiln.mode",
                reason: format!("unknown mode {text:?}"),
            })
    }
}

/// Why the kernel arguments could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    /// A required `kiln.*` argument is missing or empty.
    #[error("the kernel command line has no {0}")]
    Missing(&'static str),
    /// An argument has a value kiln cannot read.
    #[error("the kernel command line's {key} is invalid: {reason}")]
    Invalid {
        /// The argument.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// The image a ramdisk is asked to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArgs {
    /// `kiln.image`: download URL.
    pub url: String,
    /// `kiln.sha256`: the sha256 the download must have.
    pub sha256: Sha256Digest,
    /// `kiln.format`: byte layout of the download.
    pub format: ImageFormat,
}

/// The `kiln.*` arguments of a ramdisk boot.
#[derive(Clone, PartialEq, Eq)]
pub struct RamdiskArgs {
    /// `kiln.url`: the provisioner's base URL.
    pub url: String,
    /// `kiln.mac`: the MAC the node booted from (reports name it).
    pub mac: Option<MacAddr>,
    /// `kiln.token`: the per-boot token reports carry.
    pub token: String,
    /// `kiln.mode`: what the ramdisk is for.
    pub mode: RamdiskMode,
    /// `kiln.image`, `kiln.sha256`, `kiln.format` (image and wipe scripts), all three or none.
    pub image: Option<ImageArgs>,
    /// `kiln.disk`: the whole disk to write; `None`: the agent picks the first one it inspects.
    pub disk: Option<PathBuf>,
    /// `kiln.erase_skip`: erase methods the wipe chain must not try (comma-separated names), set by the
    /// remediation ladder after a method failed or hung on this node.
    pub erase_skip: Vec<EraseMethod>,
}

impl std::fmt::Debug for RamdiskArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never printed.
        f.debug_struct("RamdiskArgs")
            .field("url", &self.url)
            .field("mac", &self.mac)
            .field("mode", &self.mode)
            .field("image", &self.image)
            .field("disk", &self.disk)
            .field("erase_skip", &self.erase_skip)
            .finish_non_exhaustive()
    }
}

impl RamdiskArgs {
    /// Parses the `kiln.*` words of a kernel command line (`/proc/cmdline`, or an iPXE `kernel` line); other
    /// words are ignored. `kiln.url`, `kiln.token` and `kiln.mode` are required.
    pub fn parse(cmdline: &str) -> Result<Self, CmdlineError> {
        Self::from_lookup(|key| kernel_arg(cmdline, key).map(str::to_string))
    }

    /// Builds the arguments from `lookup` (key → value, e.g. the kernel command line with environment
    /// overrides); an empty value counts as missing.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, CmdlineError> {
        let arg = |key: &str| lookup(key).filter(|value| !value.is_empty());
        let required = |key: &'static str| arg(key).ok_or(CmdlineError::Missing(key));
        let invalid = |key: &'static str, reason: String| CmdlineError::Invalid { key, reason };
        let url = required("kiln.url")?;
        let mac = arg("kiln.mac")
            .map(|mac| {
                mac.parse::<MacAddr>()
                    .map_err(|err| invalid("kiln.mac", err.to_string()))
            })
            .transpose()?;
        let token = required("kiln.token")?;
        let mode = required("kiln.mode")?.parse()?;
        let image = match (arg("kiln.image"), arg("kiln.sha256"), arg("kiln.format")) {
            (None, None, None) => None,
            (Some(url), Some(sha256), Some(format)) => Some(ImageArgs {
                url,
                sha256: sha256.parse().map_err(|err: kiln_images::BadDigest| {
                    invalid("kiln.sha256", err.to_string())
                })?,
                format: format
                    .parse()
                    .map_err(|err: kiln_model::UnknownImageFormat| {
                        invalid("kiln.format", err.to_string())
                    })?,
            }),
            _ => {
                return Err(invalid(
                    "kiln.image",
                    "kiln.image, kiln.sha256 and kiln.format go together".into(),
                ));
            }
        };
        let disk = match arg("kiln.disk") {
            Some(disk) if !disk.starts_with('/') => {
                return Err(invalid(
                    "kiln.disk",
                    format!("{disk:?} is not an absolute path (e.g. /dev/nvme0n1)"),
                ));
            }
            disk => disk.map(PathBuf::from),
        };
        let erase_skip = arg(ERASE_SKIP_ARG)
            .map(|list| {
                list.split(',')
                    .filter(|name| !name.is_empty())
                    .map(|name| {
                        name.parse::<EraseMethod>()
                            .map_err(|err| invalid(ERASE_SKIP_ARG, err.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            url,
            mac,
            token,
            mode,
            image,
            disk,
            erase_skip,
        })
    }
}

/// The kernel argument naming erase methods to skip: `kiln.erase_skip=nvme_sanitize_crypto,nvme_sanitize_block`.
pub const ERASE_SKIP_ARG: &str = "kiln.erase_skip";

/// The value of `key=` in a whitespace-separated command line (the first occurrence).
pub fn kernel_arg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn parses_an_image_command_line() {
        let line = format!(
            "BOOT_IMAGE=vmlinuz initrd=initramfs.img kiln.url=http://10.78.0.1:8080 kiln.mac=52:54:00:e2:00:04 \
             kiln.token=tok kiln.mode=image kiln.image=http://10.78.0.1:8080/images/sha256/{HEX} \
             kiln.sha256={HEX} kiln.format=raw.zst kiln.disk=/dev/vda console=ttyS0"
        );
        let args = RamdiskArgs::parse(&line).expect("parses");
        assert_eq!(args.url, "http://10.78.0.1:8080");
        assert_eq!(args.mac, "52:54:00:e2:00:04".parse().ok());
        assert_eq!(args.token, "tok");
        assert_eq!(args.mode, RamdiskMode::Image);
        assert_eq!(args.disk, Some(PathBuf::from("/dev/vda")));
        let image = args.image.expect("image");
        assert_eq!(image.sha256.to_hex(), HEX);
        assert_eq!(image.format, ImageFormat::RawZstd);
        assert!(image.url.ends_with(HEX));
    }

    #[test]
    fn inspect_needs_no_image_or_disk() {
        let args = RamdiskArgs::parse("kiln.url=http://p kiln.token=t kiln.mode=inspect quiet")
            .expect("parses");
        assert_eq!(
            (args.mode, args.mac, args.image, args.disk),
            (RamdiskMode::Inspect, None, None, None)
        );
    }

    #[test]
    fn bad_arguments_are_named() {
        let base = "kiln.url=http://p kiln.token=t kiln.mode=image";
        let err = |line: &str| RamdiskArgs::parse(line).expect_err(line);
        assert_eq!(
            err("kiln.url=http://p kiln.token= kiln.mode=inspect"),
            CmdlineError::Missing("kiln.token")
        );
        assert_eq!(
            err("kiln.token=t kiln.mode=inspect"),
            CmdlineError::Missing("kiln.url")
        );
        assert_eq!(
            err("kiln.url=http://p kiln.token=t"),
            CmdlineError::Missing("kiln.mode")
        );
        let key = |line: &str| match err(line) {
            CmdlineError::Invalid { key, .. } => key,
            other => panic!("{other}"),
        };
        assert_eq!(
            key("kiln.url=http://p kiln.token=t kiln.mode=dance"),
            "kiln.mode"
        );
        assert_eq!(key(&format!("{base} kiln.mac=52:54")), "kiln.mac");
        assert_eq!(key(&format!("{base} kiln.image=http://p/i")), "kiln.image");
        assert_eq!(
            key(&format!(
                "{base} kiln.image=http://p/i kiln.sha256=abc kiln.format=raw"
            )),
            "kiln.sha256"
        );
        assert_eq!(
            key(&format!(
                "{base} kiln.image=http://p/i kiln.sha256={HEX} kiln.format=vmdk"
            )),
            "kiln.format"
        );
        assert_eq!(key(&format!("{base} kiln.disk=vda")), "kiln.disk");
    }

    #[test]
    fn a_key_is_not_a_prefix_match_and_the_token_is_not_printed() {
        // `kiln.url_old=` is another key, not kiln.url.
        assert_eq!(
            kernel_arg("kiln.url_old=x kiln.url=y", "kiln.url"),
            Some("y")
        );
        let args = RamdiskArgs::parse("kiln.url=http://p kiln.token=s3cret kiln.mode=wipe")
            .expect("parses");
        assert!(!format!("{args:?}").contains("s3cret"));
    }

    #[test]
    fn modes_round_trip() {
        for mode in RamdiskMode::ALL {
            assert_eq!(mode.as_str().parse::<RamdiskMode>(), Ok(mode));
        }
    }
}
