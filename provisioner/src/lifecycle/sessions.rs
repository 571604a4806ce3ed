//! BMC clients kept between a node's operations. A node's BMC is used a few times in a row (inventory, the
//! ramdisk boot, the image boot, the disk boot); each fresh client costs a TLS handshake, Redfish discovery,
//! a session login and a logout, several times the operation itself. A client is kept while it is used
//! at least every `idle` (real time: BMCs expire idle sessions on their own clock, whatever the simulator's
//! speed), dropped after any error (the next operation starts clean), and the cache holds at most `capacity`
//! clients, closing the least recently used one when full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kiln_bmc::{Bmc, BmcError};
use kiln_inventory::{Node, NodeId};

use super::connector::BmcConnector;

struct Entry {
    bmc: Arc<dyn Bmc>,
    /// The endpoint the client was made for: a changed address or user means a new client.
    endpoint: String,
    used: Instant,
}

/// The cache of one engine.
pub struct BmcSessions {
    idle: Duration,
    capacity: usize,
    clients: Mutex<HashMap<NodeId, Entry>>,
}

impl std::fmt::Debug for BmcSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BmcSessions")
            .field("idle", &self.idle)
            .field("capacity", &self.capacity)
            .field("clients", &self.lock().len())
            .finish()
    }
}

/// The key a kept client must match. The pinned certificate is not part of it: the first connection pins it
/// (so the node's record changes right after), and a client's TLS connections already verified it.
fn endpoint_of(node: &Node) -> String {
    format!("{} {}", node.bmc.address, node.bmc.username)
}

fn close_later(bmcs: Vec<Arc<dyn Bmc>>) {
    if bmcs.is_empty() {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            for bmc in bmcs {
                bmc.close().await;
            }
        });
    }
}

impl BmcSessions {
    /// A cache keeping clients idle for at most `idle`, and at most `capacity` of them (0: keep none).
    pub fn new(idle: Duration, capacity: usize) -> Self {
        BmcSessions {
            idle,
            capacity,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<NodeId, Entry>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Clients kept now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no client is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kept client for `node`, or a new one from `connector`.
    pub async fn get(
        &self,
        connector: &dyn BmcConnector,
        node: &Node,
    ) -> Result<Arc<dyn Bmc>, BmcError> {
        let endpoint = endpoint_of(node);
        let now = Instant::now();
        let mut stale = Vec::new();
        let kept = {
            let mut clients = self.lock();
            let kept = match clients.remove(&node.id) {
                Some(entry)
                    if entry.endpoint == endpoint && now.duration_since(entry.used) < self.idle =>
                {
                    Some(entry.bmc)
                }
                Some(entry) => {
                    stale.push(entry.bmc);
                    None
                }
                None => None,
            };
            // Idle clients of other nodes go too: their sessions are about to expire on the BMC anyway.
            let idle = self.idle;
            let expired: Vec<NodeId> = clients
                .iter()
                .filter(|(_, e)| now.duration_since(e.used) >= idle)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                if let Some(entry) = clients.remove(&id) {
                    stale.push(entry.bmc);
                }
            }
            kept
        };
        close_later(stale);
        match kept {
            Some(bmc) => Ok(bmc),
            None => Ok(Arc::from(connector.connect(node).await?)),
        }
    }

    /// Returns `node`'s client after an operation: kept when the operation succeeded, closed otherwise.
    pub fn put(&self, node: &Node, bmc: Arc<dyn Bmc>, succeeded: bool) {
        if !succeeded || self.capacity == 0 {
            close_later(vec![bmc]);
            return;
        }
        let mut evicted = Vec::new();
        {
            let mut clients = self.lock();
            if clients.len() >= self.capacity && !clients.contains_key(&node.id) {
                let oldest = clients
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(id, _)| *id);
                if let Some(entry) = oldest.and_then(|id| clients.remove(&id)) {
                    evicted.push(entry.bmc);
                }
            }
            if let Some(previous) = clients.insert(
                node.id,
                Entry {
                    bmc,
                    endpoint: endpoint_of(node),
                    used: Instant::now(),
                },
            ) {
                evicted.push(previous.bmc);
            }
        }
        close_later(evicted);
    }
}
