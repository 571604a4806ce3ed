//! HTTP boot endpoints, as an axum [`Router`] the API server (or `kiln boot serve`) mounts:
//!
//! - `GET /boot/{mac}.ipxe`: the iPXE script for that MAC, chosen from its node's state ([`decide`]); every
//!   script served is recorded as a node event (or, for an unknown MAC, as a discovered-machine sighting).
//! - `GET /boot/assets/{name}`: the ramdisk kernel and initramfs (only files in the assets directory).
//! - `POST /boot/report/{mac}` with `Authorization: Bearer TOKEN`: the ramdisk's agent reports that it booted.
//!
//! Invariant: a ramdisk script for an enrolled node carries a token only when the engine asked for that boot
//! (an open boot grant, claimed once, from the address leased to the MAC); any other fetch gets a script that
//! boots nothing, and a second fetch for one boot is noted as a possible spoof. A report is accepted only with
//! the live token of that MAC, from the address the token is bound to. The server must be run with
//! `into_make_service_with_connect_info::<SocketAddr>()`: without the peer's address no token is issued.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kiln_inventory::{
    BootSighting, GrantClaim, MacAddr, Node, Store, StoreError, TokenCheck, TokenOwner,
};

use super::decision::{BootAction, BootDecision, RamdiskMode, decide};
use super::tftp::{PathRefused, resolve_in_root};

/// Actor name on the node events the boot endpoints write.
pub const BOOT_ACTOR: &str = "boot";

/// How the HTTP boot endpoints build scripts and find the ramdisk.
#[derive(Debug, Clone)]
pub struct BootHttpConfig {
    /// Base URL booting machines use to reach these endpoints, e.g. `http://10.0.0.1:8080` (no trailing slash).
    pub public_url: String,
    /// Directory holding the ramdisk kernel and initramfs.
    pub assets_dir: PathBuf,
    /// Kernel file name in `assets_dir`.
    pub kernel: String,
    /// Initramfs file name in `assets_dir`.
    pub initrd: String,
    /// Extra kernel arguments (e.g. `console=ttyS0`).
    pub kernel_args: String,
    /// The catalog image (name, version) the image and wipe ramdisks write, served by the image router under
    /// `{public_url}/images/sha256/{digest}`; `None`: image-mode scripts carry no image.
    pub image: Option<(String, String)>,
    /// How long a boot token stays valid after it is issued (it covers the ramdisk's work and the installed
    /// OS's first report); a new boot of the node revokes it sooner.
    pub token_ttl: Duration,
}

impl BootHttpConfig {
    /// Serves `vmlinuz` and `initramfs.img` from `assets_dir`, with a serial console.
    pub fn new(public_url: impl Into<String>, assets_dir: impl Into<PathBuf>) -> Self {
        Self {
            public_url: public_url.into().trim_end_matches('/').to_string(),
            assets_dir: assets_dir.into(),
            kernel: "vmlinuz".into(),
            initrd: "initramfs.img".into(),
            kernel_args: "console=ttyS0 quiet".into(),
            image: None,
            token_ttl: Duration::from_secs(6 * 3600),
        }
    }
}

/// Shared state of the boot endpoints.
#[derive(Debug, Clone)]
pub struct BootHttp {
    store: Store,
    config: Arc<BootHttpConfig>,
}

impl BootHttp {
    /// Endpoints over `store` with `config`.
    pub fn new(store: Store, config: BootHttpConfig) -> Self {
        Self {
            store,
            config: Arc::new(config),
        }
    }

    /// The routes, ready to be merged into a larger router or served alone.
    pub fn router(self) -> Router {
        Router::new()
            .route("/boot/assets/{name}", get(asset))
            .route(
                "/boot/report/{mac}",
                post(report).layer(DefaultBodyLimit::max(MAX_REPORT_BODY)),
            )
            .route("/boot/{script}", get(script))
            .with_state(self)
    }

    /// The image an image or wipe ramdisk writes, as `kiln.image=URL kiln.sha256=HEX kiln.format=FMT` kernel
    /// arguments; empty for other modes or when no image is configured. `node`'s own image (a technician's
    /// `kiln node reimage --image`, kept in its work record) wins over the configured one.
    pub async fn image_args(
        &self,
        action: BootAction,
        node: Option<&Node>,
    ) -> Result<String, StoreError> {
        let writes = matches!(
            action,
            BootAction::Ramdisk(RamdiskMode::Image | RamdiskMode::Wipe)
        );
        if !writes {
            return Ok(String::new());
        }
        let chosen = match node {
            Some(node) => {
                let stored = self.store.node_work(node.id).await?;
                crate::lifecycle::Work::parse(node, stored.work.as_deref()).image
            }
            None => None,
        };
        let Some((name, version)) = chosen.or_else(|| self.config.image.clone()) else {
            return Ok(String::new());
        };
        let Some(image) = self.store.image(&name, &version).await? else {
            tracing::warn!(image = %name, version = %version, "configured boot image is not in the catalog");
            return Ok(String::new());
        };
        Ok(format!(
            " kiln.image={}/images/sha256/{} kiln.sha256={} kiln.format={}",
            self.config.public_url, image.sha256, image.sha256, image.format
        ))
    }

    /// The iPXE script for a decision; `token` is required for ramdisk scripts; `extra_args` are appended to
    /// the kernel command line (see [`BootHttp::image_args`]).
    pub fn render_script(
        &self,
        decision: &BootDecision,
        token: Option<&str>,
        extra_args: &str,
    ) -> String {
        let config = &self.config;
        let mut script = format!("#!ipxe\n# kiln: {}\n", decision.reason);
        match decision.action {
            BootAction::Ramdisk(mode) => {
                let base = &config.public_url;
                script.push_str(&format!(
                    "kernel {base}/boot/assets/{kernel} initrd={initrd} kiln.url={base} kiln.mac={mac} \
                     kiln.token={token} kiln.mode={mode}{extra_args} {args}\n\
                     initrd {base}/boot/assets/{initrd}\n\
                     boot\n",
                    kernel = config.kernel,
                    initrd = config.initrd,
                    mac = decision.mac,
                    token = token.unwrap_or(""),
                    mode = mode.as_str(),
                    args = config.kernel_args,
                ));
            }
            BootAction::LocalDisk => {
                // BIOS: hand over to the first disk. UEFI (and a failed sanboot): return to the firmware,
                // which tries its next boot entry.
                script.push_str(
                    "iseq ${platform} pcbios || goto fallthrough\n\
                     sanboot --no-describe --drive 0x80 || goto fallthrough\n\
                     :fallthrough\n\
                     exit 1\n",
                );
            }
        }
        script
    }
}

/// An endpoint failure, answered with a status and a short text.
#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong boot token")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    #[error("the boot server does not know the peer's address")]
    NoPeer,
    #[error("inventory error")]
    Store(#[from] StoreError),
    #[error("cannot read a boot asset")]
    Io(#[from] std::io::Error),
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match &self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Unauthorized => StatusCode::UNAUTHORIZED,
            HttpError::NotFound => StatusCode::NOT_FOUND,
            HttpError::NoPeer => StatusCode::INTERNAL_SERVER_ERROR,
            HttpError::Store(err) => {
                tracing::error!(error = %err, "boot endpoint: inventory error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            HttpError::Io(err) => {
                tracing::error!(error = %err, "boot endpoint: I/O error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, format!("{self}\n")).into_response()
    }
}

fn parse_mac(text: &str) -> Result<MacAddr, HttpError> {
    text.parse()
        .map_err(|err: kiln_inventory::BadMac| HttpError::BadRequest(err.to_string()))
}

/// The peer's address, as the server recorded it.
type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

fn peer_ip(peer: &Peer) -> Option<IpAddr> {
    peer.as_ref()
        .map(|Extension(ConnectInfo(addr))| addr.ip().to_canonical())
}

/// A script that boots nothing: the firmware goes on to its next boot entry.
fn refusal_script(reason: &str) -> String {
    format!("#!ipxe\n# kiln: {reason}\nexit 1\n")
}

async fn script(
    State(boot): State<BootHttp>,
    Path(file): Path<String>,
    peer: Peer,
) -> Result<Response, HttpError> {
    let mac = parse_mac(file.strip_suffix(".ipxe").ok_or(HttpError::NotFound)?)?;
    let decision = decide(&boot.store, mac).await?;
    let node_id = decision.node.as_ref().map(|node| node.id);
    let text = |body: String| {
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
    };
    let token = match decision.action {
        BootAction::LocalDisk => None,
        BootAction::Ramdisk(_) => {
            let Some(source) = peer_ip(&peer) else {
                tracing::error!(%mac, "boot endpoint served without peer addresses: no token issued");
                return Err(HttpError::NoPeer);
            };
            let ttl = boot.config.token_ttl;
            match node_id {
                None => Some(boot.store.issue_discovery_token(mac, source, ttl).await?),
                Some(id) => match boot.store.claim_boot_grant(id, mac, source, ttl).await? {
                    GrantClaim::Issued { token } => Some(token),
                    refused => {
                        let why = refusal(&refused, source);
                        boot.store
                            .record_event(id, BOOT_ACTOR, &format!("refused a boot token: {why}"))
                            .await?;
                        tracing::warn!(%mac, node = %id, %source, reason = %why, "boot token refused");
                        return Ok(text(refusal_script(&why)));
                    }
                },
            }
        }
    };
    match node_id {
        Some(id) => {
            boot.store
                .record_event(
                    id,
                    BOOT_ACTOR,
                    &format!("served iPXE script: {}", decision.reason),
                )
                .await?;
        }
        None => {
            boot.store
                .record_boot_sighting(mac, &BootSighting::default())
                .await?;
        }
    }
    tracing::info!(%mac, node = ?node_id, action = %decision.action, "served iPXE script");
    let mut extra = boot
        .image_args(decision.action, decision.node.as_ref())
        .await?;
    if let (Some(node), BootAction::Ramdisk(RamdiskMode::Wipe)) = (&decision.node, decision.action)
    {
        extra.push_str(&super::decision::wipe_args(&boot.store, node).await?);
    }
    Ok(text(boot.render_script(
        &decision,
        token.as_deref(),
        &extra,
    )))
}

/// Why a script fetch got no token, as the node's history says it.
fn refusal(claim: &GrantClaim, source: IpAddr) -> String {
    match claim {
        GrantClaim::Issued { .. } => String::new(),
        GrantClaim::NoGrant => {
            format!("script fetch from {source}, but kiln asked for no network boot")
        }
        GrantClaim::WindowClosed { ended_at } => format!(
            "script fetch from {source} after the boot request's window ended at {ended_at}"
        ),
        GrantClaim::AlreadyIssued { to, at } => format!(
            "possible spoof: a second script fetch for one boot, from {source}; the token went to {to} at {at}"
        ),
        GrantClaim::WrongAddress { leased } => format!(
            "possible spoof: script fetch from {source}, but DHCP leased {leased} to this MAC"
        ),
    }
}

/// Why a presented token was refused, for logs and the node's history; `None` when it is valid.
pub fn token_refusal(check: &TokenCheck, source: IpAddr) -> Option<String> {
    match check {
        TokenCheck::Valid(_) => None,
        TokenCheck::Wrong => Some("wrong token for this boot MAC".into()),
        TokenCheck::Expired { at } => Some(format!("the boot token expired at {at}")),
        TokenCheck::WrongAddress { bound } => Some(format!(
            "possible stolen token: presented from {source}, bound to {bound}"
        )),
    }
}

async fn asset(
    State(boot): State<BootHttp>,
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    let root = tokio::fs::canonicalize(&boot.config.assets_dir).await?;
    let path = match resolve_in_root(&root, &name) {
        Ok(path) => path,
        Err(PathRefused::NotFound(_) | PathRefused::NotAFile(_)) => {
            return Err(HttpError::NotFound);
        }
        Err(refused) => {
            tracing::warn!(file = %name, reason = %refused, "boot asset path traversal refused");
            return Err(HttpError::NotFound);
        }
    };
    let file = tokio::fs::File::open(&path).await?;
    let len = file.metadata().await?.len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}

/// Longest report text kept in an event.
const MAX_REPORT: usize = 512;

/// Largest ramdisk boot report body accepted (it is one line of text).
const MAX_REPORT_BODY: usize = 16 * 1024;

async fn report(
    State(boot): State<BootHttp>,
    Path(mac): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let mac = parse_mac(&mac)?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(HttpError::Unauthorized)?;
    let source = peer_ip(&peer).ok_or(HttpError::NoPeer)?;
    let check = boot
        .store
        .check_boot_token(mac, token.trim(), source)
        .await?;
    let owner = match (&check, token_refusal(&check, source)) {
        (TokenCheck::Valid(owner), _) => *owner,
        (_, why) => {
            let why = why.unwrap_or_default();
            tracing::warn!(%mac, %source, reason = %why, "boot report refused");
            return Err(HttpError::Unauthorized);
        }
    };
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(MAX_REPORT)
        .collect();
    let text = if text.trim().is_empty() {
        "booted".to_string()
    } else {
        text.trim().to_string()
    };
    match owner {
        TokenOwner::Node(id) => {
            boot.store
                .record_event(id, "agent", &format!("ramdisk reported: {text}"))
                .await?;
            tracing::info!(%mac, node = %id, report = %text, "ramdisk reported");
        }
        TokenOwner::Unenrolled => {
            boot.store.mark_discovered_reported(mac).await?;
            tracing::info!(%mac, report = %text, "discovery ramdisk reported");
        }
    }
    Ok((StatusCode::OK, "ok\n").into_response())
}
