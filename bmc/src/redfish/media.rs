//! Virtual media over Redfish: the VirtualMedia collections under the system (newer BMCs) and the manager (older
//! ones), a slot that cannot be read as a warning, slot choice, and insert/eject through the slot's actions or, where a BMC offers none, a PATCH.

use reqwest::Method;
use serde_json::json;

use super::RedfishClient;
use super::model::{Collection, VirtualMedia};
use crate::{BmcError, VirtualMediaSlot};

impl RedfishClient {
    /// The virtual media collections: under the system (newer BMCs), the manager (older ones), or both (some
    /// list a slot in each); the same collection linked twice is read once.
    async fn virtual_media_collections(&self) -> Result<(Vec<String>, Vec<String>), BmcError> {
        let (system, _) = self.system().await?;
        let mut collections: Vec<String> = system
            .virtual_media
            .and_then(|link| link.odata_id)
            .into_iter()
            .collect();
        let mut warnings = Vec::new();
        match self.manager().await {
            Ok(manager) => {
                if let Some(path) = manager
                    .and_then(|m| m.virtual_media)
                    .and_then(|l| l.odata_id)
                    && !collections.contains(&path)
                {
                    collections.push(path);
                }
            }
            // The system's own collection is enough; a manager that cannot be read is only a warning then.
            Err(err) if !collections.is_empty() => warnings.push(format!("Manager: {err}")),
            Err(err) => return Err(err),
        }
        Ok((collections, warnings))
    }

    /// Every slot that could be read, and what could not (a slot the BMC lists but answers 404 for, say).
    async fn virtual_media_resources(
        &self,
    ) -> Result<(Vec<(String, VirtualMedia)>, Vec<String>), BmcError> {
        let (collections, mut warnings) = self.virtual_media_collections().await?;
        let mut slots = Vec::new();
        for collection in collections {
            let members = match self.transport.get::<Collection>(&collection).await {
                Ok((members, _)) => members.members,
                Err(err) => {
                    warnings.push(format!("virtual media collection {collection}: {err}"));
                    continue;
                }
            };
            for path in members.into_iter().filter_map(|link| link.odata_id) {
                match self.transport.get::<VirtualMedia>(&path).await {
                    Ok((media, _)) => slots.push((path, media)),
                    Err(err) => warnings.push(format!("virtual media slot {path}: {err}")),
                }
            }
        }
        Ok((slots, warnings))
    }

    /// Picks the slot named `slot`, or the first CD/DVD-type slot, or the first slot.
    async fn pick_slot(&self, slot: Option<&str>) -> Result<(String, VirtualMedia), BmcError> {
        let (slots, _) = self.virtual_media_resources().await?;
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

    /// The virtual media slots, as kiln reports them, and what could not be read.
    pub(super) async fn media_slots(
        &self,
    ) -> Result<(Vec<VirtualMediaSlot>, Vec<String>), BmcError> {
        let (resources, warnings) = self.virtual_media_resources().await?;
        let slots = resources
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
            .collect();
        Ok((slots, warnings))
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
