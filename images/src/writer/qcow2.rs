//! The writing thread's qcow2 branch: the download goes through [`Qcow2Stream`] and what it hands over goes to
//! the target at its guest offset, with the spool file beside it removed at the end.

use std::cell::Cell;
use std::path::PathBuf;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{PROGRESS_EVERY_BYTES, Target, WriteError, WriteRequest};
use crate::qcow2::stream::Qcow2Stream;
use crate::qcow2::{Cluster, Qcow2Error};

/// What an expansion did.
pub(super) struct Expanded {
    pub downloaded: u64,
    pub disk_bytes: u64,
    pub written_bytes: u64,
}

/// Why an expansion failed.
pub(super) struct Failed {
    pub error: WriteError,
    /// Whether the target was written to.
    pub touched: bool,
    /// Whether the whole download was read (and hashed) after the image was found bad.
    pub drained: bool,
}

/// Errors while expanding: from the image or from the target.
enum ExpandError {
    Image(Qcow2Error),
    Write(WriteError),
}

impl From<Qcow2Error> for ExpandError {
    fn from(err: Qcow2Error) -> Self {
        ExpandError::Image(err)
    }
}

/// Removes the spool file however the expansion ends.
struct SpoolFile(PathBuf);

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Expands the download arriving on `receiver` onto `target`, hashing every byte into `hasher` and calling
/// `report(downloaded, disk bytes placed)` as it goes. A bad image is read to its end before the error is
/// returned, so the caller can tell a wrong download (digest) from a bad image; a target error stops at once.
pub(super) fn expand(
    request: &WriteRequest,
    target: &Target,
    skip_zeros: bool,
    mut receiver: mpsc::Receiver<Bytes>,
    hasher: &mut Sha256,
    report: &impl Fn(u64, u64),
) -> Result<Expanded, Failed> {
    let path = super::spool_path(request);
    let spool = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|source| Failed {
            error: WriteError::Spool {
                path: path.clone(),
                op: "creating",
                source,
            },
            touched: false,
            drained: false,
        })?;
    let _spool_file = SpoolFile(path);
    let mut stream = Qcow2Stream::new(spool, request.expected_size);
    let written = Cell::new(0u64);
    let touched = Cell::new(false);
    let placed = Cell::new(0u64);
    let mut visit = |guest: u64, cluster: Cluster<'_>| -> Result<(), ExpandError> {
        if let Cluster::Data(data) = cluster {
            touched.set(true);
            let wrote = target
                .write_block(data, guest, skip_zeros)
                .map_err(ExpandError::Write)?;
            written.set(written.get() + wrote);
            placed.set(placed.get() + data.len() as u64);
        }
        Ok(())
    };
    let fail = |err: ExpandError, touched: bool, drained: bool| Failed {
        error: match err {
            ExpandError::Write(err) => err,
            ExpandError::Image(source) => WriteError::Qcow2 {
                url: request.url.clone(),
                source,
            },
        },
        touched,
        drained,
    };
    let mut downloaded = 0u64;
    let mut next_progress = PROGRESS_EVERY_BYTES;
    let mut fits_checked = false;
    let mut bad_image = None;
    while let Some(chunk) = receiver.blocking_recv() {
        hasher.update(&chunk);
        downloaded += chunk.len() as u64;
        if bad_image.is_none() {
            match stream.push(&chunk, &mut visit) {
                Ok(()) => {}
                Err(ExpandError::Image(err)) => bad_image = Some(err),
                Err(err) => return Err(fail(err, touched.get(), false)),
            }
        }
        if !fits_checked && let Some(header) = stream.header() {
            fits_checked = true;
            target
                .check_fits(header.virtual_size)
                .map_err(|err| fail(ExpandError::Write(err), touched.get(), false))?;
        }
        if downloaded >= next_progress {
            report(downloaded, placed.get());
            next_progress += PROGRESS_EVERY_BYTES;
        }
    }
    if let Some(err) = bad_image {
        return Err(fail(ExpandError::Image(err), touched.get(), true));
    }
    let finished = stream
        .finish(&mut visit)
        .map_err(|err| fail(err, touched.get(), true))?;
    let disk_bytes = finished.header().virtual_size;
    tracing::debug!(url = %request.url, downloaded, spooled = finished.spooled_bytes(), "qcow2 expanded in one pass");
    if !fits_checked {
        target
            .check_fits(disk_bytes)
            .map_err(|err| fail(ExpandError::Write(err), touched.get(), true))?;
    }
    if !skip_zeros {
        let zeros = vec![0u8; finished.header().cluster_size() as usize];
        for (guest, len) in finished.zero_clusters() {
            touched.set(true);
            let wrote = target
                .write_block(&zeros[..len as usize], guest, false)
                .map_err(|err| fail(ExpandError::Write(err), true, true))?;
            written.set(written.get() + wrote);
        }
    }
    report(downloaded, disk_bytes);
    Ok(Expanded {
        downloaded,
        disk_bytes,
        written_bytes: written.get(),
    })
}
