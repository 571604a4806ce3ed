//! The event log over Redfish: the manager's SEL log service if there is one (else the first log service
//! found), its entries, and its ClearLog action.

use reqwest::Method;
use serde_json::json;

use super::RedfishClient;
use super::model::{Collection, LogEntryCollection, LogService};
use crate::{BmcError, LogEntry};

impl RedfishClient {
    /// The log service kiln reads: the manager's SEL if there is one, else the first log service found.
    async fn log_service(&self) -> Result<LogService, BmcError> {
        let t = &self.transport;
        let (system, _) = self.system().await?;
        let manager = self.manager().await?;
        let collections: Vec<String> = manager
            .and_then(|m| m.log_services)
            .into_iter()
            .chain(system.log_services)
            .filter_map(|link| link.odata_id)
            .collect();
        let mut fallback = None;
        for collection in collections {
            let (members, _) = t.get::<Collection>(&collection).await?;
            for path in members.members.into_iter().filter_map(|link| link.odata_id) {
                let (service, _) = t.get::<LogService>(&path).await?;
                if service
                    .id
                    .as_deref()
                    .is_some_and(|id| id.to_ascii_lowercase().contains("sel"))
                {
                    return Ok(service);
                }
                fallback.get_or_insert(service);
            }
        }
        fallback.ok_or_else(|| self.unsupported("event log"))
    }

    /// The entries of the log service kiln reads.
    pub(super) async fn log_entries(&self) -> Result<Vec<LogEntry>, BmcError> {
        let t = &self.transport;
        let service = self.log_service().await?;
        let Some(entries) = service.entries.and_then(|link| link.odata_id) else {
            return Ok(Vec::new());
        };
        let (collection, _) = t.get::<LogEntryCollection>(&entries).await?;
        Ok(collection
            .members
            .into_iter()
            .enumerate()
            .map(|(index, entry)| LogEntry {
                id: entry.id.unwrap_or_else(|| index.to_string()),
                created: entry.created,
                severity: entry.severity,
                message: entry.message.unwrap_or_default(),
            })
            .collect())
    }

    /// Clears that log through its ClearLog action.
    pub(super) async fn log_clear(&self) -> Result<(), BmcError> {
        let t = &self.transport;
        let service = self.log_service().await?;
        let target = service
            .actions
            .and_then(|a| a.clear)
            .and_then(|a| a.target)
            .ok_or_else(|| self.unsupported("clearing the event log"))?;
        let response = t
            .send_ok(Method::POST, &target, Some(&json!({})), None, "clear log")
            .await?;
        self.finish(response, "clear log").await
    }
}
