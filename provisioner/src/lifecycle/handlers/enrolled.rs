//! enrolled → discovering: the BMC answers, accepts the stored credentials, and its inventory is read.

use kiln_inventory::{Node, NodeState, StoreError};

use super::common::{bmc_trouble, with_bmc};
use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::outcome::Outcome;
use crate::lifecycle::work::Work;

/// Reads the BMC's inventory; records vendor and identity.
pub async fn handle(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Outcome, StoreError> {
    let read = with_bmc(
        ctx,
        node,
        Box::new(|bmc| Box::pin(async move { bmc.inventory().await })),
    )
    .await;
    let inventory = match read {
        Ok(inventory) => inventory,
        Err(err) => return Ok(bmc_trouble(ctx, work, "reading the BMC inventory", &err)),
    };
    // The BMC answered: earlier unreachable episodes were transient, not a dead BMC.
    work.attempts
        .remove(&crate::lifecycle::outcome::FailureClass::BmcUnreachable);
    if let Some(vendor) = inventory.manufacturer.as_deref() {
        ctx.store
            .update_bmc_identity(node.bmc.id, Some(vendor), None)
            .await?;
    }
    let mut reason = format!(
        "BMC reachable, credentials accepted: {} {}, BIOS {}",
        inventory
            .manufacturer
            .as_deref()
            .unwrap_or("unknown vendor"),
        inventory.model.as_deref().unwrap_or("unknown model"),
        inventory.bios_version.as_deref().unwrap_or("unknown"),
    );
    if let Some(serial) = inventory.serial.as_deref().filter(|s| *s != node.serial) {
        // Some BMCs report a board serial; noted, not fatal: the agent's inspection is the judge.
        reason.push_str(&format!(" (BMC reports serial {serial:?})"));
    }
    Ok(Outcome::to(NodeState::Discovering, reason))
}
