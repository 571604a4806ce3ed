//! The node lifecycle engine: one handler per state (`handlers/`), SLAs and limits (`config`), remediation
//! policy as data (`policy`), the engine's durable per-node record (`work`), the worker pool (`engine`), the
//! agent report endpoint (`reports`), and the way into installed nodes (`access`, `ssh`).

pub mod access;
pub mod config;
pub mod connector;
pub mod ctx;
pub mod engine;
pub mod gates;
mod handlers;
pub mod outcome;
pub mod policy;
pub mod reports;
pub mod sessions;
pub mod ssh;
pub mod work;

use kiln_inventory::{NodeEvent, NodeState, Store, StoreError};

pub use access::{AccessError, NodeAccess, NodeHost, PostImageFacts};
pub use config::{EngineConfig, Limits};
pub use connector::{BmcConnector, InventoryBmcs, NodeBmcError, connect_node};
pub use ctx::{Ctx, Gates};
pub use engine::Engine;
pub use handlers::fingerprint;
pub use outcome::{Failure, FailureClass, Outcome};
pub use policy::{Action, Policy};
pub use reports::report_router;
pub use work::Work;

/// A technician's `repair --done`: clears the quarantine (failure and attempt counts) and sends the node back to
/// be inspected again (to wiping when it was quarantined while wiping). Refused unless the node is quarantined.
pub async fn repair_done(
    store: &Store,
    serial: &str,
    actor: &str,
    note: &str,
) -> Result<NodeEvent, StoreError> {
    let node = store.node_by_serial(serial).await?;
    let stored = store.node_work(node.id).await?;
    let mut work = Work::parse(&node, stored.work.as_deref());
    // A node quarantined before its disks were erased (a failed wipe, or any failure while wiping) is wiped
    // again after the repair: a repair never hands the last tenant's data to the next one.
    let unerased = work
        .failure
        .as_ref()
        .is_some_and(|f| f.state == NodeState::Wiping);
    let (to, next) = if unerased {
        (NodeState::Wiping, "wiping again")
    } else {
        (NodeState::Inspecting, "inspecting again")
    };
    work.leave_state_for(NodeState::Quarantined, to);
    work.failure = None;
    work.attempts.clear();
    // A repaired node's erase starts from the strongest method again.
    work.erase_failed.clear();
    work.erase_skip.clear();
    work.erase_causes.clear();
    let reason = if note.trim().is_empty() {
        format!("repaired by a technician; {next}")
    } else {
        format!("repaired by a technician ({}); {next}", note.trim())
    };
    store
        .transition_with_work(
            node.id,
            NodeState::Quarantined,
            to,
            actor,
            &reason,
            Some(&work.to_json()),
            None,
        )
        .await
}
