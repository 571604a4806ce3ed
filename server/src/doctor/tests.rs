use std::net::Ipv4Addr;

use kiln_provisioner::boot::dhcp::probe::ProbeTarget;

use super::*;

fn no_boot() -> BootConfig {
    BootConfig {
        server_ip: None,
        public_url: None,
        assets: None,
        image: None,
        kernel_args: String::new(),
        pool: None,
        proxy: false,
        interface: None,
        dhcp_listen: "127.0.0.1:0".parse().unwrap(),
        proxy_listen: "127.0.0.1:0".parse().unwrap(),
        prefix_len: 24,
        router: None,
        reservations: Vec::new(),
        lease_secs: 3600,
        tftp_root: None,
        tftp_listen: "127.0.0.1:0".parse().unwrap(),
        ipv6_ra: true,
    }
}

fn input(dir: &std::path::Path) -> DoctorInput {
    DoctorInput {
        db_url: format!("sqlite://{}", dir.join("kiln.db").display()),
        listen: "127.0.0.1:0".parse().unwrap(),
        boot: no_boot(),
        image_dir: dir.join("images"),
        min_free_bytes: 0,
        max_clock_skew: Duration::from_secs(5),
        dhcp_probe: None,
        dhcp_wait: Duration::from_millis(300),
        force_dhcp_probe: false,
    }
}

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|check| check.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

#[tokio::test]
async fn a_plain_sqlite_set_up_passes_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let checks = run(&input(dir.path())).await;
    assert!(all_passed(&checks), "{checks:#?}");
    let database = find(&checks, "database");
    assert!(database.detail.contains("will be created"), "{database:?}");
    assert_eq!(find(&checks, "clock").status, Status::Skip);
    assert_eq!(find(&checks, "dhcp segment").status, Status::Skip);
    assert_eq!(find(&checks, "ramdisk").status, Status::Skip);
    assert!(!dir.path().join("kiln.db").exists());
    assert!(!dir.path().join("images").exists());
}

#[tokio::test]
async fn a_port_in_use_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut input = input(dir.path());
    input.listen = taken.local_addr().unwrap();
    let checks = run(&input).await;
    let port = find(&checks, &format!("port tcp {}", input.listen));
    assert_eq!(port.status, Status::Fail);
    assert!(port.detail.contains("in use"), "{port:?}");
    assert!(!all_passed(&checks));
    drop(taken);
    let checks = run(&input).await;
    assert_eq!(
        find(&checks, &format!("port tcp {}", input.listen)).status,
        Status::Pass
    );
}

#[tokio::test]
async fn interfaces_and_addresses_are_checked_against_the_boot_settings() {
    let mut boot = no_boot();
    boot.interface = Some("lo".into());
    boot.server_ip = Some(Ipv4Addr::LOCALHOST);
    assert_eq!(
        system::interfaces(&boot).status,
        Status::Pass,
        "{:?}",
        system::interfaces(&boot)
    );
    boot.interface = Some("kiln-nope0".into());
    let check = system::interfaces(&boot);
    assert_eq!(check.status, Status::Fail);
    assert!(
        check.detail.contains("kiln-nope0") && check.detail.contains("lo ("),
        "{check:?}"
    );
    boot.interface = None;
    boot.server_ip = Some(Ipv4Addr::new(192, 0, 2, 77));
    let check = system::interfaces(&boot);
    assert_eq!(check.status, Status::Fail);
    assert!(check.detail.contains("192.0.2.77"), "{check:?}");
}

#[test]
fn disk_space_below_the_floor_fails() {
    let dir = tempfile::tempdir().unwrap();
    let check = system::disk(&dir.path().join("not/yet/images"), u64::MAX / 4);
    assert_eq!(check.status, Status::Fail, "{check:?}");
    assert!(check.detail.contains("GiB free"), "{check:?}");
    assert_eq!(system::disk(dir.path(), 1).status, Status::Pass);
}

#[test]
fn boot_assets_must_be_present_and_non_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut boot = no_boot();
    boot.assets = Some(dir.path().to_path_buf());
    std::fs::write(dir.path().join("vmlinuz"), b"kernel").unwrap();
    std::fs::write(dir.path().join("initramfs.img"), b"").unwrap();
    let checks = system::assets(&boot);
    let ramdisk = find(&checks, "ramdisk");
    assert_eq!(ramdisk.status, Status::Fail);
    assert!(
        ramdisk.detail.starts_with("initramfs.img missing or empty"),
        "{ramdisk:?}"
    );
    std::fs::write(dir.path().join("initramfs.img"), b"cpio").unwrap();
    assert_eq!(find(&system::assets(&boot), "ramdisk").status, Status::Pass);
    assert_eq!(find(&system::assets(&boot), "ipxe").status, Status::Skip);
}

#[tokio::test]
async fn an_unreachable_database_fails_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = input(dir.path());
    input.db_url = "postgres://kiln:hunter2@127.0.0.1:1/kiln".into();
    let checks = run(&input).await;
    let database = find(&checks, "database");
    assert_eq!(database.status, Status::Fail);
    assert!(
        database.detail.contains("127.0.0.1:1") && !database.detail.contains("hunter2"),
        "{database:?}"
    );
    assert_eq!(find(&checks, "clock").status, Status::Skip);
}

#[tokio::test]
async fn postgres_reports_its_version_and_clock() {
    if std::env::var("KILN_TEST_PG").as_deref() == Ok("off") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut input = input(dir.path());
    input.db_url = "postgres://postgres@127.0.0.1:5432/test".into();
    let checks = run(&input).await;
    let database = find(&checks, "database");
    assert!(database.detail.starts_with("PostgreSQL "), "{database:?}");
    assert_eq!(find(&checks, "clock").status, Status::Pass, "{checks:?}");
}

/// A loopback "DHCP server" answering every DISCOVER with one OFFER (`yiaddr`: 0.0.0.0 for ProxyDHCP).
async fn dhcp_peer(yiaddr: Option<Ipv4Addr>) -> SocketAddr {
    use dhcproto::v4::{self, DhcpOption, MessageType};
    use dhcproto::{Decodable, Decoder, Encodable, Encoder};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let Some(yiaddr) = yiaddr else { continue };
            let request = v4::Message::decode(&mut Decoder::new(&buf[..len])).unwrap();
            let mut reply = v4::Message::default();
            reply
                .set_opcode(v4::Opcode::BootReply)
                .set_xid(request.xid())
                .set_yiaddr(yiaddr);
            reply
                .opts_mut()
                .insert(DhcpOption::MessageType(MessageType::Offer));
            reply
                .opts_mut()
                .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 9, 0, 254)));
            let mut bytes = Vec::new();
            reply.encode(&mut Encoder::new(&mut bytes)).unwrap();
            socket.send_to(&bytes, from).await.unwrap();
        }
    });
    addr
}

async fn dhcp_check(full: bool, peer: Option<Ipv4Addr>) -> Check {
    let dir = tempfile::tempdir().unwrap();
    let mut input = input(dir.path());
    if full {
        input.boot.pool = Some((Ipv4Addr::new(10, 9, 0, 100), Ipv4Addr::new(10, 9, 0, 200)));
    } else {
        input.boot.proxy = true;
    }
    let dest = dhcp_peer(peer).await;
    input.dhcp_probe = Some(ProbeTarget {
        bind: "127.0.0.1:0".parse().unwrap(),
        dest,
        interface: None,
    });
    dhcp_segment(&input).await
}

#[tokio::test]
async fn another_dhcp_server_fails_full_dhcp_and_is_needed_by_proxy_dhcp() {
    let rogue = dhcp_check(true, Some(Ipv4Addr::new(10, 9, 0, 50))).await;
    assert_eq!(rogue.status, Status::Fail, "{rogue:?}");
    assert!(
        rogue.detail.contains("10.9.0.254 (offered 10.9.0.50)"),
        "{rogue:?}"
    );
    assert_eq!(dhcp_check(true, None).await.status, Status::Pass);
    let lonely = dhcp_check(false, None).await;
    assert_eq!(lonely.status, Status::Fail, "{lonely:?}");
    assert!(lonely.detail.contains("none answered"), "{lonely:?}");
    assert_eq!(
        dhcp_check(false, Some(Ipv4Addr::new(10, 9, 0, 51)))
            .await
            .status,
        Status::Pass
    );
    let other_proxy = dhcp_check(false, Some(Ipv4Addr::UNSPECIFIED)).await;
    assert_eq!(
        other_proxy.status,
        Status::Fail,
        "a proxy alone hands out no addresses: {other_proxy:?}"
    );
}
