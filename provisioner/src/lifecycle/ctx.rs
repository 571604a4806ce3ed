//! What handlers work with: the inventory, the engine settings, BMC connections, the way into installed nodes,
//! SKU profiles, and the concurrency limits shared by every handler of this instance.

use std::sync::Arc;
use std::time::Duration;

use kiln_bmc::Bmc;
use kiln_bmc::target::{ConnectOptions, Endpoint, connect};
use kiln_bmc::{BmcError, Credentials};
use kiln_health::SkuCatalog;
use kiln_inventory::{BmcProtocol, Node, Store};

use super::access::NodeAccess;
use super::config::EngineConfig;
pub use super::gates::Gates;
use super::sessions::BmcSessions;

/// Opens a BMC client for a node.
#[async_trait::async_trait]
pub trait BmcConnector: Send + Sync + 'static {
    /// A client for `node`'s BMC (nothing sent yet beyond what trust-on-first-use needs).
    async fn connect(&self, node: &Node) -> Result<Box<dyn Bmc>, BmcError>;
}

/// Connects with the inventory's endpoint and sealed credentials; pins a Redfish certificate on first use and
/// records it.
#[derive(Debug, Clone)]
pub struct InventoryBmcs {
    store: Store,
    options: ConnectOptions,
}

impl InventoryBmcs {
    /// Connector over `store`, with `request_timeout` per BMC request.
    pub fn new(store: Store, request_timeout: Duration) -> Self {
        Self {
            store,
            options: ConnectOptions { request_timeout },
        }
    }
}

/// Why a node's BMC could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeBmcError {
    /// Reading the node's BMC record (or opening its password) failed.
    #[error(transparent)]
    Store(#[from] kiln_inventory::StoreError),
    /// The BMC failed or could not be reached.
    #[error(transparent)]
    Bmc(#[from] BmcError),
}

/// Connects to an inventory node's BMC with its stored credentials (opened with the site key). An `https`
/// Redfish BMC seen for the first time has its certificate pinned and recorded; the fingerprint is returned so
/// callers can say so. Shared by the engine, the API and the CLI.
pub async fn connect_node(
    store: &Store,
    node: &Node,
    insecure: bool,
    options: ConnectOptions,
) -> Result<(Box<dyn Bmc>, Option<String>), NodeBmcError> {
    let credentials = store.bmc_credentials(node.id).await?;
    let mut endpoint = match credentials.protocol {
        BmcProtocol::Redfish => {
            let fingerprint = if insecure {
                None
            } else {
                credentials.tls_fingerprint.as_deref()
            };
            Endpoint::redfish(&credentials.address, fingerprint, insecure)?
        }
        BmcProtocol::Ipmi => Endpoint::ipmi(&credentials.address)?,
    };
    let pinned = match endpoint.pin_on_first_use(options.request_timeout).await? {
        Some(fingerprint) => {
            let text = fingerprint.to_string();
            store
                .update_bmc_identity(node.bmc.id, None, Some(&text))
                .await?;
            tracing::info!(node = %node.serial, fingerprint = %text, "pinned the BMC certificate (trust on first use)");
            Some(text)
        }
        None => None,
    };
    let login = Credentials::new(credentials.username.clone(), credentials.password.expose());
    Ok((connect(&endpoint, login, options)?, pinned))
}

#[async_trait::async_trait]
impl BmcConnector for InventoryBmcs {
    async fn connect(&self, node: &Node) -> Result<Box<dyn Bmc>, BmcError> {
        match connect_node(&self.store, node, false, self.options).await {
            Ok((bmc, _)) => Ok(bmc),
            Err(NodeBmcError::Bmc(err)) => Err(err),
            Err(NodeBmcError::Store(err)) => Err(BmcError::Config {
                addr: node.bmc.address.clone(),
                detail: err.to_string(),
            }),
        }
    }
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct Ctx {
    /// The inventory.
    pub store: Store,
    /// Settings.
    pub config: Arc<EngineConfig>,
    /// BMC connections.
    pub bmcs: Arc<dyn BmcConnector>,
    /// The way into installed nodes.
    pub access: Arc<dyn NodeAccess>,
    /// SKU profiles for health thresholds.
    pub skus: Arc<SkuCatalog>,
    /// Concurrency limits.
    pub gates: Arc<Gates>,
    /// BMC clients kept between a node's operations.
    pub sessions: Arc<BmcSessions>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("instance", &self.config.instance)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// A context with fresh gates and an empty BMC client cache sized by `config`.
    pub fn new(
        store: Store,
        config: EngineConfig,
        bmcs: Arc<dyn BmcConnector>,
        access: Arc<dyn NodeAccess>,
        skus: Arc<SkuCatalog>,
    ) -> Self {
        Ctx {
            store,
            gates: Arc::new(Gates::new(&config)),
            sessions: Arc::new(BmcSessions::new(
                config.bmc_session_idle,
                config.bmc_sessions_kept,
            )),
            config: Arc::new(config),
            bmcs,
            access,
            skus,
        }
    }

    /// This instance's actor name for events.
    pub fn actor(&self) -> &str {
        &self.config.instance
    }
}
