//! enrolled → discovering: the BMC answers, accepts the stored credentials, and its inventory is read, with
//! every firmware component it lists (kept per node; a changed version is an event).

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
    record_firmware(ctx, node).await?;
    if let Some(serial) = inventory.serial.as_deref().filter(|s| *s != node.serial) {
        // Some BMCs report a board serial; noted, not fatal: the agent's inspection is the judge.
        reason.push_str(&format!(" (BMC reports serial {serial:?})"));
    }
    Ok(Outcome::to(NodeState::Discovering, reason))
}

/// Reads the BMC's firmware inventory into the store. A BMC that cannot list its firmware is noted in the
/// node's history, not failed: the identity read above already proved the BMC usable.
async fn record_firmware(ctx: &Ctx, node: &Node) -> Result<(), StoreError> {
    let read = with_bmc(
        ctx,
        node,
        Box::new(|bmc| Box::pin(async move { bmc.firmware().await })),
    )
    .await;
    let actor = ctx.config.instance.as_str();
    match read {
        Ok(inventory) => {
            for warning in &inventory.warnings {
                tracing::warn!(node = %node.serial, "firmware inventory: {warning}");
            }
            ctx.store
                .record_node_firmware(node.id, &inventory.components, actor)
                .await?;
        }
        Err(err) => {
            ctx.store
                .record_event(
                    node.id,
                    actor,
                    &format!("firmware inventory not read: {err}"),
                )
                .await?;
        }
    }
    Ok(())
}
