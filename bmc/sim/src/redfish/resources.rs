//! The simulated BMC's Redfish resources other than the system: NICs, managers, virtual media, event logs,
//! task monitors and sessions.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{
    ROOT, collection, link, log_base, malformed_json, manager_path, media_base, not_found,
    parse_json, redfish_error, reply, system_path,
};
use crate::profile::Under;
use crate::state::SimBmc;

pub(super) async fn nics(State(bmc): State<Arc<SimBmc>>) -> Response {
    let sys = system_path(bmc.profile);
    let members: Vec<String> = bmc
        .profile
        .nic_ids
        .iter()
        .map(|id| format!("{sys}/EthernetInterfaces/{id}"))
        .collect();
    reply(
        StatusCode::OK,
        collection(&format!("{sys}/EthernetInterfaces"), &members),
    )
}

pub(super) async fn nic(State(bmc): State<Arc<SimBmc>>, Path(id): Path<String>) -> Response {
    let p = bmc.profile;
    let Some(index) = p.nic_ids.iter().position(|nic| *nic == id) else {
        return not_found().await;
    };
    let mac = bmc.macs.get(index).cloned().unwrap_or_default();
    // Dell spells MACs in upper case; clients must normalize.
    let mac = if p.name == "dell" {
        mac.to_ascii_uppercase()
    } else {
        mac
    };
    reply(
        StatusCode::OK,
        json!({ "@odata.id": format!("{}/EthernetInterfaces/{id}", system_path(p)), "Id": id, "MACAddress": mac }),
    )
}

pub(super) async fn managers(State(bmc): State<Arc<SimBmc>>) -> Response {
    reply(
        StatusCode::OK,
        collection(&format!("{ROOT}/Managers"), &[manager_path(bmc.profile)]),
    )
}

pub(super) async fn manager(State(bmc): State<Arc<SimBmc>>) -> Response {
    let p = bmc.profile;
    let mut body = json!({
        "@odata.id": manager_path(p),
        "@odata.type": "#Manager.v1_17_0.Manager",
        "Id": p.manager_id,
        "ManagerType": "BMC",
        "FirmwareVersion": p.bmc_firmware,
    });
    if let Some(map) = body.as_object_mut() {
        if p.media_under == Under::Manager {
            map.insert("VirtualMedia".into(), link(&media_base(p)));
        }
        if p.log_under == Under::Manager {
            map.insert("LogServices".into(), link(&log_base(p)));
        }
    }
    reply(StatusCode::OK, body)
}

pub(super) async fn media_collection(State(bmc): State<Arc<SimBmc>>) -> Response {
    let base = media_base(bmc.profile);
    let mut members: Vec<String> = bmc
        .lock()
        .media
        .iter()
        .map(|m| format!("{base}/{}", m.id))
        .collect();
    if bmc.faults().media_dangling {
        // Listed, never served: a slot of a removed or unlicensed feature, as vendor BMCs answer 404 for.
        members.push(format!("{base}/Removed"));
    }
    reply(StatusCode::OK, collection(&base, &members))
}

pub(super) async fn media_slot(
    State(bmc): State<Arc<SimBmc>>,
    Path(slot): Path<String>,
) -> Response {
    let p = bmc.profile;
    let base = media_base(p);
    let Some(state) = bmc.lock().media.iter().find(|m| m.id == slot).cloned() else {
        return not_found().await;
    };
    let mut body = json!({
        "@odata.id": format!("{base}/{slot}"),
        "@odata.type": "#VirtualMedia.v1_6_0.VirtualMedia",
        "Id": slot,
        "Name": "Virtual Media",
        "MediaTypes": state.media_types,
        "Image": state.image,
        "Inserted": state.image.is_some(),
        "WriteProtected": true,
        "ConnectedVia": if state.image.is_some() { "URI" } else { "NotConnected" },
    });
    if p.media_actions
        && let Some(map) = body.as_object_mut()
    {
        map.insert(
            "Actions".into(),
            json!({
                "#VirtualMedia.InsertMedia": { "target": format!("{base}/{slot}/Actions/VirtualMedia.InsertMedia") },
                "#VirtualMedia.EjectMedia": { "target": format!("{base}/{slot}/Actions/VirtualMedia.EjectMedia") },
            }),
        );
    }
    reply(StatusCode::OK, body)
}

pub(super) fn valid_image_url(image: &str) -> bool {
    ["http://", "https://", "nfs://", "cifs://", "smb://"]
        .iter()
        .any(|scheme| image.starts_with(scheme))
        && image.len() > 10
}

pub(super) fn change_media(bmc: &SimBmc, slot: &str, image: Option<String>) -> Response {
    if let Some(image) = &image {
        if !valid_image_url(image) {
            return redfish_error(
                StatusCode::BAD_REQUEST,
                "PropertyValueFormatError",
                "Image must be a URL.",
            );
        }
        let current = bmc
            .lock()
            .media
            .iter()
            .find(|m| m.id == slot)
            .and_then(|m| m.image.clone());
        match current {
            Some(current) if &current == image => return StatusCode::NO_CONTENT.into_response(),
            Some(_) => {
                return redfish_error(
                    StatusCode::CONFLICT,
                    "ResourceInUse",
                    "Media is already inserted.",
                );
            }
            None => {}
        }
    }
    if bmc.set_media(slot, image) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        redfish_error(
            StatusCode::NOT_FOUND,
            "ResourceMissingAtURI",
            "No such slot.",
        )
    }
}

pub(super) async fn patch_media(
    State(bmc): State<Arc<SimBmc>>,
    Path(slot): Path<String>,
    body: Bytes,
) -> Response {
    if bmc.profile.media_actions {
        return redfish_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "OperationNotAllowed",
            "Use InsertMedia/EjectMedia.",
        );
    }
    let Some(body) = parse_json(&body) else {
        return malformed_json();
    };
    let inserted = body
        .get("Inserted")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let image = body
        .get("Image")
        .and_then(Value::as_str)
        .map(str::to_string);
    change_media(&bmc, &slot, if inserted { image } else { None })
}

pub(super) async fn insert_media(
    State(bmc): State<Arc<SimBmc>>,
    Path(slot): Path<String>,
    body: Bytes,
) -> Response {
    let Some(body) = parse_json(&body) else {
        return malformed_json();
    };
    let Some(image) = body.get("Image").and_then(Value::as_str) else {
        return redfish_error(
            StatusCode::BAD_REQUEST,
            "ActionParameterMissing",
            "Image is required.",
        );
    };
    change_media(&bmc, &slot, Some(image.to_string()))
}

pub(super) async fn eject_media(
    State(bmc): State<Arc<SimBmc>>,
    Path(slot): Path<String>,
) -> Response {
    change_media(&bmc, &slot, None)
}

pub(super) async fn log_services(State(bmc): State<Arc<SimBmc>>) -> Response {
    let base = log_base(bmc.profile);
    reply(
        StatusCode::OK,
        collection(&base, &[format!("{base}/{}", bmc.profile.log_id)]),
    )
}

pub(super) async fn log_service(State(bmc): State<Arc<SimBmc>>) -> Response {
    let p = bmc.profile;
    let path = format!("{}/{}", log_base(p), p.log_id);
    reply(
        StatusCode::OK,
        json!({
            "@odata.id": path,
            "Id": p.log_id,
            "Entries": link(&format!("{path}/Entries")),
            "Actions": { "#LogService.ClearLog": { "target": format!("{path}/Actions/LogService.ClearLog") } },
        }),
    )
}

pub(super) async fn log_entries(State(bmc): State<Arc<SimBmc>>) -> Response {
    let p = bmc.profile;
    let path = format!("{}/{}/Entries", log_base(p), p.log_id);
    let members: Vec<Value> = bmc
        .lock()
        .sel
        .iter()
        .map(|entry| {
            json!({
                "@odata.id": format!("{path}/{}", entry.id),
                "Id": entry.id.to_string(),
                "EntryType": "SEL",
                "Created": "2026-11-27T00:00:00+00:00",
                "Severity": entry.severity,
                "Message": entry.message,
            })
        })
        .collect();
    reply(
        StatusCode::OK,
        json!({ "@odata.id": path, "Members@odata.count": members.len(), "Members": members }),
    )
}

pub(super) async fn clear_log(State(bmc): State<Arc<SimBmc>>) -> Response {
    bmc.clear_log();
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn task_monitor(
    State(bmc): State<Arc<SimBmc>>,
    Path(id): Path<String>,
) -> Response {
    let Some(ready_at) = bmc.lock().tasks.get(&id).copied() else {
        return not_found().await;
    };
    if tokio::time::Instant::now() < ready_at {
        return reply(
            StatusCode::ACCEPTED,
            json!({ "Id": id, "TaskState": "Running", "PercentComplete": 50 }),
        );
    }
    reply(
        StatusCode::OK,
        json!({ "Id": id, "TaskState": "Completed", "TaskStatus": "OK", "PercentComplete": 100 }),
    )
}

pub(super) async fn session_service() -> Response {
    reply(
        StatusCode::OK,
        json!({ "@odata.id": format!("{ROOT}/SessionService"), "ServiceEnabled": true, "SessionTimeout": 1800,
                "Sessions": link(&format!("{ROOT}/SessionService/Sessions")) }),
    )
}

pub(super) async fn sessions(State(bmc): State<Arc<SimBmc>>) -> Response {
    let ids: Vec<String> = bmc
        .lock()
        .sessions
        .values()
        .map(|id| format!("{ROOT}/SessionService/Sessions/{id}"))
        .collect();
    reply(
        StatusCode::OK,
        collection(&format!("{ROOT}/SessionService/Sessions"), &ids),
    )
}

pub(super) async fn session(State(bmc): State<Arc<SimBmc>>, Path(id): Path<u64>) -> Response {
    if !bmc.lock().sessions.values().any(|s| *s == id) {
        return not_found().await;
    }
    reply(
        StatusCode::OK,
        json!({ "@odata.id": format!("{ROOT}/SessionService/Sessions/{id}"), "Id": id.to_string() }),
    )
}

pub(super) async fn login(State(bmc): State<Arc<SimBmc>>, body: Bytes) -> Response {
    let Some(body) = parse_json(&body) else {
        return malformed_json();
    };
    let user = body.get("UserName").and_then(Value::as_str).unwrap_or("");
    let password = body.get("Password").and_then(Value::as_str).unwrap_or("");
    if !bmc.credentials_ok(user, password) {
        return redfish_error(
            StatusCode::UNAUTHORIZED,
            "NoValidSession",
            "Invalid user name or password.",
        );
    }
    let limit = bmc.faults().session_limit;
    let mut inner = bmc.lock();
    if limit > 0 && inner.sessions.len() >= limit {
        return redfish_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SessionLimitExceeded",
            "Too many sessions.",
        );
    }
    let id = inner.next_session_id;
    inner.next_session_id += 1;
    let token = format!("{:032x}", rand::random::<u128>());
    inner.sessions.insert(token.clone(), id);
    drop(inner);
    let location = format!("{ROOT}/SessionService/Sessions/{id}");
    let mut response = reply(
        StatusCode::CREATED,
        json!({ "@odata.id": location, "Id": id.to_string(), "UserName": user }),
    );
    if let (Ok(token), Ok(location)) = (
        HeaderValue::from_str(&token),
        HeaderValue::from_str(&location),
    ) {
        response.headers_mut().insert("X-Auth-Token", token);
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

pub(super) async fn logout(State(bmc): State<Arc<SimBmc>>, Path(id): Path<u64>) -> Response {
    let removed = {
        let mut inner = bmc.lock();
        let before = inner.sessions.len();
        inner.sessions.retain(|_, session| *session != id);
        inner.sessions.len() != before
    };
    if !removed {
        return not_found().await;
    }
    StatusCode::NO_CONTENT.into_response()
}
