//! Steps several handlers share: BMC calls under the BMC gate, boots guarded by a write-ahead intent, reading
//! the agent's reports that answer an intent, and turning BMC errors into waits or failures.

use std::future::Future;
use std::pin::Pin;

use kiln_agent::{AgentReport, AgentStep};
use kiln_bmc::{Bmc, BmcError, BootDevice, BootOverride, PowerAction};
use kiln_inventory::{Node, StoreError};

use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::outcome::{FailureClass, Outcome};
use crate::lifecycle::work::{BootMark, Intent, IntentKind, Work};

/// Consecutive transient BMC errors tolerated in one state before the node fails with `bmc_unreachable`.
pub const BMC_ERRORS_TOLERATED: u32 = 8;

/// A boxed BMC operation.
pub type BmcOp<'a, T> = Box<
    dyn for<'b> FnOnce(
            &'b dyn Bmc,
        ) -> Pin<Box<dyn Future<Output = Result<T, BmcError>> + Send + 'b>>
        + Send
        + 'a,
>;

/// Runs `op` against the node's BMC under the BMC gate, with the node's kept client when there is one; the
/// client is kept for the node's next operation when `op` succeeded, closed otherwise.
pub async fn with_bmc<T: Send>(ctx: &Ctx, node: &Node, op: BmcOp<'_, T>) -> Result<T, BmcError> {
    let _permit = ctx.gates.bmc.acquire().await;
    let bmc = ctx.sessions.get(ctx.bmcs.as_ref(), node).await?;
    let result = op(bmc.as_ref()).await;
    ctx.sessions.put(node, bmc, result.is_ok());
    result
}

/// What a BMC error means for the node: a transient one waits (up to [`BMC_ERRORS_TOLERATED`] in a row), the
/// rest fail the node with the class remediation knows.
pub fn bmc_trouble(ctx: &Ctx, work: &mut Work, what: &str, err: &BmcError) -> Outcome {
    let text = format!("{what}: {}", kiln_bmc::fleet::error_chain(err));
    work.errors += 1;
    work.last_error = Some(text.clone());
    let class = match err {
        BmcError::Auth { .. } => FailureClass::BmcAuth,
        _ => FailureClass::BmcUnreachable,
    };
    if err.is_transient() && work.errors <= BMC_ERRORS_TOLERATED {
        return Outcome::wait(
            format!("BMC trouble (attempt {}): {text}", work.errors),
            ctx.config.bmc_retry,
        );
    }
    Outcome::fail(class, text)
}

/// Asks for a one-time boot from `device` and powers the server on (or cycles it), recording the intent before
/// the BMC calls and marking it done after (saved with the handler's outcome). The caller has taken a
/// power-on of the rack ([`crate::lifecycle::gates::Gates::try_power_on`]).
pub async fn request_boot(
    ctx: &Ctx,
    node: &Node,
    work: &mut Work,
    kind: IntentKind,
    note: Option<Note<'_>>,
) -> Result<Result<(), BmcError>, StoreError> {
    let previous = work.current_intent(node).map_or(0, |i| i.boots);
    let reports_after = ctx.store.last_agent_report_id(node.id).await?;
    let at = ctx.store.now();
    work.intent = Some(Intent {
        kind,
        state: node.state,
        state_entered_at: node.state_entered_at,
        at,
        reports_after,
        done: false,
        boots: previous + 1,
    });
    if kind == IntentKind::PxeBoot {
        work.last_pxe = Some(BootMark { at, reports_after });
    }
    match note {
        Some(note) => {
            let text = note(work);
            ctx.store
                .set_node_work_noting(node.id, node.state, &work.to_json(), ctx.actor(), &text)
                .await?
        }
        None => {
            ctx.store
                .set_node_work(node.id, node.state, &work.to_json())
                .await?
        }
    };
    if kind == IntentKind::PxeBoot {
        // Before the BMC calls: the boot's script fetch may come as soon as the server powers on. Only this
        // boot gets a token, claimed once, inside the window the engine waits for it.
        ctx.store
            .open_boot_grant(node.id, at, ctx.config.boot_timeout)
            .await?;
    }
    let device = match kind {
        IntentKind::PxeBoot => BootDevice::Pxe,
        IntentKind::DiskBoot => BootDevice::Disk,
    };
    let result = with_bmc(
        ctx,
        node,
        Box::new(move |bmc| {
            Box::pin(async move {
                bmc.set_boot(BootOverride {
                    device,
                    once: true,
                    mode: None,
                })
                .await?;
                bmc.set_power(PowerAction::Cycle).await
            })
        }),
    )
    .await;
    if result.is_err() {
        // The BMC refused or did not answer: no boot to wait for (the engine saves this with its wait).
        work.intent = None;
    }
    if result.is_ok() {
        if let Some(intent) = work.intent.as_mut() {
            intent.done = true;
        }
        work.errors = 0;
        work.last_error = None;
        // The BMC answered: earlier unreachable episodes were transient, not a dead BMC.
        work.attempts.remove(&FailureClass::BmcUnreachable);
        // The engine saves the record (intent done) with the handler's outcome; a crash before that leaves the
        // intent not done, which is waited out, never repeated at once.
        ctx.store
            .record_event(
                node.id,
                ctx.actor(),
                &format!(
                    "asked the BMC for a one-time {device} boot (boot {} in this state)",
                    previous + 1
                ),
            )
            .await?;
    }
    Ok(result)
}

/// The agent's reports that arrived after `intent` was made, oldest first; unreadable ones are skipped with a
/// warning.
pub async fn reports_since(
    ctx: &Ctx,
    node: &Node,
    intent: &Intent,
) -> Result<Vec<AgentStep>, StoreError> {
    steps_after(ctx, node, intent.reports_after).await
}

/// The agent's reports with an id above `after`, oldest first; unreadable ones are skipped with a warning.
pub async fn steps_after(ctx: &Ctx, node: &Node, after: i64) -> Result<Vec<AgentStep>, StoreError> {
    Ok(reports_after(ctx, node, after)
        .await?
        .into_iter()
        .map(|(_, step)| step)
        .collect())
}

/// [`steps_after`] with each step's stored report id.
pub async fn reports_after(
    ctx: &Ctx,
    node: &Node,
    after: i64,
) -> Result<Vec<(i64, AgentStep)>, StoreError> {
    let stored = ctx.store.agent_reports_after(node.id, after).await?;
    Ok(stored
        .into_iter()
        .filter_map(|r| match serde_json::from_str::<AgentReport>(&r.body) {
            Ok(report) => Some((r.id, report.step)),
            Err(err) => {
                tracing::warn!(node = %node.serial, report = r.id, error = %err, "unreadable stored agent report");
                None
            }
        })
        .collect())
}

/// What a boot request notes in the node's history together with its intent (written in one transaction,
/// before the BMC calls): it may update the record (count the request) and returns the note's text.
pub type Note<'a> = &'a (dyn Fn(&mut Work) -> String + Sync);

/// What to do when a boot was asked for and the node has not answered: wait, ask again once, or fail.
pub async fn await_boot(
    ctx: &Ctx,
    node: &Node,
    work: &mut Work,
    kind: IntentKind,
    waiting_for: &str,
) -> Result<Outcome, StoreError> {
    await_boot_noting(ctx, node, work, kind, waiting_for, None).await
}

/// [`await_boot`] whose first boot request in this state entry also notes `note` (see [`Note`]).
pub async fn await_boot_noting(
    ctx: &Ctx,
    node: &Node,
    work: &mut Work,
    kind: IntentKind,
    waiting_for: &str,
    note: Option<Note<'_>>,
) -> Result<Outcome, StoreError> {
    let Some(intent) = work.current_intent(node).cloned() else {
        return boot(ctx, node, work, kind, waiting_for, note).await;
    };
    // An intent not marked done means a crash around the BMC calls: they may or may not have happened. Waiting
    // out the boot timeout is safe; asking again at once could boot (and write an image) twice.
    let waited = (ctx.store.now() - intent.at).to_std().unwrap_or_default();
    if waited < ctx.config.boot_timeout {
        // The awaited report wakes the node: looking again before the timeout would find nothing new.
        return Ok(Outcome::wait(
            format!("waiting for {waiting_for}"),
            ctx.config.boot_timeout - waited,
        ));
    }
    if intent.boots < 2 {
        return boot(ctx, node, work, kind, waiting_for, None).await;
    }
    Ok(Outcome::fail(
        FailureClass::BootTimeout,
        format!(
            "did not get {waiting_for} within {:?} of the boot request, {} boots asked",
            ctx.config.boot_timeout, intent.boots
        ),
    ))
}

async fn boot(
    ctx: &Ctx,
    node: &Node,
    work: &mut Work,
    kind: IntentKind,
    waiting_for: &str,
    note: Option<Note<'_>>,
) -> Result<Outcome, StoreError> {
    if let Err(wait) = ctx.gates.try_power_on(&node.rack, node.id) {
        return Ok(Outcome::wait_turn(
            format!("rack {} is at its power-on rate", node.rack),
            wait,
        ));
    }
    Ok(match request_boot(ctx, node, work, kind, note).await? {
        // The node's report wakes it; the timeout is the fallback.
        Ok(()) => Outcome::wait(
            format!("booting; waiting for {waiting_for}"),
            ctx.config.boot_timeout,
        ),
        Err(err) => bmc_trouble(ctx, work, "asking for a boot", &err),
    })
}
