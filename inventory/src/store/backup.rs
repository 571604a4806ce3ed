//! Online backups of an SQLite inventory (`kiln db backup`).

use std::path::Path;

use super::{Backend, Store};
use crate::error::StoreError;

impl Store {
    /// Why a PostgreSQL inventory is not backed up by kiln, and the `pg_dump` command writing `dest` instead.
    pub fn postgres_backup_advice(dest: &Path) -> String {
        format!(
            "kiln db backup copies SQLite inventories only; for PostgreSQL use pg_dump, e.g. \
             `pg_dump -Fc --dbname=\"$KILN_DB\" --file={}` (restore with pg_restore)",
            dest.display()
        )
    }

    /// Writes a consistent copy of an SQLite inventory to `dest` while the store stays in use (other
    /// processes, such as a running `kiln serve`, may keep writing). The copy is made with `VACUUM INTO` on a
    /// reader connection: one read transaction, so it is the database as of one instant, and it never blocks
    /// the writer (WAL mode). It is written beside `dest` first and renamed into place, so a failed backup
    /// leaves no half file at `dest`. An existing `dest` is refused unless `overwrite` is set.
    ///
    /// PostgreSQL inventories are refused with the `pg_dump` command to use instead.
    pub async fn backup_to(&self, dest: &Path, overwrite: bool) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::Invalid(Self::postgres_backup_advice(dest)));
        }
        if !overwrite && dest.exists() {
            return Err(StoreError::Invalid(format!(
                "backup file {} already exists (pass --force to replace it)",
                dest.display()
            )));
        }
        let name = dest.file_name().ok_or_else(|| {
            StoreError::Invalid(format!("backup path {} names no file", dest.display()))
        })?;
        let mut partial_name = name.to_os_string();
        partial_name.push(format!(".partial-{}", std::process::id()));
        let partial = dest.with_file_name(partial_name);
        let partial_text = partial.to_str().ok_or_else(|| {
            StoreError::Invalid(format!("backup path {} is not UTF-8", dest.display()))
        })?;
        // A leftover from an interrupted backup of this same process id would make VACUUM INTO fail.
        let _ = std::fs::remove_file(&partial);
        let vacuum = sqlx::query("VACUUM INTO $1")
            .bind(partial_text)
            .execute(&self.read)
            .await
            .map_err(StoreError::db("writing the backup (VACUUM INTO)"));
        if let Err(err) = vacuum {
            let _ = std::fs::remove_file(&partial);
            return Err(err);
        }
        std::fs::rename(&partial, dest).map_err(|err| {
            let _ = std::fs::remove_file(&partial);
            StoreError::Invalid(format!(
                "cannot move the backup into place at {}: {err}",
                dest.display()
            ))
        })
    }
}
