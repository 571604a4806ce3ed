//! The IPMI client (ipmi-rs + kiln's commands) against kiln's simulated RMCP+ BMC.

use std::time::Duration;

use kiln_bmc::ipmi::IpmiClient;
use kiln_bmc::{
    Bmc, BmcError, BootDevice, BootMode, BootOverride, Credentials, PowerAction, PowerState,
};
use kiln_bmc_sim::{SimEventKind, SimFleet, SimFleetConfig, Timing};

async fn fleet() -> SimFleet {
    let timing = Timing {
        power_on: Duration::ZERO,
        graceful_off: Duration::ZERO,
        task: Duration::ZERO,
    };
    SimFleet::start(SimFleetConfig {
        timing,
        ..SimFleetConfig::default()
    })
    .await
    .expect("fleet")
}

fn client(fleet: &SimFleet, password: &str) -> IpmiClient {
    let port = fleet.endpoints()[0].ipmi_port.expect("IPMI half");
    IpmiClient::new(
        "127.0.0.1",
        port,
        Credentials::new("admin", password),
        Duration::from_millis(500),
    )
    .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_status_on_off_cycle_over_ipmi() {
    let fleet = fleet().await;
    let bmc = fleet.endpoints()[0].bmc.clone();
    let mut events = fleet.subscribe();
    let client = client(&fleet, "password");
    assert_eq!(client.power_state().await.expect("status"), PowerState::Off);
    client
        .set_power(PowerAction::On)
        .await
        .expect("on (needs the administrator privilege)");
    assert!(matches!(
        events.recv().await.expect("event").kind,
        SimEventKind::PoweredOn { .. }
    ));
    assert_eq!(client.power_state().await.expect("status"), PowerState::On);
    client.set_power(PowerAction::Cycle).await.expect("cycle");
    assert_eq!(
        events.recv().await.expect("off").kind,
        SimEventKind::PoweredOff
    );
    client.set_power(PowerAction::ForceOff).await.expect("off");
    assert_eq!(bmc.power(), PowerState::Off);
    client
        .set_power(PowerAction::ForceOff)
        .await
        .expect("off when off is a no-op");
    let inventory = client.inventory().await.expect("device id and FRU");
    assert_eq!(inventory.bmc_firmware_version.as_deref(), Some("2.10"));
    assert_eq!(inventory.serial.as_deref(), Some(bmc.serial.as_str()));
    assert_eq!(inventory.model.as_deref(), Some(bmc.profile.model));
    assert_eq!(
        inventory.manufacturer.as_deref(),
        Some(bmc.profile.manufacturer)
    );
    let inspection = client.inspect().await.expect("inspect");
    assert_eq!(inspection.serial.as_deref(), Some(bmc.serial.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_device_over_ipmi() {
    let fleet = fleet().await;
    let bmc = fleet.endpoints()[0].bmc.clone();
    let client = client(&fleet, "password");
    client
        .set_boot(BootOverride {
            device: BootDevice::Pxe,
            once: true,
            mode: Some(BootMode::Uefi),
        })
        .await
        .expect("pxe");
    let boot = bmc.lock().boot.clone();
    assert_eq!(
        (
            boot.enabled.as_str(),
            boot.target.as_str(),
            boot.mode.as_str()
        ),
        ("Once", "Pxe", "UEFI")
    );
    let inspection = client.inspect().await.expect("inspect");
    assert_eq!(inspection.boot_mode.as_deref(), Some("UEFI"));
    assert_eq!(inspection.power_state, PowerState::Off);
    client
        .set_boot(BootOverride {
            device: BootDevice::Disk,
            once: false,
            mode: None,
        })
        .await
        .expect("disk");
    let boot = bmc.lock().boot.clone();
    assert_eq!(
        (
            boot.enabled.as_str(),
            boot.target.as_str(),
            boot.mode.as_str()
        ),
        ("Continuous", "Hdd", "Legacy")
    );
    let err = client
        .set_boot(BootOverride {
            device: BootDevice::UefiHttp,
            once: true,
            mode: None,
        })
        .await
        .expect_err("no HTTP boot in IPMI");
    assert!(matches!(err, BmcError::Unsupported { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_lost_datagrams_over_ipmi() {
    let fleet = fleet().await;
    let err = client(&fleet, "wrong")
        .power_state()
        .await
        .expect_err("refused");
    assert!(matches!(err, BmcError::Auth { .. }), "{err}");
    fleet.endpoints()[0]
        .bmc
        .update_faults(|f| f.udp_drop_rate = 1.0);
    let err = client(&fleet, "password")
        .power_state()
        .await
        .expect_err("nothing answers");
    assert!(err.is_transient(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sel_read_and_clear_over_ipmi() {
    let fleet = fleet().await;
    let bmc = fleet.endpoints()[0].bmc.clone();
    bmc.add_log("Critical", "CPU1 machine check");
    bmc.add_log("Warning", "fan 3 slow");
    let client = client(&fleet, "password");
    let log = client.read_log().await.expect("read SEL");
    let ids: Vec<&str> = log.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3"]);
    assert!(
        log[0].message.contains("sensor type 0x12"),
        "{}",
        log[0].message
    );
    assert!(log.iter().all(|e| e.created.is_some()));
    client.clear_log().await.expect("clear SEL");
    assert_eq!(bmc.lock().sel.len(), 1, "only the 'cleared' entry remains");
    assert_eq!(client.read_log().await.expect("read again").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_does_not_offer_a_tpm_clear() {
    let fleet = fleet().await;
    let err = client(&fleet, "password")
        .clear_tpm()
        .await
        .expect_err("IPMI has no TPM clear");
    assert!(matches!(err, BmcError::Unsupported { .. }), "{err}");
    assert_eq!(fleet.endpoints()[0].bmc.lock().tpm_clears, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_firmware_is_the_bmcs_own_version_and_it_has_no_bios_settings() {
    let fleet = fleet().await;
    let client = client(&fleet, "password");
    let inventory = client.firmware().await.expect("get device id");
    assert_eq!(inventory.components.len(), 1, "{inventory:?}");
    let bmc = &inventory.components[0];
    assert_eq!(
        (bmc.id.as_str(), bmc.version.as_deref(), bmc.source.as_str()),
        ("BMC", Some("2.10"), "ipmi")
    );
    let err = client.bios().await.expect_err("IPMI has no BIOS settings");
    assert!(matches!(err, BmcError::Unsupported { .. }), "{err}");
}
