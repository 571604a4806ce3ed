//! `kiln health xid-scan` and `kiln health dcgm-parse` through the binary: JSON contracts and exit codes
//! (0 healthy, 1 fails the node, 2 unreadable input).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(rel: &str) -> String {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../healthchecks/tests/fixtures")
        .join(rel);
    path.to_str().expect("utf8 path").to_string()
}

fn kiln(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kiln");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or_default())
        .expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("kiln output")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn xid_scan_json_contract_and_exit_1_on_a_failing_event() {
    let out = kiln(
        &[
            "health",
            "xid-scan",
            &fixture("kernlog/dmesg_seconds.txt"),
            "--json",
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["lines_read"], 10);
    assert_eq!(v["unparsed"], 1);
    let first = &v["events"][0];
    assert_eq!(first["kind"], "xid");
    assert_eq!(first["pci"], "0000:18:00");
    assert_eq!(first["code"], 79);
    assert_eq!(first["timestamp"], "812.123456");
    assert_eq!(first["action"], "rma");
    assert_eq!(first["meaning"], "GPU has fallen off the bus");
    assert!(String::from_utf8_lossy(&out.stderr).contains("fail the node"));
}

#[test]
fn xid_scan_reads_stdin_and_exits_0_on_notes_only() {
    let log = b"[ 10.5] NVRM: Xid (PCI:0000:2a:00): 13, pid=1, name=python3, Graphics Exception\n\
                nvidia-nvswitch0: SXid (PCI:0000:86:00.0): 12028, Non-fatal, Link 3 egress non-posted PRIV error\n";
    for args in [
        &["health", "xid-scan", "--json"][..],
        &["health", "xid-scan", "-", "--json"][..],
    ] {
        let out = kiln(args, Some(log));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = json(&out);
        assert_eq!(v["events"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["events"][1]["kind"], "sxid");
        assert_eq!(v["events"][1]["fatal"], false);
        assert_eq!(v["events"][1]["action"], "note");
    }
    let text = kiln(&["health", "xid-scan"], Some(log));
    assert_eq!(text.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("SXid 12028 at 0000:86:00.0 non-fatal"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 event(s), 0 failing the node"),
        "{stdout}"
    );
}

#[test]
fn xid_scan_exits_2_on_an_unreadable_file() {
    let out = kiln(&["health", "xid-scan", "/nonexistent/kern.log"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading /nonexistent/kern.log"));
}

#[test]
fn dcgm_parse_json_and_exit_codes() {
    let pass = kiln(
        &[
            "health",
            "dcgm-parse",
            &fixture("dcgm/v4_pass_r3.json"),
            "--level",
            "3",
            "--json",
        ],
        None,
    );
    assert_eq!(
        pass.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pass.stderr)
    );
    let v = json(&pass);
    assert_eq!(v["passed"], true);
    assert_eq!(v["diag"]["format"], "entity");
    assert_eq!(v["diag"]["level"], 3);
    assert!(
        v["checks"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "dcgm.memory"))
    );

    let fail = kiln(
        &[
            "health",
            "dcgm-parse",
            &fixture("dcgm/v4_memory_fail.json"),
            "--json",
        ],
        None,
    );
    assert_eq!(fail.status.code(), Some(1));
    let v = json(&fail);
    assert_eq!(v["passed"], false);
    let mem = v["checks"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["name"] == "dcgm.memory" && c["subject"] == "gpu3")
        })
        .expect("gpu3 memory check");
    assert_eq!(mem["status"], "fail");
    assert_eq!(mem["measured"]["errors"][0], "DCGM_FR_FAULTY_MEMORY");

    let legacy = kiln(
        &["health", "dcgm-parse", &fixture("dcgm/v3_fail.json")],
        None,
    );
    assert_eq!(legacy.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&legacy.stdout).contains("DCGM_FR_PCIE_GENERATION"));

    let short = kiln(
        &[
            "health",
            "dcgm-parse",
            &fixture("dcgm/v4_four_gpus.json"),
            "--gpus",
            "8",
        ],
        None,
    );
    assert_eq!(short.status.code(), Some(1), "4 of 8 GPUs");

    for bad in ["dcgm/truncated.json", "dcgm/garbage.txt"] {
        let out = kiln(&["health", "dcgm-parse", &fixture(bad)], None);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("truncated or malformed"),
            "{bad}"
        );
    }
    assert_eq!(
        kiln(&["health", "dcgm-parse", "/nonexistent.json"], None)
            .status
            .code(),
        Some(2)
    );
}
