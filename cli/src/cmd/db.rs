//! `kiln db migrate`: create or upgrade the inventory schema; `kiln db backup`: an online SQLite copy.

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
    /// Write a consistent copy of an SQLite inventory to FILE while `kiln serve` may keep running
    /// (PostgreSQL: use `pg_dump -Fc`).
    Backup {
        /// Where to write the copy.
        file: std::path::PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
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
        DbCommand::Backup { file, force } => {
            if global.db.starts_with("postgres://") || global.db.starts_with("postgresql://") {
                // Refused before connecting: the advice does not depend on the server being up.
                anyhow::bail!(kiln_inventory::Store::postgres_backup_advice(&file));
            }
            let store = global.open_store(KeyUse::IfPresent).await?;
            let result = store.backup_to(&file, force).await;
            store.close().await;
            result?;
            let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            if global.json {
                print_json(&serde_json::json!({"file": file, "bytes": bytes}))?;
            } else {
                println!("inventory backed up to {} ({bytes} bytes)", file.display());
            }
            Ok(())
        }
    }
}
