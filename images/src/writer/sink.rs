//! Where an image is written: a block device or a file, with a capacity, sparse-aware positioned writes, and
//! the "mark bad" step that zeroes the first MiB after a failed write.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use super::WriteError;

/// Zero-skipping granularity for sparse writes.
const SPARSE_BLOCK_BYTES: usize = 64 * 1024;
/// Sequential writes are gathered into buffers of this size.
const WRITE_BUFFER_BYTES: usize = 4 << 20;
/// How much of the disk is zeroed when a write fails, so a half-written disk never boots.
pub const MARK_BAD_BYTES: u64 = 1 << 20;

/// The disk (or file standing in for one) an image is written to.
#[derive(Debug)]
pub struct Target {
    path: PathBuf,
    file: File,
    capacity: Option<u64>,
    reads_as_zero: bool,
    regular_file: bool,
    discard: bool,
}

impl Target {
    /// Opens `path`: a block device keeps its contents and its size is the capacity; a regular file (created if
    /// missing) is truncated to empty and may grow without limit.
    pub fn open(path: &Path) -> Result<Self, WriteError> {
        let io = |source| WriteError::Target {
            path: path.to_path_buf(),
            op: "opening",
            source,
        };
        let meta = std::fs::metadata(path);
        let is_block = meta
            .as_ref()
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false);
        if is_block {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(io)?;
            let capacity = file
                .seek(SeekFrom::End(0))
                .map_err(|source| WriteError::Target {
                    path: path.to_path_buf(),
                    op: "sizing",
                    source,
                })?;
            return Ok(Self {
                path: path.to_path_buf(),
                file,
                capacity: Some(capacity),
                reads_as_zero: false,
                regular_file: false,
                discard: false,
            });
        }
        Self::file(path, None)
    }

    /// A regular file standing in for a disk of `capacity` bytes (`None`: unlimited); truncated to empty.
    pub fn file(path: &Path, capacity: Option<u64>) -> Result<Self, WriteError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|source| WriteError::Target {
                path: path.to_path_buf(),
                op: "opening",
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            capacity,
            reads_as_zero: true,
            regular_file: true,
            discard: false,
        })
    }

    /// A target that discards what is written (`/dev/null`), for simulators and scale tests: the download,
    /// decoding and sha256 verification still run in full.
    pub fn null() -> Result<Self, WriteError> {
        let path = PathBuf::from("/dev/null");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| WriteError::Target {
                path: path.clone(),
                op: "opening",
                source,
            })?;
        Ok(Self {
            path,
            file,
            capacity: None,
            reads_as_zero: true,
            regular_file: false,
            discard: true,
        })
    }

    /// The target's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many bytes fit (`None`: a file with no limit).
    pub fn capacity(&self) -> Option<u64> {
        self.capacity
    }

    /// Fails with [`WriteError::DiskTooSmall`] when `needed` bytes do not fit.
    pub fn check_fits(&self, needed: u64) -> Result<(), WriteError> {
        match self.capacity {
            Some(capacity) if needed > capacity => Err(WriteError::DiskTooSmall {
                path: self.path.clone(),
                needed,
                capacity,
            }),
            _ => Ok(()),
        }
    }

    fn write_at(&self, data: &[u8], offset: u64) -> Result<(), WriteError> {
        self.check_fits(offset + data.len() as u64)?;
        self.file
            .write_all_at(data, offset)
            .map_err(|source| WriteError::Target {
                path: self.path.clone(),
                op: "writing",
                source,
            })
    }

    /// Writes `data` at `offset`; with `skip_zeros`, all-zero blocks are not written (the target must already
    /// read as zeros there). Returns the bytes actually written.
    pub fn write_block(
        &self,
        data: &[u8],
        offset: u64,
        skip_zeros: bool,
    ) -> Result<u64, WriteError> {
        if !skip_zeros {
            self.write_at(data, offset)?;
            return Ok(data.len() as u64);
        }
        self.check_fits(offset + data.len() as u64)?;
        let mut written = 0;
        for (index, block) in data.chunks(SPARSE_BLOCK_BYTES).enumerate() {
            if is_zero(block) {
                continue;
            }
            self.write_at(block, offset + (index * SPARSE_BLOCK_BYTES) as u64)?;
            written += block.len() as u64;
        }
        Ok(written)
    }

    /// Whether unwritten regions read as zeros (a freshly truncated file).
    pub fn reads_as_zero(&self) -> bool {
        self.reads_as_zero
    }

    /// Makes a regular file exactly `len` bytes long (trailing skipped zeros become a hole) and flushes to disk.
    pub fn finish(&self, len: u64) -> Result<(), WriteError> {
        let io = |op| {
            let path = self.path.clone();
            move |source| WriteError::Target { path, op, source }
        };
        if self.discard {
            return Ok(());
        }
        if self.regular_file {
            self.file.set_len(len).map_err(io("resizing"))?;
        }
        self.file.sync_all().map_err(io("syncing"))
    }

    /// Zeroes the first MiB (or the whole target if smaller) so the half-written disk cannot boot.
    pub fn mark_bad(&self) -> Result<(), WriteError> {
        if self.discard {
            return Ok(());
        }
        let len = self
            .capacity
            .map_or(MARK_BAD_BYTES, |c| c.min(MARK_BAD_BYTES));
        let zeros = vec![0u8; len as usize];
        self.file
            .write_all_at(&zeros, 0)
            .and_then(|()| self.file.sync_all())
            .map_err(|source| WriteError::Target {
                path: self.path.clone(),
                op: "zeroing the first MiB of",
                source,
            })
    }
}

fn is_zero(block: &[u8]) -> bool {
    // An OR-fold has no early exit inside a page, so it vectorizes; pages still stop early on data.
    block
        .chunks(4096)
        .all(|page| page.iter().fold(0u8, |acc, &byte| acc | byte) == 0)
}

/// Writes a stream of bytes sequentially from offset 0, gathering small pieces into large writes.
#[derive(Debug)]
pub struct SequentialSink<'a> {
    target: &'a Target,
    skip_zeros: bool,
    buffer: Vec<u8>,
    flushed_to: u64,
    written_bytes: u64,
}

impl<'a> SequentialSink<'a> {
    /// A sink at offset 0 of `target`.
    pub fn new(target: &'a Target, skip_zeros: bool) -> Self {
        Self {
            target,
            skip_zeros,
            buffer: Vec::with_capacity(WRITE_BUFFER_BYTES),
            flushed_to: 0,
            written_bytes: 0,
        }
    }

    /// Appends bytes.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), WriteError> {
        while !data.is_empty() {
            let room = WRITE_BUFFER_BYTES - self.buffer.len();
            let take = room.min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == WRITE_BUFFER_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.written_bytes +=
            self.target
                .write_block(&self.buffer, self.flushed_to, self.skip_zeros)?;
        self.flushed_to += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Bytes of disk content produced so far (written or skipped as zeros).
    pub fn position(&self) -> u64 {
        self.flushed_to + self.buffer.len() as u64
    }

    /// Bytes actually written to the target so far.
    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_null_target_takes_writes_and_finishes() {
        let target = Target::null().expect("open /dev/null");
        assert_eq!(target.capacity(), None);
        assert_eq!(
            target
                .write_block(&[1u8; 3 * SPARSE_BLOCK_BYTES], 0, true)
                .expect("write"),
            (3 * SPARSE_BLOCK_BYTES) as u64
        );
        target
            .finish(3 * SPARSE_BLOCK_BYTES as u64)
            .expect("finish");
        target.mark_bad().expect("mark bad");
    }
}
