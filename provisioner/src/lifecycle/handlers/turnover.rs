//! Wiping's known state before the wipe boot: a cold power-off long enough for GPU and host memory to lose
//! their contents, a TPM clear where the BMC offers one, and the BIOS reset seam. Each step is recorded in the
//! work record and as a node event, so a recheck or a restarted engine goes on where it stopped; the power-off
//! is a wait, never a sleep inside the handler.

use std::time::Duration;

use kiln_bmc::{BmcError, PowerAction, PowerState};
use kiln_inventory::{Node, StoreError};

use super::common::{bmc_trouble, with_bmc};
use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::outcome::{FailureClass, Outcome};
use crate::lifecycle::work::Work;

/// `Some(outcome)` while a step is under way (a wait, a BMC error), `None` when every step is done and the wipe
/// boot may go ahead.
pub async fn known_state(
    ctx: &Ctx,
    node: &Node,
    work: &mut Work,
) -> Result<Option<Outcome>, StoreError> {
    if !work.turnover_steps(node).cold_off_done
        && let Some(outcome) = cold_off(ctx, node, work).await?
    {
        return Ok(Some(outcome));
    }
    if !work.turnover_steps(node).tpm_done
        && let Some(outcome) = clear_tpm(ctx, node, work).await?
    {
        return Ok(Some(outcome));
    }
    if !work.turnover_steps(node).bios_done {
        let text = match bios_reset(ctx, node).await {
            BiosReset::NotManaged => {
                "BIOS reset: not managed yet (settings and firmware are left as found)"
            }
        };
        ctx.store.record_event(node.id, ctx.actor(), text).await?;
        work.turnover_steps(node).bios_done = true;
    }
    Ok(None)
}

/// The cold power-off of the node's SKU profile (`cold_off_s`, under the engine's time compression).
fn cold_off_for(ctx: &Ctx, node: &Node) -> (u64, Duration) {
    let seconds = ctx
        .skus
        .get(&node.sku)
        .map_or(kiln_health::sku::DEFAULT_COLD_OFF_S, |p| p.cold_off_s);
    (seconds, ctx.config.cold_off(seconds))
}

async fn cold_off(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Option<Outcome>, StoreError> {
    let (seconds, hold) = cold_off_for(ctx, node);
    let now = ctx.store.now();
    let Some(off_at) = work.turnover_steps(node).powered_off_at else {
        let off = with_bmc(
            ctx,
            node,
            Box::new(|bmc| Box::pin(async move { bmc.set_power(PowerAction::ForceOff).await })),
        )
        .await;
        if let Err(err) = off {
            return Ok(Some(bmc_trouble(ctx, work, "cold power-off", &err)));
        }
        work.errors = 0;
        work.last_error = None;
        work.turnover_steps(node).powered_off_at = Some(now);
        return Ok(Some(Outcome::wait(
            format!("cold power-off: {seconds} s off"),
            hold,
        )));
    };
    let held = (now - off_at).to_std().unwrap_or_default();
    if held < hold {
        return Ok(Some(Outcome::wait(
            format!("cold power-off: {seconds} s off"),
            hold - held,
        )));
    }
    // Memory is cleared only if the server really stayed off: a server found on starts the wait again.
    let power = with_bmc(
        ctx,
        node,
        Box::new(|bmc| Box::pin(async move { bmc.power_state().await })),
    )
    .await;
    match power {
        Err(err) => Ok(Some(bmc_trouble(ctx, work, "cold power-off", &err))),
        Ok(PowerState::Off) => {
            ctx.store
                .record_event(
                    node.id,
                    ctx.actor(),
                    &format!("cold power-off {seconds} s: GPU and host memory cleared"),
                )
                .await?;
            work.turnover_steps(node).cold_off_done = true;
            Ok(None)
        }
        Ok(other) => {
            ctx.store
                .record_event(
                    node.id,
                    ctx.actor(),
                    &format!(
                        "cold power-off: the server was {other:?} at the end of the {seconds} s; powering off again"
                    ),
                )
                .await?;
            work.turnover_steps(node).powered_off_at = None;
            Ok(Some(Outcome::wait(
                "cold power-off: starting again",
                Duration::ZERO,
            )))
        }
    }
}

async fn clear_tpm(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Option<Outcome>, StoreError> {
    let cleared = with_bmc(
        ctx,
        node,
        Box::new(|bmc| Box::pin(async move { bmc.clear_tpm().await })),
    )
    .await;
    let text = match cleared {
        Ok(()) => "TPM cleared".to_string(),
        Err(BmcError::Unsupported { what, .. }) => {
            let vendor = node.bmc.vendor.as_deref().unwrap_or("vendor unknown");
            format!(
                "TPM clear: not offered by this BMC ({vendor}, {}: {what})",
                node.bmc.protocol.as_str()
            )
        }
        Err(err) if err.is_transient() => {
            return Ok(Some(bmc_trouble(ctx, work, "TPM clear", &err)));
        }
        Err(err) => {
            // Offered but refused: the node does not reach a known state; the wipe ladder decides.
            return Ok(Some(Outcome::fail(
                FailureClass::Wipe,
                format!("TPM clear failed: {}", kiln_bmc::fleet::error_chain(&err)),
            )));
        }
    };
    ctx.store.record_event(node.id, ctx.actor(), &text).await?;
    work.errors = 0;
    work.last_error = None;
    work.turnover_steps(node).tpm_done = true;
    Ok(None)
}

/// What the BIOS reset step did.
pub enum BiosReset {
    /// kiln does not manage BIOS settings or firmware yet: nothing was reset, and the event says so.
    NotManaged,
}

/// The seam for resetting BIOS settings to the site profile (and firmware back to its known-good versions)
/// between tenants. Issue 16 (firmware and BIOS over Redfish: `Bios.ResetBios`, the settings object, the
/// firmware inventory) fills it; until then it does nothing and says so, never a pretended success.
pub async fn bios_reset(_ctx: &Ctx, _node: &Node) -> BiosReset {
    BiosReset::NotManaged
}
