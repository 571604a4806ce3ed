//! The TFTP server against curl (a real client) and against a small client written here that exercises what
//! curl does not: windowsize, block-number rollover, EDK2's size probe, retransmission and misbehaviour.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use kiln_provisioner::boot::tftp::{
    ErrorCode, Packet, TftpConfig, TftpHandle, TftpServer, encode_ack, encode_read_request, parse,
};
use tokio::net::UdpSocket;

/// Longest any single wait in these tests may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[0] ^ seed)
        .collect()
}

struct Fixture {
    server: TftpHandle,
    root: tempfile::TempDir,
    _outside: tempfile::TempDir,
}

async fn fixture(tune: impl FnOnce(&mut TftpConfig)) -> Fixture {
    let root = tempfile::tempdir().expect("root");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret"), b"must not leak").expect("write");
    std::fs::write(root.path().join("small.bin"), pattern(1000, 1)).expect("write");
    std::fs::write(root.path().join("exact.bin"), pattern(1024, 2)).expect("write");
    std::fs::write(root.path().join("empty.bin"), b"").expect("write");
    std::fs::write(root.path().join("big.bin"), pattern(3 << 20, 3)).expect("write");
    std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("escape"))
        .expect("symlink");
    let mut config = TftpConfig::new(root.path(), "127.0.0.1:0".parse().expect("addr"));
    tune(&mut config);
    let server = TftpServer::bind(config)
        .await
        .expect("bind")
        .start()
        .expect("start");
    Fixture {
        server,
        root,
        _outside: outside,
    }
}

fn file(root: &Path, name: &str) -> Vec<u8> {
    std::fs::read(root.join(name)).expect("read fixture")
}

async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 70_000];
    let (len, from) = tokio::time::timeout(PATIENCE, socket.recv_from(&mut buf))
        .await
        .expect("server answered in time")
        .expect("recv");
    buf.truncate(len);
    (buf, from)
}

fn oack_options(bytes: &[u8]) -> Vec<(String, String)> {
    assert_eq!(&bytes[..2], &[0, 6], "expected an OACK, got {bytes:?}");
    let parts: Vec<String> = bytes[2..]
        .split(|&b| b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    parts
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

/// Downloads `name` with `options`, acknowledging once per window (RFC 7440 behaviour).
async fn download(server: SocketAddr, name: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    socket
        .send_to(&encode_read_request(name, options), server)
        .await
        .expect("send RRQ");
    let mut blksize = 512usize;
    let mut window = 1u64;
    let (first, tid) = recv(&socket).await;
    let mut pending = Some(first);
    if pending.as_ref().is_some_and(|p| p[..2] == [0, 6]) {
        for (name, value) in oack_options(pending.as_ref().expect("oack")) {
            match name.as_str() {
                "blksize" => blksize = value.parse().expect("blksize"),
                "windowsize" => window = value.parse().expect("windowsize"),
                _ => {}
            }
        }
        pending = None;
        socket.send_to(&encode_ack(0), tid).await.expect("ack 0");
    }
    let mut data = Vec::new();
    let mut expected: u16 = 1;
    let mut in_window = 0u64;
    loop {
        let packet = match pending.take() {
            Some(packet) => packet,
            None => recv(&socket).await.0,
        };
        assert_eq!(
            &packet[..2],
            &[0, 3],
            "expected DATA, got {:?}",
            parse(&packet)
        );
        let block = u16::from_be_bytes([packet[2], packet[3]]);
        assert_eq!(block, expected, "blocks arrive in order on loopback");
        data.extend_from_slice(&packet[4..]);
        in_window += 1;
        let last = packet.len() - 4 < blksize;
        if last || in_window == window {
            socket.send_to(&encode_ack(block), tid).await.expect("ack");
            in_window = 0;
        }
        if last {
            return data;
        }
        expected = expected.wrapping_add(1);
    }
}

#[tokio::test]
async fn curl_downloads_files_with_and_without_options() {
    let fx = fixture(|_| {}).await;
    let port = fx.server.local_addr.port();
    let out = tempfile::tempdir().expect("out");
    for (name, extra) in [
        ("small.bin", vec![]),
        ("exact.bin", vec![]),
        ("empty.bin", vec![]),
        ("big.bin", vec!["--tftp-blksize", "1468"]),
        ("big.bin", vec!["--tftp-no-options"]),
    ] {
        let target = out.path().join("got");
        let status = tokio::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "60"])
            .args(&extra)
            .arg("-o")
            .arg(&target)
            .arg(format!("tftp://127.0.0.1:{port}/{name}"))
            .status()
            .await
            .expect("curl is installed (Debian package curl)");
        assert!(status.success(), "curl {name} {extra:?} failed: {status}");
        assert_eq!(
            std::fs::read(&target).expect("downloaded"),
            file(fx.root.path(), name),
            "{name} {extra:?}"
        );
    }
    let missing = tokio::process::Command::new("curl")
        .args(["--silent", "-o", "/dev/null"])
        .arg(format!("tftp://127.0.0.1:{port}/nope.bin"))
        .status()
        .await
        .expect("curl");
    assert!(!missing.success(), "a missing file is an error for curl");
    fx.server.shutdown().await;
}

#[tokio::test]
async fn windowsize_blksize_and_tsize() {
    let fx = fixture(|_| {}).await;
    let addr = fx.server.local_addr;
    let got = download(
        addr,
        "big.bin",
        &[("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")],
    )
    .await;
    assert_eq!(got, file(fx.root.path(), "big.bin"));
    let got = download(
        addr,
        "exact.bin",
        &[("blksize", "512"), ("windowsize", "8")],
    )
    .await;
    assert_eq!(got, file(fx.root.path(), "exact.bin"));
    fx.server.shutdown().await;
}

#[tokio::test]
async fn block_numbers_roll_over_past_65535() {
    let fx = fixture(|_| {}).await;
    // 8-byte blocks make 3 MiB span ~393,000 blocks: the 16-bit block number wraps several times.
    let got = download(
        fx.server.local_addr,
        "big.bin",
        &[("blksize", "8"), ("windowsize", "64")],
    )
    .await;
    assert_eq!(got, file(fx.root.path(), "big.bin"));
    fx.server.shutdown().await;
}

#[tokio::test]
async fn edk2_size_probe_then_download() {
    let fx = fixture(|_| {}).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket
        .send_to(
            &encode_read_request(
                "small.bin",
                &[("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")],
            ),
            fx.server.local_addr,
        )
        .await
        .expect("send");
    let (oack, tid) = recv(&socket).await;
    let options = oack_options(&oack);
    assert!(
        options.contains(&("tsize".into(), "1000".into())),
        "{options:?}"
    );
    assert!(
        options.contains(&("windowsize".into(), "4".into())),
        "{options:?}"
    );
    socket
        .send_to(
            &kiln_provisioner::boot::tftp::encode_error(ErrorCode::OptionRefused, "size probe"),
            tid,
        )
        .await
        .expect("abort");
    // The real download that follows the probe.
    let got = download(
        fx.server.local_addr,
        "small.bin",
        &[("blksize", "1468"), ("windowsize", "4")],
    )
    .await;
    assert_eq!(got, file(fx.root.path(), "small.bin"));
    fx.server.shutdown().await;
}

#[tokio::test]
async fn unacknowledged_data_is_sent_again() {
    let fx = fixture(|config| config.retransmit_timeout = Duration::from_millis(100)).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket
        .send_to(&encode_read_request("small.bin", &[]), fx.server.local_addr)
        .await
        .expect("send");
    let (first, tid) = recv(&socket).await;
    // No ACK: the same block must come again.
    let (again, again_from) = recv(&socket).await;
    assert_eq!(again_from, tid);
    assert_eq!(first, again);
    assert_eq!(parse(&first), Ok(Packet::Data { block: 1, len: 512 }));
    socket.send_to(&encode_ack(1), tid).await.expect("ack 1");
    let (second, _) = recv(&socket).await;
    assert_eq!(parse(&second), Ok(Packet::Data { block: 2, len: 488 }));
    // A duplicate ACK of block 1 must not trigger a resend of block 2 before the timeout (Sorcerer's
    // Apprentice): the next packet is the timeout retransmission, identical to the first sending.
    socket.send_to(&encode_ack(1), tid).await.expect("dup ack");
    let (resent, _) = recv(&socket).await;
    assert_eq!(resent, second);
    socket.send_to(&encode_ack(2), tid).await.expect("ack 2");
    fx.server.shutdown().await;
}

#[tokio::test]
async fn refuses_traversal_writes_and_missing_files() {
    let fx = fixture(|_| {}).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for (name, code) in [
        ("../secret", ErrorCode::AccessViolation),
        ("/etc/passwd", ErrorCode::AccessViolation),
        ("escape", ErrorCode::AccessViolation),
        ("missing.bin", ErrorCode::FileNotFound),
    ] {
        socket
            .send_to(&encode_read_request(name, &[]), fx.server.local_addr)
            .await
            .expect("send");
        let (answer, _) = recv(&socket).await;
        match parse(&answer) {
            Ok(Packet::Error { code: got, .. }) => assert_eq!(got, code, "{name}"),
            other => panic!("{name}: expected an error, got {other:?}"),
        }
    }
    let mut wrq = encode_read_request("new.bin", &[]);
    wrq[1] = 2;
    socket
        .send_to(&wrq, fx.server.local_addr)
        .await
        .expect("send");
    let (answer, _) = recv(&socket).await;
    assert!(matches!(
        parse(&answer),
        Ok(Packet::Error {
            code: ErrorCode::AccessViolation,
            ..
        })
    ));
    assert!(!fx.root.path().join("new.bin").exists());
    fx.server.shutdown().await;
}

#[tokio::test]
async fn garbage_is_dropped_and_service_continues() {
    let fx = fixture(|_| {}).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for garbage in [
        &b""[..],
        &b"\x00"[..],
        &b"\x00\x01no-terminator"[..],
        &b"\x00\x09\x00\x00"[..],
        &b"\x00\x01f\x00mail\x00"[..],
        &[0xffu8; 2000][..],
    ] {
        socket
            .send_to(garbage, fx.server.local_addr)
            .await
            .expect("send");
    }
    let got = download(fx.server.local_addr, "small.bin", &[]).await;
    assert_eq!(got, file(fx.root.path(), "small.bin"));
    fx.server.shutdown().await;
}

#[tokio::test]
async fn many_transfers_at_once() {
    let fx = fixture(|_| {}).await;
    let addr = fx.server.local_addr;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        tasks.spawn(async move {
            let options: &[(&str, &str)] = if i % 2 == 0 {
                &[("blksize", "1468"), ("windowsize", "8")]
            } else {
                &[("tsize", "0")]
            };
            download(addr, "big.bin", options).await
        });
    }
    let expected = file(fx.root.path(), "big.bin");
    let mut done = 0;
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.expect("transfer task"), expected);
        done += 1;
    }
    assert_eq!(done, 24);
    fx.server.shutdown().await;
}
