//! `kiln node list`, `kiln node show SERIAL`, `kiln node power SERIAL on|off|cycle` and `kiln node repair SERIAL
//! --done`, on the local database or over the API (`--server`); the technician verbs (drain, undrain, events) are
//! in `node_verbs.rs`.

use clap::Subcommand;
use kiln_api::power::NodePower;
use kiln_inventory::{Node, NodeState};

use crate::client::{Client, NodeQuery, NodeView};
use crate::global::{KeyUse, print_json};
use crate::{GlobalArgs, table};

/// Nodes.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// List nodes, optionally filtered.
    List {
        /// Only this hall.
        #[arg(long)]
        hall: Option<String>,
        /// Only this rack.
        #[arg(long)]
        rack: Option<String>,
        /// Only nodes in this state (enrolled, discovering, …, burn_in, …, quarantined).
        #[arg(long)]
        state: Option<NodeState>,
        /// Only this SKU.
        #[arg(long)]
        sku: Option<String>,
        /// At most this many nodes.
        #[arg(long)]
        limit: Option<i64>,
        /// Start after this node id (the last id of the previous page).
        #[arg(long)]
        after: Option<i64>,
    },
    /// Show one node: place, BMC (never its password), hardware, history and health runs.
    Show {
        /// Chassis serial.
        serial: String,
    },
    /// Power a node on, off (immediately) or cycle it through its BMC; recorded in its history.
    Power {
        /// Chassis serial.
        serial: String,
        /// What to do.
        #[arg(value_enum)]
        action: PowerArg,
    },
    /// Mark a quarantined node repaired: clears the quarantine and sends it back to be inspected again.
    Repair {
        /// Chassis serial.
        serial: String,
        /// The repair is done (required: there is no other repair action yet).
        #[arg(long, required = true)]
        done: bool,
        /// What was done, kept in the node's history.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Take a node out of allocation: it is never leased while drained (recorded with actor and reason).
    Drain(super::node_verbs::DrainArgs),
    /// Put a drained node back into allocation.
    Undrain(super::node_verbs::DrainArgs),
    /// Print a node's events (one JSON object per line with --json); --follow keeps printing new ones.
    Events(super::node_verbs::EventsArgs),
    /// The node's firmware components as last read from its BMC (versions, and when they last changed).
    Firmware {
        /// Chassis serial.
        serial: String,
    },
    /// Send an available or remediating node back through imaging, booting, burn-in and the fabric test.
    Reimage(super::node_verbs::ReimageArgs),
    /// Run an available or remediating node's health checks again (burn-in, then the fabric test; --nccl
    /// alone: the fabric test only), without reimaging it.
    Retest(super::node_verbs::RetestArgs),
}

/// `kiln node power` actions.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PowerArg {
    /// Power on.
    On,
    /// Cut power now.
    Off,
    /// Power off, then on.
    Cycle,
}

impl From<PowerArg> for NodePower {
    fn from(arg: PowerArg) -> Self {
        match arg {
            PowerArg::On => NodePower::On,
            PowerArg::Off => NodePower::Off,
            PowerArg::Cycle => NodePower::Cycle,
        }
    }
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    // The site key, when there is one, opens BMC passwords for `power` on the local database.
    let client = Client::open(global, KeyUse::IfPresent).await?;
    let result = run(args.command, &client, global).await;
    client.close().await;
    result
}

async fn run(command: NodeCommand, client: &Client, global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        NodeCommand::List {
            hall,
            rack,
            state,
            sku,
            limit,
            after,
        } => {
            let query = NodeQuery {
                hall,
                rack,
                state,
                sku,
                limit,
                after,
            };
            let nodes = client.nodes(&query).await?;
            if global.json {
                print_json(&nodes)
            } else {
                println!("{}", render_nodes(&nodes));
                Ok(())
            }
        }
        NodeCommand::Show { serial } => {
            let view = client.node(&serial).await?;
            if global.json {
                print_json(&view)
            } else {
                print!("{}", render_node(&view));
                Ok(())
            }
        }
        NodeCommand::Repair { serial, note, .. } => {
            let what = client.repair(&serial, &note).await?;
            if global.json {
                print_json(&serde_json::json!({ "serial": serial, "result": what }))
            } else {
                println!("{serial}: {what}");
                Ok(())
            }
        }
        NodeCommand::Drain(args) => super::node_verbs::drain(args, true, client, global).await,
        NodeCommand::Undrain(args) => super::node_verbs::drain(args, false, client, global).await,
        NodeCommand::Events(args) => super::node_verbs::events(args, client, global).await,
        NodeCommand::Firmware { serial } => {
            let firmware = client.node_firmware(&serial).await?;
            if global.json {
                return print_json(&firmware);
            }
            if firmware.components.is_empty() {
                println!(
                    "{serial}: no firmware read yet (the engine reads it when the node is enrolled)"
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = firmware
                .components
                .iter()
                .map(|f| {
                    vec![
                        f.component.id.clone(),
                        f.component.version.clone().unwrap_or_else(|| "-".into()),
                        f.component.source.clone(),
                        f.changed_at.to_rfc3339(),
                        f.seen_at.to_rfc3339(),
                    ]
                })
                .collect();
            println!(
                "{}",
                crate::table::render(
                    &["COMPONENT", "VERSION", "SOURCE", "CHANGED", "SEEN"],
                    &rows
                )
            );
            Ok(())
        }
        NodeCommand::Reimage(args) => super::node_verbs::reimage(args, client, global).await,
        NodeCommand::Retest(args) => super::node_verbs::retest(args, client, global).await,
        NodeCommand::Power { serial, action } => {
            let result = client.power(&serial, action.into()).await?;
            if global.json {
                print_json(&result)
            } else {
                println!(
                    "{}: power {} done; BMC reports {}",
                    result.serial,
                    result.action.as_str(),
                    result.power_state
                );
                Ok(())
            }
        }
    }
}

/// The node table of `kiln node list` (also `kiln rack show`).
pub fn render_nodes(nodes: &[Node]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.serial.clone(),
                n.hall.clone(),
                n.rack.clone(),
                n.slot.to_string(),
                n.sku.clone(),
                n.state.to_string(),
                format!("{} {}", n.bmc.protocol, n.bmc.address),
                n.boot_mac.to_string(),
            ]
        })
        .collect();
    let mut out = table::render(
        &[
            "SERIAL", "HALL", "RACK", "SLOT", "SKU", "STATE", "BMC", "BOOT MAC",
        ],
        &rows,
    );
    out.push_str(&format!("\n{} node(s)", nodes.len()));
    out
}

/// The human form of `kiln node show`.
fn render_node(view: &NodeView) -> String {
    use std::fmt::Write;
    let NodeView {
        node,
        hardware,
        events,
        health_runs,
        bmc_status,
        erase_records,
    } = view;
    let mut out = String::new();
    let _ = writeln!(out, "node {} ({})", node.serial, node.state);
    let _ = writeln!(
        out,
        "  place      site {} / hall {} / rack {} / slot {}",
        node.site, node.hall, node.rack, node.slot
    );
    let _ = writeln!(out, "  sku        {}", node.sku);
    let _ = writeln!(out, "  boot mac   {}", node.boot_mac);
    let _ = writeln!(
        out,
        "  bmc        {} {} user {} vendor {} tls {}",
        node.bmc.protocol,
        node.bmc.address,
        node.bmc.username,
        node.bmc.vendor.as_deref().unwrap_or("(unknown)"),
        node.bmc
            .tls_fingerprint
            .as_deref()
            .unwrap_or("(not pinned)")
    );
    if let Some(status) = bmc_status {
        let _ = writeln!(out, "  bmc seen   {}", describe_bmc_status(status));
    }
    let _ = writeln!(
        out,
        "  in state   since {}",
        node.state_entered_at.to_rfc3339()
    );
    if let Some(lease) = node.lease_id {
        let _ = writeln!(out, "  lease      {lease}");
    }
    if node.drained {
        let _ = writeln!(out, "  drained    yes (out of allocation)");
    }
    if let Some(owner) = &node.claimed_by {
        let _ = writeln!(out, "  claimed by {owner}");
    }
    let _ = writeln!(
        out,
        "  hardware   {} GPU(s), {} NIC(s), {} disk(s)",
        hardware.gpus.len(),
        hardware.nics.len(),
        hardware.disks.len()
    );
    let _ = writeln!(out, "history:");
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.at.to_rfc3339(),
                e.actor.clone(),
                super::node_verbs::describe_change(e),
                e.reason.clone(),
            ]
        })
        .collect();
    let _ = writeln!(
        out,
        "{}",
        table::render(&["AT", "ACTOR", "CHANGE", "REASON"], &rows)
    );
    match erase_records.first() {
        None => {
            let _ = writeln!(out, "erased:     never (no tenant turnover yet)");
        }
        Some(first) => {
            let _ = writeln!(
                out,
                "erased:     turnover {} after lease {}, recorded {}",
                first.batch,
                first
                    .lease_id
                    .map_or_else(|| "(unknown)".to_string(), |l| l.to_string()),
                first.recorded_at.to_rfc3339()
            );
            let rows: Vec<Vec<String>> = erase_records
                .iter()
                .map(|r| {
                    let e = &r.record;
                    let tried: Vec<&str> = e.tried.iter().map(|t| t.method.as_str()).collect();
                    vec![
                        e.device.clone(),
                        e.method.map_or("-", |m| m.as_str()).to_string(),
                        e.nist
                            .map_or("-".to_string(), |n| format!("{n:?}").to_lowercase()),
                        if e.is_ok() { "ok, verified" } else { "FAILED" }.to_string(),
                        if tried.is_empty() {
                            "-".to_string()
                        } else {
                            tried.join(",")
                        },
                        e.finished_at.to_rfc3339(),
                        e.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let _ = writeln!(
                out,
                "{}",
                table::render(
                    &[
                        "DEVICE", "METHOD", "NIST", "RESULT", "TRIED", "FINISHED", "ERROR"
                    ],
                    &rows
                )
            );
        }
    }
    if !health_runs.is_empty() {
        let _ = writeln!(out, "health runs:");
        for run in health_runs {
            let verdict = if run.passed { "PASS" } else { "FAIL" };
            let _ = writeln!(out, "  #{} {} {verdict}", run.id, run.kind);
        }
    }
    out
}

/// One line about the last BMC sweep's view of the node.
fn describe_bmc_status(status: &kiln_inventory::BmcStatus) -> String {
    let power = match (status.power_state, status.power_seen_at) {
        (Some(power), Some(at)) => format!("power {power} at {}", at.to_rfc3339()),
        _ => "power never read".to_string(),
    };
    let checked = status.checked_at.to_rfc3339();
    match (&status.error_kind, &status.error) {
        (None, _) => format!("{power}; reachable"),
        (Some(kind), error) => format!(
            "{power}; last try {checked} failed ({kind}{}): {}",
            if status.reachable {
                ", BMC answered"
            } else {
                ", no answer"
            },
            error.as_deref().unwrap_or("")
        ),
    }
}
