//! What inspection found in a node: GPUs, NICs, disks.

use super::{Store, get, get_parsed};
use crate::error::StoreError;
use crate::model::{Disk, Gpu, Hardware, Nic, NodeId};

impl Store {
    /// Replaces the node's recorded hardware with `hardware`, in one transaction.
    pub async fn replace_hardware(
        &self,
        node: NodeId,
        hardware: &Hardware,
    ) -> Result<(), StoreError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting a hardware update"))?;
        for table in ["gpus", "nics", "disks"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE node_id = $1"))
                .bind(node.0)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("clearing old hardware"))?;
        }
        for gpu in &hardware.gpus {
            sqlx::query(
                "INSERT INTO gpus (node_id, idx, model, uuid, serial, pci_bus_id, memory_mib, vbios) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(node.0)
            .bind(gpu.index)
            .bind(&gpu.model)
            .bind(&gpu.uuid)
            .bind(&gpu.serial)
            .bind(&gpu.pci_bus_id)
            .bind(gpu.memory_mib)
            .bind(&gpu.vbios)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("recording a GPU"))?;
        }
        for nic in &hardware.nics {
            sqlx::query(
                "INSERT INTO nics (node_id, name, mac, speed_mbps) VALUES ($1, $2, $3, $4)",
            )
            .bind(node.0)
            .bind(&nic.name)
            .bind(nic.mac.to_string())
            .bind(nic.speed_mbps)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("recording a NIC"))?;
        }
        for disk in &hardware.disks {
            sqlx::query("INSERT INTO disks (node_id, name, model, serial, size_bytes) VALUES ($1, $2, $3, $4, $5)")
                .bind(node.0)
                .bind(&disk.name)
                .bind(&disk.model)
                .bind(&disk.serial)
                .bind(disk.size_bytes)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("recording a disk"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::db("committing a hardware update"))
    }

    /// The node's recorded hardware (empty before inspection).
    pub async fn hardware(&self, node: NodeId) -> Result<Hardware, StoreError> {
        let gpus = sqlx::query(
            "SELECT idx, model, uuid, serial, pci_bus_id, memory_mib, vbios FROM gpus WHERE node_id = $1 ORDER BY idx",
        )
        .bind(node.0)
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("reading GPUs"))?;
        let nics =
            sqlx::query("SELECT name, mac, speed_mbps FROM nics WHERE node_id = $1 ORDER BY name")
                .bind(node.0)
                .fetch_all(&self.read)
                .await
                .map_err(StoreError::db("reading NICs"))?;
        let disks = sqlx::query(
            "SELECT name, model, serial, size_bytes FROM disks WHERE node_id = $1 ORDER BY name",
        )
        .bind(node.0)
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("reading disks"))?;
        Ok(Hardware {
            gpus: gpus
                .iter()
                .map(|row| {
                    Ok(Gpu {
                        index: get(row, "idx")?,
                        model: get(row, "model")?,
                        uuid: get(row, "uuid")?,
                        serial: get(row, "serial")?,
                        pci_bus_id: get(row, "pci_bus_id")?,
                        memory_mib: get(row, "memory_mib")?,
                        vbios: get(row, "vbios")?,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
            nics: nics
                .iter()
                .map(|row| {
                    Ok(Nic {
                        name: get(row, "name")?,
                        mac: get_parsed(row, "mac")?,
                        speed_mbps: get(row, "speed_mbps")?,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
            disks: disks
                .iter()
                .map(|row| {
                    Ok(Disk {
                        name: get(row, "name")?,
                        model: get(row, "model")?,
                        serial: get(row, "serial")?,
                        size_bytes: get(row, "size_bytes")?,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        })
    }
}
