//! The Redfish client against the simulator, for every vendor profile.

use std::time::Duration;

use kiln_bmc::{Bmc, BmcError, BootDevice, BootMode, BootOverride, PowerAction, PowerState};
use kiln_bmc_sim::SimEventKind;
use kiln_bmc_sim::profile::{self, ALL};

use crate::common::{client_for, one_bmc, wait_until};

async fn wait_power(client: &kiln_bmc::redfish::RedfishClient, want: PowerState) -> bool {
    wait_until(Duration::from_secs(5), || async {
        client.power_state().await.ok() == Some(want)
    })
    .await
}

#[tokio::test]
async fn inspect_reports_each_profiles_shape() {
    for profile in ALL {
        let fleet = one_bmc(profile).await;
        let client = client_for(&fleet);
        let inspection = client
            .inspect()
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", profile.name));
        assert_eq!(inspection.power_state, PowerState::Off, "{}", profile.name);
        assert_eq!(
            inspection.manufacturer.as_deref(),
            Some(profile.manufacturer)
        );
        assert_eq!(inspection.model.as_deref(), Some(profile.model));
        assert_eq!(inspection.serial.as_deref(), Some("KSIM000000"));
        let reset: Vec<&str> = inspection.reset_types.iter().map(String::as_str).collect();
        assert_eq!(reset, profile.reset_types, "{}", profile.name);
        let targets: Vec<&str> = inspection.boot_targets.iter().map(String::as_str).collect();
        assert_eq!(targets, profile.boot_targets, "{}", profile.name);
        assert_eq!(
            inspection.boot_mode.is_some(),
            profile.has_boot_mode,
            "{}",
            profile.name
        );
        let slots: Vec<&str> = inspection
            .virtual_media
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        let expected: Vec<&str> = profile.media_slots.iter().map(|(id, _)| *id).collect();
        assert_eq!(slots, expected, "{}", profile.name);
        assert!(
            inspection
                .virtual_media
                .iter()
                .all(|s| !s.inserted && s.image.is_none() && s.insert_supported)
        );
        let json = inspection.contract_json();
        assert_eq!(json["power_state"], "Off");
        assert!(
            json["virtual_media"][0]["insert_supported"]
                .as_bool()
                .unwrap_or(false)
        );
    }
}

#[tokio::test]
async fn power_on_off_cycle_work_on_every_profile() {
    for profile in ALL {
        let fleet = one_bmc(profile).await;
        let mut events = fleet.subscribe();
        let client = client_for(&fleet);
        client
            .set_power(PowerAction::On)
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", profile.name));
        assert!(
            wait_power(&client, PowerState::On).await,
            "{} never came on",
            profile.name
        );
        let event = events.recv().await.expect("power-on event");
        assert_eq!(
            event.kind,
            SimEventKind::PoweredOn { boot_target: None },
            "{}",
            profile.name
        );
        // On when on is a no-op, not an error.
        client
            .set_power(PowerAction::On)
            .await
            .expect("idempotent on");

        client
            .set_power(PowerAction::Cycle)
            .await
            .unwrap_or_else(|err| panic!("{} cycle: {err}", profile.name));
        assert_eq!(
            events.recv().await.expect("off event").kind,
            SimEventKind::PoweredOff,
            "{}",
            profile.name
        );
        assert!(matches!(
            events.recv().await.expect("on event").kind,
            SimEventKind::PoweredOn { .. }
        ));
        assert!(
            wait_power(&client, PowerState::On).await,
            "{} did not come back",
            profile.name
        );

        client
            .set_power(PowerAction::SoftOff)
            .await
            .unwrap_or_else(|err| panic!("{} soft: {err}", profile.name));
        assert!(
            wait_power(&client, PowerState::Off).await,
            "{} did not shut down",
            profile.name
        );
        client
            .set_power(PowerAction::ForceOff)
            .await
            .expect("idempotent off");
        client.set_power(PowerAction::On).await.expect("on again");
        assert!(wait_power(&client, PowerState::On).await);
        client
            .set_power(PowerAction::ForceOff)
            .await
            .expect("force off");
        assert_eq!(
            fleet.endpoints()[0].bmc.power(),
            PowerState::Off,
            "{}: ForceOff is immediate",
            profile.name
        );
    }
}

#[tokio::test]
async fn reset_is_mapped_or_refused_by_allowable_values() {
    // Supermicro-like offers no restart at all: Reset is unsupported, Cycle falls back to ForceOff + On.
    let fleet = one_bmc(&profile::SUPERMICRO).await;
    let client = client_for(&fleet);
    client.set_power(PowerAction::On).await.expect("on");
    assert!(wait_power(&client, PowerState::On).await);
    let err = client
        .set_power(PowerAction::Reset)
        .await
        .expect_err("no restart offered");
    assert!(matches!(err, BmcError::Unsupported { .. }), "{err}");
    assert!(!err.is_transient());
    // HPE-like has no PowerCycle: Cycle uses ForceRestart.
    let fleet = one_bmc(&profile::HPE).await;
    let client = client_for(&fleet);
    client.set_power(PowerAction::On).await.expect("on");
    assert!(wait_power(&client, PowerState::On).await);
    client
        .set_power(PowerAction::Reset)
        .await
        .expect("reset via ForceRestart");
    assert!(wait_power(&client, PowerState::On).await);
}

#[tokio::test]
async fn one_time_pxe_boot_is_set_and_consumed_on_every_profile() {
    for profile in ALL {
        let fleet = one_bmc(profile).await;
        let bmc = fleet.endpoints()[0].bmc.clone();
        let mut events = fleet.subscribe();
        let client = client_for(&fleet);
        client
            .set_boot(BootOverride {
                device: BootDevice::Pxe,
                once: true,
                mode: None,
            })
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", profile.name));
        let boot = bmc.lock().boot.clone();
        assert_eq!(
            (boot.enabled.as_str(), boot.target.as_str()),
            ("Once", "Pxe"),
            "{}",
            profile.name
        );
        assert!(matches!(
            events.recv().await.expect("event").kind,
            SimEventKind::BootOverride { .. }
        ));
        client.set_power(PowerAction::On).await.expect("on");
        let event = events.recv().await.expect("power-on event");
        assert_eq!(
            event.kind,
            SimEventKind::PoweredOn {
                boot_target: Some("Pxe".into())
            },
            "{}",
            profile.name
        );
        assert_eq!(
            bmc.lock().boot.enabled,
            "Disabled",
            "{}: once means once",
            profile.name
        );
    }
}

#[tokio::test]
async fn boot_quirks_differ_per_profile() {
    // Supermicro-like: CD is spelled UsbCd, and the PATCH needs a mode (the quirk adds it).
    let fleet = one_bmc(&profile::SUPERMICRO).await;
    let client = client_for(&fleet);
    client
        .set_boot(BootOverride {
            device: BootDevice::Cd,
            once: false,
            mode: None,
        })
        .await
        .expect("cd boot");
    let boot = fleet.endpoints()[0].bmc.lock().boot.clone();
    assert_eq!(
        (boot.enabled.as_str(), boot.target.as_str()),
        ("Continuous", "UsbCd")
    );

    // OpenBMC-like: no UEFI HTTP boot, and no boot mode property: asking for UEFI mode is refused by the BMC.
    let fleet = one_bmc(&profile::OPENBMC).await;
    let client = client_for(&fleet);
    let err = client
        .set_boot(BootOverride {
            device: BootDevice::UefiHttp,
            once: true,
            mode: None,
        })
        .await
        .expect_err("no UefiHttp");
    assert!(matches!(err, BmcError::Unsupported { .. }), "{err}");
    let err = client
        .set_boot(BootOverride {
            device: BootDevice::Pxe,
            once: true,
            mode: Some(BootMode::Uefi),
        })
        .await
        .expect_err("no mode property");
    match err {
        BmcError::Rejected { status, detail, .. } => {
            assert_eq!(status, 400);
            assert!(detail.contains("BootSourceOverrideMode"), "{detail}");
        }
        other => panic!("expected Rejected, got {other}"),
    }

    // HPE-like needs If-Match: the client sends the ETag it read, and retries once if it went stale.
    let fleet = one_bmc(&profile::HPE).await;
    let client = client_for(&fleet);
    client
        .set_boot(BootOverride {
            device: BootDevice::UefiHttp,
            once: true,
            mode: Some(BootMode::Uefi),
        })
        .await
        .expect("etag boot");
    let boot = fleet.endpoints()[0].bmc.lock().boot.clone();
    assert_eq!(
        (boot.target.as_str(), boot.mode.as_str()),
        ("UefiHttp", "UEFI")
    );
}

#[tokio::test]
async fn virtual_media_insert_and_eject_on_every_profile() {
    for profile in ALL {
        let fleet = one_bmc(profile).await;
        let client = client_for(&fleet);
        let image = "http://10.0.0.1/images/ramdisk.iso";
        client
            .insert_media(None, image)
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", profile.name));
        // Inserting the same image again is fine.
        client
            .insert_media(None, image)
            .await
            .unwrap_or_else(|err| panic!("{} again: {err}", profile.name));
        let slots = client.virtual_media().await.expect("list");
        let inserted: Vec<_> = slots.iter().filter(|s| s.inserted).collect();
        assert_eq!(inserted.len(), 1, "{}: {slots:?}", profile.name);
        assert_eq!(inserted[0].image.as_deref(), Some(image));
        // The CD slot is chosen when no slot is named.
        let cd_slot = profile
            .media_slots
            .iter()
            .find(|(_, types)| types.contains(&"CD"))
            .map(|(id, _)| *id);
        assert_eq!(Some(inserted[0].id.as_str()), cd_slot, "{}", profile.name);
        client
            .eject_media(None)
            .await
            .unwrap_or_else(|err| panic!("{} eject: {err}", profile.name));
        assert!(
            client
                .virtual_media()
                .await
                .expect("list")
                .iter()
                .all(|s| !s.inserted),
            "{}",
            profile.name
        );
    }
    let fleet = one_bmc(&profile::DELL).await;
    let client = client_for(&fleet);
    let err = client
        .insert_media(Some("NoSuchSlot"), "http://x/y.iso")
        .await
        .expect_err("bad slot");
    assert!(matches!(err, BmcError::Unsupported { .. }), "{err}");
    let err = client
        .insert_media(None, "not a url")
        .await
        .expect_err("bad image");
    assert!(
        matches!(err, BmcError::Rejected { status: 400, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn inventory_and_event_log_on_every_profile() {
    for profile in ALL {
        let fleet = one_bmc(profile).await;
        let bmc = fleet.endpoints()[0].bmc.clone();
        let client = client_for(&fleet);
        let inventory = client
            .inventory()
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", profile.name));
        assert_eq!(inventory.serial.as_deref(), Some("KSIM000000"));
        assert_eq!(
            inventory.bmc_firmware_version.as_deref(),
            Some(profile.bmc_firmware)
        );
        assert_eq!(
            inventory.macs, bmc.macs,
            "{}: MACs normalized to lower case",
            profile.name
        );

        bmc.add_log("Critical", "CPU1 machine check");
        let log = client
            .read_log()
            .await
            .unwrap_or_else(|err| panic!("{} log: {err}", profile.name));
        assert_eq!(log.len(), 2, "{}", profile.name);
        assert_eq!(log[1].message, "CPU1 machine check");
        assert_eq!(log[1].severity.as_deref(), Some("Critical"));
        client
            .clear_log()
            .await
            .unwrap_or_else(|err| panic!("{} clear: {err}", profile.name));
        let log = client.read_log().await.expect("log after clear");
        assert_eq!(
            log.len(),
            1,
            "{}: only the 'cleared' entry remains",
            profile.name
        );
    }
}

#[tokio::test]
async fn sessions_are_used_and_deleted_or_basic_auth_is_the_fallback() {
    for profile in ALL {
        let fleet = one_bmc(profile).await;
        let bmc = fleet.endpoints()[0].bmc.clone();
        let client = client_for(&fleet);
        client
            .power_state()
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", profile.name));
        let live = bmc.lock().sessions.len();
        if profile.sessions {
            assert_eq!(live, 1, "{}", profile.name);
            assert!(client.has_session().await);
            client.logout().await;
            assert_eq!(
                bmc.lock().sessions.len(),
                0,
                "{}: logout deletes the session",
                profile.name
            );
        } else {
            assert_eq!(live, 0, "{}", profile.name);
            assert!(
                !client.has_session().await,
                "{}: basic auth fallback",
                profile.name
            );
        }
    }
}

#[tokio::test]
async fn an_expired_session_is_renewed_once() {
    let fleet = one_bmc(&profile::DELL).await;
    let bmc = fleet.endpoints()[0].bmc.clone();
    let client = client_for(&fleet);
    client.power_state().await.expect("first call");
    // The BMC forgets every session (reboot, timeout).
    bmc.lock().sessions.clear();
    client
        .power_state()
        .await
        .expect("call after expiry logs in again");
    assert_eq!(bmc.lock().sessions.len(), 1);
}

#[tokio::test]
async fn power_status_uses_expand_where_offered_and_never_a_stale_copy() {
    for profile in ALL {
        let fleet = one_bmc(profile).await;
        let endpoint = &fleet.endpoints()[0];
        let mut config = kiln_bmc::redfish::RedfishConfig::new(
            endpoint.redfish_url.clone(),
            kiln_bmc::Credentials::new("admin", "password"),
            endpoint
                .fingerprint
                .map(kiln_bmc::redfish::TlsPolicy::Pinned),
        );
        config.auth = kiln_bmc::redfish::AuthMode::Basic;
        let client = kiln_bmc::redfish::RedfishClient::new(config).expect("client");
        let requests = || endpoint.bmc.lock().requests;
        assert_eq!(client.power_state().await.expect("status"), PowerState::Off);
        // Service root + Systems (expanded) where the profile advertises $expand; else one more GET.
        let first = if profile.expand.is_some() { 2 } else { 3 };
        assert_eq!(requests(), first, "{}", profile.name);
        endpoint.bmc.force_power(PowerState::On);
        assert_eq!(
            client.power_state().await.expect("status"),
            PowerState::On,
            "{}: the expanded copy is used once, by the call that discovered",
            profile.name
        );
        assert_eq!(requests(), first + 1, "{}", profile.name);
    }
}

#[tokio::test]
async fn tpm_clear_is_a_decommission_where_offered_and_unsupported_elsewhere() {
    for profile in ALL {
        let fleet = one_bmc(profile).await;
        let bmc = fleet.endpoints()[0].bmc.clone();
        let client = client_for(&fleet);
        let result = client.clear_tpm().await;
        if profile.decommission_types.contains(&"Tpm") {
            result.unwrap_or_else(|err| panic!("{} TPM clear: {err}", profile.name));
            assert_eq!(bmc.lock().tpm_clears, 1, "{}", profile.name);
        } else {
            let err = result.expect_err(profile.name);
            assert!(
                matches!(err, BmcError::Unsupported { .. }),
                "{}: {err}",
                profile.name
            );
            assert!(err.to_string().contains("TPM clear"), "{err}");
            assert_eq!(bmc.lock().tpm_clears, 0, "{}", profile.name);
        }
    }
    assert!(
        ALL.iter().any(|p| p.decommission_types.contains(&"Tpm")),
        "at least one vendor shape offers the TPM clear"
    );
}

/// A Dell shape whose Decommission offers other types but not the TPM.
static DECOMMISSION_WITHOUT_TPM: profile::VendorProfile = profile::VendorProfile {
    decommission_types: &["BiosConfig", "ManagerConfig"],
    ..profile::DELL
};

#[tokio::test]
async fn a_decommission_without_tpm_is_not_a_tpm_clear() {
    let fleet = one_bmc(&DECOMMISSION_WITHOUT_TPM).await;
    let bmc = fleet.endpoints()[0].bmc.clone();
    let err = client_for(&fleet)
        .clear_tpm()
        .await
        .expect_err("Tpm is not offered");
    assert!(matches!(err, BmcError::Unsupported { .. }), "{err}");
    assert!(
        err.to_string().contains("BiosConfig, ManagerConfig"),
        "{err}"
    );
    assert_eq!(bmc.lock().tpm_clears, 0);
}
