//! The two transports behind the technician commands: the local inventory database (`--db`) or a kiln server's
//! API (`--server URL` / `KILN_SERVER`, token from `--token` / `KILN_TOKEN`). Both answer with the same types,
//! and where the API has logic (leasing, release progress, reports, power) the local side calls the same kiln-api
//! functions, so commands format one set of values whichever way they came.

mod firmware;

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use ed25519_dalek::SigningKey;
use kiln_api::power::{NodePower, PowerRequest, PowerResult};
use kiln_api::report::AcceptanceReport;
use kiln_api::routes::halls::HallList;
use kiln_api::routes::leases::{LeaseProgress, LeaseRequest, ReleaseResult};
use kiln_api::routes::nodes::{
    DrainRequest, EventList, HealthList, NodeDetail, NodePage, ReimageRequest, RetestRequest,
};
use kiln_api::routes::racks::ImportRequest;
use kiln_api::routes::site::{ImageList, SigningKeyInfo};
use kiln_inventory::{
    HallSummary, Hardware, HealthRun, Image, ImportSummary, LeaseOutcome, ManifestFormat, Node,
    NodeEvent, NodeFilter, NodeId, NodeState, Store, parse_manifest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::GlobalArgs;
use crate::global::KeyUse;

/// Which nodes to list.
#[derive(Debug, Clone, Default)]
pub struct NodeQuery {
    /// Only this hall.
    pub hall: Option<String>,
    /// Only this rack.
    pub rack: Option<String>,
    /// Only this state.
    pub state: Option<NodeState>,
    /// Only this SKU.
    pub sku: Option<String>,
    /// At most this many.
    pub limit: Option<i64>,
    /// After this node id.
    pub after: Option<i64>,
}

/// Everything `kiln node show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// The node.
    pub node: Node,
    /// Its hardware.
    pub hardware: Hardware,
    /// Its history.
    pub events: Vec<NodeEvent>,
    /// Its health runs.
    pub health_runs: Vec<HealthRun>,
    /// What the last BMC sweep saw.
    pub bmc_status: Option<kiln_inventory::BmcStatus>,
    /// The disk erase of its latest tenant turnover.
    pub erase_records: Vec<kiln_inventory::StoredEraseRecord>,
}

/// A transport.
#[derive(Debug)]
pub enum Client {
    /// The inventory database itself.
    Local {
        /// The open store (boxed: a store handle is about a kilobyte).
        store: Box<Store>,
        /// Where the site signing key lives (read, or created, only for reports).
        signing_key: std::path::PathBuf,
    },
    /// A kiln server.
    Remote(Remote),
}

/// A kiln server's API.
#[derive(Debug)]
pub struct Remote {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Actor recorded in event logs for commands run on the local database.
const LOCAL_ACTOR: &str = "cli";

impl Client {
    /// The transport the global options name: the server when one is given, else the local database.
    pub async fn open(global: &GlobalArgs, key_use: KeyUse) -> anyhow::Result<Self> {
        match &global.server {
            Some(url) => Ok(Client::Remote(
                Remote::new(url, global.token.clone())?.trusting(global.tls_ca.as_deref())?,
            )),
            None => Ok(Client::Local {
                store: Box::new(global.open_store(key_use).await?),
                signing_key: global.signing_key_path(),
            }),
        }
    }

    /// Closes the database pool (local) or does nothing (remote).
    pub async fn close(&self) {
        if let Client::Local { store, .. } = self {
            store.close().await;
        }
    }

    /// Nodes matching `query`, following the API's pages up to `query.limit`.
    pub async fn nodes(&self, query: &NodeQuery) -> anyhow::Result<Vec<Node>> {
        match self {
            Client::Local { store, .. } => Ok(store
                .list_nodes(&NodeFilter {
                    hall: query.hall.clone(),
                    rack: query.rack.clone(),
                    state: query.state,
                    sku: query.sku.clone(),
                    lessee: None,
                    serial: None,
                    after_id: query.after.map(NodeId),
                    limit: query.limit,
                })
                .await?),
            Client::Remote(remote) => {
                let mut nodes = Vec::new();
                let mut after = query.after;
                loop {
                    let want = query
                        .limit
                        .map_or(1000, |l| (l - nodes.len() as i64).min(1000));
                    if want <= 0 {
                        break;
                    }
                    let mut params: Vec<(&str, String)> = vec![("limit", want.to_string())];
                    let filters = [
                        ("hall", query.hall.clone()),
                        ("rack", query.rack.clone()),
                        ("state", query.state.map(|s| s.to_string())),
                        ("sku", query.sku.clone()),
                        ("after", after.map(|a| a.to_string())),
                    ];
                    params.extend(filters.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
                    let page: NodePage = remote.get_query("/nodes", &params).await?;
                    nodes.extend(page.nodes);
                    match page.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                Ok(nodes)
            }
        }
    }

    /// One node with hardware, history and health runs.
    pub async fn node(&self, serial: &str) -> anyhow::Result<NodeView> {
        match self {
            Client::Local { store, .. } => {
                let node = store.node_by_serial(serial).await?;
                Ok(NodeView {
                    hardware: store.hardware(node.id).await?,
                    events: store.node_events(node.id).await?,
                    health_runs: store.health_runs(node.id).await?,
                    bmc_status: store.bmc_status(node.id).await?,
                    erase_records: store.erase_records(node.id).await?,
                    node,
                })
            }
            Client::Remote(remote) => {
                let path = format!("/nodes/{}", path_segment(serial));
                let detail: NodeDetail = remote.get(&path).await?;
                let events: EventList = remote.get(&format!("{path}/events")).await?;
                let health: HealthList = remote.get(&format!("{path}/health")).await?;
                Ok(NodeView {
                    node: detail.node,
                    hardware: detail.hardware,
                    events: events.events,
                    health_runs: health.health_runs,
                    bmc_status: detail.bmc_status,
                    erase_records: detail.erase_records,
                })
            }
        }
    }

    /// Halls with counts.
    pub async fn halls(&self) -> anyhow::Result<Vec<HallSummary>> {
        match self {
            Client::Local { store, .. } => Ok(store.list_halls().await?),
            Client::Remote(remote) => Ok(remote.get::<HallList>("/halls").await?.halls),
        }
    }

    /// A hall's id from its name (or its id written as a number).
    pub async fn hall_id(&self, hall: &str) -> anyhow::Result<i64> {
        let halls = self.halls().await?;
        halls
            .iter()
            .find(|h| h.name == hall)
            .or_else(|| halls.iter().find(|h| h.id.to_string() == hall))
            .map(|h| h.id)
            .ok_or_else(|| anyhow!("no hall {hall:?} (see `kiln hall list`)"))
    }

    /// Leases a hall.
    pub async fn lease(
        &self,
        hall_id: i64,
        request: &LeaseRequest,
    ) -> anyhow::Result<LeaseOutcome> {
        match self {
            Client::Local { store, .. } => {
                Ok(
                    kiln_api::routes::leases::lease_hall(store, hall_id, request, LOCAL_ACTOR)
                        .await?,
                )
            }
            Client::Remote(remote) => {
                remote
                    .send(
                        reqwest::Method::POST,
                        &format!("/halls/{hall_id}/lease"),
                        Some(request),
                    )
                    .await
            }
        }
    }

    /// Releases a lease.
    pub async fn release(&self, lease_id: i64) -> anyhow::Result<ReleaseResult> {
        match self {
            Client::Local { store, .. } => {
                Ok(kiln_api::routes::leases::release_lease(store, lease_id, LOCAL_ACTOR).await?)
            }
            Client::Remote(remote) => {
                remote
                    .send::<(), _>(
                        reqwest::Method::POST,
                        &format!("/leases/{lease_id}/release"),
                        None,
                    )
                    .await
            }
        }
    }

    /// Where a released lease's nodes are.
    pub async fn progress(&self, lease_id: i64) -> anyhow::Result<LeaseProgress> {
        match self {
            Client::Local { store, .. } => {
                Ok(kiln_api::routes::leases::lease_progress(store, lease_id).await?)
            }
            Client::Remote(remote) => remote.get(&format!("/leases/{lease_id}/progress")).await,
        }
    }

    /// A lease's signed acceptance report.
    pub async fn report(&self, lease_id: i64) -> anyhow::Result<AcceptanceReport> {
        match self {
            Client::Local { store, signing_key } => {
                let key = local_signing_key(signing_key)?;
                Ok(kiln_api::report::build(store, &key, lease_id).await?)
            }
            Client::Remote(remote) => remote.get(&format!("/leases/{lease_id}/report")).await,
        }
    }

    /// The public key that signs reports, hex.
    pub async fn signing_public_key(&self) -> anyhow::Result<String> {
        match self {
            Client::Local { signing_key, .. } => Ok(hex::encode(
                local_signing_key(signing_key)?.verifying_key().as_bytes(),
            )),
            Client::Remote(remote) => Ok(remote
                .get::<SigningKeyInfo>("/signing-key")
                .await?
                .public_key_hex),
        }
    }

    /// Powers a node on, off or cycles it through its BMC.
    pub async fn power(&self, serial: &str, action: NodePower) -> anyhow::Result<PowerResult> {
        match self {
            Client::Local { store, .. } => {
                let node = store.node_by_serial(serial).await?;
                Ok(kiln_api::power::power_node(store, &node, action, LOCAL_ACTOR).await?)
            }
            Client::Remote(remote) => {
                let path = format!("/nodes/{}/power", path_segment(serial));
                remote
                    .send(reqwest::Method::POST, &path, Some(&PowerRequest { action }))
                    .await
            }
        }
    }

    /// A technician's "repair done" on a quarantined node: back to inspecting. Returns what happened.
    pub async fn repair(&self, serial: &str, note: &str) -> anyhow::Result<String> {
        match self {
            Client::Local { store, .. } => {
                let actor = local_user_actor();
                match kiln_provisioner::lifecycle::repair_done(store, serial, &actor, note).await {
                    Ok(event) => Ok(event.reason),
                    Err(kiln_inventory::StoreError::StateChanged { actual, .. }) => {
                        Err(anyhow::anyhow!(
                            "{serial} is {actual}, not quarantined: only quarantined nodes are repaired"
                        ))
                    }
                    Err(err) => Err(err.into()),
                }
            }
            Client::Remote(remote) => {
                let path = format!("/nodes/{}/repair", path_segment(serial));
                let _: serde_json::Value = remote
                    .send(
                        reqwest::Method::POST,
                        &path,
                        Some(&serde_json::json!({ "reason": note })),
                    )
                    .await?;
                Ok("repaired by a technician; inspecting again".to_string())
            }
        }
    }

    /// Takes a node out of allocation (`drained`) or puts it back, with the reason kept in its history.
    /// Returns the node as it is afterwards.
    pub async fn drain(&self, serial: &str, drained: bool, reason: &str) -> anyhow::Result<Node> {
        match self {
            Client::Local { store, .. } => {
                let node = store.node_by_serial(serial).await?;
                store
                    .set_drained(node.id, drained, &local_user_actor(), reason)
                    .await?;
                Ok(store.node_by_serial(serial).await?)
            }
            Client::Remote(remote) => {
                let path = format!("/nodes/{}/drain", path_segment(serial));
                let request = DrainRequest {
                    drained,
                    reason: reason.to_string(),
                };
                let detail: NodeDetail = remote
                    .send(reqwest::Method::POST, &path, Some(&request))
                    .await?;
                Ok(detail.node)
            }
        }
    }

    /// A technician's reimage or retest (see [`ByHand`]); returns the node as it is afterwards.
    pub async fn by_hand(&self, serial: &str, verb: &ByHand, reason: &str) -> anyhow::Result<Node> {
        match self {
            Client::Local { store, .. } => {
                let actor = local_user_actor();
                match verb {
                    ByHand::Reimage { image } => {
                        kiln_provisioner::lifecycle::reimage(
                            store,
                            serial,
                            image.clone(),
                            &actor,
                            reason,
                        )
                        .await?
                    }
                    ByHand::Retest { burn_in, nccl } => {
                        let from =
                            kiln_provisioner::lifecycle::RetestFrom::from_flags(*burn_in, *nccl);
                        kiln_provisioner::lifecycle::retest(store, serial, from, &actor, reason)
                            .await?
                    }
                };
                Ok(store.node_by_serial(serial).await?)
            }
            Client::Remote(remote) => {
                let (verb_path, body) = match verb {
                    ByHand::Reimage { image } => (
                        "reimage",
                        serde_json::to_value(ReimageRequest {
                            image: image.as_ref().map(|(n, v)| format!("{n}:{v}")),
                            reason: reason.to_string(),
                        })?,
                    ),
                    ByHand::Retest { burn_in, nccl } => (
                        "retest",
                        serde_json::to_value(RetestRequest {
                            burn_in: *burn_in,
                            nccl: *nccl,
                            reason: reason.to_string(),
                        })?,
                    ),
                };
                let path = format!("/nodes/{}/{verb_path}", path_segment(serial));
                let detail: NodeDetail = remote
                    .send(reqwest::Method::POST, &path, Some(&body))
                    .await?;
                Ok(detail.node)
            }
        }
    }

    /// A node's events, oldest first.
    pub async fn events(&self, serial: &str) -> anyhow::Result<Vec<NodeEvent>> {
        match self {
            Client::Local { store, .. } => {
                let node = store.node_by_serial(serial).await?;
                Ok(store.node_events(node.id).await?)
            }
            Client::Remote(remote) => {
                let path = format!("/nodes/{}/events", path_segment(serial));
                Ok(remote.get::<EventList>(&path).await?.events)
            }
        }
    }

    /// Imports a rack manifest. Locally `bmc_password_env` columns are read from this process's environment;
    /// a server takes inline passwords only.
    pub async fn import_manifest(
        &self,
        text: &str,
        format: ManifestFormat,
        site: &str,
    ) -> anyhow::Result<ImportSummary> {
        match self {
            Client::Local { store, .. } => {
                let rows = parse_manifest(text, format, &|var| std::env::var(var).ok())?;
                Ok(store
                    .import_manifest(&rows, site, "cli:rack-import")
                    .await?)
            }
            Client::Remote(remote) => {
                let request = ImportRequest {
                    format: match format {
                        ManifestFormat::Csv => "csv",
                        ManifestFormat::Toml => "toml",
                    }
                    .to_string(),
                    manifest: text.to_string(),
                    site: Some(site.to_string()),
                };
                remote
                    .send(reqwest::Method::POST, "/racks/import", Some(&request))
                    .await
            }
        }
    }

    /// The image catalog.
    pub async fn images(&self) -> anyhow::Result<Vec<Image>> {
        match self {
            Client::Local { store, .. } => Ok(store.images().await?),
            Client::Remote(remote) => Ok(remote.get::<ImageList>("/images").await?.images),
        }
    }
}

/// Reads the site signing key for a local report, creating it on first use.
fn local_signing_key(path: &std::path::Path) -> anyhow::Result<SigningKey> {
    let (key, created) = kiln_health::evidence::load_or_create_signing_key(path)?;
    if created {
        eprintln!(
            "note: created a new site signing key in {} (keep it safe and back it up)",
            path.display()
        );
    }
    Ok(key)
}

/// The event actor of a technician's change made on the local database: `cli:$USER`.
fn local_user_actor() -> String {
    format!(
        "{LOCAL_ACTOR}:{}",
        std::env::var("USER").unwrap_or_default()
    )
}

/// A serial as one URL path segment.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// What `kiln node reimage` and `kiln node retest` ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByHand {
    /// Back through imaging (with this catalog image instead of the engine's, when given).
    Reimage {
        /// `(name, version)`.
        image: Option<(String, String)>,
    },
    /// The health checks again: burn-in (then the fabric test), or `nccl` alone for the fabric test only.
    Retest {
        /// `--burn-in`.
        burn_in: bool,
        /// `--nccl`.
        nccl: bool,
    },
}

impl Remote {
    /// A client for the server at `url` (`http://host:port`, with or without a trailing `/`).
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--server {url:?} is not an http:// or https:// URL");
        }
        Ok(Self {
            http: kiln_images::http_client(),
            base: format!("{}/api/v1", base.trim_end_matches("/api/v1")),
            token: token.filter(|t| !t.trim().is_empty()),
        })
    }

    /// Trusts the PEM certificates in `ca` (the server's own certificate or the site CA) for an `https://`
    /// server; `None`: no certificate is trusted, so only `http://` servers can be reached.
    pub fn trusting(mut self, ca: Option<&std::path::Path>) -> anyhow::Result<Self> {
        if let Some(path) = ca {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --tls-ca {}", path.display()))?;
            self.http = kiln_images::http_client_trusting(&pem).with_context(|| {
                format!(
                    "--tls-ca {} holds no readable PEM certificate",
                    path.display()
                )
            })?;
        }
        Ok(self)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send::<(), T>(reqwest::Method::GET, path, None).await
    }

    async fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let request = self.request(reqwest::Method::GET, path).query(params);
        self.finish(request, path).await
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.finish(request, path).await
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(120));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn finish<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> anyhow::Result<T> {
        let response = request.send().await.map_err(|err| {
            let cause = describe(&err);
            let hint = if cause.contains("certificate") {
                "trust the server's certificate or the site CA with --tls-ca / KILN_TLS_CA"
            } else {
                "check --server / KILN_SERVER"
            };
            anyhow!(
                "cannot reach the kiln server at {}: {cause} ({hint})",
                self.base
            )
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the answer to {path}"))?;
        if status.is_success() {
            return serde_json::from_str(&text).with_context(|| {
                format!("the server's answer to {path} is not what kiln expects")
            });
        }
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let message = body["message"].as_str().unwrap_or(text.trim());
        let hint = match status.as_u16() {
            401 if self.token.is_none() => {
                " (no token given: set KILN_TOKEN or pass --token; `kiln token create` makes one)"
            }
            401 => " (the token is invalid or revoked: check KILN_TOKEN / --token)",
            403 => " (this token's role may not do that)",
            _ => "",
        };
        let code = body["error"].as_str().unwrap_or("error");
        Err(anyhow!("server answered {status} {code}: {message}{hint}"))
    }
}

/// The innermost cause of a transport error (reqwest's own text is only "error sending request").
fn describe(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if err.is_timeout() {
        "timed out".to_string()
    } else {
        cause.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn serials_are_escaped_as_one_segment() {
        assert_eq!(super::path_segment("A-0.b_c~"), "A-0.b_c~");
        assert_eq!(super::path_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn server_urls_are_checked() {
        assert!(super::Remote::new("127.0.0.1:8080", None).is_err());
        let remote = super::Remote::new("http://127.0.0.1:8080/", Some(" ".into())).expect("url");
        assert_eq!(remote.base, "http://127.0.0.1:8080/api/v1");
        assert!(remote.token.is_none());
    }
}
