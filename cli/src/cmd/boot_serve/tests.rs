//! The boot services start only when asked, refuse incomplete flags, really serve, and stop on shutdown or drop.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use clap::Parser;
use kiln_inventory::{ManifestFormat, SecretKey, Store, StoreOptions, parse_manifest};

use super::{BootServeArgs, start_boot_services};

/// The flags as `kiln serve` has them: flattened beside the API's own `--listen`.
#[derive(Debug, Parser)]
struct ServeLike {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    boot: BootServeArgs,
}

fn parse(flags: &[&str]) -> BootServeArgs {
    ServeLike::try_parse_from(std::iter::once("kiln").chain(flags.iter().copied()))
        .expect("flags parse")
        .boot
}

const MAC: &str = "52:54:00:bb:00:01";

async fn store(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
    let store = Store::open(StoreOptions::new(url).key(Some(SecretKey::generate())))
        .await
        .expect("store");
    let csv = format!(
        "hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n\
         H1,R1,1,SN1,h100-sxm-80gb,10.1.0.1,redfish,admin,pw,{MAC}\n"
    );
    let rows = parse_manifest(&csv, ManifestFormat::Csv, &|_| None).expect("manifest");
    store
        .import_manifest(&rows, "site", "test")
        .await
        .expect("import");
    store
}

/// Waits (bounded) until `addr` can be bound again, i.e. the service let go of it.
async fn wait_until_free(addr: SocketAddr) {
    let started = Instant::now();
    while UdpSocket::bind(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{addr} still held 5 s after the services were stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn flags_flatten_beside_kiln_serve() {
    use clap::CommandFactory;
    ServeLike::command().debug_assert();
    let args = parse(&[]);
    assert!(!args.any_requested());
    let args = parse(&[
        "--dhcp-pool",
        "10.9.0.10-10.9.0.20",
        "--dhcp-reserve",
        &format!("{MAC}=10.9.0.5"),
    ]);
    assert_eq!(
        args.pool.map(|(a, b)| (a.to_string(), b.to_string())),
        Some(("10.9.0.10".into(), "10.9.0.20".into()))
    );
    assert_eq!(args.reservations.len(), 1);
    let args = parse(&["--boot-image", "ubuntu:24.04"]);
    assert_eq!(args.image, Some(("ubuntu".into(), "24.04".into())));
    for bad in [
        &["--dhcp-pool", "10.9.0.20-10.9.0.10"][..],
        &["--dhcp-pool", "10.9.0.20"],
        &["--dhcp-reserve", "nonsense"],
        &["--dhcp-pool", "10.9.0.10-10.9.0.20", "--dhcp-proxy"],
        &["--dhcp-lease-secs", "5"],
        &["--boot-image", "noversion"],
    ] {
        assert!(
            ServeLike::try_parse_from(std::iter::once("kiln").chain(bad.iter().copied())).is_err(),
            "{bad:?} should be refused"
        );
    }
}

#[tokio::test]
async fn nothing_starts_unless_asked() {
    let dir = tempfile::tempdir().expect("dir");
    let services = start_boot_services(&parse(&[]), store(&dir).await)
        .await
        .expect("start");
    assert!(services.http_router().is_none());
    assert_eq!(services.summary(), "DHCP off, TFTP off, HTTP boot off");
    services.shutdown().await;
}

#[tokio::test]
async fn incomplete_flags_are_clear_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let assets = dir.path().to_str().expect("utf-8 path");
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--dhcp-pool",
                "10.9.0.10-10.9.0.20",
                "--boot-assets",
                assets,
                "--boot-url",
                "http://x",
            ],
            "--boot-server-ip",
        ),
        (
            &[
                "--dhcp-proxy",
                "--boot-server-ip",
                "10.9.0.1",
                "--boot-url",
                "http://x",
            ],
            "--boot-assets",
        ),
        (&["--boot-assets", assets], "--boot-url"),
        (
            &["--boot-assets", assets, "--boot-url", "ftp://x"],
            "not an http",
        ),
        (
            &[
                "--dhcp-pool",
                "10.8.0.10-10.8.0.20",
                "--boot-server-ip",
                "10.9.0.1",
                "--boot-assets",
                assets,
                "--boot-url",
                "http://x",
            ],
            "is not inside 10.9.0.0/24",
        ),
    ];
    let store = store(&dir).await;
    for (flags, expected) in cases {
        let err = start_boot_services(&parse(flags), store.clone())
            .await
            .expect_err("incomplete flags must be refused");
        assert!(err.to_string().contains(expected), "{flags:?}: {err}");
    }
}

#[tokio::test]
async fn services_serve_and_shut_down() {
    let dir = tempfile::tempdir().expect("dir");
    let (tftp_root, assets) = (dir.path().join("tftp"), dir.path().join("assets"));
    std::fs::create_dir_all(&tftp_root).expect("mkdir");
    std::fs::create_dir_all(&assets).expect("mkdir");
    std::fs::write(tftp_root.join("undionly.kpxe"), b"not really iPXE").expect("write");
    std::fs::write(assets.join("vmlinuz"), b"kernel").expect("write");
    std::fs::write(assets.join("initramfs.img"), b"initrd").expect("write");
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", http.local_addr().expect("addr"));
    let args = parse(&[
        "--boot-server-ip",
        "127.0.0.1",
        "--boot-url",
        &url,
        "--boot-assets",
        assets.to_str().expect("utf-8"),
        "--dhcp-pool",
        "127.0.0.100-127.0.0.150",
        "--dhcp-prefix-len",
        "8",
        "--dhcp-listen",
        "127.0.0.1:0",
        "--tftp-root",
        tftp_root.to_str().expect("utf-8"),
        "--tftp-listen",
        "127.0.0.1:0",
    ]);
    assert!(args.any_requested());
    let store = store(&dir).await;
    // The script carries the ramdisk only for a boot kiln asked for: open that boot's grant.
    let node = store.node_by_serial("SN1").await.expect("node");
    store
        .open_boot_grant(node.id, store.now(), Duration::from_secs(600))
        .await
        .expect("grant");
    let services = start_boot_services(&args, store).await.expect("start");
    let (dhcp, tftp) = (
        services.dhcp_addr.expect("dhcp on"),
        services.tftp_addr.expect("tftp on"),
    );
    assert!(
        services.summary().contains(&format!("{url}/boot/")),
        "{}",
        services.summary()
    );
    assert!(UdpSocket::bind(dhcp).is_err(), "DHCP holds its socket");

    // TFTP: a read request is answered with the file's first (and only) block.
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    client
        .send_to(b"\x00\x01undionly.kpxe\x00octet\x00", tftp)
        .await
        .expect("send");
    let mut buf = [0u8; 600];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .expect("a TFTP answer within 5 s")
        .expect("recv");
    assert_eq!(&buf[..4], b"\x00\x03\x00\x01", "DATA block 1");
    assert_eq!(&buf[4..len], b"not really iPXE");

    // HTTP: the router the caller merges serves the node's iPXE script.
    let router = services.http_router().expect("HTTP boot router");
    let server = tokio::spawn(
        axum::serve(
            http,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .into_future(),
    );
    let script = kiln_images::http_client()
        .get(format!("{url}/boot/{MAC}.ipxe"))
        .send()
        .await
        .expect("GET script")
        .text()
        .await
        .expect("body");
    assert!(script.starts_with("#!ipxe"), "{script}");
    assert!(
        script.contains("kiln.mode=inspect")
            && script.contains(&format!("{url}/boot/assets/vmlinuz")),
        "{script}"
    );
    server.abort();

    services.shutdown().await;
    wait_until_free(dhcp).await;
    wait_until_free(tftp).await;
}

#[tokio::test]
async fn dropping_the_handle_stops_the_services() {
    let dir = tempfile::tempdir().expect("dir");
    let args = parse(&[
        "--tftp-root",
        dir.path().to_str().expect("utf-8"),
        "--tftp-listen",
        "127.0.0.1:0",
    ]);
    let services = start_boot_services(&args, store(&dir).await)
        .await
        .expect("start");
    let tftp = services.tftp_addr.expect("tftp on");
    assert!(UdpSocket::bind(tftp).is_err(), "TFTP holds its socket");
    assert!(services.http_router().is_none() && services.dhcp_addr.is_none());
    drop(services);
    wait_until_free(tftp).await;
}
