//! The DHCPv4 state handling: DISCOVER → OFFER, REQUEST → ACK/NAK, RELEASE, DECLINE, INFORM, and ProxyDHCP
//! answers; boot options chosen by client kind. Socket-free, so tests drive it message by message.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Mutex;

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode, UnknownOption};
use kiln_inventory::{BootSighting, LeaseWrite, MacAddr, NewLease, Store, StoreError};

use super::packet::{BootClient, ClientArch, boot_client, client_mac};
use super::pool::{Allocations, Pool};
use super::{DhcpConfig, DhcpMode};

/// Port DHCP servers and relays listen on.
pub const SERVER_PORT: u16 = 67;

/// A reply and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The message.
    pub message: v4::Message,
    /// Destination address and port.
    pub to: SocketAddr,
}

/// Why a request got no answer (besides "not for us"), for the log.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The inventory failed.
    #[error("inventory error while answering {mac}")]
    Store {
        /// The client.
        mac: MacAddr,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

/// Answers DHCP requests from the allocation table and the inventory.
#[derive(Debug)]
pub struct DhcpHandler {
    config: DhcpConfig,
    store: Store,
    table: Mutex<Allocations>,
}

impl DhcpHandler {
    /// A handler whose table starts from the inventory's leases.
    pub async fn new(config: DhcpConfig, store: Store) -> Result<Self, StoreError> {
        let leases = store.dhcp_leases().await?;
        let table = Allocations::new(&config.reservations, &leases);
        Ok(Self {
            config,
            store,
            table: Mutex::new(table),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DhcpConfig {
        &self.config
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Allocations> {
        // A panic elsewhere while holding the lock leaves the table consistent (each update is one insert).
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The pool serving a request: the one whose subnet holds the relay's address (giaddr), else the one on
    /// the server's own subnet.
    fn pool_for(&self, message: &v4::Message) -> Option<&Pool> {
        let near = if message.giaddr().is_unspecified() {
            self.config.server_ip
        } else {
            message.giaddr()
        };
        self.config
            .pools
            .iter()
            .find(|pool| pool.subnet_contains(near))
    }

    /// Answers one request received on the DHCP port (67), or on the ProxyDHCP port (4011) when `proxy_port`.
    pub async fn handle(
        &self,
        message: &v4::Message,
        proxy_port: bool,
    ) -> Result<Option<Reply>, HandleError> {
        let mac = client_mac(message);
        let client = boot_client(message);
        let Some(kind) = message.opts().msg_type() else {
            return Ok(None);
        };
        let store_err = |source| HandleError::Store { mac, source };
        if proxy_port || self.config.mode == DhcpMode::Proxy {
            return Ok(self.handle_proxy(message, kind, &client, proxy_port));
        }
        match kind {
            MessageType::Discover => self
                .discover(message, mac, &client)
                .await
                .map_err(store_err),
            MessageType::Request => self.request(message, mac, &client).await.map_err(store_err),
            MessageType::Release => {
                let ip = message.ciaddr();
                self.table().release(mac, ip);
                let released = self
                    .store
                    .release_dhcp_lease(mac, ip)
                    .await
                    .map_err(store_err)?;
                tracing::info!(%mac, %ip, released, "DHCP release");
                Ok(None)
            }
            MessageType::Decline => {
                if let Some(DhcpOption::RequestedIpAddress(ip)) =
                    message.opts().get(OptionCode::RequestedIpAddress)
                {
                    let until = self.store.now() + self.config.decline_hold;
                    self.table().decline(*ip, until);
                    self.store
                        .decline_dhcp_address(*ip, until)
                        .await
                        .map_err(store_err)?;
                    tracing::warn!(%mac, %ip, "DHCP decline: address in use by something else");
                }
                Ok(None)
            }
            MessageType::Inform => {
                let Some(pool) = self.pool_for(message) else {
                    return Ok(None);
                };
                let mut reply = self.reply_to(message, MessageType::Ack);
                self.add_network_options(&mut reply, pool, false);
                self.add_boot_options(&mut reply, mac, &client);
                Ok(Some(self.addressed(message, reply, MessageType::Ack)))
            }
            other => {
                tracing::debug!(%mac, kind = ?other, "ignored a DHCP message a server does not answer");
                Ok(None)
            }
        }
    }

    async fn discover(
        &self,
        message: &v4::Message,
        mac: MacAddr,
        client: &BootClient,
    ) -> Result<Option<Reply>, StoreError> {
        let Some(pool) = self.pool_for(message) else {
            tracing::debug!(%mac, giaddr = %message.giaddr(), "DHCP discover from a subnet without a pool");
            return Ok(None);
        };
        let requested = match message.opts().get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => None,
        };
        let now = self.store.now();
        let offered = self
            .table()
            .offer(mac, requested, pool, now, now + self.config.offer_hold);
        let Some(ip) = offered else {
            tracing::warn!(%mac, pool_first = %pool.first, pool_last = %pool.last, "DHCP pool exhausted; no offer");
            return Ok(None);
        };
        if self.store.node_by_boot_mac(mac).await?.is_none() {
            let arch = client.arch.map(ClientArch::name);
            self.store
                .record_boot_sighting(mac, &sighting(client, arch.as_deref(), None))
                .await?;
        }
        let mut reply = self.reply_to(message, MessageType::Offer);
        reply.set_yiaddr(ip);
        self.add_network_options(&mut reply, pool, true);
        self.add_boot_options(&mut reply, mac, client);
        tracing::debug!(%mac, %ip, pxe = client.pxe, ipxe = client.ipxe, "DHCP offer");
        Ok(Some(self.addressed(message, reply, MessageType::Offer)))
    }

    async fn request(
        &self,
        message: &v4::Message,
        mac: MacAddr,
        client: &BootClient,
    ) -> Result<Option<Reply>, StoreError> {
        let opts = message.opts();
        if let Some(DhcpOption::ServerIdentifier(chosen)) = opts.get(OptionCode::ServerIdentifier)
            && *chosen != self.config.server_ip
        {
            // SELECTING another server's offer: ours lapses now rather than after the hold.
            self.table().withdraw_offer(mac);
            return Ok(None);
        }
        let ip = match opts.get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => *ip,
            _ => message.ciaddr(),
        };
        let Some(pool) = self.pool_for(message) else {
            return Ok(None);
        };
        let now = self.store.now();
        let node = self.store.node_by_boot_mac(mac).await?;
        let allowed = !ip.is_unspecified() && self.table().may_hold(mac, ip, pool, now);
        if !allowed {
            tracing::info!(%mac, %ip, "DHCP NAK: address not available to this client");
            return Ok(Some(self.nak(message, "requested address not available")));
        }
        let pinned = node.is_some();
        let hostname = match opts.get(OptionCode::Hostname) {
            Some(DhcpOption::Hostname(name)) => Some(name.as_str()),
            _ => None,
        };
        let expires_at = now + self.config.lease_time;
        let write = self
            .store
            .bind_dhcp_lease(&NewLease {
                ip,
                mac,
                node_id: node.as_ref().map(|node| node.id),
                hostname,
                pinned,
                expires_at,
            })
            .await?;
        if let LeaseWrite::AddressTaken { by } = write {
            tracing::warn!(%mac, %ip, holder = ?by, "DHCP NAK: the inventory says another client holds the address");
            return Ok(Some(self.nak(message, "address held by another client")));
        }
        self.table().bind(mac, ip, expires_at, pinned);
        match &node {
            Some(node) if client.pxe || client.ipxe => {
                let stage = if client.ipxe { "iPXE" } else { "PXE firmware" };
                self.store
                    .record_event(
                        node.id,
                        super::super::http::BOOT_ACTOR,
                        &format!(
                            "DHCP lease {ip} for {stage} ({})",
                            client
                                .arch
                                .map(ClientArch::name)
                                .unwrap_or_else(|| "unknown arch".into())
                        ),
                    )
                    .await?;
            }
            Some(_) => {}
            None => {
                let arch = client.arch.map(ClientArch::name);
                self.store
                    .record_boot_sighting(mac, &sighting(client, arch.as_deref(), Some(ip)))
                    .await?;
            }
        }
        let mut reply = self.reply_to(message, MessageType::Ack);
        reply.set_yiaddr(ip);
        self.add_network_options(&mut reply, pool, true);
        self.add_boot_options(&mut reply, mac, client);
        tracing::info!(%mac, %ip, node = ?node.as_ref().map(|n| n.id), pxe = client.pxe, ipxe = client.ipxe, "DHCP ack");
        Ok(Some(self.addressed(message, reply, MessageType::Ack)))
    }

    fn handle_proxy(
        &self,
        message: &v4::Message,
        kind: MessageType,
        client: &BootClient,
        proxy_port: bool,
    ) -> Option<Reply> {
        if !client.pxe {
            return None; // ProxyDHCP answers PXE clients only; the site's DHCP server does the rest.
        }
        let mac = client_mac(message);
        let reply_kind = match (kind, proxy_port) {
            (MessageType::Discover, false) => MessageType::Offer,
            (MessageType::Request | MessageType::Inform, true) => MessageType::Ack,
            _ => return None,
        };
        let mut reply = self.reply_to(message, reply_kind);
        reply.set_yiaddr(Ipv4Addr::UNSPECIFIED);
        self.add_boot_options(&mut reply, mac, client);
        tracing::debug!(%mac, kind = ?reply_kind, proxy_port, "ProxyDHCP answer");
        if proxy_port {
            // Port 4011 requests come from a configured client; answer where it asked from.
            let to = if message.ciaddr().is_unspecified() {
                SocketAddr::V4(SocketAddrV4::new(
                    self.config.broadcast,
                    self.config.client_port,
                ))
            } else {
                SocketAddr::V4(SocketAddrV4::new(message.ciaddr(), self.config.client_port))
            };
            return Some(Reply { message: reply, to });
        }
        Some(self.addressed(message, reply, reply_kind))
    }

    /// A reply skeleton: same transaction, flags, giaddr and chaddr; our server identifier.
    fn reply_to(&self, message: &v4::Message, kind: MessageType) -> v4::Message {
        let mut reply = v4::Message::new_with_id(
            message.xid(),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            message.giaddr(),
            &message.chaddr()[..6],
        );
        reply.set_opcode(v4::Opcode::BootReply);
        reply.set_flags(message.flags());
        reply.set_hops(message.hops());
        if kind == MessageType::Ack && !message.ciaddr().is_unspecified() {
            reply.set_ciaddr(message.ciaddr());
        }
        let opts = reply.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ServerIdentifier(self.config.server_ip));
        reply
    }

    fn nak(&self, message: &v4::Message, why: &str) -> Reply {
        let mut reply = self.reply_to(message, MessageType::Nak);
        reply
            .opts_mut()
            .insert(DhcpOption::Message(why.to_string()));
        self.addressed(message, reply, MessageType::Nak)
    }

    fn add_network_options(&self, reply: &mut v4::Message, pool: &Pool, with_lease: bool) {
        let opts = reply.opts_mut();
        opts.insert(DhcpOption::SubnetMask(pool.mask()));
        if let Some(router) = pool.router {
            opts.insert(DhcpOption::Router(vec![router]));
        }
        if !pool.dns.is_empty() {
            opts.insert(DhcpOption::DomainNameServer(pool.dns.clone()));
        }
        if with_lease {
            let seconds = u32::try_from(self.config.lease_time.num_seconds()).unwrap_or(u32::MAX);
            opts.insert(DhcpOption::AddressLeaseTime(seconds));
            opts.insert(DhcpOption::Renewal(seconds / 2));
            opts.insert(DhcpOption::Rebinding(seconds / 8 * 7));
        }
    }

    /// PXE/iPXE boot options: the HTTP script for iPXE, the iPXE binary by architecture for PXE firmware.
    fn add_boot_options(&self, reply: &mut v4::Message, mac: MacAddr, client: &BootClient) {
        let Some(file) = self.boot_file(mac, client) else {
            return;
        };
        reply.set_siaddr(self.config.tftp_server);
        reply.set_fname_str(&file);
        let opts = reply.opts_mut();
        opts.insert(DhcpOption::BootfileName(file.into_bytes()));
        opts.insert(DhcpOption::TFTPServerName(
            self.config.tftp_server.to_string().into_bytes(),
        ));
        if client.pxe {
            opts.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
            if let Some(id) = &client.machine_id {
                opts.insert(DhcpOption::ClientMachineIdentifier(id.clone()));
            }
            // PXE vendor options: discovery control 8 = boot from the file named here, no boot server discovery.
            opts.insert(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]));
        }
        if client.ipxe {
            // iPXE encapsulated options: 176 (no-pxedhcp) = 1, so iPXE does not wait for a ProxyDHCP answer.
            opts.insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::from(175u8),
                vec![176, 1, 1],
            )));
        }
    }

    /// The file a booting client should load, if it is a boot client kiln serves.
    pub fn boot_file(&self, mac: MacAddr, client: &BootClient) -> Option<String> {
        if client.ipxe {
            return Some(format!("{}/boot/{mac}.ipxe", self.config.http_url));
        }
        if !client.pxe {
            return None;
        }
        let files = &self.config.boot_files;
        match client.arch? {
            ClientArch::Bios => Some(files.bios.clone()),
            ClientArch::X64Efi => Some(files.x64_efi.clone()),
            ClientArch::X86Efi => files.x86_efi.clone(),
            ClientArch::Arm64Efi => files.arm64_efi.clone(),
            ClientArch::Other(_) => None,
        }
    }

    /// Where a reply goes (RFC 2131 section 4.1): via the relay when there is one, unicast to a configured
    /// client, else broadcast (an unconfigured client cannot receive unicast without ARP entries kiln does not
    /// set).
    fn addressed(&self, request: &v4::Message, reply: v4::Message, kind: MessageType) -> Reply {
        let to = if !request.giaddr().is_unspecified() {
            SocketAddrV4::new(request.giaddr(), self.config.relay_port)
        } else if kind != MessageType::Nak && !request.ciaddr().is_unspecified() {
            SocketAddrV4::new(request.ciaddr(), self.config.client_port)
        } else {
            SocketAddrV4::new(self.config.broadcast, self.config.client_port)
        };
        Reply {
            message: reply,
            to: SocketAddr::V4(to),
        }
    }
}

fn sighting<'a>(
    client: &'a BootClient,
    arch: Option<&'a str>,
    ip: Option<Ipv4Addr>,
) -> BootSighting<'a> {
    BootSighting {
        ip,
        client_arch: arch,
        vendor_class: client.vendor_class.as_deref(),
    }
}
