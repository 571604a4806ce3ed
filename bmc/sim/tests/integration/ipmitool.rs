//! Real `ipmitool -I lanplus` against the simulator's RMCP+ responder (CI installs Debian's `ipmitool`).

use std::process::Command;

use kiln_bmc::PowerState;
use kiln_bmc_sim::{Faults, SimEventKind, SimFleet, SimFleetConfig, Timing};

/// Runs ipmitool against `port` on a blocking thread; returns (success, stdout + stderr).
async fn ipmitool(port: u16, password: &str, args: &[&str]) -> (bool, String) {
    let mut command = Command::new("ipmitool");
    command.args([
        "-I",
        "lanplus",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "admin",
        "-P",
        password,
    ]);
    command.args(["-C", "3", "-N", "1", "-R", "2"]).args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("ipmitool must be installed (apt-get install ipmitool)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn fleet() -> SimFleet {
    SimFleet::start(SimFleetConfig {
        timing: Timing {
            power_on: std::time::Duration::ZERO,
            ..Timing::default()
        },
        ..SimFleetConfig::default()
    })
    .await
    .expect("fleet")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_power_status_on_off_cycle() {
    let fleet = fleet().await;
    let endpoint = &fleet.endpoints()[0];
    let port = endpoint.ipmi_port.expect("IPMI half");
    let mut events = fleet.subscribe();
    let (ok, text) = ipmitool(port, "password", &["power", "status"]).await;
    assert!(ok, "{text}");
    assert!(text.contains("Chassis Power is off"), "{text}");
    let (ok, text) = ipmitool(port, "password", &["power", "on"]).await;
    assert!(ok, "{text}");
    assert!(matches!(
        events.recv().await.expect("event").kind,
        SimEventKind::PoweredOn { .. }
    ));
    assert_eq!(endpoint.bmc.power(), PowerState::On);
    let (ok, text) = ipmitool(port, "password", &["power", "status"]).await;
    assert!(ok && text.contains("Chassis Power is on"), "{text}");
    let (ok, text) = ipmitool(port, "password", &["power", "cycle"]).await;
    assert!(ok, "{text}");
    assert_eq!(
        events.recv().await.expect("off").kind,
        SimEventKind::PoweredOff
    );
    let (ok, text) = ipmitool(port, "password", &["power", "off"]).await;
    assert!(ok, "{text}");
    assert_eq!(endpoint.bmc.power(), PowerState::Off);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_chassis_bootdev_pxe() {
    let fleet = fleet().await;
    let endpoint = &fleet.endpoints()[0];
    let port = endpoint.ipmi_port.expect("IPMI half");
    let (ok, text) = ipmitool(port, "password", &["chassis", "bootdev", "pxe"]).await;
    assert!(ok, "{text}");
    let boot = endpoint.bmc.lock().boot.clone();
    assert_eq!(
        (boot.enabled.as_str(), boot.target.as_str()),
        ("Once", "Pxe"),
        "{text}"
    );
    let (ok, text) = ipmitool(
        port,
        "password",
        &["chassis", "bootdev", "disk", "options=persistent,efiboot"],
    )
    .await;
    assert!(ok, "{text}");
    let boot = endpoint.bmc.lock().boot.clone();
    assert_eq!(
        (
            boot.enabled.as_str(),
            boot.target.as_str(),
            boot.mode.as_str()
        ),
        ("Continuous", "Hdd", "UEFI")
    );
    let (ok, text) = ipmitool(port, "password", &["mc", "info"]).await;
    assert!(ok && text.contains("IPMI Version"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_with_a_wrong_password_or_cipher_zero_is_refused() {
    let fleet = fleet().await;
    let endpoint = &fleet.endpoints()[0];
    let port = endpoint.ipmi_port.expect("IPMI half");
    let (ok, text) = ipmitool(port, "wrong", &["power", "status"]).await;
    assert!(!ok, "{text}");
    let mut command = Command::new("ipmitool");
    command.args([
        "-I",
        "lanplus",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "admin",
        "-P",
        "password",
    ]);
    command.args(["-C", "0", "-N", "1", "-R", "1", "power", "status"]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("ipmitool");
    assert!(!output.status.success(), "cipher suite 0 must be refused");
    endpoint.bmc.set_faults(Faults {
        wrong_credentials: true,
        ..Faults::default()
    });
    let (ok, text) = ipmitool(port, "password", &["power", "status"]).await;
    assert!(!ok, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_fru_print_reads_the_simulated_fru() {
    let fleet = fleet().await;
    let endpoint = &fleet.endpoints()[0];
    let port = endpoint.ipmi_port.expect("IPMI half");
    let (ok, text) = ipmitool(port, "password", &["fru", "print", "0"]).await;
    assert!(ok, "{text}");
    let serial = &endpoint.bmc.serial;
    let profile = endpoint.bmc.profile;
    for (label, value) in [
        ("Chassis Serial", serial.as_str()),
        ("Product Serial", serial.as_str()),
        ("Product Name", profile.model),
        ("Product Manufacturer", profile.manufacturer),
        ("Board Mfg", profile.manufacturer),
    ] {
        let found = text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim() == label)
            .map(|(_, found)| found.trim());
        assert_eq!(found, Some(value), "{label}:\n{text}");
    }
    // ipmitool checks every area's checksum and says so when one is wrong.
    assert!(!text.to_ascii_lowercase().contains("checksum"), "{text}");
    assert!(text.contains("Board Mfg Date"), "{text}");
}
