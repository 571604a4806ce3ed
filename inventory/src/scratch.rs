//! Throwaway PostgreSQL databases for tests and benchmarks, so each run gets its own schema and runs in parallel.

use sqlx::Connection;

use crate::error::StoreError;
use crate::store::redact_url;

/// A database created on a PostgreSQL server by [`ScratchDatabase::create`]; [`ScratchDatabase::drop_now`]
/// removes it (the `Drop` impl does too, best-effort, from a helper thread).
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
    dropped: bool,
}

impl ScratchDatabase {
    /// Creates database `<prefix>_<pid>_<random>` on the server of `admin_url` (a database URL with rights to
    /// create databases).
    pub async fn create(admin_url: &str, prefix: &str) -> Result<Self, StoreError> {
        let name = format!(
            "{prefix}_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let connect_err = |source| StoreError::Connect {
            url: redact_url(admin_url),
            source,
        };
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .map_err(connect_err)?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .map_err(StoreError::db("creating a scratch database"))?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(base, _)| base);
        Ok(Self {
            admin_url: admin_url.to_string(),
            url: format!("{base}/{name}"),
            name,
            dropped: false,
        })
    }

    /// Drops the database, disconnecting anyone still on it.
    pub async fn drop_now(mut self) -> Result<(), StoreError> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .map_err(|source| StoreError::Connect {
            url: redact_url(admin_url),
            source,
        })?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .map_err(StoreError::db("dropping a scratch database"))?;
    Ok(())
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside an async runtime, which cannot be blocked on; a thread with its own runtime can.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = rt.block_on(drop_database(&admin_url, &name));
            }
        })
        .join();
    }
}
