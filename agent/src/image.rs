//! Imaging from the agent: report the start, write with kiln-images' verifying writer while reporting progress,
//! report the outcome.

use std::sync::Arc;

use kiln_images::{Progress, Target, WriteError, WriteReport, WriteRequest, write_image};
use tokio::sync::watch;

/// Progress is reported each time the download passes another multiple of this.
const PROGRESS_STEP_BYTES: u64 = 16 << 20;
/// How long the outcome report waits for a progress report still in flight.
const PROGRESS_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

use crate::report::{AgentStep, ReportClient, ReportError};

/// Why imaging failed.
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    /// The write failed (and was reported as such when the provisioner could be reached).
    #[error("image write failed")]
    Write(#[from] WriteError),
    /// The provisioner could not be told.
    #[error("could not report imaging to the provisioner")]
    Report(#[from] ReportError),
}

/// Writes `request`'s image to `target`, reporting `image_started`, `image_progress` while the write runs (best
/// effort: the newest figure the writer gave, at most one per 16 MiB downloaded; none for an image smaller than
/// that), and
/// then `image_written` or `image_failed` to the provisioner. A progress callback already in `request` is kept.
pub async fn write_and_report(
    http: &reqwest::Client,
    reports: &ReportClient,
    request: &WriteRequest,
    target: Target,
) -> Result<WriteReport, ImagingError> {
    write_and_report_with(http, reports, request, target, |_| {}).await
}

/// [`write_and_report`], calling `on_written` once the image is on disk and verified, before `image_written`
/// is sent: the provisioner may power-cycle the node as soon as it reads that report, so whatever must hold
/// when the node next boots (the simulator's disk state) is set here, not after this returns.
pub async fn write_and_report_with(
    http: &reqwest::Client,
    reports: &ReportClient,
    request: &WriteRequest,
    target: Target,
    on_written: impl FnOnce(&WriteReport),
) -> Result<WriteReport, ImagingError> {
    let sha256 = request.sha256.to_hex();
    reports
        .send(AgentStep::ImageStarted {
            sha256: sha256.clone(),
            url: request.url.clone(),
            target: target.path().display().to_string(),
        })
        .await?;
    // The writer calls back from its blocking thread; a watch channel hands the newest figure to a task that
    // reports it, so a slow provisioner never slows the write.
    let (progress_tx, mut progress_rx) = watch::channel(None::<Progress>);
    let mut request = request.clone();
    let earlier = request.progress.take();
    request.progress = Some(Arc::new(move |progress: Progress| {
        if let Some(earlier) = &earlier {
            earlier(progress);
        }
        progress_tx.send_replace(Some(progress));
    }));
    let mut progress_reporter = {
        let reports = reports.clone();
        let sha256 = sha256.clone();
        tokio::spawn(async move {
            let mut reported_steps = 0;
            while progress_rx.changed().await.is_ok() {
                let Some(progress) = *progress_rx.borrow_and_update() else {
                    continue;
                };
                // Only figures that passed another step boundary: the writer's closing figure for a small
                // image says nothing the outcome report does not.
                let steps = progress.downloaded_bytes / PROGRESS_STEP_BYTES;
                if steps <= reported_steps {
                    continue;
                }
                reported_steps = steps;
                let step = AgentStep::ImageProgress {
                    sha256: sha256.clone(),
                    downloaded_bytes: progress.downloaded_bytes,
                    total_bytes: progress.total_bytes,
                };
                if let Err(err) = reports.send(step).await {
                    tracing::warn!(error = %err, "could not report imaging progress");
                }
            }
        })
    };
    let outcome = write_image(http, &request, target).await;
    // The callback (and its sender) went with the request: the reporter ends after its last figure, unless
    // that figure is stuck in retries, which must not hold back the outcome.
    drop(request);
    if tokio::time::timeout(PROGRESS_DRAIN, &mut progress_reporter)
        .await
        .is_err()
    {
        progress_reporter.abort();
    }
    match outcome {
        Ok(written) => {
            on_written(&written);
            reports
                .send(AgentStep::ImageWritten {
                    sha256,
                    disk_bytes: written.disk_bytes,
                    downloaded_bytes: written.downloaded_bytes,
                    elapsed_ms: written.elapsed.as_millis() as u64,
                })
                .await?;
            Ok(written)
        }
        Err(err) => {
            let step = AgentStep::ImageFailed {
                sha256,
                error: crate::error_chain(&err),
            };
            if let Err(report_err) = reports.send(step).await {
                tracing::warn!(error = %report_err, "could not report the failed image write");
            }
            Err(err.into())
        }
    }
}
