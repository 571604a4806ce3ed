//! The streaming writer: HTTP → (raw | zstd | qcow2) → disk, hashing the downloaded bytes on the way.
//!
//! The download runs on the async runtime and hands chunks through a bounded channel to one blocking thread that
//! hashes, decodes and writes, so downloading and writing overlap and memory stays bounded. The sha256 of the
//! downloaded bytes (the catalog's content address) must match before the write is declared good; on any failure
//! after the disk was touched, its first MiB is zeroed so a half-written disk never boots.
//!
//! qcow2 is expanded while it downloads ([`crate::qcow2::stream`]): data clusters go to the disk as they arrive
//! when their table came first (qemu-img's layout); the clusters that cannot be placed yet are kept in a sparse
//! spool file until a table claims them (an image whose tables follow all its data spools all of it).

mod download;
mod qcow2;
mod sink;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kiln_model::ImageFormat;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub use download::RetryPolicy;
pub use sink::{MARK_BAD_BYTES, SequentialSink, Target};

use crate::digest::Sha256Digest;
use crate::qcow2::Qcow2Error;

/// Chunks in flight between the download and the writing thread.
const CHANNEL_CHUNKS: usize = 64;
/// Progress is reported at least this often (in downloaded bytes).
const PROGRESS_EVERY_BYTES: u64 = 16 << 20;
/// Decoder output buffer for zstd.
const ZSTD_OUT_BYTES: usize = 1 << 20;

/// Why an image write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The target could not be opened, written or synced.
    #[error("{op} {path}")]
    Target {
        /// The target.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The image does not fit.
    #[error("image needs at least {needed} bytes but {path} holds {capacity}")]
    DiskTooSmall {
        /// The target.
        path: PathBuf,
        /// Bytes the image needs (so far).
        needed: u64,
        /// Bytes the target holds.
        capacity: u64,
    },
    /// The server refused the request.
    #[error("image server answered HTTP {status} for {url}")]
    HttpStatus {
        /// The image URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The server ignored a resume request (answered 200 or a different range).
    #[error("image server ignored the Range request to resume {url} at byte {offset}")]
    RangeIgnored {
        /// The image URL.
        url: String,
        /// Where the resume was asked to start.
        offset: u64,
    },
    /// Too many failures in a row.
    #[error(
        "downloading {url} failed {attempts} times in a row after {received} bytes; last: {last_error}"
    )]
    DownloadFailed {
        /// The image URL.
        url: String,
        /// Failed attempts in a row.
        attempts: u32,
        /// Bytes received in all.
        received: u64,
        /// The last failure.
        last_error: String,
    },
    /// Fewer (or more) bytes arrived than the catalog says the image has.
    #[error("image {url} is {received} bytes, expected {expected}")]
    SizeMismatch {
        /// The image URL.
        url: String,
        /// Size from the catalog.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// The downloaded bytes are not the image asked for.
    #[error(
        "image {url} has sha256 {actual}, expected {expected}; the target's first MiB was zeroed"
    )]
    DigestMismatch {
        /// The image URL.
        url: String,
        /// The digest asked for.
        expected: Sha256Digest,
        /// The digest of what arrived.
        actual: Sha256Digest,
    },
    /// The zstd stream is invalid.
    #[error("zstd stream of {url} is invalid at compressed byte {offset}: {detail}")]
    Zstd {
        /// The image URL.
        url: String,
        /// Compressed bytes consumed before the error.
        offset: u64,
        /// The decoder's message.
        detail: String,
    },
    /// The zstd stream ended in the middle of a frame.
    #[error("zstd stream of {url} ends inside a frame")]
    ZstdTruncated {
        /// The image URL.
        url: String,
    },
    /// The qcow2 image cannot be expanded.
    #[error("qcow2 image {url}")]
    Qcow2 {
        /// The image URL.
        url: String,
        /// What is wrong with it.
        #[source]
        source: Qcow2Error,
    },
    /// The spool file for a qcow2 download failed.
    #[error("{op} spool file {path}")]
    Spool {
        /// The spool file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The writing thread died.
    #[error("the image writing thread failed: {detail}")]
    Thread {
        /// What happened.
        detail: String,
    },
}

/// Progress of a write, passed to the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes downloaded so far.
    pub downloaded_bytes: u64,
    /// Size of the download, when known.
    pub total_bytes: Option<u64>,
    /// Bytes of disk content produced so far.
    pub disk_bytes: u64,
}

/// A progress callback (called from the writing thread).
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// What to write and how.
#[derive(Clone)]
pub struct WriteRequest {
    /// Where to download the image from.
    pub url: String,
    /// The sha256 the downloaded bytes must have.
    pub sha256: Sha256Digest,
    /// How the downloaded bytes are laid out.
    pub format: ImageFormat,
    /// The download's size, when the catalog knows it (checked before success).
    pub expected_size: Option<u64>,
    /// Skip writing all-zero blocks even on a block device (the device must already read as zeros, e.g. after
    /// a discard). Regular-file targets are truncated first and always skip zeros.
    pub sparse: bool,
    /// Retries and backoff for the download.
    pub retry: RetryPolicy,
    /// Directory for the qcow2 spool file (default: the system temp dir).
    pub spool_dir: Option<PathBuf>,
    /// Called with progress.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for WriteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteRequest")
            .field("url", &self.url)
            .field("sha256", &self.sha256)
            .field("format", &self.format)
            .field("expected_size", &self.expected_size)
            .field("sparse", &self.sparse)
            .finish_non_exhaustive()
    }
}

impl WriteRequest {
    /// A request with default retries, no size check, not sparse, no progress callback.
    pub fn new(url: impl Into<String>, sha256: Sha256Digest, format: ImageFormat) -> Self {
        Self {
            url: url.into(),
            sha256,
            format,
            expected_size: None,
            sparse: false,
            retry: RetryPolicy::default(),
            spool_dir: None,
            progress: None,
        }
    }
}

/// What a successful write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReport {
    /// Digest of the downloaded bytes (equal to the one asked for).
    pub sha256: Sha256Digest,
    /// Bytes downloaded.
    pub downloaded_bytes: u64,
    /// Size of the disk content written (the raw image size).
    pub disk_bytes: u64,
    /// Bytes actually written to the target (less than `disk_bytes` when zero blocks were skipped).
    pub written_bytes: u64,
    /// HTTP requests made (more than one after resumes).
    pub requests: u32,
    /// Wall time.
    pub elapsed: Duration,
}

/// What the writing thread produced.
struct Decoded {
    digest: Sha256Digest,
    downloaded: u64,
    disk_bytes: u64,
    written_bytes: u64,
    touched_target: bool,
}

/// Downloads the image and writes it to `target`, verifying its sha256. See the module docs.
pub async fn write_image(
    client: &reqwest::Client,
    request: &WriteRequest,
    target: Target,
) -> Result<WriteReport, WriteError> {
    let started = Instant::now();
    if let Some(size) = request.expected_size
        && request.format == ImageFormat::Raw
    {
        target.check_fits(size)?;
    }
    let target = Arc::new(target);
    let (sender, receiver) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let worker = {
        let target = target.clone();
        let request = request.clone();
        tokio::task::spawn_blocking(move || decode_and_write(&request, &target, receiver))
    };
    let downloaded = download::download(client, &request.url, &request.retry, sender).await;
    let decoded = worker.await.map_err(|err| WriteError::Thread {
        detail: err.to_string(),
    })?;
    let outcome = finish(request, &target, downloaded, decoded, started).await;
    if let Err(err) = &outcome {
        tracing::warn!(url = %request.url, target = %target.path().display(), error = %err, "image write failed");
    }
    outcome
}

async fn finish(
    request: &WriteRequest,
    target: &Arc<Target>,
    downloaded: Result<download::Downloaded, WriteError>,
    decoded: Result<Decoded, (WriteError, bool)>,
    started: Instant,
) -> Result<WriteReport, WriteError> {
    let mark_bad = |touched: bool| -> Result<(), WriteError> {
        if touched { target.mark_bad() } else { Ok(()) }
    };
    let (decoded, requests) = match (downloaded, decoded) {
        // The writing thread's error explains why the download stopped.
        (_, Err((err, touched))) => {
            mark_bad(touched)?;
            return Err(err);
        }
        (Err(err), Ok(decoded)) => {
            mark_bad(decoded.touched_target)?;
            return Err(err);
        }
        (Ok(downloaded), Ok(decoded)) => {
            tracing::debug!(
                url = %request.url,
                bytes = downloaded.bytes,
                announced = ?downloaded.total,
                writer_stopped = downloaded.receiver_gone,
                "download finished"
            );
            (decoded, downloaded.requests)
        }
    };
    if let Some(expected) = request.expected_size
        && expected != decoded.downloaded
    {
        mark_bad(decoded.touched_target)?;
        return Err(WriteError::SizeMismatch {
            url: request.url.clone(),
            expected,
            received: decoded.downloaded,
        });
    }
    if decoded.digest != request.sha256 {
        mark_bad(decoded.touched_target)?;
        return Err(WriteError::DigestMismatch {
            url: request.url.clone(),
            expected: request.sha256,
            actual: decoded.digest,
        });
    }
    let (disk_bytes, written_bytes) = (decoded.disk_bytes, decoded.written_bytes);
    target.finish(disk_bytes)?;
    let report = WriteReport {
        sha256: decoded.digest,
        downloaded_bytes: decoded.downloaded,
        disk_bytes,
        written_bytes,
        requests,
        elapsed: started.elapsed(),
    };
    tracing::info!(url = %request.url, digest = %report.sha256, disk_bytes, written_bytes, "image written and verified");
    Ok(report)
}

fn spool_path(request: &WriteRequest) -> PathBuf {
    request
        .spool_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("kiln-spool-{}.qcow2", request.sha256.to_hex()))
}

/// The writing thread: hash every downloaded byte, decode, write. Errors carry whether the target was touched.
fn decode_and_write(
    request: &WriteRequest,
    target: &Target,
    mut receiver: mpsc::Receiver<Bytes>,
) -> Result<Decoded, (WriteError, bool)> {
    let mut hasher = Sha256::new();
    let mut downloaded = 0u64;
    let mut next_progress = PROGRESS_EVERY_BYTES;
    let skip_zeros = request.sparse || target.reads_as_zero();
    let mut sink = SequentialSink::new(target, skip_zeros);
    let report = |downloaded: u64, disk: u64| {
        if let Some(progress) = &request.progress {
            progress(Progress {
                downloaded_bytes: downloaded,
                total_bytes: request.expected_size,
                disk_bytes: disk,
            });
        }
    };
    let touched = |sink: &SequentialSink<'_>| sink.position() > 0;
    match request.format {
        ImageFormat::Raw => {
            while let Some(chunk) = receiver.blocking_recv() {
                hasher.update(&chunk);
                downloaded += chunk.len() as u64;
                sink.push(&chunk).map_err(|e| (e, true))?;
                if downloaded >= next_progress {
                    report(downloaded, sink.position());
                    next_progress += PROGRESS_EVERY_BYTES;
                }
            }
        }
        ImageFormat::RawZstd => {
            use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
            let zstd_error = |offset: u64, detail: String| WriteError::Zstd {
                url: request.url.clone(),
                offset,
                detail,
            };
            let mut decoder = Decoder::new().map_err(|e| (zstd_error(0, e.to_string()), false))?;
            let mut out = vec![0u8; ZSTD_OUT_BYTES];
            let mut frame_open = false;
            while let Some(chunk) = receiver.blocking_recv() {
                hasher.update(&chunk);
                let mut input = InBuffer::around(&chunk[..]);
                // Run until this chunk is consumed and the decoder has no more output for it.
                loop {
                    let consumed_before = input.pos;
                    let (hint, produced) = {
                        let mut output = OutBuffer::around(&mut out[..]);
                        let hint = decoder.run(&mut input, &mut output).map_err(|e| {
                            (
                                zstd_error(downloaded + input.pos as u64, e.to_string()),
                                touched(&sink),
                            )
                        })?;
                        (hint, output.pos())
                    };
                    // A call that neither reads nor writes (the extra one after a frame's last bytes filled
                    // the buffer exactly) finds the decoder waiting for a next frame's header: its hint says
                    // nothing about the frame just finished.
                    if produced > 0 || input.pos > consumed_before {
                        frame_open = hint != 0;
                    }
                    sink.push(&out[..produced]).map_err(|e| (e, true))?;
                    if input.pos == chunk.len() && produced < out.len() {
                        break;
                    }
                }
                downloaded += chunk.len() as u64;
                if downloaded >= next_progress {
                    report(downloaded, sink.position());
                    next_progress += PROGRESS_EVERY_BYTES;
                }
            }
            if frame_open && downloaded > 0 {
                // Only an error if the bytes are the right ones: a wrong digest is the clearer report.
                let digest = Sha256Digest::from_hasher(hasher.clone());
                if digest == request.sha256 {
                    return Err((
                        WriteError::ZstdTruncated {
                            url: request.url.clone(),
                        },
                        touched(&sink),
                    ));
                }
            }
        }
        ImageFormat::Qcow2 => {
            let expanded =
                qcow2::expand(request, target, skip_zeros, receiver, &mut hasher, &report);
            let digest = Sha256Digest::from_hasher(hasher);
            return match expanded {
                Ok(expanded) => Ok(Decoded {
                    digest,
                    downloaded: expanded.downloaded,
                    disk_bytes: expanded.disk_bytes,
                    written_bytes: expanded.written_bytes,
                    touched_target: expanded.written_bytes > 0,
                }),
                // Bytes that are not the image asked for: the digest is the clearer report.
                Err(failed) if failed.drained && digest != request.sha256 => Err((
                    WriteError::DigestMismatch {
                        url: request.url.clone(),
                        expected: request.sha256,
                        actual: digest,
                    },
                    failed.touched,
                )),
                Err(failed) => Err((failed.error, failed.touched)),
            };
        }
    }
    sink.flush().map_err(|e| (e, true))?;
    report(downloaded, sink.position());
    Ok(Decoded {
        digest: Sha256Digest::from_hasher(hasher),
        downloaded,
        disk_bytes: sink.position(),
        written_bytes: sink.written_bytes(),
        touched_target: touched(&sink),
    })
}
