//! burn_in → fabric_test: the GPU burn-in on the installed OS (NVML sampled under a stress load, judged by
//! kiln-health on the node), within the burn-in limit; the verdict is stored as evidence.

use kiln_inventory::{NewHealthRun, Node, NodeState, StoreError};

use super::booting::access_trouble;
use crate::lifecycle::access::NodeHost;
use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::outcome::{Failure, FailureClass, Outcome};
use crate::lifecycle::work::Work;

/// Runs the burn-in and judges its verdict.
pub async fn handle(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Outcome, StoreError> {
    let Some(host) = pinned_host(node, work) else {
        return Ok(Outcome::fail(
            FailureClass::PostImageCheck,
            "no pinned SSH host key: the node must boot its image again",
        ));
    };
    let _permit = ctx.gates.burn_in.acquire().await;
    let started = ctx.store.now();
    let verdict = match ctx.access.burn_in(&host, ctx.config.burn_in).await {
        Ok(verdict) => verdict,
        Err(err) => return Ok(access_trouble(ctx, work, err)),
    };
    let evidence = serde_json::to_value(&verdict).unwrap_or_default();
    let passed = verdict.passed();
    ctx.store
        .record_health_run(&NewHealthRun {
            node: node.id,
            kind: "burn_in",
            passed,
            started_at: started,
            finished_at: Some(ctx.store.now()),
            evidence: &evidence,
        })
        .await?;
    if passed {
        return Ok(Outcome::to(
            NodeState::FabricTest,
            format!("burn-in passed ({} checks)", verdict.checks.len()),
        ));
    }
    let reasons: Vec<String> = verdict
        .failures()
        .map(|c| format!("{} {}: {}", c.subject, c.name, c.reason))
        .collect();
    Ok(Outcome::Fail(
        Failure::new(FailureClass::BurnIn, reasons.join("; ")).with_evidence(evidence),
    ))
}

/// The node as reached over SSH, from its work record's pinned key.
pub fn pinned_host(node: &Node, work: &Work) -> Option<NodeHost> {
    Some(NodeHost {
        serial: node.serial.clone(),
        address: work.ssh_address.clone()?,
        host_key: work.host_key.clone()?,
    })
}
