//! A technician's verbs that move a node through the lifecycle by hand: `repair` (quarantined → inspecting or
//! wiping), `reimage` (back through imaging and every check after it) and `retest` (burn-in and/or the fabric
//! test again). Each is one transition with its event (actor and reason) and the engine's work record in one
//! transaction; the engine picks the node up from there. Shared by the CLI's local transport and the API.

use kiln_inventory::{Node, NodeEvent, NodeState, Store, StoreError};

use super::work::Work;

/// States a technician may reimage or retest from: a verified node with no tenant (nothing on its disks a
/// tenant wrote since its last erase), or one the engine is remediating.
const BY_HAND_FROM: [NodeState; 2] = [NodeState::Available, NodeState::Remediating];

/// Why a node cannot be sent back by hand from where it is, in words that say what to do instead.
fn refuse(node: &Node, verb: &str) -> StoreError {
    let why = match node.state {
        NodeState::Leased => "it is leased: release its hall (the release wipes it, then reimages it)".to_string(),
        NodeState::Quarantined => {
            "it is quarantined: `kiln node repair SERIAL --done` sends it back through inspection once fixed"
                .to_string()
        }
        state => format!(
            "it is in {state}, being worked on by the engine; {verb} applies to available or remediating nodes"
        ),
    };
    StoreError::Invalid(format!("cannot {verb} {}: {why}", node.serial))
}

fn reason(what: &str, note: &str) -> String {
    match note.trim() {
        "" => format!("{what} by a technician"),
        note => format!("{what} by a technician ({note})"),
    }
}

/// Starts `to` afresh for a node moved by hand: a clean failure and attempt record, as after a repair.
async fn move_by_hand(
    store: &Store,
    node: &Node,
    to: NodeState,
    actor: &str,
    reason: &str,
    edit: impl FnOnce(&mut Work),
) -> Result<NodeEvent, StoreError> {
    let stored = store.node_work(node.id).await?;
    let mut work = Work::parse(node, stored.work.as_deref());
    work.leave_state_for(node.state, to);
    work.failure = None;
    work.attempts.clear();
    edit(&mut work);
    store
        .transition_with_work(
            node.id,
            node.state,
            to,
            actor,
            reason,
            Some(&work.to_json()),
            None,
        )
        .await
}

/// `kiln node reimage SERIAL [--image NAME:VERSION]`: back through imaging and every check after it (booting,
/// burn-in, fabric test) to available. `image` is written instead of the engine's image, for this node until it
/// is next available; it must be in the catalog.
pub async fn reimage(
    store: &Store,
    serial: &str,
    image: Option<(String, String)>,
    actor: &str,
    note: &str,
) -> Result<NodeEvent, StoreError> {
    let node = store.node_by_serial(serial).await?;
    if !BY_HAND_FROM.contains(&node.state) {
        return Err(refuse(&node, "reimage"));
    }
    let what = match &image {
        Some((name, version)) => {
            if store.image(name, version).await?.is_none() {
                return Err(StoreError::Invalid(format!(
                    "image {name}:{version} is not in the catalog (see `kiln image list`)"
                )));
            }
            format!("reimage with {name}:{version} requested")
        }
        None => "reimage requested".to_string(),
    };
    let reason = reason(&what, note);
    move_by_hand(store, &node, NodeState::Imaging, actor, &reason, |work| {
        work.image = image;
    })
    .await
}

/// Where `kiln node retest` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetestFrom {
    /// Burn-in, then the fabric test (as in bring-up).
    BurnIn,
    /// The fabric test (NCCL) only.
    Fabric,
}

impl RetestFrom {
    /// From the verb's flags: `--nccl` alone retests the fabric only; anything else starts at burn-in.
    pub fn from_flags(burn_in: bool, nccl: bool) -> Self {
        if nccl && !burn_in {
            RetestFrom::Fabric
        } else {
            RetestFrom::BurnIn
        }
    }

    fn state(self) -> NodeState {
        match self {
            RetestFrom::BurnIn => NodeState::BurnIn,
            RetestFrom::Fabric => NodeState::FabricTest,
        }
    }
}

/// `kiln node retest SERIAL [--burn-in] [--nccl]`: runs the node's health checks again on its installed OS
/// (no reimage); a node that passes is available again, one that fails is remediated as in bring-up.
pub async fn retest(
    store: &Store,
    serial: &str,
    from: RetestFrom,
    actor: &str,
    note: &str,
) -> Result<NodeEvent, StoreError> {
    let node = store.node_by_serial(serial).await?;
    if !BY_HAND_FROM.contains(&node.state) {
        return Err(refuse(&node, "retest"));
    }
    let what = match from {
        RetestFrom::BurnIn => "retest (burn-in, then the fabric test) requested",
        RetestFrom::Fabric => "retest (the fabric test) requested",
    };
    move_by_hand(
        store,
        &node,
        from.state(),
        actor,
        &reason(what, note),
        |_| {},
    )
    .await
}

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
