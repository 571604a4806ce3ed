//! The network boot services as part of a server process: [`BootConfig`] (what to start; `kiln serve` and
//! `kiln boot serve` fill it from their flags) and [`start_boot_services`], which starts what it asks for and
//! returns a [`BootServices`] handle holding the HTTP boot router for the caller's HTTP server to merge.
//!
//! Every service is off unless asked for: `assets` turns on the HTTP boot endpoints, `pool` full DHCP, `proxy`
//! ProxyDHCP, `tftp_root` TFTP. Error messages name the `kiln` flags that set each field.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, bail};
use axum::Router;
use kiln_inventory::{MacAddr, Store};
use kiln_provisioner::boot::dhcp::{DhcpConfig, DhcpMode, DhcpServer, Pool};
use kiln_provisioner::boot::http::{BootHttp, BootHttpConfig};
use kiln_provisioner::boot::ra::RaResponder;
use kiln_provisioner::boot::tftp::{TftpConfig, TftpServer};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Network boot settings: DHCP or ProxyDHCP, TFTP and the HTTP iPXE endpoints. Nothing starts unless asked for.
/// Each field's flag is named in brackets.
#[derive(Debug, Clone)]
pub struct BootConfig {
    /// kiln's address on the provisioning network (`--boot-server-ip`); needed for DHCP and ProxyDHCP.
    pub server_ip: Option<Ipv4Addr>,
    /// Base URL booting machines use for the HTTP boot endpoints (`--boot-url`).
    pub public_url: Option<String>,
    /// Directory with the ramdisk's vmlinuz and initramfs.img (`--boot-assets`); turns on the HTTP endpoints.
    pub assets: Option<PathBuf>,
    /// The catalog image (name, version) that image and wipe ramdisks write (`--boot-image`).
    pub image: Option<(String, String)>,
    /// Extra kernel arguments for the ramdisk (`--boot-kernel-args`).
    pub kernel_args: String,
    /// Full DHCP with this dynamic pool, first and last address (`--dhcp-pool`).
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
    /// ProxyDHCP: answer PXE clients with boot options only (`--dhcp-proxy`).
    pub proxy: bool,
    /// Serve DHCP on this network interface only (`--dhcp-interface`).
    pub interface: Option<String>,
    /// DHCP listen address (`--dhcp-listen`).
    pub dhcp_listen: SocketAddr,
    /// ProxyDHCP's second listener (`--dhcp-proxy-listen`).
    pub proxy_listen: SocketAddr,
    /// Prefix length of the provisioning subnet (`--dhcp-prefix-len`).
    pub prefix_len: u8,
    /// Default gateway given to DHCP clients (`--dhcp-router`).
    pub router: Option<Ipv4Addr>,
    /// Fixed addresses per MAC (`--dhcp-reserve`).
    pub reservations: Vec<(MacAddr, Ipv4Addr)>,
    /// DHCP lease length in seconds (`--dhcp-lease-secs`).
    pub lease_secs: i64,
    /// Serve TFTP from this directory of iPXE binaries (`--tftp-root`).
    pub tftp_root: Option<PathBuf>,
    /// TFTP listen address (`--tftp-listen`).
    pub tftp_listen: SocketAddr,
    /// Answer IPv6 router solicitations on the DHCP interface with an advertisement that configures nothing,
    /// so iPXE does not wait for one (off with `--no-ipv6-ra`); see kiln-provisioner's `boot::ra`.
    pub ipv6_ra: bool,
}

impl BootConfig {
    /// Whether any boot service is asked for.
    pub fn any_requested(&self) -> bool {
        self.assets.is_some() || self.pool.is_some() || self.proxy || self.tftp_root.is_some()
    }

    fn dhcp_mode(&self) -> Option<DhcpMode> {
        match (self.pool, self.proxy) {
            (Some(_), _) => Some(DhcpMode::Full),
            (None, true) => Some(DhcpMode::Proxy),
            (None, false) => None,
        }
    }
}

/// Running boot services. Dropping the handle stops them (their tasks are cancelled and aborted);
/// [`BootServices::shutdown`] stops them and waits until their sockets are closed.
#[derive(Debug)]
pub struct BootServices {
    router: Option<Router>,
    /// Where DHCP listens, when it runs.
    pub dhcp_addr: Option<SocketAddr>,
    /// Where ProxyDHCP's port-4011 listener listens, when it runs.
    pub proxy_addr: Option<SocketAddr>,
    /// Where TFTP listens, when it runs.
    pub tftp_addr: Option<SocketAddr>,
    /// The interface where IPv6 router solicitations are answered, when that runs.
    pub ra_interface: Option<String>,
    public_url: Option<String>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl BootServices {
    /// The HTTP boot endpoints to merge into the caller's router (`None` without `--boot-assets`).
    pub fn http_router(&self) -> Option<Router> {
        self.router.clone()
    }

    /// One line saying what runs where, for the server's start-up message.
    pub fn summary(&self) -> String {
        let show =
            |addr: Option<SocketAddr>| addr.map_or_else(|| "off".to_string(), |a| a.to_string());
        format!(
            "DHCP {}{}{}, TFTP {}, HTTP boot {}",
            show(self.dhcp_addr),
            self.proxy_addr
                .map(|a| format!(" (ProxyDHCP also on {a})"))
                .unwrap_or_default(),
            self.ra_interface
                .as_ref()
                .map(|i| format!(", IPv6 router solicitations answered on {i}"))
                .unwrap_or_default(),
            show(self.tftp_addr),
            match (&self.router, &self.public_url) {
                (Some(_), Some(url)) => format!("{url}/boot/"),
                _ => "off".to_string(),
            }
        )
    }

    /// Stops every service and waits for its task to end (sockets closed, transfers cancelled).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        while let Some(result) = self.tasks.join_next().await {
            if let Err(err) = result {
                tracing::warn!(error = %err, "a boot service task ended abnormally");
            }
        }
    }
}

impl Drop for BootServices {
    fn drop(&mut self) {
        // The JoinSet aborts its tasks when dropped; cancelling first lets them see a clean stop.
        self.cancel.cancel();
    }
}

/// Starts the boot services `args` ask for, over `store`. With none asked for, returns an empty handle.
pub async fn start_boot_services(args: &BootConfig, store: Store) -> anyhow::Result<BootServices> {
    let mut services = BootServices {
        router: None,
        dhcp_addr: None,
        proxy_addr: None,
        tftp_addr: None,
        ra_interface: None,
        public_url: args
            .public_url
            .as_deref()
            .map(|url| url.trim_end_matches('/').to_string()),
        cancel: CancellationToken::new(),
        tasks: JoinSet::new(),
    };
    let dhcp_mode = args.dhcp_mode();
    // Check every flag before starting anything.
    let dhcp_server_ip = match dhcp_mode {
        Some(_) => Some(args.server_ip.context(
            "DHCP needs --boot-server-ip IP (kiln's address on the provisioning network)",
        )?),
        None => None,
    };
    if dhcp_mode.is_some() && args.assets.is_none() {
        bail!(
            "DHCP sends iPXE to the HTTP boot endpoints, which need --boot-assets DIR (the ramdisk's vmlinuz and initramfs.img)"
        );
    }
    if let Some(assets) = &args.assets {
        let Some(public_url) = &services.public_url else {
            bail!(
                "the HTTP boot endpoints need --boot-url URL (how booting machines reach this server)"
            );
        };
        if !public_url.starts_with("http://") && !public_url.starts_with("https://") {
            bail!("--boot-url {public_url:?} is not an http:// or https:// URL");
        }
        if !assets.is_dir() {
            bail!("--boot-assets {} is not a directory", assets.display());
        }
        let mut config = BootHttpConfig::new(public_url.clone(), assets);
        config.kernel_args = args.kernel_args.clone();
        config.image = args.image.clone();
        services.router = Some(BootHttp::new(store.clone(), config).router());
    }
    if let Some(root) = &args.tftp_root {
        let server = TftpServer::bind(TftpConfig::new(root, args.tftp_listen)).await?;
        services.tftp_addr = Some(server.local_addr()?);
        services.tasks.spawn(server.run(services.cancel.clone()));
    }
    if let (Some(mode), Some(server_ip), Some(public_url)) =
        (dhcp_mode, dhcp_server_ip, services.public_url.clone())
    {
        let mask = u32::MAX << (32 - u32::from(args.prefix_len));
        let network = Ipv4Addr::from(u32::from(server_ip) & mask);
        // ProxyDHCP hands out no addresses; its pool only names the subnet.
        let (first, last) = args.pool.unwrap_or((server_ip, server_ip));
        let pool = Pool {
            network,
            prefix_len: args.prefix_len,
            first,
            last,
            router: args.router,
            dns: Vec::new(),
        };
        if mode == DhcpMode::Full && !(pool.subnet_contains(first) && pool.subnet_contains(last)) {
            bail!(
                "--dhcp-pool {first}-{last} is not inside {network}/{} (the subnet of --boot-server-ip)",
                args.prefix_len
            );
        }
        let mut config = DhcpConfig::new(server_ip, public_url, pool);
        config.mode = mode;
        config.bind = args.dhcp_listen;
        config.interface = args.interface.clone();
        config.reservations = args.reservations.clone();
        config.lease_time = chrono::Duration::seconds(args.lease_secs);
        if mode == DhcpMode::Proxy {
            config.proxy_bind = Some(args.proxy_listen);
        }
        let server = DhcpServer::bind(config, store).await?;
        services.dhcp_addr = Some(server.local_addr()?);
        services.proxy_addr = server.proxy_addr()?;
        services.tasks.spawn(server.run(services.cancel.clone()));
        start_router_advertisements(args, &mut services);
    }
    Ok(services)
}

/// Starts the IPv6 router advertisement responder beside DHCP when asked for. It only saves iPXE's IPv6 wait, so
/// a failure to start it (no CAP_NET_RAW, no interface named) is a warning, not a failed start.
fn start_router_advertisements(args: &BootConfig, services: &mut BootServices) {
    if !args.ipv6_ra {
        return;
    }
    let Some(interface) = &args.interface else {
        tracing::warn!(
            "no --dhcp-interface: kiln cannot answer IPv6 router solicitations, so iPXE waits about 16 s for one on every boot"
        );
        return;
    };
    match RaResponder::bind(interface) {
        Ok(responder) => {
            services.ra_interface = Some(interface.clone());
            services.tasks.spawn(responder.run(services.cancel.clone()));
        }
        Err(err) => tracing::warn!(
            error = %err,
            "not answering IPv6 router solicitations: iPXE waits about 16 s for one on every boot"
        ),
    }
}
