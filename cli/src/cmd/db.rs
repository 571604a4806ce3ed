//! `kiln db migrate`: create or upgrade the inventory schema.

use clap::Subcommand;

use crate::GlobalArgs;
use crate::global::{KeyUse, print_json};

/// Database maintenance.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Apply pending migrations (SQLite files are created on first use).
    Migrate,
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        DbCommand::Migrate => {
            let store = global.open_store(KeyUse::IfPresent).await?;
            let versions = store.applied_migrations().await?;
            if global.json {
                print_json(
                    &serde_json::json!({"backend": format!("{:?}", store.backend()).to_lowercase(), "migrations": versions}),
                )?;
            } else {
                println!(
                    "inventory schema is up to date ({:?}, migrations {:?})",
                    store.backend(),
                    versions
                );
            }
            store.close().await;
            Ok(())
        }
    }
}
