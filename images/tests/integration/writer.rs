//! The streaming writer against good and misbehaving servers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kiln_images::writer::MARK_BAD_BYTES;
use kiln_images::{
    ImageFormat, Progress, RetryPolicy, Sha256Digest, Target, WriteError, WriteRequest, write_image,
};

use crate::support::{Fault, FaultyServer, disk_bytes};

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
    }
}

fn request(url: &str, served: &[u8], format: ImageFormat) -> WriteRequest {
    let mut request = WriteRequest::new(url, Sha256Digest::of(served), format);
    request.retry = quick_retry();
    request
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("dir"),
        }
    }
    fn disk(&self, capacity: Option<u64>) -> (Target, std::path::PathBuf) {
        let path = self.dir.path().join("disk");
        (Target::file(&path, capacity).expect("target"), path)
    }
}

#[tokio::test]
async fn raw_zstd_and_qcow2_write_the_same_disk() {
    let disk = disk_bytes(5 << 20, 21);
    let client = kiln_images::http_client();
    let zst = zstd::encode_all(&disk[..], 3).expect("zstd");
    let qcow = crate::qcow2::build_qcow2(&disk, 16, true);
    for (format, served) in [
        (ImageFormat::Raw, disk.clone()),
        (ImageFormat::RawZstd, zst),
        (ImageFormat::Qcow2, qcow),
    ] {
        let server = FaultyServer::new(served.clone(), vec![]);
        let url = server.start().await;
        let scratch = Scratch::new();
        let (target, path) = scratch.disk(None);
        let progress_calls = Arc::new(AtomicU64::new(0));
        let last_downloaded = Arc::new(AtomicU64::new(0));
        let mut req = request(&url, &served, format);
        req.expected_size = Some(served.len() as u64);
        req.spool_dir = Some(scratch.dir.path().to_path_buf());
        let (calls, last) = (progress_calls.clone(), last_downloaded.clone());
        req.progress = Some(Arc::new(move |p: Progress| {
            calls.fetch_add(1, Ordering::SeqCst);
            last.store(p.downloaded_bytes, Ordering::SeqCst);
        }));
        let report = write_image(&client, &req, target).await.expect("write");
        assert_eq!(std::fs::read(&path).expect("disk"), disk, "{format}");
        assert_eq!(report.sha256, Sha256Digest::of(&served));
        assert_eq!(report.downloaded_bytes, served.len() as u64);
        assert_eq!(report.disk_bytes, disk.len() as u64);
        assert!(
            report.written_bytes < report.disk_bytes,
            "{format}: zero blocks are skipped on a fresh file ({} of {})",
            report.written_bytes,
            report.disk_bytes
        );
        assert_eq!(report.requests, 1);
        assert!(
            progress_calls.load(Ordering::SeqCst) >= 1,
            "{format}: progress reported"
        );
        if format != ImageFormat::Qcow2 {
            assert_eq!(last_downloaded.load(Ordering::SeqCst), served.len() as u64);
        }
    }
}

#[tokio::test]
async fn wrong_digest_zeroes_the_first_mib_and_names_both_digests() {
    let disk = disk_bytes(3 << 20, 2);
    let server = FaultyServer::new(disk.clone(), vec![]);
    let url = server.start().await;
    let scratch = Scratch::new();
    let (target, path) = scratch.disk(None);
    let wanted = Sha256Digest::of(b"some other image");
    let mut req = request(&url, &disk, ImageFormat::Raw);
    req.sha256 = wanted;
    let err = write_image(&kiln_images::http_client(), &req, target)
        .await
        .expect_err("mismatch");
    let text = err.to_string();
    assert!(text.contains(&wanted.to_hex()), "{text}");
    assert!(text.contains(&Sha256Digest::of(&disk).to_hex()), "{text}");
    let written = std::fs::read(&path).expect("disk");
    let bad = MARK_BAD_BYTES as usize;
    assert!(written[..bad].iter().all(|&b| b == 0), "first MiB zeroed");
    assert_eq!(
        written[bad..2 * bad],
        disk[bad..2 * bad],
        "the rest was written"
    );
}

#[tokio::test]
async fn truncated_image_is_refused() {
    let disk = disk_bytes(2 << 20, 4);
    let short = disk[..disk.len() - 4096].to_vec();
    let server = FaultyServer::new(short, vec![]);
    let url = server.start().await;
    let scratch = Scratch::new();
    let mut req = request(&url, &disk, ImageFormat::Raw);
    req.expected_size = Some(disk.len() as u64);
    let err = write_image(&kiln_images::http_client(), &req, scratch.disk(None).0)
        .await
        .expect_err("short");
    assert!(
        matches!(err, WriteError::SizeMismatch { expected, received, .. }
            if expected == disk.len() as u64 && received == disk.len() as u64 - 4096),
        "{err}"
    );
    // Without a catalog size, the digest catches it.
    req.expected_size = None;
    let err = write_image(&kiln_images::http_client(), &req, scratch.disk(None).0)
        .await
        .expect_err("short");
    assert!(matches!(err, WriteError::DigestMismatch { .. }), "{err}");
}

#[tokio::test]
async fn interrupted_download_resumes_with_range_through_a_500() {
    let disk = disk_bytes(4 << 20, 8);
    let zst = zstd::encode_all(&disk[..], 1).expect("zstd");
    let server = FaultyServer::new(
        zst.clone(),
        vec![Fault::CutAfter(zst.len() / 2), Fault::Status(500)],
    );
    let url = server.start().await;
    let scratch = Scratch::new();
    let (target, path) = scratch.disk(None);
    let report = write_image(
        &kiln_images::http_client(),
        &request(&url, &zst, ImageFormat::RawZstd),
        target,
    )
    .await
    .expect("resumed write");
    assert_eq!(report.requests, 3);
    assert_eq!(std::fs::read(&path).expect("disk"), disk);
    let ranges = server.ranges_seen.lock().expect("lock").clone();
    assert_eq!(ranges[0], None);
    let resume = ranges[1].clone().expect("second request resumes");
    assert!(
        resume.starts_with("bytes=") && resume != "bytes=0-",
        "{resume}"
    );
    assert_eq!(
        ranges[2], ranges[1],
        "the retry after the 500 resumes at the same byte"
    );
}

#[tokio::test]
async fn persistent_server_errors_give_up_with_the_status() {
    let disk = disk_bytes(100_000, 9);
    let server = FaultyServer::new(disk.clone(), vec![Fault::Status(503); 10]);
    let url = server.start().await;
    let scratch = Scratch::new();
    let err = write_image(
        &kiln_images::http_client(),
        &request(&url, &disk, ImageFormat::Raw),
        scratch.disk(None).0,
    )
    .await
    .expect_err("503s");
    assert!(
        matches!(err, WriteError::DownloadFailed { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("503"), "{err}");

    let server = FaultyServer::new(disk.clone(), vec![Fault::Status(404)]);
    let url = server.start().await;
    let err = write_image(
        &kiln_images::http_client(),
        &request(&url, &disk, ImageFormat::Raw),
        scratch.disk(None).0,
    )
    .await
    .expect_err("404");
    assert!(
        matches!(err, WriteError::HttpStatus { status: 404, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn ignored_range_is_an_error_and_the_disk_is_marked_bad() {
    let disk = disk_bytes(4 << 20, 10);
    let server = FaultyServer::new(
        disk.clone(),
        vec![Fault::CutAfter(3 << 20), Fault::IgnoreRange],
    );
    let url = server.start().await;
    let scratch = Scratch::new();
    let (target, path) = scratch.disk(None);
    let err = write_image(
        &kiln_images::http_client(),
        &request(&url, &disk, ImageFormat::Raw),
        target,
    )
    .await
    .expect_err("range ignored");
    assert!(
        matches!(err, WriteError::RangeIgnored { offset, .. } if offset > 0),
        "{err}"
    );
    let written = std::fs::read(&path).expect("disk");
    assert!(written.len() >= MARK_BAD_BYTES as usize);
    assert!(written[..MARK_BAD_BYTES as usize].iter().all(|&b| b == 0));
}

#[tokio::test]
async fn corrupt_qcow2_l1_is_named() {
    let disk = disk_bytes(1 << 20, 12);
    let mut qcow = crate::qcow2::build_qcow2(&disk, 16, false);
    qcow[65536..65544].copy_from_slice(&(0x00ff_0000_0000u64 | 1 << 63).to_be_bytes());
    let server = FaultyServer::new(qcow.clone(), vec![]);
    let url = server.start().await;
    let scratch = Scratch::new();
    let mut req = request(&url, &qcow, ImageFormat::Qcow2);
    req.spool_dir = Some(scratch.dir.path().to_path_buf());
    let err = write_image(&kiln_images::http_client(), &req, scratch.disk(None).0)
        .await
        .expect_err("corrupt");
    assert!(matches!(err, WriteError::Qcow2 { .. }), "{err}");
    let chain = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(chain.contains("L1 entry 0"), "{chain}");
    let spools = std::fs::read_dir(scratch.dir.path())
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("kiln-spool"))
        })
        .count();
    assert_eq!(spools, 0, "the spool file is removed");
}

#[tokio::test]
async fn disk_too_small_and_corrupt_zstd() {
    let disk = disk_bytes(3 << 20, 13);
    let client = kiln_images::http_client();
    let server = FaultyServer::new(disk.clone(), vec![]);
    let url = server.start().await;
    let scratch = Scratch::new();

    let mut req = request(&url, &disk, ImageFormat::Raw);
    req.expected_size = Some(disk.len() as u64);
    let err = write_image(&client, &req, scratch.disk(Some(1 << 20)).0)
        .await
        .expect_err("small");
    assert!(
        matches!(err, WriteError::DiskTooSmall { needed, capacity: 1_048_576, .. } if needed == disk.len() as u64),
        "checked before downloading: {err}"
    );

    let zst = zstd::encode_all(&disk[..], 1).expect("zstd");
    let server = FaultyServer::new(zst.clone(), vec![]);
    let url = server.start().await;
    let err = write_image(
        &client,
        &request(&url, &zst, ImageFormat::RawZstd),
        scratch.disk(Some(2 << 20)).0,
    )
    .await
    .expect_err("small while writing");
    assert!(
        matches!(
            err,
            WriteError::DiskTooSmall {
                capacity: 2_097_152,
                ..
            }
        ),
        "{err}"
    );

    let mut garbage = zst.clone();
    garbage[4..16].fill(0xff); // frame header descriptor with its reserved bit set
    let server = FaultyServer::new(garbage.clone(), vec![]);
    let url = server.start().await;
    let err = write_image(
        &client,
        &request(&url, &garbage, ImageFormat::RawZstd),
        scratch.disk(None).0,
    )
    .await
    .expect_err("corrupt zstd");
    assert!(matches!(err, WriteError::Zstd { .. }), "{err}");
}

#[tokio::test]
async fn zstd_of_whole_mebibytes_is_not_taken_for_truncated() {
    // Highly compressible, a whole number of the decoder's 1 MiB output buffers: the frame's last bytes fill
    // the buffer exactly, and the decoder is then asked once more with nothing left to read.
    let disk: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let zst = zstd::encode_all(&disk[..], 3).expect("zstd");
    let server = FaultyServer::new(zst.clone(), vec![]);
    let url = server.start().await;
    let scratch = Scratch::new();
    let (target, path) = scratch.disk(None);
    let report = write_image(
        &kiln_images::http_client(),
        &request(&url, &zst, ImageFormat::RawZstd),
        target,
    )
    .await
    .expect("a complete frame");
    assert_eq!(report.disk_bytes, disk.len() as u64);
    assert!(std::fs::read(&path).expect("disk") == disk);
}

#[tokio::test]
async fn qcow2_streams_in_either_table_order_and_leaves_no_spool() {
    let mut disk = disk_bytes(3 << 20, 31);
    disk[1 << 20..2 << 20].fill(0);
    let client = kiln_images::http_client();
    for (layout, qcow) in [
        ("tables first", crate::qcow2::build_qcow2(&disk, 16, false)),
        (
            "tables last",
            crate::qcow2::build_qcow2_tables_last(&disk, 16),
        ),
    ] {
        let server = FaultyServer::new(qcow.clone(), vec![]);
        let url = server.start().await;
        let scratch = Scratch::new();
        let (target, path) = scratch.disk(None);
        let mut req = request(&url, &qcow, ImageFormat::Qcow2);
        req.spool_dir = Some(scratch.dir.path().to_path_buf());
        let report = write_image(&client, &req, target).await.expect(layout);
        assert_eq!(report.disk_bytes, disk.len() as u64, "{layout}");
        assert!(std::fs::read(&path).expect("disk") == disk, "{layout}");
        let left: Vec<_> = std::fs::read_dir(scratch.dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("kiln-spool"))
            .collect();
        assert!(left.is_empty(), "{layout}: spool removed");
    }
}
