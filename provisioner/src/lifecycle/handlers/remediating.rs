//! remediating → the failed step again, or quarantined: the policy's ladder for the failure's class, one
//! action per attempt, the attempts counted in the work record so nothing loops silently.

use kiln_bmc::PowerAction;
use kiln_inventory::{Node, NodeState, StoreError};

use super::common::with_bmc;
use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::outcome::Outcome;
use crate::lifecycle::policy::Action;
use crate::lifecycle::work::Work;

/// Takes the next action of the ladder.
pub async fn handle(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Outcome, StoreError> {
    let Some(failed) = work.failure.clone() else {
        // Moved here by hand (or a record was lost): look at the hardware again.
        return Ok(Outcome::to(
            NodeState::Inspecting,
            "remediating without a recorded failure: inspecting again",
        ));
    };
    let class = failed.failure.class;
    let attempt = work.attempts.get(&class).copied().unwrap_or(0);
    let action = ctx.config.policy.action(class, attempt);
    work.attempts.insert(class, attempt + 1);
    // The rest retry where they failed. A node that failed in wiping goes back to wiping whatever the action
    // (even a policy file's reimage or rerun): nothing skips the erase between tenants.
    let retry_state = failed.state;
    let after_wipe = |state: NodeState| {
        if failed.state == NodeState::Wiping {
            NodeState::Wiping
        } else {
            state
        }
    };
    let what = format!("{}: {}", class.label(), failed.failure.reason);
    let step = format!("remediation {} of {class}", attempt + 1);
    Ok(match action {
        Action::Retry => Outcome::to(
            retry_state,
            format!("{step}: retry {retry_state} after {what}"),
        ),
        Action::PowerCycle => {
            if let Err(wait) = ctx.gates.try_power_on(&node.rack, node.id) {
                return Ok(Outcome::wait_turn(
                    format!("{step}: rack {} is at its power-on rate", node.rack),
                    wait,
                ));
            }
            let cycled = with_bmc(
                ctx,
                node,
                Box::new(|bmc| Box::pin(async move { bmc.set_power(PowerAction::Cycle).await })),
            )
            .await;
            match cycled {
                Ok(()) => Outcome::to(
                    retry_state,
                    format!("{step}: power-cycled, retry {retry_state} after {what}"),
                ),
                Err(err) => Outcome::wait(
                    format!("{step}: power cycle failed ({err}); next action follows"),
                    ctx.config.bmc_retry,
                ),
            }
        }
        Action::Reimage => Outcome::to(
            after_wipe(NodeState::Imaging),
            format!("{step}: reimage after {what}"),
        ),
        Action::RerunHealth => Outcome::to(
            after_wipe(NodeState::BurnIn),
            format!("{step}: rerun health checks after {what}"),
        ),
        Action::NextMethod if !work.erase_failed.is_empty() => {
            work.erase_skip = work.erase_failed.clone();
            let skipped: Vec<&str> = work.erase_skip.iter().map(|m| m.as_str()).collect();
            Outcome::to(
                retry_state,
                format!(
                    "{step}: retry {retry_state} with the next erase method (skipping {}) after {what}",
                    skipped.join(", ")
                ),
            )
        }
        Action::NextMethod => Outcome::to(
            retry_state,
            format!("{step}: retry {retry_state} (no failed erase method to skip) after {what}"),
        ),
        Action::Quarantine => Outcome::to(
            NodeState::Quarantined,
            format!(
                "{what} (quarantined after {attempt} remediation attempt{})",
                if attempt == 1 { "" } else { "s" }
            ),
        ),
    })
}
