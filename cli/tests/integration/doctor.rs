//! `kiln doctor`: the JSON contract, exit codes, and a failing check named in the human output.

use std::process::Command;

fn doctor(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir)
        .env_remove("KILN_DB")
        .env_remove("KILN_IMAGE_DIR")
        .args(["doctor"])
        .args(args)
        .output()
        .expect("running kiln doctor")
}

#[test]
fn a_fresh_directory_passes_with_one_line_per_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = doctor(
        dir.path(),
        &["--json", "--listen", "127.0.0.1:0", "--min-free-gib", "0"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for wanted in [
        "interfaces",
        "dhcp segment",
        "database",
        "clock",
        "disk",
        "ramdisk",
        "ipxe",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    for check in report["checks"].as_array().unwrap() {
        assert!(
            ["pass", "warn", "skip"].contains(&check["status"].as_str().unwrap()),
            "{check}"
        );
        assert!(!check["detail"].as_str().unwrap().is_empty(), "{check}");
    }
    assert!(
        !dir.path().join("kiln.db").exists(),
        "doctor must not create the database"
    );
}

#[test]
fn a_taken_port_and_missing_assets_fail_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let assets = dir.path().join("assets");
    std::fs::create_dir(&assets).unwrap();
    let out = doctor(
        dir.path(),
        &[
            "--listen",
            &addr,
            "--min-free-gib",
            "0",
            "--boot-assets",
            assets.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL") && l.contains(&addr) && l.contains("in use")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("ramdisk") && l.contains("vmlinuz")),
        "{text}"
    );
    assert!(text.contains("2 failed"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 preflight check(s) failed"));
}
