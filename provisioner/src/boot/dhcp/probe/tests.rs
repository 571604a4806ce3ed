use super::*;
use tokio::net::UdpSocket;

const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x42]);

/// A loopback DHCP "server" answering each DISCOVER with `replies` (built from the request), sent back to the
/// client's source address (a real server broadcasts to port 68).
async fn responder(replies: impl Fn(&v4::Message) -> Vec<Vec<u8>> + Send + 'static) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let request = v4::Message::decode(&mut Decoder::new(&buf[..len])).unwrap();
            for reply in replies(&request) {
                socket.send_to(&reply, from).await.unwrap();
            }
        }
    });
    addr
}

fn offer(request: &v4::Message, server: Ipv4Addr, yiaddr: Ipv4Addr, xid: Option<u32>) -> Vec<u8> {
    let mut reply = v4::Message::default();
    reply
        .set_opcode(v4::Opcode::BootReply)
        .set_xid(xid.unwrap_or(request.xid()))
        .set_yiaddr(yiaddr)
        .set_chaddr(request.chaddr());
    reply
        .opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Offer));
    reply
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(server));
    reply
        .opts_mut()
        .insert(DhcpOption::BootfileName(b"pxelinux.0".to_vec()));
    let mut bytes = Vec::new();
    reply.encode(&mut Encoder::new(&mut bytes)).unwrap();
    bytes
}

fn loopback(dest: SocketAddr) -> ProbeTarget {
    ProbeTarget {
        bind: "127.0.0.1:0".parse().unwrap(),
        dest,
        interface: None,
    }
}

#[tokio::test]
async fn the_discover_looks_like_a_pxe_client_and_offers_are_collected_once_per_server() {
    let dest = responder(|request| {
        assert_eq!(request.opts().msg_type(), Some(MessageType::Discover));
        assert!(request.flags().broadcast());
        assert_eq!(&request.chaddr()[..6], &MAC.0);
        assert!(matches!(
            request.opts().get(OptionCode::ClassIdentifier),
            Some(DhcpOption::ClassIdentifier(class)) if class.starts_with(b"PXEClient")
        ));
        let rogue = Ipv4Addr::new(10, 9, 0, 254);
        vec![
            offer(request, rogue, Ipv4Addr::new(10, 9, 0, 50), None),
            // the same server again (retransmission): one entry
            offer(request, rogue, Ipv4Addr::new(10, 9, 0, 50), None),
            // a ProxyDHCP answer: no address
            offer(
                request,
                Ipv4Addr::new(10, 9, 0, 2),
                Ipv4Addr::UNSPECIFIED,
                None,
            ),
            // another transaction's offer: not ours
            offer(
                request,
                Ipv4Addr::new(10, 9, 0, 3),
                Ipv4Addr::new(10, 9, 0, 60),
                Some(request.xid() ^ 1),
            ),
            // garbage
            vec![0xff; 37],
        ]
    })
    .await;
    let offers = probe_dhcp_servers(&loopback(dest), MAC, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(
        offers,
        vec![
            DhcpOffer {
                server: Ipv4Addr::new(10, 9, 0, 254),
                offered: Some(Ipv4Addr::new(10, 9, 0, 50)),
                boot_file: Some("pxelinux.0".into()),
            },
            DhcpOffer {
                server: Ipv4Addr::new(10, 9, 0, 2),
                offered: None,
                boot_file: Some("pxelinux.0".into()),
            },
        ]
    );
}

#[tokio::test]
async fn a_quiet_segment_gives_no_offers() {
    let dest = responder(|_| Vec::new()).await;
    let offers = probe_dhcp_servers(&loopback(dest), MAC, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(offers.is_empty());
}

#[test]
fn garbage_is_not_an_offer() {
    let from: SocketAddr = "127.0.0.1:67".parse().unwrap();
    for bytes in [&[][..], &[2u8; 10][..], &[0u8; 300][..]] {
        assert_eq!(read_offer(bytes, 7, from), None);
    }
    // a request (BOOTREQUEST) for the same xid is not an offer
    assert_eq!(read_offer(&discover(MAC, 7), 7, from), None);
}
