//! kiln's DHCPv4 server for the provisioning network (wire format by `dhcproto`).
//!
//! Full mode hands out addresses (reservations for enrolled nodes, a dynamic pool for the rest, leases written
//! through to the inventory) and tells boot clients what to load. ProxyDHCP mode hands out no addresses: it only
//! answers PXE clients with boot options (on port 67 and on 4011), for sites whose own DHCP server owns the
//! addresses. Requests relayed by a DHCP relay agent (giaddr) are served from the pool of the relay's subnet.
//!
//! Invariant: a malformed datagram is dropped with a debug log; nothing a client sends can panic the server.

mod handler;
mod packet;
mod pool;
pub mod probe;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use chrono::Duration;
use dhcproto::{Encodable, Encoder};
use kiln_inventory::{MacAddr, Store, StoreError};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use handler::{DhcpHandler, HandleError, Reply, SERVER_PORT};
pub use packet::{
    BootClient, ClientArch, DhcpPacketError, boot_client, client_mac, decode_request,
};
pub use pool::{Allocations, Pool};

/// Whether kiln owns the addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpMode {
    /// kiln hands out addresses and boot options.
    Full,
    /// Another server hands out addresses; kiln answers PXE clients with boot options only.
    Proxy,
}

/// iPXE binaries served over TFTP, by client firmware (paths relative to the TFTP root).
#[derive(Debug, Clone)]
pub struct BootFiles {
    /// Legacy BIOS (`undionly.kpxe`).
    pub bios: String,
    /// x86-64 UEFI (`ipxe.efi`).
    pub x64_efi: String,
    /// 32-bit UEFI, if kiln has a binary for it.
    pub x86_efi: Option<String>,
    /// ARM64 UEFI, if kiln has a binary for it.
    pub arm64_efi: Option<String>,
}

impl Default for BootFiles {
    fn default() -> Self {
        Self {
            bios: "undionly.kpxe".into(),
            x64_efi: "ipxe.efi".into(),
            x86_efi: None,
            arm64_efi: None,
        }
    }
}

/// How the DHCP server behaves.
#[derive(Debug, Clone)]
pub struct DhcpConfig {
    /// Full or ProxyDHCP.
    pub mode: DhcpMode,
    /// Where to listen (`0.0.0.0:67`; broadcasts only reach a socket bound to the wildcard address).
    pub bind: SocketAddr,
    /// ProxyDHCP port 4011 listener, if any.
    pub proxy_bind: Option<SocketAddr>,
    /// Network interface to serve on only (`SO_BINDTODEVICE`); `None` serves every interface.
    pub interface: Option<String>,
    /// kiln's address on the provisioning network: the server identifier.
    pub server_ip: Ipv4Addr,
    /// TFTP server for PXE firmware (siaddr and option 66).
    pub tftp_server: Ipv4Addr,
    /// Base URL of the HTTP boot endpoints, e.g. `http://10.0.0.1:8080`.
    pub http_url: String,
    /// iPXE binaries by firmware.
    pub boot_files: BootFiles,
    /// Address pools (one per subnet; relayed subnets need their own).
    pub pools: Vec<Pool>,
    /// Fixed addresses by MAC.
    pub reservations: Vec<(MacAddr, Ipv4Addr)>,
    /// Lease length.
    pub lease_time: Duration,
    /// How long an offered address is kept for the client that was offered it.
    pub offer_hold: Duration,
    /// How long a declined address stays out of service.
    pub decline_hold: Duration,
    /// Port replies to clients go to (68; tests use another).
    pub client_port: u16,
    /// Port replies to relays go to (67).
    pub relay_port: u16,
    /// Broadcast address for replies to unconfigured clients (255.255.255.255; tests use loopback).
    pub broadcast: Ipv4Addr,
}

impl DhcpConfig {
    /// A full-mode server on the standard ports for `server_ip`, with one pool, 1-hour leases, 60-second offer
    /// holds and 10-minute decline holds.
    pub fn new(server_ip: Ipv4Addr, http_url: impl Into<String>, pool: Pool) -> Self {
        Self {
            mode: DhcpMode::Full,
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVER_PORT)),
            proxy_bind: None,
            interface: None,
            server_ip,
            tftp_server: server_ip,
            http_url: http_url.into().trim_end_matches('/').to_string(),
            boot_files: BootFiles::default(),
            pools: vec![pool],
            reservations: Vec::new(),
            lease_time: Duration::hours(1),
            offer_hold: Duration::seconds(60),
            decline_hold: Duration::minutes(10),
            client_port: 68,
            relay_port: SERVER_PORT,
            broadcast: Ipv4Addr::BROADCAST,
        }
    }
}

/// Why the DHCP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// A socket could not be set up.
    #[error("cannot listen for DHCP on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The leases could not be loaded.
    #[error("cannot load the DHCP leases")]
    Store(#[source] StoreError),
}

/// A bound DHCP server, not yet serving.
#[derive(Debug)]
pub struct DhcpServer {
    handler: Arc<DhcpHandler>,
    socket: Arc<UdpSocket>,
    proxy_socket: Option<Arc<UdpSocket>>,
}

/// A DHCP server running in a task.
#[derive(Debug)]
pub struct DhcpHandle {
    /// Where the server listens (the real port when bound to port 0).
    pub local_addr: SocketAddr,
    /// Where the ProxyDHCP listener listens, if there is one.
    pub proxy_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl DhcpHandle {
    /// Stops serving and waits for requests in flight.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(err) = self.task.await {
            tracing::warn!(error = %err, "DHCP server task ended abnormally");
        }
    }
}

pub(super) async fn open_socket(
    addr: SocketAddr,
    interface: Option<&str>,
) -> Result<UdpSocket, DhcpError> {
    let bind_err = |source| DhcpError::Bind { addr, source };
    let socket = UdpSocket::bind(addr).await.map_err(bind_err)?;
    socket.set_broadcast(true).map_err(bind_err)?;
    if let Some(interface) = interface {
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(bind_err)?;
    }
    Ok(socket)
}

impl DhcpServer {
    /// Loads the leases and binds the sockets.
    pub async fn bind(config: DhcpConfig, store: Store) -> Result<Self, DhcpError> {
        let socket = open_socket(config.bind, config.interface.as_deref()).await?;
        let proxy_socket = match config.proxy_bind {
            Some(addr) => Some(Arc::new(
                open_socket(addr, config.interface.as_deref()).await?,
            )),
            None => None,
        };
        let handler = DhcpHandler::new(config, store)
            .await
            .map_err(DhcpError::Store)?;
        Ok(Self {
            handler: Arc::new(handler),
            socket: Arc::new(socket),
            proxy_socket,
        })
    }

    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The address the ProxyDHCP listener listens on, if there is one.
    pub fn proxy_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.proxy_socket
            .as_ref()
            .map(|socket| socket.local_addr())
            .transpose()
    }

    /// Serves in a background task.
    pub fn start(self) -> std::io::Result<DhcpHandle> {
        let local_addr = self.local_addr()?;
        let proxy_addr = self.proxy_addr()?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(self.run(cancel.clone()));
        Ok(DhcpHandle {
            local_addr,
            proxy_addr,
            cancel,
            task,
        })
    }

    /// Serves until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let mut listeners = JoinSet::new();
        listeners.spawn(serve_socket(
            self.handler.clone(),
            self.socket.clone(),
            false,
            cancel.clone(),
        ));
        if let Some(proxy) = &self.proxy_socket {
            listeners.spawn(serve_socket(
                self.handler.clone(),
                proxy.clone(),
                true,
                cancel.clone(),
            ));
        }
        while listeners.join_next().await.is_some() {}
    }
}

/// Receives on one socket; each request is answered in its own task so a slow inventory write for one client
/// does not hold up the others.
async fn serve_socket(
    handler: Arc<DhcpHandler>,
    socket: Arc<UdpSocket>,
    proxy_port: bool,
    cancel: CancellationToken,
) {
    let local = socket.local_addr().ok();
    tracing::info!(addr = ?local, proxy_port, mode = ?handler.config().mode, "DHCP server listening");
    let mut in_flight = JoinSet::new();
    let mut buf = vec![0u8; 1500];
    loop {
        let received = tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            Err(err) => {
                tracing::debug!(error = %err, "DHCP receive error");
                continue;
            }
        };
        let message = match decode_request(&buf[..len]) {
            Ok(message) => message,
            Err(err) => {
                tracing::debug!(%peer, len, error = %err, "dropped a DHCP packet");
                continue;
            }
        };
        let handler = handler.clone();
        let socket = socket.clone();
        in_flight.spawn(async move {
            let reply = match handler.handle(&message, proxy_port).await {
                Ok(Some(reply)) => reply,
                Ok(None) => return,
                Err(err) => {
                    tracing::error!(error = %err, source = ?std::error::Error::source(&err), "DHCP request failed");
                    return;
                }
            };
            let mut bytes = Vec::with_capacity(512);
            if let Err(err) = reply.message.encode(&mut Encoder::new(&mut bytes)) {
                tracing::error!(error = %err, "cannot encode a DHCP reply");
                return;
            }
            if let Err(err) = socket.send_to(&bytes, reply.to).await {
                tracing::warn!(to = %reply.to, error = %err, "cannot send a DHCP reply");
            }
        });
    }
    in_flight.shutdown().await;
}
