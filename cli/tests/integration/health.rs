//! `kiln health …` end to end through the binary: exit codes, the nccl-parse JSON contract, NVML checks against
//! fake-nvml, and signing then verifying an acceptance record.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("KILN_NVML_LIB")
        .env_remove("KILN_FAKE_NVML_SCENARIO")
        .output()
        .expect("run kiln")
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../healthchecks/tests/fixtures")
        .join(rel)
}

fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn nccl_parse_json_follows_the_contract() {
    let file = fixture("nccl/all_reduce_h100_2node.txt");
    let out = kiln(&[
        "health",
        "nccl-parse",
        file.to_str().expect("utf8"),
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    assert_eq!(v["collective"], "all_reduce");
    assert_eq!(v["nccl_version"], "2.19.3");
    assert_eq!(v["ranks"], 16);
    assert_eq!(v["hosts"], serde_json::json!(["host-01", "host-02"]));
    assert_eq!(v["rows"][0]["size_bytes"], 8);
    assert_eq!(v["rows"][0]["redop"], "sum");
    assert_eq!(v["rows"][0]["root"], -1);
    assert!(v["rows"][0]["out_of_place"]["busbw_gbps"].is_f64());
    assert_eq!(v["rows"][0]["in_place"]["wrong"], 0);
    assert_eq!(v["out_of_bounds"], 0);
    assert_eq!(v["errors"], serde_json::json!([]));
}

#[test]
fn nccl_parse_exits_1_on_non_nccl_input_and_2_on_usage_errors() {
    let out = kiln(&[
        "health",
        "nccl-parse",
        fixture("nccl/not_nccl.txt").to_str().expect("utf8"),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not nccl-tests output"));
    assert_eq!(kiln(&["health", "nccl-parse"]).status.code(), Some(2));
    assert_eq!(
        kiln(&["health", "nccl-parse", "/nonexistent/file"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn check_against_fake_nvml_passes_healthy_and_fails_faults_with_exit_1() {
    let lib = find_fake_nvml();
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("libnvidia-ml.so");
    std::fs::copy(&lib, &copy).expect("copy");
    let scenario =
        std::fs::read_to_string(fixture("scenarios/h100-healthy.toml")).expect("scenario");
    std::fs::write(dir.path().join("fake-nvml-scenario.toml"), &scenario).expect("write");
    let copy_s = copy.to_str().expect("utf8");

    // --sku left out: detected from the GPU name.
    let out = kiln(&["health", "check", "--nvml-lib", copy_s, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = stdout_json(&out);
    assert_eq!(v["sku"], "h100-sxm-80gb");
    assert_eq!(v["kind"], "nvml_check");

    std::fs::write(
        dir.path().join("fake-nvml-scenario.toml"),
        format!("{scenario}\n[[fault]]\nkind = \"nvlink_down\"\ngpu = 4\nlink = 5\n"),
    )
    .expect("write");
    let out = kiln(&[
        "health",
        "check",
        "--nvml-lib",
        copy_s,
        "--sku",
        "h100-sxm-80gb",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8_lossy(&out.stdout);
    let first_row = table.lines().nth(2).expect("a row after the headers");
    assert!(
        first_row.starts_with("FAIL") && first_row.contains("nvlink.active"),
        "failing first:\n{table}"
    );
}

#[test]
fn check_without_nvml_is_a_clear_failure() {
    let out = kiln(&[
        "health",
        "check",
        "--nvml-lib",
        "/nonexistent/libnvidia-ml.so.1",
        "--sku",
        "h100-sxm-80gb",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = stdout_json(&out);
    assert_eq!(v["checks"][0]["name"], "nvml.available");
    assert_eq!(v["checks"][0]["status"], "fail");
}

#[test]
fn keygen_sign_verify_and_tamper() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("site.ed25519");
    let out = kiln(&["health", "keygen", "--out", key.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(public.len(), 64);

    let verdict = dir.path().join("verdict.json");
    let check = kiln(&[
        "health",
        "check",
        "--nvml-lib",
        "/nonexistent/lib.so",
        "--sku",
        "h100-sxm-80gb",
        "--json",
    ]);
    std::fs::write(&verdict, &check.stdout).expect("write verdict");
    let signed = kiln(&[
        "health",
        "sign",
        "--signing-key",
        key.to_str().expect("utf8"),
        "--node",
        "SN-1",
        "--sku",
        "h100-sxm-80gb",
        verdict.to_str().expect("utf8"),
    ]);
    assert_eq!(
        signed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let record = dir.path().join("record.json");
    std::fs::write(&record, &signed.stdout).expect("write record");

    let ok = kiln(&[
        "health",
        "verify",
        record.to_str().expect("utf8"),
        "--public-key",
        &public,
        "--json",
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v = stdout_json(&ok);
    assert_eq!(
        (v["valid"].clone(), v["node"].clone()),
        (serde_json::json!(true), serde_json::json!("SN-1"))
    );
    assert_eq!(
        v["all_verdicts_passed"], false,
        "the signed verdict recorded missing NVML"
    );

    let tampered = String::from_utf8_lossy(&signed.stdout).replace("SN-1", "SN-2");
    std::fs::write(&record, tampered).expect("write");
    let bad = kiln(&[
        "health",
        "verify",
        record.to_str().expect("utf8"),
        "--public-key",
        &public,
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("signature does not match"));
}

/// The fake-nvml library built into the workspace target dir (a dev-dependency of this crate).
fn find_fake_nvml() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    let deps = exe.parent().expect("deps");
    [
        deps.join("libnvidia_ml.so"),
        deps.join("../libnvidia_ml.so"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .expect("fake-nvml library built as a dev-dependency")
}

#[test]
fn nccl_runs_the_command_judges_it_and_exits_by_verdict() {
    let healthy = fixture("nccl/all_reduce_h100_1node.txt");
    let out = kiln(&[
        "health",
        "nccl",
        "--hosts",
        "host-01",
        "--sku",
        "h100-sxm-80gb",
        "--json",
        "--command",
        "cat",
        healthy.to_str().expect("utf8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stdout_json(&out)["kind"], "nccl");

    let degraded = fixture("nccl/all_reduce_h100_degraded.txt");
    let out = kiln(&[
        "health",
        "nccl",
        "--hosts",
        "host-09",
        "--sku",
        "h100-sxm-80gb",
        "--command",
        "cat",
        degraded.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nccl.busbw"));

    // SSH needs both a key and pinned host keys.
    let out = kiln(&[
        "health",
        "nccl",
        "--hosts",
        "a,b",
        "--sku",
        "h100-sxm-80gb",
        "--ssh-key",
        "/tmp/k",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_records_its_verdict_as_a_health_run_of_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("kiln.db").display());
    let key = dir.path().join("kiln.key");
    let key_s = key.to_str().expect("utf8");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hall-a.csv");
    let import = kiln(&[
        "--db",
        &db,
        "--key-file",
        key_s,
        "rack",
        "import",
        manifest.to_str().expect("utf8"),
    ]);
    assert_eq!(
        import.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );

    let out = kiln(&[
        "--db",
        &db,
        "--key-file",
        key_s,
        "health",
        "check",
        "--sku",
        "h100-sxm-80gb",
        "--nvml-lib",
        "/nonexistent/libnvidia-ml.so.1",
        "--record",
        "KLN-A01-01",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failing verdict is still recorded, then exits 1"
    );

    let show = kiln(&[
        "--db",
        &db,
        "--key-file",
        key_s,
        "--json",
        "node",
        "show",
        "KLN-A01-01",
    ]);
    assert_eq!(
        show.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let v = stdout_json(&show);
    let runs = v["health_runs"].as_array().expect("health runs");
    assert_eq!(runs.len(), 1, "{v}");
    assert_eq!(runs[0]["kind"], "nvml");
    assert_eq!(runs[0]["passed"], false);
    assert_eq!(runs[0]["evidence"]["checks"][0]["name"], "nvml.available");

    let unknown = kiln(&[
        "--db",
        &db,
        "--key-file",
        key_s,
        "health",
        "check",
        "--sku",
        "h100-sxm-80gb",
        "--nvml-lib",
        "/x.so",
        "--record",
        "NO-SUCH-NODE",
    ]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("NO-SUCH-NODE"));
}

#[test]
fn burn_in_collects_then_judges_and_exits_by_the_judgement() {
    let lib = find_fake_nvml();
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("libnvidia-ml.so");
    std::fs::copy(&lib, &copy).expect("copy");
    let scenario =
        std::fs::read_to_string(fixture("scenarios/h100-healthy.toml")).expect("scenario");
    std::fs::write(dir.path().join("fake-nvml-scenario.toml"), &scenario).expect("write");
    let tool = fixture("fake-stress.sh");
    let load = dir.path().join("under-load");
    let burn = |mode: &str| {
        kiln(&[
            "--json",
            "health",
            "burn-in",
            "--nvml-lib",
            copy.to_str().expect("utf8"),
            "--sku",
            "h100-sxm-80gb",
            "--duration",
            "1",
            "--",
            tool.to_str().expect("utf8"),
            load.to_str().expect("utf8"),
            "{duration_s}",
            mode,
        ])
    };
    let out = burn("ok");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = stdout_json(&out);
    assert_eq!(v["kind"], "burn_in");
    let digest = v["evidence"]["evidence_sha256"].as_str().expect("digest");
    assert_eq!(digest.len(), 64, "{digest}");
    let out = burn("exit1");
    assert_eq!(out.status.code(), Some(1));
    let v = stdout_json(&out);
    assert_eq!(v["checks"][0]["name"], "burnin.exit_status", "{v}");
}
