//! What handlers work with: the inventory, the engine settings, BMC connections, the way into installed nodes,
//! SKU profiles, and the concurrency limits shared by every handler of this instance.

use std::sync::Arc;

use kiln_health::SkuCatalog;
use kiln_inventory::Store;

use super::access::NodeAccess;
use super::config::EngineConfig;
use super::connector::BmcConnector;
pub use super::gates::Gates;
use super::sessions::BmcSessions;

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
