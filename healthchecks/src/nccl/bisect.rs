//! Finds the bad node(s) of a failing multi-node NCCL run by re-running on halves.
//!
//! A group that fails is split in two and each half is run on its own (judged against the floor for the half's
//! node count). A single node that fails is bad. A group whose halves both pass while the whole fails points at
//! the fabric between them (cables, switch), not a node: it is reported as unresolved.

use std::future::Future;
use std::pin::Pin;

use super::judge::judge_run;
use super::run::{NcclRunError, NcclRunner};
use crate::sku::SkuProfile;

/// One run made while bisecting.
#[derive(Debug, Clone, PartialEq)]
pub struct BisectStep {
    /// Hosts in this run.
    pub hosts: Vec<String>,
    /// Whether the run's verdict passed.
    pub passed: bool,
    /// The measured mean busbw at large sizes, when there was one.
    pub busbw_gbps: Option<f64>,
    /// Reasons of the failing checks.
    pub failures: Vec<String>,
}

/// What bisection found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BisectOutcome {
    /// Nodes that fail on their own.
    pub bad_hosts: Vec<String>,
    /// Groups that fail together although each half passes: suspect the links between them.
    pub unresolved: Vec<Vec<String>>,
    /// Every run made, in order: the evidence.
    pub steps: Vec<BisectStep>,
}

type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, NcclRunError>> + Send + 'a>>;

/// Bisects `hosts` with `runner`, judging every run against `profile`.
pub async fn bisect<R: NcclRunner>(
    runner: &R,
    hosts: &[String],
    profile: &SkuProfile,
) -> Result<BisectOutcome, NcclRunError> {
    let mut outcome = BisectOutcome::default();
    probe(runner, hosts.to_vec(), profile, &mut outcome).await?;
    Ok(outcome)
}

fn probe<'a, R: NcclRunner>(
    runner: &'a R,
    group: Vec<String>,
    profile: &'a SkuProfile,
    outcome: &'a mut BisectOutcome,
) -> StepFuture<'a> {
    Box::pin(async move {
        if group.is_empty() {
            return Ok(true);
        }
        let run = runner.run(&group).await?;
        let verdict = judge_run(&run, profile);
        let busbw_gbps = verdict
            .checks
            .iter()
            .find(|c| c.name == "nccl.busbw")
            .and_then(|c| c.measured.as_f64());
        let passed = verdict.passed();
        tracing::info!(hosts = ?group, passed, busbw_gbps, "bisection step");
        outcome.steps.push(BisectStep {
            hosts: group.clone(),
            passed,
            busbw_gbps,
            failures: verdict
                .failures()
                .map(|c| format!("{} {}: {}", c.subject, c.name, c.reason))
                .collect(),
        });
        if passed {
            return Ok(true);
        }
        if group.len() == 1 {
            outcome.bad_hosts.extend(group);
            return Ok(false);
        }
        let (left, right) = group.split_at(group.len() / 2);
        let left_ok = probe(runner, left.to_vec(), profile, outcome).await?;
        let right_ok = probe(runner, right.to_vec(), profile, outcome).await?;
        if left_ok && right_ok {
            outcome.unresolved.push(group);
        }
        Ok(false)
    })
}
