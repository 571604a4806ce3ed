//! burn_in → fabric_test: the GPU burn-in on the installed OS. The node collects raw evidence (NVML samples
//! under a stress load, the tool's output and exit status, the kernel log); kiln-health judges it here with
//! the node's SKU profile, never trusting a verdict from the node. The judgement, the evidence and its digest
//! are stored as the health run. The kernel log is read at the start and the end and its Xid/SXid events judged
//! with the burn-in; DCGM and nvbandwidth run after a passing burn-in where installed ([`super::gpu_tools`]).

use kiln_health::burnin::{evidence_digest, judge_burn_in_document};
use kiln_health::verdict::now_unix_s;
use kiln_health::{Check, CheckStatus, Verdict};
use kiln_inventory::fleet::METRIC_STRESS_THROUGHPUT;
use kiln_inventory::{NewHealthRun, Node, NodeState, StoreError};
use serde_json::json;

use super::booting::access_trouble;
use super::fleet;
use super::gpu_tools::{NodeTool, kernel_checks, read_kernel_log, run_dcgm, run_nvbandwidth};
use crate::lifecycle::access::{AccessError, BurnInReply, NodeHost};
use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::outcome::{Failure, FailureClass, Outcome};
use crate::lifecycle::work::Work;

/// Runs the burn-in and judges its evidence.
pub async fn handle(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Outcome, StoreError> {
    let Some(host) = pinned_host(node, work) else {
        return Ok(Outcome::fail(
            FailureClass::PostImageCheck,
            "no pinned SSH host key: the node must boot its image again",
        ));
    };
    let profile = match ctx.skus.get(&node.sku) {
        Ok(profile) => profile.clone(),
        Err(err) => {
            return Ok(Outcome::fail(
                FailureClass::BurnIn,
                format!("no SKU profile to judge the burn-in against: {err}"),
            ));
        }
    };
    let _permit = ctx.gates.burn_in.acquire().await;
    let started = ctx.store.now();
    let asked = ctx.config.burn_in;
    let kernel_before = match read_kernel_log(ctx.access.as_ref(), &host).await {
        Ok(read) => read,
        Err(err) => return Ok(access_trouble(ctx, work, err)),
    };
    let called_at = now_unix_s();
    let stress = profile.gates.stress_tool.argv_template();
    let stress: Vec<String> = stress.iter().map(|a| a.to_string()).collect();
    let reply = match ctx
        .access
        .burn_in_evidence(&host, asked, &profile.id, &stress)
        .await
    {
        Ok(reply) => reply,
        // The node ran the command but gave no evidence (non-zero exit, timeout, no JSON): a failed burn-in,
        // recorded as such.
        Err(err @ AccessError::BadOutput { .. }) => {
            let reason = format!("no burn-in evidence: {err}");
            ctx.store
                .record_health_run(&NewHealthRun {
                    node: node.id,
                    kind: "burn_in",
                    passed: false,
                    started_at: started,
                    finished_at: Some(ctx.store.now()),
                    evidence: &json!({ "error": reason }),
                })
                .await?;
            return Ok(Outcome::fail(FailureClass::BurnIn, reason));
        }
        Err(err) => return Ok(access_trouble(ctx, work, err)),
    };
    let finished_at = now_unix_s();
    let kernel_after = match read_kernel_log(ctx.access.as_ref(), &host).await {
        Ok(read) => read,
        Err(err) => return Ok(access_trouble(ctx, work, err)),
    };
    let verdict = with_checks(
        judge(&reply, &profile, asked, (called_at, finished_at)),
        kernel_checks(&kernel_before, &kernel_after),
    );
    let digest = evidence_digest(&reply.document);
    let passed = verdict.passed();
    let run_evidence = json!({
        "verdict": verdict,
        "evidence_sha256": digest,
        "evidence": reply.document,
        "exit_code": reply.exit_code,
        "wall_s": reply.wall.as_secs_f64(),
    });
    ctx.store
        .record_health_run(&NewHealthRun {
            node: node.id,
            kind: "burn_in",
            passed,
            started_at: started,
            finished_at: Some(ctx.store.now()),
            evidence: &run_evidence,
        })
        .await?;
    if passed {
        if let Some(throughput) = fleet::stress_throughput(&reply.document) {
            fleet::record(ctx, node.id, METRIC_STRESS_THROUGHPUT, throughput).await?;
        }
        if let Some(failed) = node_tools(ctx, node, work, &host, &profile).await? {
            return Ok(failed);
        }
        return Ok(Outcome::to(
            NodeState::FabricTest,
            format!(
                "burn-in passed ({} checks judged by kiln on evidence sha256:{})",
                verdict.checks.len(),
                short(&digest)
            ),
        ));
    }
    let reasons: Vec<String> = verdict
        .failures()
        .map(|c| format!("{} {}: {}", c.subject, c.name, c.reason))
        .collect();
    // The work record keeps the judgement and the digest; the document itself is in the health run.
    let failure_evidence = json!({ "verdict": verdict, "evidence_sha256": digest });
    Ok(Outcome::Fail(
        Failure::new(FailureClass::BurnIn, reasons.join("; ")).with_evidence(failure_evidence),
    ))
}

/// How far a node's clock may be from the provisioner's when it says when its burn-in started.
pub const CLOCK_SKEW_S: u64 = 600;

/// The provisioner's judgement of a node's burn-in answer: kiln-health's judge of the document, plus the
/// command's exit status (a collection that failed is no evidence even when it printed a document) and the
/// document's freshness: it must say it started while this call ran (`called`, Unix seconds by the
/// provisioner's wall clock, within [`CLOCK_SKEW_S`]), so an old document replayed by a node fails.
pub fn judge(
    reply: &BurnInReply,
    profile: &kiln_health::SkuProfile,
    asked: std::time::Duration,
    called: (u64, u64),
) -> Verdict {
    let judged = judge_burn_in_document(&reply.document, profile, asked);
    let mut checks = judged.checks;
    if let Some(started) = reply.document["started_at_unix_s"].as_u64() {
        let window = (
            called.0.saturating_sub(CLOCK_SKEW_S),
            called.1.saturating_add(CLOCK_SKEW_S),
        );
        checks.push(Check::judged(
            (window.0..=window.1).contains(&started),
            "evidence.fresh",
            "node",
            started,
            Some(json!({ "from_unix_s": window.0, "to_unix_s": window.1 })),
            "the evidence must be collected during this burn-in (an older document is a replay)",
        ));
    }
    checks.push(Check::judged(
        reply.exit_code == Some(0),
        "agent.exit_status",
        "node",
        reply
            .exit_code
            .map_or(serde_json::Value::Null, |c| json!(c)),
        Some(json!(0)),
        "the evidence collector must exit 0",
    ));
    // Measured here, not taken from the document. Only noted: kiln-sim's nodes run compressed time, and the
    // engine does not know by how much.
    let wall_s = reply.wall.as_secs_f64();
    let min_wall_s = asked.as_secs_f64() * kiln_health::burnin::judge::MIN_DURATION_RATIO;
    checks.push(Check::new(
        "burnin.wall_clock",
        "node",
        if wall_s >= min_wall_s {
            CheckStatus::Pass
        } else {
            CheckStatus::Note
        },
        wall_s,
        Some(json!({ "min_s": min_wall_s })),
        "the burn-in command must take the time asked, as measured by the provisioner",
    ));
    Verdict::new(
        judged.kind,
        &judged.sku,
        judged.started_at_unix_s,
        checks,
        judged.evidence,
    )
}

/// `verdict` with `extra` checks added (failing first again).
fn with_checks(verdict: Verdict, extra: Vec<Check>) -> Verdict {
    let mut checks = verdict.checks;
    checks.extend(extra);
    Verdict::new(
        verdict.kind,
        &verdict.sku,
        verdict.started_at_unix_s,
        checks,
        verdict.evidence,
    )
}

/// DCGM and nvbandwidth after a passing burn-in, each stored as its own health run; the failing outcome of the
/// first that fails (or of a node that stopped answering), `None` when all passed or were not installed.
async fn node_tools(
    ctx: &Ctx,
    node: &Node,
    work: &mut Work,
    host: &NodeHost,
    profile: &kiln_health::SkuProfile,
) -> Result<Option<Outcome>, StoreError> {
    let access = ctx.access.as_ref();
    for tool in [NodeTool::Dcgm, NodeTool::Nvbandwidth] {
        let started = ctx.store.now();
        let run = match tool {
            NodeTool::Dcgm => run_dcgm(access, host, profile).await,
            NodeTool::Nvbandwidth => run_nvbandwidth(access, host, profile).await,
        };
        let verdict = match run {
            Ok(Some(verdict)) => verdict,
            Ok(None) => {
                ctx.store
                    .record_event(
                        node.id,
                        ctx.actor(),
                        &format!("{} is not installed on the node: not run", tool.name()),
                    )
                    .await?;
                continue;
            }
            Err(err) => return Ok(Some(access_trouble(ctx, work, err))),
        };
        let passed = verdict.passed();
        ctx.store
            .record_health_run(&NewHealthRun {
                node: node.id,
                kind: verdict.kind.as_str(),
                passed,
                started_at: started,
                finished_at: Some(ctx.store.now()),
                evidence: &json!(verdict),
            })
            .await?;
        if !passed {
            let reasons: Vec<String> = verdict
                .failures()
                .map(|c| format!("{} {}: {}", c.subject, c.name, c.reason))
                .collect();
            return Ok(Some(Outcome::Fail(
                Failure::new(
                    FailureClass::BurnIn,
                    format!("{}: {}", tool.name(), reasons.join("; ")),
                )
                .with_evidence(json!({ "verdict": verdict })),
            )));
        }
    }
    Ok(None)
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// The node as reached over SSH, from its work record's pinned key.
pub fn pinned_host(node: &Node, work: &Work) -> Option<NodeHost> {
    Some(NodeHost {
        serial: node.serial.clone(),
        address: work.ssh_address.clone()?,
        host_key: work.host_key.clone()?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kiln_health::burnin::synthetic::SyntheticRun;
    use kiln_health::{Check, RunKind, SkuCatalog, Verdict};

    use super::judge;
    use crate::lifecycle::access::BurnInReply;

    const ASKED: Duration = Duration::from_secs(300);

    fn failing(v: &Verdict) -> Vec<String> {
        v.failures().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn the_provisioner_judges_the_document_and_the_collectors_exit() {
        let catalog = SkuCatalog::builtin().expect("catalog");
        let p = catalog.get("h100-sxm-80gb").expect("sku");
        let reply = BurnInReply {
            document: SyntheticRun::healthy(p, 300).evidence(p).to_value(),
            exit_code: Some(0),
            wall: Duration::ZERO,
        };
        let now = kiln_health::verdict::now_unix_s();
        let called = (now, now + 1);
        let v = judge(&reply, p, ASKED, called);
        assert!(v.passed(), "{}", v.render_table());
        let wall = v
            .checks
            .iter()
            .find(|c| c.name == "burnin.wall_clock")
            .expect("wall clock");
        assert_eq!(
            wall.status,
            kiln_health::CheckStatus::Note,
            "returned at once"
        );
        let crashed = BurnInReply {
            exit_code: Some(2),
            ..reply.clone()
        };
        assert_eq!(
            failing(&judge(&crashed, p, ASKED, called)),
            vec!["agent.exit_status"]
        );
        let forged = Verdict::new(
            RunKind::BurnIn,
            &p.id,
            0,
            vec![Check::pass("burnin.sm_clock", "gpu0", 1980, None, "fine")],
            serde_json::json!({}),
        );
        let forged = BurnInReply {
            document: serde_json::to_value(&forged).expect("json"),
            ..reply.clone()
        };
        assert!(
            failing(&judge(&forged, p, ASKED, called)).contains(&"evidence.format".to_string())
        );
        // Yesterday's healthy document, replayed.
        let mut replayed = reply;
        replayed.document["started_at_unix_s"] = serde_json::json!(now - 86_400);
        assert_eq!(
            failing(&judge(&replayed, p, ASKED, called)),
            vec!["evidence.fresh"]
        );
    }
}
