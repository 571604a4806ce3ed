//! `kiln serve`: the control plane: the inventory web API (metrics, hall map page), the agent report and HTTP
//! boot endpoints, the image server, and the lifecycle engine that drives nodes from enrolled to available.

use std::net::SocketAddr;

use anyhow::Context;

use crate::GlobalArgs;
use crate::cmd::boot_serve::BootServeArgs;
use crate::cmd::engine_args::{EngineArgs, start_control_plane};
use crate::global::KeyUse;

/// Serve the API and run the lifecycle engine.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    boot: BootServeArgs,
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
    eprintln!(
        "kiln: acceptance records are signed with public key {}",
        hex::encode(signing_key.verifying_key().as_bytes())
    );
    let (running, boot) = start_control_plane(
        &store,
        args.listen,
        &args.engine,
        &args.boot,
        Some(signing_key),
    )
    .await?;
    let local = running.addr;
    eprintln!(
        "kiln: serving the API on http://{local}/api/v1/ (hall map at http://{local}/, metrics at /metrics)"
    );
    match &running.engine {
        Some(engine) => eprintln!(
            "kiln: lifecycle engine {} running ({} workers); nodes report to {}/agent/v1/report",
            engine.ctx().config.instance,
            engine.ctx().config.workers,
            running.public_url
        ),
        None => eprintln!("kiln: lifecycle engine off (--no-engine)"),
    }
    if let Some(boot) = &boot {
        eprintln!("kiln: network boot: {}", boot.summary());
    }
    let signal = shutdown_signal().await;
    eprintln!("kiln: {signal}: shutting down");
    running.stop().await;
    if let Some(boot) = boot {
        boot.shutdown().await;
    }
    store.close().await;
    Ok(())
}

/// Waits for SIGINT (Ctrl-C, the unit's KillSignal) or SIGTERM (systemd's and most supervisors' default) and
/// names the one that came. Either shuts the server down cleanly.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
