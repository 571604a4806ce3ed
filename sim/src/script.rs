//! Reading the iPXE scripts kiln's HTTP boot endpoint serves (`GET /boot/{mac}.ipxe`), as a virtual node's
//! firmware would run them: a ramdisk script has a `kernel` line whose `kiln.*` arguments tell the agent what to
//! do; a local-disk script has no kernel line and ends in `exit 1` (back to the firmware's next boot entry).

pub use kiln_agent::cmdline::{CmdlineError, ImageArgs, RamdiskArgs};

/// What a boot script tells the node to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootScript {
    /// Boot kiln's ramdisk with these arguments.
    Ramdisk(RamdiskArgs),
    /// Leave network boot and boot the local disk.
    LocalDisk,
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
    /// The kernel line's `kiln.*` arguments are missing or invalid.
    #[error("the script's kernel line")]
    Kernel(#[from] CmdlineError),
}

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
            return Ok(BootScript::Ramdisk(RamdiskArgs::parse(rest)?));
        }
        exits |= line == "exit 1" || line.starts_with("sanboot ");
    }
    if exits {
        Ok(BootScript::LocalDisk)
    } else {
        Err(ScriptError::NoAction)
    }
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
        assert_eq!(
            parse(no_token),
            Err(ScriptError::Kernel(CmdlineError::Missing("kiln.token")))
        );
        let bad_mode = no_token
            .replace("kiln.token=", "kiln.token=t")
            .replace("inspect", "dance");
        assert!(matches!(
            parse(&bad_mode),
            Err(ScriptError::Kernel(CmdlineError::Invalid {
                key: "kiln.mode",
                ..
            }))
        ));
        let half_image = no_token.replace("kiln.token=", "kiln.token=t kiln.image=http://p/i");
        assert!(matches!(
            parse(&half_image),
            Err(ScriptError::Kernel(CmdlineError::Invalid {
                key: "kiln.image",
                ..
            }))
        ));
    }
}
