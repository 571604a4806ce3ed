//! `kiln serve`: the control plane: the inventory web API (metrics, hall map page), the agent report and HTTP
//! boot endpoints, the image server, and the lifecycle engine that drives nodes from enrolled to available.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Serve the web API over HTTPS with this PEM certificate chain (with --tls-key). The plain --listen
    /// address then keeps only what booting nodes fetch: boot scripts and assets, images, agent reports.
    /// SIGHUP re-reads the certificate and key without dropping connections.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, RSA or EC).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Address the HTTPS listener binds (with --tls-cert).
    #[arg(long, default_value = "127.0.0.1:8443")]
    tls_listen: SocketAddr,
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
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(kiln_server::TlsServing {
            listen: args.tls_listen,
            listener: None,
            state: kiln_server::TlsState::load(kiln_server::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            })?,
        }),
        _ => None,
    };
    let (running, boot) = start_control_plane(
        &store,
        args.listen,
        &args.engine,
        &args.boot,
        Some(signing_key),
        tls,
    )
    .await?;
    let local = running.addr;
    match &running.tls {
        Some((addr, tls)) => {
            eprintln!(
                "kiln: serving the API on https://{addr}/api/v1/ (hall map at https://{addr}/, metrics at \
                 /metrics); certificate sha256 {}",
                tls.fingerprint()
            );
            eprintln!(
                "kiln: plain http://{local}/ serves only boot endpoints, images and agent reports"
            );
        }
        None => eprintln!(
            "kiln: serving the API on http://{local}/api/v1/ (hall map at http://{local}/, metrics at /metrics)"
        ),
    }
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
    let tls = running.tls.as_ref().map(|(_, tls)| tls.clone());
    let signal = shutdown_signal(tls).await;
    eprintln!("kiln: {signal}: shutting down");
    running.stop().await;
    if let Some(boot) = boot {
        boot.shutdown().await;
    }
    store.close().await;
    Ok(())
}

/// Waits for SIGINT (Ctrl-C, the unit's KillSignal) or SIGTERM (systemd's and most supervisors' default) and
/// names the one that came. Either shuts the server down cleanly. Meanwhile SIGHUP re-reads the TLS certificate
/// and key (`systemctl reload kiln`), keeping the old pair when the new one cannot be read.
async fn shutdown_signal(tls: Option<std::sync::Arc<kiln_server::TlsState>>) -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    let mut hup = signal(SignalKind::hangup()).ok();
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(hup) => hup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return "SIGINT",
            _ = term.recv() => return "SIGTERM",
            _ = hangup => reload(tls.as_deref()),
        }
    }
}

fn reload(tls: Option<&kiln_server::TlsState>) {
    match tls {
        None => eprintln!("kiln: SIGHUP: nothing to reload (no --tls-cert)"),
        Some(tls) => match tls.reload() {
            Ok(fingerprint) => {
                eprintln!("kiln: SIGHUP: reloaded the TLS certificate, sha256 {fingerprint}")
            }
            Err(err) => eprintln!("kiln: SIGHUP: kept the old TLS certificate: {err:#}"),
        },
    }
}
