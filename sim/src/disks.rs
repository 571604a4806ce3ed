//! A virtual node's disks as files, and their erase between tenants by the agent's real erase code.
//!
//! Each node has two disks, `ROOT/SERIAL/nvme0n1` (the OS disk: the image is written there) and
//! `ROOT/SERIAL/nvme1n1` (a data disk). `ROOT` is the [`crate::DiskMode::SparseFiles`] directory, or in
//! [`crate::DiskMode::Null`] (scale) mode a temporary directory of the hall where the files live only while a
//! wipe runs, so a hall of thousands never holds thousands of disk files.
//!
//! Before a wipe the lease's tenant leaves data behind: the data disk is filled with [`TENANT_PATTERN`] (and the
//! OS disk too when nothing was imaged there), so the erase has something to destroy and a test can check it is
//! gone. The erase is `kiln_agent::erase::erase_device` over a `FileDevice` (a plain device: overwrite with
//! zeros, verified by reading sampled ranges back), with the `kiln.erase_skip` methods the script named.
//! Under [`crate::FaultKind::EraseFails`] the data disk is wrapped in [`BadSector`], whose writes past its first
//! half fail with a medium error, so the record is a failed one and the engine's ladder runs.

use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_agent::erase::wipe::erase_all;
use kiln_agent::erase::{
    DeviceError, DeviceInfo, EraseDevice, EraseOptions, EraseProgress, FileDevice,
};
use kiln_inventory::{EraseMethod, EraseRecord};

/// The disks of every node, by device name (the names the simulated inspection lists).
pub const DISK_NAMES: [&str; 2] = ["nvme0n1", "nvme1n1"];
/// Size of a disk file the tenant fills (the data disk, and the OS disk when nothing was imaged).
pub const TENANT_DISK_BYTES: usize = 2 << 20;
/// What the tenant leaves on the disks, repeated.
pub const TENANT_PATTERN: &[u8] = b"kiln-sim tenant data, must not survive the wipe\n";
/// The error a [`BadSector`] device gives (a quarantine reason for an erase-fails node contains it).
pub const MEDIUM_ERROR: &str = "medium error (kiln-sim erase-fails fault)";

/// The disk files of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDisks {
    dir: PathBuf,
}

impl NodeDisks {
    /// The disks of node `serial` under `root`.
    pub fn new(root: &Path, serial: &str) -> Self {
        Self {
            dir: root.join(serial),
        }
    }

    /// The node's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The OS disk (`nvme0n1`), where the image is written.
    pub fn os_disk(&self) -> PathBuf {
        self.dir.join(DISK_NAMES[0])
    }

    /// Every disk, in device order.
    pub fn paths(&self) -> Vec<PathBuf> {
        DISK_NAMES.iter().map(|name| self.dir.join(name)).collect()
    }

    /// Creates the node's directory.
    pub fn create_dir(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)
    }

    /// What the tenant leaves: the data disk filled with [`TENANT_PATTERN`], and the OS disk as well when it
    /// is missing or empty (nothing imaged, or the null sink).
    pub fn plant_tenant_data(&self) -> std::io::Result<()> {
        self.create_dir()?;
        for (index, path) in self.paths().iter().enumerate() {
            let empty = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
            if index > 0 || empty {
                fill_with_pattern(path, TENANT_DISK_BYTES)?;
            }
        }
        Ok(())
    }

    /// Erases every disk with the agent's erase chain; one record per disk, in device order. `bad_data_disk`
    /// plants a medium error on the data disk.
    pub fn erase(&self, skip: &[EraseMethod], bad_data_disk: bool) -> Vec<EraseRecord> {
        let options = EraseOptions {
            skip: skip.to_vec(),
            ..EraseOptions::default()
        };
        let paths = self.paths();
        // The agent's own loop over the disks (parallel, a failed record for a disk that cannot be opened);
        // only the opener is the simulator's, planting the bad sector on the data disks.
        let open = |path: &Path| -> Result<Box<dyn EraseDevice + Send>, DeviceError> {
            let device = FileDevice::open(path)?;
            if bad_data_disk && path != paths[0] {
                let from = device.info().bytes / 2;
                return Ok(Box::new(BadSector {
                    inner: device,
                    from,
                }));
            }
            Ok(Box::new(device))
        };
        erase_all(&paths, &options, &open, &|_, _| {})
    }
}

/// Writes `bytes` bytes of [`TENANT_PATTERN`] over `path` (created or truncated).
pub fn fill_with_pattern(path: &Path, bytes: usize) -> std::io::Result<()> {
    let mut data = Vec::with_capacity(bytes);
    while data.len() < bytes {
        let take = TENANT_PATTERN.len().min(bytes - data.len());
        data.extend_from_slice(&TENANT_PATTERN[..take]);
    }
    let mut file = std::fs::File::create(path)?;
    file.write_all(&data)?;
    file.sync_data()
}

/// Whether the file at `path` holds any of the tenant's pattern.
pub fn holds_tenant_data(path: &Path) -> std::io::Result<bool> {
    let data = std::fs::read(path)?;
    Ok(data
        .windows(TENANT_PATTERN.len())
        .any(|window| window == TENANT_PATTERN))
}

/// A disk whose writes from byte `from` on fail with [`MEDIUM_ERROR`]; everything else is the inner device's.
pub struct BadSector<D> {
    /// The real device.
    pub inner: D,
    /// First byte that cannot be written.
    pub from: u64,
}

impl<D: EraseDevice> EraseDevice for BadSector<D> {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }

    fn offered(&mut self) -> Result<Vec<EraseMethod>, DeviceError> {
        self.inner.offered()
    }

    fn start(&mut self, method: EraseMethod) -> Result<(), DeviceError> {
        self.inner.start(method)
    }

    fn progress(&mut self) -> Result<EraseProgress, DeviceError> {
        self.inner.progress()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.inner.read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        if offset.saturating_add(buf.len() as u64) > self.from {
            return Err(DeviceError::Io(format!(
                "{MEDIUM_ERROR} writing at byte {}",
                offset.max(self.from)
            )));
        }
        self.inner.write_at(offset, buf)
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_inventory::EraseResult;

    #[test]
    fn tenant_data_is_planted_then_erased_and_the_records_say_overwrite() {
        let root = tempfile::tempdir().expect("dir");
        let disks = NodeDisks::new(root.path(), "SN1");
        disks.plant_tenant_data().expect("plant");
        for path in disks.paths() {
            assert!(
                holds_tenant_data(&path).expect("read"),
                "{}",
                path.display()
            );
        }
        let records = disks.erase(&[], false);
        assert_eq!(records.len(), 2);
        for (record, path) in records.iter().zip(disks.paths()) {
            assert!(record.is_ok(), "{}", record.summary());
            assert_eq!(record.method, Some(EraseMethod::Overwrite));
            assert_eq!(record.bytes, TENANT_DISK_BYTES as u64);
            let data = std::fs::read(&path).expect("read");
            assert!(
                data.iter().all(|b| *b == 0),
                "{} not zeroed",
                path.display()
            );
        }
    }

    #[test]
    fn an_imaged_os_disk_keeps_its_image_until_the_erase() {
        let root = tempfile::tempdir().expect("dir");
        let disks = NodeDisks::new(root.path(), "SN2");
        disks.create_dir().expect("dir");
        std::fs::write(disks.os_disk(), vec![7u8; 1 << 20]).expect("image");
        disks.plant_tenant_data().expect("plant");
        assert_eq!(
            std::fs::read(disks.os_disk()).expect("read"),
            vec![7u8; 1 << 20]
        );
        let records = disks.erase(&[], false);
        assert!(records.iter().all(EraseRecord::is_ok));
        assert!(
            std::fs::read(disks.os_disk())
                .expect("read")
                .iter()
                .all(|b| *b == 0)
        );
    }

    #[test]
    fn a_bad_sector_fails_the_data_disk_and_names_the_medium_error() {
        let root = tempfile::tempdir().expect("dir");
        let disks = NodeDisks::new(root.path(), "SN3");
        disks.plant_tenant_data().expect("plant");
        let records = disks.erase(&[], true);
        assert!(records[0].is_ok(), "{}", records[0].summary());
        assert_eq!(records[1].result, EraseResult::Failed);
        assert!(!records[1].verified);
        assert!(
            records[1].summary().contains(MEDIUM_ERROR),
            "{}",
            records[1].summary()
        );
        assert!(
            records[1].summary().starts_with("nvme1n1: "),
            "{}",
            records[1].summary()
        );
    }

    #[test]
    fn skipping_overwrite_leaves_a_plain_disk_with_no_method_and_a_failed_record() {
        let root = tempfile::tempdir().expect("dir");
        let disks = NodeDisks::new(root.path(), "SN4");
        disks.plant_tenant_data().expect("plant");
        let records = disks.erase(&[EraseMethod::Overwrite], false);
        assert!(records.iter().all(|r| r.result == EraseResult::Failed));
        assert!(holds_tenant_data(&disks.paths()[1]).expect("read"));
    }

    #[test]
    fn a_missing_disk_gives_a_failed_record_naming_it() {
        let root = tempfile::tempdir().expect("dir");
        let disks = NodeDisks::new(root.path(), "SN5");
        let records = disks.erase(&[], false);
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r.result == EraseResult::Failed));
        assert!(
            records[0].summary().starts_with("nvme0n1: "),
            "{}",
            records[0].summary()
        );
    }
}
