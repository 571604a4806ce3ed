//! Lenient parsing of vendor resources written from the DMTF schema and vendor documentation, and the client
//! against a recorded OpenBMC tree served as static files.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::{get, post};
use kiln_bmc::redfish::model::{
    BootSource, ComputerSystem, ErrorBody, LogEntryCollection, OverrideEnabled, ResetType,
    RfPowerState, ServiceRoot, Task, TaskState, VirtualMedia, parse_resource,
};
use kiln_bmc::redfish::quirks::{self, reset_plan};
use kiln_bmc::redfish::{RedfishClient, RedfishConfig};
use kiln_bmc::{Bmc, BootDevice, Credentials, PowerAction, PowerState};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

#[test]
fn dell_system_reads_fully() {
    let system: ComputerSystem =
        parse_resource(&fixture("dell_idrac_system.json")).expect("parses");
    assert_eq!(system.manufacturer.as_deref(), Some("Dell Inc."));
    assert_eq!(system.serial_number.as_deref(), Some("CNIVC0012345678"));
    assert_eq!(system.power_state, Some(RfPowerState::On));
    assert_eq!(system.odata_etag.as_deref(), Some("\"1a2b3c4d\""));
    let reset = system.actions.and_then(|a| a.reset).expect("reset action");
    assert_eq!(reset.allowable.len(), 8);
    assert_eq!(
        reset_plan(PowerAction::Cycle, &reset.allowable),
        Some(vec![ResetType::PowerCycle])
    );
    let boot = system.boot.expect("boot");
    assert_eq!(boot.override_enabled, Some(OverrideEnabled::Disabled));
    assert!(boot.allowable_targets.contains(&BootSource::UefiHttp));
}

#[test]
fn supermicro_odd_targets_are_kept_and_mapped() {
    let system: ComputerSystem =
        parse_resource(&fixture("supermicro_system.json")).expect("parses");
    let boot = system.boot.expect("boot");
    assert!(
        boot.allowable_targets
            .contains(&BootSource::Other("CD/DVD".into()))
    );
    assert!(!boot.allowable_targets.contains(&BootSource::Cd));
    let q = quirks::quirks_for(system.manufacturer.as_deref(), None);
    assert_eq!(q.name, "supermicro");
    assert!(q.boot_patch_needs_mode);
    let cd = quirks::boot_target(BootDevice::Cd, &boot.allowable_targets, &q);
    assert_eq!(cd, Some(BootSource::Other("UsbCd".into())));
    assert_eq!(
        quirks::boot_target(BootDevice::UefiHttp, &boot.allowable_targets, &q),
        None
    );
    let reset = system.actions.and_then(|a| a.reset).expect("reset");
    // No PowerCycle here: cycle is a ForceRestart.
    assert_eq!(
        reset_plan(PowerAction::Cycle, &reset.allowable),
        Some(vec![ResetType::ForceRestart])
    );
}

#[test]
fn openbmc_without_allowable_values_uses_standard_names() {
    let system: ComputerSystem = parse_resource(&fixture("openbmc_system.json")).expect("parses");
    let reset = system.actions.and_then(|a| a.reset).expect("reset");
    assert!(
        reset.allowable.is_empty(),
        "bmcweb points to ActionInfo instead"
    );
    assert_eq!(
        reset_plan(PowerAction::Cycle, &reset.allowable),
        Some(vec![ResetType::PowerCycle])
    );
    assert_eq!(
        reset_plan(PowerAction::SoftOff, &reset.allowable),
        Some(vec![ResetType::GracefulShutdown])
    );
    assert_eq!(
        reset_plan(PowerAction::Cycle, &[ResetType::On, ResetType::ForceOff]),
        Some(vec![ResetType::ForceOff, ResetType::On])
    );
    assert_eq!(
        reset_plan(PowerAction::Reset, &[ResetType::On, ResetType::ForceOff]),
        None
    );
}

#[test]
fn quirky_casing_wrong_types_and_unknown_values_are_tolerated() {
    let system: ComputerSystem = parse_resource(&fixture("quirky_system.json")).expect("parses");
    assert_eq!(system.id.as_deref(), Some("Self"));
    assert_eq!(system.manufacturer.as_deref(), Some("Lenovo"));
    assert_eq!(system.model.as_deref(), Some("ThinkSystem SR675 V3"));
    assert_eq!(
        system.serial_number, None,
        "a number is not a serial string"
    );
    assert_eq!(
        system.power_state,
        Some(RfPowerState::On),
        "value casing is tolerated"
    );
    let boot = system.boot.expect("boot");
    assert_eq!(boot.override_enabled, Some(OverrideEnabled::Once));
    assert_eq!(
        boot.override_target,
        Some(BootSource::Other("UefiBootNext".into()))
    );
    assert_eq!(
        boot.allowable_targets,
        vec![
            BootSource::Pxe,
            BootSource::Hdd,
            BootSource::Other("VendorSpecialThing".into())
        ]
    );
    assert_eq!(boot.override_mode, None);
    let reset = system.actions.and_then(|a| a.reset).expect("reset");
    assert!(
        reset.allowable.is_empty(),
        "a string where a list belongs reads as not given"
    );
    assert!(
        system.ethernet_interfaces.is_none(),
        "a string where a link belongs reads as absent"
    );
}

#[test]
fn hpe_resources_service_root_media_errors_tasks_and_logs() {
    let root: ServiceRoot = parse_resource(&fixture("service_root_ilo.json")).expect("root");
    assert_eq!(root.vendor.as_deref(), Some("HPE"));
    assert_eq!(
        root.links
            .and_then(|l| l.sessions)
            .and_then(|l| l.odata_id)
            .as_deref(),
        Some("/redfish/v1/SessionService/Sessions/")
    );
    let media: VirtualMedia = parse_resource(&fixture("hpe_virtual_media.json")).expect("media");
    assert_eq!(media.inserted, Some(true));
    assert!(
        media.actions.is_none(),
        "iLO uses OEM actions; kiln PATCHes the slot"
    );
    let error: ErrorBody = parse_resource(&fixture("error_body.json")).expect("error");
    let summary = error.summary().expect("summary");
    assert!(
        summary.contains("not in the list of acceptable values"),
        "{summary}"
    );
    let task: Task = parse_resource(&fixture("task_exception.json")).expect("task");
    assert_eq!(task.task_state, Some(TaskState::Exception));
    assert!(TaskState::Exception.is_finished());
    let entries: LogEntryCollection =
        parse_resource(&fixture("log_entries_dell.json")).expect("log");
    assert_eq!(entries.members.len(), 3, "the string member is dropped");
    assert_eq!(entries.members[1].severity.as_deref(), Some("Warning"));
    assert_eq!(entries.members[2].id, None);
}

#[test]
fn non_objects_are_errors_not_panics() {
    assert!(parse_resource::<ComputerSystem>(b"").is_err());
    assert!(parse_resource::<ComputerSystem>(b"[1]").is_err());
    assert!(parse_resource::<ComputerSystem>(b"\"x\"").is_err());
    assert!(parse_resource::<ComputerSystem>(b"{\"PowerState\":").is_err());
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(
        parse_resource::<ComputerSystem>(deep.as_bytes()).is_err(),
        "recursion limit, no stack overflow"
    );
}

/// Serves a recorded OpenBMC tree and records the reset requests it receives.
async fn recorded_openbmc() -> (String, Arc<Mutex<Vec<String>>>) {
    let resets = Arc::new(Mutex::new(Vec::new()));
    let seen = resets.clone();
    let root = r#"{"@odata.id":"/redfish/v1/","Systems":{"@odata.id":"/redfish/v1/Systems"},
        "Managers":{"@odata.id":"/redfish/v1/Managers"},"Vendor":"OpenBMC"}"#;
    let systems =
        r#"{"Members":[{"@odata.id":"/redfish/v1/Systems/system"}],"Members@odata.count":1}"#;
    let managers = r#"{"Members":[{"@odata.id":"/redfish/v1/Managers/bmc"}]}"#;
    let manager = r#"{"Id":"bmc","FirmwareVersion":"2.14.0"}"#;
    let system = String::from_utf8(fixture("openbmc_system.json")).expect("utf-8");
    let app = Router::new()
        .route("/redfish/v1/", get(move || async move { root }))
        .route("/redfish/v1/Systems", get(move || async move { systems }))
        .route(
            "/redfish/v1/Systems/system",
            get(move || async move { system }),
        )
        .route("/redfish/v1/Managers", get(move || async move { managers }))
        .route(
            "/redfish/v1/Managers/bmc",
            get(move || async move { manager }),
        )
        .route(
            "/redfish/v1/Systems/system/Actions/ComputerSystem.Reset",
            post(move |body: Bytes| async move {
                if let Ok(mut log) = seen.lock() {
                    log.push(String::from_utf8_lossy(&body).into_owned());
                }
                StatusCode::NO_CONTENT
            }),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let url = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, resets)
}

#[tokio::test]
async fn client_against_a_recorded_openbmc_tree() {
    let (url, resets) = recorded_openbmc().await;
    let client = RedfishClient::new(RedfishConfig::new(
        url,
        Credentials::new("root", "0penBmc"),
        None,
    ))
    .expect("client");
    let inspection = client.inspect().await.expect("inspect");
    assert_eq!(inspection.power_state, PowerState::On);
    assert_eq!(inspection.serial.as_deref(), Some("1660123456789"));
    assert_eq!(inspection.boot_mode.as_deref(), Some("UEFI"));
    assert!(inspection.reset_types.is_empty());
    assert!(inspection.virtual_media.is_empty());
    let inventory = client.inventory().await;
    // The recorded tree has no EthernetInterfaces collection behind its link: a clear 404, not a panic.
    assert!(
        matches!(
            inventory,
            Err(kiln_bmc::BmcError::Rejected { status: 404, .. })
        ),
        "{inventory:?}"
    );
    client.set_power(PowerAction::Cycle).await.expect("cycle");
    let sent = resets.lock().expect("lock").clone();
    assert_eq!(sent, vec![r#"{"ResetType":"PowerCycle"}"#.to_string()]);
}
