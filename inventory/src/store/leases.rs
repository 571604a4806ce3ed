//! Lessees and hall lease records. (Moving a hall's nodes under a lease is the API's leasing flow.)

use chrono::{DateTime, Utc};

use super::{Store, get, get_opt_time, get_time};
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

    /// Records a lease of `hall_id` to `lessee_id`; returns it.
    pub async fn create_hall_lease(
        &self,
        hall_id: i64,
        lessee_id: i64,
        starts_at: DateTime<Utc>,
        ends_at: Option<DateTime<Utc>>,
        acceptance: &serde_json::Value,
    ) -> Result<HallLease, StoreError> {
        let row = sqlx::query(
            "INSERT INTO hall_leases (hall_id, lessee_id, starts_at, ends_at, acceptance, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'active', $6) RETURNING id",
        )
        .bind(hall_id)
        .bind(lessee_id)
        .bind(to_millis(starts_at))
        .bind(ends_at.map(to_millis))
        .bind(acceptance.to_string())
        .bind(to_millis(self.now()))
        .fetch_one(&self.write)
        .await
        .map_err(StoreError::db("creating a hall lease"))?;
        let id: i64 = get(&row, "id")?;
        let leases = self.hall_leases(hall_id).await?;
        leases
            .into_iter()
            .find(|lease| lease.id == id)
            .ok_or_else(|| StoreError::Corrupt {
                what: "hall lease".into(),
                detail: format!("lease {id} vanished after insert"),
            })
    }

    /// Leases of a hall, oldest first.
    pub async fn hall_leases(&self, hall_id: i64) -> Result<Vec<HallLease>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, hall_id, lessee_id, starts_at, ends_at, acceptance, status, released_at \
             FROM hall_leases WHERE hall_id = $1 ORDER BY id",
        )
        .bind(hall_id)
        .fetch_all(&self.write)
        .await
        .map_err(StoreError::db("reading hall leases"))?;
        rows.iter()
            .map(|row| {
                let acceptance: String = get(row, "acceptance")?;
                Ok(HallLease {
                    id: get(row, "id")?,
                    hall_id: get(row, "hall_id")?,
                    lessee_id: get(row, "lessee_id")?,
                    starts_at: get_time(row, "starts_at")?,
                    ends_at: get_opt_time(row, "ends_at")?,
                    acceptance: serde_json::from_str(&acceptance).map_err(|err| {
                        StoreError::Corrupt {
                            what: "lease acceptance rule".into(),
                            detail: err.to_string(),
                        }
                    })?,
                    status: get(row, "status")?,
                    released_at: get_opt_time(row, "released_at")?,
                })
            })
            .collect()
    }
}
