//! The kernel implementation of [`EraseDevice`]: sysfs classification ([`sysfs`]), block reads and writes
//! (through [`FileDevice`]: `pread`/`pwrite`, `O_DIRECT` for aligned transfers), NVMe admin commands
//! ([`nvme`]) and SG_IO for ATA pass-through ([`ata`]) and SCSI SANITIZE ([`scsi`]); [`ioctl`] holds the
//! agent's only `unsafe`.
//!
//! kiln talks to the kernel directly instead of running nvme-cli, hdparm or sg3-utils: the ramdisk stays one
//! binary, and completion statuses and sense data come back as numbers, not as tool text to parse.

pub mod ata;
pub mod ioctl;
pub mod nvme;
pub mod scsi;
pub mod sysfs;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use kiln_model::EraseMethod;

use self::ioctl::{SgData, SgOutcome};
use super::{DeviceError, DeviceInfo, DeviceKind, EraseDevice, EraseProgress, FileDevice};

/// A disk opened for erase: its sysfs description, a [`FileDevice`] for data and a control descriptor for
/// the family's commands.
pub struct LinuxDevice {
    info: DeviceInfo,
    io: FileDevice,
    control: File,
    nsid: u32,
    started: Option<EraseMethod>,
}

/// Opens the disk at `path`, described from `/sys`.
pub fn open(path: &Path) -> Result<LinuxDevice, DeviceError> {
    open_with_sysfs(path, Path::new("/sys"))
}

/// Opens the disk at `path`, described from the sysfs tree at `sysfs_root` (tests pass a fixture tree).
pub fn open_with_sysfs(path: &Path, sysfs_root: &Path) -> Result<LinuxDevice, DeviceError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => DeviceError::Gone(format!("{shown} does not exist")),
        _ => DeviceError::Io(format!("{shown}: {err}")),
    })?;
    let sys = sysfs::describe(path, sysfs_root);
    let io = FileDevice::open(path)?;
    let read_only = sys.read_only || io.info().read_only;
    let control = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .map_err(|err| map_errno(&err, &format!("opening {shown}")))?;
    // The kernel's size of an open block device is the truth; sysfs's for anything else (fixtures).
    let bytes = match sys.bytes {
        Some(bytes) if !meta.file_type().is_block_device() => bytes,
        _ => io.info().bytes,
    };
    let mut dev = LinuxDevice {
        info: DeviceInfo {
            path: path.to_path_buf(),
            kind: sys.kind,
            model: sys.model,
            serial: sys.serial,
            bytes,
            block_size: sys
                .block_size
                .filter(|b| b.is_power_of_two() && *b >= 512)
                .unwrap_or(512),
            read_only,
        },
        io,
        control,
        nsid: sys.nsid.unwrap_or(1),
        started: None,
    };
    if dev.info.model.is_empty() || dev.info.serial.is_empty() {
        dev.identity_from_device();
    }
    Ok(dev)
}

/// The device error for an ioctl that failed with an errno: a driver without the ioctl means the device does
/// not offer the command; a vanished device is gone.
fn map_errno(err: &io::Error, what: &str) -> DeviceError {
    match err.raw_os_error() {
        Some(libc::ENOTTY | libc::EINVAL | libc::EOPNOTSUPP) => DeviceError::Unsupported(format!(
            "{what}: the kernel driver does not take the command ({err})"
        )),
        Some(libc::ENOENT | libc::ENXIO | libc::ENODEV | libc::ENOMEDIUM) => {
            DeviceError::Gone(format!("{what}: {err}"))
        }
        Some(libc::EROFS) => DeviceError::ReadOnly,
        Some(libc::EACCES | libc::EPERM) => DeviceError::Command(format!(
            "{what}: not permitted ({err}); erase commands need root"
        )),
        _ => DeviceError::Command(format!("{what}: {err}")),
    }
}

const SG_TIMEOUT_MS: u32 = 30_000;
const DID_NO_CONNECT: u16 = 0x01;
const DID_BAD_TARGET: u16 = 0x04;

/// The sense data of a finished SCSI command, or the error of a command that did not get that far.
fn sg_result(
    outcome: &SgOutcome,
    what: &str,
) -> Result<Option<(scsi::Sense, Vec<u8>)>, DeviceError> {
    match outcome.host_status {
        0 => {}
        DID_NO_CONNECT | DID_BAD_TARGET => {
            return Err(DeviceError::Gone(format!(
                "{what}: the host adapter lost the device"
            )));
        }
        other => {
            return Err(DeviceError::Command(format!(
                "{what}: host adapter status 0x{other:02x}"
            )));
        }
    }
    if outcome.sense.is_empty() {
        return match outcome.status {
            0 => Ok(None),
            status => Err(DeviceError::Command(format!(
                "{what}: SCSI status 0x{status:02x} without sense data"
            ))),
        };
    }
    let sense = scsi::parse_sense(&outcome.sense)
        .map_err(|err| DeviceError::Command(format!("{what}: {err}")))?;
    Ok(Some((sense, outcome.sense.clone())))
}

/// The device error of a SCSI command that ended with `sense`.
fn sense_error(sense: &scsi::Sense, what: &str) -> DeviceError {
    match sense.key {
        scsi::KEY_ILLEGAL_REQUEST => DeviceError::Unsupported(format!("{what}: {sense}")),
        scsi::KEY_DATA_PROTECT => DeviceError::ReadOnly,
        _ => DeviceError::Command(format!("{what}: {sense}")),
    }
}

impl LinuxDevice {
    /// Fills an empty model or serial from identify data; a device that cannot say keeps them empty.
    fn identity_from_device(&mut self) {
        let identity = match self.info.kind {
            DeviceKind::Nvme => self
                .identify_controller()
                .ok()
                .map(|id| (id.model, id.serial)),
            DeviceKind::Ata => self.ata_identify().ok().map(|id| (id.model, id.serial)),
            DeviceKind::Scsi | DeviceKind::Plain => None,
        };
        if let Some((model, serial)) = identity {
            if self.info.model.is_empty() {
                self.info.model = model;
            }
            if self.info.serial.is_empty() {
                self.info.serial = serial;
            }
        }
    }

    fn admin(
        &self,
        cmd: &ioctl::NvmePassthruCmd,
        data: &mut [u8],
        what: &str,
    ) -> Result<u32, DeviceError> {
        let (status, result) =
            ioctl::nvme_admin(&self.control, cmd, data).map_err(|err| map_errno(&err, what))?;
        if status != 0 {
            return Err(nvme::NvmeStatus::parse(status).to_error(what));
        }
        Ok(result)
    }

    fn identify_controller(&self) -> Result<nvme::IdentifyController, DeviceError> {
        let what = "NVMe Identify Controller";
        let mut buf = vec![0u8; nvme::IDENTIFY_LEN];
        self.admin(&nvme::identify_controller_cmd(), &mut buf, what)?;
        nvme::parse_identify_controller(&buf)
            .map_err(|err| DeviceError::Command(format!("{what}: {err}")))
    }

    fn nvme_start(&mut self, method: EraseMethod) -> Result<(), DeviceError> {
        let (action, ses) = match method {
            EraseMethod::NvmeSanitizeCrypto => (Some(nvme::SanitizeAction::CryptoErase), None),
            EraseMethod::NvmeSanitizeBlock => (Some(nvme::SanitizeAction::BlockErase), None),
            EraseMethod::NvmeFormatCrypto => (None, Some(nvme::SecureErase::Crypto)),
            _ => (None, Some(nvme::SecureErase::UserData)),
        };
        if let Some(action) = action {
            self.admin(
                &nvme::sanitize_cmd(action),
                &mut [],
                &format!("NVMe Sanitize ({method})"),
            )?;
            return Ok(());
        }
        let what = "NVMe Identify Namespace";
        let mut buf = vec![0u8; nvme::IDENTIFY_LEN];
        self.admin(&nvme::identify_namespace_cmd(self.nsid), &mut buf, what)?;
        let ns = nvme::parse_identify_namespace(&buf)
            .map_err(|err| DeviceError::Command(format!("{what}: {err}")))?;
        let cmd = nvme::format_cmd(self.nsid, &ns, ses.unwrap_or(nvme::SecureErase::UserData));
        self.admin(&cmd, &mut [], &format!("NVMe Format NVM ({method})"))?;
        Ok(())
    }

    fn nvme_progress(&mut self) -> Result<EraseProgress, DeviceError> {
        let what = "NVMe Get Log Page (Sanitize Status)";
        let mut buf = vec![0u8; nvme::SANITIZE_LOG_LEN];
        self.admin(&nvme::sanitize_log_cmd(), &mut buf, what)?;
        let status = nvme::parse_sanitize_status(&buf)
            .map_err(|err| DeviceError::Command(format!("{what}: {err}")))?;
        Ok(match status.progress() {
            EraseProgress::Failed(reason) => {
                // A failed sanitize leaves the controller refusing other commands until it is told to exit
                // the failure mode; do so, so the next method in the chain can run.
                let exit = nvme::sanitize_cmd(nvme::SanitizeAction::ExitFailureMode);
                match self.admin(&exit, &mut [], "NVMe Sanitize (exit failure mode)") {
                    Ok(_) => EraseProgress::Failed(reason),
                    Err(err) => EraseProgress::Failed(format!("{reason}; {err}")),
                }
            }
            other => other,
        })
    }

    fn sg(
        &self,
        cdb: &[u8],
        data: SgData<'_>,
        timeout: Duration,
        what: &str,
    ) -> Result<SgOutcome, DeviceError> {
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        ioctl::sg_io(&self.control, cdb, data, timeout_ms).map_err(|err| map_errno(&err, what))
    }

    /// Runs one ATA command through ATA PASS-THROUGH(16) and checks the ATA status it returns.
    fn ata_command(
        &self,
        command: u8,
        data: SgData<'_>,
        timeout: Duration,
        what: &str,
    ) -> Result<(), DeviceError> {
        let (protocol, sectors) = match &data {
            SgData::None => (ata::Protocol::NonData, 0),
            SgData::FromDevice(_) => (ata::Protocol::PioIn, 1),
            SgData::ToDevice(_) => (ata::Protocol::PioOut, 1),
        };
        let cdb = ata::pass_through_16(command, protocol, sectors);
        let outcome = self.sg(&cdb, data, timeout, what)?;
        let Some((sense, raw)) = sg_result(&outcome, what)? else {
            return Ok(());
        };
        match ata::parse_ata_status(&sense, &raw) {
            Ok(status) if status.failed() => Err(DeviceError::Command(format!(
                "{what}: {}",
                status.describe()
            ))),
            Ok(_) => Ok(()),
            Err(_) if sense.key <= 1 => Ok(()),
            Err(_) => Err(sense_error(&sense, what)),
        }
    }

    fn ata_identify(&self) -> Result<ata::AtaIdentify, DeviceError> {
        let what = "ATA IDENTIFY DEVICE";
        let mut buf = vec![0u8; 512];
        self.ata_command(
            ata::CMD_IDENTIFY,
            SgData::FromDevice(&mut buf),
            Duration::from_secs(30),
            what,
        )?;
        ata::parse_identify(&buf).map_err(|err| DeviceError::Command(format!("{what}: {err}")))
    }

    fn ata_start(&mut self, method: EraseMethod) -> Result<(), DeviceError> {
        let enhanced = method == EraseMethod::AtaSecurityEraseEnhanced;
        let id = self.ata_identify()?;
        let sec = id.security;
        if !sec.supported {
            return Err(DeviceError::Unsupported(
                "the drive has no ATA security feature set".into(),
            ));
        }
        if sec.frozen {
            return Err(DeviceError::Frozen(
                "ATA security is frozen (the BIOS froze it at boot); a power cycle can unfreeze it"
                    .into(),
            ));
        }
        if sec.locked || sec.count_expired {
            return Err(DeviceError::Locked(
                "the drive is locked with a password kiln does not know".into(),
            ));
        }
        if enhanced && !sec.enhanced_supported {
            return Err(DeviceError::Unsupported(
                "the drive does not offer enhanced security erase".into(),
            ));
        }
        let timeout = ata::erase_timeout(if enhanced {
            id.enhanced_erase_time
        } else {
            id.erase_time
        });
        let set = ata::password_payload(ata::ERASE_PASSWORD, false);
        self.ata_command(
            ata::CMD_SECURITY_SET_PASSWORD,
            SgData::ToDevice(&set),
            SG_TIMEOUT,
            "ATA SECURITY SET PASSWORD",
        )?;
        let erase = ata::password_payload(ata::ERASE_PASSWORD, enhanced);
        let result = self
            .ata_command(
                ata::CMD_SECURITY_ERASE_PREPARE,
                SgData::None,
                SG_TIMEOUT,
                "ATA SECURITY ERASE PREPARE",
            )
            .and_then(|()| {
                self.ata_command(
                    ata::CMD_SECURITY_ERASE_UNIT,
                    SgData::ToDevice(&erase),
                    timeout,
                    &format!("ATA SECURITY ERASE UNIT ({method})"),
                )
            });
        if let Err(err) = result {
            // A successful erase clears the password; a failed one must not leave the drive to lock itself
            // with kiln's password at the next power-on.
            let disable = ata::password_payload(ata::ERASE_PASSWORD, false);
            let note = match self.ata_command(
                ata::CMD_SECURITY_DISABLE_PASSWORD,
                SgData::ToDevice(&disable),
                SG_TIMEOUT,
                "ATA SECURITY DISABLE PASSWORD",
            ) {
                Ok(()) => String::new(),
                Err(disable_err) => {
                    format!(" (and the password set for it could not be removed: {disable_err})")
                }
            };
            return Err(match err {
                DeviceError::Command(m) => DeviceError::Command(format!("{m}{note}")),
                other if note.is_empty() => other,
                other => DeviceError::Command(format!("{other}{note}")),
            });
        }
        Ok(())
    }

    fn scsi_action(method: EraseMethod) -> scsi::SanitizeAction {
        match method {
            EraseMethod::ScsiSanitizeCrypto => scsi::SanitizeAction::CryptoErase,
            EraseMethod::ScsiSanitizeBlock => scsi::SanitizeAction::BlockErase,
            _ => scsi::SanitizeAction::Overwrite,
        }
    }

    fn scsi_offered(&self) -> Result<Vec<EraseMethod>, DeviceError> {
        let methods = DeviceKind::Scsi.chain();
        let mut offered = Vec::new();
        for &method in methods {
            let action = Self::scsi_action(method);
            let what = "SCSI REPORT SUPPORTED OPERATION CODES";
            let mut buf = vec![0u8; 64];
            let cdb = scsi::report_supported_cdb(
                scsi::OP_SANITIZE,
                u16::from(action.code()),
                buf.len() as u32,
            );
            let outcome = self.sg(&cdb, SgData::FromDevice(&mut buf), SG_TIMEOUT, what)?;
            match sg_result(&outcome, what)? {
                None => {
                    if scsi::parse_report_supported(&buf).unwrap_or(false) {
                        offered.push(method);
                    }
                }
                // The drive cannot report its commands: offer every action and let SANITIZE itself answer.
                Some((sense, _)) if sense.key == scsi::KEY_ILLEGAL_REQUEST => {
                    return Ok(methods.to_vec());
                }
                Some((sense, _)) => return Err(sense_error(&sense, what)),
            }
        }
        Ok(offered)
    }

    fn scsi_start(&mut self, method: EraseMethod) -> Result<(), DeviceError> {
        let action = Self::scsi_action(method);
        let what = format!("SCSI SANITIZE ({method})");
        let params = scsi::overwrite_parameters();
        let (cdb, data) = match action {
            scsi::SanitizeAction::Overwrite => (
                scsi::sanitize_cdb(action, params.len() as u16),
                SgData::ToDevice(&params),
            ),
            _ => (scsi::sanitize_cdb(action, 0), SgData::None),
        };
        let outcome = self.sg(&cdb, data, SG_TIMEOUT, &what)?;
        match sg_result(&outcome, &what)? {
            None => Ok(()),
            Some((sense, _)) if sense.key <= 1 => Ok(()),
            Some((sense, _)) => Err(sense_error(&sense, &what)),
        }
    }

    fn scsi_progress(&mut self) -> Result<EraseProgress, DeviceError> {
        let what = "SCSI REQUEST SENSE";
        let mut buf = vec![0u8; 252];
        let outcome = self.sg(
            &scsi::request_sense_cdb(252),
            SgData::FromDevice(&mut buf),
            SG_TIMEOUT,
            what,
        )?;
        if let Some((sense, _)) = sg_result(&outcome, what)? {
            // REQUEST SENSE itself failed (CHECK CONDITION): the sense of that failure answers.
            return Ok(sense.sanitize_progress());
        }
        let returned = buf
            .len()
            .saturating_sub(usize::try_from(outcome.resid.max(0)).unwrap_or(0));
        match scsi::parse_sense(&buf[..returned.max(1)]) {
            Ok(sense) => Ok(match sense.sanitize_progress() {
                EraseProgress::Failed(reason) => {
                    let exit = scsi::sanitize_cdb(scsi::SanitizeAction::ExitFailureMode, 0);
                    match self.sg(
                        &exit,
                        SgData::None,
                        SG_TIMEOUT,
                        "SCSI SANITIZE (exit failure mode)",
                    ) {
                        Ok(_) => EraseProgress::Failed(reason),
                        Err(err) => EraseProgress::Failed(format!("{reason}; {err}")),
                    }
                }
                other => other,
            }),
            // No sense data at all: nothing is pending.
            Err(_) if buf[..returned].iter().all(|b| *b == 0) => Ok(EraseProgress::Done),
            Err(err) => Err(DeviceError::Command(format!("{what}: {err}"))),
        }
    }

    /// Drops cached blocks of the device after a device erase, so no read answers from before it.
    fn drop_cache(&self) {
        // Best effort: a regular file (tests) has no buffer cache ioctl, and reads use O_DIRECT where they can.
        let _ = ioctl::flush_buffers(&self.control);
    }
}

const SG_TIMEOUT: Duration = Duration::from_millis(SG_TIMEOUT_MS as u64);

impl EraseDevice for LinuxDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn offered(&mut self) -> Result<Vec<EraseMethod>, DeviceError> {
        match self.info.kind {
            DeviceKind::Nvme => {
                let id = self.identify_controller()?;
                let mut offered = Vec::new();
                if id.sanitize_crypto {
                    offered.push(EraseMethod::NvmeSanitizeCrypto);
                }
                if id.sanitize_block {
                    offered.push(EraseMethod::NvmeSanitizeBlock);
                }
                if id.format_supported && id.format_crypto {
                    offered.push(EraseMethod::NvmeFormatCrypto);
                }
                if id.format_supported {
                    offered.push(EraseMethod::NvmeFormatUserData);
                }
                Ok(offered)
            }
            DeviceKind::Ata => {
                let sec = self.ata_identify()?.security;
                let mut offered = Vec::new();
                // Frozen and locked drives still list the methods: start() then says why they cannot run.
                if sec.supported && sec.enhanced_supported {
                    offered.push(EraseMethod::AtaSecurityEraseEnhanced);
                }
                if sec.supported {
                    offered.push(EraseMethod::AtaSecurityErase);
                }
                Ok(offered)
            }
            DeviceKind::Scsi => self.scsi_offered(),
            DeviceKind::Plain => Ok(Vec::new()),
        }
    }

    fn start(&mut self, method: EraseMethod) -> Result<(), DeviceError> {
        if !self.info.kind.chain().contains(&method) {
            return Err(DeviceError::Unsupported(format!(
                "{method} on a {:?} device",
                self.info.kind
            )));
        }
        if self.info.read_only {
            return Err(DeviceError::ReadOnly);
        }
        self.started = None;
        match self.info.kind {
            DeviceKind::Nvme => self.nvme_start(method)?,
            DeviceKind::Ata => self.ata_start(method)?,
            DeviceKind::Scsi => self.scsi_start(method)?,
            DeviceKind::Plain => unreachable_plain()?,
        }
        self.started = Some(method);
        self.drop_cache();
        Ok(())
    }

    fn progress(&mut self) -> Result<EraseProgress, DeviceError> {
        let progress = match self.started {
            None => {
                return Err(DeviceError::Command(
                    "progress asked before an erase was started".into(),
                ));
            }
            Some(EraseMethod::NvmeSanitizeCrypto | EraseMethod::NvmeSanitizeBlock) => {
                self.nvme_progress()?
            }
            Some(
                EraseMethod::ScsiSanitizeCrypto
                | EraseMethod::ScsiSanitizeBlock
                | EraseMethod::ScsiSanitizeOverwrite,
            ) => self.scsi_progress()?,
            // Format NVM and ATA SECURITY ERASE UNIT completed before start() returned.
            Some(_) => EraseProgress::Done,
        };
        if progress == EraseProgress::Done {
            self.drop_cache();
        }
        Ok(progress)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.io.read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        if self.info.read_only {
            return Err(DeviceError::ReadOnly);
        }
        self.io.write_at(offset, buf)
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        self.io.flush()
    }
}

/// Plain devices have no methods, so `start` has rejected every method before this point.
fn unreachable_plain() -> Result<(), DeviceError> {
    Err(DeviceError::Unsupported(
        "a plain block device has no device erase".into(),
    ))
}

#[cfg(test)]
mod loop_tests;
#[cfg(test)]
mod tests;
