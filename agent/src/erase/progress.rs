//! Wipe progress to the provisioner: `wipe_progress` reports while the disks are erased. A method's start, its
//! verification and its failure go out at once; the overwrite and sanitize figures, and a heartbeat with each
//! disk's latest step, once per interval. An erase takes minutes to hours, and the provisioner takes a wipe
//! agent that stays silent for longer than its boot timeout as stalled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_model::EraseMethod;
use tokio::sync::mpsc::UnboundedReceiver;

use super::EraseStep;
use crate::report::{AgentStep, ReportClient};

/// How often the latest figures (and a heartbeat) are reported.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// A disk's state as the reports say it.
#[derive(Debug, Clone, Default)]
struct DiskProgress {
    method: Option<EraseMethod>,
    step: Option<EraseStep>,
}

/// The `wipe_progress` report of one disk's step (`method`: the method running, when the step does not say).
pub fn progress_step(device: &Path, method: Option<EraseMethod>, step: &EraseStep) -> AgentStep {
    let (stage, method, percent, detail) = match step {
        EraseStep::Trying(m) => ("trying", Some(*m), None, None),
        EraseStep::Written { bytes, total } => (
            "overwriting",
            Some(EraseMethod::Overwrite),
            Some(percent(*bytes, *total)),
            None,
        ),
        EraseStep::Running(fraction) => (
            "running",
            method,
            fraction.map(|f| (f.clamp(0.0, 1.0) * 100.0).round() as u8),
            None,
        ),
        EraseStep::Verifying(m) => ("verifying", Some(*m), None, None),
        EraseStep::MethodFailed(m, why) => ("method_failed", Some(*m), None, Some(why.clone())),
    };
    AgentStep::WipeProgress {
        device: device.display().to_string(),
        method,
        stage: stage.to_string(),
        percent,
        detail,
    }
}

fn percent(done: u64, total: u64) -> u8 {
    if total == 0 {
        return 100;
    }
    ((done.min(total) as u128 * 100) / total as u128) as u8
}

/// Whether a step goes out at once (a method starts, is verified or fails) rather than at the next interval.
fn urgent(step: &EraseStep) -> bool {
    matches!(
        step,
        EraseStep::Trying(_) | EraseStep::Verifying(_) | EraseStep::MethodFailed(..)
    )
}

/// Reports the steps `steps` carries until its senders are gone (the erase ended). Best effort: a report that
/// cannot be delivered is logged, and the erase goes on.
pub async fn report_progress(
    reports: ReportClient,
    mut steps: UnboundedReceiver<(PathBuf, EraseStep)>,
    every: Duration,
) {
    let mut disks: BTreeMap<PathBuf, DiskProgress> = BTreeMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let due: Vec<AgentStep> = tokio::select! {
            got = steps.recv() => {
                let Some((path, step)) = got else { break };
                let disk = disks.entry(path.clone()).or_default();
                if let EraseStep::Trying(method) = step {
                    disk.method = Some(method);
                }
                let now = urgent(&step).then(|| progress_step(&path, disk.method, &step));
                disk.step = Some(step);
                now.into_iter().collect()
            }
            _ = tick.tick() => disks
                .iter()
                .filter_map(|(path, disk)| disk.step.as_ref().map(|step| progress_step(path, disk.method, step)))
                .collect(),
        };
        for step in due {
            if let Err(err) = reports.send(step).await {
                tracing::warn!(error = %err, "could not report wipe progress");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_become_reports_with_their_stage_method_and_percent() {
        let dev = Path::new("/dev/nvme0n1");
        let written = progress_step(
            dev,
            None,
            &EraseStep::Written {
                bytes: 1 << 29,
                total: 1 << 30,
            },
        );
        assert_eq!(
            written,
            AgentStep::WipeProgress {
                device: "/dev/nvme0n1".into(),
                method: Some(EraseMethod::Overwrite),
                stage: "overwriting".into(),
                percent: Some(50),
                detail: None,
            }
        );
        let running = progress_step(
            dev,
            Some(EraseMethod::NvmeSanitizeBlock),
            &EraseStep::Running(Some(0.254)),
        );
        assert!(matches!(
            running,
            AgentStep::WipeProgress { method: Some(EraseMethod::NvmeSanitizeBlock), percent: Some(25), ref stage, .. } if stage == "running"
        ));
        let failed = progress_step(
            dev,
            None,
            &EraseStep::MethodFailed(EraseMethod::NvmeFormatCrypto, "I/O error".into()),
        );
        assert!(matches!(
            failed,
            AgentStep::WipeProgress { detail: Some(ref d), .. } if d == "I/O error"
        ));
        assert_eq!(percent(5, 0), 100);
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
        assert!(urgent(&EraseStep::Trying(EraseMethod::Overwrite)));
        assert!(!urgent(&EraseStep::Running(None)));
    }
}
