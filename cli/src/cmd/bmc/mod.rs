//! `kiln bmc …`: direct BMC operations (power, boot device, inspect, event log, virtual media, firmware
//! inventory, BIOS settings), the
//! certificate probe for trust on first use, and the simulated BMC fleet. Thin: the work is in kiln-bmc and
//! kiln-bmc-sim.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use kiln_bmc::redfish::probe_fingerprint;
use kiln_bmc::target::{ConnectOptions, Endpoint, connect};
use kiln_bmc::{Bmc, BootDevice, BootMode, BootOverride, Credentials, PowerAction};
use kiln_inventory::Store;

use crate::GlobalArgs;
use crate::global::KeyUse;

mod firmware;
mod fleet_ops;

use firmware::BiosAction;
use fleet_ops::{run_sim, sweep};

/// Direct BMC operations and the simulated BMC fleet.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: BmcCommand,
}

/// Which BMC to talk to and how.
#[derive(Debug, clap::Args)]
struct Target {
    /// Redfish service URL, e.g. `https://10.0.0.5` or `https://127.0.0.1:8443`.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with_all = ["ipmi", "node"],
        required_unless_present_any = ["ipmi", "node"]
    )]
    redfish: Option<String>,
    /// An inventory node: its BMC address, protocol, user, password (decrypted with the site key) and pinned
    /// certificate come from the inventory; a certificate seen for the first time is pinned and recorded.
    #[arg(long, value_name = "SERIAL", conflicts_with = "ipmi")]
    node: Option<String>,
    /// IPMI-over-LAN BMC, `HOST[:PORT]` (port 623 by default).
    #[arg(long, value_name = "HOST[:PORT]")]
    ipmi: Option<String>,
    /// BMC user name.
    #[arg(long, default_value = "admin")]
    user: String,
    /// Environment variable holding the BMC password (never pass passwords on the command line).
    #[arg(long, value_name = "VAR", default_value = "KILN_BMC_PASSWORD")]
    password_env: String,
    /// Accept any TLS certificate (labs only).
    #[arg(long, conflicts_with = "fingerprint")]
    insecure: bool,
    /// Pinned SHA-256 fingerprint of the BMC's certificate (see `kiln bmc fingerprint`).
    #[arg(long, value_name = "SHA256")]
    fingerprint: Option<String>,
    /// Limit for one request to the BMC, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
}

impl Target {
    async fn connect(&self, global: &GlobalArgs) -> anyhow::Result<Box<dyn Bmc>> {
        let options = ConnectOptions {
            request_timeout: Duration::from_secs(self.timeout_s),
        };
        if let Some(serial) = &self.node {
            let store = global.open_store(KeyUse::IfPresent).await?;
            return connect_node(&store, serial, self.insecure, options).await;
        }
        let endpoint = match (&self.redfish, &self.ipmi) {
            (Some(url), _) => Endpoint::redfish(url, self.fingerprint.as_deref(), self.insecure)?,
            (None, Some(address)) => Endpoint::ipmi(address)?,
            (None, None) => {
                bail!("name a BMC with --redfish URL, --ipmi HOST[:PORT] or --node SERIAL")
            }
        };
        if let Endpoint::Redfish { url, tls: None } = &endpoint
            && url.starts_with("https://")
        {
            bail!(
                "{url}: pin the certificate with --fingerprint (see `kiln bmc fingerprint`) or pass --insecure"
            );
        }
        let password = std::env::var(&self.password_env).with_context(|| {
            format!(
                "the BMC password is read from ${}, which is not set",
                self.password_env
            )
        })?;
        Ok(connect(
            &endpoint,
            Credentials::new(self.user.clone(), password),
            options,
        )?)
    }
}

/// Connects to an inventory node's BMC; pins (and records) its certificate on first use.
async fn connect_node(
    store: &Store,
    serial: &str,
    insecure: bool,
    options: ConnectOptions,
) -> anyhow::Result<Box<dyn Bmc>> {
    let node = store.node_by_serial(serial).await?;
    let (bmc, pinned) = kiln_api::power::connect_node(store, &node, insecure, options).await?;
    if let Some(fingerprint) = pinned {
        eprintln!("note: {serial}: pinned the BMC certificate {fingerprint} (trust on first use)");
    }
    Ok(bmc)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PowerArg {
    /// Print `On` or `Off`.
    Status,
    /// Power on.
    On,
    /// Cut power now.
    Off,
    /// Ask the OS to shut down.
    Soft,
    /// Power off then on.
    Cycle,
    /// Hard reset.
    Reset,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BootArg {
    /// Network boot.
    Pxe,
    /// Local disk.
    Disk,
    /// CD/DVD (virtual media).
    Cd,
    /// UEFI HTTP boot.
    Http,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MediaArg {
    /// List the slots.
    List,
    /// Attach an image (needs --image).
    Insert,
    /// Detach the image.
    Eject,
}

#[derive(Debug, Subcommand)]
enum BmcCommand {
    /// Power status (`On`/`Off`) or a power action.
    Power {
        #[command(flatten)]
        target: Target,
        /// What to do.
        action: PowerArg,
    },
    /// Set the boot device (persistent unless --once).
    Boot {
        #[command(flatten)]
        target: Target,
        /// Boot device.
        device: BootArg,
        /// Next boot only.
        #[arg(long)]
        once: bool,
        /// Ask for UEFI boot mode.
        #[arg(long)]
        uefi: bool,
    },
    /// Power state, identity and capabilities.
    Inspect {
        #[command(flatten)]
        target: Target,
    },
    /// Read (or clear) the event log.
    Sel {
        #[command(flatten)]
        target: Target,
        /// Clear the log after reading it.
        #[arg(long)]
        clear: bool,
    },
    /// Virtual media: list, insert an image URL, eject.
    Media {
        #[command(flatten)]
        target: Target,
        /// What to do.
        action: MediaArg,
        /// Image URL to insert.
        #[arg(long, required_if_eq("action", "insert"))]
        image: Option<String>,
        /// Slot id (default: the first CD/DVD slot).
        #[arg(long)]
        slot: Option<String>,
    },
    /// Firmware components and their versions (Redfish FirmwareInventory; IPMI: the BMC's own firmware).
    Firmware {
        #[command(flatten)]
        target: Target,
    },
    /// BIOS attributes and pending changes; `set KEY=VALUE...` asks for changes.
    #[command(subcommand_negates_reqs = true)]
    Bios {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: Option<BiosAction>,
    },
    /// Print the SHA-256 fingerprint of a BMC's TLS certificate (trust on first use).
    Fingerprint {
        /// `HOST[:PORT]` (port 443 by default).
        address: String,
    },
    /// Power status of every inventory BMC (optionally one hall's), with bounded concurrency.
    Sweep {
        /// Only nodes in this hall.
        #[arg(long)]
        hall: Option<String>,
        /// BMCs queried at once.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Limit for one attempt on one BMC, in seconds.
        #[arg(long, default_value_t = 15)]
        timeout_s: u64,
        /// Accept any TLS certificate (labs only).
        #[arg(long)]
        insecure: bool,
    },
    /// Run a simulated BMC fleet in the foreground and print its endpoints.
    Sim {
        /// Number of BMCs.
        #[arg(long, default_value_t = 4)]
        count: usize,
        /// First port (BMC i listens on base+i); default: any free ports.
        #[arg(long)]
        base_port: Option<u16>,
        /// Only this vendor profile (dell, hpe, supermicro, openbmc); default: all, in turn.
        #[arg(long)]
        profile: Option<String>,
        /// Serve plain HTTP instead of HTTPS.
        #[arg(long)]
        http: bool,
        /// Seconds a simulated server takes to power on.
        #[arg(long, default_value_t = 2.0)]
        power_on_s: f64,
    },
}

/// Runs `kiln bmc …`.
pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        BmcCommand::Power { target, action } => {
            let bmc = target.connect(global).await?;
            let result = power(bmc.as_ref(), action, global).await;
            bmc.close().await;
            result
        }
        BmcCommand::Boot {
            target,
            device,
            once,
            uefi,
        } => {
            let bmc = target.connect(global).await?;
            let device = match device {
                BootArg::Pxe => BootDevice::Pxe,
                BootArg::Disk => BootDevice::Disk,
                BootArg::Cd => BootDevice::Cd,
                BootArg::Http => BootDevice::UefiHttp,
            };
            let mode = uefi.then_some(BootMode::Uefi);
            let result = bmc.set_boot(BootOverride { device, once, mode }).await;
            bmc.close().await;
            result?;
            if global.json {
                println!(
                    "{}",
                    serde_json::json!({ "boot": device.to_string(), "once": once, "uefi": uefi })
                );
            }
            Ok(())
        }
        BmcCommand::Inspect { target } => {
            let bmc = target.connect(global).await?;
            let result = bmc.inspect().await;
            bmc.close().await;
            let inspection = result?;
            if global.json {
                println!("{}", inspection.contract_json());
            } else {
                println!("power:         {}", inspection.power_state.contract_str());
                println!(
                    "manufacturer:  {}",
                    inspection.manufacturer.as_deref().unwrap_or("-")
                );
                println!(
                    "model:         {}",
                    inspection.model.as_deref().unwrap_or("-")
                );
                println!(
                    "serial:        {}",
                    inspection.serial.as_deref().unwrap_or("-")
                );
                println!("reset types:   {}", inspection.reset_types.join(", "));
                println!("boot targets:  {}", inspection.boot_targets.join(", "));
                println!(
                    "boot mode:     {}",
                    inspection.boot_mode.as_deref().unwrap_or("-")
                );
                for slot in &inspection.virtual_media {
                    println!(
                        "media {}: {}",
                        slot.id,
                        slot.image.as_deref().unwrap_or(if slot.inserted {
                            "inserted"
                        } else {
                            "empty"
                        })
                    );
                }
            }
            Ok(())
        }
        BmcCommand::Sel { target, clear } => {
            let bmc = target.connect(global).await?;
            let result = async {
                let entries = bmc.read_log().await?;
                if clear {
                    bmc.clear_log().await?;
                }
                Ok::<_, kiln_bmc::BmcError>(entries)
            }
            .await;
            bmc.close().await;
            let entries = result?;
            if global.json {
                println!("{}", serde_json::to_string(&entries)?);
            } else {
                for entry in &entries {
                    println!(
                        "{:>6}  {:<25}  {:<8}  {}",
                        entry.id,
                        entry.created.as_deref().unwrap_or("-"),
                        entry.severity.as_deref().unwrap_or("-"),
                        entry.message
                    );
                }
            }
            Ok(())
        }
        BmcCommand::Media {
            target,
            action,
            image,
            slot,
        } => {
            let bmc = target.connect(global).await?;
            let result = async {
                match action {
                    MediaArg::List => {}
                    MediaArg::Insert => {
                        let image = image.as_deref().unwrap_or_default();
                        bmc.insert_media(slot.as_deref(), image).await?;
                    }
                    MediaArg::Eject => bmc.eject_media(slot.as_deref()).await?,
                }
                bmc.virtual_media().await
            }
            .await;
            bmc.close().await;
            let slots = result?;
            if global.json {
                println!("{}", serde_json::to_string(&slots)?);
            } else {
                for slot in slots {
                    println!(
                        "{}\t{}\t{}",
                        slot.id,
                        slot.inserted,
                        slot.image.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(())
        }
        BmcCommand::Firmware { target } => {
            let bmc = target.connect(global).await?;
            let result = firmware::show_firmware(bmc.as_ref(), global).await;
            bmc.close().await;
            result
        }
        BmcCommand::Bios { target, action } => {
            let target = match &action {
                Some(BiosAction::Set { target, .. }) => target,
                None => &target,
            };
            let bmc = target.connect(global).await?;
            let result = firmware::bios(bmc.as_ref(), action, global).await;
            bmc.close().await;
            result
        }
        BmcCommand::Fingerprint { address } => {
            let endpoint = Endpoint::ipmi(&address)?;
            let (host, port) = match endpoint {
                Endpoint::Ipmi { host, port } if address.ends_with(&format!(":{port}")) => {
                    (host, port)
                }
                Endpoint::Ipmi { host, .. } => (host, 443),
                Endpoint::Redfish { .. } => bail!("expected HOST[:PORT]"),
            };
            let fingerprint = probe_fingerprint(&host, port, Duration::from_secs(10)).await?;
            if global.json {
                println!(
                    "{}",
                    serde_json::json!({ "host": host, "port": port, "sha256": fingerprint.to_string() })
                );
            } else {
                println!("{fingerprint}");
            }
            Ok(())
        }
        BmcCommand::Sweep {
            hall,
            concurrency,
            timeout_s,
            insecure,
        } => sweep(hall, concurrency, timeout_s, insecure, global).await,
        BmcCommand::Sim {
            count,
            base_port,
            profile: name,
            http,
            power_on_s,
        } => run_sim(count, base_port, name, http, power_on_s, global).await,
    }
}

async fn power(bmc: &dyn Bmc, action: PowerArg, global: &GlobalArgs) -> anyhow::Result<()> {
    let action = match action {
        PowerArg::Status => {
            let state = bmc.power_state().await?;
            if global.json {
                println!(
                    "{}",
                    serde_json::json!({ "power_state": state.contract_str() })
                );
            } else {
                println!("{}", state.contract_str());
            }
            return Ok(());
        }
        PowerArg::On => PowerAction::On,
        PowerArg::Off => PowerAction::ForceOff,
        PowerArg::Soft => PowerAction::SoftOff,
        PowerArg::Cycle => PowerAction::Cycle,
        PowerArg::Reset => PowerAction::Reset,
    };
    bmc.set_power(action).await?;
    Ok(())
}
