//! The qcow2 reader and the streaming expander: round trips through a minimal qcow2 builder (tables first, or
//! tables last), qemu-img's own output when available, and property tests that arbitrary damage to an image is
//! an error, never a panic, and that the stream never accepts what the random-access reader refuses.

use kiln_images::qcow2::stream::Qcow2Stream;
use kiln_images::qcow2::{Cluster, Qcow2Error, Qcow2Image};
use proptest::prelude::*;

/// Builds a qcow2 v3 image of `data` (virtual size = data length): header cluster, L1 cluster(s), then one L2
/// table and the data clusters per L1 entry. All-zero clusters are left unallocated, or flagged zero when
/// `zero_flag` is set. Refcounts are not written (the reader does not use them).
pub fn build_qcow2(data: &[u8], cluster_bits: u32, zero_flag: bool) -> Vec<u8> {
    let cluster = 1usize << cluster_bits;
    let l2_entries = cluster / 8;
    let clusters = data.len().div_ceil(cluster);
    let l1_size = clusters.div_ceil(l2_entries).max(1);
    let l1_clusters = (l1_size * 8).div_ceil(cluster);
    let mut out = vec![0u8; cluster * (1 + l1_clusters)];
    let put64 =
        |buf: &mut Vec<u8>, at: usize, v: u64| buf[at..at + 8].copy_from_slice(&v.to_be_bytes());
    let put32 =
        |buf: &mut Vec<u8>, at: usize, v: u32| buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    put32(&mut out, 0, 0x5146_49fb);
    put32(&mut out, 4, 3);
    put32(&mut out, 20, cluster_bits);
    put64(&mut out, 24, data.len() as u64);
    put32(&mut out, 36, l1_size as u32);
    put64(&mut out, 40, cluster as u64);
    put32(&mut out, 96, 4);
    put32(&mut out, 100, 104);
    for l1_index in 0..l1_size {
        let first = l1_index * l2_entries;
        if first >= clusters {
            break;
        }
        let l2_offset = out.len();
        out.resize(out.len() + cluster, 0);
        put64(&mut out, cluster + l1_index * 8, l2_offset as u64 | 1 << 63);
        for i in 0..l2_entries.min(clusters - first) {
            let guest = (first + i) * cluster;
            let chunk = &data[guest..(guest + cluster).min(data.len())];
            if chunk.iter().all(|&b| b == 0) {
                if zero_flag {
                    put64(&mut out, l2_offset + i * 8, 1);
                }
                continue;
            }
            let host = out.len();
            out.extend_from_slice(chunk);
            out.resize(host + cluster, 0);
            put64(&mut out, l2_offset + i * 8, host as u64 | 1 << 63);
        }
    }
    out
}

/// Like [`build_qcow2`] (no zero flags), with every table after the data it maps: header, data clusters, the L2
/// tables, then the L1 table. A one-pass reader must hold the data until the tables arrive.
pub fn build_qcow2_tables_last(data: &[u8], cluster_bits: u32) -> Vec<u8> {
    let cluster = 1usize << cluster_bits;
    let l2_entries = cluster / 8;
    let clusters = data.len().div_ceil(cluster);
    let l1_size = clusters.div_ceil(l2_entries).max(1);
    let put64 =
        |buf: &mut Vec<u8>, at: usize, v: u64| buf[at..at + 8].copy_from_slice(&v.to_be_bytes());
    let mut out = build_qcow2(&[], cluster_bits, false);
    out.truncate(cluster);
    out[24..32].copy_from_slice(&(data.len() as u64).to_be_bytes());
    out[36..40].copy_from_slice(&(l1_size as u32).to_be_bytes());
    let mut hosts = vec![0usize; clusters];
    for (index, host) in hosts.iter_mut().enumerate() {
        let chunk = &data[index * cluster..((index + 1) * cluster).min(data.len())];
        if chunk.iter().any(|&b| b != 0) {
            *host = out.len();
            out.extend_from_slice(chunk);
            out.resize(*host + cluster, 0);
        }
    }
    let mut l2_offsets = vec![0usize; l1_size];
    for (table, offset) in l2_offsets.iter_mut().enumerate() {
        let first = table * l2_entries;
        if first >= clusters {
            break;
        }
        *offset = out.len();
        out.resize(*offset + cluster, 0);
        for i in 0..l2_entries.min(clusters - first) {
            if hosts[first + i] != 0 {
                put64(&mut out, *offset + i * 8, hosts[first + i] as u64 | 1 << 63);
            }
        }
    }
    let l1_offset = out.len();
    out.resize(l1_offset + (l1_size * 8).div_ceil(cluster) * cluster, 0);
    for (table, offset) in l2_offsets.iter().enumerate() {
        if *offset != 0 {
            put64(&mut out, l1_offset + table * 8, *offset as u64 | 1 << 63);
        }
    }
    put64(&mut out, 40, l1_offset as u64);
    out
}

/// The test limit on disk size: arbitrary headers can claim huge disks.
const TEST_LIMIT: u64 = 64 << 20;

fn test_limit() -> Qcow2Error {
    Qcow2Error::Unsupported {
        feature: "test limit".into(),
    }
}

/// Expands an image into memory in one pass, fed `chunk` bytes at a time, with the same limit as [`expand`].
fn expand_streamed(bytes: &[u8], chunk: usize) -> Result<Vec<u8>, Qcow2Error> {
    expand_streamed_counting(bytes, chunk).map(|(disk, _)| disk)
}

/// [`expand_streamed`], also returning the bytes that went through the spool.
fn expand_streamed_counting(bytes: &[u8], chunk: usize) -> Result<(Vec<u8>, u64), Qcow2Error> {
    let mut stream = Qcow2Stream::new(tempfile::tempfile().expect("spool"), None);
    let mut disk = Vec::new();
    let mut visit = |guest: u64, cluster: Cluster<'_>| -> Result<(), Qcow2Error> {
        if let Cluster::Data(data) = cluster {
            let end = guest + data.len() as u64;
            if end > TEST_LIMIT {
                return Err(test_limit());
            }
            if disk.len() < end as usize {
                disk.resize(end as usize, 0);
            }
            disk[guest as usize..end as usize].copy_from_slice(data);
        }
        Ok(())
    };
    for piece in bytes.chunks(chunk.max(1)) {
        stream.push(piece, &mut visit)?;
    }
    let finished = stream.finish(&mut visit)?;
    let size = finished.header().virtual_size;
    if size > TEST_LIMIT {
        return Err(test_limit());
    }
    disk.resize(size as usize, 0);
    Ok((disk, finished.spooled_bytes()))
}

/// Expands an image into memory, refusing disks over 64 MiB (arbitrary headers can claim huge ones).
fn expand(bytes: &[u8]) -> Result<Vec<u8>, Qcow2Error> {
    let image = Qcow2Image::open(bytes)?;
    let size = image.virtual_size();
    if size > TEST_LIMIT {
        return Err(test_limit());
    }
    let mut disk = vec![0u8; size as usize];
    image.for_each_cluster(|guest, cluster| -> Result<(), Qcow2Error> {
        if let Cluster::Data(data) = cluster {
            disk[guest as usize..guest as usize + data.len()].copy_from_slice(data);
        }
        Ok(())
    })?;
    Ok(disk)
}

#[test]
fn builder_round_trip_with_partial_last_cluster() {
    let mut data = crate::support::disk_bytes(300_000, 7);
    data[70_000..140_000].fill(0);
    for (bits, zero_flag) in [(9, false), (12, true), (16, false)] {
        let image = build_qcow2(&data, bits, zero_flag);
        assert_eq!(expand(&image).expect("expand"), data, "cluster_bits {bits}");
        for chunk in [1, 4096, 65_536, image.len()] {
            let streamed = expand_streamed(&image, chunk).expect("stream");
            assert!(streamed == data, "cluster_bits {bits}, chunks of {chunk}");
        }
        let last = build_qcow2_tables_last(&data, bits);
        assert_eq!(
            expand(&last).expect("tables last"),
            data,
            "cluster_bits {bits}"
        );
        let (streamed, spooled) =
            expand_streamed_counting(&last, 1000).expect("stream, tables last");
        assert!(streamed == data, "tables last, cluster_bits {bits}");
        assert_eq!(spooled, last.len() as u64, "tables last: everything waits");
    }
}

#[test]
fn corrupt_and_unsupported_images_are_named() {
    let data = crate::support::disk_bytes(200_000, 3);
    let good = build_qcow2(&data, 16, false);

    let mut bad_l1 = good.clone();
    bad_l1[65536..65544].copy_from_slice(&(0x7fff_0000u64 | 1 << 63).to_be_bytes());
    let err = expand(&bad_l1).expect_err("L1 past the end");
    assert!(matches!(err, Qcow2Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("L1 entry 0"), "{err}");

    let mut misaligned = good.clone();
    misaligned[65536..65544].copy_from_slice(&(65536u64 * 2 + 512).to_be_bytes());
    let err = expand(&misaligned).expect_err("misaligned L2");
    assert!(err.to_string().contains("not cluster-aligned"), "{err}");

    let mut backing = good.clone();
    backing[8..16].copy_from_slice(&200u64.to_be_bytes());
    let err = expand(&backing).expect_err("backing file");
    assert!(err.to_string().contains("backing file"), "{err}");

    let mut compressed = good.clone();
    let l2 = 2 * 65536;
    compressed[l2..l2 + 8].copy_from_slice(&((1u64 << 62) | (3 * 65536)).to_be_bytes());
    let err = expand(&compressed).expect_err("compressed");
    assert!(err.to_string().contains("compressed clusters"), "{err}");

    let mut short_l1 = good.clone();
    short_l1[36..40].copy_from_slice(&0u32.to_be_bytes());
    let err = expand(&short_l1).expect_err("l1_size 0");
    assert!(err.to_string().contains("needs 1"), "{err}");

    let err = expand(
        b"not a qcow2 image at all, just text that is long enough for a header, really, yes.",
    )
    .expect_err("magic");
    assert!(matches!(err, Qcow2Error::NotQcow2 { .. }), "{err}");
    assert!(expand(&good[..50]).is_err(), "truncated header");

    // The stream names the same faults.
    for (image, says) in [
        (&bad_l1, "L1 entry 0"),
        (&misaligned, "not cluster-aligned"),
        (&backing, "backing file"),
        (&compressed, "compressed clusters"),
        (&short_l1, "needs 1"),
    ] {
        let err = expand_streamed(image, 3000).expect_err(says);
        assert!(err.to_string().contains(says), "{err}");
    }
    let err = expand_streamed(&good[..50], 7).expect_err("truncated header");
    assert!(
        err.to_string().contains("shorter than a qcow2 header"),
        "{err}"
    );
    let mut data_cut = good.clone();
    data_cut.truncate(good.len() - 65536 + 100);
    let err = expand_streamed(&data_cut, 4096).expect_err("last data cluster cut");
    assert!(err.to_string().contains("past the end"), "{err}");
    assert!(expand(&data_cut).is_err());
}

/// qemu-img's own output expands to the raw disk it was made from.
#[test]
fn qemu_img_output_expands_to_the_original() {
    let Ok(status) = std::process::Command::new("qemu-img")
        .arg("--version")
        .output()
    else {
        eprintln!("qemu-img not installed (apt: qemu-utils): skipping the cross-check");
        return;
    };
    assert!(status.status.success());
    let dir = tempfile::tempdir().expect("dir");
    let mut data = crate::support::disk_bytes(3 << 20, 11);
    data[1 << 20..2 << 20].fill(0);
    let raw = dir.path().join("disk.raw");
    let qcow = dir.path().join("disk.qcow2");
    std::fs::write(&raw, &data).expect("write raw");
    for extra in [&[][..], &["-o", "cluster_size=4096"][..]] {
        let out = std::process::Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .args(extra)
            .arg(&raw)
            .arg(&qcow)
            .output()
            .expect("run qemu-img");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&qcow).expect("read qcow2");
        assert_eq!(
            expand(&bytes).expect("expand qemu-img output"),
            data,
            "{extra:?}"
        );
        let (streamed, spooled) =
            expand_streamed_counting(&bytes, 16 << 10).expect("stream qemu-img output");
        assert!(streamed == data, "{extra:?} streamed");
        // qemu-img puts each table ahead of its data: only metadata waits in the spool.
        let cluster = if extra.is_empty() { 65_536 } else { 4096 };
        eprintln!("{extra:?}: {spooled} of {} bytes spooled", bytes.len());
        assert!(
            spooled <= 8 * cluster,
            "{extra:?}: {spooled} of {} bytes spooled",
            bytes.len()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any disk content survives build → expand.
    #[test]
    fn round_trip(
        len in 0usize..40_000,
        seed: u64,
        bits in 9u32..14,
        zero_flag: bool,
        chunk in 1usize..20_000,
    ) {
        let data = crate::support::disk_bytes(len, seed);
        let image = build_qcow2(&data, bits, zero_flag);
        prop_assert_eq!(expand(&image).expect("expand"), data.clone());
        prop_assert_eq!(expand_streamed(&image, chunk).expect("stream"), data.clone());
        let last = build_qcow2_tables_last(&data, bits);
        prop_assert_eq!(expand_streamed(&last, chunk).expect("stream, tables last"), data);
    }

    /// Overwriting any bytes of a valid image (header, L1, L2, data) is either read or refused, never a panic.
    #[test]
    fn damage_never_panics(
        seed: u64,
        edits in proptest::collection::vec((0usize..20_000, any::<u8>()), 1..16),
        cut in proptest::option::of(0usize..20_000),
    ) {
        let data = crate::support::disk_bytes(9_000, seed);
        let mut image = build_qcow2(&data, 10, seed % 2 == 0);
        for (at, byte) in edits {
            let len = image.len();
            image[at % len] = byte;
        }
        if let Some(cut) = cut {
            image.truncate(cut);
        }
        let read = expand(&image);
        if let Ok(disk) = &read {
            let header = Qcow2Image::open(&image[..]).expect("opened once");
            prop_assert_eq!(disk.len() as u64, header.virtual_size());
        }
        // The stream never accepts what the reader refuses, and agrees with it on what both accept.
        if let Ok(streamed) = expand_streamed(&image, 777) {
            prop_assert!(read.is_ok(), "stream accepted what the reader refused: {:?}", read.err());
            prop_assert_eq!(Some(streamed), read.ok());
        }
    }

    /// Arbitrary bytes behind a valid magic are refused or read, never a panic.
    #[test]
    fn arbitrary_headers_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut image = vec![b'Q', b'F', b'I', 0xfb, 0, 0, 0, 3];
        image.extend(tail);
        let _ = expand(&image);
        let _ = expand_streamed(&image, 64);
    }
}
