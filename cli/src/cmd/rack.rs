//! `kiln rack import FILE`, `kiln rack list` (alias `status`) and `kiln rack show RACK`: enroll the nodes of a rack
//! manifest, and read racks with their nodes, on the local database or over the API (`--server`). `kiln rack
//! bringup` lives in `bringup.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use kiln_inventory::{ManifestFormat, Node, NodeState};
use serde::Serialize;

use crate::client::{Client, NodeQuery};
use crate::cmd::node::render_nodes;
use crate::global::{KeyUse, print_json};
use crate::{GlobalArgs, table};

/// Racks: import manifests, bring them up, list and show racks.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: RackCommand,
}

#[derive(Debug, Subcommand)]
enum RackCommand {
    /// Import a rack manifest (CSV or TOML). Re-importing is harmless; any conflict rejects the whole file.
    /// Over --server, BMC passwords must be inline (bmc_password), not read from the environment.
    Import {
        /// The manifest file.
        file: PathBuf,
        /// Site for rows that name none.
        #[arg(long, default_value = "default")]
        site: String,
        /// File format, when the extension does not say (.csv, .toml).
        #[arg(long, value_parser = ["csv", "toml"])]
        format: Option<String>,
    },
    /// Import a manifest and drive its nodes to available (or quarantined) with a live progress view.
    Bringup(Box<crate::cmd::bringup::BringupArgs>),
    /// List racks with node counts per state (the bring-up status).
    #[command(alias = "status")]
    List {
        /// Only this hall.
        #[arg(long)]
        hall: Option<String>,
    },
    /// Show a rack's nodes by slot.
    Show {
        /// Rack name.
        rack: String,
        /// The hall, when several halls have a rack of that name.
        #[arg(long)]
        hall: Option<String>,
    },
}

/// A rack with its node counts.
#[derive(Debug, Serialize)]
struct RackSummary {
    site: String,
    hall: String,
    rack: String,
    nodes: usize,
    /// Nodes per state; a drained available node is counted in `drained` instead.
    states: BTreeMap<NodeState, usize>,
    /// Available nodes taken out of allocation.
    drained: usize,
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    if let RackCommand::Bringup(bringup) = args.command {
        return crate::cmd::bringup::bringup(*bringup, global).await;
    }
    // Importing seals BMC passwords, so a local import needs (and creates) the site key.
    let key_use = match args.command {
        RackCommand::Import { .. } => KeyUse::CreateIfMissing,
        _ => KeyUse::IfPresent,
    };
    let client = Client::open(global, key_use).await?;
    let result = run(args.command, &client, global).await;
    client.close().await;
    result
}

async fn run(command: RackCommand, client: &Client, global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        RackCommand::Import { file, site, format } => {
            import(client, &file, &site, format.as_deref(), global).await
        }
        RackCommand::List { hall } => {
            let nodes = client
                .nodes(&NodeQuery {
                    hall,
                    ..NodeQuery::default()
                })
                .await?;
            let racks = summarize(&nodes);
            if global.json {
                return print_json(&racks);
            }
            let rows: Vec<Vec<String>> = racks
                .iter()
                .map(|r| {
                    let mut states: Vec<String> =
                        r.states.iter().map(|(s, n)| format!("{s}={n}")).collect();
                    if r.drained > 0 {
                        states.push(format!("drained={}", r.drained));
                    }
                    vec![
                        r.site.clone(),
                        r.hall.clone(),
                        r.rack.clone(),
                        r.nodes.to_string(),
                        states.join(" "),
                    ]
                })
                .collect();
            println!(
                "{}",
                table::render(&["SITE", "HALL", "RACK", "NODES", "STATES"], &rows)
            );
            Ok(())
        }
        RackCommand::Show { rack, hall } => {
            let mut nodes = client
                .nodes(&NodeQuery {
                    hall,
                    rack: Some(rack.clone()),
                    ..NodeQuery::default()
                })
                .await?;
            if nodes.is_empty() {
                bail!("no rack {rack:?} (see `kiln rack list`)");
            }
            let halls: std::collections::BTreeSet<&str> =
                nodes.iter().map(|n| n.hall.as_str()).collect();
            if halls.len() > 1 {
                bail!("rack {rack:?} exists in halls {halls:?}; name one with --hall");
            }
            nodes.sort_by_key(|n| n.slot);
            if global.json {
                return print_json(&nodes);
            }
            println!("{}", render_nodes(&nodes));
            Ok(())
        }
        RackCommand::Bringup(_) => bail!("rack bringup runs without a client"),
    }
}

fn summarize(nodes: &[Node]) -> Vec<RackSummary> {
    let mut racks: BTreeMap<(String, String, String), RackSummary> = BTreeMap::new();
    for node in nodes {
        let key = (node.site.clone(), node.hall.clone(), node.rack.clone());
        let rack = racks.entry(key).or_insert_with(|| RackSummary {
            site: node.site.clone(),
            hall: node.hall.clone(),
            rack: node.rack.clone(),
            nodes: 0,
            states: BTreeMap::new(),
            drained: 0,
        });
        rack.nodes += 1;
        if node.drained && node.state == NodeState::Available {
            rack.drained += 1;
        } else {
            *rack.states.entry(node.state).or_default() += 1;
        }
    }
    racks.into_values().collect()
}

/// Reads and imports a manifest file; prints what it did.
async fn import(
    client: &Client,
    file: &Path,
    site: &str,
    format: Option<&str>,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let format = match format {
        Some("toml") => ManifestFormat::Toml,
        Some(_) => ManifestFormat::Csv,
        None => ManifestFormat::from_path(file).with_context(|| {
            format!(
                "cannot tell the format of {} from its extension; pass --format csv|toml",
                file.display()
            )
        })?,
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading manifest {}", file.display()))?;
    let summary = client.import_manifest(&text, format, site).await?;
    if global.json {
        print_json(&summary)?;
    } else {
        println!(
            "imported {}: {} node(s) enrolled, {} already enrolled as described ({} hall(s), {} rack(s) created)",
            file.display(),
            summary.created,
            summary.unchanged,
            summary.halls_created,
            summary.racks_created
        );
    }
    Ok(())
}
