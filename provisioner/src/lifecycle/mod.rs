//! The node lifecycle engine: one handler per state (`handlers/`), SLAs and limits (`config`), remediation
//! policy as data (`policy`), the engine's durable per-node record (`work`), the worker pool (`engine`), the
//! agent report endpoint (`reports`), and the way into installed nodes (`access`, `ssh`).

pub mod access;
pub mod config;
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
pub use ctx::{BmcConnector, Ctx, Gates, InventoryBmcs, NodeBmcError, connect_node};
pub use engine::Engine;
pub use handlers::fingerprint;
pub use outcome::{Failure, FailureClass, Outcome};
pub use policy::{Action, Policy};
pub use reports::report_router;
pub use work::Work;

/// A technician's `repair --done`: clears the quarantine (failure and attempt counts) and sends the node back to
/// be inspected again. Refused unless the node is quarantined.
pub async fn repair_done(
    store: &Store,
    serial: &str,
    actor: &str,
    note: &str,
) -> Result<NodeEvent, StoreError> {
    let node = store.node_by_serial(serial).await?;
    let stored = store.node_work(node.id).await?;
    let mut work = Work::parse(&node, stored.work.as_deref());
    work.leave_state_for(NodeState::Quarantined, NodeState::Inspecting);
    work.failure = None;
    work.attempts.clear();
    let reason = if note.trim().is_empty() {
        "repaired by a technician; inspecting again".to_string()
    } else {
        format!(
            "repaired by a technician ({}); inspecting again",
            note.trim()
        )
    };
    store
        .transition_with_work(
            node.id,
            NodeState::Quarantined,
            NodeState::Inspecting,
            actor,
            &reason,
            Some(&work.to_json()),
            None,
        )
        .await
}
