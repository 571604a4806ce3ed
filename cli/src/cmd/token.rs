//! `kiln token create --role R [--lessee NAME] [--expires-in D]`: prints a new API token, alone, on stdout;
//! `kiln token list [--all] [--json]`: the tokens (never a token or its hash); `kiln token revoke ID`.

use std::time::Duration;

use clap::Subcommand;
use kiln_health::duration::parse_duration;
use kiln_inventory::{Role, TokenInfo};

use crate::global::{KeyUse, print_json};
use crate::{GlobalArgs, table};

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
        /// Lifetime (90s, 12h, 30d): past it the token no longer authenticates. Default: it never expires.
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        expires_in: Option<Duration>,
    },
    /// List the live tokens: id, role, lessee, label, creation, expiry and last use (never the token or its hash).
    List {
        /// Revoked and expired tokens too.
        #[arg(long)]
        all: bool,
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
            expires_in,
        } => {
            match store
                .create_expiring_api_token(role, lessee.as_deref(), label.as_deref(), expires_in)
                .await
            {
                Ok((token, id)) => {
                    match expires_in {
                        Some(d) => eprintln!(
                            "created {role} token {id}, valid for {} s (see kiln token list); it is shown \
                             only now",
                            d.as_secs()
                        ),
                        None => eprintln!("created {role} token {id}; it is shown only now"),
                    }
                    println!("{}", token.expose());
                    Ok(())
                }
                Err(err) => Err(err.into()),
            }
        }
        TokenCommand::List { all } => match store.list_api_tokens(all).await {
            Ok(tokens) if global.json => print_json(&tokens),
            Ok(tokens) => {
                print_tokens(&tokens);
                Ok(())
            }
            Err(err) => Err(err.into()),
        },
        TokenCommand::Revoke { id } => match store.revoke_api_token(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(anyhow::anyhow!("no live token {id}")),
            Err(err) => Err(err.into()),
        },
    };
    store.close().await;
    result
}

fn print_tokens(tokens: &[TokenInfo]) {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.role.to_string(),
                t.lessee.clone().unwrap_or_else(|| "-".into()),
                t.label.clone().unwrap_or_else(|| "-".into()),
                t.created_at.to_rfc3339(),
                t.expires_at
                    .map(|at| at.to_rfc3339())
                    .unwrap_or_else(|| "never".into()),
                t.last_used_at
                    .map(|at| at.to_rfc3339())
                    .unwrap_or_else(|| "never".into()),
                t.status.to_string(),
            ]
        })
        .collect();
    println!(
        "{}",
        table::render(
            &[
                "ID",
                "ROLE",
                "LESSEE",
                "LABEL",
                "CREATED",
                "EXPIRES",
                "LAST USED",
                "STATUS"
            ],
            &rows
        )
    );
}
