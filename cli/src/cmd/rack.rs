//! `kiln rack import FILE`: enroll the nodes of a rack manifest; `bringup` and `status` live in `bringup.rs`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use kiln_inventory::{ManifestFormat, parse_manifest};

use crate::GlobalArgs;
use crate::global::{KeyUse, print_json};

/// Racks: import manifests, bring them up, see their progress.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: RackCommand,
}

#[derive(Debug, Subcommand)]
enum RackCommand {
    /// Import a rack manifest (CSV or TOML). Re-importing is harmless; any conflict rejects the whole file.
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
    /// Nodes per rack and lifecycle state.
    Status {
        /// Only this hall.
        #[arg(long)]
        hall: Option<String>,
    },
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        RackCommand::Import { file, site, format } => {
            import(&file, &site, format.as_deref(), global).await
        }
        RackCommand::Bringup(bringup) => crate::cmd::bringup::bringup(*bringup, global).await,
        RackCommand::Status { hall } => crate::cmd::bringup::status(hall, global).await,
    }
}

/// Reads, checks and imports a manifest file; prints what it did.
pub async fn import(
    file: &PathBuf,
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
    let rows = parse_manifest(&text, format, &|var| std::env::var(var).ok())?;
    let store = global.open_store(KeyUse::CreateIfMissing).await?;
    let summary = store.import_manifest(&rows, site, "cli:rack-import").await;
    store.close().await;
    let summary = summary?;
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
