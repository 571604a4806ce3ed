//! The erase chain of one device: the family's methods strongest first ([`DeviceKind::chain`]), then overwrite.
//! A method that fails (refused, failed, timed out, or not verified) is recorded in `tried` and the next one
//! runs; a device that is gone or read-only ends the chain. Nothing is `ok` without the read-back verification
//! of [`super::verify`].

use std::time::{Duration, Instant};

use chrono::Utc;
use kiln_model::{EraseMethod, EraseRecord, EraseResult, EraseVerification, TriedMethod};

use super::device::{DeviceError, EraseDevice, EraseProgress};
use super::file::overwrite_zeros;
use super::verify::{self, SampleRange, VerifyError};

/// What the chain does, beyond the device's own offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EraseOptions {
    /// Try only this method (`kiln-agent wipe --method`).
    pub only: Option<EraseMethod>,
    /// Methods not to try (`kiln.erase_skip`, set by the remediation ladder).
    pub skip: Vec<EraseMethod>,
    /// Random 1 MiB ranges read back besides the first and last MiB.
    pub samples: u32,
    /// How long an asynchronous erase (sanitize) may run.
    pub sanitize_timeout: Duration,
    /// How often its progress is asked for.
    pub poll_interval: Duration,
    /// Seed of the random ranges; `None`: a fresh one per device.
    pub seed: Option<u64>,
}

impl Default for EraseOptions {
    fn default() -> Self {
        Self {
            only: None,
            skip: Vec::new(),
            samples: 16,
            sanitize_timeout: Duration::from_secs(6 * 3600),
            poll_interval: Duration::from_secs(2),
            seed: None,
        }
    }
}

/// What the chain is doing, for progress output.
#[derive(Debug, Clone, PartialEq)]
pub enum EraseStep {
    /// A method starts.
    Trying(EraseMethod),
    /// Overwrite: bytes written so far of `total`.
    Written {
        /// Bytes written.
        bytes: u64,
        /// Device size.
        total: u64,
    },
    /// An asynchronous erase is running, the fraction done when the device says.
    Running(Option<f64>),
    /// The method finished; its result is being read back.
    Verifying(EraseMethod),
    /// The method failed; the chain goes on (or gives up) with this reason.
    MethodFailed(EraseMethod, String),
}

/// Why one method did not erase the device.
#[derive(Debug)]
enum MethodError {
    Device(DeviceError),
    Verify(VerifyError),
}

impl MethodError {
    fn falls_through(&self) -> bool {
        match self {
            MethodError::Device(err) => err.falls_through(),
            MethodError::Verify(err) => err.device_error().is_none_or(DeviceError::falls_through),
        }
    }
}

impl std::fmt::Display for MethodError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MethodError::Device(err) => err.fmt(f),
            MethodError::Verify(err) => err.fmt(f),
        }
    }
}

/// Erases `dev` with the strongest method that works and verifies it; see the module doc.
pub fn erase_device(dev: &mut dyn EraseDevice, opts: &EraseOptions) -> EraseRecord {
    erase_device_reporting(dev, opts, &mut |_| {})
}

/// [`erase_device`], telling `on_step` what it does.
pub fn erase_device_reporting(
    dev: &mut dyn EraseDevice,
    opts: &EraseOptions,
    on_step: &mut dyn FnMut(&EraseStep),
) -> EraseRecord {
    let info = dev.info().clone();
    let mut record = EraseRecord {
        device: info.path.display().to_string(),
        model: info.model.clone(),
        serial: info.serial.clone(),
        bytes: info.bytes,
        method: None,
        nist: None,
        tried: Vec::new(),
        started_at: Utc::now(),
        finished_at: Utc::now(),
        verified: false,
        result: EraseResult::Failed,
        error: None,
        verification: None,
    };
    let finish = |mut record: EraseRecord, error: Option<String>| {
        record.error = error;
        record.finished_at = Utc::now();
        record
    };
    if info.read_only {
        return finish(record, Some(DeviceError::ReadOnly.to_string()));
    }
    if info.bytes == 0 {
        return finish(record, Some("the device has no capacity (0 bytes)".into()));
    }
    let methods: Vec<EraseMethod> = match opts.only {
        Some(method) => vec![method],
        None => info
            .kind
            .chain()
            .iter()
            .copied()
            .chain([EraseMethod::Overwrite])
            .collect(),
    };
    let offered = match dev.offered() {
        Ok(offered) => Ok(offered),
        Err(err) if !err.falls_through() => return finish(record, Some(err.to_string())),
        Err(err) => Err(err.to_string()),
    };
    let seed = opts.seed.unwrap_or_else(rand::random);
    let ranges = verify::sample_ranges(info.bytes, info.block_size, opts.samples, seed);
    // Where in `tried` the last method that ran and failed is: on failure it becomes the record's `method` and
    // `error` instead.
    let mut last_failure: Option<usize> = None;
    for method in methods {
        if opts.skip.contains(&method) {
            record
                .tried
                .push(tried(method, "skipped: kiln.erase_skip".into()));
            continue;
        }
        if method != EraseMethod::Overwrite {
            match &offered {
                Ok(list) if list.contains(&method) => {}
                Ok(_) => {
                    record
                        .tried
                        .push(tried(method, "not supported by the device".into()));
                    continue;
                }
                Err(identify) => {
                    record.tried.push(tried(
                        method,
                        format!("not supported by the device: identify failed: {identify}"),
                    ));
                    continue;
                }
            }
        }
        on_step(&EraseStep::Trying(method));
        match run_method(dev, method, opts, &ranges, on_step) {
            Ok(verification) => {
                record.method = Some(method);
                record.nist = Some(method.nist());
                record.verified = true;
                record.result = EraseResult::Ok;
                record.verification = Some(verification);
                return finish(record, None);
            }
            Err(err) => {
                let reason = err.to_string();
                on_step(&EraseStep::MethodFailed(method, reason.clone()));
                if !err.falls_through() {
                    record.method = Some(method);
                    return finish(record, Some(format!("{method}: {reason}")));
                }
                last_failure = Some(record.tried.len());
                record.tried.push(tried(method, reason));
            }
        }
    }
    match last_failure {
        Some(at) => {
            let last = record.tried.remove(at);
            record.method = Some(last.method);
            finish(record, Some(format!("{}: {}", last.method, last.error)))
        }
        None => finish(record, Some("no erase method left to try".into())),
    }
}

fn tried(method: EraseMethod, error: String) -> TriedMethod {
    TriedMethod { method, error }
}

/// Runs one method and verifies it.
fn run_method(
    dev: &mut dyn EraseDevice,
    method: EraseMethod,
    opts: &EraseOptions,
    ranges: &[SampleRange],
    on_step: &mut dyn FnMut(&EraseStep),
) -> Result<EraseVerification, MethodError> {
    let before = if method.is_crypto() {
        Some(verify::digests(dev, ranges).map_err(MethodError::Verify)?)
    } else {
        None
    };
    if method == EraseMethod::Overwrite {
        let total = dev.info().bytes;
        overwrite_zeros(dev, &mut |bytes| {
            on_step(&EraseStep::Written { bytes, total })
        })
        .map_err(MethodError::Device)?;
    } else {
        dev.start(method).map_err(MethodError::Device)?;
        wait_for(dev, opts, on_step).map_err(MethodError::Device)?;
    }
    on_step(&EraseStep::Verifying(method));
    match &before {
        Some(before) => verify::verify_changed(dev, ranges, before),
        None => verify::verify_zeros(dev, ranges),
    }
    .map_err(MethodError::Verify)
}

/// Polls a started erase until it is done, failed, or past `opts.sanitize_timeout`.
fn wait_for(
    dev: &mut dyn EraseDevice,
    opts: &EraseOptions,
    on_step: &mut dyn FnMut(&EraseStep),
) -> Result<(), DeviceError> {
    let deadline = Instant::now() + opts.sanitize_timeout;
    loop {
        match dev.progress()? {
            EraseProgress::Done => return Ok(()),
            EraseProgress::Failed(reason) => {
                return Err(DeviceError::Command(format!(
                    "the device reports the erase failed: {reason}"
                )));
            }
            EraseProgress::Running(done) => on_step(&EraseStep::Running(done)),
        }
        if Instant::now() >= deadline {
            return Err(DeviceError::Timeout(opts.sanitize_timeout.as_secs()));
        }
        std::thread::sleep(opts.poll_interval);
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
