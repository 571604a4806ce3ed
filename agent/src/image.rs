//! Imaging from the agent: report the start, write with kiln-images' verifying writer, report the outcome.

use kiln_images::{Target, WriteError, WriteReport, WriteRequest, write_image};

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

/// Writes `request`'s image to `target`, reporting `image_started` and then `image_written` or
/// `image_failed` to the provisioner.
pub async fn write_and_report(
    http: &reqwest::Client,
    reports: &ReportClient,
    request: &WriteRequest,
    target: Target,
) -> Result<WriteReport, ImagingError> {
    let sha256 = request.sha256.to_hex();
    reports
        .send(AgentStep::ImageStarted {
            sha256: sha256.clone(),
            url: request.url.clone(),
            target: target.path().display().to_string(),
        })
        .await?;
    match write_image(http, request, target).await {
        Ok(written) => {
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
            let mut text = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            if let Err(report_err) = reports
                .send(AgentStep::ImageFailed {
                    sha256,
                    error: text,
                })
                .await
            {
                tracing::warn!(error = %report_err, "could not report the failed image write");
            }
            Err(err.into())
        }
    }
}
