//! The simulated hardware: power transitions with delays (paused time), boot overrides, media, the event log.

use std::time::Duration;

use kiln_bmc::PowerState;
use kiln_bmc_sim::profile::{DELL, SUPERMICRO};
use kiln_bmc_sim::{SimBmc, SimError, SimEvent, SimEventKind, SimFleet, SimFleetConfig, Timing};
use tokio::sync::broadcast;

fn bmc(
    profile: &'static kiln_bmc_sim::profile::VendorProfile,
) -> (std::sync::Arc<SimBmc>, broadcast::Receiver<SimEvent>) {
    let (events, receiver) = broadcast::channel(64);
    let timing = Timing {
        power_on: Duration::from_secs(2),
        graceful_off: Duration::from_secs(1),
        task: Duration::from_secs(1),
    };
    (
        SimBmc::new(3, profile, "admin", "password", timing, events),
        receiver,
    )
}

#[tokio::test(start_paused = true)]
async fn power_on_takes_the_configured_time_and_publishes_an_event() {
    let (bmc, mut events) = bmc(&DELL);
    assert!(bmc.reset("On"));
    assert_eq!(bmc.power(), PowerState::PoweringOn);
    tokio::time::sleep(Duration::from_millis(1900)).await;
    assert_eq!(bmc.power(), PowerState::PoweringOn, "not yet");
    let event = events.recv().await.expect("event");
    assert_eq!(
        event,
        SimEvent {
            bmc: 3,
            kind: SimEventKind::PoweredOn { boot_target: None }
        }
    );
    assert_eq!(bmc.power(), PowerState::On);
    assert_eq!(
        bmc.lock().sel.last().map(|e| e.message.clone()).as_deref(),
        Some("System power on")
    );
}

#[tokio::test(start_paused = true)]
async fn force_off_cancels_a_pending_power_on() {
    let (bmc, mut events) = bmc(&DELL);
    assert!(bmc.reset("On"));
    assert!(bmc.reset("ForceOff"));
    assert_eq!(bmc.power(), PowerState::Off);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        bmc.power(),
        PowerState::Off,
        "the stale power-on must not land"
    );
    assert_eq!(
        events.try_recv().expect("power dropped").kind,
        SimEventKind::PoweredOff
    );
    assert!(matches!(
        events.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
    ));
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_and_power_cycle() {
    let (bmc, mut events) = bmc(&DELL);
    bmc.force_power(PowerState::On);
    assert!(bmc.reset("GracefulShutdown"));
    assert_eq!(bmc.power(), PowerState::PoweringOff);
    assert_eq!(
        events.recv().await.expect("off").kind,
        SimEventKind::PoweredOff
    );
    assert_eq!(bmc.power(), PowerState::Off);
    bmc.force_power(PowerState::On);
    assert!(bmc.reset("PowerCycle"));
    assert_eq!(bmc.power(), PowerState::PoweringOn);
    assert_eq!(
        events.recv().await.expect("off").kind,
        SimEventKind::PoweredOff
    );
    assert!(matches!(
        events.recv().await.expect("on").kind,
        SimEventKind::PoweredOn { .. }
    ));
    assert_eq!(bmc.power(), PowerState::On);
}

#[tokio::test(start_paused = true)]
async fn unsupported_reset_types_and_stuck_power() {
    let (bmc, _events) = bmc(&SUPERMICRO);
    assert!(
        !bmc.reset("PowerCycle"),
        "the Supermicro-like profile offers no PowerCycle"
    );
    assert!(!bmc.reset("Bogus"));
    bmc.update_faults(|f| f.stuck_power = true);
    assert!(bmc.reset("On"), "accepted");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(bmc.power(), PowerState::Off);
}

#[tokio::test(start_paused = true)]
async fn a_once_override_is_consumed_by_the_next_power_on_and_continuous_is_kept() {
    let (bmc, mut events) = bmc(&DELL);
    bmc.set_boot("Once", "Pxe", Some("UEFI"));
    assert!(matches!(
        events.recv().await.expect("boot").kind,
        SimEventKind::BootOverride { .. }
    ));
    bmc.reset("On");
    assert_eq!(
        events.recv().await.expect("on").kind,
        SimEventKind::PoweredOn {
            boot_target: Some("Pxe".into())
        }
    );
    assert_eq!(bmc.lock().boot.enabled, "Disabled");
    bmc.set_boot("Continuous", "Hdd", None);
    let _ = events.recv().await;
    bmc.reset("ForceRestart");
    assert_eq!(
        events.recv().await.expect("off").kind,
        SimEventKind::PoweredOff
    );
    assert_eq!(
        events.recv().await.expect("on").kind,
        SimEventKind::PoweredOn {
            boot_target: Some("Hdd".into())
        }
    );
    assert_eq!(bmc.lock().boot.enabled, "Continuous");
}

#[tokio::test]
async fn media_and_log_changes() {
    let (bmc, mut events) = bmc(&DELL);
    assert!(bmc.set_media("CD", Some("http://x/a.iso".into())));
    assert_eq!(
        events.recv().await.expect("insert").kind,
        SimEventKind::MediaInserted {
            slot: "CD".into(),
            image: "http://x/a.iso".into()
        }
    );
    assert!(!bmc.set_media("nope", None));
    assert!(bmc.set_media("CD", None));
    assert_eq!(
        events.recv().await.expect("eject").kind,
        SimEventKind::MediaEjected { slot: "CD".into() }
    );
    for i in 0..600 {
        bmc.add_log("Warning", format!("entry {i}"));
    }
    assert_eq!(bmc.lock().sel.len(), 512, "the log is bounded");
    bmc.clear_log();
    assert_eq!(bmc.lock().sel.len(), 1);
}

#[tokio::test]
async fn fleet_ports_and_profiles() {
    let fleet = SimFleet::start(SimFleetConfig {
        count: 6,
        ..SimFleetConfig::default()
    })
    .await
    .expect("fleet");
    let profiles: Vec<&str> = fleet.endpoints().iter().map(|e| e.profile).collect();
    assert_eq!(
        profiles,
        vec!["dell", "hpe", "supermicro", "openbmc", "dell", "hpe"]
    );
    let mut urls: Vec<&str> = fleet
        .endpoints()
        .iter()
        .map(|e| e.redfish_url.as_str())
        .collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 6, "one port per BMC");
    let mut fingerprints: Vec<String> = fleet
        .endpoints()
        .iter()
        .filter_map(|e| e.fingerprint.map(|f| f.to_string()))
        .collect();
    fingerprints.sort();
    fingerprints.dedup();
    assert_eq!(fingerprints.len(), 6, "one certificate per BMC");
    assert_eq!(fleet.endpoints()[5].bmc.serial, "KSIM000005");
    let err = SimFleet::start(SimFleetConfig {
        count: 2,
        base_port: Some(65535),
        ..SimFleetConfig::default()
    })
    .await
    .expect_err("port range");
    assert!(matches!(err, SimError::PortRange { .. }), "{err}");
}
