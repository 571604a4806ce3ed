//! [`FakeDevice`]: an in-memory disk for the erase chain's tests and kiln-sim's, with knobs for every fault the
//! chain must handle. Device methods act on the content the way real ones look from the host: block erase and
//! format zero it, a crypto erase turns it into fresh random bytes.

use std::collections::HashMap;
use std::path::PathBuf;

use kiln_model::EraseMethod;
use rand::{RngCore, SeedableRng};

use super::device::{DeviceError, DeviceInfo, DeviceKind, EraseDevice, EraseProgress};

/// An in-memory device. Build it with [`FakeDevice::new`] and the `with_*` knobs.
#[derive(Debug, Clone)]
pub struct FakeDevice {
    info: DeviceInfo,
    /// The device's content.
    pub content: Vec<u8>,
    offered: Vec<EraseMethod>,
    offered_error: Option<DeviceError>,
    start_errors: HashMap<EraseMethod, DeviceError>,
    failed_progress: HashMap<EraseMethod, String>,
    never_completes: Vec<EraseMethod>,
    progress_steps: u32,
    steps_left: u32,
    writes_before_gone: Option<u64>,
    writes: u64,
    io_error_at: Option<u64>,
    crypto_noop: bool,
    block_leaves_data: bool,
    frozen: bool,
    running: Option<EraseMethod>,
    /// Methods started, in order.
    pub started: Vec<EraseMethod>,
    rng: rand::rngs::StdRng,
}

impl FakeDevice {
    /// A device of `kind` holding `bytes` bytes of a non-zero pattern, offering every method of its family.
    pub fn new(kind: DeviceKind, bytes: usize) -> Self {
        let name = match kind {
            DeviceKind::Nvme => "nvme0n1",
            DeviceKind::Ata => "sda",
            DeviceKind::Scsi => "sdb",
            DeviceKind::Plain => "vda",
        };
        Self {
            info: DeviceInfo {
                path: PathBuf::from("/dev").join(name),
                kind,
                model: "FAKE-DISK".into(),
                serial: format!("FAKE-{name}"),
                bytes: bytes as u64,
                block_size: 512,
                read_only: false,
            },
            content: (0..bytes).map(|i| (i % 251) as u8 + 1).collect(),
            offered: kind.chain().to_vec(),
            offered_error: None,
            start_errors: HashMap::new(),
            failed_progress: HashMap::new(),
            never_completes: Vec::new(),
            progress_steps: 0,
            steps_left: 0,
            writes_before_gone: None,
            writes: 0,
            io_error_at: None,
            crypto_noop: false,
            block_leaves_data: false,
            frozen: false,
            running: None,
            started: Vec::new(),
            rng: rand::rngs::StdRng::seed_from_u64(15),
        }
    }

    /// The device file name it reports.
    pub fn with_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.info.path = path.into();
        self
    }

    /// Offers only `methods` (identify data).
    pub fn with_offered(mut self, methods: &[EraseMethod]) -> Self {
        self.offered = methods.to_vec();
        self
    }

    /// Identify fails with `err`.
    pub fn with_offered_error(mut self, err: DeviceError) -> Self {
        self.offered_error = Some(err);
        self
    }

    /// Starting `method` fails with `err`.
    pub fn with_start_error(mut self, method: EraseMethod, err: DeviceError) -> Self {
        self.start_errors.insert(method, err);
        self
    }

    /// `method` starts, then the device reports it failed with `reason`.
    pub fn with_failed_progress(mut self, method: EraseMethod, reason: &str) -> Self {
        self.failed_progress.insert(method, reason.into());
        self
    }

    /// `method` starts and never completes.
    pub fn with_never_completing(mut self, method: EraseMethod) -> Self {
        self.never_completes.push(method);
        self
    }

    /// Every device erase answers `Running` `steps` times before it is done.
    pub fn with_progress_steps(mut self, steps: u32) -> Self {
        self.progress_steps = steps;
        self
    }

    /// The device disappears after `writes` successful writes (every later call fails with `Gone`).
    pub fn with_gone_after_writes(mut self, writes: u64) -> Self {
        self.writes_before_gone = Some(writes);
        self
    }

    /// The device is read-only (the kernel says so, and writes fail).
    pub fn with_read_only(mut self) -> Self {
        self.info.read_only = true;
        self
    }

    /// Reads and writes covering byte `offset` fail with an I/O error.
    pub fn with_io_error_at(mut self, offset: u64) -> Self {
        self.io_error_at = Some(offset);
        self
    }

    /// Crypto erases report success and leave the content as it was.
    pub fn with_crypto_noop(mut self) -> Self {
        self.crypto_noop = true;
        self
    }

    /// Block erases (sanitize block, format user data, ATA erase, SCSI block/overwrite) report success and leave
    /// non-zero data behind.
    pub fn with_block_leaving_data(mut self) -> Self {
        self.block_leaves_data = true;
        self
    }

    /// ATA security is frozen.
    pub fn with_frozen(mut self) -> Self {
        self.frozen = true;
        self
    }

    fn gone(&self) -> Option<DeviceError> {
        match self.writes_before_gone {
            Some(limit) if self.writes >= limit => Some(DeviceError::Gone(format!(
                "{} was removed",
                self.info.path.display()
            ))),
            _ => None,
        }
    }

    fn check_io(&self, offset: u64, len: usize, what: &str) -> Result<(), DeviceError> {
        if let Some(err) = self.gone() {
            return Err(err);
        }
        if let Some(bad) = self.io_error_at
            && (offset..offset + len as u64).contains(&bad)
        {
            return Err(DeviceError::Io(format!(
                "{what} at offset {bad}: medium error"
            )));
        }
        if offset + len as u64 > self.info.bytes {
            return Err(DeviceError::Io(format!(
                "{what} {len} bytes at offset {offset}: past the end"
            )));
        }
        Ok(())
    }

    /// What `method` does to the content when it completes.
    fn apply(&mut self, method: EraseMethod) {
        if method.is_crypto() {
            if !self.crypto_noop {
                self.rng.fill_bytes(&mut self.content);
            }
        } else {
            self.content.fill(0);
            if self.block_leaves_data {
                let half = self.content.len() / 2;
                self.content[half] = 0xa5;
            }
        }
    }
}

impl EraseDevice for FakeDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn offered(&mut self) -> Result<Vec<EraseMethod>, DeviceError> {
        if let Some(err) = self.gone().or_else(|| self.offered_error.clone()) {
            return Err(err);
        }
        Ok(self.offered.clone())
    }

    fn start(&mut self, method: EraseMethod) -> Result<(), DeviceError> {
        self.started.push(method);
        if let Some(err) = self.gone() {
            return Err(err);
        }
        if self.info.read_only {
            return Err(DeviceError::ReadOnly);
        }
        if self.frozen && self.info.kind == DeviceKind::Ata {
            return Err(DeviceError::Frozen(
                "the BIOS froze ATA security at boot; a power cycle may unfreeze it".into(),
            ));
        }
        if let Some(err) = self.start_errors.get(&method) {
            return Err(err.clone());
        }
        self.running = Some(method);
        self.steps_left = self.progress_steps;
        Ok(())
    }

    fn progress(&mut self) -> Result<EraseProgress, DeviceError> {
        if let Some(err) = self.gone() {
            return Err(err);
        }
        let Some(method) = self.running else {
            return Ok(EraseProgress::Done);
        };
        if self.never_completes.contains(&method) {
            return Ok(EraseProgress::Running(Some(0.0)));
        }
        if self.steps_left > 0 {
            self.steps_left -= 1;
            let done = 1.0 - f64::from(self.steps_left + 1) / f64::from(self.progress_steps + 1);
            return Ok(EraseProgress::Running(Some(done)));
        }
        self.running = None;
        if let Some(reason) = self.failed_progress.get(&method) {
            return Ok(EraseProgress::Failed(reason.clone()));
        }
        self.apply(method);
        Ok(EraseProgress::Done)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.check_io(offset, buf.len(), "reading")?;
        let at = offset as usize;
        buf.copy_from_slice(&self.content[at..at + buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        if self.info.read_only {
            return Err(DeviceError::ReadOnly);
        }
        self.check_io(offset, buf.len(), "writing")?;
        let at = offset as usize;
        self.content[at..at + buf.len()].copy_from_slice(buf);
        self.writes += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        self.gone().map_or(Ok(()), Err)
    }
}
