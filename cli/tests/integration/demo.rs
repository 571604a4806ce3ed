//! `kiln demo --json`: the whole story on a small hall, and the contract line tools parse.

/// Runs `kiln demo --json ARGS` in a fresh directory; returns the directory and the contract line, parsed.
fn demo(args: &[&str]) -> (tempfile::TempDir, serde_json::Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir.path())
        .env_remove(kiln_inventory::SECRET_KEY_ENV)
        .args(["demo", "--json"])
        .args(args)
        .output()
        .expect("kiln demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("output");
    let summary = serde_json::from_str(last).expect("the last line is JSON");
    (dir, summary)
}

#[test]
fn demo_json_last_line_is_the_contract() {
    let (dir, summary) = demo(&[
        "--nodes",
        "16",
        "--faults",
        "dead_bmc=0.07,wrong_gpu_count=0.07,erase_fails=0.07",
        "--timeout-s",
        "150",
    ]);
    assert_eq!(summary["nodes"], 16);
    let available = summary["available"].as_u64().expect("available");
    let quarantined = summary["quarantined"].as_u64().expect("quarantined");
    assert_eq!(available + quarantined, 16, "{summary}");
    assert!(quarantined >= 2, "planted faults quarantined: {summary}");
    assert_eq!(summary["leased"].as_u64(), Some(available), "{summary}");
    let reasons = summary["quarantine_reasons"].as_object().expect("reasons");
    assert_eq!(reasons.len() as u64, quarantined);
    assert!(
        reasons.values().all(|r| {
            let r = r.as_str().unwrap_or_default();
            r.starts_with("BMC unreachable") || r.starts_with("hardware does not match the SKU")
        }),
        "{reasons:?}"
    );
    assert_eq!(summary["lessee"], "demo-lessee");
    assert!(summary["elapsed_s"].as_f64().is_some_and(|s| s > 0.0));
    // The turnover: every leased node released; all but the erase-fails one erased, re-verified and leased to
    // the next lessee; that one goes down the wipe ladder to quarantine and is not handed over.
    let turnover = &summary["turnover"];
    let count = |key: &str| turnover[key].as_u64();
    assert_eq!(count("released"), Some(available), "{summary}");
    assert_eq!(count("wiped"), Some(available - 1), "{summary}");
    assert_eq!(count("reverified"), Some(available - 1), "{summary}");
    assert_eq!(count("leased_again"), Some(available - 1), "{summary}");
    assert_eq!(turnover["lessee"], "demo-lessee-2");
    let at_turnover = turnover["quarantine_reasons"].as_object().expect("reasons");
    assert_eq!(at_turnover.len(), 1, "{summary}");
    let (bad_disk_node, reason) = at_turnover.iter().next().expect("one");
    let reason = reason.as_str().unwrap_or_default();
    assert!(reason.contains("erase failed"), "{bad_disk_node}: {reason}");
    let erase = &turnover["erase"];
    assert!(
        erase["failed"].as_u64().is_some_and(|n| n >= 1),
        "{summary}"
    );
    // Two disks per erased node by overwrite, and the erase-fails node's OS disk in its failed runs.
    assert!(
        erase["methods"]["overwrite"]
            .as_u64()
            .is_some_and(|n| n >= 2 * (available - 1)),
        "{summary}"
    );
    // The sim nodes' disk files were erased by the agent's overwrite: no byte of the tenant's data is left
    // on the data disks of the erased nodes (re-imaging rewrites only the OS disk).
    let mut data_disks = 0;
    for node in std::fs::read_dir(dir.path().join("kiln-demo/disks")).expect("disks dir") {
        let node = node.expect("entry").path();
        let data = node.join("nvme1n1");
        if !data.exists() || node.ends_with(bad_disk_node) {
            continue;
        }
        data_disks += 1;
        assert!(
            !kiln_sim::disks::holds_tenant_data(&data).expect("read"),
            "{} holds tenant data",
            data.display()
        );
        let bytes = std::fs::read(&data).expect("read");
        assert!(
            bytes.iter().all(|b| *b == 0),
            "{} not zeroed",
            data.display()
        );
    }
    assert_eq!(
        data_disks,
        available - 1,
        "one erased data disk per erased node"
    );
    // The database stays for inspection.
    assert!(dir.path().join("kiln-demo/kiln.db").exists());
}

/// BMC fault injection: 10% of every BMC request fails on all but the dead BMCs, 4% of BMCs are dead. Every
/// healthy node ends available; the dead ones are quarantined as "BMC unreachable" after the policy's attempts.
#[test]
fn transient_bmc_errors_pass_and_dead_bmcs_are_quarantined() {
    let (_dir, summary) = demo(&[
        "--nodes",
        "50",
        "--no-ssh",
        "--no-turnover",
        "--faults",
        "flaky_bmc=0.96,flaky_error_rate=0.1,dead_bmc=0.04",
        "--timeout-s",
        "170",
    ]);
    let reasons = summary["quarantine_reasons"].as_object().expect("reasons");
    assert_eq!(
        reasons.len(),
        2,
        "the two dead BMCs and nothing else: {summary}"
    );
    for (serial, reason) in reasons {
        let reason = reason.as_str().unwrap_or_default();
        assert!(reason.starts_with("BMC unreachable"), "{serial}: {reason}");
        assert!(
            reason.contains("after 2 remediation attempts"),
            "{serial}: {reason}"
        );
    }
    assert_eq!(summary["available"], 48, "{summary}");
    assert!(
        summary.get("turnover").is_none(),
        "--no-turnover: {summary}"
    );
}
