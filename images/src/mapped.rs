//! Image bodies served from a read-only memory map of the blob: the body's chunks are slices of the map, so
//! serving copies each byte once (page cache → socket) instead of twice (page cache → buffer → socket), and
//! no read is handed to the blocking pool per chunk. nginx's `sendfile` copies it zero times; this is as close
//! as a hyper body gets.
//!
//! Blobs in the content store are written once under a temporary name and renamed into place; they are never
//! truncated or rewritten (removal unlinks, which leaves an existing map intact). That is what makes the map
//! safe to hand out: a file shrinking under a map would fault the reader.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

/// A whole file mapped read-only; unmapped when the last body chunk referring to it is dropped.
#[derive(Debug)]
pub struct MappedFile {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the map is read-only and never written through, so sharing the pointer between threads is sound;
// `munmap` runs once, in `Drop`, after every `Arc` holder is gone.
#[allow(unsafe_code)]
unsafe impl Send for MappedFile {}
// SAFETY: as above: shared access is read-only.
#[allow(unsafe_code)]
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Maps `len` bytes of `file` (its length, as measured by the caller) read-only. An empty file maps to an
    /// empty slice without a system call.
    #[allow(unsafe_code)]
    pub fn open(file: &File, len: u64) -> io::Result<Arc<Self>> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))?;
        if len == 0 {
            return Ok(Arc::new(MappedFile {
                ptr: std::ptr::null_mut(),
                len: 0,
            }));
        }
        // SAFETY: a fresh read-only shared mapping of an open descriptor; the kernel picks the address. The
        // result is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ptr`/`len` are the mapping just made; the advice only tunes read-ahead (failure is harmless).
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        Ok(Arc::new(MappedFile { ptr, len }))
    }

    /// The mapped bytes.
    #[allow(unsafe_code)]
    pub fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the mapping is `len` readable bytes that live until `Drop`, and `&self` keeps `self` alive;
        // the content store never truncates a blob (module docs), so every page stays backed.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }

    /// Mapped length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the file was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for MappedFile {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmaps exactly the mapping made in `open`, once; no slice of it outlives `self`.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

/// One body chunk: a range of a shared map.
struct MapSlice {
    map: Arc<MappedFile>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map.as_slice()[self.start..self.end]
    }
}

/// The bytes `start..start + count` of `map` as a stream of `chunk`-sized pieces (clamped to the map).
pub fn body_stream(
    map: Arc<MappedFile>,
    start: u64,
    count: u64,
    chunk: usize,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let len = map.len();
    let start = usize::try_from(start).unwrap_or(len).min(len);
    let end = usize::try_from(count)
        .ok()
        .and_then(|count| start.checked_add(count))
        .unwrap_or(len)
        .min(len);
    let chunk = chunk.max(1);
    let pieces = (start..end).step_by(chunk).map(move |from| {
        Ok(Bytes::from_owner(MapSlice {
            map: map.clone(),
            start: from,
            end: (from + chunk).min(end),
        }))
    });
    futures_util::stream::iter(pieces)
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    async fn collect(map: Arc<MappedFile>, start: u64, count: u64, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stream = std::pin::pin!(body_stream(map, start, count, chunk));
        while let Some(piece) = stream.next().await {
            out.extend_from_slice(&piece.expect("chunk"));
        }
        out
    }

    #[tokio::test]
    async fn ranges_of_the_map_are_the_files_bytes() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let file = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(file.path(), &bytes).expect("write");
        let map = MappedFile::open(file.as_file(), bytes.len() as u64).expect("map");
        assert_eq!(map.as_slice(), &bytes[..]);
        assert_eq!(collect(map.clone(), 0, 10_000, 4096).await, bytes);
        assert_eq!(
            collect(map.clone(), 123, 4000, 1000).await,
            &bytes[123..4123]
        );
        // A range past the end is clamped, never a fault.
        assert_eq!(collect(map.clone(), 9_990, 100, 7).await, &bytes[9_990..]);
        assert!(collect(map, 20_000, 5, 7).await.is_empty());
    }

    #[tokio::test]
    async fn empty_files_and_unlinked_blobs() {
        let empty = tempfile::NamedTempFile::new().expect("temp");
        let map = MappedFile::open(empty.as_file(), 0).expect("map");
        assert!(map.is_empty());
        assert!(collect(map, 0, 0, 10).await.is_empty());
        // Removing a blob while it is served leaves the map readable (the store unlinks, never truncates).
        let file = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(file.path(), b"kiln image bytes").expect("write");
        let map = MappedFile::open(file.as_file(), 16).expect("map");
        drop(file);
        assert_eq!(collect(map, 5, 5, 2).await, b"image");
    }
}
