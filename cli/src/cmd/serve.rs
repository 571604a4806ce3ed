//! `kiln serve`: the inventory web API, metrics and hall map page.

use std::net::SocketAddr;

use anyhow::Context;
use kiln_api::ApiState;

use crate::GlobalArgs;
use crate::global::KeyUse;

/// Serve the API.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store(KeyUse::IfPresent).await?;
    // Acceptance reports are signed with the site's ed25519 key, kept beside the database key unless named.
    let signing_path = global.signing_key_path();
    let (signing_key, created) =
        kiln_health::evidence::load_or_create_signing_key(&signing_path)
            .with_context(|| format!("loading the site signing key {}", signing_path.display()))?;
    if created {
        eprintln!(
            "note: created a new site signing key in {} (keep it safe and back it up)",
            signing_path.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    eprintln!(
        "kiln: serving the API on http://{local}/api/v1/ (hall map at http://{local}/, metrics at /metrics)"
    );
    eprintln!(
        "kiln: acceptance records are signed with public key {}",
        hex::encode(signing_key.verifying_key().as_bytes())
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("kiln: shutting down");
    };
    let state = ApiState::new(store.clone()).with_signing_key(signing_key);
    kiln_api::serve(listener, state, shutdown)
        .await
        .context("serving the API")?;
    store.close().await;
    Ok(())
}
