//! The `kiln bmc` contract (other tools parse this output) against a simulated fleet started in the test.

use std::process::Output;

use kiln_bmc_sim::{SimFleet, SimFleetConfig, Timing};

async fn kiln(args: Vec<String>, password: Option<&str>) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.args(&args).env_remove("KILN_BMC_PASSWORD");
    if let Some(password) = password {
        command.env("TEST_BMC_PASSWORD", password);
    }
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("kiln runs")
}

fn target(fleet: &SimFleet, index: usize) -> Vec<String> {
    let endpoint = &fleet.endpoints()[index];
    let fingerprint = endpoint.fingerprint.map(|f| f.to_string()).expect("https");
    [
        "--redfish",
        &endpoint.redfish_url,
        "--fingerprint",
        &fingerprint,
        "--password-env",
        "TEST_BMC_PASSWORD",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn args(head: &[&str], tail: Vec<String>) -> Vec<String> {
    head.iter().map(|s| s.to_string()).chain(tail).collect()
}

async fn fleet() -> SimFleet {
    let timing = Timing {
        power_on: std::time::Duration::ZERO,
        ..Timing::default()
    };
    SimFleet::start(SimFleetConfig {
        count: 4,
        timing,
        ..SimFleetConfig::default()
    })
    .await
    .expect("fleet")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_status_prints_on_or_off() {
    let fleet = fleet().await;
    let out = kiln(
        args(&["bmc", "power", "status"], target(&fleet, 0)),
        Some("password"),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Off\n");
    let out = kiln(
        args(&["bmc", "power", "on"], target(&fleet, 0)),
        Some("password"),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kiln(
        args(&["bmc", "power", "status"], target(&fleet, 0)),
        Some("password"),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "On\n");
    // The same over IPMI.
    let port = fleet.endpoints()[1].ipmi_port.expect("IPMI half");
    let ipmi = vec![
        "--ipmi".to_string(),
        format!("127.0.0.1:{port}"),
        "--password-env".into(),
        "TEST_BMC_PASSWORD".into(),
    ];
    let out = kiln(args(&["bmc", "power", "status"], ipmi), Some("password")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Off\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_json_has_the_contract_keys() {
    let fleet = fleet().await;
    for index in 0..4 {
        let out = kiln(
            args(&["bmc", "inspect", "--json"], target(&fleet, index)),
            Some("password"),
        )
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("one JSON object");
        let mut keys: Vec<&str> = value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "boot_mode",
                "boot_targets",
                "manufacturer",
                "model",
                "power_state",
                "reset_types",
                "serial",
                "virtual_media"
            ]
        );
        assert_eq!(value["power_state"], "Off");
        let slot = &value["virtual_media"][0];
        for key in ["id", "inserted", "image", "insert_supported"] {
            assert!(slot.get(key).is_some(), "{key} missing in {slot}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_exit_1_and_usage_errors_exit_2() {
    let fleet = fleet().await;
    let out = kiln(args(&["bmc", "power", "status"], target(&fleet, 0)), None).await;
    assert_eq!(out.status.code(), Some(1), "missing password variable");
    assert!(String::from_utf8_lossy(&out.stderr).contains("TEST_BMC_PASSWORD"));
    let out = kiln(
        args(&["bmc", "power", "status"], target(&fleet, 0)),
        Some("wrong"),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rejected the credentials"));
    let mut wrong_pin = target(&fleet, 0);
    wrong_pin[3] = "ab".repeat(32);
    let out = kiln(
        args(&["bmc", "power", "status"], wrong_pin),
        Some("password"),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is pinned"));
    let out = kiln(
        args(&["bmc", "power", "sideways"], target(&fleet, 0)),
        Some("password"),
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let out = kiln(
        vec!["bmc".into(), "power".into(), "status".into()],
        Some("password"),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "no BMC named");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_once_pxe_reaches_the_bmc() {
    let fleet = fleet().await;
    let out = kiln(
        args(
            &["bmc", "boot", "pxe", "--once", "--uefi"],
            target(&fleet, 2),
        ),
        Some("password"),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let boot = fleet.endpoints()[2].bmc.lock().boot.clone();
    assert_eq!(
        (
            boot.enabled.as_str(),
            boot.target.as_str(),
            boot.mode.as_str()
        ),
        ("Once", "Pxe", "UEFI")
    );
}
