//! `kiln bench erase`: argument checks, and (as root) one small run on a loop device with its JSON shape and
//! the device detached afterwards.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn kiln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
}

#[test]
fn bad_sizes_and_rounds_are_usage_errors() {
    for args in [["--size-mb", "0"], ["--size-mb", "lots"], ["--rounds", "0"]] {
        let out = kiln()
            .args(["bench", "erase"])
            .args(args)
            .output()
            .expect("kiln runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
    }
}

#[test]
fn a_run_on_a_loop_device_prints_both_throughputs_and_detaches_the_device() {
    let dir = tempfile::tempdir().expect("dir");
    let out = kiln()
        .args([
            "bench",
            "erase",
            "--json",
            "--size-mb",
            "32",
            "--rounds",
            "1",
        ])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let uid = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    if uid != 0 {
        eprintln!("skipped the loop device run: not root (uid {uid}); checking the error instead");
        assert!(!out.status.success());
        assert!(stderr.contains("needs root"), "{stderr}");
        return;
    }
    if Command::new("losetup").arg("--version").output().is_err() {
        eprintln!("skipped: losetup is not installed");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().expect("a JSON line");
    let bench: serde_json::Value = serde_json::from_str(line).expect("JSON");
    assert_eq!(bench["size_mb"], 32);
    assert_eq!(bench["rounds"], 1);
    for key in ["kiln_mib_s", "dd_mib_s", "ratio", "dd_fsync_mib_s"] {
        assert!(
            bench[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {bench}"
        );
    }
    let device = bench["device"].as_str().expect("device");
    assert!(device.starts_with("/dev/loop"), "{device}");
    // Detached: no loop device is backed by a file under the scratch directory any more.
    let listed = Command::new("losetup")
        .arg("-a")
        .output()
        .expect("losetup -a");
    let listed = String::from_utf8_lossy(&listed.stdout);
    let scratch = dir.path().display().to_string();
    assert!(!listed.contains(&scratch), "still attached: {listed}");
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "the scratch file is removed"
    );
}
