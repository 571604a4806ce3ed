//! `kiln-agent wipe` through the binary, and `kiln-agent run` in wipe mode against a provisioner stand-in.

use std::path::Path;
use std::process::Command;

use kiln_agent::run::{RunEnv, RunError, RunOutcome, run};
use kiln_agent::{AgentStep, InspectSources, RamdiskArgs, ReportClient};
use kiln_model::{EraseMethod, EraseRecord};

use crate::fixtures::{GPU_BUS_IDS, hgx_node};
use crate::report::{Provisioner, quick, start};

/// A file of `len` bytes of `pattern` repeated.
fn patterned(path: &Path, pattern: &[u8], len: usize) {
    let content: Vec<u8> = pattern.iter().copied().cycle().take(len).collect();
    std::fs::write(path, content).expect("write disk file");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn wipe(args: &[&str]) -> (i32, Vec<EraseRecord>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln-agent"))
        .arg("wipe")
        .args(args)
        .output()
        .expect("run kiln-agent");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let records = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        records,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn wipe_json_erases_two_files_and_prints_one_record_each() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = (dir.path().join("disk-a"), dir.path().join("disk-b"));
    patterned(&a, b"TENANT-ONE-SECRET", 7 << 20);
    patterned(&b, b"TENANT-TWO-SECRET", (40 << 20) + 4096);
    let (code, records, stderr) = wipe(&[
        a.to_str().expect("path"),
        "--json",
        b.to_str().expect("path"),
        "--samples",
        "8",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records.len(), 2);
    for (record, path) in records.iter().zip([&a, &b]) {
        assert_eq!(record.device, path.display().to_string());
        assert!(record.is_ok(), "{record:?}");
        assert_eq!(record.method, Some(EraseMethod::Overwrite));
        assert_eq!(record.bytes, std::fs::metadata(path).expect("meta").len());
        let content = std::fs::read(path).expect("read");
        assert!(
            !contains(&content, b"SECRET"),
            "pattern left on {}",
            path.display()
        );
        assert!(content.iter().all(|x| *x == 0));
    }
    let verification = records[1].verification.as_ref().expect("verification");
    assert_eq!(
        (verification.check.as_str(), verification.ranges),
        ("zeros", 10)
    );
    assert_eq!(
        records[0].verification.as_ref().expect("v").ranges,
        7,
        "7 MiB read whole"
    );
    assert!(stderr.contains("trying overwrite"), "{stderr}");
}

#[test]
fn wipe_of_a_missing_device_is_a_failed_record_and_exit_1() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("nvme7n1");
    let (code, records, _) = wipe(&["--json", missing.to_str().expect("path")]);
    assert_eq!(code, 1);
    assert_eq!(records.len(), 1);
    assert!(!records[0].is_ok());
    let error = records[0].error.as_deref().unwrap_or("");
    assert!(
        error.contains("cannot open the device") && error.contains("nvme7n1"),
        "{error}"
    );

    // Usage errors exit 2 and name the valid methods.
    let (code, records, stderr) = wipe(&["--method", "shred"]);
    assert_eq!((code, records.len()), (2, 0));
    assert!(
        stderr.contains("shred") && stderr.contains("nvme_format_crypto"),
        "{stderr}"
    );
}

fn env_for(root: &Path, dev_dir: &Path) -> RunEnv {
    RunEnv {
        inspect: InspectSources {
            root: root.to_path_buf(),
            dmidecode: None,
            lspci_vmm: None,
        },
        dev_dir: dev_dir.to_path_buf(),
        kernel: Some("6.12.0-test".into()),
    }
}

fn wipe_args(base: &str, extra: &str) -> RamdiskArgs {
    RamdiskArgs::parse(&format!(
        "kiln.url={base} kiln.mac=52:54:00:e2:00:04 kiln.token=tok kiln.mode=wipe {extra}"
    ))
    .expect("arguments parse")
}

#[tokio::test]
async fn wipe_mode_erases_every_local_disk_and_reports_the_records() {
    let p = Provisioner::default();
    let base = start(&p, vec![]).await;
    let (_tree, root) = hgx_node(&GPU_BUS_IDS);
    let dev = tempfile::tempdir().expect("dev");
    // The fixture lists nvme0n1 and nvme1n1 (and an empty loop0, never erased).
    patterned(&dev.path().join("nvme0n1"), b"LEASE-1-DATA", 5 << 20);
    patterned(&dev.path().join("nvme1n1"), b"LEASE-1-DATA", 3 << 20);
    let reports = ReportClient::new(&base, "tok", None).with_backoff(quick());
    let outcome = run(
        &wipe_args(&base, "kiln.erase_skip=nvme_sanitize_crypto"),
        &env_for(&root, dev.path()),
        &reports,
        &kiln_images::http_client(),
    )
    .await
    .expect("run");
    let RunOutcome::Wiped { records } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(records.len(), 2);
    // booted, each disk's progress (overwrite tried, verified: sent at once), then the outcome.
    let steps = p.steps();
    assert_eq!(
        steps.first().map(String::as_str),
        Some("booted"),
        "{steps:?}"
    );
    assert_eq!(steps.last().map(String::as_str), Some("wiped"), "{steps:?}");
    assert!(
        steps[1..steps.len() - 1]
            .iter()
            .all(|s| s == "wipe_progress"),
        "{steps:?}"
    );
    let received = p.received.lock().expect("lock").clone();
    let stages: Vec<(String, String)> = received
        .iter()
        .filter_map(|(_, report)| match &report.step {
            AgentStep::WipeProgress { device, stage, .. } => Some((device.clone(), stage.clone())),
            _ => None,
        })
        .collect();
    for name in ["nvme0n1", "nvme1n1"] {
        for stage in ["trying", "verifying"] {
            assert!(
                stages.iter().any(|(d, s)| d.ends_with(name) && s == stage),
                "{name} {stage}: {stages:?}"
            );
        }
    }
    let AgentStep::Wiped { disks, records } = &received[received.len() - 1].1.step else {
        panic!("wiped");
    };
    assert_eq!(disks, &["nvme0n1", "nvme1n1"]);
    assert!(
        records
            .iter()
            .all(|r| r.is_ok() && r.method == Some(EraseMethod::Overwrite))
    );
    for name in ["nvme0n1", "nvme1n1"] {
        let content = std::fs::read(dev.path().join(name)).expect("read");
        assert!(
            !contains(&content, b"LEASE-1"),
            "{name} still holds the tenant's data"
        );
    }
}

#[tokio::test]
async fn wipe_mode_failures_are_reported_as_wipe_failed() {
    let p = Provisioner::default();
    let base = start(&p, vec![]).await;
    let (_tree, root) = hgx_node(&GPU_BUS_IDS);
    let dev = tempfile::tempdir().expect("dev");
    let env = env_for(&root, dev.path());
    let reports = ReportClient::new(&base, "tok", None).with_backoff(quick());
    let http = kiln_images::http_client();

    // No inspected disk has a device file.
    let err = run(&wipe_args(&base, ""), &env, &reports, &http)
        .await
        .expect_err("no disk");
    assert!(matches!(err, RunError::NoDiskToWipe(_)), "{err}");

    // nvme1n1 holds the running root (per the tree's /proc/mounts) and is left alone; overwrite skipped on
    // nvme0n1, a plain device, leaves no method: a failed record naming the skip.
    patterned(&dev.path().join("nvme0n1"), b"LEASE-1-DATA", 2 << 20);
    patterned(&dev.path().join("nvme1n1"), b"ROOT-FS", 2 << 20);
    std::fs::create_dir_all(root.join("proc")).expect("proc");
    std::fs::write(root.join("proc/mounts"), "/dev/nvme1n1 / ext4 rw 0 0\n").expect("mounts");
    let err = run(
        &wipe_args(&base, "kiln.erase_skip=overwrite"),
        &env,
        &reports,
        &http,
    )
    .await
    .expect_err("skipped");
    assert!(matches!(err, RunError::WipeFailed(_)), "{err}");
    assert!(contains(
        &std::fs::read(dev.path().join("nvme1n1")).expect("read"),
        b"ROOT-FS"
    ));

    assert_eq!(
        p.steps(),
        ["booted", "wipe_failed", "booted", "wipe_failed"]
    );
    let received = p.received.lock().expect("lock").clone();
    let AgentStep::WipeFailed { records, error } = &received[1].1.step else {
        panic!("wipe_failed");
    };
    assert!(records.is_empty());
    assert!(
        error.contains("no disk to erase") && error.contains("nvme0n1"),
        "{error}"
    );
    let AgentStep::WipeFailed { records, error } = &received[3].1.step else {
        panic!("wipe_failed");
    };
    assert_eq!(records.len(), 1, "only nvme0n1: {records:?}");
    assert_eq!(
        error,
        "nvme0n1: overwrite: skipped: kiln.erase_skip; no erase method left to try"
    );
}
