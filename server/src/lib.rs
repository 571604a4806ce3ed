//! The kiln control plane in one process: the web API, the agent report endpoint, the HTTP boot endpoints, the
//! image server and the lifecycle engine, on one listener. `kiln serve`, `kiln rack bringup`, `kiln demo` and
//! `kiln bench bringup` all start it through [`start`].
//!
//! [`control_plane`] builds the engine's configuration from plain settings ([`EngineSettings`]) and starts the
//! server with the network boot services of [`boot`] ([`start_control_plane`]); the `kiln` command line turns
//! its flags into those settings.

pub mod boot;
pub mod control_plane;
pub mod doctor;
pub mod tls;

pub use boot::{BootConfig, BootServices, start_boot_services};
pub use control_plane::{EngineSettings, start_control_plane};
pub use tls::{TlsFiles, TlsState};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use kiln_api::ApiState;
use kiln_health::SkuCatalog;
use kiln_images::{ContentStore, ImageLibrary, image_router};
use kiln_inventory::Store;
use kiln_provisioner::boot::http::{BootHttp, BootHttpConfig};
use kiln_provisioner::lifecycle::{
    BmcConnector, Ctx, Engine, EngineConfig, InventoryBmcs, NodeAccess, report_router,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What to run.
pub struct ServerOptions {
    /// Address to listen on (port 0: any).
    pub listen: SocketAddr,
    /// Base URL nodes use to reach this server (default: `http://` + the bound address).
    pub public_url: Option<String>,
    /// Content-addressed image store served under `/images/`.
    pub image_dir: PathBuf,
    /// Ramdisk kernel and initramfs served under `/boot/assets/`.
    pub assets_dir: PathBuf,
    /// The engine's settings; `None`: serve without driving nodes.
    pub engine: Option<EngineConfig>,
    /// How the engine reaches installed nodes (production: SSH).
    pub access: Option<Arc<dyn NodeAccess>>,
    /// How the engine reaches BMCs (default: the inventory's endpoints and sealed credentials).
    pub bmcs: Option<Arc<dyn BmcConnector>>,
    /// A listener already bound (its address is known before the server starts); `listen` is then unused.
    pub listener: Option<tokio::net::TcpListener>,
    /// HTTP boot endpoints built elsewhere (`kiln serve` with network boot flags); `None`: the default ones.
    pub boot_router: Option<axum::Router>,
    /// The site key acceptance reports are signed with (`None`: reports are refused).
    pub signing_key: Option<kiln_health::evidence::SigningKey>,
    /// HTTPS for the API: with it the web API (and everything else) is served over TLS on its own listener,
    /// and the plain listener keeps only what nodes on the provisioning network fetch before they could check
    /// a certificate: the boot endpoints, the images (sha256-verified) and agent reports (per-boot tokens).
    pub tls: Option<TlsServing>,
}

/// The HTTPS listener of [`ServerOptions::tls`].
pub struct TlsServing {
    /// Address to listen on (port 0: any); unused when `listener` is given.
    pub listen: SocketAddr,
    /// A listener already bound.
    pub listener: Option<tokio::net::TcpListener>,
    /// The certificate and key, reloadable.
    pub state: Arc<TlsState>,
}

/// A running control plane; dropping it does not stop it, [`Running::stop`] does.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The base URL nodes use.
    pub public_url: String,
    /// The engine, when one runs.
    pub engine: Option<Engine>,
    /// The HTTPS listener's address and certificate, when TLS is on.
    pub tls: Option<(SocketAddr, Arc<TlsState>)>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops the engine and the listener and waits for them.
    pub async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts everything `options` asks for over `store`.
pub async fn start(store: Store, mut options: ServerOptions) -> anyhow::Result<Running> {
    let listener = match options.listener.take() {
        Some(listener) => listener,
        None => tokio::net::TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("cannot listen on {}", options.listen))?,
    };
    let addr = listener.local_addr()?;
    let public_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    let engine = match options.engine {
        Some(config) => {
            let bmcs = options.bmcs.clone().unwrap_or_else(|| {
                Arc::new(InventoryBmcs::new(
                    store.clone(),
                    std::time::Duration::from_secs(10),
                ))
            });
            let access = options
                .access
                .clone()
                .context("the engine needs a way into nodes (an SSH key)")?;
            let ctx = Ctx::new(
                store.clone(),
                config,
                bmcs,
                access,
                Arc::new(SkuCatalog::builtin().context("loading the SKU profiles")?),
            );
            Some(Engine::new(ctx))
        }
        None => None,
    };
    let mut boot_config = BootHttpConfig::new(public_url.clone(), options.assets_dir.clone());
    boot_config.image = engine.as_ref().and_then(|e| e.ctx().config.image.clone());
    let wake = engine
        .as_ref()
        .map(Engine::waker)
        .unwrap_or_else(|| Arc::new(tokio::sync::Notify::new()));
    let library = ImageLibrary::new(store.clone(), ContentStore::new(options.image_dir.clone()));
    let mut api = ApiState::new(store.clone());
    if let Some(key) = options.signing_key.take() {
        api = api.with_signing_key(key);
    }
    let node_facing = report_router(
        store.clone(),
        wake,
        engine.as_ref().map(|e| e.ctx().gates.clone()),
    )
    .merge(
        options
            .boot_router
            .take()
            .unwrap_or_else(|| BootHttp::new(store.clone(), boot_config).router()),
    )
    .merge(image_router(library));
    let everything = kiln_api::router(api).merge(node_facing.clone());
    let mut tls = None;
    let plain = match options.tls.take() {
        None => everything,
        Some(serving) => {
            let tls_listener = match serving.listener {
                Some(listener) => listener,
                None => tokio::net::TcpListener::bind(serving.listen)
                    .await
                    .with_context(|| format!("cannot listen for HTTPS on {}", serving.listen))?,
            };
            tls = Some((tls_listener.local_addr()?, serving.state.clone()));
            tasks.push(tokio::spawn(tls::serve_tls(
                tls_listener,
                everything,
                serving.state,
                cancel.clone(),
            )));
            node_facing
        }
    };
    let shutdown = cancel.clone();
    tasks.push(tokio::spawn(async move {
        let served = axum::serve(
            listener,
            plain.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "the HTTP server stopped");
        }
    }));
    if let Some(engine) = engine.clone() {
        let stop = cancel.clone();
        tasks.push(tokio::spawn(async move { engine.run(stop).await }));
    }
    Ok(Running {
        addr,
        public_url,
        engine,
        tls,
        cancel,
        tasks,
    })
}
