//! `kiln boot serve|leases|discovered|explain`: the network boot services and what they know.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use kiln_inventory::MacAddr;
use kiln_provisioner::boot::decision::{BootAction, decide};
use kiln_provisioner::boot::dhcp::{DhcpConfig, DhcpMode, DhcpServer, Pool};
use kiln_provisioner::boot::http::{BootHttp, BootHttpConfig};
use kiln_provisioner::boot::tftp::{TftpConfig, TftpServer};

use crate::global::{KeyUse, print_json};
use crate::{GlobalArgs, table};

/// Network boot: DHCP/ProxyDHCP, TFTP and HTTP iPXE scripts.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: BootCommand,
}

#[derive(Debug, Subcommand)]
enum BootCommand {
    /// Run the boot services (DHCP or ProxyDHCP, TFTP, HTTP) until Ctrl-C.
    Serve(Box<ServeArgs>),
    /// List DHCP leases.
    Leases,
    /// List machines that asked to boot but are not enrolled.
    Discovered,
    /// What a network boot from MAC would get, and why.
    Explain {
        /// The boot MAC.
        mac: MacAddr,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// kiln's address on the provisioning network (DHCP server identifier, TFTP server, script URLs).
    #[arg(long)]
    server_ip: Ipv4Addr,
    /// Serve DHCP on this interface only.
    #[arg(long)]
    interface: Option<String>,
    /// First and last address of the dynamic pool, e.g. 10.9.0.100-10.9.0.200.
    #[arg(long, value_parser = parse_range)]
    pool: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Prefix length of the provisioning subnet.
    #[arg(long, default_value_t = 24)]
    prefix_len: u8,
    /// Default gateway to give clients.
    #[arg(long)]
    router: Option<Ipv4Addr>,
    /// Fixed address for a MAC, `MAC=IP` (repeatable).
    #[arg(long = "reserve", value_parser = parse_reservation)]
    reservations: Vec<(MacAddr, Ipv4Addr)>,
    /// ProxyDHCP mode: another DHCP server owns the addresses; answer PXE clients with boot options only.
    #[arg(long)]
    proxy: bool,
    /// Do not serve DHCP at all (TFTP and HTTP only).
    #[arg(long, conflicts_with = "proxy")]
    no_dhcp: bool,
    /// DHCP port (67; change only for tests).
    #[arg(long, default_value_t = 67)]
    dhcp_port: u16,
    /// Lease length in seconds.
    #[arg(long, default_value_t = 3600)]
    lease_secs: i64,
    /// Directory of iPXE binaries served over TFTP (undionly.kpxe, ipxe.efi).
    #[arg(long, default_value = "/usr/lib/ipxe")]
    tftp_root: PathBuf,
    /// TFTP listen address.
    #[arg(long, default_value = "0.0.0.0:69")]
    tftp_listen: SocketAddr,
    /// HTTP listen address for the boot endpoints.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// URL booting machines use for the HTTP endpoints (default http://SERVER_IP:HTTP_PORT).
    #[arg(long)]
    public_url: Option<String>,
    /// Directory with the ramdisk's vmlinuz and initramfs.img (images/ramdisk/build.sh writes them).
    #[arg(long)]
    assets: PathBuf,
    /// Extra kernel arguments for the ramdisk.
    #[arg(long, default_value = "console=ttyS0")]
    kernel_args: String,
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

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        BootCommand::Serve(serve_args) => serve(*serve_args, global).await,
        BootCommand::Leases => {
            let store = global.open_store(KeyUse::IfPresent).await?;
            let leases = store.dhcp_leases().await;
            store.close().await;
            let leases = leases?;
            if global.json {
                return print_json(&leases);
            }
            let rows: Vec<Vec<String>> = leases
                .iter()
                .map(|lease| {
                    vec![
                        lease.ip.to_string(),
                        lease
                            .mac
                            .map(|m| m.to_string())
                            .unwrap_or_else(|| "-".into()),
                        format!("{:?}", lease.state).to_lowercase(),
                        if lease.pinned {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                        lease
                            .node_id
                            .map(|id| id.to_string())
                            .unwrap_or_else(|| "-".into()),
                        lease.expires_at.to_rfc3339(),
                    ]
                })
                .collect();
            println!(
                "{}",
                table::render(&["IP", "MAC", "STATE", "PINNED", "NODE", "EXPIRES"], &rows)
            );
            Ok(())
        }
        BootCommand::Discovered => {
            let store = global.open_store(KeyUse::IfPresent).await?;
            let machines = store.discovered_machines().await;
            store.close().await;
            let machines = machines?;
            if global.json {
                return print_json(&machines);
            }
            let rows: Vec<Vec<String>> = machines
                .iter()
                .map(|m| {
                    vec![
                        m.mac.to_string(),
                        m.last_ip
                            .map(|ip| ip.to_string())
                            .unwrap_or_else(|| "-".into()),
                        m.client_arch.clone().unwrap_or_else(|| "-".into()),
                        m.seen_count.to_string(),
                        m.last_seen_at.to_rfc3339(),
                        m.reported_at
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            println!(
                "{}",
                table::render(
                    &["MAC", "LAST IP", "ARCH", "SEEN", "LAST SEEN", "REPORTED"],
                    &rows
                )
            );
            Ok(())
        }
        BootCommand::Explain { mac } => explain(mac, global).await,
    }
}

async fn explain(mac: MacAddr, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store(KeyUse::IfPresent).await?;
    let decision = decide(&store, mac).await;
    store.close().await;
    let decision = decision?;
    if global.json {
        return print_json(&decision);
    }
    println!("{mac}: {}", decision.reason);
    println!("  PXE firmware (BIOS, arch 0)      → TFTP undionly.kpxe, which chains to iPXE");
    println!("  PXE firmware (UEFI, arch 7 or 9) → TFTP ipxe.efi, which chains to iPXE");
    println!("  iPXE (user class iPXE)           → HTTP /boot/{mac}.ipxe");
    match decision.action {
        BootAction::Ramdisk(mode) => println!(
            "  the script boots the kiln ramdisk with kiln.mode={} and a fresh boot token",
            mode.as_str()
        ),
        BootAction::LocalDisk => {
            println!(
                "  the script leaves network boot: sanboot the first disk (BIOS) or exit 1 (UEFI)"
            )
        }
    }
    Ok(())
}

async fn serve(args: ServeArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store(KeyUse::IfPresent).await?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}:{}", args.server_ip, args.http_listen.port()));

    let tftp = TftpServer::bind(TftpConfig::new(&args.tftp_root, args.tftp_listen))
        .await?
        .start()?;

    let mut http_config = BootHttpConfig::new(public_url.clone(), &args.assets);
    http_config.kernel_args = args.kernel_args.clone();
    let router = BootHttp::new(store.clone(), http_config).router();
    let listener = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("binding HTTP to {}", args.http_listen))?;
    let http_addr = listener.local_addr()?;
    let http = tokio::spawn(axum::serve(listener, router).into_future());

    let dhcp = if args.no_dhcp {
        None
    } else {
        let prefix = args.prefix_len.min(32);
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let network = Ipv4Addr::from(u32::from(args.server_ip) & mask);
        let (first, last) = match (args.pool, args.proxy) {
            (Some(range), _) => range,
            (None, true) => (args.server_ip, args.server_ip),
            (None, false) => {
                anyhow::bail!("--pool FIRST-LAST is needed unless --proxy or --no-dhcp")
            }
        };
        let pool = Pool {
            network,
            prefix_len: prefix,
            first,
            last,
            router: args.router,
            dns: Vec::new(),
        };
        let mut config = DhcpConfig::new(args.server_ip, public_url.clone(), pool);
        config.bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.dhcp_port));
        config.interface = args.interface.clone();
        config.reservations = args.reservations.clone();
        config.lease_time = chrono::Duration::seconds(args.lease_secs.max(60));
        if args.proxy {
            config.mode = DhcpMode::Proxy;
            config.proxy_bind = Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 4011)));
        }
        Some(DhcpServer::bind(config, store.clone()).await?.start()?)
    };

    eprintln!(
        "kiln boot: TFTP {} (root {}), HTTP {http_addr} (public {public_url}), DHCP {}",
        tftp.local_addr,
        args.tftp_root.display(),
        dhcp.as_ref()
            .map(|d| d.local_addr.to_string())
            .unwrap_or_else(|| "off".into())
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("kiln boot: stopping");
    if let Some(dhcp) = dhcp {
        dhcp.shutdown().await;
    }
    tftp.shutdown().await;
    http.abort();
    store.close().await;
    Ok(())
}
