//! Options shared by the commands that run the control plane (`kiln serve`, `kiln rack bringup`): the engine's
//! settings, the provisioner's SSH key, and where boot assets and images live. kiln-server does the work.

use std::net::SocketAddr;
use std::path::PathBuf;

use kiln_inventory::Store;
use kiln_server::{EngineSettings, Running};

use crate::cmd::boot_serve::{BootServeArgs, BootServices};

/// Control-plane options.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Serve the API and boot endpoints without driving nodes through their lifecycle.
    #[arg(long)]
    pub no_engine: bool,
    /// This instance's name in claims and events (several instances may share one PostgreSQL).
    #[arg(long, env = "KILN_INSTANCE")]
    pub instance: Option<String>,
    /// Node handlers running at once.
    #[arg(long, default_value_t = 64)]
    pub workers: usize,
    /// Image written to nodes, as NAME:VERSION (default: the newest image in the catalog).
    #[arg(long = "image", value_name = "NAME:VERSION")]
    pub engine_image: Option<String>,
    /// Remediation policy file (TOML, `[ladders]` per failure class) replacing the default ladders it names.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Divide every SLA, timeout and wait by this factor (simulated halls).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// SSH user on installed nodes.
    #[arg(long, default_value = "root")]
    pub ssh_user: String,
    /// The provisioner's SSH private key (created on first use; its public key goes into the image's seed).
    #[arg(long, env = "KILN_SSH_KEY", default_value = "kiln-ssh.key")]
    pub ssh_key: PathBuf,
    /// Directory of the content-addressed image store.
    #[arg(long, env = "KILN_IMAGE_DIR", default_value = "kiln-images")]
    pub image_dir: PathBuf,
}

impl EngineArgs {
    /// The settings these flags describe, for kiln-server.
    pub fn settings(&self) -> EngineSettings {
        EngineSettings {
            no_engine: self.no_engine,
            instance: self.instance.clone(),
            workers: self.workers,
            engine_image: self.engine_image.clone(),
            policy: self.policy.clone(),
            time_scale: self.time_scale,
            ssh_user: self.ssh_user.clone(),
            ssh_key: self.ssh_key.clone(),
            image_dir: self.image_dir.clone(),
        }
    }
}

/// Starts the control plane for `kiln serve` and `kiln rack bringup` (kiln-server's
/// [`kiln_server::start_control_plane`]): the HTTP server with the engine, plus the DHCP/ProxyDHCP/TFTP services
/// `boot` asks for.
pub async fn start_control_plane(
    store: &Store,
    listen: SocketAddr,
    engine: &EngineArgs,
    boot: &BootServeArgs,
    signing_key: Option<kiln_health::evidence::SigningKey>,
    tls: Option<kiln_server::TlsServing>,
) -> anyhow::Result<(Running, Option<BootServices>)> {
    kiln_server::start_control_plane(
        store,
        listen,
        &engine.settings(),
        &boot.config(),
        signing_key,
        tls,
    )
    .await
}
