//! [`FileDevice`]: a regular file or a plain block device (virtio, loop, dm), erased by overwrite only; and
//! [`overwrite_zeros`], the overwrite every device's chain ends with (and `kiln bench erase` measures).
//!
//! Block devices are written with `O_DIRECT` from an aligned buffer, like `dd oflag=direct`, so the page cache
//! neither slows the overwrite nor answers the read-back; regular files (and block devices that refuse
//! `O_DIRECT`) are written through the page cache and synced once at the end.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use kiln_model::EraseMethod;

use super::device::{DeviceError, DeviceInfo, DeviceKind, EraseDevice, EraseProgress};
use super::verify::{AlignedBuf, BUFFER_ALIGN};

/// The size of one overwrite write.
pub const OVERWRITE_CHUNK: usize = 4 << 20;

/// A regular file or a plain block device.
pub struct FileDevice {
    info: DeviceInfo,
    /// Buffered descriptor: reads and writes that are not aligned for `direct`.
    file: File,
    /// `O_DIRECT` descriptor for aligned transfers (block devices only).
    direct: Option<File>,
}

/// Maps an I/O error at `offset` to the chain's error: a device that went away is [`DeviceError::Gone`], a write
/// refused as read-only is [`DeviceError::ReadOnly`].
pub fn map_io(err: &std::io::Error, what: &str, offset: u64, writing: bool) -> DeviceError {
    match err.raw_os_error() {
        Some(libc::ENOENT | libc::ENXIO | libc::ENODEV) => {
            DeviceError::Gone(format!("{what} at offset {offset}: {err}"))
        }
        Some(libc::EROFS | libc::EACCES | libc::EPERM) if writing => DeviceError::ReadOnly,
        _ => DeviceError::Io(format!("{what} at offset {offset}: {err}")),
    }
}

impl FileDevice {
    /// Opens `path` for reading and writing (read-only when writing is refused: the chain then reports it).
    pub fn open(path: &Path) -> Result<Self, DeviceError> {
        let open_err = |err: std::io::Error| match err.kind() {
            ErrorKind::NotFound => DeviceError::Gone(format!("{}: {err}", path.display())),
            _ => match map_io(&err, "opening", 0, false) {
                DeviceError::Io(_) => DeviceError::Io(format!("opening {}: {err}", path.display())),
                other => other,
            },
        };
        let (file, writable) = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => (file, true),
            Err(err) if matches!(err.raw_os_error(), Some(libc::EROFS | libc::EACCES)) => {
                (File::open(path).map_err(open_err)?, false)
            }
            Err(err) => return Err(open_err(err)),
        };
        let meta = file.metadata().map_err(open_err)?;
        let is_block = meta.file_type().is_block_device();
        let bytes = if is_block {
            use std::io::{Seek, SeekFrom};
            (&file)
                .seek(SeekFrom::End(0))
                .map_err(|err| map_io(&err, "finding the size", 0, false))?
        } else if meta.is_file() {
            meta.len()
        } else {
            return Err(DeviceError::Unsupported(format!(
                "{} is neither a regular file nor a block device",
                path.display()
            )));
        };
        let direct = (is_block && writable)
            .then(|| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(path)
                    .ok()
            })
            .flatten();
        let (model, serial) = sysfs_identity(path);
        Ok(Self {
            info: DeviceInfo {
                path: path.to_path_buf(),
                kind: DeviceKind::Plain,
                model,
                serial,
                bytes,
                block_size: 512,
                read_only: !writable,
            },
            file,
            direct,
        })
    }

    /// Whether aligned transfers bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The descriptor for a transfer of `len` bytes from `addr` at `offset`: the `O_DIRECT` one when all three
    /// are aligned.
    fn descriptor(&self, addr: usize, len: usize, offset: u64) -> &File {
        let align = BUFFER_ALIGN as u64;
        match &self.direct {
            Some(direct)
                if addr.is_multiple_of(BUFFER_ALIGN)
                    && (len as u64).is_multiple_of(align)
                    && offset.is_multiple_of(align) =>
            {
                direct
            }
            _ => &self.file,
        }
    }
}

/// Model and serial of a block device from sysfs (`/sys/class/block/NAME/device/{model,serial}`), empty for a
/// regular file.
fn sysfs_identity(path: &Path) -> (String, String) {
    let Some(name) = path
        .canonicalize()
        .ok()
        .filter(|p| p.starts_with("/dev"))
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    else {
        return (String::new(), String::new());
    };
    let read = |attr: &str| {
        std::fs::read_to_string(format!("/sys/class/block/{name}/device/{attr}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    (read("model"), read("serial"))
}

impl EraseDevice for FileDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn offered(&mut self) -> Result<Vec<EraseMethod>, DeviceError> {
        Ok(Vec::new())
    }

    fn start(&mut self, method: EraseMethod) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported(format!(
            "{method} on a plain device"
        )))
    }

    fn progress(&mut self) -> Result<EraseProgress, DeviceError> {
        Ok(EraseProgress::Done)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let fd = self.descriptor(buf.as_ptr() as usize, buf.len(), offset);
        fd.read_exact_at(buf, offset).map_err(|err| {
            if err.kind() == ErrorKind::UnexpectedEof {
                DeviceError::Io(format!(
                    "reading {} bytes at offset {offset}: the device ends first",
                    buf.len()
                ))
            } else {
                map_io(&err, "reading", offset, false)
            }
        })
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        if self.info.read_only {
            return Err(DeviceError::ReadOnly);
        }
        let fd = self.descriptor(buf.as_ptr() as usize, buf.len(), offset);
        fd.write_all_at(buf, offset)
            .map_err(|err| map_io(&err, "writing", offset, true))
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        self.file
            .sync_data()
            .map_err(|err| map_io(&err, "flushing", 0, true))
    }
}

/// Writes zeros over every byte of `dev` in [`OVERWRITE_CHUNK`] writes from one aligned buffer, then flushes;
/// `progress` gets the bytes written so far after each write. Returns the bytes written.
pub fn overwrite_zeros(
    dev: &mut dyn EraseDevice,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, DeviceError> {
    let bytes = dev.info().bytes;
    let zeros = AlignedBuf::zeroed(OVERWRITE_CHUNK);
    let mut offset = 0u64;
    while offset < bytes {
        let len = (bytes - offset).min(OVERWRITE_CHUNK as u64) as usize;
        dev.write_at(offset, &zeros.as_slice()[..len])?;
        offset += len as u64;
        progress(offset);
    }
    dev.flush()?;
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_a_plain_device_overwritten_with_zeros() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("disk");
        let size = (9 << 20) + 512;
        std::fs::write(&path, vec![0x5au8; size]).expect("write");
        let mut dev = FileDevice::open(&path).expect("open");
        assert_eq!(dev.info().bytes, size as u64);
        assert_eq!(dev.info().kind, DeviceKind::Plain);
        assert!(!dev.info().read_only);
        assert!(!dev.is_direct(), "regular files go through the page cache");
        assert_eq!(dev.offered(), Ok(vec![]));
        assert!(matches!(
            dev.start(EraseMethod::NvmeSanitizeCrypto),
            Err(DeviceError::Unsupported(_))
        ));
        let mut seen = Vec::new();
        let written = overwrite_zeros(&mut dev, &mut |n| seen.push(n)).expect("overwrite");
        assert_eq!(written, size as u64);
        assert_eq!(seen, [4 << 20, 8 << 20, size as u64]);
        let content = std::fs::read(&path).expect("read");
        assert_eq!(content.len(), size);
        assert!(content.iter().all(|b| *b == 0));
        let mut tail = [1u8; 16];
        let err = dev
            .read_at(size as u64 - 8, &mut tail)
            .expect_err("past the end");
        assert!(err.to_string().contains("ends first"), "{err}");
    }

    #[test]
    fn missing_and_unusable_paths_are_named() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("nvme9n1");
        let Err(err) = FileDevice::open(&missing) else {
            panic!("a missing path opens");
        };
        assert!(matches!(err, DeviceError::Gone(_)), "{err}");
        assert!(err.to_string().contains("nvme9n1"), "{err}");
        let Err(err) = FileDevice::open(dir.path()) else {
            panic!("a directory opens");
        };
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn io_errors_map_to_the_chain_s_causes() {
        let err = |code| std::io::Error::from_raw_os_error(code);
        assert!(
            matches!(map_io(&err(libc::ENODEV), "writing", 4096, true), DeviceError::Gone(m) if m.contains("4096"))
        );
        assert!(matches!(
            map_io(&err(libc::ENXIO), "reading", 0, false),
            DeviceError::Gone(_)
        ));
        assert_eq!(
            map_io(&err(libc::EROFS), "writing", 0, true),
            DeviceError::ReadOnly
        );
        assert!(
            matches!(map_io(&err(libc::EIO), "writing", 8192, true), DeviceError::Io(m) if m.contains("8192"))
        );
    }
}
