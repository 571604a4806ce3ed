//! Opening a node's BMC: the connector the engine uses, over the inventory's endpoint and sealed credentials.

use std::time::Duration;

use kiln_bmc::Bmc;
use kiln_bmc::target::{ConnectOptions, Endpoint, connect};
use kiln_bmc::{BmcError, Credentials};
use kiln_inventory::{BmcProtocol, Node, Store};

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
