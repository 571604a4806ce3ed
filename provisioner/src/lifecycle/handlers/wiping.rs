//! wiping → imaging: after a lease ends, the wipe ramdisk securely erases the disks; then the node is imaged
//! and verified again before it is available.

use kiln_agent::AgentStep;
use kiln_inventory::{Node, NodeState, StoreError};

use super::common::{await_boot, reports_since};
use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::outcome::{FailureClass, Outcome};
use crate::lifecycle::work::{IntentKind, Work};

/// Boots the wipe ramdisk and waits for its report.
pub async fn handle(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Outcome, StoreError> {
    if let Some(intent) = work.current_intent(node).cloned() {
        for step in reports_since(ctx, node, &intent).await?.into_iter().rev() {
            match step {
                AgentStep::Wiped { disks, .. } => {
                    // The host key belongs to the erased OS.
                    work.host_key = None;
                    work.ssh_address = None;
                    return Ok(Outcome::to(
                        NodeState::Imaging,
                        format!("disks erased: {}", disks.join(", ")),
                    ));
                }
                AgentStep::Failed { error } => {
                    return Ok(Outcome::fail(FailureClass::Wipe, error));
                }
                _ => {}
            }
        }
    }
    await_boot(
        ctx,
        node,
        work,
        IntentKind::PxeBoot,
        "the secure-erase report",
    )
    .await
}
