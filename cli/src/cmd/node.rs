//! `kiln node list`, `kiln node show SERIAL` and `kiln node repair SERIAL --done`.

use clap::Subcommand;
use kiln_inventory::{Node, NodeFilter, NodeId, NodeState};

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
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store(KeyUse::IfPresent).await?;
    let result = match args.command {
        NodeCommand::List {
            hall,
            rack,
            state,
            sku,
            limit,
            after,
        } => {
            let filter = NodeFilter {
                hall,
                rack,
                state,
                sku,
                lessee: None,
                serial: None,
                after_id: after.map(NodeId),
                limit,
            };
            let nodes = store.list_nodes(&filter).await;
            match nodes {
                Ok(nodes) if global.json => print_json(&nodes),
                Ok(nodes) => {
                    println!("{}", render_nodes(&nodes));
                    Ok(())
                }
                Err(err) => Err(err.into()),
            }
        }
        NodeCommand::Show { serial } => show(&store, &serial, global.json).await,
        NodeCommand::Repair { serial, note, .. } => {
            let actor = format!("technician:{}", std::env::var("USER").unwrap_or_default());
            match kiln_provisioner::lifecycle::repair_done(&store, &serial, &actor, &note).await {
                Ok(event) if global.json => print_json(&event),
                Ok(event) => {
                    println!("{serial}: {}", event.reason);
                    Ok(())
                }
                Err(kiln_inventory::StoreError::StateChanged { actual, .. }) => {
                    Err(anyhow::anyhow!(
                        "{serial} is {actual}, not quarantined: only quarantined nodes are repaired"
                    ))
                }
                Err(err) => Err(err.into()),
            }
        }
    };
    store.close().await;
    result
}

fn render_nodes(nodes: &[Node]) -> String {
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

async fn show(store: &kiln_inventory::Store, serial: &str, json: bool) -> anyhow::Result<()> {
    let node = store.node_by_serial(serial).await?;
    let hardware = store.hardware(node.id).await?;
    let events = store.node_events(node.id).await?;
    let health = store.health_runs(node.id).await?;
    let bmc_status = store.bmc_status(node.id).await?;
    if json {
        return print_json(&serde_json::json!({
            "node": node, "hardware": hardware, "events": events, "health_runs": health,
            "bmc_status": bmc_status,
        }));
    }
    println!("node {} ({})", node.serial, node.state);
    println!(
        "  place      site {} / hall {} / rack {} / slot {}",
        node.site, node.hall, node.rack, node.slot
    );
    println!("  sku        {}", node.sku);
    println!("  boot mac   {}", node.boot_mac);
    println!(
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
    if let Some(status) = &bmc_status {
        println!("  bmc seen   {}", describe_bmc_status(status));
    }
    println!("  in state   since {}", node.state_entered_at.to_rfc3339());
    if let Some(owner) = &node.claimed_by {
        println!("  claimed by {owner}");
    }
    println!(
        "  hardware   {} GPU(s), {} NIC(s), {} disk(s)",
        hardware.gpus.len(),
        hardware.nics.len(),
        hardware.disks.len()
    );
    println!("history:");
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let change = match (e.from_state, e.to_state) {
                (Some(from), Some(to)) => format!("{from} → {to}"),
                (None, Some(to)) => format!("→ {to}"),
                _ => "note".to_string(),
            };
            vec![e.at.to_rfc3339(), e.actor.clone(), change, e.reason.clone()]
        })
        .collect();
    println!(
        "{}",
        table::render(&["AT", "ACTOR", "CHANGE", "REASON"], &rows)
    );
    if !health.is_empty() {
        println!("health runs:");
        for run in &health {
            println!(
                "  #{} {} {}",
                run.id,
                run.kind,
                if run.passed { "PASS" } else { "FAIL" }
            );
        }
    }
    Ok(())
}

/// One line on what the last sweep saw of a node's BMC.
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
