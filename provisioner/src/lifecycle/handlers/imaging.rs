//! imaging → booting: network boot into the image ramdisk, whose agent streams the catalog image to disk and
//! reports the verified digest. Every write asked is an event with its reason (no silent second write).

use kiln_agent::AgentStep;
use kiln_inventory::{Node, NodeState, StoreError};

use super::common::{await_boot_noting, reports_since};
use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::gates::ImageSlot;
use crate::lifecycle::outcome::{FailureClass, Outcome};
use crate::lifecycle::work::{IntentKind, Work};

const WAITING_FOR: &str = "the image write report";

/// Asks for the write (within the image-write limit) and judges the agent's report.
pub async fn handle(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Outcome, StoreError> {
    // A technician's `kiln node reimage --image` choice, else the engine's image.
    let Some((name, version)) = work.image.clone().or_else(|| ctx.config.image.clone()) else {
        return Ok(Outcome::fail(
            FailureClass::ImageWrite,
            "no image is configured for the provisioner to write",
        ));
    };
    let Some(image) = ctx.store.image(&name, &version).await? else {
        return Ok(Outcome::fail(
            FailureClass::ImageWrite,
            format!("image {name} {version} is not in the catalog"),
        ));
    };
    // A write already asked for (by this instance or another one sharing the inventory) holds its slot
    // where it was asked: only a new write needs one.
    let slot = match work.current_intent(node) {
        Some(_) => ImageSlot::Granted,
        None => ctx.gates.start_image(node.id, &node.rack),
    };
    match slot {
        ImageSlot::Granted => {}
        // Queued: the engine wakes the next waiter when a write finishes; the long recheck is a fallback
        // (a hall's backlog can be thousands of nodes: polling them would cost more than the writes).
        ImageSlot::Queued => {
            audit_slots(ctx).await?;
            return Ok(Outcome::wait(
                "all image-write slots are busy",
                ctx.config.boot_timeout * 3,
            ));
        }
        ImageSlot::PowerWait { wait, wake } => {
            if let Some(next) = wake {
                // The free slot goes to a waiter whose rack may power on now.
                ctx.store.wake_node(next).await?;
            }
            return Ok(Outcome::wait_turn(
                format!("rack {} is at its power-on rate", node.rack),
                wait,
            ));
        }
    }
    if let Some(intent) = work.current_intent(node).cloned() {
        let reports = reports_since(ctx, node, &intent).await?;
        let mut under_way = false;
        for step in reports.iter().rev() {
            match step {
                AgentStep::ImageWritten { sha256, .. } if *sha256 == image.sha256 => {
                    // A new OS on the disk: its host key is pinned afresh by its first report.
                    work.image_written();
                    return Ok(Outcome::to(
                        NodeState::Booting,
                        format!(
                            "image {} {} written and verified (sha256 {})",
                            image.name, image.version, image.sha256
                        ),
                    ));
                }
                AgentStep::ImageWritten { sha256, .. } => {
                    return Ok(Outcome::fail(
                        FailureClass::ImageWrite,
                        format!(
                            "the agent wrote sha256 {sha256}, the catalog's {} {} is {}",
                            image.name, image.version, image.sha256
                        ),
                    ));
                }
                AgentStep::ImageFailed { error, .. } | AgentStep::Failed { error } => {
                    return Ok(Outcome::fail(FailureClass::ImageWrite, error.clone()));
                }
                AgentStep::ImageStarted { .. } | AgentStep::ImageProgress { .. } => {
                    under_way = true
                }
                _ => {}
            }
        }
        if under_way {
            // The end of the write (written or failed) wakes the node; progress ticks do not.
            return Ok(Outcome::wait(
                "image write under way",
                ctx.config.recheck * 10,
            ));
        }
    }
    // A new write is counted and noted in the history together with its intent (one transaction, before
    // the BMC calls), so the count and the notes always agree.
    let note = |work: &mut Work| {
        work.images_written += 1;
        let why = match &work.failure {
            Some(failed) => format!("after {}: {}", failed.failure.class, failed.failure.reason),
            None if work.images_written == 1 => "first write".to_string(),
            None => "after a lease (wipe) or a repair".to_string(),
        };
        format!(
            "image write {} requested ({why}): {} {} sha256 {}",
            work.images_written, image.name, image.version, image.sha256
        )
    };
    await_boot_noting(
        ctx,
        node,
        work,
        IntentKind::PxeBoot,
        WAITING_FOR,
        Some(&note),
    )
    .await
}

/// Every slot is taken: at most once a second, hands back the slots of nodes that left imaging under
/// another instance sharing the inventory (this one never saw them finish), and wakes their next waiters.
async fn audit_slots(ctx: &Ctx) -> Result<(), StoreError> {
    let held = ctx.gates.images_to_audit(std::time::Duration::from_secs(1));
    let mut moved = Vec::new();
    for id in held {
        if ctx.store.node(id).await?.state != NodeState::Imaging {
            moved.push(id);
        }
    }
    for next in ctx.gates.forget_images(&moved) {
        ctx.store.wake_node(next).await?;
    }
    Ok(())
}
