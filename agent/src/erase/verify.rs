//! Verification of an erase by sampled read-back: the first and last MiB and `samples` random 1 MiB ranges
//! spread over the device (one per equal stretch of the space between, block-aligned); a device no larger than
//! that sample (`samples + 2` MiB) is read whole.
//!
//! - After an overwrite, a block erase or a user-data format every sampled byte must be zero; the error names the
//!   offset of the first byte that is not.
//! - After a crypto erase each range's sha256 must differ from its value before the erase. A range that reads as
//!   zeros afterwards is verified too: many drives answer reads of deallocated blocks after a crypto erase with
//!   zeros, and a range that was zeros before and is zeros after holds no data either way.

use kiln_model::EraseVerification;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::device::{DeviceError, EraseDevice};

/// The size of one sampled range.
pub const RANGE_BYTES: u64 = 1 << 20;

/// Buffers handed to the device are aligned to this, so a device opened with `O_DIRECT` can use them as they are.
pub const BUFFER_ALIGN: usize = 4096;

/// A zero-filled byte buffer whose start is aligned to [`BUFFER_ALIGN`]: a `Vec` over-allocated by the alignment
/// and sliced at the first aligned address, which needs no `unsafe`.
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        let storage = vec![0u8; len + BUFFER_ALIGN];
        let misalignment = storage.as_ptr() as usize % BUFFER_ALIGN;
        let start = (BUFFER_ALIGN - misalignment) % BUFFER_ALIGN;
        Self {
            storage,
            start,
            len,
        }
    }

    /// The aligned bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// The aligned bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// One sampled range: `len` bytes at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRange {
    /// Start, a multiple of the block size.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The ranges verification reads on a device of `bytes` with `block_size` blocks: the first MiB, the last MiB and
/// `samples` random ranges, one in each of `samples` equal stretches between them (sorted by offset, no
/// duplicates); a device no larger than `samples + 2` MiB is read whole. The same seed gives the same ranges.
pub fn sample_ranges(bytes: u64, block_size: u32, samples: u32, seed: u64) -> Vec<SampleRange> {
    let block = u64::from(block_size.max(1));
    if bytes <= (u64::from(samples) + 2) * RANGE_BYTES {
        // No more than the sample would read: the whole device, in ranges of a MiB (the last one to the end).
        return (0..bytes.div_ceil(RANGE_BYTES))
            .map(|i| SampleRange {
                offset: i * RANGE_BYTES,
                len: (bytes - i * RANGE_BYTES).min(RANGE_BYTES),
            })
            .collect();
    }
    let last = (bytes - RANGE_BYTES) / block * block;
    let mut ranges = vec![
        SampleRange {
            offset: 0,
            len: RANGE_BYTES,
        },
        SampleRange {
            offset: last,
            len: bytes - last,
        },
    ];
    // Random ranges lie wholly between the first and the last MiB.
    let (low, high) = (RANGE_BYTES, last.saturating_sub(RANGE_BYTES));
    if samples > 0 && high > low {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let stretch = (high - low) / u64::from(samples);
        for i in 0..u64::from(samples) {
            let from = low + i * stretch;
            let to = if i + 1 == u64::from(samples) {
                high
            } else {
                from + stretch
            };
            let offset = rng.gen_range(from..=to) / block * block;
            ranges.push(SampleRange {
                offset,
                len: RANGE_BYTES,
            });
        }
    }
    ranges.sort_by_key(|r| r.offset);
    ranges.dedup_by_key(|r| r.offset);
    ranges
}

/// Why verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A byte that should be zero is not.
    #[error("verification failed: byte at offset {offset} is {value:#04x}, not zero")]
    NotZero {
        /// Its offset on the device.
        offset: u64,
        /// What it reads as.
        value: u8,
    },
    /// A range reads the same as before a crypto erase (and is not zeros).
    #[error(
        "verification failed: the {len} bytes at offset {offset} read the same as before the erase"
    )]
    Unchanged {
        /// The range's offset.
        offset: u64,
        /// The range's length.
        len: u64,
    },
    /// Reading a range failed.
    #[error("verification failed: reading {len} bytes at offset {offset}: {source}")]
    Read {
        /// The range's offset.
        offset: u64,
        /// The range's length.
        len: u64,
        /// Why.
        #[source]
        source: DeviceError,
    },
}

impl VerifyError {
    /// The device error behind a failed read, if that is what this is.
    pub fn device_error(&self) -> Option<&DeviceError> {
        match self {
            VerifyError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads `ranges` one at a time and hands each range's bytes to `check`.
fn read_ranges(
    dev: &mut dyn EraseDevice,
    ranges: &[SampleRange],
    mut check: impl FnMut(&SampleRange, &[u8]) -> Result<(), VerifyError>,
) -> Result<u64, VerifyError> {
    let largest = ranges.iter().map(|r| r.len).max().unwrap_or(0);
    let mut buf = AlignedBuf::zeroed(usize::try_from(largest).unwrap_or(usize::MAX));
    let mut read = 0;
    for range in ranges {
        let bytes = &mut buf.as_mut_slice()[..range.len as usize];
        dev.read_at(range.offset, bytes)
            .map_err(|source| VerifyError::Read {
                offset: range.offset,
                len: range.len,
                source,
            })?;
        check(range, bytes)?;
        read += range.len;
    }
    Ok(read)
}

/// The sha256 of each range, before a crypto erase.
pub fn digests(
    dev: &mut dyn EraseDevice,
    ranges: &[SampleRange],
) -> Result<Vec<[u8; 32]>, VerifyError> {
    let mut digests = Vec::with_capacity(ranges.len());
    read_ranges(dev, ranges, |_, bytes| {
        digests.push(Sha256::digest(bytes).into());
        Ok(())
    })?;
    Ok(digests)
}

/// Checks that every byte of `ranges` reads as zero.
pub fn verify_zeros(
    dev: &mut dyn EraseDevice,
    ranges: &[SampleRange],
) -> Result<EraseVerification, VerifyError> {
    let bytes_read = read_ranges(dev, ranges, |range, bytes| {
        match bytes.iter().position(|b| *b != 0) {
            Some(at) => Err(VerifyError::NotZero {
                offset: range.offset + at as u64,
                value: bytes[at],
            }),
            None => Ok(()),
        }
    })?;
    Ok(verification("zeros", ranges, bytes_read))
}

/// Checks that each of `ranges` reads differently from `before` (its digests before a crypto erase) or as zeros.
pub fn verify_changed(
    dev: &mut dyn EraseDevice,
    ranges: &[SampleRange],
    before: &[[u8; 32]],
) -> Result<EraseVerification, VerifyError> {
    let mut index = 0;
    let bytes_read = read_ranges(dev, ranges, |range, bytes| {
        let same = before
            .get(index)
            .is_some_and(|digest| *digest == <[u8; 32]>::from(Sha256::digest(bytes)));
        index += 1;
        if same && bytes.iter().any(|b| *b != 0) {
            return Err(VerifyError::Unchanged {
                offset: range.offset,
                len: range.len,
            });
        }
        Ok(())
    })?;
    Ok(verification("changed", ranges, bytes_read))
}

fn verification(check: &str, ranges: &[SampleRange], bytes_read: u64) -> EraseVerification {
    EraseVerification {
        check: check.into(),
        ranges: u32::try_from(ranges.len()).unwrap_or(u32::MAX),
        bytes_read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_both_ends_and_spread_between() {
        let bytes = 1u64 << 30;
        let ranges = sample_ranges(bytes, 4096, 16, 7);
        assert_eq!(ranges.len(), 18);
        assert_eq!(
            ranges[0],
            SampleRange {
                offset: 0,
                len: RANGE_BYTES
            }
        );
        assert_eq!(
            ranges[17],
            SampleRange {
                offset: bytes - RANGE_BYTES,
                len: RANGE_BYTES
            }
        );
        for r in &ranges {
            assert_eq!(r.offset % 4096, 0, "{r:?}");
            assert!(r.offset + r.len <= bytes, "{r:?}");
        }
        // One random range per sixteenth of the space between the ends.
        let stretch = (bytes - 3 * RANGE_BYTES) / 16;
        for (i, r) in ranges[1..17].iter().enumerate() {
            let from = RANGE_BYTES + i as u64 * stretch;
            assert!(
                r.offset >= from / 4096 * 4096 && r.offset <= from + stretch,
                "{i}: {r:?}"
            );
        }
        assert_eq!(
            ranges,
            sample_ranges(bytes, 4096, 16, 7),
            "same seed, same ranges"
        );
        assert_ne!(ranges, sample_ranges(bytes, 4096, 16, 8));
    }

    #[test]
    fn small_devices_are_read_whole_and_odd_sizes_end_at_the_end() {
        assert_eq!(
            sample_ranges(3 << 19, 512, 16, 1),
            [
                SampleRange {
                    offset: 0,
                    len: RANGE_BYTES
                },
                SampleRange {
                    offset: RANGE_BYTES,
                    len: 1 << 19
                }
            ]
        );
        assert!(sample_ranges(0, 512, 16, 1).is_empty());
        let whole = sample_ranges(18 << 20, 512, 16, 1);
        assert_eq!(whole.len(), 18);
        assert_eq!(
            whole.iter().map(|r| r.len).sum::<u64>(),
            18 << 20,
            "every byte once"
        );
        let bytes = (9 << 20) + 1000;
        let ranges = sample_ranges(bytes, 512, 4, 1);
        let last = ranges.last().expect("last");
        assert_eq!(last.offset + last.len, bytes);
        assert_eq!(last.offset % 512, 0);
        assert!(last.len >= RANGE_BYTES);
    }

    #[test]
    fn aligned_buffers_are_aligned() {
        for len in [0, 1, 4096, 1 << 20] {
            let buf = AlignedBuf::zeroed(len);
            assert_eq!(buf.as_slice().as_ptr() as usize % BUFFER_ALIGN, 0);
            assert_eq!(buf.as_slice().len(), len);
        }
    }
}
