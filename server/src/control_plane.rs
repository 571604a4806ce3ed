//! The control plane as `kiln serve` and `kiln rack bringup` run it: the engine's settings, the provisioner's SSH
//! key, where boot assets and images live, and the network boot services beside the HTTP server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kiln_inventory::Store;
use kiln_provisioner::lifecycle::ssh::{SshNodeAccess, load_or_create_key};
use kiln_provisioner::lifecycle::{EngineConfig, Policy};

use crate::boot::{BootConfig, BootServices, start_boot_services};
use crate::{Running, ServerOptions};

/// Control-plane settings (the `kiln` flag of each field in brackets).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Serve the API and boot endpoints without driving nodes (`--no-engine`).
    pub no_engine: bool,
    /// This instance's name in claims and events (`--instance`).
    pub instance: Option<String>,
    /// Node handlers running at once (`--workers`).
    pub workers: usize,
    /// Image written to nodes, as NAME:VERSION (`--image`; default: the newest image in the catalog).
    pub engine_image: Option<String>,
    /// Remediation policy file (`--policy`, TOML).
    pub policy: Option<PathBuf>,
    /// Divide every SLA, timeout and wait by this factor (`--time-scale`).
    pub time_scale: f64,
    /// SSH user on installed nodes (`--ssh-user`).
    pub ssh_user: String,
    /// The provisioner's SSH private key, created on first use (`--ssh-key`).
    pub ssh_key: PathBuf,
    /// Directory of the content-addressed image store (`--image-dir`).
    pub image_dir: PathBuf,
}

impl EngineSettings {
    /// The engine settings these options describe, with `image` resolved against the catalog.
    pub async fn engine_config(&self, store: &Store) -> anyhow::Result<EngineConfig> {
        let mut config = EngineConfig::default().compressed(self.time_scale);
        if let Some(instance) = &self.instance {
            config.instance = instance.clone();
        }
        config.workers = self.workers.max(1);
        config.claim_batch = config.workers as i64;
        if let Some(path) = &self.policy {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the policy {}", path.display()))?;
            config.policy = Policy::from_toml(&text)?;
        }
        config.image = match &self.engine_image {
            Some(spec) => {
                let (name, version) = kiln_inventory::parse_image_ref(spec)
                    .map_err(|err| anyhow::anyhow!("--image: {err}"))?;
                store.image(&name, &version).await?.with_context(|| {
                    format!("--image {spec}: no such image in the catalog (see `kiln image list`)")
                })?;
                Some((name, version))
            }
            None => store
                .images()
                .await?
                .into_iter()
                .max_by_key(|image| image.created_at)
                .map(|image| (image.name, image.version)),
        };
        if config.image.is_none() {
            eprintln!(
                "warning: the image catalog is empty: nodes will fail at imaging (add one with `kiln image add`)"
            );
        }
        Ok(config)
    }

    /// Server options for listening on `listen` with SSH node access; the boot endpoints use `boot`'s URL,
    /// ramdisk and image settings.
    pub async fn server_options(
        &self,
        store: &Store,
        listen: SocketAddr,
        boot: &BootConfig,
    ) -> anyhow::Result<ServerOptions> {
        let engine = if self.no_engine {
            None
        } else {
            Some(self.engine_config(store).await?)
        };
        let access = if self.no_engine {
            None
        } else {
            let (key, created) = load_or_create_key(&self.ssh_key).map_err(anyhow::Error::msg)?;
            if created {
                eprintln!(
                    "note: created the provisioner's SSH key {} (its public key goes into node images)",
                    self.ssh_key.display()
                );
            }
            let mut ssh = SshNodeAccess::new(self.ssh_user.clone(), key);
            ssh.command_timeout = Duration::from_secs(30)
                .div_f64(self.time_scale.max(1.0))
                .max(Duration::from_secs(5));
            Some(Arc::new(ssh) as Arc<dyn kiln_provisioner::lifecycle::NodeAccess>)
        };
        Ok(ServerOptions {
            listen,
            public_url: boot.public_url.clone(),
            image_dir: self.image_dir.clone(),
            assets_dir: boot
                .assets
                .clone()
                .unwrap_or_else(|| PathBuf::from("kiln-assets")),
            engine,
            access,
            bmcs: None,
            listener: None,
            boot_router: None,
            signing_key: None,
            tls: None,
        })
    }
}

/// Starts the control plane for `kiln serve` and `kiln rack bringup`: the HTTP server with the engine, plus the
/// DHCP/ProxyDHCP/TFTP services `boot` asks for (their HTTP boot endpoints replace the default ones, with the
/// engine's image in their scripts).
pub async fn start_control_plane(
    store: &Store,
    listen: SocketAddr,
    engine: &EngineSettings,
    boot: &BootConfig,
    signing_key: Option<kiln_health::evidence::SigningKey>,
    tls: Option<crate::TlsServing>,
) -> anyhow::Result<(Running, Option<BootServices>)> {
    let mut boot = boot.clone();
    if boot.public_url.is_none() && boot.server_ip.is_some() {
        boot.public_url = boot
            .server_ip
            .map(|ip| format!("http://{ip}:{}", listen.port()));
    }
    let mut options = engine.server_options(store, listen, &boot).await?;
    options.signing_key = signing_key;
    options.tls = tls;
    if boot.image.is_none() {
        boot.image = options.engine.as_ref().and_then(|e| e.image.clone());
    }
    let services = if boot.any_requested() {
        if boot.assets.is_none() {
            boot.assets = Some(options.assets_dir.clone());
        }
        if boot.public_url.is_none() {
            boot.public_url = Some(format!("http://{listen}"));
        }
        let services = start_boot_services(&boot, store.clone()).await?;
        options.boot_router = services.http_router();
        Some(services)
    } else {
        None
    };
    let running = crate::start(store.clone(), options).await?;
    Ok((running, services))
}
