//! Firmware inventory and BIOS settings over Redfish against the simulator (every vendor profile): every listed
//! member read, a dangling member and a wrong count as warnings, BIOS changes PATCHed as differences only and
//! applied at the next power-on; IPMI's firmware read through Get Device ID; a virtual media slot the BMC lists
//! but cannot serve is a warning of `inspect`, not its failure.

use std::time::Duration;

use kiln_bmc::{Bmc, BmcError, PowerAction, PowerState};
use kiln_bmc_sim::profile::ALL;
use serde_json::{Map, Value, json};

use crate::common::{client_for, one_bmc, wait_until};

#[tokio::test]
async fn every_profile_lists_its_firmware_and_a_dangling_member_is_a_warning() {
    for profile in ALL {
        let fleet = one_bmc(profile).await;
        let client = client_for(&fleet);
        let inventory = client
            .firmware()
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", profile.name));
        let ids: Vec<&str> = inventory.components.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["BMC", "BIOS", "NIC.Slot.1", "GPU.0"],
            "{}",
            profile.name
        );
        let bmc = &inventory.components[0];
        assert_eq!(bmc.version.as_deref(), Some(profile.bmc_firmware));
        assert_eq!(bmc.updateable, Some(true));
        assert_eq!(bmc.source, "redfish");
        assert_eq!(inventory.components[3].updateable, Some(false));
        assert_eq!(inventory.components[1].health.as_deref(), Some("OK"));
        assert!(inventory.warnings.is_empty(), "{:?}", inventory.warnings);

        fleet.endpoints()[0]
            .bmc
            .update_faults(|f| f.firmware_dangling = true);
        let inventory = client.firmware().await.expect("partial inventory");
        assert_eq!(inventory.components.len(), 4, "{}", profile.name);
        assert_eq!(inventory.warnings.len(), 2, "{:?}", inventory.warnings);
        assert!(
            inventory.warnings[0].contains("Members@odata.count says 3 but 5"),
            "{:?}",
            inventory.warnings
        );
        assert!(
            inventory.warnings[1].contains("CPLD.Gone"),
            "{:?}",
            inventory.warnings
        );
        let json = inventory.contract_json();
        for key in ["id", "name", "version", "updateable"] {
            assert!(json["components"][0].get(key).is_some(), "{key}: {json}");
        }
        client.close().await;
    }
}

#[tokio::test]
async fn bios_changes_are_sent_as_differences_and_apply_at_the_next_power_on() {
    let fleet = one_bmc(ALL[0]).await;
    let client = client_for(&fleet);
    let bios = client.bios().await.expect("bios");
    assert_eq!(bios.attributes["LogicalProc"], "Enabled");
    assert!(bios.pending.is_empty(), "{:?}", bios.pending);
    assert_eq!(bios.apply_times, ["OnReset"]);

    let mut changes = Map::new();
    changes.insert("LogicalProc".into(), json!("Disabled"));
    changes.insert("BootMode".into(), json!("Uefi"));
    let change = client.set_bios(&changes).await.expect("set");
    assert_eq!(change.applies, "OnReset");
    assert_eq!(change.unchanged, ["BootMode"]);
    assert_eq!(change.changed.len(), 1);
    let bios = client.bios().await.expect("bios");
    assert_eq!(
        bios.attributes["LogicalProc"], "Enabled",
        "not before a reset"
    );
    assert_eq!(bios.pending.get("LogicalProc"), Some(&json!("Disabled")));
    assert_eq!(bios.pending.len(), 1, "only the difference is pending");

    // An attribute the BIOS does not have is refused by name, before anything is sent.
    let mut unknown = Map::new();
    unknown.insert("TurboFlux".into(), Value::from("On"));
    match client.set_bios(&unknown).await {
        Err(BmcError::Config { detail, .. }) => assert!(detail.contains("TurboFlux"), "{detail}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    client.set_power(PowerAction::On).await.expect("power on");
    assert!(
        wait_until(Duration::from_secs(5), || async {
            client.power_state().await.ok() == Some(PowerState::On)
        })
        .await
    );
    let bios = client.bios().await.expect("bios");
    assert_eq!(
        bios.attributes["LogicalProc"], "Disabled",
        "applied at power-on"
    );
    assert!(bios.pending.is_empty(), "{:?}", bios.pending);
    let again = client.set_bios(&changes).await.expect("set");
    assert!(again.changed.is_empty(), "{again:?}");
    client.close().await;
}

#[tokio::test]
async fn a_dangling_virtual_media_slot_is_a_warning_of_inspect() {
    for profile in ALL {
        let fleet = one_bmc(profile).await;
        fleet.endpoints()[0]
            .bmc
            .update_faults(|f| f.media_dangling = true);
        let client = client_for(&fleet);
        let inspection = client
            .inspect()
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", profile.name));
        assert_eq!(
            inspection.virtual_media.len(),
            profile.media_slots.len(),
            "{}",
            profile.name
        );
        assert_eq!(inspection.warnings.len(), 1, "{:?}", inspection.warnings);
        assert!(
            inspection.warnings[0].contains("Removed"),
            "{:?}",
            inspection.warnings
        );
        assert!(inspection.contract_json()["warnings"].is_array());
        // Inserting still works on the slots that answer.
        client
            .insert_media(None, "http://10.0.0.1/boot.iso")
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", profile.name));
        client.close().await;
    }
}
