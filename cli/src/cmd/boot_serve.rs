//! The network boot flags: [`BootServeArgs`] (flattened into `kiln serve` and `kiln boot serve`), turned into
//! kiln-server's [`BootConfig`]; [`start_boot_services`] starts what the flags ask for and returns kiln-server's
//! [`BootServices`] handle holding the HTTP boot router for the caller's HTTP server to merge.
//!
//! Every service is off unless asked for: `--boot-assets` turns on the HTTP boot endpoints, `--dhcp-pool` full
//! DHCP, `--dhcp-proxy` ProxyDHCP, `--tftp-root` TFTP.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use kiln_inventory::{MacAddr, Store};
pub use kiln_server::{BootConfig, BootServices};

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
    #[arg(long = "boot-image", value_name = "NAME:VERSION", value_parser = kiln_inventory::parse_image_ref)]
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
    /// Do not answer IPv6 router solicitations on --dhcp-interface. kiln answers them with an advertisement that
    /// configures nothing (router lifetime 0, no prefix), which saves iPXE about 16 s per boot on an IPv4-only
    /// provisioning network.
    #[arg(long = "no-ipv6-ra")]
    pub no_ipv6_ra: bool,
}

impl BootServeArgs {
    /// Whether any boot service is asked for.
    pub fn any_requested(&self) -> bool {
        self.config().any_requested()
    }

    /// The settings these flags describe, for kiln-server.
    pub fn config(&self) -> BootConfig {
        BootConfig {
            server_ip: self.server_ip,
            public_url: self.public_url.clone(),
            assets: self.assets.clone(),
            image: self.image.clone(),
            kernel_args: self.kernel_args.clone(),
            pool: self.pool,
            proxy: self.proxy,
            interface: self.interface.clone(),
            dhcp_listen: self.dhcp_listen,
            proxy_listen: self.proxy_listen,
            prefix_len: self.prefix_len,
            router: self.router,
            reservations: self.reservations.clone(),
            lease_secs: self.lease_secs,
            tftp_root: self.tftp_root.clone(),
            tftp_listen: self.tftp_listen,
            ipv6_ra: !self.no_ipv6_ra,
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

fn parse_reservation(text: &str) -> Result<(MacAddr, Ipv4Addr), String> {
    let (mac, ip) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not MAC=IP"))?;
    Ok((
        mac.parse().map_err(|e| format!("{e}"))?,
        ip.parse().map_err(|e| format!("{ip:?}: {e}"))?,
    ))
}

/// Starts the boot services `args` ask for, over `store` (kiln-server's [`kiln_server::start_boot_services`]).
pub async fn start_boot_services(
    args: &BootServeArgs,
    store: Store,
) -> anyhow::Result<BootServices> {
    kiln_server::start_boot_services(&args.config(), store).await
}

#[cfg(test)]
mod tests;
