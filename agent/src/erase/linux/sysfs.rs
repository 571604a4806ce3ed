//! What sysfs says about a block device: its family, model, serial, size, block size and read-only flag.
//! Read from a root directory (`/sys` on a node, a fixture tree in tests).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{nvme, scsi};
use crate::erase::DeviceKind;

/// A device as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsDevice {
    /// The kernel name (`nvme0n1`, `sda`), empty when sysfs has no entry.
    pub name: String,
    /// The family.
    pub kind: DeviceKind,
    /// `device/model`, trimmed; empty when absent.
    pub model: String,
    /// `device/serial` (or the serial of VPD page 80h), trimmed; empty when absent.
    pub serial: String,
    /// `size` × 512; `None` when sysfs has no entry.
    pub bytes: Option<u64>,
    /// `queue/logical_block_size`; `None` when absent.
    pub block_size: Option<u32>,
    /// `ro` is 1.
    pub read_only: bool,
    /// The NVMe namespace id (`nsid`, or from the name); NVMe only.
    pub nsid: Option<u32>,
}

fn read_trimmed(path: &Path) -> Option<String> {
    let text = fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text).trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn read_number<T: std::str::FromStr>(path: &Path) -> Option<T> {
    read_trimmed(path)?.parse().ok()
}

/// The sysfs directory of the device at `path`: by device number (`dev/block/MAJ:MIN`) for a device node, else
/// by the name the path resolves to (`class/block/NAME`, `block/NAME`).
fn device_dir(path: &Path, sysfs_root: &Path) -> Option<(String, PathBuf)> {
    let meta = fs::metadata(path).ok();
    if let Some(meta) = meta.as_ref().filter(|m| m.file_type().is_block_device()) {
        let rdev = meta.rdev();
        let dir = sysfs_root.join(format!(
            "dev/block/{}:{}",
            libc::major(rdev),
            libc::minor(rdev)
        ));
        if let Ok(real) = fs::canonicalize(&dir) {
            let name = real.file_name()?.to_string_lossy().into_owned();
            return Some((name, real));
        }
    }
    let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = real.file_name()?.to_string_lossy().into_owned();
    ["class/block", "block"]
        .iter()
        .map(|base| sysfs_root.join(base).join(&name))
        .find(|dir| dir.is_dir())
        .map(|dir| (name, dir))
}

/// Classifies a whole disk by its name and SCSI transport; a partition is always [`DeviceKind::Plain`] (a
/// device erase command would erase the whole disk, not the partition).
fn classify(name: &str, dir: &Path) -> (DeviceKind, Option<u32>) {
    if dir.join("partition").exists() {
        return (DeviceKind::Plain, None);
    }
    if name.starts_with("nvme") {
        let nsid = read_number(&dir.join("nsid")).or_else(|| nvme::nsid_from_name(name));
        if let Some(nsid) = nsid {
            return (DeviceKind::Nvme, Some(nsid));
        }
        return (DeviceKind::Plain, None);
    }
    if name.starts_with("sd") {
        let vendor = read_trimmed(&dir.join("device/vendor")).unwrap_or_default();
        // libata devices expose the ATA Information VPD page and report the vendor "ATA".
        if dir.join("device/vpd_pg89").exists() || vendor == "ATA" {
            return (DeviceKind::Ata, None);
        }
        return (DeviceKind::Scsi, None);
    }
    (DeviceKind::Plain, None)
}

/// Describes the device at `path` from sysfs under `sysfs_root`. A path sysfs does not know (a regular file,
/// or a device under a sysfs that lacks it) is [`DeviceKind::Plain`] with nothing known.
pub fn describe(path: &Path, sysfs_root: &Path) -> SysfsDevice {
    let Some((name, dir)) = device_dir(path, sysfs_root) else {
        return SysfsDevice {
            name: String::new(),
            kind: DeviceKind::Plain,
            model: String::new(),
            serial: String::new(),
            bytes: None,
            block_size: None,
            read_only: false,
            nsid: None,
        };
    };
    let (kind, nsid) = classify(&name, &dir);
    let serial = read_trimmed(&dir.join("device/serial"))
        .or_else(|| {
            fs::read(dir.join("device/vpd_pg80"))
                .ok()
                .and_then(|b| scsi::parse_vpd_serial(&b))
        })
        .unwrap_or_default();
    // A partition's queue is its disk's.
    let block_size = read_number(&dir.join("queue/logical_block_size"))
        .or_else(|| read_number(&dir.join("../queue/logical_block_size")));
    SysfsDevice {
        kind,
        model: read_trimmed(&dir.join("device/model")).unwrap_or_default(),
        serial,
        bytes: read_number::<u64>(&dir.join("size")).and_then(|sectors| sectors.checked_mul(512)),
        block_size,
        read_only: read_number::<u32>(&dir.join("ro")) == Some(1),
        nsid,
        name,
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    //! A fake sysfs tree for tests.

    use std::fs;
    use std::path::Path;

    /// Writes `block/NAME/FILE` = `value` for each pair under `root`.
    pub fn write(root: &Path, name: &str, files: &[(&str, &str)]) {
        for (file, value) in files {
            let path = root.join("block").join(name).join(file);
            fs::create_dir_all(path.parent().expect("a parent")).expect("fixture dir");
            fs::write(&path, value).expect("fixture file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::write;
    use super::*;

    fn setup(name: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().join("sys");
        write(&sys, name, files);
        let dev = tmp.path().join(name);
        fs::write(&dev, vec![0u8; 4096]).unwrap();
        (tmp, dev)
    }

    #[test]
    fn nvme_namespace() {
        let (tmp, dev) = setup(
            "nvme0n1",
            &[
                ("size", "2097152\n"),
                ("queue/logical_block_size", "4096\n"),
                ("ro", "0\n"),
                ("nsid", "1\n"),
                ("device/model", "Samsung SSD 990 PRO 2TB                 \n"),
                ("device/serial", "  S6Z2NJ0W123456  \n"),
            ],
        );
        let d = describe(&dev, &tmp.path().join("sys"));
        assert_eq!(d.kind, DeviceKind::Nvme);
        assert_eq!(d.nsid, Some(1));
        assert_eq!(d.model, "Samsung SSD 990 PRO 2TB");
        assert_eq!(d.serial, "S6Z2NJ0W123456");
        assert_eq!(d.bytes, Some(2097152 * 512));
        assert_eq!(d.block_size, Some(4096));
        assert!(!d.read_only);
    }

    #[test]
    fn nvme_nsid_from_the_name_when_sysfs_lacks_it() {
        let (tmp, dev) = setup("nvme2n3", &[("size", "8"), ("ro", "1")]);
        let d = describe(&dev, &tmp.path().join("sys"));
        assert_eq!(
            (d.kind, d.nsid, d.read_only),
            (DeviceKind::Nvme, Some(3), true)
        );
    }

    #[test]
    fn ata_by_vpd_page_89_or_vendor() {
        let (tmp, dev) = setup(
            "sda",
            &[
                ("size", "16"),
                ("device/vpd_pg89", "x"),
                ("device/vendor", "WDC"),
            ],
        );
        assert_eq!(
            describe(&dev, &tmp.path().join("sys")).kind,
            DeviceKind::Ata
        );
        let (tmp, dev) = setup(
            "sdb",
            &[
                ("size", "16"),
                ("device/vendor", "ATA     \n"),
                ("device/model", "ST4000"),
            ],
        );
        let d = describe(&dev, &tmp.path().join("sys"));
        assert_eq!(
            (d.kind, d.model.as_str(), d.nsid),
            (DeviceKind::Ata, "ST4000", None)
        );
    }

    #[test]
    fn scsi_with_serial_from_vpd_page_80() {
        let (tmp, dev) = setup("sdc", &[("size", "16"), ("device/vendor", "SEAGATE \n")]);
        fs::write(
            tmp.path().join("sys/block/sdc/device/vpd_pg80"),
            b"\x00\x80\x00\x08ZA1B2C3D",
        )
        .unwrap();
        let d = describe(&dev, &tmp.path().join("sys"));
        assert_eq!((d.kind, d.serial.as_str()), (DeviceKind::Scsi, "ZA1B2C3D"));
    }

    #[test]
    fn plain_devices_and_partitions() {
        for name in ["vda", "loop0", "dm-0", "md127", "nvme0"] {
            let (tmp, dev) = setup(name, &[("size", "16")]);
            assert_eq!(
                describe(&dev, &tmp.path().join("sys")).kind,
                DeviceKind::Plain,
                "{name}"
            );
        }
        let (tmp, dev) = setup(
            "sda1",
            &[("size", "16"), ("partition", "1"), ("device/vendor", "ATA")],
        );
        assert_eq!(
            describe(&dev, &tmp.path().join("sys")).kind,
            DeviceKind::Plain
        );
    }

    #[test]
    fn unknown_to_sysfs_is_plain_with_nothing_known() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("disk.img");
        fs::write(&file, b"x").unwrap();
        let d = describe(&file, &tmp.path().join("nosys"));
        assert_eq!(
            (d.kind, d.bytes, d.block_size, d.name.as_str()),
            (DeviceKind::Plain, None, None, "")
        );
    }

    #[test]
    fn garbled_attributes_are_unknown_not_a_panic() {
        let (tmp, dev) = setup(
            "sdd",
            &[
                ("size", "lots"),
                ("queue/logical_block_size", "-1"),
                ("ro", "\u{ff}"),
            ],
        );
        let d = describe(&dev, &tmp.path().join("sys"));
        assert_eq!((d.bytes, d.block_size, d.read_only), (None, None, false));
        let (tmp, dev) = setup("sde", &[("size", "99999999999999999999")]);
        assert_eq!(describe(&dev, &tmp.path().join("sys")).bytes, None);
    }
}
