//! Is another DHCP server answering on this segment? [`probe_dhcp_servers`] broadcasts one DHCPDISCOVER that
//! looks like a PXE client's (so ProxyDHCP servers answer too) and collects every OFFER for it within a wait.
//! `kiln doctor` runs it before kiln serves DHCP: a second full DHCP server on a provisioning segment hands
//! nodes addresses and boot files kiln did not choose.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use kiln_inventory::MacAddr;

use super::{DhcpError, open_socket};

/// Where the probe sends from and to.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// The client socket (`0.0.0.0:68` on a real segment: servers answer the client port by broadcast).
    pub bind: SocketAddr,
    /// Where the DISCOVER goes (`255.255.255.255:67`).
    pub dest: SocketAddr,
    /// Send and listen on this interface only (`SO_BINDTODEVICE`).
    pub interface: Option<String>,
}

impl ProbeTarget {
    /// The real thing: broadcast from the DHCP client port on `interface`.
    pub fn broadcast(interface: Option<String>) -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)),
            dest: SocketAddr::from((Ipv4Addr::BROADCAST, 67)),
            interface,
        }
    }
}

/// One server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpOffer {
    /// The server identifier it gave (option 54), else the datagram's source address.
    pub server: Ipv4Addr,
    /// The address offered; `None` for a ProxyDHCP answer (boot options only, yiaddr 0.0.0.0).
    pub offered: Option<Ipv4Addr>,
    /// The boot file it named, if any.
    pub boot_file: Option<String>,
}

/// Broadcasts a DISCOVER for `mac` and returns the distinct OFFERs (one per server) answering it within
/// `wait`. Datagrams that are not an OFFER for this transaction are ignored.
pub async fn probe_dhcp_servers(
    target: &ProbeTarget,
    mac: MacAddr,
    wait: Duration,
) -> Result<Vec<DhcpOffer>, DhcpError> {
    let socket = open_socket(target.bind, target.interface.as_deref()).await?;
    let xid: u32 = rand::random();
    let discover = discover(mac, xid);
    let send_err = |source| DhcpError::Bind {
        addr: target.dest,
        source,
    };
    socket
        .send_to(&discover, target.dest)
        .await
        .map_err(send_err)?;
    let mut offers: Vec<DhcpOffer> = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 1500];
    while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
        let Ok((len, from)) = received else { continue };
        let Some(offer) = read_offer(&buf[..len], xid, from) else {
            continue;
        };
        if !offers.iter().any(|known| known.server == offer.server) {
            offers.push(offer);
        }
    }
    Ok(offers)
}

/// A PXE-looking DHCPDISCOVER (vendor class `PXEClient:Arch:00000`, broadcast flag set).
fn discover(mac: MacAddr, xid: u32) -> Vec<u8> {
    let mut message = v4::Message::default();
    message
        .set_opcode(v4::Opcode::BootRequest)
        .set_xid(xid)
        .set_flags(v4::Flags::default().set_broadcast())
        .set_chaddr(&mac.0);
    let opts = message.opts_mut();
    opts.insert(DhcpOption::MessageType(MessageType::Discover));
    opts.insert(DhcpOption::ClassIdentifier(
        b"PXEClient:Arch:00000".to_vec(),
    ));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::ServerIdentifier,
        OptionCode::BootfileName,
    ]));
    let mut bytes = Vec::with_capacity(300);
    // A message built from valid parts always encodes; an error here would be a dhcproto bug.
    let _ = message.encode(&mut Encoder::new(&mut bytes));
    bytes
}

/// The OFFER in `bytes` if it answers transaction `xid`. Never panics on garbage.
fn read_offer(bytes: &[u8], xid: u32, from: SocketAddr) -> Option<DhcpOffer> {
    let message = std::panic::catch_unwind(|| v4::Message::decode(&mut Decoder::new(bytes)))
        .ok()?
        .ok()?;
    if message.opcode() != v4::Opcode::BootReply
        || message.xid() != xid
        || message.opts().msg_type() != Some(MessageType::Offer)
    {
        return None;
    }
    let server = match message.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => *ip,
        _ => match from {
            SocketAddr::V4(v4) => *v4.ip(),
            SocketAddr::V6(_) => return None,
        },
    };
    let offered = Some(message.yiaddr()).filter(|ip| !ip.is_unspecified());
    let boot_file = match message.opts().get(OptionCode::BootfileName) {
        Some(DhcpOption::BootfileName(name)) => Some(String::from_utf8_lossy(name).into_owned()),
        _ => Some(String::from_utf8_lossy(message.fname().unwrap_or_default()).into_owned()),
    }
    .map(|name| name.trim_end_matches('\0').to_string())
    .filter(|name| !name.is_empty());
    Some(DhcpOffer {
        server,
        offered,
        boot_file,
    })
}

#[cfg(test)]
mod tests;
