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
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    eprintln!(
        "kiln: serving the API on http://{local}/api/v1/ (hall map at http://{local}/, metrics at /metrics)"
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("kiln: shutting down");
    };
    kiln_api::serve(listener, ApiState::new(store.clone()), shutdown)
        .await
        .context("serving the API")?;
    store.close().await;
    Ok(())
}
