//! inspecting → imaging: the agent's hardware inspection, compared with the node's SKU by the provisioner (the
//! agent's own comparison is not trusted), stored as the node's hardware.

use kiln_agent::{AgentStep, SkuExpectation, compare, describe};
use kiln_inventory::{Node, NodeState, StoreError};

use super::common::await_boot;
use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::outcome::{Failure, FailureClass, Outcome};
use crate::lifecycle::work::{IntentKind, Work};

const WAITING_FOR: &str = "the hardware inspection";

/// Waits for the inspection that answers the last network boot (the one asked in discovering, or one asked
/// here after a repair or a remediation retry), then judges it.
pub async fn handle(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Outcome, StoreError> {
    let found = match work.last_pxe {
        Some(mark) => latest_inspection(ctx, node, mark.reports_after).await?,
        None => None,
    };
    let inspection = match found {
        Some(Ok(inspection)) => inspection,
        Some(Err(error)) => {
            return Ok(Outcome::fail(
                FailureClass::HardwareMismatch,
                format!("the agent could not inspect the hardware: {error}"),
            ));
        }
        None => {
            // A boot asked in this state entry is followed (and retried) by await_boot. Otherwise the
            // discovering boot may still be on its way; past its timeout (or with none), boot again here.
            let since = |mark: &crate::lifecycle::work::BootMark| {
                (ctx.store.now() - mark.at).to_std().unwrap_or_default()
            };
            let recent_pxe = work
                .last_pxe
                .filter(|mark| since(mark) < ctx.config.boot_timeout);
            if work.current_intent(node).is_none()
                && let Some(mark) = recent_pxe
                && mark.at <= node.state_entered_at
            {
                // The report wakes the node; the rest of the boot timeout is the fallback.
                return Ok(Outcome::wait(
                    format!("waiting for {WAITING_FOR}"),
                    ctx.config.boot_timeout - since(&mark),
                ));
            }
            return await_boot(ctx, node, work, IntentKind::PxeBoot, WAITING_FOR).await;
        }
    };
    let skus = ctx.store.list_skus().await?;
    let Some(sku) = skus.iter().find(|s| s.id == node.sku) else {
        return Ok(Outcome::fail(
            FailureClass::HardwareMismatch,
            format!("SKU {:?} is not in the catalog", node.sku),
        ));
    };
    let mismatches = compare(&inspection, &SkuExpectation::from(sku));
    ctx.store
        .replace_hardware(node.id, &inspection.to_hardware())
        .await?;
    if !mismatches.is_empty() {
        let lines = describe(&format!("{} slot {}", node.rack, node.slot), &mismatches);
        return Ok(Outcome::Fail(
            Failure::new(FailureClass::HardwareMismatch, lines.join("; "))
                .with_evidence(serde_json::json!({ "mismatches": lines })),
        ));
    }
    Ok(Outcome::to(
        NodeState::Imaging,
        format!("hardware matches SKU {}", sku.id),
    ))
}

/// The newest inspection (or inspection failure) reported after report id `after`.
async fn latest_inspection(
    ctx: &Ctx,
    node: &Node,
    after: i64,
) -> Result<Option<Result<kiln_agent::Inspection, String>>, StoreError> {
    let reports = super::common::steps_after(ctx, node, after).await?;
    Ok(reports.into_iter().rev().find_map(|step| match step {
        AgentStep::Inspected { inspection, .. } => Some(Ok(inspection)),
        AgentStep::Failed { error } => Some(Err(error)),
        _ => None,
    }))
}
