//! The simulated BMC's UpdateService/FirmwareInventory and the System's Bios with its `@Redfish.Settings`
//! object (PATCHes wait there until the next power-on, as on real BIOSes).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{
    ROOT, collection, link, malformed_json, parse_json, redfish_error, reply, system_path,
};
use crate::state::SimBmc;

const INVENTORY: &str = "/redfish/v1/UpdateService/FirmwareInventory";

pub(super) async fn update_service() -> Response {
    reply(
        StatusCode::OK,
        json!({
            "@odata.id": format!("{ROOT}/UpdateService"),
            "@odata.type": "#UpdateService.v1_11_0.UpdateService",
            "Id": "UpdateService",
            "Name": "Update Service",
            "ServiceEnabled": true,
            "FirmwareInventory": link(INVENTORY),
        }),
    )
}

pub(super) async fn firmware_collection(State(bmc): State<Arc<SimBmc>>) -> Response {
    let dangling = bmc.faults().firmware_dangling;
    let mut members: Vec<String> = bmc
        .lock()
        .firmware
        .iter()
        .map(|f| format!("{INVENTORY}/{}", f.id))
        .collect();
    let mut body = collection(INVENTORY, &members);
    if dangling {
        // A member the BMC lists but cannot serve, and a count that leaves one out (both seen in the field).
        members.push(format!("{INVENTORY}/CPLD.Gone"));
        body = collection(INVENTORY, &members);
        body["Members@odata.count"] = json!(members.len() - 2);
    }
    body["@odata.type"] = json!("#SoftwareInventoryCollection.SoftwareInventoryCollection");
    body["Name"] = json!("Firmware Inventory");
    reply(StatusCode::OK, body)
}

pub(super) async fn firmware_member(
    State(bmc): State<Arc<SimBmc>>,
    Path(id): Path<String>,
) -> Response {
    let found = bmc.lock().firmware.iter().find(|f| f.id == id).cloned();
    match found {
        Some(f) => reply(
            StatusCode::OK,
            json!({
                "@odata.id": format!("{INVENTORY}/{}", f.id),
                "@odata.type": "#SoftwareInventory.v1_10_0.SoftwareInventory",
                "Id": f.id,
                "Name": f.name,
                "Version": f.version,
                "Updateable": f.updateable,
                "SoftwareId": f.software_id,
                "Status": { "State": "Enabled", "Health": "OK" },
            }),
        ),
        None => redfish_error(
            StatusCode::NOT_FOUND,
            "Base.1.8.ResourceMissingAtURI",
            &format!("no firmware component {id}"),
        ),
    }
}

fn bios_path(bmc: &SimBmc) -> String {
    format!("{}/Bios", system_path(bmc.profile))
}

pub(super) async fn bios(State(bmc): State<Arc<SimBmc>>) -> Response {
    let path = bios_path(&bmc);
    let attributes = bmc.lock().bios.clone();
    reply(
        StatusCode::OK,
        json!({
            "@odata.id": path,
            "@odata.type": "#Bios.v1_2_0.Bios",
            "Id": "Bios",
            "Name": "BIOS Configuration Current Settings",
            "AttributeRegistry": "BiosAttributeRegistry.v1_0_0",
            "Attributes": attributes,
            "@Redfish.Settings": {
                "@odata.type": "#Settings.v1_3_5.Settings",
                "SettingsObject": link(&format!("{path}/Settings")),
                "SupportedApplyTimes": ["OnReset"],
            },
        }),
    )
}

pub(super) async fn bios_settings(State(bmc): State<Arc<SimBmc>>) -> Response {
    let path = format!("{}/Settings", bios_path(&bmc));
    let attributes = {
        let inner = bmc.lock();
        let mut future = inner.bios.clone();
        future.extend(inner.bios_pending.clone());
        future
    };
    reply(
        StatusCode::OK,
        json!({
            "@odata.id": path,
            "@odata.type": "#Bios.v1_2_0.Bios",
            "Id": "Settings",
            "Name": "BIOS Configuration Pending Settings",
            "Attributes": attributes,
        }),
    )
}

/// PATCH of the settings object: known attributes with values of the same JSON type only, kept until the next
/// power-on.
pub(super) async fn patch_bios_settings(State(bmc): State<Arc<SimBmc>>, body: Bytes) -> Response {
    let Some(body) = parse_json(&body) else {
        return malformed_json();
    };
    let Some(Value::Object(changes)) = body.get("Attributes") else {
        return redfish_error(
            StatusCode::BAD_REQUEST,
            "Base.1.8.PropertyMissing",
            "the PATCH carries no Attributes object",
        );
    };
    if let Some(apply) = body.get("@Redfish.SettingsApplyTime")
        && apply.get("ApplyTime").and_then(Value::as_str) != Some("OnReset")
    {
        return redfish_error(
            StatusCode::BAD_REQUEST,
            "Base.1.8.PropertyValueNotInList",
            "this BIOS applies settings OnReset only",
        );
    }
    let mut inner = bmc.lock();
    for (key, value) in changes {
        let same_type = inner.bios.get(key).is_some_and(|current| {
            std::mem::discriminant(current) == std::mem::discriminant(value)
        });
        if !same_type {
            return redfish_error(
                StatusCode::BAD_REQUEST,
                "Base.1.8.PropertyUnknown",
                &format!("BIOS attribute {key} is unknown or of another type"),
            );
        }
    }
    inner.bios_pending.extend(changes.clone());
    drop(inner);
    reply(
        StatusCode::ACCEPTED,
        json!({ "@Message.ExtendedInfo": [{
            "MessageId": "Base.1.8.Success",
            "Message": "the settings apply at the next reset",
        }]}),
    )
}
