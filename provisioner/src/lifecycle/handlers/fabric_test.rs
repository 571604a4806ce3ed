//! fabric_test → available: once every node of a rack that can still reach this state has, the rack's lowest
//! node leads one multi-node NCCL run over the group; a failing group is bisected and only the nodes found bad
//! go to remediation, the others proceed. Each passing node's bus bandwidth joins its hall's fleet baseline,
//! and a node far below its hall's median is flagged or, where the SKU gates on it, failed ([`super::fleet`]).

use std::collections::HashMap;

use kiln_health::nccl::{NcclRun, NcclRunError, NcclRunner, bisect, judge_run};
use kiln_inventory::fleet::METRIC_NCCL_BUSBW;
use kiln_inventory::{NewHealthRun, Node, NodeFilter, NodeState, StoreError};

use super::burn_in::pinned_host;
use super::fleet;
use crate::lifecycle::access::{NodeAccess, NodeHost};
use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::outcome::{Failure, FailureClass, Outcome};
use crate::lifecycle::work::{FailedStep, Work};

/// States from which a rack peer may still arrive in fabric_test: the group waits for them.
pub(super) fn still_coming(state: NodeState) -> bool {
    matches!(
        state,
        NodeState::Enrolled
            | NodeState::Discovering
            | NodeState::Inspecting
            | NodeState::Imaging
            | NodeState::Booting
            | NodeState::BurnIn
            | NodeState::Remediating
    )
}

/// Runs the rack's NCCL test when this node leads a complete group; otherwise waits.
pub async fn handle(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Outcome, StoreError> {
    let rack = ctx
        .store
        .list_nodes(&NodeFilter {
            hall: Some(node.hall.clone()),
            rack: Some(node.rack.clone()),
            ..NodeFilter::default()
        })
        .await?;
    // The node completing the group wakes its leader, and the leader moves every member when the run is
    // judged: the waits below are fallbacks (a peer that leaves for quarantine wakes no one). They are long
    // because thousands of nodes can wait here while their racks are imaged; polling them would cost more
    // than the bring-up itself.
    let fallback = ctx.config.boot_timeout;
    let coming = rack.iter().filter(|n| still_coming(n.state)).count();
    if coming > 0 {
        return Ok(Outcome::wait(
            format!(
                "waiting for {coming} node(s) of rack {} to reach fabric_test",
                node.rack
            ),
            fallback,
        ));
    }
    if let Some(reason) = fleet::baseline_pending(ctx, node).await? {
        return Ok(Outcome::wait(reason, ctx.config.recheck));
    }
    let members: Vec<&Node> = rack
        .iter()
        .filter(|n| n.state == NodeState::FabricTest)
        .collect();
    match members.first() {
        Some(leader) if leader.id == node.id => {}
        Some(leader) => {
            ctx.store.wake_node(leader.id).await?;
            return Ok(Outcome::wait(
                "the rack's first node leads the NCCL test",
                fallback,
            ));
        }
        None => return Ok(Outcome::wait("no rack member in fabric_test", fallback)),
    }
    let mut hosts = Vec::new();
    let mut works = HashMap::new();
    for member in &members {
        let member_work = if member.id == node.id {
            work.clone()
        } else {
            Work::parse(
                member,
                ctx.store.node_work(member.id).await?.work.as_deref(),
            )
        };
        match pinned_host(member, &member_work) {
            Some(host) => hosts.push(host),
            None => {
                tracing::warn!(node = %member.serial, "fabric_test member without a pinned host; left out")
            }
        }
        works.insert(member.id, member_work);
    }
    let profile = match ctx.skus.get(&node.sku) {
        Ok(profile) => profile.clone(),
        Err(err) => {
            return Ok(Outcome::fail(
                FailureClass::Fabric,
                format!("no SKU profile: {err}"),
            ));
        }
    };
    let runner = AccessRunner {
        access: ctx.access.as_ref(),
        hosts: hosts
            .iter()
            .map(|h| (h.serial.clone(), h.clone()))
            .collect(),
    };
    let serials: Vec<String> = hosts.iter().map(|h| h.serial.clone()).collect();
    let started = ctx.store.now();
    let first = match runner.run(&serials).await {
        Ok(run) => run,
        Err(err) => {
            return Ok(Outcome::wait(
                format!("NCCL run could not start: {err}"),
                ctx.config.recheck,
            ));
        }
    };
    let verdict = judge_run(&first, &profile);
    let mut bad: Vec<String> = Vec::new();
    let mut evidence = serde_json::json!({ "group": serials, "verdict": verdict });
    if !verdict.passed() {
        match bisect(&runner, &serials, &profile).await {
            Ok(outcome) => {
                bad = outcome.bad_hosts.clone();
                for group in &outcome.unresolved {
                    bad.extend(group.iter().cloned());
                }
                evidence["bisection"] = serde_json::json!({
                    "bad_hosts": outcome.bad_hosts,
                    "unresolved": outcome.unresolved,
                    "steps": outcome.steps.iter().map(|s| serde_json::json!({
                        "hosts": s.hosts, "passed": s.passed, "busbw_gbps": s.busbw_gbps, "failures": s.failures,
                    })).collect::<Vec<_>>(),
                });
                if bad.is_empty() {
                    // The whole group failed but no part of it does on its own: fail them all.
                    bad = serials.clone();
                }
            }
            Err(err) => {
                return Ok(Outcome::wait(
                    format!("NCCL bisection could not run: {err}"),
                    ctx.config.recheck,
                ));
            }
        }
    }
    let mut own = None;
    let busbw = fleet::nccl_busbw(&verdict);
    for member in &members {
        let failed = bad.contains(&member.serial);
        if let (false, Some(busbw)) = (failed, busbw) {
            fleet::record(ctx, member.id, METRIC_NCCL_BUSBW, busbw).await?;
        }
        ctx.store
            .record_health_run(&NewHealthRun {
                node: member.id,
                kind: "nccl",
                passed: !failed,
                started_at: started,
                finished_at: Some(ctx.store.now()),
                evidence: &evidence,
            })
            .await?;
        let outcome = if failed {
            let reason = format!(
                "rack {} NCCL test ({} nodes) failed and bisection points at this node",
                node.rack,
                serials.len()
            );
            Outcome::Fail(
                Failure::new(FailureClass::Fabric, reason).with_evidence(evidence.clone()),
            )
        } else if let Some(outlier) = fleet::judge(ctx, member, &profile).await? {
            Outcome::Fail(outlier)
        } else {
            Outcome::to(
                NodeState::Available,
                format!(
                    "rack {} NCCL test passed ({} nodes)",
                    node.rack,
                    serials.len()
                ),
            )
        };
        if member.id == node.id {
            own = Some(outcome);
            continue;
        }
        let mut member_work = works.remove(&member.id).unwrap_or_default();
        let (to, reason) = match outcome {
            Outcome::Fail(failure) => {
                let reason = format!("{}: {}", failure.class.label(), failure.reason);
                member_work.leave_state();
                member_work.failure = Some(FailedStep {
                    state: NodeState::FabricTest,
                    failure,
                });
                (NodeState::Remediating, reason)
            }
            Outcome::Transition { to, reason } => {
                member_work.leave_state();
                member_work.attempts.clear();
                member_work.failure = None;
                (to, reason)
            }
            Outcome::Wait { .. } => continue,
        };
        if let Err(err) = ctx
            .store
            .transition_with_work(
                member.id,
                NodeState::FabricTest,
                to,
                ctx.actor(),
                &reason,
                Some(&member_work.to_json()),
                None,
            )
            .await
        {
            tracing::warn!(node = %member.serial, error = %err, "could not move a rack peer after the NCCL test");
        }
    }
    Ok(own.unwrap_or_else(|| Outcome::wait("left out of the NCCL group", ctx.config.recheck)))
}

/// nccl-tests over [`NodeAccess`], for the judge and the bisection (host names are serials).
struct AccessRunner<'a> {
    access: &'a dyn NodeAccess,
    hosts: HashMap<String, NodeHost>,
}

impl NcclRunner for AccessRunner<'_> {
    async fn run(&self, hosts: &[String]) -> Result<NcclRun, NcclRunError> {
        let group: Vec<NodeHost> = hosts
            .iter()
            .map(|h| {
                self.hosts
                    .get(h)
                    .cloned()
                    .ok_or_else(|| NcclRunError::UnknownHost { host: h.clone() })
            })
            .collect::<Result<_, _>>()?;
        self.access
            .nccl(&group)
            .await
            .map_err(|err| NcclRunError::Remote {
                detail: err.to_string(),
            })
    }
}
