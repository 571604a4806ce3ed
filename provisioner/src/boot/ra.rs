//! A minimal IPv6 router advertisement on the provisioning interface, so that iPXE does not wait for one.
//!
//! iPXE configures a NIC with every configurator it has at once (IPv6 router solicitation and DHCPv4) and waits
//! until each has finished. On an IPv4-only provisioning network nothing answers its router solicitations, and
//! every boot stands still for the IPv6 configurator's timeout (about 16 s with Debian's iPXE) after DHCP has
//! long succeeded. kiln answers each solicitation with an advertisement that configures nothing:
//!
//! - router lifetime 0: no host takes kiln for a default router (RFC 4861 §6.2.5 sends exactly this from a
//!   router that stops being one);
//! - no prefix information option: no host gains an address from it;
//! - managed and other-configuration flags clear: no host starts DHCPv6.
//!
//! iPXE then finishes its IPv6 step at once ("stateless configuration, nothing to do") and boots on with the
//! DHCPv4 answer. Hosts that already run IPv6 on the segment are unaffected: advertisements from several routers
//! combine, and this one carries nothing. The responder only answers: it never advertises unprompted.
//!
//! The socket is a raw ICMPv6 socket bound to the interface (`CAP_NET_RAW`), joined to the all-routers group;
//! the kernel computes the ICMPv6 checksum. Solicitations are checked as RFC 4861 §6.1.1 asks (hop limit 255
//! cannot be read from a raw socket without ancillary data, so the code, length and options are checked, and a
//! malformed one is dropped with a debug line).

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// ICMPv6 router solicitation.
const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 router advertisement.
const ROUTER_ADVERTISEMENT: u8 = 134;
/// NDP option: source link-layer address.
const OPTION_SOURCE_LINK_LAYER: u8 = 1;
/// All-nodes multicast, where advertisements go.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// All-routers multicast, where solicitations come.
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// Why the responder could not start.
#[derive(Debug, thiserror::Error)]
pub enum RaError {
    /// The interface does not exist (or sysfs does not say its index).
    #[error("interface {interface}: {source}")]
    Interface {
        /// The interface named.
        interface: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The raw socket could not be opened or set up (root or CAP_NET_RAW is needed).
    #[error("raw ICMPv6 socket on {interface} ({step}): {source} (needs root or CAP_NET_RAW)")]
    Socket {
        /// The interface named.
        interface: String,
        /// Which step failed.
        step: &'static str,
        /// What failed.
        source: std::io::Error,
    },
}

/// What a received ICMPv6 message is, as far as the responder cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A well-formed router solicitation.
    Solicitation,
    /// Some other ICMPv6 message (the raw socket sees every one): ignored.
    Other,
    /// A router solicitation that breaks RFC 4861 §6.1.1: dropped, with the reason.
    Malformed(&'static str),
}

/// Classifies an ICMPv6 message (as a raw ICMPv6 socket delivers it: from the ICMPv6 header on).
pub fn classify(message: &[u8]) -> Received {
    let Some(&kind) = message.first() else {
        return Received::Other;
    };
    if kind != ROUTER_SOLICITATION {
        return Received::Other;
    }
    // Type, code, checksum, 4 reserved bytes; then options.
    if message.len() < 8 {
        return Received::Malformed("shorter than 8 bytes");
    }
    if message[1] != 0 {
        return Received::Malformed("ICMP code is not 0");
    }
    let mut options = &message[8..];
    while !options.is_empty() {
        if options.len() < 2 {
            return Received::Malformed("truncated option");
        }
        let len = usize::from(options[1]) * 8;
        if len == 0 {
            return Received::Malformed("option of length 0");
        }
        if len > options.len() {
            return Received::Malformed("option runs past the end");
        }
        options = &options[len..];
    }
    Received::Solicitation
}

/// The advertisement kiln sends: lifetime 0, no flags, no prefix, with the interface's MAC as the source
/// link-layer address when known. The checksum field is left 0 for the kernel to fill in.
pub fn advertisement(mac: Option<[u8; 6]>) -> Vec<u8> {
    let mut packet = vec![
        ROUTER_ADVERTISEMENT,
        0, // code
        0,
        0, // checksum (the kernel's)
        0, // current hop limit: unspecified
        0, // flags: not managed, no other configuration
        0,
        0, // router lifetime: not a default router
        0,
        0,
        0,
        0, // reachable time: unspecified
        0,
        0,
        0,
        0, // retransmission timer: unspecified
    ];
    if let Some(mac) = mac {
        packet.extend_from_slice(&[OPTION_SOURCE_LINK_LAYER, 1]);
        packet.extend_from_slice(&mac);
    }
    packet
}

/// Parses `aa:bb:cc:dd:ee:ff` (sysfs's `address`).
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The router advertisement responder, bound and ready to run.
#[derive(Debug)]
pub struct RaResponder {
    interface: String,
    index: u32,
    socket: UdpSocket,
    packet: Vec<u8>,
}

impl RaResponder {
    /// Opens the raw socket on `interface`. Must run inside a tokio runtime.
    pub fn bind(interface: &str) -> Result<Self, RaError> {
        let sysfs = std::path::Path::new("/sys/class/net").join(interface);
        let index = std::fs::read_to_string(sysfs.join("ifindex"))
            .and_then(|text| {
                text.trim()
                    .parse::<u32>()
                    .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))
            })
            .map_err(|source| RaError::Interface {
                interface: interface.to_string(),
                source,
            })?;
        let mac = std::fs::read_to_string(sysfs.join("address"))
            .ok()
            .and_then(|text| parse_mac(&text));
        let fail = |step| {
            move |source| RaError::Socket {
                interface: interface.to_string(),
                step,
                source,
            }
        };
        let socket =
            Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).map_err(fail("socket"))?;
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(fail("SO_BINDTODEVICE"))?;
        // Neighbour discovery messages must carry hop limit 255 (receivers drop anything else).
        socket
            .set_multicast_hops_v6(255)
            .map_err(fail("IPV6_MULTICAST_HOPS"))?;
        socket
            .set_unicast_hops_v6(255)
            .map_err(fail("IPV6_UNICAST_HOPS"))?;
        socket
            .set_multicast_if_v6(index)
            .map_err(fail("IPV6_MULTICAST_IF"))?;
        socket
            .set_multicast_loop_v6(false)
            .map_err(fail("IPV6_MULTICAST_LOOP"))?;
        socket
            .join_multicast_v6(&ALL_ROUTERS, index)
            .map_err(fail("join ff02::2"))?;
        socket.set_nonblocking(true).map_err(fail("O_NONBLOCK"))?;
        // A raw socket is a datagram socket: tokio's UDP type drives its recvfrom/sendto.
        let socket =
            UdpSocket::from_std(std::net::UdpSocket::from(socket)).map_err(fail("tokio"))?;
        Ok(Self {
            interface: interface.to_string(),
            index,
            socket,
            packet: advertisement(mac),
        })
    }

    /// Answers solicitations until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        tracing::info!(interface = %self.interface, "answering IPv6 router solicitations (lifetime 0, no prefix)");
        let target = SocketAddr::V6(SocketAddrV6::new(ALL_NODES, 0, 0, self.index));
        let mut buf = [0u8; 1500];
        loop {
            let received = tokio::select! {
                () = cancel.cancelled() => return,
                received = self.socket.recv_from(&mut buf) => received,
            };
            let (len, from) = match received {
                Ok(received) => received,
                Err(err) => {
                    tracing::warn!(interface = %self.interface, error = %err, "router solicitation receive failed");
                    continue;
                }
            };
            match classify(&buf[..len]) {
                Received::Other => {}
                Received::Malformed(why) => {
                    tracing::debug!(%from, why, "dropped a malformed router solicitation");
                }
                Received::Solicitation => {
                    if let Err(err) = self.socket.send_to(&self.packet, target).await {
                        tracing::warn!(interface = %self.interface, error = %err, "router advertisement send failed");
                    } else {
                        tracing::info!(interface = %self.interface, %from, "answered a router solicitation");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_solicitation_is_answered() {
        assert_eq!(
            classify(&[133, 0, 0, 0, 0, 0, 0, 0]),
            Received::Solicitation
        );
        // With a source link-layer address option, as iPXE sends it.
        let with_option = [
            133, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 1, 0x52, 0x54, 0, 0xe2, 0, 1,
        ];
        assert_eq!(classify(&with_option), Received::Solicitation);
    }

    #[test]
    fn malformed_solicitations_and_other_messages_are_not() {
        assert_eq!(classify(&[]), Received::Other);
        assert_eq!(classify(&[135, 0, 0, 0, 0, 0, 0, 0]), Received::Other);
        assert_eq!(classify(&[134, 0, 0, 0, 0, 0, 0, 0]), Received::Other);
        assert_eq!(
            classify(&[133, 0, 0, 0]),
            Received::Malformed("shorter than 8 bytes")
        );
        assert_eq!(
            classify(&[133, 1, 0, 0, 0, 0, 0, 0]),
            Received::Malformed("ICMP code is not 0")
        );
        assert_eq!(
            classify(&[133, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
            Received::Malformed("option of length 0")
        );
        assert_eq!(
            classify(&[133, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0]),
            Received::Malformed("option runs past the end")
        );
        assert_eq!(
            classify(&[133, 0, 0, 0, 0, 0, 0, 0, 1]),
            Received::Malformed("truncated option")
        );
    }

    #[test]
    fn the_advertisement_configures_nothing() {
        let packet = advertisement(Some([0x52, 0x54, 0, 0xe2, 0, 1]));
        assert_eq!(packet.len(), 24);
        assert_eq!(packet[0], 134);
        assert_eq!(packet[5], 0, "managed and other-configuration flags clear");
        assert_eq!(&packet[6..8], &[0, 0], "router lifetime 0");
        assert_eq!(
            &packet[16..18],
            &[1, 1],
            "one option: source link-layer address"
        );
        assert_eq!(&packet[18..], &[0x52, 0x54, 0, 0xe2, 0, 1]);
        assert!(
            !packet[16..].chunks(8).any(|option| option[0] == 3),
            "no prefix information option"
        );
        assert_eq!(advertisement(None).len(), 16);
    }

    #[test]
    fn macs_parse_from_sysfs_text() {
        assert_eq!(
            parse_mac("52:54:00:e2:00:0a\n"),
            Some([0x52, 0x54, 0, 0xe2, 0, 0x0a])
        );
        assert_eq!(parse_mac("52:54:00:e2:00"), None);
        assert_eq!(parse_mac("52:54:00:e2:00:0a:ff"), None);
        assert_eq!(parse_mac("zz:54:00:e2:00:0a"), None);
    }

    #[tokio::test]
    async fn binding_a_missing_interface_names_it() {
        let err = RaResponder::bind("kiln-no-such-if0").expect_err("no such interface");
        assert!(err.to_string().contains("kiln-no-such-if0"), "{err}");
    }
}
