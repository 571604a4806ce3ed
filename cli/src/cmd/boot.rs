//! `kiln boot serve|leases|discovered|explain|grant`: the network boot services and what they know.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use kiln_inventory::MacAddr;
use kiln_provisioner::boot::decision::{BootAction, decide};
use kiln_provisioner::lifecycle::report_router;
use tokio::sync::Notify;

use crate::cmd::boot_serve::{BootServeArgs, start_boot_services};
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
    /// Allow one network boot of a node that no engine asked for (a technician boots it by hand): the first
    /// script fetch within the window gets a boot token; later fetches get none and are noted as possible
    /// spoofs. The engine opens such a grant itself for every network boot it asks for.
    Grant {
        /// The node's chassis serial.
        serial: String,
        /// How long the script fetch may take to come.
        #[arg(long, value_parser = kiln_health::duration::parse_duration, default_value = "15m")]
        window: std::time::Duration,
        /// Why, for the node's history.
        #[arg(long, default_value = "technician boots the node by hand")]
        reason: String,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// HTTP listen address for the boot endpoints.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    #[command(flatten)]
    boot: BootServeArgs,
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
        BootCommand::Grant {
            serial,
            window,
            reason,
        } => grant(&serial, window, &reason, global).await,
    }
}

async fn grant(
    serial: &str,
    window: std::time::Duration,
    reason: &str,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let store = global.open_store(KeyUse::IfPresent).await?;
    let result = async {
        let node = store
            .node_by_serial(serial)
            .await
            .with_context(|| format!("no node {serial}"))?;
        let now = store.now();
        store.open_boot_grant(node.id, now, window).await?;
        store
            .record_event(
                node.id,
                "technician",
                &format!("opened a boot grant for {} s: {reason}", window.as_secs()),
            )
            .await?;
        anyhow::Ok((node, now))
    }
    .await;
    store.close().await;
    let (node, now) = result?;
    let until = now + chrono::Duration::from_std(window).unwrap_or_default();
    if global.json {
        return print_json(&serde_json::json!({
            "serial": node.serial,
            "boot_mac": node.boot_mac.to_string(),
            "window_ends_at": until,
        }));
    }
    println!(
        "{}: one network boot from {} may fetch its token until {until}",
        node.serial, node.boot_mac
    );
    Ok(())
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
            "  the script boots the kiln ramdisk with kiln.mode={} and a boot token, when kiln asked for this \
             boot (an open boot grant, claimed once, from the MAC's DHCP address); else it boots nothing",
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

async fn serve(mut args: ServeArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if !args.boot.any_requested() {
        anyhow::bail!(
            "nothing to serve: give --boot-assets (HTTP), --dhcp-pool or --dhcp-proxy (DHCP), --tftp-root (TFTP)"
        );
    }
    if args.boot.public_url.is_none()
        && let Some(ip) = args.boot.server_ip
    {
        args.boot.public_url = Some(format!("http://{ip}:{}", args.http_listen.port()));
    }
    let store = global.open_store(KeyUse::IfPresent).await?;
    let services = start_boot_services(&args.boot, store.clone()).await?;
    let http = match services.http_router() {
        Some(router) => {
            // Agents in the ramdisk report here too. No lifecycle engine runs in `kiln boot serve`: reports are
            // stored and noted in the node's history, and the waker has no one to wake.
            let router = router.merge(report_router(store.clone(), Arc::new(Notify::new()), None));
            let listener = tokio::net::TcpListener::bind(args.http_listen)
                .await
                .with_context(|| format!("binding HTTP to {}", args.http_listen))?;
            eprintln!("kiln boot: HTTP listening on {}", listener.local_addr()?);
            Some(tokio::spawn(
                axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .into_future(),
            ))
        }
        None => None,
    };
    eprintln!("kiln boot: {}", services.summary());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("kiln boot: stopping");
    services.shutdown().await;
    if let Some(http) = http {
        http.abort();
    }
    store.close().await;
    Ok(())
}
