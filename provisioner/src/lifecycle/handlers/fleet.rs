//! Fleet baselines in the lifecycle: a node's stress throughput (at burn-in) and NCCL bus bandwidth (at the
//! fabric test) are kept per node, and the hall's distribution of each per SKU ([`kiln_inventory::fleet`]). At
//! the end of the fabric test a node further below its hall's median than the SKU's `gates.fleet_outlier_ratio`
//! is flagged in its history, or failed as [`FailureClass::FleetOutlier`] when the SKU sets `gates.fleet_gate`.
//! A baseline of fewer than [`MIN_BASELINE_NODES`] nodes judges no one, so the fabric
//! test waits ([`baseline_pending`]) while the hall's stress baseline for the SKU is that small and nodes of the
//! SKU are still on their way to it: the first nodes of a hall are judged like the others, not waved through.

use kiln_health::SkuProfile;
use kiln_health::stress::{detect, detect_output, parse};
use kiln_health::verdict::Verdict;
use kiln_inventory::fleet::{METRIC_STRESS_THROUGHPUT, MIN_BASELINE_NODES};
use kiln_inventory::{Node, NodeFilter, NodeId, StoreError};

use super::fabric_test::still_coming;
use serde_json::Value;

use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::outcome::{Failure, FailureClass};

/// Records `node`'s figure of `metric`; a figure the inventory refuses (not finite) is logged and dropped, it
/// must not fail the node's step.
pub async fn record(ctx: &Ctx, node: NodeId, metric: &str, value: f64) -> Result<(), StoreError> {
    match ctx.store.record_node_metric(node, metric, value).await {
        Ok(_) => Ok(()),
        Err(StoreError::Invalid(why)) => {
            tracing::warn!(node = node.0, metric, %why, "fleet figure not kept");
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// The mean per-GPU throughput of a burn-in evidence document's stress tool output, in the tool's unit; `None`
/// when the tool or its figures cannot be read (the burn-in judge fails that on its own).
pub fn stress_throughput(document: &Value) -> Option<f64> {
    let stress = document.get("stress")?;
    let argv: Vec<String> = stress
        .get("argv")?
        .as_array()?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let stdout = stress.get("stdout_tail")?.as_str()?;
    let tool = detect(&argv).or_else(|| detect_output(stdout))?;
    let report = parse(tool, stdout).ok()?;
    let values: Vec<f64> = report.per_gpu.iter().filter_map(|g| g.value).collect();
    if !values.is_empty() {
        return Some(values.iter().sum::<f64>() / values.len() as f64);
    }
    let gpus = report.per_gpu.len().max(1);
    report.node_total.map(|total| total / gpus as f64)
}

/// The large-message bus bandwidth an NCCL verdict measured (its `nccl.busbw` check), GB/s.
pub fn nccl_busbw(verdict: &Verdict) -> Option<f64> {
    verdict
        .checks
        .iter()
        .find(|c| c.name == "nccl.busbw")
        .and_then(|c| c.measured.as_f64())
}

/// Why `node` should wait before its fabric test: its hall's stress-throughput baseline for its SKU has fewer
/// than [`MIN_BASELINE_NODES`] nodes while other nodes of the SKU can still reach it. `None`: go ahead (the
/// baseline is established, or no more nodes are coming and the node is judged against what there is).
pub async fn baseline_pending(ctx: &Ctx, node: &Node) -> Result<Option<String>, StoreError> {
    let hall = ctx.store.hall_by_name(&node.hall).await?;
    let measured = ctx
        .store
        .fleet_baselines(hall.id)
        .await?
        .into_iter()
        .find(|b| b.sku == node.sku && b.metric == METRIC_STRESS_THROUGHPUT)
        .map_or(0, |b| b.distribution.nodes);
    if measured as i64 >= MIN_BASELINE_NODES {
        return Ok(None);
    }
    let coming = ctx
        .store
        .list_nodes(&NodeFilter {
            hall: Some(node.hall.clone()),
            sku: Some(node.sku.clone()),
            ..NodeFilter::default()
        })
        .await?
        .iter()
        .filter(|n| n.id != node.id && still_coming(n.state))
        .count();
    Ok((coming > 0).then(|| {
        format!(
            "waiting for the hall's fleet baseline: {measured} of {MIN_BASELINE_NODES} {} nodes measured, \
             {coming} still on their way",
            node.sku
        )
    }))
}

/// Judges `node` against its hall's baselines: `Some(failure)` when it is an outlier and the SKU gates on it;
/// an outlier that is not gated is noted in the node's history (text containing `below the hall median`).
pub async fn judge(
    ctx: &Ctx,
    node: &Node,
    profile: &SkuProfile,
) -> Result<Option<Failure>, StoreError> {
    let ratio = profile.gates.fleet_outlier_ratio;
    let mut findings = Vec::new();
    for (baseline, value) in ctx.store.node_fleet_standing(node.id).await? {
        let shortfall = baseline.shortfall(value);
        if baseline.established() && shortfall > ratio {
            findings.push(format!(
                "{} {value:.1} is {:.1}% below the hall median {:.1} ({} nodes of {}; the SKU allows {:.1}%)",
                baseline.metric,
                shortfall * 100.0,
                baseline.distribution.p50,
                baseline.distribution.nodes,
                baseline.sku,
                ratio * 100.0
            ));
        }
    }
    if findings.is_empty() {
        return Ok(None);
    }
    let text = findings.join("; ");
    if profile.gates.fleet_gate {
        return Ok(Some(Failure::new(FailureClass::FleetOutlier, text)));
    }
    ctx.store
        .record_event(
            node.id,
            ctx.actor(),
            &format!("fleet outlier (flagged; the SKU does not gate on it): {text}"),
        )
        .await?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stress_throughput_is_the_mean_per_gpu_figure_of_the_tools_output() {
        let out = "100.0%  proc'd: 12800 (61000 Gflop/s) - 12790 (57000 Gflop/s)   errors: 0 - 0   temps: 68 C - 69 C\n\
                   Tested 2 GPUs:\n\tGPU 0: OK\n\tGPU 1: OK\n";
        let doc = json!({ "stress": { "argv": ["gpu_burn", "-tc", "300"], "stdout_tail": out } });
        assert_eq!(stress_throughput(&doc), Some(59_000.0));
        assert_eq!(stress_throughput(&json!({ "stress": null })), None);
        let garbage = json!({ "stress": { "argv": ["gpu_burn"], "stdout_tail": "segfault" } });
        assert_eq!(stress_throughput(&garbage), None);
    }
}
