//! Importing a rack manifest: every row checked against the manifest and the database first, then all of it
//! written in one transaction. Re-importing the same manifest changes nothing.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::events::insert_event;
use super::{Store, get};
use crate::clock::to_millis;
use crate::error::StoreError;
use crate::manifest::{ManifestError, ManifestErrors, ManifestRow, check_skus};
use crate::model::NodeId;
use crate::state::NodeState;

/// What an import did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImportSummary {
    /// Nodes enrolled by this import.
    pub created: usize,
    /// Rows that matched a node already enrolled exactly as described.
    pub unchanged: usize,
    /// Halls created.
    pub halls_created: usize,
    /// Racks created.
    pub racks_created: usize,
}

/// A node as already enrolled, for comparison with manifest rows.
struct Enrolled {
    site: String,
    hall: String,
    rack: String,
    slot: i64,
    serial: String,
    sku: String,
    boot_mac: String,
    bmc_address: String,
    bmc_protocol: String,
    bmc_user: String,
}

impl Enrolled {
    fn place(&self) -> String {
        format!(
            "site {} hall {} rack {} slot {}",
            self.site, self.hall, self.rack, self.slot
        )
    }
}

fn place_of(row: &ManifestRow, site: &str) -> String {
    format!(
        "site {site} hall {} rack {} slot {}",
        row.hall, row.rack, row.slot
    )
}

impl Store {
    /// Imports checked manifest rows (see [`crate::parse_manifest`]) under `default_site` (for rows that name no
    /// site). Conflicts with the database (a serial in another slot, a slot or MAC or BMC taken by another node,
    /// an unknown SKU) are all reported with their line numbers and nothing is written.
    pub async fn import_manifest(
        &self,
        rows: &[ManifestRow],
        default_site: &str,
        actor: &str,
    ) -> Result<ImportSummary, StoreError> {
        let skus: HashSet<String> = self
            .list_skus()
            .await?
            .into_iter()
            .map(|sku| sku.id)
            .collect();
        let mut errors = check_skus(rows, &skus);
        let enrolled = self.enrolled_nodes().await?;
        let by_serial: HashMap<&str, &Enrolled> =
            enrolled.iter().map(|n| (n.serial.as_str(), n)).collect();
        let by_place: HashMap<String, &Enrolled> =
            enrolled.iter().map(|n| (n.place(), n)).collect();
        let by_mac: HashMap<&str, &Enrolled> =
            enrolled.iter().map(|n| (n.boot_mac.as_str(), n)).collect();
        let by_bmc: HashMap<&str, &Enrolled> = enrolled
            .iter()
            .map(|n| (n.bmc_address.as_str(), n))
            .collect();

        let mut new_rows = Vec::new();
        let mut summary = ImportSummary::default();
        for row in rows {
            let site = row.site.as_deref().unwrap_or(default_site);
            let place = place_of(row, site);
            let mut conflict = |message: String| {
                errors.push(ManifestError {
                    line: row.line,
                    message,
                })
            };
            if let Some(existing) = by_serial.get(row.serial.as_str()) {
                let mut differs = Vec::new();
                if existing.place() != place {
                    differs.push(format!(
                        "enrolled at {}, manifest says {place}",
                        existing.place()
                    ));
                }
                let fields = [
                    ("sku", &existing.sku, row.sku.clone()),
                    ("boot_mac", &existing.boot_mac, row.boot_mac.to_string()),
                    (
                        "bmc_address",
                        &existing.bmc_address,
                        row.bmc_address.clone(),
                    ),
                    (
                        "bmc_protocol",
                        &existing.bmc_protocol,
                        row.bmc_protocol.to_string(),
                    ),
                    ("bmc_user", &existing.bmc_user, row.bmc_user.clone()),
                ];
                for (name, enrolled, wanted) in fields {
                    if *enrolled != wanted {
                        differs.push(format!("{name} is {enrolled}, manifest says {wanted}"));
                    }
                }
                if differs.is_empty() {
                    summary.unchanged += 1;
                } else {
                    conflict(format!(
                        "serial {} is already enrolled differently: {}",
                        row.serial,
                        differs.join("; ")
                    ));
                }
                continue;
            }
            if let Some(other) = by_place.get(&place) {
                conflict(format!(
                    "{place} is already taken by serial {}",
                    other.serial
                ));
            }
            if let Some(other) = by_mac.get(row.boot_mac.to_string().as_str()) {
                conflict(format!(
                    "boot MAC {} already belongs to serial {}",
                    row.boot_mac, other.serial
                ));
            }
            if let Some(other) = by_bmc.get(row.bmc_address.as_str()) {
                conflict(format!(
                    "BMC address {} already belongs to serial {}",
                    row.bmc_address, other.serial
                ));
            }
            new_rows.push((row, site));
        }
        if !errors.is_empty() {
            errors.sort_by_key(|error| error.line);
            return Err(StoreError::Manifest(ManifestErrors(errors)));
        }
        if new_rows.is_empty() {
            return Ok(summary);
        }
        let key = self.key_for("seal the manifest's BMC passwords")?;
        let at = to_millis(self.now());
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting an import"))?;
        self.ensure_key_check(&mut tx, key).await?;
        let mut places = PlaceCache::default();
        for (row, site) in &new_rows {
            let rack_id = places
                .rack_id(&mut tx, site, &row.hall, &row.rack, at, &mut summary)
                .await?;
            let bmc = sqlx::query(
                "INSERT INTO bmc_endpoints (address, protocol, username, password_enc, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
            )
            .bind(&row.bmc_address)
            .bind(row.bmc_protocol.as_str())
            .bind(&row.bmc_user)
            .bind(key.seal(&row.bmc_password))
            .bind(at)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db("enrolling a BMC endpoint"))?;
            let bmc_id: i64 = get(&bmc, "id")?;
            let node = sqlx::query(
                "INSERT INTO nodes (rack_id, slot, serial, sku_id, state, bmc_id, boot_mac, version, \
                 state_entered_at, next_check_at, due_since, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $8, $8, $8) RETURNING id",
            )
            .bind(rack_id)
            .bind(row.slot)
            .bind(&row.serial)
            .bind(&row.sku)
            .bind(NodeState::Enrolled.as_str())
            .bind(bmc_id)
            .bind(row.boot_mac.to_string())
            .bind(at)
            // A new node is new work, not a routine recheck: it goes ahead of the queue like a transition.
            .bind(super::lifecycle::ahead_of_queue(at, NodeState::Enrolled))
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db("enrolling a node"))?;
            let node_id = NodeId(get(&node, "id")?);
            let reason = format!("enrolled from manifest line {}", row.line);
            insert_event(
                &mut tx,
                node_id,
                at,
                actor,
                None,
                Some(NodeState::Enrolled),
                &reason,
            )
            .await?;
            summary.created += 1;
        }
        tx.commit()
            .await
            .map_err(StoreError::db("committing an import"))?;
        tracing::info!(
            created = summary.created,
            unchanged = summary.unchanged,
            actor,
            "manifest imported"
        );
        Ok(summary)
    }

    async fn enrolled_nodes(&self) -> Result<Vec<Enrolled>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.name AS site, h.name AS hall, r.name AS rack, n.slot, n.serial, n.sku_id, n.boot_mac, \
             b.address, b.protocol, b.username FROM nodes n JOIN racks r ON r.id = n.rack_id \
             JOIN halls h ON h.id = r.hall_id JOIN sites s ON s.id = h.site_id JOIN bmc_endpoints b ON b.id = n.bmc_id",
        )
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("reading enrolled nodes"))?;
        rows.iter()
            .map(|row| {
                Ok(Enrolled {
                    site: get(row, "site")?,
                    hall: get(row, "hall")?,
                    rack: get(row, "rack")?,
                    slot: get(row, "slot")?,
                    serial: get(row, "serial")?,
                    sku: get(row, "sku_id")?,
                    boot_mac: get(row, "boot_mac")?,
                    bmc_address: get(row, "address")?,
                    bmc_protocol: get(row, "protocol")?,
                    bmc_user: get(row, "username")?,
                })
            })
            .collect()
    }
}

/// Site, hall and rack ids seen during one import, created on first use.
#[derive(Default)]
struct PlaceCache {
    sites: HashMap<String, i64>,
    halls: HashMap<(i64, String), i64>,
    racks: HashMap<(i64, String), i64>,
}

impl PlaceCache {
    async fn rack_id(
        &mut self,
        conn: &mut sqlx::AnyConnection,
        site: &str,
        hall: &str,
        rack: &str,
        at: i64,
        summary: &mut ImportSummary,
    ) -> Result<i64, StoreError> {
        let site_id = match self.sites.get(site) {
            Some(id) => *id,
            None => {
                let (id, _) = get_or_create(conn, "sites", site, None, at).await?;
                self.sites.insert(site.to_string(), id);
                id
            }
        };
        let hall_id = match self.halls.get(&(site_id, hall.to_string())) {
            Some(id) => *id,
            None => {
                let (id, created) =
                    get_or_create(conn, "halls", hall, Some(("site_id", site_id)), at).await?;
                summary.halls_created += usize::from(created);
                self.halls.insert((site_id, hall.to_string()), id);
                id
            }
        };
        match self.racks.get(&(hall_id, rack.to_string())) {
            Some(id) => Ok(*id),
            None => {
                let (id, created) =
                    get_or_create(conn, "racks", rack, Some(("hall_id", hall_id)), at).await?;
                summary.racks_created += usize::from(created);
                self.racks.insert((hall_id, rack.to_string()), id);
                Ok(id)
            }
        }
    }
}

/// Finds the row of `table` with this name (under this parent), creating it if missing. Returns (id, created).
async fn get_or_create(
    conn: &mut sqlx::AnyConnection,
    table: &'static str,
    name: &str,
    parent: Option<(&'static str, i64)>,
    at: i64,
) -> Result<(i64, bool), StoreError> {
    let (select, insert) = match parent {
        Some((column, _)) => (
            format!("SELECT id FROM {table} WHERE name = $1 AND {column} = $2"),
            format!(
                "INSERT INTO {table} (name, {column}, created_at) VALUES ($1, $2, $3) RETURNING id"
            ),
        ),
        None => (
            format!("SELECT id FROM {table} WHERE name = $1"),
            format!("INSERT INTO {table} (name, created_at) VALUES ($1, $2) RETURNING id"),
        ),
    };
    let mut query = sqlx::query(&select).bind(name);
    if let Some((_, id)) = parent {
        query = query.bind(id);
    }
    if let Some(row) = query
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::db("looking up a place"))?
    {
        return Ok((get(&row, "id")?, false));
    }
    let mut query = sqlx::query(&insert).bind(name);
    if let Some((_, id)) = parent {
        query = query.bind(id);
    }
    let row = query
        .bind(at)
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::db("creating a place"))?;
    Ok((get(&row, "id")?, true))
}
