//! The simulated BMC's Redfish service: an axum router whose paths, ids and answers follow the BMC's vendor
//! profile, guarded by authentication and the fault knobs. The system resource and its actions are here; NICs,
//! managers, virtual media, logs, task monitors and sessions are in `resources`.

mod firmware;
mod resources;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use kiln_bmc::PowerState;
use serde_json::{Value, json};

use crate::profile::{Answer, EtagStyle, Under, VendorProfile};
use crate::state::SimBmc;
use resources::{
    clear_log, eject_media, insert_media, log_entries, log_service, log_services, login, logout,
    manager, managers, media_collection, media_slot, nic, nics, patch_media, session,
    session_service, sessions, task_monitor,
};

const ROOT: &str = "/redfish/v1";

fn system_path(p: &VendorProfile) -> String {
    format!("{ROOT}/Systems/{}", p.system_id)
}

fn manager_path(p: &VendorProfile) -> String {
    format!("{ROOT}/Managers/{}", p.manager_id)
}

fn under_path(p: &VendorProfile, under: Under) -> String {
    match under {
        Under::System => system_path(p),
        Under::Manager => manager_path(p),
    }
}

fn media_base(p: &VendorProfile) -> String {
    format!("{}/VirtualMedia", under_path(p, p.media_under))
}

fn log_base(p: &VendorProfile) -> String {
    format!("{}/LogServices", under_path(p, p.log_under))
}

/// A JSON answer.
fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A Redfish error answer.
pub fn redfish_error(status: StatusCode, message_id: &str, message: &str) -> Response {
    reply(
        status,
        json!({ "error": {
            "code": format!("Base.1.8.{message_id}"),
            "message": message,
            "@Message.ExtendedInfo": [{ "MessageId": format!("Base.1.8.{message_id}"), "Message": message, "Severity": "Warning" }],
        }}),
    )
}

fn success_body() -> Value {
    json!({ "@Message.ExtendedInfo": [{ "MessageId": "Base.1.8.Success", "Message": "Successfully Completed Request" }] })
}

/// Answers a successful change the way the profile does.
fn answer(bmc: &SimBmc, style: Answer) -> Response {
    match style {
        Answer::NoContent => StatusCode::NO_CONTENT.into_response(),
        Answer::OkWithBody => reply(StatusCode::OK, success_body()),
        Answer::AcceptedTask => {
            let id = format!("JID_{:012}", rand::random::<u64>() % 1_000_000_000_000);
            bmc.lock()
                .tasks
                .insert(id.clone(), tokio::time::Instant::now() + bmc.timing.task);
            let location = format!("{ROOT}/TaskService/TaskMonitors/{id}");
            let mut response = reply(
                StatusCode::ACCEPTED,
                json!({ "@odata.id": location, "Id": id, "TaskState": "Running" }),
            );
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
    }
}

fn parse_json(body: &Bytes) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn malformed_json() -> Response {
    redfish_error(
        StatusCode::BAD_REQUEST,
        "MalformedJSON",
        "The request body is not a JSON object.",
    )
}

fn link(path: &str) -> Value {
    json!({ "@odata.id": path })
}

fn collection(path: &str, members: &[String]) -> Value {
    json!({
        "@odata.id": path,
        "Members": members.iter().map(|m| link(m)).collect::<Vec<_>>(),
        "Members@odata.count": members.len(),
    })
}

/// The Redfish router for one profile; give it a BMC with `with_state` and wrap it with [`guard`].
pub fn router(p: &'static VendorProfile) -> Router<Arc<SimBmc>> {
    let sys = system_path(p);
    let mgr = manager_path(p);
    let media = media_base(p);
    let logs = log_base(p);
    let mut router = Router::new()
        .route(ROOT, get(service_root))
        .route(&format!("{ROOT}/"), get(service_root))
        .route(&format!("{ROOT}/Systems"), get(systems))
        .route(&sys, get(system).patch(patch_system))
        .route(&format!("{sys}/Actions/ComputerSystem.Reset"), post(reset))
        .route(
            &format!("{sys}/Actions/ComputerSystem.Decommission"),
            post(decommission),
        )
        .route(&format!("{sys}/Bios"), get(firmware::bios))
        .route(
            &format!("{sys}/Bios/Settings"),
            get(firmware::bios_settings).patch(firmware::patch_bios_settings),
        )
        .route(
            &format!("{ROOT}/UpdateService"),
            get(firmware::update_service),
        )
        .route(
            &format!("{ROOT}/UpdateService/FirmwareInventory"),
            get(firmware::firmware_collection),
        )
        .route(
            &format!("{ROOT}/UpdateService/FirmwareInventory/{{id}}"),
            get(firmware::firmware_member),
        )
        .route(&format!("{sys}/EthernetInterfaces"), get(nics))
        .route(&format!("{sys}/EthernetInterfaces/{{nic}}"), get(nic))
        .route(&format!("{ROOT}/Managers"), get(managers))
        .route(&mgr, get(manager))
        .route(&media, get(media_collection))
        .route(
            &format!("{media}/{{slot}}"),
            get(media_slot).patch(patch_media),
        )
        .route(
            &format!("{media}/{{slot}}/Actions/VirtualMedia.InsertMedia"),
            post(insert_media),
        )
        .route(
            &format!("{media}/{{slot}}/Actions/VirtualMedia.EjectMedia"),
            post(eject_media),
        )
        .route(&logs, get(log_services))
        .route(&format!("{logs}/{}", p.log_id), get(log_service))
        .route(&format!("{logs}/{}/Entries", p.log_id), get(log_entries))
        .route(
            &format!("{logs}/{}/Actions/LogService.ClearLog", p.log_id),
            post(clear_log),
        )
        .route(
            &format!("{ROOT}/TaskService/TaskMonitors/{{id}}"),
            get(task_monitor),
        );
    if p.sessions {
        router = router
            .route(&format!("{ROOT}/SessionService"), get(session_service))
            .route(
                &format!("{ROOT}/SessionService/Sessions"),
                get(sessions).post(login),
            )
            .route(
                &format!("{ROOT}/SessionService/Sessions/{{id}}"),
                get(session).delete(logout),
            );
    }
    router.fallback(not_found)
}

async fn not_found() -> Response {
    redfish_error(
        StatusCode::NOT_FOUND,
        "ResourceMissingAtURI",
        "The resource at the URI was not found.",
    )
}

/// Applies the fault knobs and authentication before any handler.
pub async fn guard(State(bmc): State<Arc<SimBmc>>, request: Request, next: Next) -> Response {
    let faults = bmc.faults();
    bmc.lock().requests += 1;
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if faults.busy {
        let mut response = redfish_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceTemporarilyUnavailable",
            "The BMC is busy.",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    if faults.error_rate > 0.0 && rand::random::<f64>() < faults.error_rate {
        return redfish_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Simulated internal error.",
        );
    }
    let path = request.uri().path().trim_end_matches('/');
    // A service that guards even session login with basic auth (sushy-emulator with basic auth on) answers a
    // login without it 401.
    let anonymous = (request.method() == Method::GET && path == ROOT)
        || (request.method() == Method::POST
            && path == format!("{ROOT}/SessionService/Sessions")
            && !faults.basic_only);
    if !anonymous && !authorized(&bmc, request.headers()) {
        let mut response = redfish_error(
            StatusCode::UNAUTHORIZED,
            "NoValidSession",
            "Authentication required.",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"BMC\""),
        );
        return response;
    }
    next.run(request).await
}

fn authorized(bmc: &SimBmc, headers: &HeaderMap) -> bool {
    if bmc.faults().wrong_credentials {
        return false;
    }
    if let Some(token) = headers.get("X-Auth-Token").and_then(|v| v.to_str().ok()) {
        return bmc.lock().sessions.contains_key(token);
    }
    let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
        return false;
    };
    let text = String::from_utf8_lossy(&decoded);
    match text.split_once(':') {
        Some((user, password)) => bmc.credentials_ok(user, password),
        None => false,
    }
}

async fn service_root(State(bmc): State<Arc<SimBmc>>) -> Response {
    let p = bmc.profile;
    let mut root = json!({
        "@odata.id": format!("{ROOT}/"),
        "@odata.type": "#ServiceRoot.v1_15_0.ServiceRoot",
        "Id": "RootService",
        "Name": "Root Service",
        "RedfishVersion": "1.15.0",
        "UUID": format!("4b494c4e-0000-4000-8000-{:012x}", bmc.index),
        "Systems": link(&format!("{ROOT}/Systems")),
        "Managers": link(&format!("{ROOT}/Managers")),
        "UpdateService": link(&format!("{ROOT}/UpdateService")),
        "Oem": { p.name: { "Simulated": true } },
    });
    if let Some(map) = root.as_object_mut() {
        if let Some(vendor) = p.vendor {
            map.insert("Vendor".into(), json!(vendor));
        }
        if let Some(feature) = p.expand {
            map.insert(
                "ProtocolFeaturesSupported".into(),
                json!({ "ExpandQuery": { feature: true, "Levels": true, "MaxLevels": 1 } }),
            );
        }
        if p.sessions {
            map.insert(
                "SessionService".into(),
                link(&format!("{ROOT}/SessionService")),
            );
            map.insert(
                "Links".into(),
                json!({ "Sessions": link(&format!("{ROOT}/SessionService/Sessions")) }),
            );
        }
    }
    reply(StatusCode::OK, root)
}

/// The Systems collection; with `$expand` (where the profile advertises it) the member is the whole system.
async fn systems(State(bmc): State<Arc<SimBmc>>, uri: Uri) -> Response {
    let mut body = collection(&format!("{ROOT}/Systems"), &[system_path(bmc.profile)]);
    let expand = uri
        .query()
        .is_some_and(|query| query.split('&').any(|q| q.starts_with("$expand=")));
    if expand
        && bmc.profile.expand.is_some()
        && let Some(map) = body.as_object_mut()
    {
        map.insert("Members".into(), json!([system_body(&bmc).0]));
    }
    reply(StatusCode::OK, body)
}

fn power_text(power: PowerState) -> &'static str {
    match power {
        PowerState::On => "On",
        PowerState::Off => "Off",
        PowerState::PoweringOn => "PoweringOn",
        PowerState::PoweringOff => "PoweringOff",
    }
}

fn etag_of(version: u64) -> String {
    format!("W/\"{version}\"")
}

async fn system(State(bmc): State<Arc<SimBmc>>) -> Response {
    let (body, version) = system_body(&bmc);
    let mut response = reply(StatusCode::OK, body);
    if bmc.profile.etag == EtagStyle::HeaderRequired
        && let Ok(value) = HeaderValue::from_str(&etag_of(version))
    {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The ComputerSystem resource and the version its ETag is made from.
fn system_body(bmc: &SimBmc) -> (Value, u64) {
    let p = bmc.profile;
    let sys = system_path(p);
    let (power, boot, version) = {
        let inner = bmc.lock();
        (inner.power, inner.boot.clone(), inner.system_version)
    };
    let mut boot_json = json!({
        "BootSourceOverrideEnabled": boot.enabled,
        "BootSourceOverrideTarget": boot.target,
        "BootSourceOverrideTarget@Redfish.AllowableValues": p.boot_targets,
    });
    if p.has_boot_mode
        && let Some(map) = boot_json.as_object_mut()
    {
        map.insert("BootSourceOverrideMode".into(), json!(boot.mode));
    }
    let mut body = json!({
        "@odata.id": sys,
        "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
        "Id": p.system_id,
        "Name": "System",
        "Manufacturer": p.manufacturer,
        "Model": p.model,
        "SerialNumber": bmc.serial,
        "BiosVersion": crate::state::SIM_BIOS_VERSION,
        "Bios": link(&format!("{sys}/Bios")),
        "PowerState": power_text(power),
        "Status": { "State": "Enabled", "Health": "OK" },
        "Boot": boot_json,
        "Actions": { "#ComputerSystem.Reset": {
            "target": format!("{sys}/Actions/ComputerSystem.Reset"),
            "ResetType@Redfish.AllowableValues": p.reset_types,
        }},
        "EthernetInterfaces": link(&format!("{sys}/EthernetInterfaces")),
        "Oem": { p.name: { "SimulatedIndex": bmc.index } },
    });
    if let Some(map) = body.as_object_mut() {
        if p.media_under == Under::System {
            map.insert("VirtualMedia".into(), link(&media_base(p)));
        }
        if p.log_under == Under::System {
            map.insert("LogServices".into(), link(&log_base(p)));
        }
        if p.etag == EtagStyle::BodyOptional {
            map.insert("@odata.etag".into(), json!(etag_of(version)));
        }
        if !p.decommission_types.is_empty()
            && let Some(Value::Object(actions)) = map.get_mut("Actions")
        {
            actions.insert(
                "#ComputerSystem.Decommission".into(),
                json!({
                    "target": format!("{sys}/Actions/ComputerSystem.Decommission"),
                    "DecommissionTypes@Redfish.AllowableValues": p.decommission_types,
                }),
            );
        }
    }
    (body, version)
}

async fn patch_system(State(bmc): State<Arc<SimBmc>>, headers: HeaderMap, body: Bytes) -> Response {
    let p = bmc.profile;
    let Some(body) = parse_json(&body) else {
        return malformed_json();
    };
    let current = etag_of(bmc.lock().system_version);
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    match (p.etag, if_match) {
        (EtagStyle::HeaderRequired, None) => {
            return redfish_error(
                StatusCode::PRECONDITION_REQUIRED,
                "PreconditionRequired",
                "If-Match is required.",
            );
        }
        (EtagStyle::HeaderRequired | EtagStyle::BodyOptional, Some(tag))
            if tag != current && tag != "*" =>
        {
            return redfish_error(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "ETag does not match.",
            );
        }
        _ => {}
    }
    let Some(Value::Object(boot)) = body.get("Boot") else {
        return redfish_error(
            StatusCode::BAD_REQUEST,
            "PropertyMissing",
            "Only Boot can be changed.",
        );
    };
    let text = |key: &str| boot.get(key).and_then(Value::as_str).map(str::to_string);
    let enabled = text("BootSourceOverrideEnabled").unwrap_or_else(|| "Once".into());
    if !["Disabled", "Once", "Continuous"].contains(&enabled.as_str()) {
        return redfish_error(
            StatusCode::BAD_REQUEST,
            "PropertyValueNotInList",
            "Bad BootSourceOverrideEnabled.",
        );
    }
    let Some(target) = text("BootSourceOverrideTarget") else {
        return redfish_error(
            StatusCode::BAD_REQUEST,
            "PropertyMissing",
            "BootSourceOverrideTarget is required.",
        );
    };
    if !p.boot_targets.contains(&target.as_str()) {
        return redfish_error(
            StatusCode::BAD_REQUEST,
            "PropertyValueNotInList",
            "Target not allowed.",
        );
    }
    let mode = text("BootSourceOverrideMode");
    match (&mode, p.has_boot_mode) {
        (Some(_), false) => {
            return redfish_error(
                StatusCode::BAD_REQUEST,
                "PropertyUnknown",
                "BootSourceOverrideMode is unknown.",
            );
        }
        (Some(m), true) if m != "UEFI" && m != "Legacy" => {
            return redfish_error(
                StatusCode::BAD_REQUEST,
                "PropertyValueNotInList",
                "Bad BootSourceOverrideMode.",
            );
        }
        (None, true) if p.boot_patch_requires_mode => {
            return redfish_error(
                StatusCode::BAD_REQUEST,
                "PropertyMissing",
                "BootSourceOverrideMode is required.",
            );
        }
        _ => {}
    }
    bmc.set_boot(&enabled, &target, mode.as_deref());
    answer(&bmc, p.patch_answer)
}

async fn reset(State(bmc): State<Arc<SimBmc>>, body: Bytes) -> Response {
    let Some(body) = parse_json(&body) else {
        return malformed_json();
    };
    let Some(reset_type) = body.get("ResetType").and_then(Value::as_str) else {
        return redfish_error(
            StatusCode::BAD_REQUEST,
            "ActionParameterMissing",
            "ResetType is required.",
        );
    };
    if !bmc.reset(reset_type) {
        return redfish_error(
            StatusCode::BAD_REQUEST,
            "ActionParameterNotSupported",
            "ResetType not supported.",
        );
    }
    answer(&bmc, bmc.profile.reset_answer)
}

/// `#ComputerSystem.Decommission`: every type asked must be one the profile offers; `Tpm` counts a TPM clear.
/// Profiles without the action answer 404 like real firmware (the route exists for all, the action for some).
async fn decommission(State(bmc): State<Arc<SimBmc>>, body: Bytes) -> Response {
    let offered = bmc.profile.decommission_types;
    if offered.is_empty() {
        return redfish_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "Decommission is not offered.",
        );
    }
    let Some(body) = parse_json(&body) else {
        return malformed_json();
    };
    let Some(types) = body.get("DecommissionTypes").and_then(Value::as_array) else {
        return redfish_error(
            StatusCode::BAD_REQUEST,
            "ActionParameterMissing",
            "DecommissionTypes is required.",
        );
    };
    let asked: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
    if asked.is_empty() || asked.len() != types.len() || asked.iter().any(|t| !offered.contains(t))
    {
        return redfish_error(
            StatusCode::BAD_REQUEST,
            "ActionParameterNotSupported",
            "DecommissionTypes not supported.",
        );
    }
    if asked.contains(&"Tpm") {
        bmc.lock().tpm_clears += 1;
    }
    answer(&bmc, Answer::AcceptedTask)
}
