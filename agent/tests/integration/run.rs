//! `kiln-agent run` dispatched on `kiln.mode`: inspect, image (to `kiln.disk` or the first inspected disk, raw
//! and zstd, with progress), and the failures each reported to the provisioner.

use std::path::Path;

use kiln_agent::cmdline::kernel_arg;
use kiln_agent::run::{RunEnv, RunError, RunOutcome, first_disk, report_unusable_args, run};
use kiln_agent::{AgentStep, InspectSources, RamdiskArgs, ReportClient, inspect};
use kiln_images::Sha256Digest;

use crate::fixtures::{DMIDECODE, GPU_BUS_IDS, hgx_node, lspci_text};
use crate::report::{Provisioner, quick, start};

fn env_for(root: &Path, dev_dir: &Path) -> RunEnv {
    RunEnv {
        inspect: InspectSources {
            root: root.to_path_buf(),
            dmidecode: Some(DMIDECODE.into()),
            lspci_vmm: Some(lspci_text(&GPU_BUS_IDS)),
        },
        dev_dir: dev_dir.to_path_buf(),
        kernel: Some("6.12.0-test".into()),
    }
}

/// Boot arguments as a script would render them; `extra` adds image and disk words.
fn args(base: &str, mode: &str, extra: &str) -> RamdiskArgs {
    RamdiskArgs::parse(&format!(
        "initrd=initramfs.img kiln.url={base} kiln.mac=52:54:00:e2:00:04 kiln.token=tok kiln.mode={mode} {extra}"
    ))
    .expect("arguments parse")
}

fn image_words(base: &str, bytes: &[u8], format: &str) -> String {
    let hex = Sha256Digest::of(bytes).to_hex();
    format!("kiln.image={base}/image kiln.sha256={hex} kiln.format={format}")
}

#[tokio::test]
async fn inspect_mode_reports_booted_then_the_hardware() {
    let p = Provisioner::default();
    let base = start(&p, vec![]).await;
    let (_tree, root) = hgx_node(&GPU_BUS_IDS);
    let dev = tempfile::tempdir().expect("dev");
    let reports = ReportClient::new(&base, "tok", None).with_backoff(quick());
    let outcome = run(
        &args(&base, "inspect", ""),
        &env_for(&root, dev.path()),
        &reports,
        &kiln_images::http_client(),
    )
    .await
    .expect("run");
    assert_eq!(outcome, RunOutcome::Inspected);
    assert_eq!(p.steps(), ["booted", "inspected"]);
    let received = p.received.lock().expect("lock").clone();
    assert_eq!(received[0].0.as_deref(), Some("Bearer tok"));
    let AgentStep::Inspected { inspection, .. } = &received[1].1.step else {
        panic!("second step is the inspection");
    };
    assert_eq!(inspection.gpus.len(), 8);
}

#[tokio::test]
async fn image_mode_writes_zstd_to_the_first_inspected_disk() {
    let raw: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let compressed = zstd::encode_all(&raw[..], 3).expect("compress");
    let p = Provisioner::default();
    let base = start(&p, compressed.clone()).await;
    let (_tree, root) = hgx_node(&GPU_BUS_IDS);
    let dev = tempfile::tempdir().expect("dev");
    // The fixture lists nvme0n1 and nvme1n1; only nvme1n1 exists under the device dir, so it is the one.
    std::fs::write(dev.path().join("nvme1n1"), b"old content").expect("disk");
    let reports = ReportClient::new(&base, "tok", None).with_backoff(quick());
    let outcome = run(
        &args(&base, "image", &image_words(&base, &compressed, "raw.zst")),
        &env_for(&root, dev.path()),
        &reports,
        &kiln_images::http_client(),
    )
    .await
    .expect("run");
    let disk = dev.path().join("nvme1n1");
    assert_eq!(
        outcome,
        RunOutcome::ImageWritten {
            disk: disk.clone(),
            disk_bytes: raw.len() as u64
        }
    );
    assert!(
        std::fs::read(&disk).expect("read disk") == raw,
        "disk holds the decompressed image"
    );
    assert_eq!(p.steps(), ["booted", "image_started", "image_written"]);
    let received = p.received.lock().expect("lock").clone();
    let AgentStep::ImageStarted { target, sha256, .. } = &received[1].1.step else {
        panic!("image_started");
    };
    assert_eq!(target, &disk.display().to_string());
    assert_eq!(sha256, &Sha256Digest::of(&compressed).to_hex());
}

#[tokio::test]
async fn image_mode_reports_progress_on_the_named_disk() {
    // The writer gives a figure every 16 MiB downloaded; those sent while the write runs are reported.
    let raw: Vec<u8> = (0..40u32 << 20).map(|i| (i % 253) as u8).collect();
    let p = Provisioner::default();
    let base = start(&p, raw.clone()).await;
    let (_tree, root) = hgx_node(&GPU_BUS_IDS);
    let dev = tempfile::tempdir().expect("dev");
    let named = dev.path().join("scratch-disk");
    std::fs::write(&named, b"").expect("disk");
    let extra = format!(
        "{} kiln.disk={}",
        image_words(&base, &raw, "raw"),
        named.display()
    );
    let reports = ReportClient::new(&base, "tok", None).with_backoff(quick());
    run(
        &args(&base, "image", &extra),
        &env_for(&root, dev.path()),
        &reports,
        &kiln_images::http_client(),
    )
    .await
    .expect("run");
    assert_eq!(
        std::fs::metadata(&named).expect("disk").len(),
        raw.len() as u64
    );
    let steps = p.steps();
    assert_eq!(steps.first().map(String::as_str), Some("booted"));
    assert_eq!(steps.last().map(String::as_str), Some("image_written"));
    let progress: Vec<u64> = p
        .received
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|(_, r)| match r.step {
            AgentStep::ImageProgress {
                downloaded_bytes, ..
            } => Some(downloaded_bytes),
            _ => None,
        })
        .collect();
    assert!(
        !progress.is_empty()
            && progress
                .iter()
                .all(|b| *b >= 16 << 20 && *b <= raw.len() as u64),
        "progress {progress:?} in {steps:?}"
    );
}

#[tokio::test]
async fn image_mode_failures_are_reported() {
    let image = vec![5u8; 64 << 10];
    let p = Provisioner::default();
    let base = start(&p, image.clone()).await;
    let (_tree, root) = hgx_node(&GPU_BUS_IDS);
    let dev = tempfile::tempdir().expect("dev");
    let env = env_for(&root, dev.path());
    let reports = ReportClient::new(&base, "tok", None).with_backoff(quick());
    let http = kiln_images::http_client();

    // No image on the command line.
    let err = run(&args(&base, "image", ""), &env, &reports, &http)
        .await
        .expect_err("no image");
    assert!(matches!(err, RunError::NoImage), "{err}");
    // No kiln.disk, and no inspected disk exists under the device dir.
    let words = image_words(&base, &image, "raw");
    let err = run(&args(&base, "image", &words), &env, &reports, &http)
        .await
        .expect_err("no disk");
    assert!(matches!(err, RunError::NoDisk), "{err}");
    // A digest that does not match what the server sends.
    let disk = dev.path().join("nvme0n1");
    std::fs::write(&disk, b"").expect("disk");
    let wrong = words.replace(
        &Sha256Digest::of(&image).to_hex(),
        &Sha256Digest::of(b"other").to_hex(),
    );
    let err = run(&args(&base, "image", &wrong), &env, &reports, &http)
        .await
        .expect_err("digest");
    assert!(matches!(err, RunError::Imaging { .. }), "{err}");

    assert_eq!(
        p.steps(),
        [
            "booted",
            "failed",
            "booted",
            "failed",
            "booted",
            "image_started",
            "image_failed",
        ]
    );
    let received = p.received.lock().expect("lock").clone();
    let errors: Vec<String> = received
        .iter()
        .filter_map(|(_, r)| match &r.step {
            AgentStep::Failed { error } | AgentStep::ImageFailed { error, .. } => {
                Some(error.clone())
            }
            _ => None,
        })
        .collect();
    assert!(errors[0].contains("kiln.image"), "{errors:?}");
    assert!(errors[1].contains("no disk"), "{errors:?}");
    assert!(
        errors[2].contains(&Sha256Digest::of(&image).to_hex()),
        "{errors:?}"
    );
}

#[test]
fn the_first_disk_is_the_first_inspected_one_that_exists() {
    let (_tree, root) = hgx_node(&GPU_BUS_IDS);
    let found = inspect(&InspectSources {
        root,
        dmidecode: None,
        lspci_vmm: None,
    })
    .expect("inspect");
    let dev = tempfile::tempdir().expect("dev");
    assert_eq!(first_disk(&found, dev.path()), None);
    for name in ["nvme1n1", "nvme0n1"] {
        std::fs::write(dev.path().join(name), b"").expect("disk");
    }
    assert_eq!(
        first_disk(&found, dev.path()),
        Some(dev.path().join("nvme0n1"))
    );
}

#[tokio::test]
async fn unusable_arguments_are_reported_when_the_provisioner_is_named() {
    let p = Provisioner::default();
    let base = start(&p, vec![]).await;
    let line = format!(
        "kiln.url={base} kiln.token=tok kiln.mac=52:54:00:e2:00:04 kiln.mode=image \
         kiln.image={base}/image kiln.sha256=nothex kiln.format=raw"
    );
    let lookup = |key: &str| kernel_arg(&line, key).map(str::to_string);
    let err = RamdiskArgs::from_lookup(lookup).expect_err("bad digest");
    assert!(report_unusable_args(lookup, &err, quick()).await);
    let received = p.received.lock().expect("lock").clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].0.as_deref(), Some("Bearer tok"));
    let AgentStep::Failed { error } = &received[0].1.step else {
        panic!("a failed step");
    };
    assert!(error.contains("kiln.sha256"), "{error}");

    // Nowhere to report: nothing sent, nothing claimed.
    let no_token = format!("kiln.url={base} kiln.mode=image");
    let lookup = |key: &str| kernel_arg(&no_token, key).map(str::to_string);
    let err = RamdiskArgs::from_lookup(lookup).expect_err("no token");
    assert!(!report_unusable_args(lookup, &err, quick()).await);
    assert_eq!(p.received.lock().expect("lock").len(), 1);
}
