//! `kiln-agent run`: what the kiln ramdisk does, chosen by `kiln.mode`. Every mode first reports `booted`; then
//!
//! - `inspect` / `discovery`: inspect the hardware and report it (or the failure);
//! - `image`: stream `kiln.image` onto `kiln.disk` (or the first whole disk inspection finds) with kiln-images'
//!   verifying writer, reporting the start, progress and `image_written` / `image_failed`;
//! - `wipe`: erase every local disk with its method chain ([`crate::erase`], `kiln.erase_skip` honoured) and
//!   report `wiped` with one erase record per disk, or `wipe_failed` naming the disks that failed and why.
//!
//! After an image write or a wipe the ramdisk waits for the provisioner to power-cycle the node (see
//! `images/ramdisk/init`); this module only does the work and the reports.

use std::path::{Path, PathBuf};

use kiln_images::{Target, WriteRequest};

use kiln_model::EraseRecord;

use crate::cmdline::{CmdlineError, RamdiskArgs, RamdiskMode};
use crate::erase::EraseOptions;
use crate::erase::progress::{PROGRESS_EVERY, report_progress};
use crate::erase::wipe::{disks_to_wipe, erase_all, open_host_device, wipe_step};
use crate::image::{ImagingError, write_and_report};
use crate::inspect::{InspectSources, Inspection, inspect};
use crate::report::{AgentStep, ReportClient, ReportError};

/// Where the running system's facts come from (the real host, or fixture trees in tests).
#[derive(Debug, Clone)]
pub struct RunEnv {
    /// Hardware inspection sources.
    pub inspect: InspectSources,
    /// Where whole disks found by inspection appear as device files (`/dev`).
    pub dev_dir: PathBuf,
    /// The running kernel's release, for the `booted` report.
    pub kernel: Option<String>,
}

impl RunEnv {
    /// The running machine.
    pub fn this_host() -> Self {
        Self {
            inspect: InspectSources::this_host(),
            dev_dir: PathBuf::from("/dev"),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|k| k.trim().to_string()),
        }
    }
}

/// What a run did, for the binary's last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The hardware was inspected and reported.
    Inspected,
    /// Inspection failed; the failure was reported.
    InspectionFailed(String),
    /// The image was written to this disk, verified and reported.
    ImageWritten {
        /// The disk written.
        disk: PathBuf,
        /// Bytes of disk content.
        disk_bytes: u64,
    },
    /// Every local disk was erased and verified, and reported.
    Wiped {
        /// One record per disk.
        records: Vec<EraseRecord>,
    },
}

/// Why a run failed (after reporting the failure to the provisioner when it could).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A report could not be delivered.
    #[error("could not report to the provisioner")]
    Report(#[from] ReportError),
    /// Image mode without `kiln.image`.
    #[error(
        "image mode without kiln.image, kiln.sha256 and kiln.format on the kernel command line"
    )]
    NoImage,
    /// Image mode, no `kiln.disk`, and inspection found no whole disk to write.
    #[error("no kiln.disk on the kernel command line and inspection found no disk to write")]
    NoDisk,
    /// The disk could not be opened.
    #[error("cannot open the disk {disk}")]
    Disk {
        /// The disk.
        disk: PathBuf,
        /// Why.
        #[source]
        source: kiln_images::WriteError,
    },
    /// The image write failed (already reported as `image_failed`).
    #[error("imaging {disk} failed")]
    Imaging {
        /// The disk.
        disk: PathBuf,
        /// Why.
        #[source]
        source: ImagingError,
    },
    /// Wipe mode could not list the disks (reported as `wipe_failed`).
    #[error("cannot list the disks to erase")]
    WipeInspect(#[source] crate::InspectError),
    /// Wipe mode found no disk to erase (reported as `wipe_failed`).
    #[error("no disk to erase: {0}")]
    NoDiskToWipe(String),
    /// At least one disk was not erased and verified (reported as `wipe_failed` with the records).
    #[error("erase failed: {0}")]
    WipeFailed(String),
}

/// Runs `args.mode` on `env`, reporting each step through `reports`.
pub async fn run(
    args: &RamdiskArgs,
    env: &RunEnv,
    reports: &ReportClient,
    http: &reqwest::Client,
) -> Result<RunOutcome, RunError> {
    reports
        .send(AgentStep::Booted {
            kernel: env.kernel.clone(),
            environment: "ramdisk".into(),
            ssh_host_key: None,
            ssh_address: None,
        })
        .await?;
    match args.mode {
        RamdiskMode::Inspect | RamdiskMode::Discovery => {
            let (step, outcome) = match inspect(&env.inspect) {
                Ok(inspection) => (
                    AgentStep::Inspected {
                        inspection,
                        sku_mismatches: Vec::new(),
                    },
                    RunOutcome::Inspected,
                ),
                Err(err) => {
                    let error = crate::error_chain(&err);
                    (
                        AgentStep::Failed {
                            error: error.clone(),
                        },
                        RunOutcome::InspectionFailed(error),
                    )
                }
            };
            reports.send(step).await?;
            Ok(outcome)
        }
        RamdiskMode::Image => image(args, env, reports, http).await,
        RamdiskMode::Wipe => wipe(args, env, reports).await,
    }
}

/// Reports `err` as a failed step, then returns it.
async fn fail(reports: &ReportClient, err: RunError) -> Result<RunOutcome, RunError> {
    reports
        .send(AgentStep::Failed {
            error: crate::error_chain(&err),
        })
        .await?;
    Err(err)
}

async fn image(
    args: &RamdiskArgs,
    env: &RunEnv,
    reports: &ReportClient,
    http: &reqwest::Client,
) -> Result<RunOutcome, RunError> {
    let Some(image) = &args.image else {
        return fail(reports, RunError::NoImage).await;
    };
    let disk = match &args.disk {
        Some(disk) => disk.clone(),
        None => {
            let chosen = inspect(&env.inspect)
                .ok()
                .and_then(|inspection| first_disk(&inspection, &env.dev_dir));
            match chosen {
                Some(disk) => disk,
                None => return fail(reports, RunError::NoDisk).await,
            }
        }
    };
    let target = match Target::open(&disk) {
        Ok(target) => target,
        Err(source) => return fail(reports, RunError::Disk { disk, source }).await,
    };
    // The disk's old content is unknown: zero blocks are written, not skipped.
    let request = WriteRequest::new(image.url.clone(), image.sha256, image.format);
    match write_and_report(http, reports, &request, target).await {
        Ok(written) => Ok(RunOutcome::ImageWritten {
            disk,
            disk_bytes: written.disk_bytes,
        }),
        Err(source) => Err(RunError::Imaging { disk, source }),
    }
}

/// Wipe mode: every local disk erased in parallel, one record each, reported as `wiped` or `wipe_failed`.
async fn wipe(
    args: &RamdiskArgs,
    env: &RunEnv,
    reports: &ReportClient,
) -> Result<RunOutcome, RunError> {
    let selection = match disks_to_wipe(&env.inspect, &env.dev_dir) {
        Ok(selection) => selection,
        Err(err) => return wipe_failed(reports, Vec::new(), RunError::WipeInspect(err)).await,
    };
    for (disk, why) in &selection.left_out {
        tracing::info!(disk = %disk, reason = %why, "not erased");
    }
    if selection.disks.is_empty() {
        let left_out: Vec<String> = selection
            .left_out
            .iter()
            .map(|(disk, why)| format!("{disk} ({why})"))
            .collect();
        let why = if left_out.is_empty() {
            "inspection lists none".to_string()
        } else {
            format!("left out {}", left_out.join(", "))
        };
        return wipe_failed(reports, Vec::new(), RunError::NoDiskToWipe(why)).await;
    }
    let options = EraseOptions {
        skip: args.erase_skip.clone(),
        ..EraseOptions::default()
    };
    let disks = selection.disks;
    // Erasing takes minutes to hours of blocking I/O and device commands: off the async runtime, its steps
    // reported as wipe progress while it runs (the provisioner takes a silent wipe agent as stalled).
    let (steps_tx, steps_rx) = tokio::sync::mpsc::unbounded_channel();
    let progress = tokio::spawn(report_progress(reports.clone(), steps_rx, PROGRESS_EVERY));
    let records = tokio::task::spawn_blocking(move || {
        erase_all(&disks, &options, &open_host_device, &|path, step| {
            tracing::debug!(disk = %path.display(), ?step, "erase");
            // The receiver goes only when the reporter ends, after the erase.
            let _ = steps_tx.send((path.to_path_buf(), step.clone()));
        })
    })
    .await;
    // The senders went with the erase: the reporter sends what is left and ends.
    if tokio::time::timeout(std::time::Duration::from_secs(30), progress)
        .await
        .is_err()
    {
        tracing::warn!(
            "wipe progress reports still pending after the erase; the outcome goes first"
        );
    }
    let records = match records {
        Ok(records) => records,
        Err(err) => {
            let err = RunError::WipeFailed(format!("the erase task failed: {err}"));
            return wipe_failed(reports, Vec::new(), err).await;
        }
    };
    let step = wipe_step(records.clone());
    let failed = match &step {
        AgentStep::WipeFailed { error, .. } => Some(error.clone()),
        _ => None,
    };
    reports.send(step).await?;
    match failed {
        None => Ok(RunOutcome::Wiped { records }),
        Some(error) => Err(RunError::WipeFailed(error)),
    }
}

/// Reports `err` as `wipe_failed` with `records`, then returns it.
async fn wipe_failed(
    reports: &ReportClient,
    records: Vec<EraseRecord>,
    err: RunError,
) -> Result<RunOutcome, RunError> {
    reports
        .send(AgentStep::WipeFailed {
            records,
            error: crate::error_chain(&err),
        })
        .await?;
    Err(err)
}

/// The disk an image goes to when the command line names none: the first whole disk inspection lists (they are
/// sorted by name: `nvme0n1` before `sda` before `vda`) that exists under `dev_dir`.
pub fn first_disk(inspection: &Inspection, dev_dir: &Path) -> Option<PathBuf> {
    inspection
        .disks
        .iter()
        .filter(|disk| disk.size_bytes > 0)
        .map(|disk| dev_dir.join(&disk.name))
        .find(|path| path.exists())
}

/// Tells the provisioner that the boot arguments could not be used, when they at least say where to report and
/// with which token (`lookup` as for [`RamdiskArgs::from_lookup`]); otherwise nobody can be told. Returns whether
/// the report was delivered. Without this, the engine would only notice the node's silence at its boot timeout.
pub async fn report_unusable_args(
    lookup: impl Fn(&str) -> Option<String>,
    err: &CmdlineError,
    backoff: crate::report::Backoff,
) -> bool {
    let (Some(url), Some(token)) = (
        lookup("kiln.url").filter(|v| !v.is_empty()),
        lookup("kiln.token").filter(|v| !v.is_empty()),
    ) else {
        return false;
    };
    let mac = lookup("kiln.mac").and_then(|mac| mac.parse().ok());
    let reports = ReportClient::new(&url, token, mac).with_backoff(backoff);
    let step = AgentStep::Failed {
        error: crate::error_chain(err),
    };
    match reports.send(step).await {
        Ok(_) => true,
        Err(report_err) => {
            tracing::warn!(error = %report_err, "could not report the unusable boot arguments");
            false
        }
    }
}
