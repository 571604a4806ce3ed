//! The network boot services as part of a server process: [`BootServeArgs`] (flags, flattened into `kiln serve`
//! and `kiln boot serve`) and [`start_boot_services`], which starts what the flags ask for and returns a
//! [`BootServices`] handle holding the HTTP boot router for the caller's HTTP server to merge.
//!
//! Every service is off unless asked for: `--boot-assets` turns on the HTTP boot endpoints, `--dhcp-pool` full
//! DHCP, `--dhcp-proxy` ProxyDHCP, `--tftp-root` TFTP.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, bail};
use axum::Router;
use kiln_inventory::{MacAddr, Store};
use kiln_provisioner::boot::dhcp::{DhcpConfig, DhcpMode, DhcpServer, Pool};
use kiln_provisioner::boot::http::{BootHttp, BootHttpConfig};
use kiln_provisioner::boot::tftp::{TftpConfig, TftpServer};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Network boot flags: DHCP or ProxyDHCP, TFTP and the HTTP iPXE endpoints. All optional; nothing starts unless
/// asked for.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Network boot (off unless asked for)")]
pub struct BootServeArgs {
    /// kiln's address on the provisioning network: the DHCP server identifier and the TFTP server named to PXE
    /// clients. Needed for DHCP and ProxyDHCP.
    #[arg(long = "boot-server-ip", value_name = "IP")]
    pub server_ip: Option<Ipv4Addr>,
    /// Base URL booting machines use for the HTTP boot endpoints, e.g. http://10.9.0.1:8080 (where the HTTP
    /// server is reachable from the provisioning network). Needed for DHCP and the HTTP endpoints.
    #[arg(long = "boot-url", value_name = "URL")]
    pub public_url: Option<String>,
    /// Directory with the ramdisk's vmlinuz and initramfs.img (images/ramdisk/build.sh writes them); turns on
    /// the HTTP boot endpoints (/boot/MAC.ipxe, /boot/assets/…, /boot/report/MAC).
    #[arg(long = "boot-assets", value_name = "DIR")]
    pub assets: Option<PathBuf>,
    /// The catalog image, NAME:VERSION, that image and wipe ramdisks write (their scripts carry its URL under
    /// the boot URL's /images/sha256/, its sha256 and format).
    #[arg(long = "boot-image", value_name = "NAME:VERSION", value_parser = parse_image)]
    pub image: Option<(String, String)>,
    /// Extra kernel arguments for the ramdisk.
    #[arg(
        long = "boot-kernel-args",
        value_name = "ARGS",
        default_value = "console=ttyS0"
    )]
    pub kernel_args: String,
    /// Serve full DHCP with this dynamic pool, FIRST-LAST (e.g. 10.9.0.100-10.9.0.200).
    #[arg(long = "dhcp-pool", value_name = "FIRST-LAST", value_parser = parse_range)]
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Serve ProxyDHCP: another DHCP server owns the addresses; answer PXE clients with boot options only (on
    /// the DHCP port and on 4011).
    #[arg(long = "dhcp-proxy", conflicts_with = "pool")]
    pub proxy: bool,
    /// Serve DHCP on this network interface only.
    #[arg(long = "dhcp-interface", value_name = "IFACE")]
    pub interface: Option<String>,
    /// DHCP listen address (broadcasts reach only a wildcard address; change the port only for tests).
    #[arg(
        long = "dhcp-listen",
        value_name = "ADDR",
        default_value = "0.0.0.0:67"
    )]
    pub dhcp_listen: SocketAddr,
    /// ProxyDHCP's second listener (PXE boot server discovery).
    #[arg(
        long = "dhcp-proxy-listen",
        value_name = "ADDR",
        default_value = "0.0.0.0:4011"
    )]
    pub proxy_listen: SocketAddr,
    /// Prefix length of the provisioning subnet.
    #[arg(long = "dhcp-prefix-len", value_name = "BITS", default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=30))]
    pub prefix_len: u8,
    /// Default gateway given to DHCP clients.
    #[arg(long = "dhcp-router", value_name = "IP")]
    pub router: Option<Ipv4Addr>,
    /// A fixed address for a MAC, MAC=IP (repeatable).
    #[arg(long = "dhcp-reserve", value_name = "MAC=IP", value_parser = parse_reservation)]
    pub reservations: Vec<(MacAddr, Ipv4Addr)>,
    /// DHCP lease length in seconds.
    #[arg(long = "dhcp-lease-secs", value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(i64).range(60..))]
    pub lease_secs: i64,
    /// Serve TFTP from this directory of iPXE binaries (undionly.kpxe, ipxe.efi). Symlinks out of it are
    /// refused, so copy Debian's /usr/lib/ipxe files rather than pointing at it.
    #[arg(long = "tftp-root", value_name = "DIR")]
    pub tftp_root: Option<PathBuf>,
    /// TFTP listen address.
    #[arg(
        long = "tftp-listen",
        value_name = "ADDR",
        default_value = "0.0.0.0:69"
    )]
    pub tftp_listen: SocketAddr,
}

impl BootServeArgs {
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

fn parse_range(text: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let (first, last) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not FIRST-LAST"))?;
    let first: Ipv4Addr = first
        .trim()
        .parse()
        .map_err(|e| format!("{first:?}: {e}"))?;
    let last: Ipv4Addr = last.trim().parse().map_err(|e| format!("{last:?}: {e}"))?;
    if first > last {
        return Err(format!("{first} comes after {last}"));
    }
    Ok((first, last))
}

fn parse_image(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() => {
            Ok((name.to_string(), version.to_string()))
        }
        _ => Err(format!("{text:?} is not NAME:VERSION")),
    }
}

fn parse_reservation(text: &str) -> Result<(MacAddr, Ipv4Addr), String> {
    let (mac, ip) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not MAC=IP"))?;
    Ok((
        mac.parse().map_err(|e| format!("{e}"))?,
        ip.parse().map_err(|e| format!("{ip:?}: {e}"))?,
    ))
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
            "DHCP {}{}, TFTP {}, HTTP boot {}",
            show(self.dhcp_addr),
            self.proxy_addr
                .map(|a| format!(" (ProxyDHCP also on {a})"))
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
pub async fn start_boot_services(
    args: &BootServeArgs,
    store: Store,
) -> anyhow::Result<BootServices> {
    let mut services = BootServices {
        router: None,
        dhcp_addr: None,
        proxy_addr: None,
        tftp_addr: None,
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
    }
    Ok(services)
}

#[cfg(test)]
mod tests;
