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
                "virtual_media",
                // An extension: what could not be read, empty on a healthy BMC.
                "warnings"
            ]
        );
        assert_eq!(value["warnings"], serde_json::json!([]));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_records_power_states_in_the_inventory() {
    let fleet = fleet().await;
    fleet.endpoints()[1]
        .bmc
        .force_power(kiln_bmc::PowerState::On);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("kiln.db").display());
    let key_file = dir.path().join("site.key").display().to_string();
    let ipmi_port = fleet.endpoints()[2].ipmi_port.expect("IPMI half");
    // A port nothing listens on: bound then released.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let manifest = format!(
        "hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n\
         H1,R1,0,SWEEP-0,h100-sxm-80gb,{},redfish,admin,password,02:00:00:00:01:00\n\
         H1,R1,1,SWEEP-1,h100-sxm-80gb,{},redfish,admin,password,02:00:00:00:01:01\n\
         H1,R1,2,SWEEP-2,h100-sxm-80gb,127.0.0.1:{ipmi_port},ipmi,admin,password,02:00:00:00:01:02\n\
         H1,R1,3,SWEEP-3,h100-sxm-80gb,http://127.0.0.1:{dead_port},redfish,admin,password,02:00:00:00:01:03\n",
        fleet.endpoints()[0].redfish_url,
        fleet.endpoints()[1].redfish_url,
    );
    let manifest_path = dir.path().join("rack.csv");
    std::fs::write(&manifest_path, manifest).expect("manifest");
    let global = |head: &[&str]| {
        let mut all: Vec<String> = head.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--db".into(),
            db.clone(),
            "--key-file".into(),
            key_file.clone(),
        ]);
        all
    };
    let out = kiln(
        global(&["rack", "import", &manifest_path.display().to_string()]),
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = kiln(
        global(&["bmc", "sweep", "--json", "--timeout-s", "5"]),
        None,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "one BMC is down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sweep: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sweep JSON");
    assert_eq!(sweep["ok"].as_array().map(Vec::len), Some(3), "{sweep}");

    let show = |serial: &'static str| {
        let args = global(&["node", "show", serial, "--json"]);
        async move {
            let out = kiln(args, None).await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("node JSON")
        }
    };
    for (serial, power) in [("SWEEP-0", "off"), ("SWEEP-1", "on"), ("SWEEP-2", "off")] {
        let node = show(serial).await;
        let status = &node["bmc_status"];
        assert_eq!(status["power_state"], power, "{serial}: {status}");
        assert_eq!(status["reachable"], true, "{serial}: {status}");
        assert!(status["power_seen_at"].is_string(), "{status}");
        assert_eq!(
            node["node"]["state"], "enrolled",
            "a sweep leaves the lifecycle alone"
        );
    }
    let node = show("SWEEP-3").await;
    let status = &node["bmc_status"];
    assert_eq!(status["reachable"], false, "{status}");
    assert_eq!(status["power_state"], serde_json::Value::Null);
    assert_eq!(status["error_kind"], "connect", "{status}");
    let out = kiln(global(&["node", "show", "SWEEP-1"]), None).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bmc seen   power on at"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_and_bios_json_have_the_contract_keys_and_bios_set_says_when() {
    let fleet = fleet().await;
    let out = kiln(
        args(&["bmc", "firmware", "--json"], target(&fleet, 0)),
        Some("password"),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let firmware: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let components = firmware["components"].as_array().expect("components");
    assert_eq!(components.len(), 4, "{firmware}");
    for component in components {
        for key in ["id", "name", "version", "updateable"] {
            assert!(component.get(key).is_some(), "{key} missing: {component}");
        }
    }
    let table = kiln(
        args(&["bmc", "firmware"], target(&fleet, 0)),
        Some("password"),
    )
    .await;
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table.contains("VERSION") && table.contains("NIC.Slot.1"),
        "{table}"
    );

    let set = kiln(
        args(
            &[
                "bmc",
                "bios",
                "set",
                "LogicalProc=Disabled",
                "BootMode=Uefi",
            ],
            target(&fleet, 0),
        ),
        Some("password"),
    )
    .await;
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let said = String::from_utf8_lossy(&set.stdout).to_string();
    assert!(
        said.contains("1 change(s) (LogicalProc)") && said.contains("at the next reset"),
        "{said}"
    );
    let out = kiln(
        args(&["bmc", "bios", "--json"], target(&fleet, 0)),
        Some("password"),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bios: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(bios["attributes"]["LogicalProc"], "Enabled", "{bios}");
    assert_eq!(bios["pending"]["LogicalProc"], "Disabled", "{bios}");
    let bad = kiln(
        args(&["bmc", "bios", "set", "NoSuchKnob=1"], target(&fleet, 0)),
        Some("password"),
    )
    .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("NoSuchKnob"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let usage = kiln(
        args(&["bmc", "bios", "set", "novalue"], target(&fleet, 0)),
        Some("password"),
    )
    .await;
    assert_eq!(usage.status.code(), Some(2));
}
