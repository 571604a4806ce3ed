//! discovering → inspecting: one-time PXE boot into the kiln ramdisk; done when the ramdisk's agent reports.

use kiln_agent::AgentStep;
use kiln_inventory::{Node, NodeState, StoreError};

use super::common::{await_boot, reports_since};
use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::outcome::Outcome;
use crate::lifecycle::work::{IntentKind, Work};

/// Boots the ramdisk and waits for its `booted` report.
pub async fn handle(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Outcome, StoreError> {
    if let Some(intent) = work.current_intent(node).filter(|i| i.done).cloned() {
        let reports = reports_since(ctx, node, &intent).await?;
        let booted = reports.iter().any(|step| {
            matches!(step, AgentStep::Booted { environment, .. } if environment == "ramdisk")
        }) || reports
            .iter()
            .any(|step| matches!(step, AgentStep::Inspected { .. }));
        if booted {
            return Ok(Outcome::to(
                NodeState::Inspecting,
                "the kiln ramdisk booted and its agent reported",
            ));
        }
    }
    await_boot(
        ctx,
        node,
        work,
        IntentKind::PxeBoot,
        "the ramdisk's boot report",
    )
    .await
}
