//! `kiln hall list`: halls with rack and node counts per state.

use clap::Subcommand;
use kiln_inventory::HallSummary;

use crate::global::{KeyUse, print_json};
use crate::{GlobalArgs, table};

/// Halls.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: HallCommand,
}

#[derive(Debug, Subcommand)]
enum HallCommand {
    /// List halls with node counts per state.
    List,
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        HallCommand::List => {
            let store = global.open_store(KeyUse::IfPresent).await?;
            let halls = store.list_halls().await;
            store.close().await;
            let halls = halls?;
            if global.json {
                print_json(&halls)?;
            } else if halls.is_empty() {
                println!("no halls yet: import a rack manifest with `kiln rack import FILE`");
            } else {
                println!("{}", render_halls(&halls));
            }
            Ok(())
        }
    }
}

/// The hall table of `kiln hall list` (also printed by `kiln demo`).
pub fn render_halls(halls: &[HallSummary]) -> String {
    let rows: Vec<Vec<String>> = halls
        .iter()
        .map(|hall| {
            let states: Vec<String> = hall
                .states
                .iter()
                .map(|(state, count)| format!("{state}={count}"))
                .collect();
            vec![
                hall.site.clone(),
                hall.name.clone(),
                hall.racks.to_string(),
                hall.nodes.to_string(),
                states.join(" "),
            ]
        })
        .collect();
    table::render(&["SITE", "HALL", "RACKS", "NODES", "STATES"], &rows)
}
