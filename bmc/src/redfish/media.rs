//! Virtual media over Redfish: the VirtualMedia collection under the system (newer BMCs) or the manager (older
//! ones), slot choice, and insert/eject through the slot's actions or, where a BMC offers none, a PATCH.

use reqwest::Method;
use serde_json::json;

use super::RedfishClient;
use super::model::{Collection, VirtualMedia};
use crate::{BmcError, VirtualMediaSlot};

impl RedfishClient {
    /// The virtual media collection: under the system (newer) or the manager (older), whichever exists.
    async fn virtual_media_collection(&self) -> Result<Option<String>, BmcError> {
        let (system, _) = self.system().await?;
        if let Some(path) = system.virtual_media.and_then(|link| link.odata_id) {
            return Ok(Some(path));
        }
        Ok(self
            .manager()
            .await?
            .and_then(|m| m.virtual_media)
            .and_then(|link| link.odata_id))
    }

    async fn virtual_media_resources(&self) -> Result<Vec<(String, VirtualMedia)>, BmcError> {
        let Some(collection) = self.virtual_media_collection().await? else {
            return Ok(Vec::new());
        };
        let (members, _) = self.transport.get::<Collection>(&collection).await?;
        let mut slots = Vec::new();
        for path in members.members.into_iter().filter_map(|link| link.odata_id) {
            let (media, _) = self.transport.get::<VirtualMedia>(&path).await?;
            slots.push((path, media));
        }
        Ok(slots)
    }

    /// Picks the slot named `slot`, or the first CD/DVD-type slot, or the first slot.
    async fn pick_slot(&self, slot: Option<&str>) -> Result<(String, VirtualMedia), BmcError> {
        let slots = self.virtual_media_resources().await?;
        if slots.is_empty() {
            return Err(self.unsupported("virtual media"));
        }
        let found = match slot {
            Some(want) => slots.into_iter().find(|(path, media)| {
                media.id.as_deref() == Some(want)
                    || path.trim_end_matches('/').rsplit('/').next() == Some(want)
            }),
            None => {
                let is_cd = |m: &VirtualMedia| {
                    m.media_types
                        .iter()
                        .any(|t| t.eq_ignore_ascii_case("CD") || t.eq_ignore_ascii_case("DVD"))
                };
                let cd = slots.iter().position(|(_, m)| is_cd(m)).unwrap_or(0);
                slots.into_iter().nth(cd)
            }
        };
        found
            .ok_or_else(|| self.unsupported(format!("virtual media slot {:?}", slot.unwrap_or(""))))
    }

    /// The virtual media slots, as kiln reports them.
    pub(super) async fn media_slots(&self) -> Result<Vec<VirtualMediaSlot>, BmcError> {
        Ok(self
            .virtual_media_resources()
            .await?
            .into_iter()
            .map(|(path, media)| VirtualMediaSlot {
                id: media.id.clone().unwrap_or_else(|| {
                    path.trim_end_matches('/')
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .to_string()
                }),
                inserted: media.inserted.unwrap_or(media.image.is_some()),
                image: media.image.clone().filter(|image| !image.is_empty()),
                insert_supported: media
                    .actions
                    .as_ref()
                    .and_then(|a| a.insert.as_ref())
                    .is_some()
                    || !media.media_types.is_empty(),
            })
            .collect())
    }

    /// Attaches an image: the slot's InsertMedia action, else a PATCH of the slot.
    pub(super) async fn media_insert(
        &self,
        slot: Option<&str>,
        image_url: &str,
    ) -> Result<(), BmcError> {
        let t = &self.transport;
        let (path, media) = self.pick_slot(slot).await?;
        let response = match media.actions.and_then(|a| a.insert).and_then(|a| a.target) {
            Some(target) => {
                let body = json!({ "Image": image_url, "Inserted": true, "WriteProtected": true });
                t.send_ok(Method::POST, &target, Some(&body), None, "insert media")
                    .await?
            }
            None => {
                let body = json!({ "Image": image_url, "Inserted": true });
                t.send_ok(Method::PATCH, &path, Some(&body), None, "insert media")
                    .await?
            }
        };
        self.finish(response, "insert media").await
    }

    /// Detaches the image: the slot's EjectMedia action, else a PATCH of the slot.
    pub(super) async fn media_eject(&self, slot: Option<&str>) -> Result<(), BmcError> {
        let t = &self.transport;
        let (path, media) = self.pick_slot(slot).await?;
        let response = match media.actions.and_then(|a| a.eject).and_then(|a| a.target) {
            Some(target) => {
                t.send_ok(Method::POST, &target, Some(&json!({})), None, "eject media")
                    .await?
            }
            None => {
                let body = json!({ "Image": null, "Inserted": false });
                t.send_ok(Method::PATCH, &path, Some(&body), None, "eject media")
                    .await?
            }
        };
        self.finish(response, "eject media").await
    }
}
