//! The firmware reads of the technician commands (`kiln node firmware`, `kiln hall firmware`), on the local
//! database or over the API.

use kiln_api::routes::firmware::{FirmwareDrift, NodeFirmware};

use super::{Client, path_segment};

impl Client {
    /// A node's firmware components as last read from its BMC.
    pub async fn node_firmware(&self, serial: &str) -> anyhow::Result<NodeFirmware> {
        match self {
            Client::Local { store, .. } => {
                let node = store.node_by_serial(serial).await?;
                Ok(NodeFirmware {
                    components: store.node_firmware(node.id).await?,
                    serial: node.serial,
                })
            }
            Client::Remote(remote) => {
                remote
                    .get(&format!("/nodes/{}/firmware", path_segment(serial)))
                    .await
            }
        }
    }

    /// Nodes per component and version, in one hall or the whole site.
    pub async fn firmware_drift(&self, hall: Option<&str>) -> anyhow::Result<FirmwareDrift> {
        match self {
            Client::Local { store, .. } => Ok(FirmwareDrift {
                hall: hall.map(str::to_string),
                versions: store.firmware_counts(hall).await?,
            }),
            Client::Remote(remote) => {
                let params: Vec<(&str, String)> =
                    hall.map(|h| ("hall", h.to_string())).into_iter().collect();
                remote.get_query("/firmware", &params).await
            }
        }
    }
}
