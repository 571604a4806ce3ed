//! wiping → imaging: after a lease ends the node is brought to a known state (cold power-off, TPM clear, the
//! BIOS reset seam: [`super::turnover`]), then the wipe ramdisk erases and verifies every disk and reports one
//! erase record per disk. The records are stored; the node is imaged and verified again (burn-in, fabric test)
//! before it is available. A failed erase fails with the records' summaries and goes down the wipe ladder.

use kiln_agent::AgentStep;
use kiln_inventory::{EraseRecord, Node, NodeState, StoreError};
use serde_json::json;

use super::common::{await_boot, reports_after};
use super::turnover::known_state;
use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::outcome::{Failure, FailureClass, Outcome};
use crate::lifecycle::work::{IntentKind, Work};

/// Takes the known-state steps, boots the wipe ramdisk and judges its report.
pub async fn handle(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Outcome, StoreError> {
    let Some(intent) = work.current_intent(node).cloned() else {
        // No wipe boot asked yet in this entry: the known state comes first.
        if let Some(outcome) = known_state(ctx, node, work).await? {
            return Ok(outcome);
        }
        return await_boot(
            ctx,
            node,
            work,
            IntentKind::PxeBoot,
            "the secure-erase report",
        )
        .await;
    };
    for (report_id, step) in reports_after(ctx, node, intent.reports_after)
        .await?
        .into_iter()
        .rev()
    {
        match step {
            AgentStep::Wiped { disks, records } => {
                return erased(ctx, node, work, report_id, &disks, records).await;
            }
            AgentStep::WipeFailed { records, error } => {
                return erase_failed(ctx, node, work, report_id, records, &error).await;
            }
            AgentStep::Failed { error } => {
                return Ok(Outcome::fail(FailureClass::Wipe, error));
            }
            _ => {}
        }
    }
    // The wipe agent reported after this boot: it is erasing, which takes minutes to hours, so the boot
    // timeout no longer applies. Its progress reports (a heartbeat at least once a minute) show it is alive;
    // silence longer than the boot timeout is a stalled wipe. The state's SLA bounds the whole erase.
    if let Some(last) = ctx
        .store
        .agent_reports_after(node.id, intent.reports_after)
        .await?
        .last()
    {
        let silent = (ctx.store.now() - last.at).to_std().unwrap_or_default();
        if silent < ctx.config.boot_timeout {
            return Ok(Outcome::wait(
                "secure erase under way",
                ctx.config.boot_timeout - silent,
            ));
        }
        return Ok(Outcome::fail(
            FailureClass::Wipe,
            format!(
                "the wipe agent went silent: no report for {}s (last: {} at {})",
                silent.as_secs(),
                last.step,
                last.at
            ),
        ));
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

/// A `Wiped` report: every record must say erased and verified, and there must be records (an erase kiln
/// cannot check is not an erase); then they are stored and the node goes to imaging.
async fn erased(
    ctx: &Ctx,
    node: &Node,
    work: &mut Work,
    report_id: i64,
    disks: &[String],
    records: Vec<EraseRecord>,
) -> Result<Outcome, StoreError> {
    if records.is_empty() {
        return Ok(Outcome::fail(
            FailureClass::Wipe,
            format!(
                "the agent reported {} erased without erase records: nothing verifies the erase",
                if disks.is_empty() {
                    "no disk".to_string()
                } else {
                    disks.join(", ")
                }
            ),
        ));
    }
    if records.iter().any(|r| !r.is_ok()) {
        let error = failed_summaries(&records);
        return erase_failed(ctx, node, work, report_id, records, &error).await;
    }
    let lease = ctx.store.last_released_lease(node.id).await?;
    ctx.store
        .record_erase(node.id, lease, Some(report_id), &records)
        .await?;
    // The host key belongs to the erased OS; the turnover's failed methods no longer apply.
    work.host_key = None;
    work.ssh_address = None;
    work.erase_failed.clear();
    work.erase_skip.clear();
    work.erase_causes.clear();
    let summary: Vec<String> = records.iter().map(EraseRecord::summary).collect();
    Ok(Outcome::to(
        NodeState::Imaging,
        format!("disks erased: {}", summary.join("; ")),
    ))
}

/// A failed erase: the records are stored (they are the evidence), the methods that failed are noted for the
/// ladder's "next method" step, and the node fails with the failed disks' summaries.
async fn erase_failed(
    ctx: &Ctx,
    node: &Node,
    work: &mut Work,
    report_id: i64,
    records: Vec<EraseRecord>,
    error: &str,
) -> Result<Outcome, StoreError> {
    let lease = ctx.store.last_released_lease(node.id).await?;
    ctx.store
        .record_erase(node.id, lease, Some(report_id), &records)
        .await?;
    work.note_erase_failures(&records);
    let summaries = failed_summaries(&records);
    let reason = if summaries.is_empty() {
        error.to_string()
    } else {
        summaries
    };
    let reason = if reason.trim().is_empty() {
        "the agent reported a failed erase without saying why".to_string()
    } else {
        reason
    };
    // A retry that skipped methods fails for its own reason; the causes of the earlier tries stay in it.
    let earlier: Vec<String> = work
        .erase_causes
        .iter()
        .filter(|cause| **cause != reason)
        .cloned()
        .collect();
    if !work.erase_causes.contains(&reason) {
        work.erase_causes.push(reason.clone());
    }
    let reason = if earlier.is_empty() {
        reason
    } else {
        format!(
            "{reason} (earlier in this turnover: {})",
            earlier.join("; ")
        )
    };
    Ok(Outcome::Fail(
        Failure::new(FailureClass::Wipe, reason).with_evidence(json!({ "records": records })),
    ))
}

fn failed_summaries(records: &[EraseRecord]) -> String {
    records
        .iter()
        .filter(|r| !r.is_ok())
        .map(EraseRecord::summary)
        .collect::<Vec<_>>()
        .join("; ")
}
