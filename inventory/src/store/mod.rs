//! The store: the only code in kiln that speaks SQL. One API over SQLite (embedded default) and PostgreSQL
//! (scale-out), through sqlx's `Any` driver with per-backend migrations.
//!
//! SQLite is single-writer: writes go through a pool of exactly one connection, so write transactions never
//! race each other inside a process (this is the "single-writer equivalent" of PostgreSQL's row locks), and
//! readers use their own small pool (WAL mode lets them read while the writer writes).

use std::sync::{Arc, Once};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::clock::{Clock, SystemClock, from_millis};
use crate::error::StoreError;
use crate::secret::{Secret, SecretKey};

mod backup;
pub(crate) mod bmc_observations;
pub(crate) mod boot;
mod claims;
pub(crate) mod erase;
mod events;
pub mod firmware;
mod fleet;
pub(crate) mod grants;
mod halls;
mod hardware;
pub(crate) mod health;
mod images;
mod import;
mod leases;
mod leasing;
mod lifecycle;
mod nodes;
mod probe;
pub mod tokens;

pub use images::{Image, ImageAdded, ImageFormat, NewImage, UnknownImageFormat};
pub use import::ImportSummary;
pub use leasing::{LeaseEvent, LeaseOutcome};
pub use lifecycle::{Due, NodeWork, StoredReport};
pub use nodes::{BmcCredentials, NodeFilter};
pub use probe::{DatabaseInfo, probe_database};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database engine backs a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (embedded default).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Handle to the inventory database. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Store {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
    clock: Arc<dyn Clock>,
    key: Option<SecretKey>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("has_key", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://PATH` (created on first use), a bare `*.db` path, or `postgres://…`.
    pub url: String,
    /// The site key; needed to seal or open BMC passwords, not to read anything else.
    pub key: Option<SecretKey>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Most connections to PostgreSQL (SQLite always writes through one).
    pub max_connections: u32,
}

impl StoreOptions {
    /// Options for `url` with the wall clock and no key.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key: None,
            clock: Arc::new(SystemClock),
            max_connections: 8,
        }
    }

    /// Sets the site key.
    pub fn key(mut self, key: Option<SecretKey>) -> Self {
        self.key = key;
        self
    }

    /// Sets the clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// Turns what a user typed into a URL sqlx understands, and names the backend.
fn normalize_url(url: &str) -> Result<(Backend, String), StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_string()));
    }
    let path = if let Some(rest) = url.strip_prefix("sqlite://") {
        rest
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        rest
    } else if !url.contains("://") && !url.is_empty() {
        url
    } else {
        return Err(StoreError::BadUrl {
            url: redact_url(url),
        });
    };
    let mut normalized = format!("sqlite://{path}");
    if !path.contains("mode=") {
        normalized.push_str(if path.contains('?') {
            "&mode=rwc"
        } else {
            "?mode=rwc"
        });
    }
    Ok((Backend::Sqlite, normalized))
}

/// Registers sqlx's Any drivers once per process.
fn install_drivers() {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);
}

/// A URL fit for error messages: any password is replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// Connects, creating an SQLite file on first use, and applies pending migrations. When a key is given and
    /// the inventory already holds sealed values, checks that the key is the one they were sealed with.
    pub async fn open(options: StoreOptions) -> Result<Self, StoreError> {
        install_drivers();

        let (backend, url) = normalize_url(&options.url)?;
        let shown = redact_url(&options.url);
        let connect = |max: u32| {
            let pool = AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(30));
            let pool = if backend == Backend::Sqlite {
                pool.after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute(
                            // mmap: readers see pages the writer changed without copying them out of
                            // the page cache again (a busy engine invalidates readers' caches constantly).
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                             PRAGMA mmap_size = 268435456; PRAGMA cache_size = -16384;",
                        )
                        .await?;
                        Ok(())
                    })
                })
            } else {
                pool
            };
            let url = url.clone();
            async move { pool.connect(&url).await }
        };
        let connect_err = |source| StoreError::Connect {
            url: shown.clone(),
            source,
        };
        let (read, write) = match backend {
            Backend::Sqlite => {
                // The writer first, so the file exists (and is in WAL mode) before readers open it.
                let write = connect(1).await.map_err(connect_err)?;
                let read = connect(4).await.map_err(connect_err)?;
                (read, write)
            }
            Backend::Postgres => {
                let pool = connect(options.max_connections.max(2))
                    .await
                    .map_err(connect_err)?;
                (pool.clone(), pool)
            }
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&write).await.map_err(StoreError::Migrate)?;
        let store = Self {
            read,
            write,
            backend,
            clock: options.clock,
            key: options.key,
        };
        store.verify_key().await?;
        Ok(store)
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The store's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Versions of the migrations applied, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version",
        )
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("reading applied migrations"))?;
        rows.iter().map(|row| get(row, "version")).collect()
    }

    /// Closes both pools, waiting for connections to finish.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    /// The key, or an error naming what needed it.
    pub(crate) fn key_for(&self, purpose: &str) -> Result<&SecretKey, StoreError> {
        self.key.as_ref().ok_or_else(|| {
            StoreError::Secret(crate::SecretError::Missing {
                purpose: purpose.to_string(),
            })
        })
    }

    async fn verify_key(&self) -> Result<(), StoreError> {
        let Some(key) = &self.key else { return Ok(()) };
        let token: Option<String> = sqlx::query("SELECT token FROM secret_key_check WHERE id = 1")
            .fetch_optional(&self.read)
            .await
            .map_err(StoreError::db("reading the secret key check"))?
            .map(|row| get(&row, "token"))
            .transpose()?;
        if let Some(token) = token {
            key.open(&token, "the inventory's key check value")
                .map_err(|_| StoreError::WrongSecretKey)?;
        }
        Ok(())
    }

    /// Records the key check value when the first secret is sealed (inside the caller's transaction).
    pub(crate) async fn ensure_key_check(
        &self,
        conn: &mut sqlx::AnyConnection,
        key: &SecretKey,
    ) -> Result<(), StoreError> {
        let existing = sqlx::query("SELECT token FROM secret_key_check WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(StoreError::db("reading the secret key check"))?;
        match existing {
            Some(row) => {
                let token: String = get(&row, "token")?;
                key.open(&token, "the inventory's key check value")
                    .map_err(|_| StoreError::WrongSecretKey)?;
            }
            None => {
                sqlx::query("INSERT INTO secret_key_check (id, token) VALUES (1, $1)")
                    .bind(key.seal(&Secret::new("kiln-key-check")))
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::db("recording the secret key check"))?;
            }
        }
        Ok(())
    }
}

/// Reads a column, turning a type mismatch into a [`StoreError`] naming the column.
pub(crate) fn get<'r, T>(row: &'r AnyRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(|source| StoreError::Corrupt {
        what: format!("column {column}"),
        detail: source.to_string(),
    })
}

/// Reads a millisecond timestamp column.
pub(crate) fn get_time(row: &AnyRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    get::<i64>(row, column).map(from_millis)
}

/// Reads a nullable millisecond timestamp column.
pub(crate) fn get_opt_time(
    row: &AnyRow,
    column: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(get::<Option<i64>>(row, column)?.map(from_millis))
}

/// Reads a JSON text column, naming `what` when the stored text is not JSON.
pub(crate) fn get_json(
    row: &AnyRow,
    column: &str,
    what: &str,
) -> Result<serde_json::Value, StoreError> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|err| StoreError::Corrupt {
        what: what.to_string(),
        detail: err.to_string(),
    })
}

/// Reads a text column and parses it, naming the column when the stored text is not valid.
pub(crate) fn get_parsed<T>(row: &AnyRow, column: &str) -> Result<T, StoreError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text: String = get(row, column)?;
    text.parse().map_err(|err: T::Err| StoreError::Corrupt {
        what: format!("column {column}"),
        detail: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let sqlite = normalize_url("sqlite://kiln.db").ok();
        assert_eq!(
            sqlite,
            Some((Backend::Sqlite, "sqlite://kiln.db?mode=rwc".to_string()))
        );
        assert_eq!(
            normalize_url("/tmp/x.db").ok().map(|u| u.1),
            Some("sqlite:///tmp/x.db?mode=rwc".into())
        );
        assert_eq!(
            normalize_url("postgres://u@h/db").ok().map(|u| u.0),
            Some(Backend::Postgres)
        );
        assert!(normalize_url("mysql://x").is_err());
        assert_eq!(
            redact_url("postgres://kiln:s3cret@db/kiln"),
            "postgres://kiln:***@db/kiln"
        );
        assert_eq!(
            redact_url("postgres://kiln@db/kiln"),
            "postgres://kiln@db/kiln"
        );
    }
}
