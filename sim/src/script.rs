//! Reading the iPXE scripts kiln's HTTP boot endpoint serves (`GET /boot/{mac}.ipxe`), as a virtual node's
//! firmware would run them: a ramdisk script has a `kernel` line whose `kiln.*` arguments tell the agent what to
//! do; a local-disk script has no kernel line and ends in `exit 1` (back to the firmware's next boot entry).

use kiln_images::{ImageFormat, Sha256Digest};
use kiln_inventory::MacAddr;
use kiln_provisioner::boot::decision::RamdiskMode;

/// What a boot script tells the node to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootScript {
    /// Boot kiln's ramdisk with these arguments.
    Ramdisk(RamdiskArgs),
    /// Leave network boot and boot the local disk.
    LocalDisk,
}

/// The `kiln.*` kernel arguments of a ramdisk script.
#[derive(Clone, PartialEq, Eq)]
pub struct RamdiskArgs {
    /// `kiln.url`: the provisioner's base URL.
    pub url: String,
    /// `kiln.mac`: the boot MAC.
    pub mac: MacAddr,
    /// `kiln.token`: the per-boot token reports carry.
    pub token: String,
    /// `kiln.mode`.
    pub mode: RamdiskMode,
    /// `kiln.image`, `kiln.sha256`, `kiln.format` (image and wipe scripts).
    pub image: Option<ImageArgs>,
}

impl std::fmt::Debug for RamdiskArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never printed.
        f.debug_struct("RamdiskArgs")
            .field("url", &self.url)
            .field("mac", &self.mac)
            .field("mode", &self.mode)
            .field("image", &self.image)
            .finish_non_exhaustive()
    }
}

/// The image a ramdisk script asks to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArgs {
    /// Download URL.
    pub url: String,
    /// The sha256 the download must have.
    pub sha256: Sha256Digest,
    /// Byte layout.
    pub format: ImageFormat,
}

/// Why a script could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// The first line is not `#!ipxe`.
    #[error("not an iPXE script (first line {0:?})")]
    NotIpxe(String),
    /// Neither a kernel line nor a way back to the firmware.
    #[error("the script neither boots a kernel nor exits to the local disk")]
    NoAction,
    /// A required `kiln.*` argument is missing or empty.
    #[error("the kernel line has no {0}")]
    Missing(&'static str),
    /// An argument has a value kiln-sim cannot read.
    #[error("the kernel line's {key} is invalid: {reason}")]
    Invalid {
        /// The argument.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

const MODES: [RamdiskMode; 4] = [
    RamdiskMode::Discovery,
    RamdiskMode::Inspect,
    RamdiskMode::Image,
    RamdiskMode::Wipe,
];

/// Parses a script served by the boot endpoint.
pub fn parse(script: &str) -> Result<BootScript, ScriptError> {
    let mut lines = script.lines().map(str::trim);
    let first = lines.next().unwrap_or_default();
    if first != "#!ipxe" {
        return Err(ScriptError::NotIpxe(first.chars().take(40).collect()));
    }
    let mut exits = false;
    for line in lines {
        if let Some(rest) = line.strip_prefix("kernel ") {
            return parse_kernel_line(rest).map(BootScript::Ramdisk);
        }
        exits |= line == "exit 1" || line.starts_with("sanboot ");
    }
    if exits {
        Ok(BootScript::LocalDisk)
    } else {
        Err(ScriptError::NoAction)
    }
}

fn parse_kernel_line(rest: &str) -> Result<RamdiskArgs, ScriptError> {
    let arg = |key: &'static str| {
        rest.split_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
            .filter(|value| !value.is_empty())
    };
    let required = |key: &'static str| arg(key).ok_or(ScriptError::Missing(key));
    let invalid = |key: &'static str, reason: String| ScriptError::Invalid { key, reason };
    let url = required("kiln.url")?.to_string();
    let mac = required("kiln.mac")?
        .parse::<MacAddr>()
        .map_err(|err| invalid("kiln.mac", err.to_string()))?;
    let token = required("kiln.token")?.to_string();
    let mode_text = required("kiln.mode")?;
    let mode = MODES
        .into_iter()
        .find(|mode| mode.as_str() == mode_text)
        .ok_or_else(|| invalid("kiln.mode", format!("unknown mode {mode_text:?}")))?;
    let image = match (arg("kiln.image"), arg("kiln.sha256"), arg("kiln.format")) {
        (None, None, None) => None,
        (Some(url), Some(sha256), Some(format)) => Some(ImageArgs {
            url: url.to_string(),
            sha256: sha256
                .parse()
                .map_err(|err: kiln_images::BadDigest| invalid("kiln.sha256", err.to_string()))?,
            format: format
                .parse()
                .map_err(|err: kiln_inventory::UnknownImageFormat| {
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
    Ok(RamdiskArgs {
        url,
        mac,
        token,
        mode,
        image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_is_not_a_boot_script() {
        assert!(matches!(
            parse("<html>502</html>"),
            Err(ScriptError::NotIpxe(_))
        ));
        assert_eq!(parse("#!ipxe\necho hi\n"), Err(ScriptError::NoAction));
        assert_eq!(parse(""), Err(ScriptError::NotIpxe(String::new())));
        let no_token = "#!ipxe\nkernel http://p/vmlinuz kiln.url=http://p kiln.mac=02:00:00:00:00:01 \
                        kiln.token= kiln.mode=inspect\nboot\n";
        assert_eq!(parse(no_token), Err(ScriptError::Missing("kiln.token")));
        let bad_mode = no_token
            .replace("kiln.token=", "kiln.token=t")
            .replace("inspect", "dance");
        assert!(matches!(
            parse(&bad_mode),
            Err(ScriptError::Invalid {
                key: "kiln.mode",
                ..
            })
        ));
        let half_image = no_token.replace("kiln.token=", "kiln.token=t kiln.image=http://p/i");
        assert!(matches!(
            parse(&half_image),
            Err(ScriptError::Invalid {
                key: "kiln.image",
                ..
            })
        ));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let args = RamdiskArgs {
            url: "http://p".into(),
            mac: "02:00:00:00:00:01".parse().expect("mac"),
            token: "s3cret-token".into(),
            mode: RamdiskMode::Inspect,
            image: None,
        };
        assert!(!format!("{args:?}").contains("s3cret"));
    }
}
