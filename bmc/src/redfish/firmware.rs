//! Firmware inventory and BIOS settings over Redfish: `UpdateService/FirmwareInventory` (every listed member,
//! whatever `Members@odata.count` says, following `Members@odata.nextLink`; a member that fails to load is a
//! warning), and `Systems/{id}/Bios` with its `@Redfish.Settings` object (pending changes, PATCHed with the
//! differences only).

use reqwest::Method;
use serde_json::{Map, Value};
use tracing::info;

use super::RedfishClient;
use crate::{BiosChange, BiosSettings, BmcError, FirmwareComponent, FirmwareInventory};

/// A firmware inventory longer than this many pages is cut off with a warning (a looping `nextLink`).
const MAX_PAGES: usize = 32;

fn link_of(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)?
        .get("@odata.id")?
        .as_str()
        .filter(|path| !path.is_empty())
        .map(str::to_string)
}

fn text(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One FirmwareInventory member, read leniently: a missing or odd field is `None`, never an error.
fn component(path: &str, body: &Value) -> FirmwareComponent {
    let id = text(body, "Id").unwrap_or_else(|| {
        path.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(path)
            .to_string()
    });
    FirmwareComponent {
        id,
        name: text(body, "Name"),
        version: text(body, "Version"),
        updateable: match body.get("Updateable") {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        },
        software_id: text(body, "SoftwareId"),
        manufacturer: text(body, "Manufacturer"),
        health: body.get("Status").and_then(|s| text(s, "Health")),
        source: "redfish".into(),
    }
}

fn attributes(body: &Value) -> Map<String, Value> {
    match body.get("Attributes") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

impl RedfishClient {
    /// `UpdateService/FirmwareInventory`, or, where the BMC offers none, the System's `BiosVersion` and the
    /// Manager's `FirmwareVersion`.
    pub(super) async fn firmware_inventory(&self) -> Result<FirmwareInventory, BmcError> {
        let t = &self.transport;
        let mut inventory = FirmwareInventory::default();
        // The service root's UpdateService link was read at discovery.
        let collection = match self.discovery().await?.update_service.clone() {
            Some(service) => match t.get::<Value>(&service).await {
                Ok((service, _)) => link_of(&service, "FirmwareInventory"),
                Err(err) => {
                    inventory.warnings.push(format!("UpdateService: {err}"));
                    None
                }
            },
            None => None,
        };
        let Some(mut page) = collection else {
            return self.firmware_from_system(inventory).await;
        };
        for pages in 0.. {
            if pages == MAX_PAGES {
                inventory.warnings.push(format!(
                    "FirmwareInventory: more than {MAX_PAGES} pages; the rest was not read"
                ));
                break;
            }
            let (body, _) = t.get::<Value>(&page).await?;
            let members: Vec<String> = match body.get("Members") {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|m| m.get("@odata.id").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            };
            if pages == 0
                && let Some(count) = body.get("Members@odata.count").and_then(Value::as_u64)
                && body.get("Members@odata.nextLink").is_none()
                && count != members.len() as u64
            {
                inventory.warnings.push(format!(
                    "FirmwareInventory: Members@odata.count says {count} but {} members are listed; read every \
                     listed member",
                    members.len()
                ));
            }
            for path in members {
                match t.get::<Value>(&path).await {
                    Ok((member, _)) => inventory.components.push(component(&path, &member)),
                    Err(err) => inventory.warnings.push(format!("{path}: {err}")),
                }
            }
            match body.get("Members@odata.nextLink").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => page = next.to_string(),
                _ => break,
            }
        }
        Ok(inventory)
    }

    async fn firmware_from_system(
        &self,
        mut inventory: FirmwareInventory,
    ) -> Result<FirmwareInventory, BmcError> {
        let system = self.system_for_reading().await?;
        let manager = match self.manager().await {
            Ok(manager) => manager,
            Err(err) => {
                inventory.warnings.push(format!("Manager: {err}"));
                None
            }
        };
        let from_system =
            |id: &str, version| FirmwareComponent::version_only(id, version, "system");
        if let Some(version) = manager.and_then(|m| m.firmware_version) {
            inventory.components.push(from_system("BMC", Some(version)));
        }
        if let Some(version) = system.bios_version {
            inventory
                .components
                .push(from_system("BIOS", Some(version)));
        }
        inventory
            .warnings
            .push("the BMC offers no UpdateService/FirmwareInventory".into());
        Ok(inventory)
    }

    /// The Bios resource's path and body.
    async fn bios_resource(&self) -> Result<(String, Value), BmcError> {
        let (system, _) = self.system().await?;
        let path = system
            .bios
            .and_then(|link| link.odata_id)
            .ok_or_else(|| self.unsupported("BIOS settings"))?;
        let (bios, _) = self.transport.get::<Value>(&path).await?;
        Ok((path, bios))
    }

    pub(super) async fn bios_settings(&self) -> Result<BiosSettings, BmcError> {
        let (_, bios) = self.bios_resource().await?;
        let settings = bios.get("@Redfish.Settings");
        let mut result = BiosSettings {
            apply_times: strings(settings.and_then(|s| s.get("SupportedApplyTimes"))),
            attributes: attributes(&bios),
            ..BiosSettings::default()
        };
        if let Some(path) = settings.and_then(|s| link_of(s, "SettingsObject")) {
            match self.transport.get::<Value>(&path).await {
                Ok((pending, _)) => {
                    for (key, value) in attributes(&pending) {
                        if result.attributes.get(&key) != Some(&value) {
                            result.pending.insert(key, value);
                        }
                    }
                }
                Err(err) => result.warnings.push(format!("{path}: {err}")),
            }
        }
        Ok(result)
    }

    pub(super) async fn patch_bios(
        &self,
        changes: &Map<String, Value>,
    ) -> Result<BiosChange, BmcError> {
        let (path, bios) = self.bios_resource().await?;
        let current = attributes(&bios);
        let unknown: Vec<&str> = changes
            .keys()
            .filter(|key| !current.contains_key(*key))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() && !current.is_empty() {
            return Err(BmcError::Config {
                addr: self.transport.addr().to_string(),
                detail: format!(
                    "the BIOS has no attribute {} (see `kiln bmc bios`)",
                    unknown.join(", ")
                ),
            });
        }
        let mut changed = Map::new();
        let mut unchanged = Vec::new();
        for (key, value) in changes {
            if current.get(key) == Some(value) {
                unchanged.push(key.clone());
            } else {
                changed.insert(key.clone(), value.clone());
            }
        }
        let settings = bios.get("@Redfish.Settings");
        let apply_times = strings(settings.and_then(|s| s.get("SupportedApplyTimes")));
        // Where the BMC names its apply times, ask for the next reset if it offers that, as BIOS changes need one.
        let applies = if apply_times.is_empty() || apply_times.iter().any(|t| t == "OnReset") {
            "OnReset".to_string()
        } else {
            apply_times[0].clone()
        };
        if changed.is_empty() {
            return Ok(BiosChange {
                changed,
                unchanged,
                applies: "nothing to apply".into(),
            });
        }
        // The settings object takes the change (most BMCs); one without it takes a PATCH of Bios itself.
        let target = settings
            .and_then(|s| link_of(s, "SettingsObject"))
            .unwrap_or(path);
        let mut body = serde_json::json!({ "Attributes": changed });
        if !apply_times.is_empty() {
            body["@Redfish.SettingsApplyTime"] = serde_json::json!({ "ApplyTime": applies });
        }
        info!(bmc = %self.transport.addr(), attributes = changed.len(), "BIOS settings change");
        self.transport
            .send_ok(
                Method::PATCH,
                &target,
                Some(&body),
                None,
                "BIOS settings PATCH",
            )
            .await?;
        Ok(BiosChange {
            changed,
            unchanged,
            applies,
        })
    }
}
