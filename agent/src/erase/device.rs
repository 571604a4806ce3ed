//! The device seam of the erase chain: what [`super::chain`] needs from one disk. The kernel implementation
//! (`linux.rs`: sysfs, `pread`/`pwrite`, NVMe admin ioctls and SG_IO) and the fake device of the tests
//! (`fake.rs`) both implement [`EraseDevice`].

use std::path::PathBuf;

use kiln_model::EraseMethod;

/// The device family: which erase methods can exist on it at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// An NVMe namespace (`nvme0n1`): sanitize, format, overwrite.
    Nvme,
    /// A SATA drive behind libata (`sda` with an ATA transport): ATA security erase, overwrite.
    Ata,
    /// A SAS/SCSI disk (`sdb` without ATA): SANITIZE, overwrite.
    Scsi,
    /// Anything else (virtio, loop, dm, a file): overwrite only.
    Plain,
}

impl DeviceKind {
    /// The device's own erase methods in the order the chain tries them, strongest first; overwrite is always
    /// added at the end by the chain.
    pub fn chain(self) -> &'static [EraseMethod] {
        use EraseMethod::*;
        match self {
            DeviceKind::Nvme => &[
                NvmeSanitizeCrypto,
                NvmeSanitizeBlock,
                NvmeFormatCrypto,
                NvmeFormatUserData,
            ],
            DeviceKind::Ata => &[AtaSecurityEraseEnhanced, AtaSecurityErase],
            DeviceKind::Scsi => &[ScsiSanitizeCrypto, ScsiSanitizeBlock, ScsiSanitizeOverwrite],
            DeviceKind::Plain => &[],
        }
    }
}

/// What is known about a device before anything is done to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device file (`/dev/nvme0n1`).
    pub path: PathBuf,
    /// The family.
    pub kind: DeviceKind,
    /// Model string, empty when unknown.
    pub model: String,
    /// Serial, empty when unknown.
    pub serial: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Logical block size in bytes (512 or 4096); reads and writes are multiples of it.
    pub block_size: u32,
    /// The kernel marks the device read-only.
    pub read_only: bool,
}

/// How an asynchronous device erase (NVMe or SCSI sanitize) is going.
#[derive(Debug, Clone, PartialEq)]
pub enum EraseProgress {
    /// Still running; the fraction done (0.0–1.0) when the device says.
    Running(Option<f64>),
    /// Finished successfully.
    Done,
    /// The device says it failed, with its reason.
    Failed(String),
}

/// Why a device operation failed. Every variant names its cause in words; the chain decides whether to fall
/// through to the next method ([`DeviceError::falls_through`]) or give up on the device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The device does not offer this method (identify data, or the command was rejected as invalid).
    #[error("not supported by the device: {0}")]
    Unsupported(String),
    /// ATA security is frozen (the BIOS froze it at boot): a power cycle through the BMC can unfreeze it.
    #[error("security frozen: {0}")]
    Frozen(String),
    /// ATA security is locked (a password is set that kiln does not know).
    #[error("security locked: {0}")]
    Locked(String),
    /// The device rejected the command with a status.
    #[error("command failed: {0}")]
    Command(String),
    /// The device is read-only.
    #[error("device is read-only")]
    ReadOnly,
    /// The device went away (removed, or the controller reset and did not come back).
    #[error("device disappeared: {0}")]
    Gone(String),
    /// An I/O error reading or writing.
    #[error("I/O error: {0}")]
    Io(String),
    /// An asynchronous erase did not finish in time.
    #[error("did not complete within {0} s")]
    Timeout(u64),
}

impl DeviceError {
    /// Whether the chain should try the next method after this error: yes for a method the device lacks or
    /// refused; no for a device that is gone or read-only (no method can work).
    pub fn falls_through(&self) -> bool {
        !matches!(self, DeviceError::Gone(_) | DeviceError::ReadOnly)
    }
}

/// One disk, as the erase chain uses it.
pub trait EraseDevice {
    /// What is known about the device.
    fn info(&self) -> &DeviceInfo;

    /// Which of the family's methods ([`DeviceKind::chain`]) the device says it offers (identify data). A method
    /// not listed is recorded as tried with "not supported by the device" and skipped.
    fn offered(&mut self) -> Result<Vec<EraseMethod>, DeviceError>;

    /// Starts a device erase method (never [`EraseMethod::Overwrite`], which the chain does through
    /// [`EraseDevice::write_at`]). Synchronous methods (format, ATA security erase) are done when this returns;
    /// sanitize returns at once and is followed with [`EraseDevice::progress`].
    fn start(&mut self, method: EraseMethod) -> Result<(), DeviceError>;

    /// How the last started erase is going; synchronous methods answer [`EraseProgress::Done`].
    fn progress(&mut self) -> Result<EraseProgress, DeviceError>;

    /// Reads `buf.len()` bytes at `offset` (multiples of the block size).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError>;

    /// Writes `buf` at `offset` (multiples of the block size).
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError>;

    /// Flushes written data to the media.
    fn flush(&mut self) -> Result<(), DeviceError>;
}
