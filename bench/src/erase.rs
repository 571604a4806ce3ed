//! `kiln bench erase`: kiln's overwrite erase against `dd if=/dev/zero of=DEV oflag=direct bs=1M` on the same
//! loop device, in one run.
//!
//! A scratch file of `--size-mb` MiB is attached to a loop device (`losetup --find --show --direct-io=on`, so the
//! loop driver writes its backing file with direct I/O like a disk takes writes, and a flush does not first
//! have to write back a page cache; without direct I/O when the file system refuses it; needs root). The
//! rounds alternate kiln (`kiln_agent::erase::overwrite_zeros` over the agent's `FileDevice`: O_DIRECT writes,
//! then a flush, as an erase must reach the media), dd as the issue names it, and dd with `conv=fsync` (the
//! same durability as kiln's), each over the whole device; the best and median throughput of each are
//! reported with the ratios. The loop device is detached on every path (a guard), the scratch file removed
//! with its directory. A benchmark, not a test: the numbers depend on the machine and its load.
//!
//! `--json` prints one line: `{"size_mb", "rounds", "kiln_mib_s", "dd_mib_s", "ratio", "kiln_median_mib_s",
//! "dd_median_mib_s", "median_ratio", "dd_fsync_mib_s", "ratio_vs_dd_fsync", "kiln_s", "dd_s", "dd_fsync_s",
//! "device", "loop_direct_io"}` (throughputs are the best round's; `ratio` is kiln/dd).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use kiln_agent::erase::{FileDevice, overwrite_zeros};
use serde::Serialize;

use crate::output::print_json_line;
use crate::{Output, table};

/// Time kiln's overwrite erase against dd on one loop device.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Size of the loop device in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65536))]
    size_mb: u64,
    /// Rounds per contender, alternating kiln and dd; best and median are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Directory for the loop device's backing file (default: the system temp dir); needs `--size-mb` free.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// What the benchmark measured.
#[derive(Debug, Serialize, PartialEq)]
pub struct EraseBench {
    /// Device size in MiB.
    pub size_mb: u64,
    /// Rounds per contender.
    pub rounds: u32,
    /// kiln's best throughput.
    pub kiln_mib_s: f64,
    /// dd's best throughput.
    pub dd_mib_s: f64,
    /// `kiln_mib_s / dd_mib_s`.
    pub ratio: f64,
    /// kiln's median throughput.
    pub kiln_median_mib_s: f64,
    /// dd's median throughput.
    pub dd_median_mib_s: f64,
    /// `kiln_median_mib_s / dd_median_mib_s`.
    pub median_ratio: f64,
    /// Best throughput of dd with `conv=fsync` (flushed at the end, as kiln's overwrite is).
    pub dd_fsync_mib_s: f64,
    /// `kiln_mib_s / dd_fsync_mib_s`.
    pub ratio_vs_dd_fsync: f64,
    /// kiln's seconds per round.
    pub kiln_s: Vec<f64>,
    /// dd's seconds per round.
    pub dd_s: Vec<f64>,
    /// `dd conv=fsync`'s seconds per round.
    pub dd_fsync_s: Vec<f64>,
    /// The loop device used.
    pub device: String,
    /// Whether the loop device writes its backing file with direct I/O.
    pub loop_direct_io: bool,
}

impl EraseBench {
    /// The figures from the rounds' wall times.
    pub fn from_rounds(
        size_mb: u64,
        device: String,
        kiln: &[Duration],
        dd: &[Duration],
        dd_fsync: &[Duration],
    ) -> Self {
        let mib_s = |d: &Duration| size_mb as f64 / d.as_secs_f64().max(1e-9);
        let best = |rounds: &[Duration]| rounds.iter().map(mib_s).fold(0.0, f64::max);
        let median = |rounds: &[Duration]| {
            let mut speeds: Vec<f64> = rounds.iter().map(mib_s).collect();
            speeds.sort_by(f64::total_cmp);
            match speeds.len() {
                0 => 0.0,
                n if n % 2 == 1 => speeds[n / 2],
                n => (speeds[n / 2 - 1] + speeds[n / 2]) / 2.0,
            }
        };
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let (kiln_best, dd_best) = (best(kiln), best(dd));
        let (kiln_median, dd_median) = (median(kiln), median(dd));
        let dd_fsync_best = best(dd_fsync);
        Self {
            size_mb,
            rounds: kiln.len() as u32,
            kiln_mib_s: kiln_best,
            dd_mib_s: dd_best,
            ratio: ratio(kiln_best, dd_best),
            kiln_median_mib_s: kiln_median,
            dd_median_mib_s: dd_median,
            median_ratio: ratio(kiln_median, dd_median),
            dd_fsync_mib_s: dd_fsync_best,
            ratio_vs_dd_fsync: ratio(kiln_best, dd_fsync_best),
            kiln_s: kiln.iter().map(Duration::as_secs_f64).collect(),
            dd_s: dd.iter().map(Duration::as_secs_f64).collect(),
            dd_fsync_s: dd_fsync.iter().map(Duration::as_secs_f64).collect(),
            device,
            loop_direct_io: false,
        }
    }
}

/// A loop device attached to a file, detached when dropped.
struct LoopDevice {
    path: PathBuf,
    direct_io: bool,
}

impl LoopDevice {
    /// Attaches `file` with direct I/O, or without when that is refused.
    fn attach(file: &Path) -> anyhow::Result<Self> {
        match Self::losetup(file, true) {
            Ok(path) => Ok(Self {
                path,
                direct_io: true,
            }),
            Err(direct_err) => {
                let path = Self::losetup(file, false)
                    .with_context(|| format!("(with --direct-io=on: {direct_err:#})"))?;
                eprintln!("note: the loop device does not use direct I/O: {direct_err:#}");
                Ok(Self {
                    path,
                    direct_io: false,
                })
            }
        }
    }

    fn losetup(file: &Path, direct_io: bool) -> anyhow::Result<PathBuf> {
        let mut command = Command::new("losetup");
        command.args(["--find", "--show"]);
        if direct_io {
            command.arg("--direct-io=on");
        }
        let out = command
            .arg(file)
            .output()
            .context("running losetup (util-linux)")?;
        if !out.status.success() {
            bail!(
                "losetup --find --show {} failed: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        ensure!(
            path.starts_with("/dev/"),
            "losetup printed no device: {path:?}"
        );
        Ok(path)
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        match Command::new("losetup").arg("-d").arg(&self.path).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: losetup -d {} failed: {}",
                self.path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(err) => eprintln!("warning: losetup -d {}: {err}", self.path.display()),
        }
    }
}

/// Root is needed to attach a loop device; the effective uid is the owner of `/proc/self`.
fn require_root() -> anyhow::Result<()> {
    let uid = std::fs::metadata("/proc/self")
        .context("reading /proc/self to find the effective user")?
        .uid();
    ensure!(
        uid == 0,
        "kiln bench erase needs root to attach a loop device (running as uid {uid}); run it with sudo"
    );
    Ok(())
}

/// One kiln round: the agent's overwrite over the whole device, flushed.
fn kiln_round(device: &Path, size_mb: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut dev = FileDevice::open(device)
        .with_context(|| format!("opening {} for kiln's erase", device.display()))?;
    // overwrite_zeros flushes at its end.
    let written = overwrite_zeros(&mut dev, &mut |_| {})
        .with_context(|| format!("kiln's overwrite of {}", device.display()))?;
    let elapsed = started.elapsed();
    ensure!(
        written == size_mb << 20,
        "kiln's overwrite wrote {written} bytes of {}",
        size_mb << 20
    );
    Ok(elapsed)
}

/// One dd round: `dd if=/dev/zero of=DEV oflag=direct bs=1M count=N`, with `conv=fsync` when `fsync`.
fn dd_round(device: &Path, size_mb: u64, fsync: bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new("dd")
        .args(["if=/dev/zero", "oflag=direct", "bs=1M", "status=none"])
        .args(fsync.then_some("conv=fsync"))
        .arg(format!("of={}", device.display()))
        .arg(format!("count={size_mb}"))
        .output()
        .context("running dd (coreutils)")?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        bail!(
            "dd of={} failed: {}",
            device.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(elapsed)
}

/// Runs the benchmark (root only).
pub fn measure(args: &Args) -> anyhow::Result<EraseBench> {
    require_root()?;
    let scratch = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .context("creating the scratch directory")?;
    let backing = scratch.path().join("erase-bench.img");
    let file = std::fs::File::create(&backing)
        .with_context(|| format!("creating {}", backing.display()))?;
    file.set_len(args.size_mb << 20)
        .with_context(|| format!("sizing {} to {} MiB", backing.display(), args.size_mb))?;
    drop(file);
    let device = LoopDevice::attach(&backing)?;
    let (mut kiln, mut dd, mut dd_fsync) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        // Rotate who goes first, so no contender always meets a warm (or cold) device.
        for turn in 0..3 {
            match (round + turn) % 3 {
                0 => kiln.push(kiln_round(&device.path, args.size_mb)?),
                1 => dd.push(dd_round(&device.path, args.size_mb, false)?),
                _ => dd_fsync.push(dd_round(&device.path, args.size_mb, true)?),
            }
        }
        let last = |rounds: &[Duration]| rounds.last().map_or(0.0, Duration::as_secs_f64);
        eprintln!(
            "round {}: kiln {:.2}s, dd {:.2}s, dd conv=fsync {:.2}s",
            round + 1,
            last(&kiln),
            last(&dd),
            last(&dd_fsync)
        );
    }
    let mut bench = EraseBench::from_rounds(
        args.size_mb,
        device.path.display().to_string(),
        &kiln,
        &dd,
        &dd_fsync,
    );
    bench.loop_direct_io = device.direct_io;
    Ok(bench)
}

pub async fn exec(args: Args, output: &Output) -> anyhow::Result<()> {
    if !output.json {
        eprintln!(
            "bench erase: {} MiB loop device, {} round(s) each of kiln's overwrite and dd oflag=direct bs=1M …",
            args.size_mb, args.rounds
        );
    }
    let bench = tokio::task::spawn_blocking(move || measure(&args))
        .await
        .context("the benchmark task")??;
    if output.json {
        return print_json_line(&bench);
    }
    let rows = vec![
        vec![
            "kiln overwrite_zeros".to_string(),
            format!("{:.0}", bench.kiln_mib_s),
            format!("{:.0}", bench.kiln_median_mib_s),
        ],
        vec![
            "dd oflag=direct bs=1M".to_string(),
            format!("{:.0}", bench.dd_mib_s),
            format!("{:.0}", bench.dd_median_mib_s),
        ],
        vec![
            "dd … conv=fsync".to_string(),
            format!("{:.0}", bench.dd_fsync_mib_s),
            String::new(),
        ],
    ];
    println!(
        "{}",
        table::render(&["ERASE", "BEST MiB/s", "MEDIAN MiB/s"], &rows)
    );
    println!(
        "kiln/dd: {:.2}× best, {:.2}× median; kiln/dd conv=fsync: {:.2}× ({} MiB on {}{}, {} rounds)",
        bench.ratio,
        bench.median_ratio,
        bench.ratio_vs_dd_fsync,
        bench.size_mb,
        bench.device,
        if bench.loop_direct_io {
            " with direct I/O"
        } else {
            ""
        },
        bench.rounds
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_best_and_median_of_the_rounds() {
        let s = Duration::from_secs;
        let bench = EraseBench::from_rounds(
            100,
            "/dev/loop9".into(),
            &[s(4), s(2), s(1)],
            &[s(2), s(2), s(4)],
            &[s(4)],
        );
        assert_eq!(bench.kiln_mib_s, 100.0);
        assert_eq!(bench.dd_mib_s, 50.0);
        assert_eq!(bench.ratio, 2.0);
        assert_eq!(bench.kiln_median_mib_s, 50.0);
        assert_eq!(bench.dd_median_mib_s, 50.0);
        assert_eq!(bench.median_ratio, 1.0);
        assert_eq!(bench.rounds, 3);
        assert_eq!(bench.dd_fsync_mib_s, 25.0);
        assert_eq!(bench.ratio_vs_dd_fsync, 4.0);
        let json = serde_json::to_value(&bench).expect("json");
        for key in [
            "size_mb",
            "kiln_mib_s",
            "dd_mib_s",
            "ratio",
            "kiln_s",
            "dd_s",
        ] {
            assert!(json.get(key).is_some(), "{key} missing: {json}");
        }
        let even = EraseBench::from_rounds(10, String::new(), &[s(1), s(2)], &[], &[]);
        assert_eq!(even.kiln_median_mib_s, 7.5);
        assert_eq!(
            even.ratio, 0.0,
            "no dd rounds: no ratio, not a division by zero"
        );
    }
}
