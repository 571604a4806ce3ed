//! What handlers work with: the inventory, the engine settings, BMC connections, the way into installed nodes,
//! SKU profiles, and the concurrency limits shared by every handler of this instance.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_bmc::Bmc;
use kiln_bmc::target::{ConnectOptions, Endpoint, connect};
use kiln_bmc::{BmcError, Credentials};
use kiln_health::SkuCatalog;
use kiln_inventory::{BmcProtocol, Node, NodeId, Store};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::access::NodeAccess;
use super::config::EngineConfig;

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

/// Concurrency limits shared by the handlers of one engine.
#[derive(Debug)]
pub struct Gates {
    /// BMC calls.
    pub bmc: Semaphore,
    /// Burn-ins.
    pub burn_in: Semaphore,
    image_capacity: usize,
    images: Mutex<HashSet<NodeId>>,
    image_waiters: Mutex<VecDeque<NodeId>>,
    power_ons_per_s: u32,
    power_ons: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Gates {
    /// Gates sized by `config.limits`.
    pub fn new(config: &EngineConfig) -> Self {
        let limits = config.limits;
        Gates {
            bmc: Semaphore::new(limits.bmc_calls.max(1)),
            burn_in: Semaphore::new(limits.burn_ins.max(1)),
            image_capacity: limits.image_writes.max(1),
            images: Mutex::new(HashSet::new()),
            image_waiters: Mutex::new(VecDeque::new()),
            power_ons_per_s: limits.power_ons_per_rack_per_s.max(1),
            power_ons: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one of the image-write slots for `node` (held until [`Gates::finish_image`]); `false` when all
    /// are taken, and the node joins the queue woken as slots free up. A node that already holds one keeps it.
    pub fn start_image(&self, node: NodeId) -> bool {
        let mut images = self.images.lock().unwrap_or_else(|p| p.into_inner());
        if images.contains(&node) {
            return true;
        }
        if images.len() >= self.image_capacity {
            let mut waiters = self.image_waiters.lock().unwrap_or_else(|p| p.into_inner());
            if !waiters.contains(&node) {
                waiters.push_back(node);
            }
            return false;
        }
        images.insert(node);
        let mut waiters = self.image_waiters.lock().unwrap_or_else(|p| p.into_inner());
        waiters.retain(|w| *w != node);
        true
    }

    /// Frees `node`'s image-write slot; returns the next node waiting for one (to be woken).
    pub fn finish_image(&self, node: NodeId) -> Option<NodeId> {
        let mut images = self.images.lock().unwrap_or_else(|p| p.into_inner());
        if !images.remove(&node) {
            return None;
        }
        let mut waiters = self.image_waiters.lock().unwrap_or_else(|p| p.into_inner());
        waiters.pop_front()
    }

    /// Image writes under way.
    pub fn images_in_flight(&self) -> usize {
        self.images.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Waits until `rack` may power on one more server (at most K per rack per second).
    pub async fn power_on_slot(&self, rack: &str) {
        loop {
            let wait = {
                let mut all = self.power_ons.lock().unwrap_or_else(|p| p.into_inner());
                let recent = all.entry(rack.to_string()).or_default();
                let now = Instant::now();
                while recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
                {
                    recent.pop_front();
                }
                if recent.len() < self.power_ons_per_s as usize {
                    recent.push_back(now);
                    None
                } else {
                    recent.front().map(|first| {
                        Duration::from_secs(1).saturating_sub(now.duration_since(*first))
                    })
                }
            };
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
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
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("instance", &self.config.instance)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// This instance's actor name for events.
    pub fn actor(&self) -> &str {
        &self.config.instance
    }
}
