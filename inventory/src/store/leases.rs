//! Lessees and reading hall leases. (Creating and releasing leases, with their nodes, is in `leasing.rs`.)

use super::{Store, get, get_json, get_opt_time, get_time};
use crate::clock::to_millis;
use crate::error::StoreError;
use crate::model::{HallLease, Lessee};

impl Store {
    /// Creates a lessee, or returns the existing one with that name.
    pub async fn upsert_lessee(
        &self,
        name: &str,
        contact: Option<&str>,
    ) -> Result<Lessee, StoreError> {
        sqlx::query("INSERT INTO lessees (name, contact, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(contact)
            .bind(to_millis(self.now()))
            .execute(&self.write)
            .await
            .map_err(StoreError::db("creating a lessee"))?;
        let row = sqlx::query("SELECT id, name, contact FROM lessees WHERE name = $1")
            .bind(name)
            .fetch_one(&self.write)
            .await
            .map_err(StoreError::db("reading a lessee"))?;
        Ok(Lessee {
            id: get(&row, "id")?,
            name: get(&row, "name")?,
            contact: get(&row, "contact")?,
        })
    }

    /// Leases of a hall, oldest first.
    pub async fn hall_leases(&self, hall_id: i64) -> Result<Vec<HallLease>, StoreError> {
        let sql = format!("{LEASE_SELECT} WHERE hall_id = $1 ORDER BY id");
        let rows = sqlx::query(&sql)
            .bind(hall_id)
            .fetch_all(&self.write)
            .await
            .map_err(StoreError::db("reading hall leases"))?;
        rows.iter().map(lease_from_row).collect()
    }

    /// Every lease, newest first; only `lessee_id`'s when given.
    pub async fn list_leases(&self, lessee_id: Option<i64>) -> Result<Vec<HallLease>, StoreError> {
        let sql = format!("{LEASE_SELECT} WHERE ($1 IS NULL OR lessee_id = $1) ORDER BY id DESC");
        let rows = sqlx::query(&sql)
            .bind(lessee_id)
            .fetch_all(&self.read)
            .await
            .map_err(StoreError::db("listing leases"))?;
        rows.iter().map(lease_from_row).collect()
    }

    /// One lease.
    pub async fn lease(&self, id: i64) -> Result<HallLease, StoreError> {
        let sql = format!("{LEASE_SELECT} WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.write)
            .await
            .map_err(StoreError::db("reading a lease"))?
            .ok_or(StoreError::LeaseNotFound(id))?;
        lease_from_row(&row)
    }

    /// Every lessee, by name.
    pub async fn list_lessees(&self) -> Result<Vec<Lessee>, StoreError> {
        let rows = sqlx::query("SELECT id, name, contact FROM lessees ORDER BY name")
            .fetch_all(&self.read)
            .await
            .map_err(StoreError::db("listing lessees"))?;
        rows.iter()
            .map(|row| {
                Ok(Lessee {
                    id: get(row, "id")?,
                    name: get(row, "name")?,
                    contact: get(row, "contact")?,
                })
            })
            .collect()
    }
}

const LEASE_SELECT: &str = "SELECT id, hall_id, lessee_id, starts_at, ends_at, acceptance, status, released_at FROM hall_leases";

fn lease_from_row(row: &sqlx::any::AnyRow) -> Result<HallLease, StoreError> {
    Ok(HallLease {
        id: get(row, "id")?,
        hall_id: get(row, "hall_id")?,
        lessee_id: get(row, "lessee_id")?,
        starts_at: get_time(row, "starts_at")?,
        ends_at: get_opt_time(row, "ends_at")?,
        acceptance: get_json(row, "acceptance", "lease acceptance rule")?,
        status: get(row, "status")?,
        released_at: get_opt_time(row, "released_at")?,
    })
}
