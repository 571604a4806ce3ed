//! Which disks a wipe erases, and erasing them in parallel, one record each.
//!
//! With no device named, every whole disk inspection lists (size > 0) that exists under the device directory,
//! never a RAM, zram, loop or optical device, and never a disk that holds a mounted filesystem (the running root,
//! or the medium the ramdisk came from): those are left out with a note. A device named explicitly that holds a
//! mounted filesystem is refused ([`mounted_among`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::Utc;
use kiln_model::{EraseRecord, EraseResult};

use super::chain::{EraseOptions, EraseStep, erase_device_reporting};
use super::device::{DeviceError, EraseDevice};
use crate::inspect::{DiskInfo, InspectSources};

/// Device name prefixes that are never erased: memory-backed, loop and optical devices.
const NEVER: &[&str] = &["ram", "zram", "loop", "sr"];

/// Opens a device for the chain ([`open_host_device`] on a node; kiln-sim wraps its disk files in faults).
pub type Opener<'a> =
    &'a (dyn Fn(&Path) -> Result<Box<dyn EraseDevice + Send>, DeviceError> + Sync);

/// The opener of the running host: a block device through the kernel implementation ([`super::linux::open`]:
/// sysfs classification, NVMe admin commands, SG_IO); a regular file (kiln-sim's disks, tests) as a plain
/// [`super::file::FileDevice`], since sysfs says nothing about it.
pub fn open_host_device(path: &Path) -> Result<Box<dyn EraseDevice + Send>, DeviceError> {
    if std::fs::metadata(path).is_ok_and(|meta| meta.is_file()) {
        return Ok(Box::new(super::file::FileDevice::open(path)?));
    }
    Ok(Box::new(super::linux::open(path)?))
}

/// The disks a wipe with no device named erases, and the ones it leaves out with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WipeSelection {
    /// Device files to erase, in inspection order.
    pub disks: Vec<PathBuf>,
    /// `(disk name, why)` for disks left out.
    pub left_out: Vec<(String, String)>,
}

/// The whole disks of `disks` (inspection's) to erase; `held` names the disks holding a mounted filesystem.
pub fn select_disks(disks: &[DiskInfo], dev_dir: &Path, held: &BTreeSet<String>) -> WipeSelection {
    let mut selection = WipeSelection::default();
    for disk in disks {
        let name = &disk.name;
        if NEVER.iter().any(|prefix| name.starts_with(prefix)) {
            selection
                .left_out
                .push((name.clone(), "not a local disk".into()));
        } else if disk.size_bytes == 0 {
            selection
                .left_out
                .push((name.clone(), "no capacity (no medium)".into()));
        } else if held.contains(name) {
            selection.left_out.push((
                name.clone(),
                "holds a mounted filesystem (/proc/mounts)".into(),
            ));
        } else if !dev_dir.join(name).exists() {
            selection.left_out.push((
                name.clone(),
                format!("no device file in {}", dev_dir.display()),
            ));
        } else {
            selection.disks.push(dev_dir.join(name));
        }
    }
    selection
}

/// The whole disks holding the filesystems mounted in `mounts` (the text of `/proc/mounts`): each `/dev/…`
/// source resolved through `dev_dir` symlinks, then from partitions and device-mapper slaves to their disks under
/// `sys_block` (`/sys/class/block`).
pub fn held_disks(mounts: &str, dev_dir: &Path, sys_block: &Path) -> BTreeSet<String> {
    let mut held = BTreeSet::new();
    for source in mounts
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        let Some(name) = source.strip_prefix("/dev/") else {
            continue;
        };
        let path = dev_dir.join(name);
        let resolved = path.canonicalize().unwrap_or(path);
        if let Some(name) = resolved.file_name().and_then(|n| n.to_str()) {
            whole_disks(name, sys_block, &mut held, 0);
        }
    }
    held
}

/// Adds the whole disks under block device `name` to `out`.
fn whole_disks(name: &str, sys_block: &Path, out: &mut BTreeSet<String>, depth: u32) {
    let dir = sys_block.join(name);
    if depth > 8 {
        return;
    }
    if dir.join("partition").exists() {
        let parent = dir.canonicalize().ok().and_then(|p| {
            p.parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        });
        if let Some(parent) = parent {
            out.insert(parent);
            return;
        }
    }
    let slaves: Vec<String> = std::fs::read_dir(dir.join("slaves"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if slaves.is_empty() {
        out.insert(name.to_string());
    }
    for slave in slaves {
        whole_disks(&slave, sys_block, out, depth + 1);
    }
}

/// The disks of this system (as `sources` and `dev_dir` show it) that a wipe erases.
pub fn disks_to_wipe(
    sources: &InspectSources,
    dev_dir: &Path,
) -> Result<WipeSelection, crate::InspectError> {
    let inspection = crate::inspect(sources)?;
    let mounts = std::fs::read_to_string(sources.root.join("proc/mounts")).unwrap_or_default();
    let held = held_disks(&mounts, dev_dir, &sources.root.join("sys/class/block"));
    Ok(select_disks(&inspection.disks, dev_dir, &held))
}

/// The named devices among `paths` that are whole disks holding a mounted filesystem of this system (as
/// `sources` and `dev_dir` show it): a wipe refuses them rather than erase a filesystem in use.
pub fn mounted_among(paths: &[PathBuf], sources: &InspectSources, dev_dir: &Path) -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string(sources.root.join("proc/mounts")).unwrap_or_default();
    let sys_block = sources.root.join("sys/class/block");
    let held = held_disks(&mounts, dev_dir, &sys_block);
    paths
        .iter()
        .filter(|path| {
            let resolved = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
            resolved.starts_with(dev_dir)
                && resolved
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|name| held.contains(name))
        })
        .cloned()
        .collect()
}

/// Erases `paths` in parallel (one thread each) with `opts`, opening each with `open`; one record per path, in
/// the order given. A device that cannot be opened gets a failed record naming why. `on_step` hears each
/// device's steps (from its thread).
pub fn erase_all(
    paths: &[PathBuf],
    opts: &EraseOptions,
    open: Opener<'_>,
    on_step: &(dyn Fn(&Path, &EraseStep) + Sync),
) -> Vec<EraseRecord> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .iter()
            .map(|path| {
                scope.spawn(move || match open(path) {
                    Ok(mut dev) => {
                        erase_device_reporting(dev.as_mut(), opts, &mut |step| on_step(path, step))
                    }
                    Err(err) => unopened(path, &err),
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(paths)
            .map(|(handle, path)| {
                handle.join().unwrap_or_else(|_| {
                    unopened(path, &DeviceError::Io("the erase thread panicked".into()))
                })
            })
            .collect()
    })
}

/// The failed record of a device that could not be opened.
fn unopened(path: &Path, err: &DeviceError) -> EraseRecord {
    let now = Utc::now();
    EraseRecord {
        device: path.display().to_string(),
        model: String::new(),
        serial: String::new(),
        bytes: 0,
        method: None,
        nist: None,
        tried: Vec::new(),
        started_at: now,
        finished_at: now,
        verified: false,
        result: EraseResult::Failed,
        error: Some(format!("cannot open the device: {err}")),
        verification: None,
    }
}

/// The report of a wipe: `Wiped` (disk names and records) when there are records and every one is erased and
/// verified, else `WipeFailed` with the failed records' summaries joined by `"; "`.
pub fn wipe_step(records: Vec<EraseRecord>) -> crate::AgentStep {
    if !records.is_empty() && records.iter().all(EraseRecord::is_ok) {
        let disks = records
            .iter()
            .map(|r| r.device.rsplit('/').next().unwrap_or(&r.device).to_string())
            .collect();
        return crate::AgentStep::Wiped { disks, records };
    }
    let error = records
        .iter()
        .filter(|r| !r.is_ok())
        .map(EraseRecord::summary)
        .collect::<Vec<_>>()
        .join("; ");
    crate::AgentStep::WipeFailed { records, error }
}

/// `kiln-agent wipe [DEVICE...] [--method M] [--json] [--samples N]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WipeArgs {
    /// Devices named; empty: every local disk ([`disks_to_wipe`]).
    pub devices: Vec<PathBuf>,
    /// `--method`: only this method.
    pub method: Option<kiln_model::EraseMethod>,
    /// `--json`: one record per line on stdout.
    pub json: bool,
    /// `--samples`: random ranges read back (default 16).
    pub samples: Option<u32>,
}

impl WipeArgs {
    /// Parses the words after `wipe`; the error says what is wrong (an unknown method names the valid ones).
    pub fn parse(words: &[String]) -> Result<Self, String> {
        let mut args = WipeArgs::default();
        let mut words = words.iter();
        while let Some(word) = words.next() {
            match word.as_str() {
                "--json" => args.json = true,
                "--method" => {
                    let name = words.next().ok_or("--method needs a method name")?;
                    args.method = Some(name.parse().map_err(|e| format!("--method: {e}"))?);
                }
                "--samples" => {
                    let n = words.next().ok_or("--samples needs a number")?;
                    args.samples = Some(
                        n.parse()
                            .map_err(|_| format!("--samples: {n:?} is not a whole number"))?,
                    );
                }
                flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
                device => args.devices.push(PathBuf::from(device)),
            }
        }
        Ok(args)
    }

    /// The chain options these arguments ask for.
    pub fn options(&self) -> EraseOptions {
        let defaults = EraseOptions::default();
        EraseOptions {
            only: self.method,
            samples: self.samples.unwrap_or(defaults.samples),
            ..defaults
        }
    }
}

#[cfg(test)]
#[path = "wipe_tests.rs"]
mod tests;
