//! `kiln token create --role R [--lessee NAME]`: prints a new API token, alone, on stdout.

use clap::Subcommand;
use kiln_inventory::Role;

use crate::GlobalArgs;
use crate::global::KeyUse;

/// API tokens.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        /// admin, technician, pipeline or lessee.
        #[arg(long)]
        role: Role,
        /// The lessee a lessee token belongs to.
        #[arg(long)]
        lessee: Option<String>,
        /// A label kept with the token (shown in event logs as the actor).
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke a token by id.
    Revoke {
        /// Token id (as logged in events: `token:<id>`).
        id: i64,
    },
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store(KeyUse::IfPresent).await?;
    let result = match args.command {
        TokenCommand::Create {
            role,
            lessee,
            label,
        } => {
            match store
                .create_api_token(role, lessee.as_deref(), label.as_deref())
                .await
            {
                Ok((token, id)) => {
                    eprintln!("created {role} token {id}; it is shown only now");
                    println!("{}", token.expose());
                    Ok(())
                }
                Err(err) => Err(err.into()),
            }
        }
        TokenCommand::Revoke { id } => match store.revoke_api_token(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(anyhow::anyhow!("no live token {id}")),
            Err(err) => Err(err.into()),
        },
    };
    store.close().await;
    result
}
