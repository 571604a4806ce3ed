//! The DHCP server: DORA, boot options by client kind, reservations, release/decline/inform, relays, ProxyDHCP,
//! restarts, and the real socket loop on loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use kiln_inventory::{LeaseState, MacAddr};
use kiln_provisioner::boot::dhcp::{
    DhcpConfig, DhcpHandler, DhcpMode, DhcpServer, Pool, Reply, decode_request,
};
use tokio::net::UdpSocket;

use crate::support::{TestStore, node_mac};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);

fn pool(third: u8) -> Pool {
    Pool {
        network: Ipv4Addr::new(10, 9, third, 0),
        prefix_len: 24,
        first: Ipv4Addr::new(10, 9, third, 100),
        last: Ipv4Addr::new(10, 9, third, 103),
        router: Some(Ipv4Addr::new(10, 9, third, 1)),
        dns: vec![],
    }
}

fn config() -> DhcpConfig {
    let mut config = DhcpConfig::new(SERVER, "http://10.9.0.1:8080", pool(0));
    config.pools.push(pool(5));
    config
}

fn stranger(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0x99, n])
}

/// A client message of `kind` from `mac` with extra options.
fn message(kind: MessageType, mac: MacAddr, options: Vec<DhcpOption>) -> v4::Message {
    let mut msg = v4::Message::new(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    msg.opts_mut().insert(DhcpOption::MessageType(kind));
    for option in options {
        msg.opts_mut().insert(option);
    }
    // Through the wire format, as the server would see it.
    let mut bytes = Vec::new();
    msg.encode(&mut Encoder::new(&mut bytes)).expect("encode");
    decode_request(&bytes).expect("valid request")
}

fn pxe(arch: &str) -> DhcpOption {
    DhcpOption::ClassIdentifier(format!("PXEClient:Arch:{arch}:UNDI:003000").into_bytes())
}

fn ipxe() -> DhcpOption {
    DhcpOption::UserClass(b"iPXE".to_vec())
}

fn kind(reply: &Reply) -> Option<MessageType> {
    reply.message.opts().msg_type()
}

fn fname(reply: &Reply) -> String {
    String::from_utf8_lossy(reply.message.fname().unwrap_or_default())
        .trim_end_matches('\0')
        .to_string()
}

async fn answer(handler: &DhcpHandler, msg: &v4::Message) -> Option<Reply> {
    handler.handle(msg, false).await.expect("handled")
}

/// DISCOVER then REQUEST; returns the ACK.
async fn dora(handler: &DhcpHandler, mac: MacAddr, options: Vec<DhcpOption>) -> Reply {
    let offer = answer(
        handler,
        &message(MessageType::Discover, mac, options.clone()),
    )
    .await
    .expect("offer");
    assert_eq!(kind(&offer), Some(MessageType::Offer));
    let mut request_options = options;
    request_options.push(DhcpOption::RequestedIpAddress(offer.message.yiaddr()));
    request_options.push(DhcpOption::ServerIdentifier(SERVER));
    let ack = answer(
        handler,
        &message(MessageType::Request, mac, request_options),
    )
    .await
    .expect("ack");
    assert_eq!(kind(&ack), Some(MessageType::Ack));
    assert_eq!(ack.message.yiaddr(), offer.message.yiaddr());
    ack
}

#[tokio::test]
async fn dora_for_an_unknown_machine_records_it() {
    let db = TestStore::with_nodes(0).await;
    let handler = DhcpHandler::new(config(), db.store.clone())
        .await
        .expect("handler");
    let ack = dora(&handler, stranger(1), vec![]).await;
    assert_eq!(ack.message.yiaddr(), Ipv4Addr::new(10, 9, 0, 100));
    assert_eq!(ack.to, SocketAddr::from((Ipv4Addr::BROADCAST, 68)));
    let opts = ack.message.opts();
    assert_eq!(
        opts.get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        opts.get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(
        opts.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    // Not a boot client: no boot file.
    assert_eq!(fname(&ack), "");
    let lease = db
        .store
        .dhcp_lease_for_mac(stranger(1))
        .await
        .expect("get")
        .expect("lease");
    assert_eq!(lease.ip, Ipv4Addr::new(10, 9, 0, 100));
    assert_eq!(lease.state, LeaseState::Bound);
    assert!(!lease.pinned);
    let machines = db.store.discovered_machines().await.expect("list");
    assert_eq!(machines.len(), 1);
    assert_eq!(machines[0].last_ip, Some(lease.ip));
    assert_eq!(machines[0].seen_count, 2);
}

#[tokio::test]
async fn boot_options_by_client_kind() {
    let db = TestStore::with_nodes(0).await;
    let handler = DhcpHandler::new(config(), db.store.clone())
        .await
        .expect("handler");

    let bios = dora(&handler, stranger(1), vec![pxe("00000")]).await;
    assert_eq!(fname(&bios), "undionly.kpxe");
    assert_eq!(bios.message.siaddr(), SERVER);
    let opts = bios.message.opts();
    assert_eq!(
        opts.get(OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
    );
    assert_eq!(
        opts.get(OptionCode::VendorExtensions),
        Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255]))
    );
    assert_eq!(
        opts.get(OptionCode::BootfileName),
        Some(&DhcpOption::BootfileName(b"undionly.kpxe".to_vec()))
    );

    let uefi = dora(&handler, stranger(2), vec![pxe("00007")]).await;
    assert_eq!(fname(&uefi), "ipxe.efi");
    let uefi9 = dora(
        &handler,
        stranger(3),
        vec![
            DhcpOption::ClassIdentifier(b"PXEClient".to_vec()),
            DhcpOption::ClientSystemArchitecture(v4::Architecture::X86_64),
        ],
    )
    .await;
    assert_eq!(fname(&uefi9), "ipxe.efi");

    // iPXE (BIOS ROM or ipxe.efi): the HTTP script, and no-pxedhcp so it does not wait for ProxyDHCP.
    let chained = dora(&handler, stranger(2), vec![pxe("00007"), ipxe()]).await;
    assert_eq!(
        fname(&chained),
        format!("http://10.9.0.1:8080/boot/{}.ipxe", stranger(2))
    );
    assert_eq!(
        chained.message.yiaddr(),
        uefi.message.yiaddr(),
        "a MAC keeps its address"
    );
    let encapsulated = chained
        .message
        .opts()
        .iter()
        .find(|(code, _)| u8::from(**code) == 175)
        .map(|(_, option)| option.clone());
    let mut bytes = Vec::new();
    encapsulated
        .expect("option 175")
        .encode(&mut Encoder::new(&mut bytes))
        .expect("encode");
    assert_eq!(bytes, vec![175, 3, 176, 1, 1]);
}

#[tokio::test]
async fn enrolled_nodes_get_pinned_leases_and_events() {
    let db = TestStore::with_nodes(2).await;
    let handler = DhcpHandler::new(config(), db.store.clone())
        .await
        .expect("handler");
    let ack = dora(&handler, node_mac(1), vec![pxe("00000"), ipxe()]).await;
    let lease = db
        .store
        .dhcp_lease_for_mac(node_mac(1))
        .await
        .expect("get")
        .expect("lease");
    assert!(lease.pinned);
    assert_eq!(lease.ip, ack.message.yiaddr());
    let node = db.store.node_by_serial("SN1").await.expect("node");
    assert_eq!(lease.node_id, Some(node.id));
    let events = db.store.node_events(node.id).await.expect("events");
    assert_eq!(
        events.last().map(|e| e.reason.clone()),
        Some(format!("DHCP lease {} for iPXE (bios)", lease.ip))
    );
    assert!(
        db.store
            .discovered_machines()
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn naks_other_servers_release_decline_inform() {
    let db = TestStore::with_nodes(0).await;
    let handler = DhcpHandler::new(config(), db.store.clone())
        .await
        .expect("handler");
    let ack = dora(&handler, stranger(1), vec![]).await;
    let taken = ack.message.yiaddr();

    // Another MAC asking for a held address (INIT-REBOOT) is refused, by broadcast.
    let nak = answer(
        &handler,
        &message(
            MessageType::Request,
            stranger(2),
            vec![DhcpOption::RequestedIpAddress(taken)],
        ),
    )
    .await
    .expect("nak");
    assert_eq!(kind(&nak), Some(MessageType::Nak));
    assert_eq!(nak.to, SocketAddr::from((Ipv4Addr::BROADCAST, 68)));

    // A client choosing another server's offer gets no answer.
    let offer = answer(
        &handler,
        &message(MessageType::Discover, stranger(2), vec![]),
    )
    .await
    .expect("offer");
    let elsewhere = answer(
        &handler,
        &message(
            MessageType::Request,
            stranger(2),
            vec![
                DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 9, 0, 50)),
                DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 9, 0, 2)),
            ],
        ),
    )
    .await;
    assert_eq!(elsewhere, None);
    // ... and its withdrawn offer is free for the next clients (never-used addresses go first).
    let mut next = Vec::new();
    for n in 3..6 {
        let reply = answer(
            &handler,
            &message(MessageType::Discover, stranger(n), vec![]),
        )
        .await
        .expect("offer");
        next.push(reply.message.yiaddr());
    }
    assert!(next.contains(&offer.message.yiaddr()), "{next:?}");

    // RELEASE frees the address in the inventory.
    let mut release = message(MessageType::Release, stranger(1), vec![]);
    release.set_ciaddr(taken);
    assert_eq!(answer(&handler, &release).await, None);
    let lease = db
        .store
        .dhcp_lease_for_mac(stranger(1))
        .await
        .expect("get")
        .expect("row");
    assert_eq!(lease.state, LeaseState::Released);

    // DECLINE takes the address out of service: nobody is offered it.
    let decline = message(
        MessageType::Decline,
        stranger(1),
        vec![
            DhcpOption::RequestedIpAddress(taken),
            DhcpOption::ServerIdentifier(SERVER),
        ],
    );
    assert_eq!(answer(&handler, &decline).await, None);
    for n in 6..8 {
        if let Some(offer) = answer(
            &handler,
            &message(MessageType::Discover, stranger(n), vec![]),
        )
        .await
        {
            assert_ne!(offer.message.yiaddr(), taken);
        }
    }
    let leases = db.store.dhcp_leases().await.expect("list");
    assert!(
        leases
            .iter()
            .any(|l| l.ip == taken && l.state == LeaseState::Declined)
    );

    // INFORM: configuration for a client that has its address, unicast, no lease time.
    let mut inform = message(MessageType::Inform, stranger(7), vec![pxe("00007")]);
    inform.set_ciaddr(Ipv4Addr::new(10, 9, 0, 77));
    let ack = answer(&handler, &inform).await.expect("ack");
    assert_eq!(kind(&ack), Some(MessageType::Ack));
    assert_eq!(ack.to, SocketAddr::from((Ipv4Addr::new(10, 9, 0, 77), 68)));
    assert_eq!(ack.message.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(
        ack.message
            .opts()
            .get(OptionCode::AddressLeaseTime)
            .is_none()
    );
    assert_eq!(fname(&ack), "ipxe.efi");
}

#[tokio::test]
async fn relayed_requests_use_the_relays_pool() {
    let db = TestStore::with_nodes(0).await;
    let handler = DhcpHandler::new(config(), db.store.clone())
        .await
        .expect("handler");
    let relay = Ipv4Addr::new(10, 9, 5, 1);
    let mut discover = message(MessageType::Discover, stranger(1), vec![]);
    discover.set_giaddr(relay);
    discover.set_hops(1);
    let offer = answer(&handler, &discover).await.expect("offer");
    assert_eq!(offer.message.yiaddr(), Ipv4Addr::new(10, 9, 5, 100));
    assert_eq!(offer.message.giaddr(), relay);
    assert_eq!(offer.to, SocketAddr::from((relay, 67)));
    let mut unknown_subnet = message(MessageType::Discover, stranger(2), vec![]);
    unknown_subnet.set_giaddr(Ipv4Addr::new(192, 168, 1, 1));
    assert_eq!(answer(&handler, &unknown_subnet).await, None);
}

#[tokio::test]
async fn pool_exhaustion_and_restart_keep_addresses() {
    let db = TestStore::with_nodes(0).await;
    let handler = DhcpHandler::new(config(), db.store.clone())
        .await
        .expect("handler");
    let mut addresses = Vec::new();
    for n in 0..4 {
        addresses.push(dora(&handler, stranger(n), vec![]).await.message.yiaddr());
    }
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 4, "four MACs, four distinct addresses");
    assert_eq!(
        answer(
            &handler,
            &message(MessageType::Discover, stranger(9), vec![])
        )
        .await,
        None
    );
    drop(handler);

    db.store.close().await;
    let reopened = TestStore::open_at(&db.dir, db.clock.clone(), db.key.clone()).await;
    let handler = DhcpHandler::new(config(), reopened).await.expect("handler");
    let again = dora(&handler, stranger(2), vec![]).await;
    let before = db.store.dhcp_leases().await;
    assert!(before.is_err(), "the old store is closed");
    assert!(addresses.contains(&again.message.yiaddr()));
    assert_eq!(
        answer(
            &handler,
            &message(MessageType::Discover, stranger(9), vec![])
        )
        .await,
        None
    );
}

#[tokio::test]
async fn proxy_mode_answers_pxe_clients_only() {
    let db = TestStore::with_nodes(0).await;
    let mut config = config();
    config.mode = DhcpMode::Proxy;
    let handler = DhcpHandler::new(config, db.store.clone())
        .await
        .expect("handler");
    assert_eq!(
        answer(
            &handler,
            &message(MessageType::Discover, stranger(1), vec![])
        )
        .await,
        None
    );
    let offer = answer(
        &handler,
        &message(MessageType::Discover, stranger(1), vec![pxe("00000")]),
    )
    .await
    .expect("proxy offer");
    assert_eq!(kind(&offer), Some(MessageType::Offer));
    assert_eq!(offer.message.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(fname(&offer), "undionly.kpxe");
    assert!(
        offer
            .message
            .opts()
            .get(OptionCode::AddressLeaseTime)
            .is_none()
    );
    // REQUESTs on port 67 belong to the site's DHCP server.
    let request = message(MessageType::Request, stranger(1), vec![pxe("00000")]);
    assert_eq!(answer(&handler, &request).await, None);
    // On port 4011 they get the boot file.
    let mut on_4011 = message(MessageType::Request, stranger(1), vec![pxe("00007")]);
    on_4011.set_ciaddr(Ipv4Addr::new(10, 9, 0, 42));
    let ack = handler
        .handle(&on_4011, true)
        .await
        .expect("handled")
        .expect("ack");
    assert_eq!(kind(&ack), Some(MessageType::Ack));
    assert_eq!(fname(&ack), "ipxe.efi");
    assert_eq!(ack.to, SocketAddr::from((Ipv4Addr::new(10, 9, 0, 42), 68)));
    assert!(db.store.dhcp_leases().await.expect("list").is_empty());
}

#[tokio::test]
async fn socket_loop_on_loopback() {
    let db = TestStore::with_nodes(0).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    let mut config = DhcpConfig::new(
        Ipv4Addr::LOCALHOST,
        "http://127.0.0.1:8080",
        Pool {
            network: Ipv4Addr::new(127, 0, 0, 0),
            prefix_len: 8,
            first: Ipv4Addr::new(127, 0, 1, 10),
            last: Ipv4Addr::new(127, 0, 1, 200),
            router: None,
            dns: vec![],
        },
    );
    config.bind = "127.0.0.1:0".parse().expect("addr");
    config.broadcast = Ipv4Addr::LOCALHOST;
    config.client_port = client.local_addr().expect("addr").port();
    let server = DhcpServer::bind(config, db.store.clone())
        .await
        .expect("bind")
        .start()
        .expect("start");
    for garbage in [
        &b""[..],
        &[0u8; 10][..],
        &[1u8; 300][..],
        &[0xffu8; 1400][..],
    ] {
        client
            .send_to(garbage, server.local_addr)
            .await
            .expect("send");
    }
    // Four clients at once: four distinct addresses, each answered.
    let mut xids = Vec::new();
    for n in 0..4 {
        let msg = message(
            MessageType::Discover,
            stranger(n),
            vec![pxe("00000"), ipxe()],
        );
        xids.push(msg.xid());
        let mut bytes = Vec::new();
        msg.encode(&mut Encoder::new(&mut bytes)).expect("encode");
        client
            .send_to(&bytes, server.local_addr)
            .await
            .expect("send");
    }
    let mut offered = Vec::new();
    let mut buf = vec![0u8; 1500];
    while offered.len() < 4 {
        let (len, _) = tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf))
            .await
            .expect("offer in time")
            .expect("recv");
        let reply = v4::Message::decode(&mut Decoder::new(&buf[..len])).expect("decode");
        assert!(xids.contains(&reply.xid()));
        assert_eq!(reply.opts().msg_type(), Some(MessageType::Offer));
        offered.push(reply.yiaddr());
    }
    offered.sort();
    offered.dedup();
    assert_eq!(offered.len(), 4);
    server.shutdown().await;
}
